import { describe, expect, it } from 'vitest';
import { CustodyError, fromBase64Url, readCertificates, sha256, toBase64Url, toHex, utf8, type Bytes } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { VerifierRegistry } from '../registry.js';
import { nitroVerifier } from '../nitro/index.js';
import { nvidiaVerifier } from '../nvidia/index.js';
import { parseSevSnpReport, sevSnpVerifier } from '../sev-snp/index.js';
import { simVerifier } from '../sim/index.js';
import { createTdxVerifier } from '../tdx/index.js';
import { tpmVerifier, verifyTpmQuoteSignature } from '../tpm/index.js';
import { collateral2025, AT_2025 } from '../tdx/testing/sets.js';
import type { EvidenceVerifier, NormalizedClaims, VerificationResult, VerifyInput } from '../types.js';
import {
  azureTpmQuote,
  azureVtpmParts,
  checkSnpVmpl,
  checkTdQuoteMatchesTdReport,
  hclAttestationKey,
  parseAzureVtpmEvidence,
  verifyAzureTpmQuote,
  verifyHclBinding,
  type AzureVtpmParts,
} from './checks.js';
import { detectAzureVtpmEvidence, readAzureVtpmEvidence } from './evidence.js';
import { parseHclReport, parseRuntimeData } from './hcl-report.js';
import { AzureVtpmVerifier, azureVtpmVerifier, createAzureVtpmVerifier, NO_NONCE_WARNING } from './verifier.js';
import {
  A,
  AT_SNP,
  AT_SNP_BIN,
  CHALLENGE,
  NOW,
  SNP_MEASUREMENT,
  SNP_REPORT_DATA,
  SNP_SIGNATURE_R,
  SNP_V0,
  SNP_V1,
  SNP_VMPL,
  TDX_V0,
  TD_REPORT_DATA,
  TD_RTMR0,
  encodeDoc,
  flip,
  hclOf,
  indexOfText,
  loadDoc,
  quoteOf,
  readBincodeQuote,
  setTdQuote,
  tdQuoteOf,
  withHcl,
  withQuote,
  type EvidenceDoc,
} from './testing/vectors.js';

const SNP_NO_CRL_WARNING = 'SEV-SNP: revocation of the AMD certificates was not checked: no CRL supplied (collateral "crl")';

/** Steps of a fully verified SEV-SNP-backed evidence, in order. */
const SNP_STEPS = ['parse', 'parse', 'chain', 'revocation', 'signature', 'tcb', 'debug', 'binding', 'signature', 'measurements', 'nonce'];
const AT = {
  parse: 0,
  snpChain: 2,
  snpSignature: 4,
  binding: 7,
  tpmSignature: 8,
  measurements: 9,
  nonce: 10,
} as const;

const MILAN_ARK_SHA256 = '69d063b4';
const AMD = 'attestation/sev-snp/amd-roots/';

function verify(doc: EvidenceDoc | Uint8Array, extra: Partial<VerifyInput> = {}, verifier: EvidenceVerifier = azureVtpmVerifier): Promise<VerificationResult> {
  const evidence = doc instanceof Uint8Array ? doc : encodeDoc(doc);
  return verifier.verify({ evidence, now: AT_SNP, nonce: CHALLENGE, ...extra });
}

/** Asserts a failure with `code` at step index `at` (the step list stops at the first failure). */
function expectFailure(r: VerificationResult, code: string, at: number): void {
  expect(r.ok).toBe(false);
  expect(r.errors[0]?.code).toBe(code);
  expect(r.steps.length).toBe(at + 1);
  expect(r.steps.at(-1)).toMatchObject({ ok: false, code });
  expect(r.steps.slice(0, -1).every((s) => s.ok)).toBe(true);
}

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof CustodyError) return e.code;
    throw e;
  }
  return 'no error';
}

// -------------------------------------------------------------------------------------------------
// SEV-SNP CVMs: every positive vector, at its verify-at time, now, and past expiry

interface SnpVector {
  name: string;
  file: string;
  form: string;
  measurement: string;
  reportedTcb: Record<string, number>;
  runtimeDigest: string;
}

const snpVectors: SnpVector[] = [
  {
    name: 'az-snp-vtpm evidence-v0.json',
    file: SNP_V0,
    form: 'trustee-v0',
    measurement: '6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6c79b75a5eb77fc769959f4aeb2f9401e',
    reportedTcb: { bootloader: 4, tee: 0, snp: 24, microcode: 219 },
    runtimeDigest: 'af2910341dd81083',
  },
  {
    name: 'az-snp-vtpm evidence-v1.json',
    file: SNP_V1,
    form: 'trustee-v1',
    measurement: '6a063be9dd79f6371c842e480f8dc3b5c725961344e57130e88c5adf49e8f7f6c79b75a5eb77fc769959f4aeb2f9401e',
    reportedTcb: { bootloader: 4, tee: 0, snp: 24, microcode: 219 },
    runtimeDigest: 'af2910341dd81083',
  },
];

describe.each(snpVectors)('$name', (v) => {
  const doc = loadDoc(v.file);

  it('verifies at its verify-at time with every step, and the claims are the normalised view', async () => {
    const r = await verify(doc);
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.platform).toBe('azure-vtpm');
    expect(r.steps.map((s) => s.name)).toEqual(SNP_STEPS);
    expect(r.warnings).toEqual([SNP_NO_CRL_WARNING]);
    expect(r.steps.find((s) => s.name === 'revocation')).toMatchObject({ ok: true, checked: false });
    const c = r.claims!;
    expect(c.platform).toBe('azure-vtpm');
    expect(c.simulated).toBe(false);
    expect(Object.keys(c.measurements)).toEqual(Array.from({ length: 24 }, (_, i) => `pcr${i}`));
    expect(c.measurements.pcr0).toBe('e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced');
    expect(c.reportData).toBe(toHex(CHALLENGE));
    expect(c.debug).toBe(false);
    const jwk = JSON.parse(c.publicKey!) as Record<string, unknown>;
    expect(jwk).toMatchObject({ kid: 'HCLAkPub', kty: 'RSA', e: 'AQAB', key_ops: ['sign'] });
    expect(c.signer.kind).toBe('AK (HCLAkPub) + VCEK');
    expect(c.signer.chain.map((s) => s.subject.split('CN=')[1])).toEqual(['SEV-VCEK', 'SEV-Milan', 'ARK-Milan']);
    expect(c.signer.rootSha256?.startsWith(MILAN_ARK_SHA256)).toBe(true);
    expect(c.tcb?.components).toMatchObject(v.reportedTcb);
    const snp = c.devices?.snp as NormalizedClaims;
    expect(snp.platform).toBe('sev-snp');
    expect(snp.measurements.measurement).toBe(v.measurement);
    expect(snp.reportData.startsWith(v.runtimeDigest)).toBe(true);
    expect(snp.platformClaims.vmpl).toBe(0);
    const pc = c.platformClaims;
    expect(pc.evidenceForm).toBe(v.form);
    expect(pc.hclReportType).toBe('snp');
    expect((pc.runtimeDataDigest as string).startsWith(v.runtimeDigest)).toBe(true);
    expect(pc.vmConfiguration).toMatchObject({ 'secure-boot': true, 'tpm-enabled': true, 'console-enabled': true });
    expect(pc.akPub).toMatchObject({ kid: 'HCLAkPub', key: 'rsa-2048' });
    expect((pc.ekPub as Record<string, string>).spkiSha256).toMatch(/^[0-9a-f]{64}$/);
    expect((pc.tpm as Record<string, unknown>).pcrBank).toBe('sha256');
    expect(JSON.parse(JSON.stringify(c))).toEqual(c); // JSON-safe
  });

  it('without an expected nonce it verifies and warns that freshness was not checked', async () => {
    const r = await azureVtpmVerifier.verify({ evidence: encodeDoc(doc), now: AT_SNP });
    expect(r.ok).toBe(true);
    expect(r.steps.map((s) => s.name)).toEqual(SNP_STEPS.slice(0, -1));
    expect(r.warnings).toEqual([SNP_NO_CRL_WARNING, NO_NONCE_WARNING]);
  });

  it('at the real current time (2026-11-26) it still verifies: the VCEK is valid until 2032-01-28', async () => {
    expect((await verify(doc, { now: NOW })).ok).toBe(true);
  });

  it('past the VCEK notAfter, and before its notBefore, it fails with ERR_CERT_EXPIRED', async () => {
    expectFailure(await verify(doc, { now: new Date('2032-02-01T00:00:00Z') }), 'ERR_CERT_EXPIRED', AT.snpChain);
    expectFailure(await verify(doc, { now: new Date('2025-01-01T00:00:00Z') }), 'ERR_CERT_EXPIRED', AT.snpChain);
  });

  it('the registry detects it as azure-vtpm', () => {
    expect(detectAzureVtpmEvidence(encodeDoc(doc))).toBe(true);
  });

  // Tampered twins: each must fail with its code at the step that checks what was changed.
  const otherVcekDer = (): Bytes => readCertificates(readVector(`${A}az-snp-vtpm/vcek.pem`))[0]!;
  const twins: { name: string; doc: () => EvidenceDoc; input?: Partial<VerifyInput>; code: string; at: number }[] = [
    {
      name: 'runtime data byte changed (vmUniqueId)',
      doc: () => withHcl(doc, (h) => flip(h, indexOfText(h, '"vmUniqueId":"') + 14, 0x01)),
      code: 'ERR_EVIDENCE_BINDING',
      at: AT.binding,
    },
    {
      name: 'HCLAkPub replaced by another key (modulus byte changed)',
      doc: () => withHcl(doc, (h) => void (h[indexOfText(h, '"n":"') + 20] = 0x41)),
      code: 'ERR_EVIDENCE_BINDING',
      at: AT.binding,
    },
    { name: 'SEV-SNP measurement byte flipped', doc: () => withHcl(doc, (h) => flip(h, SNP_MEASUREMENT, 0x80)), code: 'ERR_EVIDENCE_SIGNATURE', at: AT.snpSignature },
    { name: 'SEV-SNP report_data byte flipped', doc: () => withHcl(doc, (h) => flip(h, SNP_REPORT_DATA, 0x01)), code: 'ERR_EVIDENCE_SIGNATURE', at: AT.snpSignature },
    { name: 'SEV-SNP VMPL set to 2', doc: () => withHcl(doc, (h) => void (h[SNP_VMPL] = 2)), code: 'ERR_EVIDENCE_SIGNATURE', at: AT.snpSignature },
    { name: 'SEV-SNP signature byte flipped', doc: () => withHcl(doc, (h) => flip(h, SNP_SIGNATURE_R + 3, 0x01)), code: 'ERR_EVIDENCE_SIGNATURE', at: AT.snpSignature },
    { name: 'vTPM quote signature byte flipped', doc: () => withQuote(doc, (q) => flip(q.signature, 100, 0x01)), code: 'ERR_EVIDENCE_SIGNATURE', at: AT.tpmSignature },
    {
      name: 'vTPM quote qualifying data changed (challenge -> challengf)',
      doc: () => withQuote(doc, (q) => flip(q.message, indexOfText(q.message, 'challenge') + 8, 0x03)),
      code: 'ERR_EVIDENCE_SIGNATURE',
      at: AT.tpmSignature,
    },
    { name: 'PCR 7 value changed', doc: () => withQuote(doc, (q) => flip(q.pcrs[7]!, 0, 0x01)), code: 'ERR_TPM_PCR_DIGEST', at: AT.measurements },
    { name: 'PCR 23 left out', doc: () => withQuote(doc, (q) => void q.pcrs.pop()), code: 'ERR_TPM_PCR_MISSING', at: AT.measurements },
    { name: 'wrong nonce', doc: () => doc, input: { nonce: utf8('challengf') }, code: 'ERR_EVIDENCE_NONCE', at: AT.nonce },
    { name: 'replayed quote checked against a fresh 32-byte nonce', doc: () => doc, input: { nonce: new Uint8Array(32).fill(7) }, code: 'ERR_EVIDENCE_NONCE', at: AT.nonce },
    {
      name: 'VCEK missing',
      doc: () => {
        const c = structuredClone(doc);
        delete c.vcek;
        return c;
      },
      code: 'ERR_CERT_MISSING',
      at: AT.snpChain,
    },
    {
      name: "VCEK swapped for another chip's VCEK",
      doc: () => ({ ...structuredClone(doc), vcek: doc.version === undefined ? new TextDecoder().decode(readVector(`${A}az-snp-vtpm/vcek.pem`)) : toBase64Url(otherVcekDer()) }),
      code: 'ERR_EVIDENCE_SIGNATURE',
      at: AT.snpSignature,
    },
    { name: 'wrong product root (Genoa ASK/ARK as the trust anchors)', doc: () => doc, input: { roots: [readVector(`${AMD}ask_ark_genoa.pem`)] }, code: 'ERR_SNP_PRODUCT', at: AT.snpChain },
    { name: 'a TD quote added to SEV-SNP evidence', doc: () => setTdQuote(structuredClone(doc), Uint8Array.of(4, 0)), code: 'ERR_INPUT_MALFORMED', at: AT.parse },
  ];
  it.each(twins)('tampered: $name -> $code', async (t) => {
    const r = await verify(t.doc(), t.input ?? {});
    expectFailure(r, t.code, t.at);
    if (t.at > AT.parse) expect(r.claims?.platform).toBe('azure-vtpm'); // claims are kept on failure
  });

  it('the unmeasured HCL header is not trusted: a changed status only warns', async () => {
    const r = await verify(withHcl(doc, (h) => void (h[16] = 1)));
    expect(r.ok).toBe(true);
    expect(r.warnings).toEqual(['the HCL report header status is 1, not 0', SNP_NO_CRL_WARNING]);
  });
});

describe('SEV-SNP pieces: hcl-report.bin + vcek.pem + quote.bin', () => {
  const hcl = readVector(`${A}az-snp-vtpm/hcl-report.bin`);
  const vcekChain = readVector(`${A}az-snp-vtpm/vcek.pem`);
  const bincode = readBincodeQuote(readVector(`${A}az-snp-vtpm/quote.bin`));

  it('quote.bin (bincode) holds a 24-PCR quote over "challenge"', () => {
    expect(bincode.pcrs.length).toBe(24);
    expect(bincode.signature.length).toBe(256);
    const q = azureTpmQuote(bincode, hclAttestationKey(parseRuntimeData(parseHclReport(hcl).runtimeData).akPub));
    expect(new TextDecoder().decode(q.attest.extraData)).toBe('challenge');
  });

  it('tpm-quote.msg/.sig is a quote from another vTPM: it parses, but no AK in the vectors signed it', async () => {
    // The README lists these parts "as above", yet they select PCRs 0-7 and 14 and none of the
    // three HCLAkPub keys here verifies the signature: the AK they belong to is not in the set.
    const parts = { message: readVector(`${A}az-snp-vtpm/tpm-quote.msg`), signature: readVector(`${A}az-snp-vtpm/tpm-quote.sig`), pcrs: [] };
    const aks = [parseHclReport(hcl), parseHclReport(readVector(`${A}az-tdx-vtpm/hcl-report.bin`)), parseHclReport(hclOf(loadDoc(SNP_V1)))].map((h) => hclAttestationKey(parseRuntimeData(h.runtimeData).akPub));
    for (const ak of aks) {
      const q = azureTpmQuote(parts, ak);
      expect(q.attest.quote?.pcrSelect[0]?.pcrs).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 14]);
      expect(new TextDecoder().decode(q.attest.extraData)).toBe('challenge');
      await expect(verifyTpmQuoteSignature(q.attest, q.signature, ak)).rejects.toMatchObject({ code: 'ERR_EVIDENCE_SIGNATURE' });
    }
  });

  it('the embedded SEV-SNP report verifies with vcek.pem (VCEK+ASK+ARK) at 2024-01-01 and now, not after 2030-05-02', async () => {
    const h = parseHclReport(hcl);
    expect(vcekChain.length).toBeGreaterThan(0);
    for (const now of [AT_SNP_BIN, NOW]) {
      const r = await sevSnpVerifier.verify({ evidence: h.hardwareReport, certs: [vcekChain], now });
      expect(r.errors).toEqual([]);
      expect(r.claims?.signer.chain.length).toBe(3);
    }
    const late = await sevSnpVerifier.verify({ evidence: h.hardwareReport, certs: [vcekChain], now: new Date('2030-06-01T00:00:00Z') });
    expect(late.errors[0]?.code).toBe('ERR_CERT_EXPIRED');
    expect(checkSnpVmpl(parseSevSnpReport(h.hardwareReport))).toMatch(/VMPL 0/);
  });

  it('assembled into v1 evidence, the whole pipeline verifies (vcek.pem VCEK, quote.bin, nonce "challenge")', async () => {
    const der = readCertificates(vcekChain)[0]!;
    const doc: EvidenceDoc = {
      version: 1,
      tpm_quote: { signature: toHex(bincode.signature), message: toHex(bincode.message), pcrs: bincode.pcrs.map((p) => toHex(p)) },
      hcl_report: toBase64Url(hcl),
      vcek: toBase64Url(der),
    };
    const r = await verify(doc, { now: AT_SNP_BIN });
    expect(r.errors).toEqual([]);
    expect(r.steps.map((s) => s.name)).toEqual(SNP_STEPS);
    expect(r.claims?.tcb?.components).toMatchObject({ bootloader: 3, tee: 0, snp: 8, microcode: 115 });
    expect((r.claims?.devices?.snp as NormalizedClaims).measurements.measurement).toBe('9ac48fcac8a2d88aeeff8d427ad4f2be0e3917c748a18bdf52cc317e7fe20308b459d5ef1a12e0c22944eb386d17c315');
    // The VCEK of evidence-v0/v1 belongs to another chip.
    const wrong = await verify({ ...doc, vcek: loadDoc(SNP_V1).vcek }, { now: AT_SNP });
    expect(wrong.errors[0]?.code).toBe('ERR_EVIDENCE_SIGNATURE');
  });

  it('step functions: binding, TPM quote with HCLAkPub, nonce', async () => {
    const h = parseHclReport(hcl);
    const ak = hclAttestationKey(parseRuntimeData(h.runtimeData).akPub);
    const parts = { hcl: h, snpReport: parseSevSnpReport(h.hardwareReport), quote: azureTpmQuote(bincode, ak) } as unknown as AzureVtpmParts;
    await expect(verifyHclBinding(parts)).resolves.toMatch(/SHA-256/);
    const ok = await verifyAzureTpmQuote(parts, CHALLENGE);
    expect(ok.nonce).toMatch(/9-byte nonce/);
    await expect(verifyAzureTpmQuote(parts, utf8('wrong'))).rejects.toMatchObject({ code: 'ERR_EVIDENCE_NONCE' });
    const flipped = { ...bincode, signature: bincode.signature.slice() };
    flip(flipped.signature, 0, 1);
    await expect(verifyAzureTpmQuote({ ...parts, quote: azureTpmQuote(flipped, ak) }, CHALLENGE)).rejects.toMatchObject({ code: 'ERR_EVIDENCE_SIGNATURE' });
  });

  it('an SNP report from VMPL > 0 is refused at the binding step (with a hardware verifier that accepts it)', async () => {
    const doc = withHcl(loadDoc(SNP_V1), (h) => void (h[SNP_VMPL] = 2));
    const parts = parseAzureVtpmEvidence(encodeDoc(doc));
    expect(codeOf(() => checkSnpVmpl(parts.snpReport!))).toBe('ERR_AZURE_VMPL');
    // The real SEV-SNP verifier already refuses the changed report (it is signed); this double
    // passes it so the Azure binding step is reached and shown to check the VMPL on its own.
    const acceptAll: EvidenceVerifier = { platform: 'sev-snp', detect: () => false, verify: (i) => Promise.resolve({ ok: true, platform: 'sev-snp', steps: [{ name: 'signature', ok: true, detail: 'test double' }], errors: [], warnings: [], verifiedAt: i.now.toISOString() }) };
    const r = await verify(doc, {}, createAzureVtpmVerifier({ sevSnp: acceptAll }));
    expect(r.errors[0]).toMatchObject({ code: 'ERR_AZURE_VMPL', step: 'binding' });
  });
});

// -------------------------------------------------------------------------------------------------
// TDX CVMs

describe('az-tdx-vtpm evidence-v0.json', () => {
  const doc = loadDoc(TDX_V0);
  const parts = (): AzureVtpmParts => parseAzureVtpmEvidence(encodeDoc(doc));

  it('is trustee v0 TDX evidence whose pieces equal the .bin files', () => {
    const ev = readAzureVtpmEvidence(encodeDoc(doc));
    expect(ev.form).toBe('trustee-v0');
    expect(toHex(ev.hclReport)).toBe(toHex(readVector(`${A}az-tdx-vtpm/hcl-report.bin`)));
    expect(toHex(ev.tdQuote!)).toBe(toHex(readVector(`${A}az-tdx-vtpm/td-quote.bin`)));
    const bin = readBincodeQuote(readVector(`${A}az-tdx-vtpm/quote.bin`));
    expect(toHex(ev.tpmQuote.message)).toBe(toHex(bin.message));
    expect(toHex(ev.tpmQuote.signature)).toBe(toHex(bin.signature));
    expect(ev.tpmQuote.pcrs.map((p) => toHex(p))).toEqual(bin.pcrs.map((p) => toHex(p)));
    expect(detectAzureVtpmEvidence(encodeDoc(doc))).toBe(true);
  });

  it('fails closed with ERR_COLLATERAL_MISSING without TDX collateral (at now, and at any time)', async () => {
    for (const now of [NOW, AT_2025]) {
      const r = await verify(doc, { now });
      expectFailure(r, 'ERR_COLLATERAL_MISSING', 3);
      expect(r.steps.map((s) => s.name)).toEqual(['parse', 'parse', 'chain', 'revocation']);
      const c = r.claims!;
      expect(Object.keys(c.measurements).length).toBe(24);
      expect(c.signer.kind).toBe('AK (HCLAkPub) + PCK');
      const tdx = c.devices?.tdx as NormalizedClaims;
      expect(tdx.platform).toBe('tdx');
      expect(tdx.reportData.startsWith('9734504f161d104c')).toBe(true);
      expect(tdx.platformClaims.fmspc).toBe('00806f050000');
    }
  });

  it('the TD quote signature and PCK chain verify (revocation not required); the vectors have no collateral for FMSPC 00806f050000', async () => {
    const lenient = createAzureVtpmVerifier({ tdx: createTdxVerifier({ requireCrls: false }) });
    const none = await verify(doc, { now: NOW }, lenient);
    expect(none.steps.map((s) => `${s.name}:${s.ok}`)).toEqual(['parse:true', 'parse:true', 'chain:true', 'revocation:true', 'signature:true', 'collateral:false']);
    expect(none.errors[0]?.code).toBe('ERR_COLLATERAL_MISSING');
    // trustee's 2025 TCB Info is for FMSPC 00A06D080000: it verifies, then does not apply.
    const other = await verify(doc, { now: AT_2025, collateral: collateral2025() }, lenient);
    expectFailure(other, 'ERR_COLLATERAL_MISMATCH', 5);
    // Past the PCK certificate's notAfter (2030-09-13) the chain fails first.
    expectFailure(await verify(doc, { now: new Date('2030-10-01T00:00:00Z') }, lenient), 'ERR_CERT_EXPIRED', 2);
  });

  it('verifies piecewise: runtime data bound to the TDREPORT, TD quote = TDREPORT, vTPM quote with HCLAkPub and nonce', async () => {
    const p = parts();
    expect(p.hcl.reportType).toBe('tdx');
    const binding = await verifyHclBinding(p);
    expect(binding).toMatch(/TDREPORT report_data\[0:32\] = SHA-256/);
    expect(binding).toMatch(/TD quote body equals the HCL TDREPORT/);
    expect(toHex(p.tdReport!.body.reportData.subarray(0, 32))).toBe(toHex(await sha256(p.hcl.runtimeData)));
    const q = await verifyAzureTpmQuote(p, CHALLENGE);
    expect(q.signature).toMatch(/RSASSA\/SHA-256/);
    expect(q.pcrDigest).toMatch(/sha256:0-23/);
    expect(q.nonce).toMatch(/9-byte nonce/);
  });

  const twins: { name: string; doc: () => EvidenceDoc; check: (p: AzureVtpmParts) => Promise<unknown>; code: string }[] = [
    {
      name: 'runtime data byte changed (vmUniqueId)',
      doc: () => withHcl(doc, (h) => flip(h, indexOfText(h, '"vmUniqueId":"') + 14, 0x01)),
      check: verifyHclBinding,
      code: 'ERR_EVIDENCE_BINDING',
    },
    { name: 'TDREPORT report_data byte changed', doc: () => withHcl(doc, (h) => flip(h, TD_REPORT_DATA, 0x01)), check: verifyHclBinding, code: 'ERR_EVIDENCE_BINDING' },
    { name: 'TDREPORT RTMR0 byte changed', doc: () => withHcl(doc, (h) => flip(h, TD_RTMR0, 0x01)), check: verifyHclBinding, code: 'ERR_AZURE_TD_QUOTE_MISMATCH' },
    {
      name: 'TD quote MRTD byte changed',
      doc: () => {
        const c = structuredClone(doc);
        const q = tdQuoteOf(c);
        flip(q, 48 + 16 + 48 + 48 + 8 + 8 + 8, 0x01); // header, TEE_TCB_SVN, MRSEAM, MRSIGNERSEAM, SEAMATTRIBUTES, TDATTRIBUTES, XFAM
        return setTdQuote(c, q);
      },
      check: (p) => Promise.resolve().then(() => checkTdQuoteMatchesTdReport(p.tdReport!, p.tdQuote!)),
      code: 'ERR_AZURE_TD_QUOTE_MISMATCH',
    },
    { name: 'vTPM quote signature byte flipped', doc: () => withQuote(doc, (q) => flip(q.signature, 7, 0x40)), check: (p) => verifyAzureTpmQuote(p, CHALLENGE), code: 'ERR_EVIDENCE_SIGNATURE' },
    { name: 'PCR 14 value changed', doc: () => withQuote(doc, (q) => flip(q.pcrs[14]!, 31, 0x01)), check: (p) => verifyAzureTpmQuote(p, CHALLENGE), code: 'ERR_TPM_PCR_DIGEST' },
    { name: 'wrong nonce', doc: () => doc, check: (p) => verifyAzureTpmQuote(p, utf8('challengf')), code: 'ERR_EVIDENCE_NONCE' },
  ];
  it.each(twins)('tampered (piecewise): $name -> $code', async (t) => {
    await expect(t.check(parseAzureVtpmEvidence(encodeDoc(t.doc())))).rejects.toMatchObject({ code: t.code });
  });

  it('tampered (whole pipeline): a changed TD quote fails at the TDX signature step', async () => {
    const c = structuredClone(doc);
    const q = tdQuoteOf(c);
    flip(q, 48 + 100, 0x01);
    const lenient = createAzureVtpmVerifier({ tdx: createTdxVerifier({ requireCrls: false }) });
    expectFailure(await verify(setTdQuote(c, q), { now: NOW }, lenient), 'ERR_EVIDENCE_SIGNATURE', 4);
  });

  it('TDX evidence without a td_quote, or with a VCEK, is refused at parse', async () => {
    const noQuote = structuredClone(doc);
    delete noQuote.td_quote;
    expectFailure(await verify(noQuote), 'ERR_INPUT_MALFORMED', 0);
    const withVcek = { ...structuredClone(noQuote), vcek: loadDoc(SNP_V0).vcek };
    expectFailure(await verify(withVcek), 'ERR_INPUT_MALFORMED', 0);
  });

  it('the pipeline after the hardware stage (with a TDX verifier double that accepts the quote)', async () => {
    // No collateral in the vectors matches this TD quote, so the rest of the pipeline is shown
    // with a double for the TDX stage; the real TDX checks are exercised above.
    const acceptAll: EvidenceVerifier = { platform: 'tdx', detect: () => false, verify: (i) => Promise.resolve({ ok: true, platform: 'tdx', steps: [{ name: 'signature', ok: true, detail: 'test double' }], errors: [], warnings: [], verifiedAt: i.now.toISOString() }) };
    const v = createAzureVtpmVerifier({ tdx: acceptAll });
    const ok = await verify(doc, { now: NOW }, v);
    expect(ok.steps.map((s) => s.name)).toEqual(['parse', 'signature', 'binding', 'signature', 'measurements', 'nonce']);
    expect(ok.ok).toBe(true);
    expectFailure(await verify(withHcl(doc, (h) => flip(h, TD_RTMR0, 1)), { now: NOW }, v), 'ERR_AZURE_TD_QUOTE_MISMATCH', 2);
    expectFailure(await verify(withHcl(doc, (h) => flip(h, indexOfText(h, '"vmUniqueId":"') + 14, 1)), { now: NOW }, v), 'ERR_EVIDENCE_BINDING', 2);
    expectFailure(await verify(doc, { now: NOW, nonce: utf8('x') }, v), 'ERR_EVIDENCE_NONCE', 5);
  });
});

// -------------------------------------------------------------------------------------------------
// Evidence reader and registry

describe('evidence reader', () => {
  const v1 = loadDoc(SNP_V1);
  const cases: { name: string; doc: unknown; code: string }[] = [
    { name: 'version 3', doc: { ...v1, version: 3 }, code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'version as a string', doc: { ...v1, version: '1' }, code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'hcl_report with standard base64 characters', doc: { ...v1, hcl_report: (v1.hcl_report as string).replace(/-/g, '+') }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'hcl_report missing', doc: { ...v1, hcl_report: undefined }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'hcl_report empty', doc: { ...v1, hcl_report: '' }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'tpm_quote not an object', doc: { ...v1, tpm_quote: 'x' }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'signature not hex', doc: { ...v1, tpm_quote: { ...(v1.tpm_quote as object), signature: 'zz' } }, code: 'ERR_INPUT_MALFORMED' },
    { name: '25 PCRs', doc: { ...v1, tpm_quote: { ...(v1.tpm_quote as object), pcrs: Array.from({ length: 25 }, () => '00'.repeat(32)) } }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'a 31-byte PCR', doc: { ...v1, tpm_quote: { ...(v1.tpm_quote as object), pcrs: ['00'.repeat(31)] } }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'signature longer than RSA-4096', doc: { ...v1, tpm_quote: { ...(v1.tpm_quote as object), signature: '00'.repeat(513) } }, code: 'ERR_INPUT_TOO_LARGE' },
    { name: 'both vcek and td_quote', doc: { ...v1, td_quote: 'AAAA' }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'v0 byte array with 256', doc: { quote: { signature: [256], message: [1], pcrs: [] }, report: [1], vcek: 'x' }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'v0 byte array with a fraction', doc: { quote: { signature: [1.5], message: [1], pcrs: [] }, report: [1], vcek: 'x' }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'an array', doc: [v1], code: 'ERR_INPUT_MALFORMED' },
  ];
  for (const c of cases) it(c.name, () => expect(codeOf(() => readAzureVtpmEvidence(encodeDoc(c.doc as EvidenceDoc)))).toBe(c.code));
  it('not JSON, and over 1 MiB', () => {
    expect(codeOf(() => readAzureVtpmEvidence(utf8('HCLA')))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => readAzureVtpmEvidence(utf8('{"version":')))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => readAzureVtpmEvidence(new Uint8Array(1024 * 1024 + 1).fill(0x7b)))).toBe('ERR_INPUT_TOO_LARGE');
  });
  it('v2 has v1\'s shape', () => {
    const ev = readAzureVtpmEvidence(encodeDoc({ ...v1, version: 2 }));
    expect(ev.form).toBe('trustee-v2');
    expect(toHex(ev.hclReport)).toBe(toHex(fromBase64Url(v1.hcl_report as string)));
  });
  it('v0 and v1 SEV-SNP evidence carry the same HCL report and the same VCEK', () => {
    const a = readAzureVtpmEvidence(encodeDoc(loadDoc(SNP_V0)));
    const b = readAzureVtpmEvidence(encodeDoc(v1));
    expect(toHex(hclOf(loadDoc(SNP_V0)))).toBe(toHex(a.hclReport));
    expect(toHex(readCertificates(a.vcek!)[0]!)).toBe(toHex(b.vcek!));
    expect(toHex(quoteOf(loadDoc(SNP_V0)).message)).toBe(toHex(a.tpmQuote.message));
    expect(azureVtpmParts(b).snpReport?.version).toBe(3);
  });
});

describe('registry', () => {
  it('detects the three Azure vectors as azure-vtpm and nothing else as Azure', () => {
    const registry = new VerifierRegistry([sevSnpVerifier, createTdxVerifier(), nitroVerifier, tpmVerifier, nvidiaVerifier, simVerifier, azureVtpmVerifier]);
    for (const f of [SNP_V0, SNP_V1, TDX_V0]) expect(registry.detect(readVector(f))).toBe('azure-vtpm');
    expect(registry.detect(readVector(`${A}tpm_evidence.json`))).toBe('tpm');
    expect(azureVtpmVerifier.detect(readVector(`${A}tpm_evidence.json`))).toBe(false);
    expect(azureVtpmVerifier.detect(readVector(`${A}az-snp-vtpm/hcl-report.bin`))).toBe(false);
    expect(azureVtpmVerifier.platform).toBe('azure-vtpm');
    expect(new AzureVtpmVerifier()).toBeInstanceOf(AzureVtpmVerifier);
  });
});
