import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConfidentialFetch, type AttestationBundle } from '@custody/sdk';
import { startIdentityBroker, type IdentityBroker } from '../../../../services/gateway/src/testing/identity-broker.js';

// `custody gateway serve --broker URL --identity-key NAME`: two processes given one identity key
// by the broker service publish the same OHTTP and receipt keys; without --broker the option
// is a usage error.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register } = await import('./src/commands/gateway.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];
const DEV_MEASUREMENT = '00'.repeat(48);

const children: ChildProcessWithoutNullStreams[] = [];
let ib: IdentityBroker;
let workloadKey: string;

beforeAll(async () => {
  ib = await startIdentityBroker([DEV_MEASUREMENT]);
  await ib.importIdentityKey('gw-identity', randomBytes(32), [DEV_MEASUREMENT]);
  workloadKey = (await ib.broker.admin.createApiKey('workload', 'cli replicas')).token;
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await ib?.close();
});

function run(args: string[], env: Record<string, string> = {}): { child: ChildProcessWithoutNullStreams; json: Promise<Record<string, unknown>>; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', ...env } });
  children.push(child);
  let out = '';
  const exit = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const json = new Promise<Record<string, unknown>>((res, rej) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      try {
        res(JSON.parse(out) as Record<string, unknown>);
      } catch {
        // not complete yet
      }
    });
    void exit.then((code) => rej(new Error(`exited ${code}: ${out}`)));
  });
  return { child, json, exit };
}

describe('custody gateway serve --identity-key', () => {
  it('two replicas publish the same keys, and a client verified on one is served by the other', async () => {
    const args = ['gateway', 'serve', '--port', '0', '--json', '--api-key', 'sk-cli-replica-0001', '--broker', ib.url, '--broker-tenant', 'acme', '--identity-key', 'gw-identity'];
    const env = { CUSTODY_BROKER_API_KEY: workloadKey };
    const [a, b] = [run(args, env), run(args, env)];
    const [ja, jb] = await Promise.all([a.json, b.json]);
    expect(ja, JSON.stringify(ja)).toMatchObject({ ok: true });
    const bundles = await Promise.all([ja, jb].map(async (j) => (await (await fetch(`${j.url as string}/.well-known/custody/attestation`)).json()) as AttestationBundle));
    expect(bundles[0]!.ohttpKeys).toBe(bundles[1]!.ohttpKeys);
    expect(bundles[0]!.receiptKey).toEqual(bundles[1]!.receiptKey);
    expect(bundles[0]!.evidence).not.toBe(bundles[1]!.evidence);
    // Verified on A, sent to B.
    const cfetch = createConfidentialFetch({
      gateway: ja.url as string,
      jwks: ib.jwks,
      allowSimulated: true,
      fetch: (input, init) => {
        const u = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
        return fetch((u.pathname === '/ohttp' ? (jb.url as string) : (ja.url as string)) + u.pathname, init);
      },
    });
    const res = await cfetch(`${ja.url as string}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: 'Bearer sk-cli-replica-0001', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'custody-demo', messages: [{ role: 'user', content: 'hello replica' }] }),
    });
    expect(res.status).toBe(200);
    await expect(cfetch.receiptOf(res)).resolves.toBeTruthy();
    a.child.kill('SIGTERM');
    b.child.kill('SIGTERM');
    expect(await Promise.all([a.exit, b.exit])).toEqual([0, 0]);
  }, 90_000);

  it('--identity-key without --broker is a usage error (exit 2)', async () => {
    const r = run(['gateway', 'serve', '--port', '0', '--json', '--identity-key', 'gw-identity']);
    r.json.catch(() => undefined);
    let out = '';
    r.child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    expect(await r.exit).toBe(2);
    expect(out).toContain('ERR_USAGE');
  }, 30_000);
});
