import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startBroker, type StartedBroker } from '@custody/broker-service';

// `custody policy delete` through this module's `register`, in a child process (real exit codes
// and output), against a broker started in this process.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register } = await import('./src/commands/policy.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { process.exit(2); }";

function run(env: Record<string, string>, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--', ...args], {
      cwd: cliDir,
      env: { ...process.env, NO_COLOR: '1', CUSTODY_API_KEY: '', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => res({ code, stdout, stderr }));
  });
}

describe('custody policy delete against a broker', () => {
  let dir: string;
  let broker: StartedBroker;
  let adminKeyFile: string;
  let auditorKeyFile: string;
  const policyText = 'apiVersion: custody.dev/policy/v1\nid: cli-del\nversion: 2\nallowSimulated: true\nplatforms:\n  sim:\n    measurement: "' + 'cd'.repeat(48) + '"\n';

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'custody-policy-delete-'));
    broker = await startBroker({ dataDir: join(dir, 'state'), tenant: 'acme' });
    adminKeyFile = join(dir, 'admin.key');
    writeFileSync(adminKeyFile, broker.adminKey! + '\n', { mode: 0o600 });
    const admin = { tenant: 'acme', role: 'admin' as const, subject: 'apikey:test' };
    const auditor = await broker.broker.service.createApiKey(admin, { tenant: 'acme', role: 'auditor', label: 'a' });
    auditorKeyFile = join(dir, 'auditor.key');
    writeFileSync(auditorKeyFile, auditor.token, { mode: 0o600 });
    await broker.broker.policies.set(admin, 'acme', policyText);
  }, 60_000);

  afterAll(async () => {
    await broker?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses an auditor (exit 1), another tenant (exit 1) and a missing --tenant (exit 2); nothing changes', async () => {
    const auditor = await run({}, 'policy', 'delete', '--tenant', 'acme', '--broker', broker.url, '--api-key-file', auditorKeyFile, '--json');
    expect(auditor.code).toBe(1);
    expect(JSON.parse(auditor.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_AUTH_ROLE' }] });
    const cross = await run({}, 'policy', 'delete', '--tenant', 'globex', '--broker', broker.url, '--api-key-file', adminKeyFile, '--json');
    expect(cross.code).toBe(1);
    expect(JSON.parse(cross.stdout)).toMatchObject({ errors: [{ code: 'ERR_AUTH_TENANT' }] });
    const usage = await run({}, 'policy', 'delete', '--broker', broker.url, '--api-key-file', adminKeyFile);
    expect(usage.code).toBe(2);
    expect((await broker.broker.policies.resolve('acme')).document.id).toBe('cli-del');
  });

  it('deletes (exit 0): the file policy is in force; again: exit 1 ERR_POLICY_NOT_STORED, or 0 with --missing-ok', async () => {
    const del = await run({ CUSTODY_API_KEY: broker.adminKey! }, 'policy', 'delete', '--tenant', 'acme', '--broker', broker.url, '--json');
    expect(del.code, del.stderr).toBe(0);
    expect(JSON.parse(del.stdout)).toMatchObject({ ok: true, tenant: 'acme', deleted: { id: 'cli-del', version: 2, revision: 1 }, inForce: { source: 'file', id: 'default-deny' } });
    expect((await broker.broker.policies.resolve('acme')).document.id).toBe('default-deny');

    const again = await run({}, 'policy', 'delete', '--tenant', 'acme', '--broker', broker.url, '--api-key-file', adminKeyFile);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('ERR_POLICY_NOT_STORED');
    const ok = await run({}, 'policy', 'delete', '--tenant', 'acme', '--missing-ok', '--broker', broker.url, '--api-key-file', adminKeyFile, '--json');
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.stdout)).toEqual({ ok: true, tenant: 'acme', deleted: null });

    await broker.broker.policies.set({ tenant: 'acme', role: 'admin', subject: 'apikey:test' }, 'acme', policyText);
    const text = await run({}, 'policy', 'delete', '--tenant', 'acme', '--broker', broker.url, '--api-key-file', adminKeyFile);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('policy cli-del version 2 (revision 1) deleted for tenant acme');
    expect(text.stdout).toContain('now in force  default-deny version 1');
  });

  it('exit 3 when the broker is unreachable', async () => {
    const down = await run({}, 'policy', 'delete', '--tenant', 'acme', '--broker', 'http://127.0.0.1:1', '--api-key-file', adminKeyFile, '--json');
    expect(down.code).toBe(3);
    expect(JSON.parse(down.stdout)).toMatchObject({ errors: [{ code: 'ERR_SERVICE_UNAVAILABLE' }] });
  });
});
