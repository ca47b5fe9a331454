import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { fromHex } from '@custody/core';
import { simVerifier, tpmVerifier } from '@custody/attest';
import { startSwtpm, type SwtpmInstance } from '@custody/attester-service/testing';
import { registerCollect } from './collect.js';

async function run(args: string[]): Promise<void> {
  const program = new Command().exitOverride();
  registerCollect(program.command('attest'));
  await program.parseAsync(['node', 'custody', 'attest', 'collect', ...args]);
}

describe('custody attest collect', () => {
  let dir: string;
  let tpm: SwtpmInstance;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'custody-collect-'));
    tpm = await startSwtpm();
  });
  afterAll(async () => {
    await tpm?.stop();
    await rm(dir, { recursive: true, force: true });
  });
  afterEach(() => {
    vi.restoreAllMocks();
    process.exitCode = undefined;
  });

  it('--platform sim writes SIMULATED evidence bound to the nonce', async () => {
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const out = join(dir, 'sim.json');
    await run(['--platform', 'sim', '--nonce', '00112233', '--out', out, '--measurement', 'mrtd=' + 'ab'.repeat(48)]);
    const r = await simVerifier.verify({ evidence: new Uint8Array(await readFile(out)), now: new Date(), nonce: fromHex('00112233') });
    expect(r.ok).toBe(true);
    expect(r.claims!.measurements).toEqual({ mrtd: 'ab'.repeat(48) });
  });

  it('--platform tpm collects a quote from swtpm that verifies with the nonce', async () => {
    const lines: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((s) => (lines.push(String(s)), true));
    const nonce = 'c0ffee'.repeat(10);
    const out = join(dir, 'tpm.json');
    await run(['--platform', 'tpm', '--tcti', tpm.tcti, '--ak', 'ecc', '--pcrs', '0-7,16', '--nonce', nonce, '--out', out, '--json']);
    const summary = JSON.parse(lines.join('')) as { ok: boolean; platform: string; out: string };
    expect(summary).toMatchObject({ ok: true, platform: 'tpm', out });
    const r = await tpmVerifier.verify({ evidence: new Uint8Array(await readFile(out)), now: new Date(), nonce: fromHex(nonce) });
    expect(r.ok).toBe(true);
    expect(Object.keys(r.claims!.measurements)).toEqual(['pcr0', 'pcr1', 'pcr2', 'pcr3', 'pcr4', 'pcr5', 'pcr6', 'pcr7', 'pcr16']);
  });

  it('--platform tpm without --tcti takes the TPM from $TPM2TOOLS_TCTI, as tpm2-tools do', async () => {
    vi.spyOn(process.stdout, 'write').mockImplementation(() => true);
    vi.stubEnv('TPM2TOOLS_TCTI', tpm.tcti);
    try {
      const out = join(dir, 'tpm-env.json');
      await run(['--platform', 'tpm', '--ak', 'ecc', '--pcrs', '0', '--nonce', '0a0b', '--out', out, '--json']);
      const r = await tpmVerifier.verify({ evidence: new Uint8Array(await readFile(out)), now: new Date(), nonce: fromHex('0a0b') });
      expect(r.ok).toBe(true);
    } finally {
      vi.unstubAllEnvs();
    }
  });

  it('exits 2 for a bad nonce and 3 when the device is not there', async () => {
    const exits: (number | undefined)[] = [];
    vi.spyOn(process, 'exit').mockImplementation((code) => {
      exits.push(code as number | undefined);
      throw new Error('exit');
    });
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    await expect(run(['--platform', 'sim', '--nonce', 'xyz'])).rejects.toThrow('exit');
    await expect(run(['--platform', 'tdx', '--nonce', '00', '--tsm-root', join(dir, 'none')])).rejects.toThrow('exit');
    expect(exits).toEqual([2, 3]);
  });
});
