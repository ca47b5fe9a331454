import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeGgufMetadata, unsealModelFile } from '@custody/gateway-service';

// `custody model seal|inspect` and `custody gateway serve --model <sealed>` in child processes
// (real exit codes and output). Sealing under a key the broker creates, and its release to an
// attested workload, is in fetch-key.test.ts (a broker process with a sim policy).
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register: model } = await import('./src/commands/model.ts'); const { register: gateway } = await import('./src/commands/gateway.ts'); " +
  "const program = new Command().name('custody').exitOverride(); model(program); gateway(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];

let dir: string;
let gguf: string;
let keyFile: string;
const key = randomBytes(32);

function custody(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', CUSTODY_API_KEY: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => res({ code, stdout, stderr }));
  });
}

const json = (r: { stdout: string }) => JSON.parse(r.stdout) as { ok: boolean; header?: Record<string, unknown>; errors?: { code: string }[] };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'custody-model-cli-'));
  gguf = join(dir, 'weights.gguf');
  // A GGUF header (the name and architecture the command reads) followed by weights-like bytes.
  writeFileSync(gguf, Buffer.concat([encodeGgufMetadata({ 'general.architecture': 'llama', 'general.name': 'acme-7b' }), randomBytes(50_000)]));
  keyFile = join(dir, 'model.key');
  writeFileSync(keyFile, key, { mode: 0o600 });
});

afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('custody model seal --key-file and inspect', () => {
  it('seals under the given key (model id and label from the GGUF header), 0600, openable with that key', async () => {
    const out = join(dir, 'weights.sealed');
    const r = await custody('model', 'seal', gguf, '--out', out, '--key', 'acme-weights', '--key-file', keyFile, '--key-version', '3', '--json');
    expect(r.code, r.stderr).toBe(0);
    expect(json(r).header).toMatchObject({ format: 'custody.sealed-model/v1', key: { name: 'acme-weights', version: 3 }, model: { id: 'acme-7b', label: 'acme-7b (GGUF llama)' }, size: statSync(gguf).size });
    expect(statSync(out).mode & 0o777).toBe(0o600);
    // No partial file is left beside it.
    expect(readdirSync(dir).filter((f) => f.includes('.partial-'))).toEqual([]);
    const plain = join(dir, 'weights.plain');
    await unsealModelFile(out, key, plain);
    expect(readFileSync(plain).equals(readFileSync(gguf))).toBe(true);

    const i = await custody('model', 'inspect', out);
    expect(i.code, i.stderr).toBe(0);
    expect(i.stdout).toMatch(/^sealed model .*weights\.sealed \(custody\.sealed-model\/v1\)\n {2}model {4}acme-7b \(acme-7b \(GGUF llama\)\)\n {2}digest {3}sha256:[0-9a-f]{64} \(\d+ bytes of weights; receipts name this digest\)\n {2}key {6}broker key acme-weights v3 \(AES-256-GCM, 1048576-byte chunks\)\n$/);
  });

  it('exit code 2 for usage, bad key material and a file that is no model or no sealed model; nothing written', async () => {
    const out = join(dir, 'x.sealed');
    const cases: [string[], string][] = [
      // A key this command would create needs a release policy.
      [['model', 'seal', gguf, '--out', out, '--key', 'k', '--json'], 'ERR_USAGE'],
      [['model', 'seal', gguf, '--out', out, '--key', 'k', '--key-file', keyFile, '--policy', 'true', '--json'], 'ERR_USAGE'],
      [['model', 'seal', gguf, '--out', gguf, '--key', 'k', '--key-file', keyFile, '--json'], 'ERR_USAGE'],
      [['model', 'seal', gguf, '--out', out, '--key', 'k', '--key-file', gguf, '--json'], 'ERR_KEY_MATERIAL'],
      [['model', 'seal', gguf, '--out', out, '--key', 'bad name', '--key-file', keyFile, '--json'], 'ERR_MODEL_SEALED'],
      [['model', 'seal', join(dir, 'absent'), '--out', out, '--key', 'k', '--key-file', keyFile, '--model-id', 'm', '--json'], 'ERR_GATEWAY_MODEL_FILE'],
      [['model', 'inspect', gguf, '--json'], 'ERR_MODEL_SEALED'],
      // With --key-file nothing is sent to a broker: a --broker given too is a mistake, not ignored.
      [['model', 'seal', gguf, '--out', out, '--key', 'k', '--key-file', keyFile, '--broker', 'http://127.0.0.1:9', '--json'], 'ERR_USAGE'],
      [['model', 'seal', gguf, '--out', join(dir, 'no-such-dir', 'x.sealed'), '--key', 'k', '--key-file', keyFile, '--json'], 'ERR_GATEWAY_MODEL_FILE'],
    ];
    for (const [args, code] of cases) {
      const r = await custody(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(json(r).errors?.[0]?.code).toBe(code);
      expect(existsSync(out)).toBe(false);
    }
    expect(readdirSync(dir).filter((f) => f.includes('.partial-'))).toEqual([]);
  });

  it('--key-encoding hex reads a key written as text', async () => {
    const hexFile = join(dir, 'model.key.hex');
    writeFileSync(hexFile, key.toString('hex') + '\n', { mode: 0o600 });
    const out = join(dir, 'hex.sealed');
    const r = await custody('model', 'seal', gguf, '--out', out, '--key', 'k', '--key-file', hexFile, '--key-encoding', 'hex', '--json');
    expect(r.code, r.stderr).toBe(0);
    const plain = join(dir, 'hex.plain');
    await unsealModelFile(out, key, plain);
    expect(readFileSync(plain).equals(readFileSync(gguf))).toBe(true);
  });

  it('gateway serve refuses a sealed model without a key broker (exit 2), before anything is decrypted', async () => {
    const sealed = join(dir, 'for-gateway.sealed');
    expect((await custody('model', 'seal', gguf, '--out', sealed, '--key', 'k', '--key-file', keyFile)).code).toBe(0);
    const r = await custody('gateway', 'serve', '--model', sealed, '--port', '0', '--json');
    expect(r.code).toBe(2);
    expect(json(r).errors?.[0]).toMatchObject({ code: 'ERR_USAGE' });
    expect(r.stdout + r.stderr).toContain('--broker');
  });
});
