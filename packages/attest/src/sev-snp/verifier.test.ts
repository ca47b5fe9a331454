import { describe, expect, it } from 'vitest';
import { X509Certificate, fromHex, readCertificates, toHex, verifyCertificateChain, type Bytes } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import type { VerificationResult, VerifyInput } from '../types.js';
import { encodeSnpCertTable, SNP_CERT_GUIDS } from './cert-table.js';
import { createConfigfsTsmEvidence } from './evidence.js';
import { AMD_ARK_SHA256, AMD_PRODUCT_CERTIFICATES } from './roots.js';
import { SEV_SNP_PRODUCTS } from './report.js';
import { sevSnpVerifier, verifySevSnp } from './verifier.js';

const SNP = 'attestation/sev-snp';
/** The real current time for the "now" runs (vendor certificates expire). */
const NOW = new Date('2026-11-26T00:00:00Z');
const STEPS = ['parse', 'chain', 'revocation', 'signature', 'tcb', 'binding', 'debug'];

interface SnpVector {
  name: string;
  report: string;
  leaf: string;
  /** The matching CA certificates (ASK or ASVK, then ARK). */
  cas: string;
  kind: 'VCEK' | 'VLEK';
  at: string;
  /** Expected outcome at NOW: still valid, or the typed expiry. */
  atNow: 'ok' | 'ERR_CERT_EXPIRED';
  /** A time after the leaf's notAfter. */
  afterExpiry: string;
  measurement?: string;
  reported: Record<string, number>;
  debug: boolean;
  vmpl: number;
  version: number;
}

const vectors: SnpVector[] = [
  {
    name: 'go-sev-guest attestation.bin + vcek.testcer',
    report: `${SNP}/go-sev-guest/attestation.bin`,
    leaf: `${SNP}/go-sev-guest/vcek.testcer`,
    cas: `${SNP}/go-sev-guest/milan.testcer`,
    kind: 'VCEK',
    at: '2023-06-01T00:00:00Z',
    atNow: 'ok', // VCEK valid 2022-09-24 .. 2029-09-24
    afterExpiry: '2029-09-25T00:00:00Z',
    measurement: 'b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01',
    reported: { bootloader: 2, tee: 0, snp: 5, microcode: 68 },
    debug: true,
    vmpl: 0,
    version: 2,
  },
  {
    name: 'trustee test-report.bin + test-vcek.der',
    report: `${SNP}/trustee/test-report.bin`,
    leaf: `${SNP}/trustee/test-vcek.der`,
    cas: `${SNP}/amd-roots/ask_ark_milan.pem`,
    kind: 'VCEK',
    at: '2024-06-01T00:00:00Z',
    atNow: 'ok', // VCEK valid 2023-01-24 .. 2030-01-24
    afterExpiry: '2030-01-25T00:00:00Z',
    measurement: 'a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c',
    reported: { bootloader: 3, tee: 0, snp: 8, microcode: 115 },
    debug: false,
    vmpl: 0,
    version: 2,
  },
  {
    name: 'trustee test-vlek-report.bin + test-vlek.der',
    report: `${SNP}/trustee/test-vlek-report.bin`,
    leaf: `${SNP}/trustee/test-vlek.der`,
    cas: `${SNP}/amd-roots/ask_ark_milan_vlek.pem`,
    kind: 'VLEK',
    at: '2025-06-01T00:00:00Z',
    atNow: 'ERR_CERT_EXPIRED', // VLEK expired 2025-12-10
    afterExpiry: '2025-12-11T00:00:00Z',
    reported: { bootloader: 4, tee: 0, snp: 24, microcode: 217 },
    debug: false,
    vmpl: 1,
    version: 3,
  },
];

const genoa = readCertificates(readVector(`${SNP}/amd-roots/ask_ark_genoa.pem`));
const milanArk = readCertificates(readVector(`${SNP}/amd-roots/ask_ark_milan.pem`))[1]!;

function flip(b: Uint8Array, offset: number): Bytes {
  const out = b.slice();
  out[offset]! ^= 0x01;
  return out;
}

function firstError(r: VerificationResult): { code: string | undefined; step: string | undefined } {
  return { code: r.errors[0]?.code, step: r.errors[0]?.step };
}

function expectOk(r: VerificationResult): void {
  expect(r.errors).toEqual([]);
  expect(r.ok).toBe(true);
  expect(r.steps.map((s) => s.name)).toEqual(STEPS);
}

describe.each(vectors)('SEV-SNP $name', (v) => {
  const report = readVector(v.report);
  const leaf = readVector(v.leaf);
  const cas = readVector(v.cas);
  const at = new Date(v.at);
  const base = (over: Partial<VerifyInput> = {}): VerifyInput => ({ evidence: report, certs: [leaf, cas], now: at, ...over });

  it('verifies at its verify-at time with normalised claims', async () => {
    const r = await verifySevSnp(base());
    expectOk(r);
    expect(r.platform).toBe('sev-snp');
    expect(r.verifiedAt).toBe(at.toISOString());
    const c = r.claims!;
    expect(c.platform).toBe('sev-snp');
    expect(c.simulated).toBe(false);
    if (v.measurement) expect(c.measurements.measurement).toBe(v.measurement);
    expect(Object.keys(c.measurements).sort()).toEqual(['authorKeyDigest', 'familyId', 'hostData', 'idKeyDigest', 'imageId', 'measurement']);
    expect(c.reportData).toBe(toHex(report.subarray(0x50, 0x90)));
    expect(c.tcb?.components).toEqual(v.reported);
    expect(c.debug).toBe(v.debug);
    expect(c.signer.kind).toBe(v.kind);
    expect(c.signer.chain).toHaveLength(3);
    expect(c.signer.chain[0]!.subject).toContain(`CN=SEV-${v.kind}`);
    expect(c.signer.rootSha256).toBe(AMD_ARK_SHA256.Milan);
    expect(c.platformClaims).toMatchObject({ product: 'Milan', vmpl: v.vmpl, reportVersion: v.version, evidenceForm: 'raw' });
    expect(c.platformClaims.reportedTcb).toMatchObject(v.reported);
    expect(r.warnings.some((w) => w.includes('DEBUG=1'))).toBe(v.debug);
    expect(r.steps.find((s) => s.name === 'debug')!.detail).toContain(v.debug ? 'DEBUG=1' : 'forbids');
    expect(JSON.parse(JSON.stringify(r))).toEqual(r);
  });

  it(`at the current time (${NOW.toISOString().slice(0, 10)}): ${v.atNow}`, async () => {
    const r = await verifySevSnp(base({ now: NOW }));
    if (v.atNow === 'ok') expectOk(r);
    else expect(firstError(r)).toEqual({ code: v.atNow, step: 'chain' });
  });

  it('fails as expired after the leaf expires and before it was issued (also on a warm chain cache)', async () => {
    expectOk(await verifySevSnp(base()));
    expect(firstError(await verifySevSnp(base({ now: new Date(v.afterExpiry) })))).toEqual({ code: 'ERR_CERT_EXPIRED', step: 'chain' });
    expect(firstError(await verifySevSnp(base({ now: new Date('2020-01-01T00:00:00Z') })))).toEqual({ code: 'ERR_CERT_EXPIRED', step: 'chain' });
  });

  it('verifies with only the leaf certificate (pinned ASK/ASVK and ARK)', async () => {
    expectOk(await verifySevSnp(base({ certs: [leaf] })));
  });

  it('verifies the configfs-tsm form with the certificate table in auxblob, with the same claims', async () => {
    const [ca, ark] = readCertificates(cas);
    const aux = encodeSnpCertTable([
      { guid: v.kind === 'VCEK' ? SNP_CERT_GUIDS.vcek : SNP_CERT_GUIDS.vlek, data: leaf },
      { guid: SNP_CERT_GUIDS.ask, data: ca! },
      { guid: SNP_CERT_GUIDS.ark, data: ark! },
    ]);
    const evidence = createConfigfsTsmEvidence(report, aux);
    expect(sevSnpVerifier.detect(evidence)).toBe(true);
    const r = await sevSnpVerifier.verify({ evidence, now: at });
    expectOk(r);
    const raw = await verifySevSnp(base());
    expect({ ...r.claims, platformClaims: { ...r.claims!.platformClaims, evidenceForm: 'raw' } }).toEqual(raw.claims);
    expect(r.steps[0]!.detail).toContain('configfs-tsm');
  });

  it('binds the expected nonce to report_data', async () => {
    const reportData = report.subarray(0x50, 0x90);
    let len = 64;
    while (len > 0 && reportData[len - 1] === 0) len--;
    const r = await verifySevSnp(base({ nonce: reportData.slice(0, Math.max(len, 1)) }));
    expectOk(r);
    expect(r.steps.find((s) => s.name === 'binding')!.detail).toContain('nonce');
  });

  it('accepts the matching ARK given as `roots` and reports no revocation check without a CRL', async () => {
    const r = await verifySevSnp(base({ roots: [milanArk] }));
    expectOk(r);
    expect(r.steps.find((s) => s.name === 'revocation')!.detail).toContain('no CRL');
  });

  const twins: { name: string; input: () => Partial<VerifyInput>; code: string; step: string }[] = [
    { name: 'a flipped signature byte', input: () => ({ evidence: flip(report, 0x2a0 + 5) }), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a changed measurement byte', input: () => ({ evidence: flip(report, 0x90) }), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a changed report_data byte', input: () => ({ evidence: flip(report, 0x8f) }), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a changed reported_tcb byte', input: () => ({ evidence: flip(report, 0x187) }), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a wrong nonce', input: () => ({ nonce: fromHex('0102030406') }), code: 'ERR_EVIDENCE_NONCE', step: 'binding' },
    { name: 'a nonce longer than report_data', input: () => ({ nonce: new Uint8Array(65) }), code: 'ERR_EVIDENCE_NONCE', step: 'binding' },
    { name: 'a missing leaf certificate', input: () => ({ certs: [cas] }), code: 'ERR_CERT_MISSING', step: 'chain' },
    { name: 'no certificates at all', input: () => ({ certs: [] }), code: 'ERR_CERT_MISSING', step: 'chain' },
    { name: 'a swapped ASK (Genoa)', input: () => ({ certs: [leaf, genoa[0]!] }), code: 'ERR_SNP_PRODUCT', step: 'chain' },
    { name: 'a wrong product ARK supplied with the evidence (Genoa)', input: () => ({ certs: [leaf, genoa[1]!] }), code: 'ERR_SNP_PRODUCT', step: 'chain' },
    { name: 'a wrong product root (Genoa ARK as roots)', input: () => ({ roots: [genoa[1]!] }), code: 'ERR_SNP_PRODUCT', step: 'chain' },
    { name: 'a truncated report', input: () => ({ evidence: report.subarray(0, 1000) }), code: 'ERR_INPUT_TRUNCATED', step: 'parse' },
  ];
  for (const t of twins) {
    it(`rejects ${t.name} with ${t.code}`, async () => {
      const r = await verifySevSnp(base(t.input()));
      expect(r.ok).toBe(false);
      expect(firstError(r)).toEqual({ code: t.code, step: t.step });
      expect(r.steps.at(-1)).toMatchObject({ name: t.step, ok: false, code: t.code });
    });
  }
});

describe('SEV-SNP cross-vector and negative sets', () => {
  const at = new Date('2024-06-01T00:00:00Z');
  const milanPem = readVector(`${SNP}/amd-roots/ask_ark_milan.pem`);

  it('rejects the VCEK of another report (signature fails)', async () => {
    const r = await verifySevSnp({ evidence: readVector(`${SNP}/go-sev-guest/attestation.bin`), certs: [readVector(`${SNP}/trustee/test-vcek.der`), milanPem], now: at });
    expect(firstError(r)).toEqual({ code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' });
  });

  it('picks the VCEK whose hwID is the report chip_id when several are supplied', async () => {
    const evidence = readVector(`${SNP}/go-sev-guest/attestation.bin`);
    const mine = readVector(`${SNP}/go-sev-guest/vcek.testcer`);
    const other = readVector(`${SNP}/trustee/test-vcek.der`);
    for (const certs of [[other, mine], [mine, other]]) {
      const r = await verifySevSnp({ evidence, certs, now: at });
      expect(r.errors).toEqual([]);
      expect(r.claims!.signer.chain[0]!.notBefore).toBe('2022-09-24T00:55:28.000Z');
    }
  });

  for (const f of ['test-vcek-invalid-legacy.der', 'test-vcek-invalid-new.der']) {
    it(`rejects ${f} (altered extensions: chain signature fails)`, async () => {
      const r = await verifySevSnp({ evidence: readVector(`${SNP}/trustee/test-report.bin`), certs: [readVector(`${SNP}/trustee/${f}`), milanPem], now: at });
      expect(firstError(r)).toEqual({ code: 'ERR_CERT_SIGNATURE', step: 'chain' });
      expect(r.claims?.measurements.measurement).toMatch(/^a1f39304/);
    });
  }

  it('verifies the VLEK report with go-sev-guest milanvlek.testcer (ASVK + ARK)', async () => {
    const r = await verifySevSnp({
      evidence: readVector(`${SNP}/trustee/test-vlek-report.bin`),
      certs: [readVector(`${SNP}/trustee/test-vlek.der`), readVector(`${SNP}/go-sev-guest/milanvlek.testcer`)],
      now: new Date('2025-06-01T00:00:00Z'),
    });
    expect(r.errors).toEqual([]);
    expect(r.claims!.signer.chain.map((c) => c.subject.split('CN=')[1])).toEqual(['SEV-VLEK', 'SEV-VLEK-Milan', 'ARK-Milan']);
    expect(r.claims!.platformClaims.cspId).toBe('CN=cc-us-east-2.amazonaws.com');
  });

  it('rejects a VLEK-signed report given only a VCEK', async () => {
    const r = await verifySevSnp({ evidence: readVector(`${SNP}/trustee/test-vlek-report.bin`), certs: [readVector(`${SNP}/trustee/test-vcek.der`)], now: new Date('2025-06-01T00:00:00Z') });
    expect(firstError(r)).toEqual({ code: 'ERR_CERT_MISSING', step: 'chain' });
  });

  it('rejects a VCEK-signed report given only a VLEK', async () => {
    const r = await verifySevSnp({ evidence: readVector(`${SNP}/trustee/test-report.bin`), certs: [readVector(`${SNP}/trustee/test-vlek.der`)], now: new Date('2025-06-01T00:00:00Z') });
    expect(firstError(r)).toEqual({ code: 'ERR_CERT_MISSING', step: 'chain' });
  });

  it('rejects garbage certificates with ERR_CERT_PARSE', async () => {
    const r = await verifySevSnp({ evidence: readVector(`${SNP}/trustee/test-report.bin`), certs: [Uint8Array.of(0x30, 0x03, 1, 2, 3)], now: at });
    expect(firstError(r)).toEqual({ code: 'ERR_CERT_PARSE', step: 'chain' });
  });

  it('rejects evidence of another format at parse', async () => {
    const r = await verifySevSnp({ evidence: readVector('attestation/tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat'), now: at });
    expect(firstError(r)).toEqual({ code: 'ERR_INPUT_TOO_LARGE', step: 'parse' });
    expect(r.claims).toBeUndefined();
  });
});

describe('embedded AMD roots', () => {
  it.each(SEV_SNP_PRODUCTS)('%s: ARK matches its pinned fingerprint; ASK and ASVK chain to it', async (product) => {
    const pems = AMD_PRODUCT_CERTIFICATES[product];
    const [ark, ask, asvk] = [pems.ark, pems.ask, pems.asvk].map((p) => new X509Certificate(readCertificates(new TextEncoder().encode(p))[0]!));
    expect(await ark!.sha256()).toBe(AMD_ARK_SHA256[product]);
    expect(ark!.subject.text).toContain(`CN=ARK-${product}`);
    for (const [c, cn] of [[ask!, `SEV-${product}`], [asvk!, `SEV-VLEK-${product}`]] as const) {
      expect(c.subject.text).toContain(`CN=${cn}`);
      const r = await verifyCertificateChain({ leaf: c, roots: [ark!], now: NOW });
      expect(r.chain).toHaveLength(2);
    }
  });

  it('the README fingerprint prefixes match', () => {
    expect(AMD_ARK_SHA256.Milan.startsWith('69d063b4')).toBe(true);
    expect(AMD_ARK_SHA256.Genoa.startsWith('4c6598d1')).toBe(true);
    expect(AMD_ARK_SHA256.Turin.startsWith('1f084161')).toBe(true);
  });
});
