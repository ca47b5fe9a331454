import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
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
  "import { Command } from 'commander'; const { register } = await import('./src/commands/receipt.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";

function custody(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--', ...args], { cwd: cliDir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
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

  it('its help names the log `custody up` writes receipts to', () => {
    const h = custody('receipt', 'verify', '--help');
    expect(h.code).toBe(0);
    expect(h.stdout).toContain("--vkey 'custody.local/ledger+...'");
  });
});
