export { startSwtpm, type SwtpmInstance } from './swtpm.js';
export { FakeTsmFs } from './fake-configfs-tsm.js';
export { FixtureGpuAttester, type FixtureGpuAttesterOptions } from './fixture-gpu.js';
