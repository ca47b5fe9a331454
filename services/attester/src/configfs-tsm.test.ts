import { mkdtemp, readdir, rm, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromBase64Url, toHex } from '@custody/core';
import { readVector } from '../../../test/vectors.js';
import { ConfigfsTsmAttester, probeTsmProvider } from './configfs-tsm.js';
import { FakeTsmFs } from './testing/fake-configfs-tsm.js';

// SEV-SNP and TDX guests cannot run here. These tests drive the attester against a FAKE
// configfs-tsm tree in a temporary directory (testing/fake-configfs-tsm.ts mimics the kernel's
// documented behaviour); they check the file protocol and the output format, not a real TEE.

const snpReport = readVector('attestation/sev-snp/go-sev-guest/attestation.bin');
/** The fake "firmware": the real Milan report with report_data (0x50..0x8f) set from inblob. */
const snpFirmware = (inblob: Uint8Array): Uint8Array => {
  const r = snpReport.slice();
  r.set(inblob, 0x50);
  return r;
};
const certTable = new Uint8Array(Array.from({ length: 96 }, (_, i) => i));

type TsmJson = { provider: string; outblob: string; auxblob?: string };
const parse = (b: Uint8Array): TsmJson => JSON.parse(new TextDecoder().decode(b)) as TsmJson;

describe('configfs-tsm attester against a fake configfs-tsm tree (temp dir, no kernel)', () => {
  let root: string;
  let base: string;
  beforeEach(async () => {
    base = await mkdtemp(join(tmpdir(), 'custody-fake-tsm-'));
    root = join(base, 'report');
    await mkdir(root);
  });
  afterEach(async () => {
    await rm(base, { recursive: true, force: true });
  });

  it('SNP: writes the zero-padded report data, returns {provider, outblob, auxblob} base64url, removes its entry', async () => {
    const fs = new FakeTsmFs(root, { provider: 'sev_guest', report: snpFirmware, auxblob: certTable });
    const a = new ConfigfsTsmAttester({ platform: 'sev-snp', root, fs });
    const nonce = Uint8Array.of(1, 2, 3, 4, 5);
    const out = parse(await a.collect(nonce));
    expect(Object.keys(out)).toEqual(['provider', 'outblob', 'auxblob']);
    expect(out.provider).toBe('sev_guest');
    const report = fromBase64Url(out.outblob);
    expect(report.length).toBe(1184);
    expect(toHex(report.subarray(0x50, 0x90))).toBe('0102030405' + '00'.repeat(59));
    expect(toHex(fromBase64Url(out.auxblob!))).toBe(toHex(certTable));
    expect(out.outblob).not.toMatch(/[+/=]/);
    expect(fs.created).toHaveLength(1);
    expect(await readdir(root)).toEqual([]);
  });

  it('TDX: no auxblob attribute means no auxblob field', async () => {
    const quote = readVector('attestation/tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat');
    const fs = new FakeTsmFs(root, { provider: 'tdx_guest', report: () => quote });
    const out = parse(await new ConfigfsTsmAttester({ platform: 'tdx', root, fs }).collect(new Uint8Array(64).fill(9)));
    expect(out).toEqual({ provider: 'tdx_guest', outblob: Buffer.from(quote).toString('base64url') });
  });

  it('fails when another writer changes the entry while the report is read, and still cleans up', async () => {
    const fs: FakeTsmFs = new FakeTsmFs(root, {
      provider: 'sev_guest',
      report: snpFirmware,
      duringOutblobRead: async (dir) => {
        fs.bumpGeneration(dir);
        await Promise.resolve();
      },
    });
    await expect(new ConfigfsTsmAttester({ platform: 'sev-snp', root, fs }).collect(new Uint8Array(4))).rejects.toMatchObject({ code: 'ERR_ATTESTER_FAILED' });
    expect(await readdir(root)).toEqual([]);
  });

  it('refuses a provider of another platform', async () => {
    const fs = new FakeTsmFs(root, { provider: 'tdx_guest', report: snpFirmware });
    await expect(new ConfigfsTsmAttester({ platform: 'sev-snp', root, fs }).collect(new Uint8Array(4))).rejects.toMatchObject({ code: 'ERR_ATTESTER_UNAVAILABLE' });
    expect(await readdir(root)).toEqual([]);
  });

  it('reports a missing configfs-tsm as unavailable (real fs, nonexistent root)', async () => {
    const a = new ConfigfsTsmAttester({ platform: 'tdx', root: join(base, 'nope', 'report') });
    await expect(a.collect(new Uint8Array(4))).rejects.toMatchObject({ code: 'ERR_ATTESTER_UNAVAILABLE' });
    expect(await probeTsmProvider(join(base, 'nope', 'report'))).toBeUndefined();
  });

  it('writes privlevel when asked (SNP VMPL), and bounds report data', async () => {
    const fs = new FakeTsmFs(root, { provider: 'sev_guest', report: snpFirmware });
    const writes: string[] = [];
    const write = fs.writeFile.bind(fs);
    fs.writeFile = (path, data) => {
      writes.push(`${basename(path)}:${data.length}`);
      return write(path, data);
    };
    await new ConfigfsTsmAttester({ platform: 'sev-snp', root, fs, privlevel: 2 }).collect(new Uint8Array(4));
    expect(writes).toEqual(['privlevel:1', 'inblob:64']);
    await expect(new ConfigfsTsmAttester({ platform: 'sev-snp', root, fs }).collect(new Uint8Array(65))).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(() => new ConfigfsTsmAttester({ platform: 'sev-snp', root, fs, privlevel: 4 })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
  });

  it('probes the provider without leaving an entry behind', async () => {
    const fs = new FakeTsmFs(root, { provider: 'sev_guest', report: snpFirmware });
    expect(await probeTsmProvider(root, fs)).toBe('sev_guest');
    expect(await readdir(root)).toEqual([]);
  });
});
