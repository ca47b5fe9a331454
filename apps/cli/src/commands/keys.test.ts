import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CustodyError, toBase64 } from '@custody/core';
import { openBroker, serveBroker, type Broker, type ReleasePolicyEvaluator, type RunningServer } from '@custody/broker-service';

// Runs `custody keys ...` through this module's `register` in a child process (real exit codes
// and output) against a broker served in this process on a loopback port.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register } = await import('./src/commands/keys.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];

/** A CEL stand-in for these tests: the only policy it accepts is `true`. */
const literalPolicy: ReleasePolicyEvaluator = {
  validate: (e) => (e === 'true' ? Promise.resolve() : Promise.reject(new CustodyError('ERR_POLICY_INVALID'))),
  evaluate: () => Promise.resolve({ allow: true }),
};

let dir: string;
let broker: Broker;
let server: RunningServer;
let adminKeyFile: string;
let workloadKeyFile: string;

function custody(env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', CUSTODY_API_KEY: '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => res({ code, stdout, stderr }));
  });
}

const keys = (...args: string[]) => custody({}, 'keys', ...args, '--broker', server.url, '--api-key-file', adminKeyFile);
const json = (r: { stdout: string }) => JSON.parse(r.stdout) as { ok: boolean; key?: Record<string, unknown>; keys?: Array<Record<string, unknown>>; errors?: Array<{ code: string; message?: string }> };

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-keys-cli-'));
  broker = await openBroker(
    { metadata: { kind: 'sqlite', path: join(dir, 'broker.db') }, keystore: { kind: 'embedded', masterKey: { source: 'env' } } },
    { policy: literalPolicy, env: { CUSTODY_MASTER_KEY: toBase64(randomBytes(32)) } },
  );
  server = await serveBroker(broker.app);
  const { token } = await broker.service.bootstrapAdminKey('acme', 'cli-test');
  adminKeyFile = join(dir, 'admin.key');
  writeFileSync(adminKeyFile, token + '\n', { mode: 0o600 });
  const w = await broker.service.createApiKey({ tenant: 'acme', role: 'admin', subject: 'apikey:test' }, { tenant: 'acme', role: 'workload', label: 'w' });
  workloadKeyFile = join(dir, 'workload.key');
  writeFileSync(workloadKeyFile, w.token, { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('custody keys', () => {
  it('create, list, rotate, revoke and destroy a key, in JSON and in text', async () => {
    const created = await keys('create', 'dataset-kek', '--type', 'aes-256', '--policy', 'true', '--json');
    expect(created.code, created.stderr).toBe(0);
    expect(json(created).key).toMatchObject({ name: 'dataset-kek', type: 'aes-256', state: 'active', currentVersion: 1, releasePolicy: 'true' });

    const text = await keys('create', 'signer', '--type', 'ed25519');
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^created signer \(ed25519\): state active, version 1 \(generated\), non-exportable, no release policy/);
    expect(text.stdout).toMatch(/public key \(SPKI, base64\): MCowBQYDK2VwAyEA/);

    const rotated = await keys('rotate', 'dataset-kek', '--json');
    expect(json(rotated).key).toMatchObject({ currentVersion: 2 });

    const list = await keys('list');
    expect(list.code).toBe(0);
    expect(list.stdout.split('\n')[0]).toMatch(/^NAME\s+TYPE\s+STATE\s+VERSION/);
    expect(list.stdout).toMatch(/dataset-kek\s+aes-256\s+active\s+2\s+2\s+yes\s+set/);
    const listed = json(await keys('list', '--json'));
    expect(listed.keys!.map((k) => k.name)).toEqual(['dataset-kek', 'signer']);

    const revoked = await keys('revoke', 'dataset-kek', '--reason', 'rotation drill', '--json');
    expect(json(revoked).key).toMatchObject({ state: 'revoked' });
    const again = await keys('rotate', 'dataset-kek', '--json');
    expect(again.code).toBe(1);
    expect(json(again).errors![0]!.code).toBe('ERR_KEY_REVOKED');

    const refused = await keys('destroy', 'dataset-kek', '--json');
    expect(refused.code).toBe(2);
    expect(json(refused).errors![0]!.code).toBe('ERR_USAGE');
    const destroyed = await keys('destroy', 'dataset-kek', '--yes', '--json');
    expect(json(destroyed).key).toMatchObject({ state: 'destroyed' });
  });

  it('imports raw, base64 and PKCS#8 PEM material, and rotates from a file', async () => {
    writeFileSync(join(dir, 'aes.bin'), randomBytes(32), { mode: 0o600 });
    writeFileSync(join(dir, 'secret.b64'), toBase64(randomBytes(100)), { mode: 0o600 });
    writeFileSync(join(dir, 'ed.pem'), generateKeyPairSync('ed25519').privateKey.export({ format: 'pem', type: 'pkcs8' }), { mode: 0o600 });
    const a = await keys('import', 'imp-aes', '--type', 'aes-256', '--file', join(dir, 'aes.bin'), '--json');
    expect(a.code, a.stderr).toBe(0);
    expect(json(a).key).toMatchObject({ versions: [{ origin: 'imported', materialLength: 32 }] });
    const s = await keys('import', 'imp-secret', '--type', 'secret', '--file', join(dir, 'secret.b64'), '--encoding', 'base64', '--json');
    expect(json(s).key).toMatchObject({ versions: [{ origin: 'imported', materialLength: 100 }] });
    const e = await keys('import', 'imp-ed', '--type', 'ed25519', '--file', join(dir, 'ed.pem'), '--json');
    expect(json(e).key).toMatchObject({ type: 'ed25519', exportable: false });
    const r = await keys('rotate', 'imp-aes', '--file', join(dir, 'aes.bin'), '--json');
    expect(json(r).key).toMatchObject({ currentVersion: 2 });

    writeFileSync(join(dir, 'short.bin'), randomBytes(31), { mode: 0o600 });
    const bad = await keys('import', 'bad', '--type', 'aes-256', '--file', join(dir, 'short.bin'), '--json');
    expect(bad.code).toBe(2);
    expect(json(bad).errors![0]!.code).toBe('ERR_KEY_MATERIAL');
    expect(bad.stdout).not.toMatch(/[0-9a-f]{40}/);
  });

  it('uses exit codes: 2 for usage, 1 for refusals, 3 when the broker is unreachable', async () => {
    const noKey = await custody({}, 'keys', 'list', '--broker', server.url, '--json');
    expect(noKey.code).toBe(2);
    expect(json(noKey).errors![0]!.code).toBe('ERR_USAGE');
    const viaEnv = await custody({ CUSTODY_API_KEY: (await import('node:fs')).readFileSync(adminKeyFile, 'utf8') }, 'keys', 'list', '--broker', server.url, '--json');
    expect(viaEnv.code, viaEnv.stderr).toBe(0);
    const badType = await keys('create', 'x', '--type', 'rsa', '--json');
    expect(badType.code).toBe(2);
    const workload = await custody({}, 'keys', 'list', '--broker', server.url, '--api-key-file', workloadKeyFile, '--json');
    expect(workload.code).toBe(1);
    expect(json(workload).errors![0]!.code).toBe('ERR_AUTH_ROLE');
    const missing = await keys('revoke', 'no-such-key', '--json');
    expect(missing.code).toBe(1);
    expect(json(missing).errors![0]!.code).toBe('ERR_KEY_NOT_FOUND');
    const offline = await custody({}, 'keys', 'list', '--broker', 'http://127.0.0.1:9', '--api-key-file', adminKeyFile, '--json');
    expect(offline.code).toBe(3);
    expect(json(offline).errors![0]!.code).toBe('ERR_SERVICE_UNAVAILABLE');
  });

  it('refuses a broker URL with credentials or a query (exit 2) without printing it', async () => {
    for (const broker of [`${server.url.replace('http://', 'http://admin:s3cr3t@')}`, `ftp://admin:s3cr3t@127.0.0.1:9`, `${server.url}/?s3cr3t=1`]) {
      const r = await custody({}, 'keys', 'list', '--broker', broker, '--api-key-file', adminKeyFile, '--json');
      expect(r.code, broker).toBe(2);
      expect(json(r).errors![0]!.code).toBe('ERR_USAGE');
      expect(json(r).errors![0]!.message).toContain('--broker');
      expect(r.stdout + r.stderr).not.toContain('s3cr3t');
    }
  });

  it('api-key create writes a new key 0600 and shows it nowhere; list shows it; revoke ends it (a revoked key exits 2)', async () => {
    const out = join(dir, 'gateway-workload.key');
    const created = await keys('api-key', 'create', '--role', 'workload', '--label', 'gateway replica 1', '--out', out, '--json');
    expect(created.code, created.stderr).toBe(0);
    const made = JSON.parse(created.stdout) as { apiKey: { id: string; role: string; label: string }; keyFile: string };
    expect(made.apiKey).toMatchObject({ role: 'workload', label: 'gateway replica 1' });
    const token = readFileSync(out, 'utf8').trim();
    expect(statSync(out).mode & 0o777).toBe(0o600);
    expect(created.stdout + created.stderr).not.toContain(token.slice(-20));
    // The new key authenticates: a workload key is refused admin work by role, not as unknown.
    const asWorkload = await custody({}, 'keys', 'list', '--broker', server.url, '--api-key-file', out, '--json');
    expect(json(asWorkload).errors![0]!.code).toBe('ERR_AUTH_ROLE');
    const listed = await keys('api-key', 'list', '--json');
    expect((JSON.parse(listed.stdout) as { apiKeys: { id: string }[] }).apiKeys.map((k) => k.id)).toContain(made.apiKey.id);
    expect(listed.stdout).not.toContain(token.slice(-20));
    expect((await keys('api-key', 'revoke', made.apiKey.id)).code).toBe(0);
    const revoked = await custody({}, 'keys', 'list', '--broker', server.url, '--api-key-file', out, '--json');
    expect(revoked.code).toBe(2);
    expect(json(revoked).errors![0]!.code).toBe('ERR_AUTH_INVALID');
    // Usage: an unknown role, and a file that exists already (never overwritten).
    expect((await keys('api-key', 'create', '--role', 'root', '--label', 'x', '--out', join(dir, 'x.key'))).code).toBe(2);
    const again = await keys('api-key', 'create', '--role', 'workload', '--label', 'y', '--out', out, '--json');
    expect(again.code).toBe(2);
    expect(readFileSync(out, 'utf8').trim()).toBe(token);
  });
});
