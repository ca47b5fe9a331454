import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createConfidentialFetch, type Receipt } from '@custody/sdk';
import { DEMO_MODEL_ID } from '@custody/gateway-service';
import { startTestGateway, type TestGateway } from '@custody/gateway-service/testing';

// Runs `custody receipt verify` through this module's `register`, in a child process, so exit
// codes and output are the real ones; the receipt, bundle, JWKS and proof are a test gateway's.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "const { CustodyCommand } = await import('./src/output.ts'); const { register } = await import('./src/commands/receipt.ts'); " +
  "const program = new CustodyCommand().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";

function custody(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--', ...args], { cwd: cliDir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The same, without blocking: the tampered twins run side by side. */
function custodyAsync(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--', ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr }));
  });
}

let dir: string;
let gw: TestGateway;
let vkey: string;
const f = (name: string) => join(dir, name);

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-receipt-cli-'));
  gw = await startTestGateway();
  const receipts: Receipt[] = [];
  const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, onReceipt: (r) => receipts.push(r) });
  const res = await cfetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.apiKey}` },
    body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'Summarise the quarterly report.' }] }),
  });
  writeFileSync(f('response.json'), new Uint8Array(await res.arrayBuffer()));
  await cfetch.receiptOf(res);
  const receipt = receipts[0]!;
  writeFileSync(f('receipt.json'), JSON.stringify(receipt, null, 2));
  writeFileSync(f('bundle.json'), JSON.stringify(cfetch.lastBundle!, null, 2));
  writeFileSync(f('jwks.json'), JSON.stringify(gw.jwks));
  writeFileSync(f('receipt.tlog-proof'), await (await fetch(`${gw.url}/.well-known/custody/ledger/proof/${receipt.ledger!.index}`)).text());
  vkey = /^log (\S+)/m.exec(gw.ledger.tlogPolicyText)![1]!;
}, 60_000);
afterAll(async () => {
  await gw.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('custody receipt verify', () => {
  const args = () => [f('receipt.json'), '--bundle', f('bundle.json'), '--jwks', f('jwks.json'), '--allow-simulated', '--response', f('response.json'), '--vkey', vkey, '--json'];

  it('verifies every link of a real receipt (exit 0)', () => {
    const r = custody('receipt', 'verify', ...args(), '--proof', f('receipt.tlog-proof'));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true });
  });

  it('a proof file that is no tlog-proof is bad input (exit 2, ERR_TLOG_PROOF), as for `custody log verify`; a wrong proof is not verified (exit 1)', () => {
    for (const text of ['', 'garbage', 'c2sp.org/tlog-proof@v1\nindex x\n\n']) {
      writeFileSync(f('bad.tlog-proof'), text);
      const r = custody('receipt', 'verify', ...args(), '--proof', f('bad.tlog-proof'));
      expect(r.code, `${JSON.stringify(text)}: ${r.stdout}${r.stderr}`).toBe(2);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_TLOG_PROOF' }] });
    }
    // Its tampered twin: a well-formed proof for another index.
    writeFileSync(f('moved.tlog-proof'), readFileSync(f('receipt.tlog-proof'), 'utf8').replace(/^index (\d+)$/m, (_l, i: string) => `index ${Number(i) + 1}`));
    const moved = custody('receipt', 'verify', ...args(), '--proof', f('moved.tlog-proof'));
    expect(moved.code, moved.stdout + moved.stderr).toBe(1);
    expect(JSON.parse(moved.stdout)).toMatchObject({ ok: false, error: { step: 'ledger', code: expect.stringMatching(/^ERR_TLOG_/) as string } });
  });

  it('refuses --tlog-policy and --vkey together (exit 2): the vkey would be silently ignored', () => {
    writeFileSync(f('tlog-policy.txt'), gw.ledger.tlogPolicyText);
    const r = custody('receipt', 'verify', ...args(), '--proof', f('receipt.tlog-proof'), '--tlog-policy', f('tlog-policy.txt'));
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE' }] });
    const { code } = custody('receipt', 'verify', ...args().filter((a) => a !== '--vkey' && a !== vkey), '--proof', f('receipt.tlog-proof'), '--tlog-policy', f('tlog-policy.txt'));
    expect(code).toBe(0);
  });

  it('its help names the log `custody up` writes receipts to, what is checked, and what is reported as not checked', () => {
    const h = custody('receipt', 'verify', '--help');
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("--vkey 'custody.local/ledger+...'");
    expect(h.stdout).toContain('--strict');
    expect(h.stdout).toContain('"not checked"');
  });

  it("a usage error commander finds itself is the command's JSON failure with --json (ERR_USAGE, exit 2), text without it", () => {
    for (const extra of [['--bogus'], ['--min-gpus', 'nine']]) {
      const j = custody('receipt', 'verify', ...args(), ...extra);
      expect(j.code, j.stdout + j.stderr).toBe(2);
      expect(j.stderr).toBe('');
      expect(JSON.parse(j.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE' }] });
    }
    const t = custody('receipt', 'verify', ...args().filter((a) => a !== '--json'), '--bogus');
    expect(t.code).toBe(2);
    expect(t.stdout).toBe('');
    expect(t.stderr).toMatch(/^error: unknown option '--bogus'/);
  });
});

describe('custody receipt verify --strict: the broker appraised this gateway, proved from the ledger as the SDK strict mode does', () => {
  const base = () => [f('receipt.json'), '--bundle', f('bundle.json'), '--jwks', f('jwks.json'), '--allow-simulated', '--response', f('response.json'), '--proof', f('receipt.tlog-proof'), '--vkey', vkey];
  const steps = (stdout: string) => (JSON.parse(stdout) as { steps: { name: string; ok: boolean; ran: boolean; detail: string }[] }).steps;

  it("proves the bundle's appraisal record under the ledger's key (exit 0); without --strict that record is reported as not checked", () => {
    const r = custody('receipt', 'verify', ...base(), '--strict', '--json');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { ok: boolean; gateway: { steps: { name: string; ran: boolean; ok: boolean }[] } };
    expect(doc.ok).toBe(true);
    expect(doc.gateway.steps.find((s) => s.name === 'ledger')).toMatchObject({ ok: true, ran: true });
    expect(steps(r.stdout).find((s) => s.name === 'gateway')?.detail).toMatch(/strict: the broker's appraisal is entry \d+ of /);
    // The bundle's fields beside its evidence and EAR: which are checked, which are not.
    expect(steps(r.stdout).find((s) => s.name === 'binding')?.detail).toMatch(/the bundle's platform, mode, policy version, model are the attested and signed ones; not checked \(nothing signs them\): its issuedAt and model label$/);
    const text = custody('receipt', 'verify', ...base(), '--strict');
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/ok {4}gateway .*strict: the broker's appraisal is entry \d+/);
    const lax = custody('receipt', 'verify', ...base());
    expect(lax.code).toBe(0);
    expect(lax.stdout).toMatch(/ok {4}gateway .*not checked: the bundle's ledger record of the appraisal \(index \d+\), strict mode off/);
  });

  it('needs the ledger trust: --strict without --tlog-policy or --vkey is a usage error (exit 2)', () => {
    const r = custody('receipt', 'verify', f('receipt.json'), '--bundle', f('bundle.json'), '--jwks', f('jwks.json'), '--allow-simulated', '--strict', '--json');
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE' }] });
  });

  // Each bundle field an auditor sees or relies on: changed, it fails with its code, or it is
  // reported as not checked; it is never shown as verified.
  type Bundle = Record<string, unknown> & { ledger: { index: number; event: Record<string, unknown>; proof: string }; model: Record<string, unknown> };
  const twins: { field: string; change: (b: Bundle) => void; fails?: { step: string; code: string | RegExp }; notChecked?: { step: string; text: RegExp }; strict?: false }[] = [
    { field: 'ledger.index', change: (b) => (b.ledger.index += 1), fails: { step: 'gateway', code: 'ERR_TLOG_INCLUSION' } },
    { field: 'ledger.event', change: (b) => (b.ledger.event.time = '2020-01-01T00:00:00Z'), fails: { step: 'gateway', code: 'ERR_TLOG_INCLUSION' } },
    { field: 'ledger.event (another EAR)', change: (b) => (b.ledger.event = { ...b.ledger.event, resultDigest: `sha256:${'ab'.repeat(32)}` }), fails: { step: 'gateway', code: 'ERR_TLOG_INCLUSION' } },
    // A proof for another index: a well-formed one that does not lead to the root, or one out of the tree.
    { field: 'ledger.proof', change: (b) => (b.ledger.proof = b.ledger.proof.replace(/^index (\d+)$/m, (_l, i: string) => `index ${Number(i) + 1}`)), fails: { step: 'gateway', code: /^ERR_TLOG_(INCLUSION|PROOF)$/ } },
    { field: 'ledger (removed)', change: (b) => delete (b as Partial<Bundle>).ledger, fails: { step: 'gateway', code: 'ERR_TLOG_INCLUSION' } },
    { field: 'ledger.index without --strict', change: (b) => (b.ledger.index += 1), notChecked: { step: 'gateway', text: /not checked: the bundle's ledger record/ }, strict: false },
    { field: 'model.digest', change: (b) => (b.model.digest = `sha256:${'0'.repeat(64)}`), fails: { step: 'binding', code: 'ERR_RECEIPT_MISMATCH' } },
    { field: 'model.backend', change: (b) => (b.model.backend = 'vllm'), fails: { step: 'binding', code: 'ERR_RECEIPT_MISMATCH' } },
    { field: 'model.id', change: (b) => (b.model.id = 'gpt-5'), notChecked: { step: 'binding', text: /not checked: its model gpt-5, not the one that answered \(custody-demo\)/ } },
    { field: 'model.label', change: (b) => (b.model.label = 'GPT-5'), notChecked: { step: 'binding', text: /not checked \(nothing signs them\): its issuedAt and model label/ } },
    { field: 'policyVersion', change: (b) => (b.policyVersion = `${String(b.policyVersion).slice(0, -1)}0`), fails: { step: 'binding', code: 'ERR_RECEIPT_MISMATCH' } },
    { field: 'issuedAt', change: (b) => (b.issuedAt = '2020-01-01T00:00:00Z'), notChecked: { step: 'binding', text: /not checked \(nothing signs them\): its issuedAt/ } },
    { field: 'simulated', change: (b) => (b.simulated = false), fails: { step: 'binding', code: 'ERR_EVIDENCE_BINDING' } },
  ];

  it('every tampered twin of a bundle field fails with its code at its step (exit 1), or is reported as not checked', async () => {
    const original = JSON.parse(readFileSync(f('bundle.json'), 'utf8')) as Bundle;
    // The fixture's bundle carries every field these twins change.
    expect(original.ledger.proof).toBeTypeOf('string');
    expect(original).toHaveProperty('policyVersion');
    expect(original.model).toHaveProperty('digest');
    const results = await Promise.all(
      twins.map(async (t, i) => {
        const b = structuredClone(original);
        t.change(b);
        writeFileSync(f(`twin-${i}.json`), JSON.stringify(b));
        const argv = base().map((a) => (a === f('bundle.json') ? f(`twin-${i}.json`) : a));
        return { t, r: await custodyAsync('receipt', 'verify', ...argv, ...(t.strict === false ? [] : ['--strict']), '--json') };
      }),
    );
    for (const { t, r } of results) {
      const doc = JSON.parse(r.stdout) as { ok: boolean; error?: { step: string; code: string }; steps: { name: string; detail: string }[] };
      if (t.fails) {
        const code = typeof t.fails.code === 'string' ? t.fails.code : expect.stringMatching(t.fails.code);
        expect({ field: t.field, code: r.code, error: doc.error }).toMatchObject({ field: t.field, code: 1, error: { step: t.fails.step, code } });
      } else {
        expect({ field: t.field, code: r.code, ok: doc.ok }).toEqual({ field: t.field, code: 0, ok: true });
        expect(doc.steps.find((s) => s.name === t.notChecked!.step)?.detail, t.field).toMatch(t.notChecked!.text);
      }
    }
  }, 180_000);
});
