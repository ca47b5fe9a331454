import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
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

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Starts the CLI; a run that hangs is killed after 30 s (its code is then null). */
function start(...args: string[]): { child: ChildProcess; done: Promise<Run> } {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', CUSTODY_API_KEY: '' }, timeout: 30_000 });
  const done = new Promise<Run>((res) => {
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code, signal) => res({ code, signal, stdout, stderr }));
  });
  return { child, done };
}

function custody(...args: string[]): Promise<Run> {
  return start(...args).done;
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
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
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
      [['model', 'seal', gguf, '--out', out, '--key', 'bad name', '--key-file', keyFile, '--json'], 'ERR_KEY_NAME'],
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
    expect(readdirSync(dir).filter((f) => f.endsWith('.partial'))).toEqual([]);
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

  // Options the sealed header would refuse are usage errors, found before anything is read or sent.
  it('bad --chunk-size, --key, --label, --key-encoding and --policy values are usage errors (exit 2), checked first', async () => {
    const out = join(dir, 'opts.sealed');
    const seal = (...more: string[]) => custody('model', 'seal', gguf, '--out', out, ...more, '--json');
    const apiKeyFile = join(dir, 'api.key');
    writeFileSync(apiKeyFile, 'not-a-real-token\n', { mode: 0o600 });
    const cases: [string[], string, RegExp][] = [
      [['--key', 'k', '--key-file', keyFile, '--chunk-size', '100'], 'ERR_USAGE', /--chunk-size must be an integer from 4096 to 16777216/],
      [['--key', 'k', '--key-file', keyFile, '--chunk-size', '16777217'], 'ERR_USAGE', /--chunk-size/],
      [['--key', '-k', '--key-file', keyFile], 'ERR_KEY_NAME', /--key must be/],
      [['--key', 'k'.repeat(129), '--key-file', keyFile], 'ERR_KEY_NAME', /--key must be/],
      [['--key', 'k', '--key-file', keyFile, '--label', 'bell\u0007'], 'ERR_USAGE', /--label/],
      [['--key', 'k', '--key-file', keyFile, '--label', 'x'.repeat(257)], 'ERR_USAGE', /--label/],
      // A binary key file: the value of the option is what is wrong, and the message names it.
      [['--key', 'k', '--key-file', keyFile, '--key-encoding', 'base85'], 'ERR_USAGE', /^--key-encoding must be raw, base64 or hex$/],
      // A policy the broker would refuse, before the broker (unreachable here) is asked or the model read.
      [['--key', 'k', '--policy', '((((', '--broker', 'http://127.0.0.1:9', '--api-key-file', apiKeyFile], 'ERR_POLICY_INVALID', /release policy/],
    ];
    for (const [args, code, message] of cases) {
      const r = await seal(...args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      const err = (JSON.parse(r.stdout) as { errors: { code: string; message: string }[] }).errors[0]!;
      expect([err.code, err.message]).toEqual([code, expect.stringMatching(message)]);
      expect(existsSync(out)).toBe(false);
    }
    // The true range: 4096 is accepted.
    expect((await seal('--key', 'k', '--key-file', keyFile, '--chunk-size', '4096')).code).toBe(0);
  });

  it('a FIFO, or a link to one, as the model is refused at once (ERR_GATEWAY_MODEL_FILE, exit 2), not waited on', async () => {
    const fifo = join(dir, 'model.fifo');
    execFileSync('mkfifo', [fifo]);
    const link = join(dir, 'fifo.link');
    symlinkSync(fifo, link);
    for (const input of [fifo, link]) {
      const r = await custody('model', 'seal', input, '--out', join(dir, 'fifo.sealed'), '--key', 'k', '--key-file', keyFile, '--model-id', 'w', '--json');
      expect(r.code, r.stderr).toBe(2);
      expect(json(r).errors?.[0]).toMatchObject({ code: 'ERR_GATEWAY_MODEL_FILE', message: expect.stringContaining('not a regular file') as unknown });
    }
    expect(existsSync(join(dir, 'fifo.sealed'))).toBe(false);
  });

  it('an --out that cannot be created is one typed JSON error (exit 2), no stack; a long valid name works', async () => {
    const sub = join(dir, 'out-cases');
    mkdirSync(sub);
    const notDir = join(sub, 'file');
    writeFileSync(notDir, 'x');
    for (const out of [join(notDir, 'x.sealed'), join(sub, 'n'.repeat(256))]) {
      const r = await custody('model', 'seal', gguf, '--out', out, '--key', 'k', '--key-file', keyFile, '--json');
      expect(r.code, r.stderr).toBe(2);
      expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
      expect(json(r).errors?.[0]?.code).toBe('ERR_GATEWAY_MODEL_FILE');
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    // 240 characters is a valid name: the hidden partial file beside it must not push past NAME_MAX.
    const long = join(sub, 'l'.repeat(240));
    const ok = await custody('model', 'seal', gguf, '--out', long, '--key', 'k', '--key-file', keyFile, '--json');
    expect(ok.code, ok.stdout + ok.stderr).toBe(0);
    expect(readdirSync(sub).sort()).toEqual(['file', 'l'.repeat(240)]);
  });

  // The process ends by the signal, raised again after the cleanup: a shell reports 130 and 143.
  it.each(['SIGINT', 'SIGTERM'] as const)('%s while sealing removes the hidden partial file and ends the process by that signal', async (signal) => {
    const sub = mkdtempSync(join(dir, 'signal-'));
    // A large sparse file in 4 KiB chunks: seconds of work, so the signal lands mid-seal.
    const big = join(dir, `big-${signal}`);
    writeFileSync(big, '');
    truncateSync(big, 256 << 20);
    const out = join(sub, 'big.sealed');
    const { child, done } = start('model', 'seal', big, '--out', out, '--key', 'k', '--key-file', keyFile, '--model-id', 'big', '--chunk-size', '4096', '--json');
    const partial = () => readdirSync(sub).some((f) => f.endsWith('.partial'));
    const deadline = Date.now() + 20_000;
    while (!partial() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    expect(partial()).toBe(true);
    child.kill(signal);
    const r = await done;
    expect(readdirSync(sub)).toEqual([]);
    expect([r.code, r.signal], r.stderr).toEqual([null, signal]);
    expect(r.stderr).toContain(`interrupted (${signal})`);
  }, 40_000);
});
