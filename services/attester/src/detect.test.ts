import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAttester, createDetectedAttester, detectPlatforms } from './detect.js';
import { ConfigfsTsmAttester } from './configfs-tsm.js';
import { SimAttester } from './sim.js';
import { TpmAttester } from './tpm.js';
import { FakeTsmFs } from './testing/fake-configfs-tsm.js';

// Detection reads the machine; these tests point it at temporary stand-ins (a fake device node
// path, a fake configfs-tsm tree, a PATH with or without tpm2_quote) instead.
describe('attester detection', () => {
  let base: string;
  let bin: string;
  beforeAll(async () => {
    base = await mkdtemp(join(tmpdir(), 'custody-detect-'));
    bin = join(base, 'bin');
    await mkdir(bin);
    await writeFile(join(bin, 'tpm2_quote'), '#!/bin/sh\n', { mode: 0o755 });
    await writeFile(join(base, 'tpmrm0'), '');
    await mkdir(join(base, 'report'));
  });
  afterAll(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('finds nothing but sim on a bare machine, and will not pick sim silently', async () => {
    const env = { tpmDevice: join(base, 'none'), tsmRoot: join(base, 'none'), tcti: undefined, path: bin };
    const found = await detectPlatforms({ ...env });
    expect(found.map((f) => f.platform)).toEqual(expect.arrayContaining(['sim']));
    if (!process.env.TPM2TOOLS_TCTI) {
      expect(found.map((f) => f.platform)).toEqual(['sim']);
      await expect(createDetectedAttester(env)).rejects.toMatchObject({ code: 'ERR_ATTESTER_UNAVAILABLE' });
    }
  });

  it('finds a TPM device, noting when tpm2-tools is missing', async () => {
    const withTools = await detectPlatforms({ tpmDevice: join(base, 'tpmrm0'), tsmRoot: join(base, 'none'), path: bin });
    expect(withTools[0]).toEqual({ platform: 'tpm', via: `device:${join(base, 'tpmrm0')}`, usable: true });
    const noTools = await detectPlatforms({ tpmDevice: join(base, 'tpmrm0'), tsmRoot: join(base, 'none'), path: join(base, 'none') });
    expect(noTools[0]).toMatchObject({ platform: 'tpm', usable: false });
    expect(await createDetectedAttester({ tpmDevice: join(base, 'tpmrm0'), tsmRoot: join(base, 'none'), path: bin })).toBeInstanceOf(TpmAttester);
  });

  it('finds SNP or TDX behind a (fake) configfs-tsm, before the TPM', async () => {
    const tsmRoot = join(base, 'report');
    for (const [provider, platform] of [['sev_guest', 'sev-snp'], ['tdx_guest', 'tdx']] as const) {
      const tsmFs = new FakeTsmFs(tsmRoot, { provider, report: () => new Uint8Array(1) });
      const found = await detectPlatforms({ tsmRoot, tsmFs, tpmDevice: join(base, 'tpmrm0'), path: bin });
      expect(found.map((f) => f.platform)).toEqual([platform, 'tpm', 'sim']);
      const a = await createDetectedAttester({ tsmRoot, tsmFs, tpmDevice: join(base, 'tpmrm0'), path: bin });
      expect(a).toBeInstanceOf(ConfigfsTsmAttester);
      expect(a.platform).toBe(platform);
    }
  });

  it('creates attesters by name', () => {
    expect(createAttester('sim')).toBeInstanceOf(SimAttester);
    expect(createAttester('snp').platform).toBe('sev-snp');
    expect(createAttester('tdx').platform).toBe('tdx');
    expect(createAttester('tpm')).toBeInstanceOf(TpmAttester);
    expect(() => createAttester('sgx')).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
  });
});
