// Firmware levels (TCB components) of a challenge bundle's fresh CPU evidence against the round
// evidence the EAR appraised (bindEar). On SEV-SNP the hypervisor sets REPORTED_TCB at run time
// (after a firmware hot-load, with a new VCEK for the new level): the same guest, with the same
// measurement and keys, legitimately reports a newer TCB in the challenge evidence than in the
// round evidence the broker appraised. That verifies, online (JWKS and a nonce) and for an auditor
// checking the kept challenge bundle without the JWKS; a lower TCB is refused. Real SEV-SNP
// report format, signed under the synthetic product PKI (packages/attest/src/sev-snp/testing).
import { beforeAll, describe, expect, it } from 'vitest';
import { sevSnpVerifier } from '@custody/attest';
import { fromBase64Url, fromHex, subtle, toBase64Url, toHex } from '@custody/core';
import { appraise, buildEar, generateEarSigningKey, loadPolicy, publishJwks, signEar } from '@custody/policy';
import { createConfigfsTsmEvidence } from '../../../attest/src/sev-snp/evidence.js';
import { encodeSnpCertTable, SNP_CERT_GUIDS } from '../../../attest/src/sev-snp/cert-table.js';
import { amdExtensions, buildReport, createKeyCertificate, createProductPki, signReport, tcbBytes, type AmdTcb, type SyntheticKey, type SyntheticProductPki } from '../../../attest/src/sev-snp/testing/synthetic.js';
import { createOhttpServerKey, encodeKeyConfigs } from '../ohttp/key-config.js';
import { parseAttestationBundle, type AttestationBundle } from './bundle.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { verifierSet, verifyGatewayBundle } from './verify.js';

const NOW = new Date('2025-06-01T00:00:00Z');
const MEASUREMENT = 'ab'.repeat(48);
const HWID8 = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const CHIP_ID = new Uint8Array(64);
CHIP_ID.set(HWID8);
const ROUND_TCB: AmdTcb = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 0x4a };
// The host raised the reported SNP firmware level between the round and the challenge.
const CHALLENGE_TCB: AmdTcb = { ...ROUND_TCB, snp: 5 };
const NONCE = new Uint8Array(32).fill(7);

let turin: SyntheticProductPki;
const vceks = new Map<AmdTcb, SyntheticKey>();
let baseRd: string;
let freshRd: string;
let teeJwk: JsonWebKey;
let receiptX: string;
let ohttpKeys: string;

async function snpEvidence(rd: string, tcb: AmdTcb): Promise<Uint8Array> {
  const vcek = vceks.get(tcb)!;
  const report = buildReport({ version: 5, reportedTcb: tcbBytes(tcb), cpuid: { family: 0x1a, model: 0x02, stepping: 1 }, chipId: CHIP_ID, policy: 0x30000n, reportData: await runtimeDigest('sev-snp', rd), measurement: fromHex(MEASUREMENT) });
  const signed = await signReport(report, vcek.keys.privateKey);
  const aux = encodeSnpCertTable([
    { guid: SNP_CERT_GUIDS.vcek, data: vcek.cert },
    { guid: SNP_CERT_GUIDS.ask, data: turin.ask.cert },
    { guid: SNP_CERT_GUIDS.ark, data: turin.ark.cert },
  ]);
  return createConfigfsTsmEvidence(signed, aux);
}

const verifiers = verifierSet([sevSnpVerifier]);
let jwks: ReturnType<typeof publishJwks>;
let ear: string;
let policy: Awaited<ReturnType<typeof loadPolicy>>;

beforeAll(async () => {
  turin = await createProductPki('Turin');
  for (const tcb of [ROUND_TCB, CHALLENGE_TCB]) {
    vceks.set(tcb, await createKeyCertificate({ cn: 'SEV-VCEK', serial: tcb.snp, ca: false, issuer: turin.ask, extensions: amdExtensions({ productName: 'Turin-B0', tcb, hwid: HWID8 }) }));
  }
  const ohttp = (await createOhttpServerKey({ keyId: 1 })).config;
  ohttpKeys = toBase64Url(encodeKeyConfigs([ohttp]));
  const rp = await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  receiptX = (await subtle.exportKey('jwk', rp.publicKey)).x!;
  const tee = await subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
  teeJwk = await subtle.exportKey('jwk', tee.publicKey);
  const teeRaw = new Uint8Array(await subtle.exportKey('raw', tee.publicKey));
  const rd = (nonce?: Uint8Array) => buildRuntimeData({ ...(nonce ? { nonce } : {}), keyConfigs: [ohttp], receiptKey: fromBase64Url(receiptX), teePublicKey: teeRaw });
  baseRd = rd();
  freshRd = rd(NONCE);
  const arkSha = toHex(new Uint8Array(await subtle.digest('SHA-256', turin.ark.cert)));
  policy = await loadPolicy(['apiVersion: custody.dev/policy/v1', 'id: snp', 'version: 1', 'platforms:', '  sev-snp:', `    measurement: [${MEASUREMENT}]`, `    signerRoots: [${arkSha}]`, ''].join('\n'));
  // The broker appraises the round evidence (TCB snp=4).
  const round = await sevSnpVerifier.verify({ evidence: await snpEvidence(baseRd, ROUND_TCB), roots: [turin.ark.cert], now: NOW });
  expect(round.ok).toBe(true);
  const a = appraise(policy, { cpu0: round }, { now: NOW });
  expect(a.status).toBe('affirming');
  const key = await generateEarSigningKey();
  jwks = publishJwks([key]);
  ear = await signEar(await buildEar(a, { now: NOW, verifierId: { developer: 'https://custody.dev', build: 'review d' }, teePublicKey: teeJwk }), key);
});

async function bundle(rd: string, tcb: AmdTcb, earRuntimeData?: string, earToken = ear): Promise<AttestationBundle> {
  return parseAttestationBundle({
    format: 'custody.dev/attestation-bundle/v1',
    platform: 'sev-snp',
    simulated: false,
    evidence: toBase64Url(await snpEvidence(rd, tcb)),
    runtimeData: rd,
    ear: earToken,
    ...(earRuntimeData !== undefined ? { earRuntimeData } : {}),
    ohttpKeys,
    receiptKey: { kty: 'OKP', crv: 'Ed25519', x: receiptX },
    issuedAt: NOW.toISOString(),
  });
}

describe('SEV-SNP: the challenge evidence reports a newer TCB than the round evidence the EAR appraised', () => {
  it('control: the same challenge with an unchanged TCB verifies (online, JWKS + nonce)', async () => {
    const r = await verifyGatewayBundle(await bundle(freshRd, ROUND_TCB, baseRd), { jwks, nonce: NONCE, verifiers, evidenceRoots: [turin.ark.cert], now: NOW });
    expect(r.document.error).toBeUndefined();
  });

  it('a genuine challenge after the host raised REPORTED_TCB verifies (online, JWKS + nonce)', async () => {
    const r = await verifyGatewayBundle(await bundle(freshRd, CHALLENGE_TCB, baseRd), { jwks, nonce: NONCE, verifiers, evidenceRoots: [turin.ark.cert], now: NOW });
    expect(r.document.error).toBeUndefined();
  });

  it('the kept challenge bundle verifies for an auditor without the JWKS (pastAnswer, policy)', async () => {
    const r = await verifyGatewayBundle(await bundle(freshRd, CHALLENGE_TCB, baseRd), { policy, pastAnswer: true, verifiers, evidenceRoots: [turin.ark.cert], now: NOW });
    expect(r.document.error).toBeUndefined();
  });

  it('a downgraded TCB beside the EAR is still refused (what the check must keep)', async () => {
    const older: AmdTcb = { ...ROUND_TCB, snp: 3 };
    vceks.set(older, await createKeyCertificate({ cn: 'SEV-VCEK', serial: 3, ca: false, issuer: turin.ask, extensions: amdExtensions({ productName: 'Turin-B0', tcb: older, hwid: HWID8 }) }));
    const r = await verifyGatewayBundle(await bundle(baseRd, older), { policy, pastAnswer: true, verifiers, evidenceRoots: [turin.ark.cert], now: NOW });
    expect(r.document.error).toMatchObject({ step: 'ear', code: 'ERR_RECEIPT_MISMATCH' });
  });
});

describe('an EAR naming a firmware component the evidence does not report', () => {
  // A past answer's EAR is not trusted: each component it names must be one the evidence reports
  // with that level. A name Object.prototype has must not find Object.prototype's member.
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    it(`is refused for a component named ${name} (ERR_RECEIPT_MISMATCH at ear)`, async () => {
      const round = await sevSnpVerifier.verify({ evidence: await snpEvidence(baseRd, ROUND_TCB), roots: [turin.ark.cert], now: NOW });
      const a = appraise(policy, { cpu0: round }, { now: NOW });
      const claims = a.submods.cpu0!.claims!;
      // What String() of the member Object.prototype has under that name prints.
      const shown = String((Object.prototype as unknown as Record<string, unknown>)[name]);
      claims.tcb = { ...claims.tcb!, components: Object.fromEntries([...Object.entries(claims.tcb!.components), [name, shown]]) };
      const forged = await signEar(await buildEar(a, { now: NOW, verifierId: { developer: 'https://custody.dev', build: 'forged' }, teePublicKey: teeJwk }), await generateEarSigningKey());
      const r = await verifyGatewayBundle(await bundle(baseRd, ROUND_TCB, undefined, forged), { policy, pastAnswer: true, verifiers, evidenceRoots: [turin.ark.cert], now: NOW });
      expect(r.document.error).toMatchObject({ step: 'ear', code: 'ERR_RECEIPT_MISMATCH' });
    });
  }
});

describe('a pinned measurement the evidence does not report', () => {
  // Pins name measurements: a name Object.prototype has is missing like any other (not a crash).
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    it(`is refused for a pin named ${name} (ERR_EVIDENCE_MEASUREMENT at measurements)`, async () => {
      const expectedMeasurements = Object.fromEntries([[name, 'ab'.repeat(48)]]);
      const r = await verifyGatewayBundle(await bundle(freshRd, ROUND_TCB, baseRd), { jwks, nonce: NONCE, verifiers, evidenceRoots: [turin.ark.cert], now: NOW, expectedMeasurements });
      expect(r.document.error).toMatchObject({ step: 'measurements', code: 'ERR_EVIDENCE_MEASUREMENT' });
    });
  }
});
