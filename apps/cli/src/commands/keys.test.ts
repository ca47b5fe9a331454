import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
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

type Answer = { status: number; body: string };

/**
 * A proxy in front of the broker: `intercept` answers each request, usually by forwarding it and
 * looking at (or replacing) the answer, e.g. to make the key file unwritable once a key is issued.
 */
async function proxyBroker(intercept: (method: string, path: string, forward: () => Promise<Answer>) => Promise<Answer>): Promise<{ url: string; close(): Promise<void> }> {
  const proxy: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const headers: Record<string, string> = {};
        for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
        const body = Buffer.concat(chunks);
        const forward = async (): Promise<Answer> => {
          const answer = await fetch(server.url + req.url, { method: req.method!, headers, ...(body.length ? { body } : {}) });
          return { status: answer.status, body: await answer.text() };
        };
        const { status, body: text } = await intercept(req.method!, req.url!, forward);
        res.writeHead(status, { 'content-type': status < 400 ? 'application/json' : 'application/problem+json' }).end(text);
      })();
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const { port } = proxy.address() as { port: number };
  return { url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((r) => proxy.close(() => r())) };
}

/** What printed text must not hold: control characters but newline, and a bidirectional override. */
// eslint-disable-next-line no-control-regex
const UNPRINTED = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202e]/;

type ApiKeyRow = { id: string; label: string; role: string; revokedAt?: string };
const apiKeyRows = async () => (JSON.parse((await keys('api-key', 'list', '--json')).stdout) as { apiKeys: ApiKeyRow[] }).apiKeys;

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

  it('api-key create claims --out before the broker issues a key: an unwritable --out issues none', async () => {
    const before = (await apiKeyRows()).length;
    symlinkSync(join(dir, 'nowhere'), join(dir, 'dangling'));
    writeFileSync(join(dir, 'plain'), '');
    for (const [out, code] of [
      [join(dir, 'no-such-dir', 'k'), 'ERR_FILE_UNWRITABLE'],
      [join(dir, 'dangling'), 'ERR_FILE_EXISTS'],
      [join(dir, 'plain', 'k'), 'ERR_FILE_UNWRITABLE'],
    ] as const) {
      const r = await keys('api-key', 'create', '--role', 'admin', '--label', 'orphan', '--out', out, '--json');
      expect(r.code, out).not.toBe(0);
      expect(json(r).errors![0]!.code, out).toBe(code);
    }
    expect(existsSync(join(dir, 'nowhere'))).toBe(false);
    expect((await apiKeyRows()).length).toBe(before);
  });

  it('api-key create: concurrent runs on one --out issue one key; a file name of 240 characters works', async () => {
    const out = join(dir, 'raced.key');
    const runs = await Promise.all([1, 2, 3, 4].map(() => keys('api-key', 'create', '--role', 'admin', '--label', 'raced', '--out', out, '--json')));
    expect(runs.filter((r) => r.code === 0)).toHaveLength(1);
    const raced = (await apiKeyRows()).filter((k) => k.label === 'raced');
    expect(raced).toHaveLength(1);
    expect(readFileSync(out, 'utf8')).toMatch(new RegExp(`^cst_${raced[0]!.id}_[A-Za-z0-9_-]{43}\n$`));

    const long = join(dir, 'k'.repeat(240));
    const r = await keys('api-key', 'create', '--role', 'workload', '--label', 'long name', '--out', long, '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(readFileSync(long, 'utf8')).toMatch(/^cst_/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('api-key create: a key file that cannot be written after the key was issued gets the key revoked, and says so', async () => {
    const outDir = join(dir, 'vanishing');
    const out = join(outDir, 'k');
    let revokeRefused = false;
    const proxy = await proxyBroker(async (method, path, forward) => {
      // The directory goes away while the broker issues the key.
      if (method === 'POST' && path === '/v1/api-keys') rmSync(outDir, { recursive: true, force: true });
      if (method === 'POST' && path.endsWith('/revoke') && revokeRefused) return { status: 503, body: '{}' };
      return forward();
    });
    try {
      const run = (label: string) => custody({}, 'keys', 'api-key', 'create', '--role', 'admin', '--label', label, '--out', out, '--broker', proxy.url, '--api-key-file', adminKeyFile, '--json');
      mkdirSync(outDir);
      const r = await run('unwritten');
      expect(r.code).toBe(3);
      const err = json(r).errors![0]! as { code: string; message: string; detail: { apiKeyId: string; apiKeyRevoked: boolean } };
      expect(err.code).toBe('ERR_FILE_UNWRITABLE');
      expect(err.detail.apiKeyRevoked).toBe(true);
      expect(err.message).toContain(`the new API key ${err.detail.apiKeyId} was revoked at the broker`);
      expect(err.message).not.toContain('nothing was written');
      expect(r.stdout + r.stderr).not.toMatch(/cst_[0-9a-f]{16}_/);
      expect((await apiKeyRows()).find((k) => k.id === err.detail.apiKeyId)?.revokedAt).toBeDefined();

      // The revocation fails too: the error names the key to revoke.
      revokeRefused = true;
      mkdirSync(outDir);
      const r2 = await run('unrevoked');
      const err2 = json(r2).errors![0]! as { code: string; message: string; detail: { apiKeyId: string; apiKeyRevoked: boolean } };
      expect(err2.detail.apiKeyRevoked).toBe(false);
      expect(err2.message).toContain(`revoke it with \`custody keys api-key revoke ${err2.detail.apiKeyId}\``);
      expect(r2.stdout + r2.stderr).not.toMatch(/cst_[0-9a-f]{16}_/);
      expect((await apiKeyRows()).find((k) => k.id === err2.detail.apiKeyId)?.revokedAt).toBeUndefined();
      expect((await keys('api-key', 'revoke', err2.detail.apiKeyId)).code).toBe(0);
    } finally {
      await proxy.close();
    }
  });

  it('api-key labels: the broker refuses control characters; the CLI prints what the broker says as printable text', async () => {
    const out = join(dir, 'injected.key');
    const forged = 'x\nd828cc4d9cdc91f6  admin     revoked  \u001b[2Jforged\u0007';
    const refused = await keys('api-key', 'create', '--role', 'workload', '--label', forged, '--out', out, '--json');
    expect(refused.code).toBe(2);
    expect(json(refused).errors![0]!.code).toBe('ERR_INPUT_MALFORMED');
    expect(existsSync(out)).toBe(false);
    expect((await apiKeyRows()).some((k) => k.label.includes('forged'))).toBe(false);

    // A broker (an older one, say) that answers with such a label: printed escaped, one line per key.
    const proxy = await proxyBroker(async (method, path, forward) => {
      const answer = await forward();
      if (path !== '/v1/api-keys') return answer;
      const evil = (label: string) => label + forged + '\u009b2J\u202e';
      if (method === 'GET') {
        const list = JSON.parse(answer.body) as { apiKeys: ApiKeyRow[] };
        return { status: answer.status, body: JSON.stringify({ apiKeys: list.apiKeys.map((k) => ({ ...k, label: evil(k.label) })) }) };
      }
      const made = JSON.parse(answer.body) as { token: string; apiKey: ApiKeyRow };
      return { status: answer.status, body: JSON.stringify({ ...made, apiKey: { ...made.apiKey, label: evil(made.apiKey.label) } }) };
    });
    try {
      const list = await custody({}, 'keys', 'api-key', 'list', '--broker', proxy.url, '--api-key-file', adminKeyFile);
      expect(list.code, list.stderr).toBe(0);
      expect(list.stdout).not.toMatch(UNPRINTED);
      const rows = list.stdout.trimEnd().split('\n');
      expect(rows).toHaveLength((await apiKeyRows()).length);
      expect(rows.every((row) => /^[0-9a-f]{16} {2}/.test(row))).toBe(true);
      expect(rows.some((row) => row.includes('\\u{1b}[2Jforged'))).toBe(true);
      const created = await custody({}, 'keys', 'api-key', 'create', '--role', 'workload', '--label', 'printed', '--out', out, '--broker', proxy.url, '--api-key-file', adminKeyFile);
      expect(created.code, created.stderr).toBe(0);
      expect(created.stdout).not.toMatch(UNPRINTED);
      expect(created.stdout.trimEnd().split('\n')).toHaveLength(1);
    } finally {
      await proxy.close();
    }
  });

  it('an API key that is no bearer token (CR/LF, NUL) is ERR_AUTH_INVALID, exit 2, not "unreachable", and is not echoed', async () => {
    const nul = join(dir, 'nul.key');
    const secret = 'cst_0123456789abcdef_SECRETSECRETSECRET';
    writeFileSync(nul, `${secret}\u0000tail`, { mode: 0o600 });
    for (const r of [
      await custody({ CUSTODY_API_KEY: `${secret}\r\nX-Injected: 1` }, 'keys', 'list', '--broker', server.url, '--json'),
      await custody({}, 'keys', 'list', '--broker', server.url, '--api-key-file', nul, '--json'),
      await custody({ CUSTODY_API_KEY: `${secret}\r\nX-Injected: 1` }, 'keys', 'list', '--broker', server.url),
    ]) {
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(r.stdout + r.stderr).toContain('ERR_AUTH_INVALID');
      expect(r.stdout + r.stderr).not.toContain('SECRETSECRET');
      expect(r.stdout + r.stderr).not.toContain('X-Injected');
    }
  });

  it('refuses the key names . and .. (ERR_KEY_NAME, exit 2), not "no such route"', async () => {
    for (const args of [['revoke', '.'], ['rotate', '..'], ['create', '..', '--type', 'aes-256']]) {
      const r = await keys(...args, '--json');
      expect(r.code, args.join(' ')).toBe(2);
      expect(json(r).errors![0]!.code, args.join(' ')).toBe('ERR_KEY_NAME');
    }
  });
});
