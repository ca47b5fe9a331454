import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../../../test/vectors.js';

const data = mkdtempSync(join(tmpdir(), 'custody-up-'));
afterAll(() => rmSync(data, { recursive: true, force: true }));

function custody(...args: string[]) {
  return spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 120_000 });
}

describe('custody up (the quick start)', () => {
  it('verifies the samples, releases a key to an attested workload, refuses a tampered one, and runs one confidential request', () => {
    const r = custody('up', '--data', data, '--once');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.match(/PASS {2}(AMD SEV-SNP|Intel TDX|AWS Nitro)/g)).toHaveLength(3);
    expect(r.stdout).toMatch(/released "model-key" v1 \(32 bytes/);
    expect(r.stdout).toMatch(/refused a tampered workload .*: ERR_EVIDENCE_MEASUREMENT/);
    expect(r.stdout).toContain('Custody gateway verification: VERIFIED');
    expect(r.stdout).toContain('SIMULATED');
    expect(r.stdout).toMatch(/ledger entry \d+/);
    // Strict mode: the SDK proved the broker's appraisal of the gateway from the ledger.
    expect(r.stdout).toMatch(/PASS ledger +the broker's appraisal is entry \d+ of custody\.local\/ledger/);
    // The PII in the prompt never reached the model: it was masked, then restored in the answer.
    expect(r.stdout).toMatch(/person_name_1/);
  });

  it('is idempotent on its state directory, and its log and ledger hold no prompt text', () => {
    const again = custody('up', '--data', data, '--once', '--json');
    expect(again.status).toBe(0);
    const j = JSON.parse(again.stdout);
    expect(j.ok).toBe(true);
    expect(j.receipt.ledger.index).toBeGreaterThan(0);
    expect(j.verification.steps.find((x: { name: string }) => x.name === 'ledger')).toMatchObject({ ok: true, ran: true });
    const texts: string[] = [readFileSync(join(data, 'custody.log'), 'utf8')];
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else texts.push(readFileSync(p).toString('latin1'));
      }
    };
    walk(join(data, 'ledger'));
    for (const t of texts) {
      expect(t).not.toContain('Jane Roe');
      expect(t).not.toContain('jane.roe@example.com');
    }
  });
});
