import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { fromBase64, fromHex, toBase64, toHex, utf8 } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { NO_AK_CHAIN_WARNING, tpmVerifier } from './verifier.js';
import { encodeTpmEvidence, parseTpmEvidence } from './evidence.js';
import { pcrBankFromList, verifyTpmQuote } from './quote.js';
import { akFromJwk, akFromSpki } from './ak.js';

const VECTOR = 'attestation/azure-vtpm/tpm_evidence.json';
/** The vector has no verify-at time of its own: TPM quotes carry no certificate to expire. */
const AT = new Date('2024-06-01T00:00:00Z');

const vectorBytes = readVector(VECTOR);
const vectorJson = JSON.parse(new TextDecoder().decode(vectorBytes)) as { ak_public: string; tpm_quote: { message: string; signature: string; pcrs: string[] } };
const vectorQuote = fromBase64(vectorJson.tpm_quote.message);
// extraData of the vector quote: 64 bytes after the 34-byte qualifiedSigner (offset 6 + 2 + 34 + 2).
const vectorNonce = vectorQuote.slice(44, 44 + 64);

const fixture = (name: string): Uint8Array => new Uint8Array(readFileSync(fileURLToPath(new URL(`./testdata/${name}`, import.meta.url))));
const FIXTURE_NONCE = fromHex('00112233445566778899aabbccddeeff');

function mutateVector(f: (j: typeof vectorJson) => void): Uint8Array {
  const j = structuredClone(vectorJson);
  f(j);
  return utf8(JSON.stringify(j));
}

function flipByte(b64: string, at: number): string {
  const b = fromBase64(b64);
  const i = at < 0 ? b.length + at : at;
  b[i] = b[i]! ^ 0x01;
  return toBase64(b);
}

describe('TPM verifier: trustee plain-TPM vector (azure-vtpm/tpm_evidence.json)', () => {
  it('is detected as TPM evidence', () => {
    expect(tpmVerifier.detect(vectorBytes)).toBe(true);
    expect(tpmVerifier.detect(readVector('attestation/azure-vtpm/az-snp-vtpm/evidence-v1.json'))).toBe(false);
    expect(tpmVerifier.detect(utf8('{"format":"custody-sim/v1"}'))).toBe(false);
    expect(tpmVerifier.detect(readVector('attestation/sev-snp/go-sev-guest/attestation.bin'))).toBe(false);
  });

  it('verifies: RSASSA/SHA-256 signature over TPMS_ATTEST and SHA-256(PCR0..23) = pcrDigest', async () => {
    const r = await tpmVerifier.verify({ evidence: vectorBytes, now: AT });
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.steps.map((s) => [s.name, s.ok])).toEqual([
      ['parse', true],
      ['signature', true],
      ['measurements', true],
    ]);
    expect(r.warnings).toContain(NO_AK_CHAIN_WARNING);
    const c = r.claims!;
    expect(c.platform).toBe('tpm');
    expect(c.simulated).toBe(false);
    expect(Object.keys(c.measurements)).toHaveLength(24);
    expect(c.measurements.pcr0).toBe('00'.repeat(32));
    expect(c.measurements.pcr17).toBe('ff'.repeat(32));
    expect(c.measurements.pcr23).toBe('00'.repeat(32));
    expect(c.reportData).toBe(toHex(vectorNonce));
    expect(c.reportData.startsWith('a04182b5')).toBe(true);
    // The AK is trusted only via policy: its SPKI digest is what a policy pins.
    const akSha = createHash('sha256').update(fromBase64(vectorJson.ak_public)).digest('hex');
    expect(c.signer).toEqual({ chain: [], rootSha256: akSha, kind: 'TPM AK (no certificate)' });
    expect(c.platformClaims.akSpkiSha256).toBe(akSha);
    expect(c.platformClaims.akCertificate).toBe(false);
    expect(c.platformClaims.pcrBank).toBe('sha256');
    expect(c.platformClaims.pcrDigest).toBe('019de64c9318655e422c3d03831169896e31f02a1d74e4d8fef575bf4e0d75fa');
    expect(c.platformClaims.firmwareVersion).toBe('2019102300163636');
    expect(r.steps.find((s) => s.name === 'signature')!.detail).toMatch(/no AK certificate/);
  });

  it('gives the same verdict at the real current time (nothing in a plain quote expires)', async () => {
    const r = await tpmVerifier.verify({ evidence: vectorBytes, now: new Date() });
    expect(r.ok).toBe(true);
  });

  it('checks the nonce when one is expected', async () => {
    const r = await tpmVerifier.verify({ evidence: vectorBytes, now: AT, nonce: vectorNonce });
    expect(r.ok).toBe(true);
    expect(r.steps.at(-1)).toMatchObject({ name: 'nonce', ok: true });
    expect(r.warnings.some((w) => w.includes('nonce'))).toBe(false);
  });

  it('reads the same quote re-encoded as custody-tpm-quote/v1 (SPKI base64 and PEM AK forms)', async () => {
    const ev = parseTpmEvidence(vectorBytes);
    const values = Object.fromEntries(vectorJson.tpm_quote.pcrs.map((v, i) => [i, fromHex(v)]));
    const base = { quote: vectorQuote, signature: fromBase64(vectorJson.tpm_quote.signature), pcrs: [{ bank: 'sha256' as const, values }] };
    for (const akPublic of [ev.ak.spki, `-----BEGIN PUBLIC KEY-----\n${vectorJson.ak_public}\n-----END PUBLIC KEY-----\n`]) {
      const r = await tpmVerifier.verify({ evidence: encodeTpmEvidence({ ...base, akPublic }), now: AT, nonce: vectorNonce });
      expect(r.ok).toBe(true);
    }
  });

  it('pins the AK when roots are given (SPKI DER or PEM): its own key passes, any other is ERR_CERT_ROOT_UNTRUSTED', async () => {
    const own = parseTpmEvidence(vectorBytes).ak.spki;
    const pem = utf8(`-----BEGIN PUBLIC KEY-----\n${vectorJson.ak_public}\n-----END PUBLIC KEY-----\n`);
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' });
    for (const roots of [[own], [pem], [new Uint8Array(other), own]]) {
      const r = await tpmVerifier.verify({ evidence: vectorBytes, now: AT, nonce: vectorNonce, roots });
      expect(r.ok).toBe(true);
      expect(r.steps.find((s) => s.name === 'signature')?.detail).toContain('AK pinned by the given roots');
    }
    for (const roots of [[new Uint8Array(other)], [utf8('not a key')], [own.slice(0, -1)]]) {
      const r = await tpmVerifier.verify({ evidence: vectorBytes, now: AT, nonce: vectorNonce, roots });
      expect(r.ok).toBe(false);
      expect(r.errors[0]?.code).toBe('ERR_CERT_ROOT_UNTRUSTED');
    }
  });

  // Tampered twins. A plain TPM quote has no certificate chain, so the chain twins (swapped or
  // missing chain certificate, wrong root) become "a different AK" here.
  const otherRsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({ type: 'spki', format: 'der' });
  const otherEc = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' });
  const twins: { name: string; evidence: Uint8Array; nonce?: Uint8Array; code: string; step: string }[] = [
    { name: 'a changed PCR value', evidence: mutateVector((j) => (j.tpm_quote.pcrs[17] = 'fe' + 'ff'.repeat(31))), code: 'ERR_TPM_PCR_DIGEST', step: 'measurements' },
    { name: 'a missing selected PCR', evidence: mutateVector((j) => j.tpm_quote.pcrs.pop()), code: 'ERR_TPM_PCR_MISSING', step: 'measurements' },
    { name: 'a flipped signature byte', evidence: mutateVector((j) => (j.tpm_quote.signature = flipByte(j.tpm_quote.signature, -1))), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a flipped extraData (nonce) byte in the quote', evidence: mutateVector((j) => (j.tpm_quote.message = flipByte(j.tpm_quote.message, 50))), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a flipped pcrDigest byte in the quote', evidence: mutateVector((j) => (j.tpm_quote.message = flipByte(j.tpm_quote.message, -1))), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a wrong nonce', evidence: vectorBytes, nonce: fromHex('00'.repeat(64)), code: 'ERR_EVIDENCE_NONCE', step: 'nonce' },
    { name: 'a nonce that is only a prefix', evidence: vectorBytes, nonce: vectorNonce.slice(0, 32), code: 'ERR_EVIDENCE_NONCE', step: 'nonce' },
    { name: 'another RSA AK (wrong signer)', evidence: mutateVector((j) => (j.ak_public = toBase64(otherRsa))), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'an EC AK for an RSA signature', evidence: mutateVector((j) => (j.ak_public = toBase64(otherEc))), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a truncated quote', evidence: mutateVector((j) => (j.tpm_quote.message = toBase64(vectorQuote.slice(0, 100)))), code: 'ERR_INPUT_TRUNCATED', step: 'parse' },
    { name: 'a wrong magic', evidence: mutateVector((j) => (j.tpm_quote.message = flipByte(j.tpm_quote.message, 0))), code: 'ERR_INPUT_MALFORMED', step: 'parse' },
    { name: 'a PCR value of the wrong length', evidence: mutateVector((j) => (j.tpm_quote.pcrs[3] = '00')), code: 'ERR_INPUT_MALFORMED', step: 'parse' },
  ];
  for (const t of twins) {
    it(`rejects ${t.name} with ${t.code}`, async () => {
      const r = await tpmVerifier.verify({ evidence: t.evidence, now: AT, ...(t.nonce ? { nonce: t.nonce } : {}) });
      expect(r.ok).toBe(false);
      expect(r.errors.map((e) => e.code)).toEqual([t.code]);
      expect(r.steps.at(-1)).toMatchObject({ name: t.step, ok: false, code: t.code });
      if (t.step !== 'parse') expect(r.claims?.platform).toBe('tpm');
    });
  }

  it('puts only PCRs the quote selected into the claims', async () => {
    // Same PCR values plus an extra bank the quote does not select: the extra bank is ignored.
    const values = Object.fromEntries(vectorJson.tpm_quote.pcrs.map((v, i) => [i, fromHex(v)]));
    const extra = Object.fromEntries([[0, new Uint8Array(20).fill(7)]]);
    const ev = encodeTpmEvidence({
      akPublic: fromBase64(vectorJson.ak_public),
      quote: vectorQuote,
      signature: fromBase64(vectorJson.tpm_quote.signature),
      pcrs: [
        { bank: 'sha256', values },
        { bank: 'sha1', values: extra },
      ],
    });
    const r = await tpmVerifier.verify({ evidence: ev, now: AT });
    expect(r.ok).toBe(true);
    expect(Object.keys(r.claims!.measurements).every((k) => /^pcr\d+$/.test(k))).toBe(true);
  });
});

describe('TPM verifier: swtpm fixtures (RSA and ECC AKs given as TPM2B_PUBLIC)', () => {
  for (const alg of ['rsa', 'ecc'] as const) {
    const evidence = fixture(`swtpm-${alg}-quote.json`);

    it(`${alg}: verifies, checks AK attributes, and the nonce`, async () => {
      const r = await tpmVerifier.verify({ evidence, now: AT, nonce: FIXTURE_NONCE });
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.steps.find((s) => s.name === 'signature')!.detail).toMatch(alg === 'rsa' ? /RSASSA\/SHA-256 .* rsa-2048 .*restricted signing key/ : /ECDSA\/SHA-256 .* ecc-p256 .*restricted signing key/);
      expect(r.claims!.reportData).toBe(toHex(FIXTURE_NONCE));
      expect(r.claims!.measurements.pcr16).not.toBe('00'.repeat(32));
      expect(r.claims!.platformClaims.akSource).toBe('tpm2b-public');
      // The AK name is nameAlg || SHA-256(TPMT_PUBLIC): 34 bytes starting with 000b.
      expect(r.claims!.platformClaims.akName).toMatch(/^000b[0-9a-f]{64}$/);
      expect(r.warnings).not.toContain('the AK was given without its TPM public area, so its attributes (restricted signing key) could not be checked');
    });

    it(`${alg}: TPMT_PUBLIC -> SPKI conversion equals tpm2-tools' PEM`, () => {
      const ev = parseTpmEvidence(evidence);
      const pem = new TextDecoder().decode(fixture(`swtpm-${alg}-ak.pem`));
      const der = fromBase64(pem.replace(/-----[A-Z ]+-----/g, ''));
      expect(toHex(ev.ak.spki)).toBe(toHex(der));
    });

    it(`${alg}: the same quote verifies with the PEM AK, and fails for a replayed nonce`, async () => {
      const j = JSON.parse(new TextDecoder().decode(evidence)) as Record<string, unknown>;
      j.ak_public = new TextDecoder().decode(fixture(`swtpm-${alg}-ak.pem`));
      const ev = utf8(JSON.stringify(j));
      expect((await tpmVerifier.verify({ evidence: ev, now: AT, nonce: FIXTURE_NONCE })).ok).toBe(true);
      const replay = await tpmVerifier.verify({ evidence: ev, now: AT, nonce: fromHex('ffeeddccbbaa99887766554433221100') });
      expect(replay.errors.map((e) => e.code)).toEqual(['ERR_EVIDENCE_NONCE']);
    });

    it(`${alg}: a flipped signature byte fails`, async () => {
      const j = JSON.parse(new TextDecoder().decode(evidence)) as { signature: string };
      j.signature = flipByte(j.signature, alg === 'rsa' ? -1 : 10);
      const r = await tpmVerifier.verify({ evidence: utf8(JSON.stringify(j)), now: AT });
      expect(r.errors.map((e) => e.code)).toEqual(['ERR_EVIDENCE_SIGNATURE']);
    });
  }

  it('rejects an AK whose public area is not a restricted signing key', async () => {
    const j = JSON.parse(new TextDecoder().decode(fixture('swtpm-ecc-quote.json'))) as { ak_public: string };
    const pub = fromBase64(j.ak_public);
    // TPM2B size (2) + type (2) + nameAlg (2): objectAttributes; clear `restricted` (bit 16).
    pub[2 + 2 + 2 + 1] = pub[2 + 2 + 2 + 1]! & ~0x01;
    j.ak_public = toBase64(pub);
    const r = await tpmVerifier.verify({ evidence: utf8(JSON.stringify(j)), now: AT });
    expect(r.errors.map((e) => e.code)).toEqual(['ERR_TPM_AK_ATTRIBUTES']);
  });

  it('verifyTpmQuote (the reusable one-call form) checks signature, digest and nonce', async () => {
    const ev = parseTpmEvidence(fixture('swtpm-rsa-quote.json'));
    const out = await verifyTpmQuote(ev, { nonce: FIXTURE_NONCE });
    expect(out.akAttributes.checked).toBe(true);
    expect(out.nonce).toMatch(/16-byte nonce/);
    await expect(verifyTpmQuote({ ...ev, ak: akFromSpki(parseTpmEvidence(vectorBytes).ak.spki) })).rejects.toMatchObject({ code: 'ERR_EVIDENCE_SIGNATURE' });
    await expect(verifyTpmQuote(ev, { nonce: new Uint8Array(16) })).rejects.toMatchObject({ code: 'ERR_EVIDENCE_NONCE' });
  });

  it('verifyTpmQuote with a PCR list and a JWK AK (the Azure vTPM shape)', async () => {
    const v = parseTpmEvidence(vectorBytes);
    const publicKey = createPublicKey({ key: Buffer.from(v.ak.spki), format: 'der', type: 'spki' });
    const jwk = publicKey.export({ format: 'jwk' }) as { kty: string; n: string; e: string };
    const quote = { attest: v.attest, signature: v.signature, ak: akFromJwk(jwk), pcrs: [pcrBankFromList('sha256', vectorJson.tpm_quote.pcrs.map((h) => fromHex(h)))] };
    await expect(verifyTpmQuote(quote, { nonce: vectorNonce })).resolves.toMatchObject({ akAttributes: { checked: false } });
    expect(() => pcrBankFromList('sha256', [new Uint8Array(20)])).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
  });
});
