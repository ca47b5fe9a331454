import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, toHex } from '@custody/core';
import { nvidiaVerifier } from '@custody/attest';
import { CommandGpuAttester, GPU_NONCE_TOKEN } from './command-gpu.js';
import { FixtureGpuAttester } from './testing/index.js';

// The "GPU evidence program" of these tests: a small node script that records its argv and pid,
// then behaves as its first argument says.
const PROGRAM = `
import { writeFileSync, readFileSync, appendFileSync } from 'node:fs';
const [mode, dir, ...rest] = process.argv.slice(2);
writeFileSync(dir + '/argv.json', JSON.stringify(rest));
writeFileSync(dir + '/pid', String(process.pid));
switch (mode) {
  case 'echo': process.stdout.write(readFileSync(dir + '/evidence')); break;
  case 'hex': process.stdout.write(JSON.parse(readFileSync(dir + '/evidence', 'utf8')).report + '\\n'); break;
  case 'big': { const chunk = Buffer.alloc(64 * 1024, 0x41); for (let i = 0; i < 40; i++) process.stdout.write(chunk); break; }
  case 'sleep': setTimeout(() => {}, 60_000); break;
  case 'fail': process.stdout.write(readFileSync(dir + '/evidence')); process.exitCode = 3; break;
  case 'other': process.stdout.write('SECRET-MARKER this is not GPU evidence\\n'); break;
  case 'empty': break;
  case 'env': writeFileSync(dir + '/env.json', JSON.stringify(process.env)); process.stdout.write(readFileSync(dir + '/evidence')); break;
  case 'slow':
    appendFileSync(dir + '/order', 'start\\n');
    setTimeout(() => { appendFileSync(dir + '/order', 'end\\n'); process.stdout.write(readFileSync(dir + '/evidence')); }, 100);
    break;
}
`;

const NONCE = Uint8Array.from({ length: 32 }, (_, i) => i * 7 + 1);
const NOW = new Date();

function failure(e: unknown): CustodyError {
  expect(e).toBeInstanceOf(CustodyError);
  return e as CustodyError;
}

describe('CommandGpuAttester (operator-supplied GPU evidence program)', () => {
  let dir: string;
  let script: string;
  let evidence: Uint8Array;
  let root: Uint8Array;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'custody-gpu-cmd-'));
    script = join(dir, 'gpu-evidence.mjs');
    writeFileSync(script, PROGRAM);
    evidence = await new FixtureGpuAttester().collect(NONCE);
    root = await FixtureGpuAttester.testRoot();
    writeFileSync(join(dir, 'evidence'), evidence);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  const attester = (mode: string, o: { timeoutMs?: number; maxOutputBytes?: number } = {}) =>
    new CommandGpuAttester({ argv: [process.execPath, script, mode, dir, '--nonce', GPU_NONCE_TOKEN, `nonce=${GPU_NONCE_TOKEN}`], ...o });
  const argv = () => JSON.parse(readFileSync(join(dir, 'argv.json'), 'utf8')) as string[];

  it('substitutes the nonce as 64 hex digits in every argument and returns the evidence the program printed, which verifies with that nonce', async () => {
    const out = await attester('echo').collect(NONCE);
    expect(argv()).toEqual(['--nonce', toHex(NONCE), `nonce=${toHex(NONCE)}`]);
    expect(Buffer.from(out).equals(Buffer.from(evidence))).toBe(true);
    const r = await nvidiaVerifier.verify({ evidence: out, roots: [root], now: NOW, nonce: NONCE });
    expect(r.ok).toBe(true);
    expect(r.claims!.nonce).toBe(toHex(NONCE));
  });

  it('accepts the report hex alone (the chain then comes as certs)', async () => {
    const out = await attester('hex').collect(NONCE);
    expect(new TextDecoder().decode(out).trim()).toMatch(/^11e0[0-9a-f]+$/);
  });

  it('output over the bound: ERR_ATTESTER_FAILED, the program is killed', async () => {
    const e = failure(await attester('big', { maxOutputBytes: 256 * 1024 }).collect(NONCE).catch((x: unknown) => x));
    expect(e.code).toBe('ERR_ATTESTER_FAILED');
    expect(e.detail).toMatchObject({ limit: 256 * 1024 });
    expect(e.message).not.toContain('AAAA');
  });

  it('no answer within the timeout: ERR_ATTESTER_FAILED, the program is killed', async () => {
    const started = performance.now();
    const e = failure(await attester('sleep', { timeoutMs: 500 }).collect(NONCE).catch((x: unknown) => x));
    expect(e.code).toBe('ERR_ATTESTER_FAILED');
    expect(e.detail).toMatchObject({ timedOut: true });
    expect(performance.now() - started).toBeLessThan(20_000);
    const pid = Number(readFileSync(join(dir, 'pid'), 'utf8'));
    // SIGKILL lands at once; give the kernel a moment to reap it.
    let alive = true;
    for (let i = 0; i < 50 && alive; i++) {
      try {
        process.kill(pid, 0);
        await new Promise((r) => setTimeout(r, 20));
      } catch {
        alive = false;
      }
    }
    expect(alive).toBe(false);
  });

  it('a non-zero exit: ERR_ATTESTER_FAILED with the status, even after printing evidence', async () => {
    const e = failure(await attester('fail').collect(NONCE).catch((x: unknown) => x));
    expect(e.code).toBe('ERR_ATTESTER_FAILED');
    expect(e.detail).toMatchObject({ exit: 3 });
  });

  it('output that is not NVIDIA evidence (or nothing): ERR_ATTESTER_FAILED, without the output in the message', async () => {
    for (const mode of ['other', 'empty']) {
      const e = failure(await attester(mode).collect(NONCE).catch((x: unknown) => x));
      expect(e.code).toBe('ERR_ATTESTER_FAILED');
      expect(e.message).not.toContain('SECRET-MARKER');
      expect(JSON.stringify(e.detail)).not.toContain('SECRET-MARKER');
    }
  });

  it("runs the program without Custody's variables (CUSTODY_*: the broker API key, a ledger writer key), with the rest of the environment", async () => {
    const set = { CUSTODY_BROKER_API_KEY: 'cst_secret_api_key_marker', CUSTODY_LEDGER_KEY: 'ledger_writer_key_marker', PGPASSWORD: 'replay_store_password_marker', GPU_PROGRAM_SETTING: 'kept', NOT_CUSTODY_X: 'kept too' };
    const previous = Object.fromEntries(Object.keys(set).map((k) => [k, process.env[k]]));
    Object.assign(process.env, set);
    try {
      const out = await attester('env').collect(NONCE);
      expect(out.length).toBe(evidence.length);
      const seen = JSON.parse(readFileSync(join(dir, 'env.json'), 'utf8')) as Record<string, string>;
      expect(Object.keys(seen).filter((k) => k.startsWith('CUSTODY_') || k === 'PGPASSWORD')).toEqual([]);
      expect(JSON.stringify(seen)).not.toContain('_marker');
      expect(seen).toMatchObject({ GPU_PROGRAM_SETTING: 'kept', NOT_CUSTODY_X: 'kept too', PATH: process.env.PATH });
      // The gateway's own environment is left as it was.
      expect(process.env.CUSTODY_BROKER_API_KEY).toBe(set.CUSTODY_BROKER_API_KEY);
    } finally {
      for (const [k, v] of Object.entries(previous)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  it('a program that does not exist: ERR_ATTESTER_UNAVAILABLE', async () => {
    const a = new CommandGpuAttester({ argv: [join(dir, 'no-such-program'), GPU_NONCE_TOKEN] });
    const e = failure(await a.collect(NONCE).catch((x: unknown) => x));
    expect(e.code).toBe('ERR_ATTESTER_UNAVAILABLE');
  });

  it('runs collections one at a time and keeps going after a failure', async () => {
    const a = attester('slow');
    const outs = await Promise.all([a.collect(NONCE), a.collect(NONCE), a.collect(NONCE)]);
    expect(outs.every((o) => o.length === evidence.length)).toBe(true);
    expect(readFileSync(join(dir, 'order'), 'utf8')).toBe('start\nend\n'.repeat(3));
    const b = attester('sleep', { timeoutMs: 200 });
    const c = attester('echo');
    await expect(b.collect(NONCE)).rejects.toMatchObject({ code: 'ERR_ATTESTER_FAILED' });
    expect((await c.collect(NONCE)).length).toBe(evidence.length);
  });

  it('refuses a command without {nonce}, an empty one, and a nonce that is not 32 bytes', async () => {
    expect(() => new CommandGpuAttester({ argv: [process.execPath, script] })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    expect(() => new CommandGpuAttester({ argv: [] })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    expect(() => new CommandGpuAttester({ argv: ['', GPU_NONCE_TOKEN] })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    expect(() => new CommandGpuAttester({ argv: ['x', GPU_NONCE_TOKEN], timeoutMs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    await expect(attester('echo').collect(new Uint8Array(16))).rejects.toMatchObject({ code: 'ERR_INPUT_MALFORMED' });
  });
});
