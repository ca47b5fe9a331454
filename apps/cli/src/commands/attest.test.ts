import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { KEY_USAGE } from '@custody/core';
import { createNvidiaEvidence } from '../../../../packages/attest/src/nvidia/evidence.js';
import { REAL_NVIDIA_REPORT } from '../../../../packages/attest/src/nvidia/testing/reissue.js';
import { createKeyCertificate } from '../../../../packages/core/src/testing/certificates.js';
import { repoRoot, vectorPath } from '../../../../test/vectors.js';
import { tcbText } from './attest.js';

/** Runs the real `custody` program (from source) and returns its exit code and output. */
function custody(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', ...args], { cwd: repoRoot, encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('custody attest verify', () => {
  it('verifies the bundled SEV-SNP sample step by step (exit 0)', () => {
    const r = custody('attest', 'verify', 'samples/sev-snp/attestation.bin', '--certs', 'samples/sev-snp/vcek.der', '--at', '2023-06-01T00:00:00Z');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/PASS {2}chain/);
    expect(r.stdout).toMatch(/PASS {2}signature/);
    expect(r.stdout).toContain('result: VERIFIED');
    // No CRL was given: revocation is shown as skipped, not as passed.
    expect(r.stdout).toMatch(/SKIP {2}revocation +no CRL supplied/);
    expect(r.stdout).not.toMatch(/PASS {2}revocation/);
  });

  it('prints one JSON object with ok, platform, claims, steps and errors', () => {
    const r = custody('attest', 'verify', 'samples/tdx/quote.dat', '--collateral', 'samples/tdx/collateral', '--at', '2023-07-01T01:00:00Z', '--json');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(true);
    expect(j.platform).toBe('tdx');
    expect(j.claims.tcb.status).toBe('UpToDate');
    expect(j.claims.measurements.mrtd).toMatch(/^[0-9a-f]{96}$/);
    expect(typeof j.claims.reportData).toBe('string');
    expect(j.errors).toEqual([]);
    expect(j.steps.map((s: { name: string }) => s.name)).toEqual(expect.arrayContaining(['parse', 'chain', 'revocation', 'signature', 'tcb', 'binding']));
  });

  it('exits 1 with a typed code when the evidence does not verify (expired chain today)', () => {
    const r = custody('attest', 'verify', 'samples/nitro/attestation.cbor', '--json');
    expect(r.status).toBe(1);
    const j = JSON.parse(r.stdout);
    expect(j.ok).toBe(false);
    expect(j.errors[0].code).toBe('ERR_CERT_EXPIRED');
  });

  it('exits 1 for a tampered document and for a wrong nonce', () => {
    expect(custody('attest', 'verify', vectorPath('attestation/nitro/eternis_fixture_invalid_attestation.cbor'), '--at', '2024-09-17T20:47:10Z').status).toBe(1);
    const r = custody('attest', 'verify', 'samples/sev-snp/attestation.bin', '--certs', 'samples/sev-snp/vcek.der', '--at', '2023-06-01T00:00:00Z', '--nonce', 'ff', '--json');
    expect(r.status).toBe(1);
    expect(JSON.parse(r.stdout).errors[0].code).toBe('ERR_EVIDENCE_NONCE');
  });

  it('exits 2 with a stable code for bad input and usage', () => {
    expect(custody('attest', 'verify', 'no-such-file').status).toBe(2);
    const unknown = custody('attest', 'verify', 'package.json', '--json');
    expect(unknown.status).toBe(2);
    expect(JSON.parse(unknown.stdout).errors[0].code).toBe('ERR_FORMAT_UNKNOWN');
    expect(custody('attest', 'verify', 'samples/sev-snp/attestation.bin', '--at', 'yesterday').status).toBe(2);
    expect(custody('attest', 'verify', 'samples/sev-snp/attestation.bin', '--nonce', 'xyz').status).toBe(2);
    expect(custody('attest', 'verify', 'samples/sev-snp/attestation.bin', '--platform', 'sgx').status).toBe(2);
    expect(custody('attest', 'verify').status).toBe(2);
  });

  it('has --help on every attest command', () => {
    for (const args of [['--help'], ['attest', '--help'], ['attest', 'verify', '--help'], ['attest', 'collect', '--help']]) {
      const r = custody(...args);
      expect(r.status, args.join(' ')).toBe(0);
      expect(r.stdout).toContain('Usage:');
    }
  });
});

describe('custody attest verify: what the evidence says cannot forge a line of the output', () => {
  it('a GPU certificate whose subject holds line breaks and a verdict: the verdict stays inside its line', async () => {
    // Refused before any chain check (no FWID extension), with a message that quotes the subject.
    const leaf = await createKeyCertificate({ cn: 'x"\n\nresult: VERIFIED\n', serial: 7, ca: false, keyUsage: KEY_USAGE.digitalSignature });
    const dir = mkdtempSync(join(tmpdir(), 'custody-attest-render-'));
    try {
      const file = join(dir, 'gpu.json');
      writeFileSync(file, createNvidiaEvidence(REAL_NVIDIA_REPORT, [leaf.cert]));
      const r = custody('attest', 'verify', file, '--platform', 'nvidia');
      expect(r.status).toBe(1);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines.filter((l) => l.startsWith('result: '))).toEqual([expect.stringMatching(/^result: NOT VERIFIED/)]);
      expect(lines.filter((l) => l.trim() === 'result: VERIFIED')).toEqual([]);
      expect(r.stdout).toContain('\\u{a}result: VERIFIED');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tcbText (attest verify, and custody up\'s summary)', () => {
  it.each<[string, Parameters<typeof tcbText>[0], string]>([
    ['SEV-SNP: components, no status', { components: { bootloader: 2, tee: 0, snp: 5, microcode: 68 } }, 'bootloader=2 tee=0 snp=5 microcode=68'],
    ['TDX: status, components and date', { status: 'UpToDate', components: { pcesvn: 11 }, tcbDate: '2024-03-13T00:00:00Z' }, 'UpToDate pcesvn=11 (tcbDate 2024-03-13T00:00:00Z)'],
    ['many components: a count', { components: Object.fromEntries(Array.from({ length: 7 }, (_, i) => [`c${i}`, i])) }, '(7 components, see --json)'],
    ['nothing known', { components: {} }, '-'],
  ])('%s', (_name, tcb, text) => expect(tcbText(tcb)).toBe(text));
});
