/**
 * The shared conformance suite: every verifier in the default registry, held to the same
 * contract on real evidence. Format-specific checks and tampered twins live next to each
 * verifier; this suite checks what all of them promise.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromUtf8 } from '@custody/core';
import { readVector } from '../../../test/vectors.js';
import { defaultRegistry } from './default-registry.js';
import { createSimEvidence } from './sim/index.js';
import type { Platform, VerificationResult, VerifyInput } from './types.js';

interface Case {
  name: string;
  platform: Platform;
  input: () => Promise<Omit<VerifyInput, 'now'>> | Omit<VerifyInput, 'now'>;
  /** A time at which the evidence and its collateral verify. */
  at: string;
  /** Codes acceptable at the real current time; undefined when the evidence does not expire. */
  expiredCodes?: string[];
  /** Whether the verifier checks an expected nonce (all but formats without a nonce field). */
  nonce: boolean;
}

const NOW = new Date('2026-11-26T00:00:00Z');
const EXPIRY = ['ERR_CERT_EXPIRED', 'ERR_CRL_STALE', 'ERR_COLLATERAL_STALE'];
const tdxCollateral = () => ({
  tcbInfo: readVector('attestation/tdx/go-tdx-guest/sample_tcbInfo_response'),
  qeIdentity: readVector('attestation/tdx/go-tdx-guest/sample_qeIdentity_response'),
  pckCrl: readVector('attestation/tdx/go-tdx-guest/pckcrl'),
  rootCaCrl: readVector('attestation/tdx/go-tdx-guest/rootcrl.der'),
  tcbInfoIssuerChain: readVector('attestation/tdx/go-tdx-guest/tcbinfo_issuer_chain.pem'),
  qeIdentityIssuerChain: readVector('attestation/tdx/go-tdx-guest/qeidentity_issuer_chain.pem'),
  pckCrlIssuerChain: readVector('attestation/tdx/go-tdx-guest/pckcrl_issuer_chain.pem'),
});

const CASES: Case[] = [
  {
    name: 'SEV-SNP go-sev-guest report v2 + VCEK (Milan)',
    platform: 'sev-snp',
    input: () => ({ evidence: readVector('attestation/sev-snp/go-sev-guest/attestation.bin'), certs: [readVector('attestation/sev-snp/go-sev-guest/vcek.testcer')] }),
    at: '2023-06-01T00:00:00Z',
    // This VCEK is valid until 2029 and the Milan ARK until 2045: it still verifies today.
    nonce: true,
  },
  {
    name: 'SEV-SNP trustee report v3 signed by a VLEK',
    platform: 'sev-snp',
    input: () => ({ evidence: readVector('attestation/sev-snp/trustee/test-vlek-report.bin'), certs: [readVector('attestation/sev-snp/trustee/test-vlek.der')] }),
    at: '2025-06-01T00:00:00Z',
    expiredCodes: EXPIRY,
    nonce: true,
  },
  {
    name: 'TDX quote v4 with 2023 collateral (UpToDate)',
    platform: 'tdx',
    input: () => ({ evidence: readVector('attestation/tdx/trustee/tdx_quote_4.dat'), collateral: tdxCollateral() }),
    at: '2023-07-01T01:00:00Z',
    expiredCodes: EXPIRY,
    nonce: true,
  },
  {
    name: 'AWS Nitro attestation document (debug enclave)',
    platform: 'nitro',
    input: () => ({ evidence: readVector('attestation/nitro/eternis_lib_test_attestation.cbor') }),
    at: '2024-09-17T20:47:10Z',
    expiredCodes: EXPIRY,
    nonce: true,
  },
  {
    name: 'TPM 2.0 quote with 24 SHA-256 PCRs',
    platform: 'tpm',
    input: () => ({ evidence: readVector('attestation/azure-vtpm/tpm_evidence.json') }),
    at: '2026-11-26T00:00:00Z',
    nonce: true,
  },
  {
    name: 'Azure SEV-SNP CVM: HCL report + vTPM quote (trustee evidence v1)',
    platform: 'azure-vtpm',
    input: () => ({ evidence: readVector('attestation/azure-vtpm/az-snp-vtpm/evidence-v1.json') }),
    // The embedded VCEK is valid until 2032: this evidence still verifies today.
    at: '2025-06-01T00:00:00Z',
    nonce: true,
  },
  {
    name: 'NVIDIA Hopper SPDM measurements',
    platform: 'nvidia',
    input: () => ({ evidence: readVector('attestation/nvidia/hopperAttestationReport.txt'), certs: [readVector('attestation/nvidia/hopper_cert_chain_case1.txt')] }),
    at: '2024-09-01T00:00:00Z',
    nonce: true,
  },
  {
    name: 'sim (development evidence)',
    platform: 'sim',
    input: async () => ({ evidence: await createSimEvidence({ measurements: { measurement: 'ab'.repeat(48) }, reportData: new Uint8Array(64).fill(7), issuedAt: new Date('2026-01-01T00:00:00Z') }) }),
    at: '2026-01-01T00:00:10Z',
    nonce: true,
  },
];

const HEX = /^([0-9a-f]{2})*$/;

function expectTypedFailure(r: VerificationResult): void {
  expect(r.ok).toBe(false);
  expect(r.errors.length).toBeGreaterThan(0);
  for (const e of r.errors) expect(e.code).toMatch(/^ERR_[A-Z0-9_]+$/);
}

describe.each(CASES)('conformance: $name', (c) => {
  const verify = async (over: Partial<VerifyInput> = {}, at = c.at) => {
    const input = await c.input();
    return defaultRegistry.verify({ ...input, platform: c.platform, now: new Date(at), ...over });
  };

  it('is detected as its platform by exactly one verifier', async () => {
    expect(defaultRegistry.detect((await c.input()).evidence)).toBe(c.platform);
  });

  it('verifies at its capture time, every step passing, with well-formed claims', async () => {
    const r = await verify();
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.platform).toBe(c.platform);
    expect(r.verifiedAt).toBe(new Date(c.at).toISOString());
    expect(r.steps.length).toBeGreaterThan(1);
    expect(r.steps.every((s) => s.ok)).toBe(true);
    expect(r.steps.map((s) => s.name)).toContain('signature');
    const claims = r.claims!;
    expect(claims.platform).toBe(c.platform);
    expect(claims.simulated).toBe(c.platform === 'sim');
    expect(Object.keys(claims.measurements).length).toBeGreaterThan(0);
    for (const v of Object.values(claims.measurements)) expect(v).toMatch(HEX);
    expect(claims.reportData).toMatch(HEX);
    // Results travel as JSON (CLI --json, EAR annotations): no bigint, no cycles.
    expect(() => JSON.stringify(r)).not.toThrow();
  });

  it('fails with a typed expiry error at the real current time, or still verifies where nothing expires', async () => {
    const r = await verify({}, NOW.toISOString());
    if (c.expiredCodes) {
      expectTypedFailure(r);
      expect(c.expiredCodes).toContain(r.errors[0]!.code);
    } else expect(r.ok).toBe(true);
  });

  it.runIf(c.nonce)('fails with ERR_EVIDENCE_NONCE for an unexpected nonce', async () => {
    const r = await verify({ nonce: new Uint8Array(32).fill(0x5a) });
    expectTypedFailure(r);
    expect(r.errors.map((e) => e.code)).toContain('ERR_EVIDENCE_NONCE');
  });

  /** A changed input may verify only where the change alters nothing the verifier vouches for. */
  const expectFailedOrUnchanged = (r: VerificationResult, original: VerificationResult) => {
    if (!r.ok) {
      for (const e of r.errors) expect(e.code).toMatch(/^ERR_[A-Z0-9_]+$/);
      return;
    }
    expect(r.claims!.measurements).toEqual(original.claims!.measurements);
    expect(r.claims!.reportData).toBe(original.claims!.reportData);
  };

  it('gives typed errors, never an exception, for empty and truncated evidence', async () => {
    const { evidence } = await c.input();
    const original = await verify();
    for (const n of [0, 1, 7, 64, Math.floor(evidence.length / 2)]) expectTypedFailure(await verify({ evidence: evidence.subarray(0, n) }));
    // One byte short may still parse (a trailing newline of a JSON file), but never into other claims.
    expectFailedOrUnchanged(await verify({ evidence: evidence.subarray(0, evidence.length - 1) }), original);
  });

  it('never verifies a mutation into different claims', async () => {
    const input = await c.input();
    const original = await verify();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), async (flips) => {
        const b = input.evidence.slice();
        for (const [pos, v] of flips) b[pos % b.length] = v;
        expectFailedOrUnchanged(await verify({ evidence: b }), original);
      }),
      { numRuns: 60, seed: 1126 },
    );
  });
});

describe('registry', () => {
  it('names an unknown format with ERR_FORMAT_UNKNOWN and an unknown platform with ERR_USAGE', async () => {
    expect(() => defaultRegistry.detect(new TextEncoder().encode('hello'))).toThrowError(expect.objectContaining({ code: 'ERR_FORMAT_UNKNOWN' }) as Error);
    await expect(defaultRegistry.verify({ evidence: new Uint8Array(4), platform: 'sgx', now: NOW })).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });

  it('covers every platform but those still being built', () => {
    expect(new Set(defaultRegistry.platforms)).toEqual(new Set(CASES.map((c) => c.platform)));
    expect(fromUtf8(new Uint8Array())).toBe('');
  });
});
