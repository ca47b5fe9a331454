import { describe, it, expect, beforeAll, afterAll } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as F from '../../../../packages/policy/src/testing/claims.js';
import { readPolicyText } from '@custody/policy';
import { startBroker, type StartedBroker } from '@custody/broker-service';

// Runs `custody policy ...` through this module's `register`, in a child process, so exit codes
// and stdout are the real ones.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register } = await import('./src/commands/policy.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { process.exit(2); }";

function custody(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--', ...args], {
    cwd: cliDir,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

let dir: string;
const at = '2025-06-01T12:00:00Z';

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'custody-policy-'));
  writeFileSync(join(dir, 'policy.yaml'), F.POLICY_YAML);
  writeFileSync(join(dir, 'bad.yaml'), F.POLICY_YAML.replace('version: 3', 'version: three'));
  writeFileSync(join(dir, 'snp.json'), JSON.stringify(F.snpClaims()));
  const gpu = F.nvidiaClaims();
  gpu.measurements.measurement10 = '00'.repeat(48);
  writeFileSync(join(dir, 'composite.json'), JSON.stringify({ cpu0: F.tdxClaims(), gpu0: gpu }));
  writeFileSync(join(dir, 'sim.json'), JSON.stringify([F.simClaims()]));
  writeFileSync(join(dir, 'garbage.json'), '{not json');
  writeFileSync(join(dir, 'debug-allowed.yaml'), F.POLICY_YAML.replace('version: 3', 'version: 3\nallowDebug: true'));
  writeFileSync(join(dir, 'snp-debug.json'), JSON.stringify({ ...F.snpClaims(), debug: true }));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('custody policy', () => {
  it('test: affirming claims exit 0', () => {
    const r = custody('policy', 'test', '--policy', join(dir, 'policy.yaml'), '--claims', join(dir, 'snp.json'), '--at', at);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('cpu0 (sev-snp): affirming');
    expect(r.stdout).toContain('verdict: affirming');
  });

  it('test --json: a wrong GPU measurement exits 1 with the reason', () => {
    const r = custody('policy', 'test', '--policy', join(dir, 'policy.yaml'), '--claims', join(dir, 'composite.json'), '--at', at, '--json');
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout) as { ok: boolean; status: string; submods: Record<string, { status: string }>; reasons: { submod: string; code: string }[]; appraisedAt: string };
    expect(out).toMatchObject({ ok: false, status: 'contraindicated', appraisedAt: '2025-06-01T12:00:00.000Z' });
    expect(out.submods.cpu0!.status).toBe('affirming');
    expect(out.reasons).toEqual([expect.objectContaining({ submod: 'gpu0', code: 'ERR_EVIDENCE_MEASUREMENT' })]);
  });

  it('test: a warning verdict (a debug TEE a policy allows) exits 0 as the broker admits it, with the warning shown; refused without allowDebug', () => {
    const r = custody('policy', 'test', '--policy', join(dir, 'debug-allowed.yaml'), '--claims', join(dir, 'snp-debug.json'), '--at', at);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain('cpu0 (sev-snp): warning');
    expect(r.stdout).toMatch(/verdict: warning \(admitted by the broker/);
    const j = custody('policy', 'test', '--policy', join(dir, 'debug-allowed.yaml'), '--claims', join(dir, 'snp-debug.json'), '--at', at, '--json');
    expect([j.code, (JSON.parse(j.stdout) as { ok: boolean; status: string }).status]).toEqual([0, 'warning']);
    const refused = custody('policy', 'test', '--policy', join(dir, 'policy.yaml'), '--claims', join(dir, 'snp-debug.json'), '--at', at, '--json');
    expect([refused.code, JSON.parse(refused.stdout)]).toEqual([1, expect.objectContaining({ ok: false, status: 'contraindicated', reasons: expect.arrayContaining([expect.objectContaining({ code: 'ERR_EVIDENCE_DEBUG', tier: 'contraindicated' })]) as unknown })]);
  });

  it('test: simulated evidence is refused by the policy', () => {
    const r = custody('policy', 'test', '--policy', join(dir, 'policy.yaml'), '--claims', join(dir, 'sim.json'), '--json');
    expect(r.code).toBe(1);
    expect(JSON.parse(r.stdout)).toMatchObject({ status: 'contraindicated', reasons: [{ code: 'ERR_EVIDENCE_SIMULATED' }] });
  });

  it('test: an invalid policy, bad claims or a missing file exit 2', () => {
    const bad = custody('policy', 'test', '--policy', join(dir, 'bad.yaml'), '--claims', join(dir, 'snp.json'), '--json');
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_POLICY_INVALID' }] });
    const garbage = custody('policy', 'test', '--policy', join(dir, 'policy.yaml'), '--claims', join(dir, 'garbage.json'), '--json');
    expect(garbage.code).toBe(2);
    expect(JSON.parse(garbage.stdout)).toMatchObject({ errors: [{ code: 'ERR_INPUT_MALFORMED' }] });
    const missing = custody('policy', 'test', '--policy', join(dir, 'nope.yaml'), '--claims', join(dir, 'snp.json'));
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('ERR_FILE_NOT_FOUND');
    // Claims that are not objects at all (they crashed as ERR_INTERNAL), a JSON policy with a
    // repeated member (YAML refuses repeated keys, so JSON does too), and a rule that would run for hours.
    for (const [name, text] of [
      ['list-null.json', '[null]'],
      ['map-null.json', '{"cpu0":null}'],
      ['dup-claims.json', JSON.stringify(F.snpClaims()).replace('{', '{"platform":"tdx",')],
    ] as const) {
      writeFileSync(join(dir, name), text);
      const r = custody('policy', 'test', '--policy', join(dir, 'policy.yaml'), '--claims', join(dir, name), '--json');
      expect([name, r.code, (JSON.parse(r.stdout) as { errors: { code: string }[] }).errors[0]!.code]).toEqual([name, 2, 'ERR_INPUT_MALFORMED']);
    }
    const doc = readPolicyText(F.POLICY_YAML) as Record<string, unknown>;
    writeFileSync(join(dir, 'dup.json'), JSON.stringify({ ...doc, allowSimulated: false }).replace('{', '{"allowSimulated":true,'));
    const list = `[${Array(200).fill(1).join(',')}]`;
    writeFileSync(join(dir, 'slow.json'), JSON.stringify({ ...doc, rules: [{ id: 'slow', expr: `${list}.all(a, ${list}.all(b, ${list}.all(c, a == b)))`, claim: 'configuration', fail: 'contraindicated', reason: 'x' }] }));
    for (const name of ['dup.json', 'slow.json']) {
      const r = custody('policy', 'test', '--policy', join(dir, name), '--claims', join(dir, 'snp.json'), '--json');
      expect([name, r.code, (JSON.parse(r.stdout) as { errors: { code: string }[] }).errors[0]!.code]).toEqual([name, 2, 'ERR_POLICY_INVALID']);
    }
  });

  it('show: prints reference values and rules; without --policy the default rules', () => {
    const r = custody('policy', 'show', '--policy', join(dir, 'policy.yaml'), '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { policyId: string; document: { id: string }; rules: { id: string }[] };
    expect(out.policyId).toMatch(/^custody:policy:trainer:3:sha256:/);
    expect(out.rules.map((x) => x.id)).toContain('executables');
    const text = custody('policy', 'show');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('simulated');
    expect(text.stdout).toContain('!claims.debug');
  });
});

// `policy set|get` against a broker started in this process (so the child runs with async spawn).
describe('custody policy set|get against a broker', () => {
  let bdir: string;
  let broker: StartedBroker;
  let adminKeyFile: string;
  let auditorKeyFile: string;
  const policyText = 'apiVersion: custody.dev/policy/v1\nid: cli-set\nversion: 4\nallowSimulated: true\nplatforms:\n  sim:\n    measurement: "' + 'ab'.repeat(48) + '"\n';

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

  beforeAll(async () => {
    bdir = mkdtempSync(join(tmpdir(), 'custody-policy-set-'));
    broker = await startBroker({ dataDir: join(bdir, 'state'), tenant: 'acme' });
    adminKeyFile = join(bdir, 'admin.key');
    writeFileSync(adminKeyFile, broker.adminKey! + '\n', { mode: 0o600 });
    const auditor = await broker.broker.service.createApiKey({ tenant: 'acme', role: 'admin', subject: 'apikey:test' }, { tenant: 'acme', role: 'auditor', label: 'a' });
    auditorKeyFile = join(bdir, 'auditor.key');
    writeFileSync(auditorKeyFile, auditor.token, { mode: 0o600 });
    writeFileSync(join(bdir, 'policy.yaml'), policyText);
    writeFileSync(join(bdir, 'bad.yaml'), 'apiVersion: custody.dev/policy/v1\nid: x\n');
  }, 60_000);

  afterAll(async () => {
    await broker?.close();
    rmSync(bdir, { recursive: true, force: true });
  });

  it('set installs the policy; get shows it (stored, with its text); an auditor reads but cannot set', async () => {
    const before = await run({}, 'policy', 'get', '--broker', broker.url, '--api-key-file', adminKeyFile, '--json');
    expect(before.code, before.stderr).toBe(0);
    expect(JSON.parse(before.stdout)).toMatchObject({ ok: true, policy: { source: 'file', id: 'default-deny' } });

    const set = await run({}, 'policy', 'set', '--file', join(bdir, 'policy.yaml'), '--broker', broker.url, '--api-key-file', adminKeyFile, '--json');
    expect(set.code, set.stderr).toBe(0);
    const out = JSON.parse(set.stdout) as { ok: boolean; policy: Record<string, unknown> };
    expect(out).toMatchObject({ ok: true, policy: { tenant: 'acme', source: 'stored', id: 'cli-set', version: 4, revision: 1 } });
    expect(out.policy).not.toHaveProperty('text');
    expect((await broker.broker.policies.resolve('acme')).document.id).toBe('cli-set');

    const got = await run({ CUSTODY_API_KEY: readFileSync(auditorKeyFile, 'utf8') }, 'policy', 'get', '--broker', broker.url, '--json');
    expect(got.code, got.stderr).toBe(0);
    expect(JSON.parse(got.stdout)).toMatchObject({ policy: { source: 'stored', id: 'cli-set', revision: 1, text: policyText } });
    const text = await run({}, 'policy', 'get', '--broker', broker.url, '--api-key-file', adminKeyFile);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain('policy cli-set version 4 for tenant acme');
    expect(text.stdout).toContain('stored (custody policy set), revision 1');

    const denied = await run({}, 'policy', 'set', '--file', join(bdir, 'policy.yaml'), '--broker', broker.url, '--api-key-file', auditorKeyFile, '--json');
    expect(denied.code).toBe(1);
    expect(JSON.parse(denied.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_AUTH_ROLE' }] });
  });

  it('exit 2 for an invalid policy file or no API key, 3 for an unreachable broker; nothing changes', async () => {
    const bad = await run({}, 'policy', 'set', '--file', join(bdir, 'bad.yaml'), '--broker', broker.url, '--api-key-file', adminKeyFile, '--json');
    expect(bad.code).toBe(2);
    expect(JSON.parse(bad.stdout)).toMatchObject({ errors: [{ code: 'ERR_POLICY_INVALID' }] });
    const noKey = await run({}, 'policy', 'set', '--file', join(bdir, 'policy.yaml'), '--broker', broker.url);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('ERR_USAGE');
    const down = await run({}, 'policy', 'get', '--broker', 'http://127.0.0.1:1', '--api-key-file', adminKeyFile, '--json');
    expect(down.code).toBe(3);
    expect(JSON.parse(down.stdout)).toMatchObject({ errors: [{ code: 'ERR_SERVICE_UNAVAILABLE' }] });
    expect((await broker.broker.policies.resolve('acme')).document.id).toBe('cli-set');
  });
});
