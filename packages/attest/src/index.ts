export type * from './types.js';
export { PLATFORMS } from './types.js';
export { Pipeline } from './steps.js';
export * from './tpm/index.js';
export * from './sim/index.js';
