import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { fromBase64, fromHex, toBase64, utf8 } from '@custody/core';
import { readFileSync } from 'node:fs';
import { readVector } from '../../../../test/vectors.js';
import { readAttestationKey, readAttestationKeyString } from './ak.js';
import { tpmVerifier } from './verifier.js';
import { parseTpmEvidence } from './evidence.js';
import { computePcrDigest, verifyTpmQuoteSignature } from './quote.js';
import { PublicKeyMemo, hexOf, hexOfEach } from './cache.js';

// The verifier memoises work that is a pure function of exact bytes (imported AK keys, the AK's
// SPKI digest and TPM name, the SHA-256 of the PCR values). These tests run with the caches warm
// and check that every verification still decides on its own bytes.

const AT = new Date('2024-06-01T00:00:00Z');
const vectorBytes = readVector('attestation/azure-vtpm/tpm_evidence.json');
const vectorJson = JSON.parse(new TextDecoder().decode(vectorBytes)) as { ak_public: string; tpm_quote: { message: string; signature: string; pcrs: string[] } };

function mutate(f: (j: typeof vectorJson) => void): Uint8Array {
  const j = structuredClone(vectorJson);
  f(j);
  return utf8(JSON.stringify(j));
}

function flip(b64: string, at: number): string {
  const b = fromBase64(b64);
  const i = at < 0 ? b.length + at : at;
  b[i] = b[i]! ^ 0x01;
  return toBase64(b);
}

const codes = async (evidence: Uint8Array): Promise<string[]> => (await tpmVerifier.verify({ evidence, now: AT })).errors.map((e) => e.code);

describe('TPM verifier with warm caches', () => {
  it('still fails each tampered twin after the genuine quote verified, and still passes the genuine one after', async () => {
    expect(await codes(vectorBytes)).toEqual([]);
    expect(await codes(vectorBytes)).toEqual([]);
    expect(await codes(mutate((j) => (j.tpm_quote.pcrs[5] = '01' + '00'.repeat(31))))).toEqual(['ERR_TPM_PCR_DIGEST']);
    expect(await codes(mutate((j) => (j.tpm_quote.signature = flip(j.tpm_quote.signature, 40))))).toEqual(['ERR_EVIDENCE_SIGNATURE']);
    expect(await codes(mutate((j) => (j.tpm_quote.message = flip(j.tpm_quote.message, -2))))).toEqual(['ERR_EVIDENCE_SIGNATURE']);
    expect(await codes(vectorBytes)).toEqual([]);
  });

  it('gives each of many interleaved verifications its own verdict', async () => {
    const bad = mutate((j) => (j.tpm_quote.signature = flip(j.tpm_quote.signature, -1)));
    const badPcr = mutate((j) => (j.tpm_quote.pcrs[0] = 'ab'.repeat(32)));
    const inputs = Array.from({ length: 30 }, (_, i) => [vectorBytes, bad, badPcr][i % 3]!);
    const results = await Promise.all(inputs.map((evidence) => tpmVerifier.verify({ evidence, now: AT })));
    results.forEach((r, i) => expect(r.errors.map((e) => e.code)).toEqual([[], ['ERR_EVIDENCE_SIGNATURE'], ['ERR_TPM_PCR_DIGEST']][i % 3]));
  });

  it('reports only the parse failure when the PCR values are malformed after the signed parts (the early signature check is dropped)', async () => {
    const r = await tpmVerifier.verify({ evidence: mutate((j) => (j.tpm_quote.pcrs[2] = 'zz'.repeat(32))), now: AT });
    expect(r.ok).toBe(false);
    expect(r.steps.map((s) => [s.name, s.ok])).toEqual([['parse', false]]);
    expect(r.errors.map((e) => e.code)).toEqual(['ERR_INPUT_MALFORMED']);
  });

  it('the PCR digest memo returns the real SHA-256, and a caller changing it cannot change the next result', async () => {
    const ev = parseTpmEvidence(vectorBytes);
    const want = createHash('sha256').update(Buffer.concat(vectorJson.tpm_quote.pcrs.map((h) => fromHex(h)))).digest('hex');
    const first = await computePcrDigest(ev.attest.quote!, ev.pcrs, ev.signature.hashAlg);
    expect(hexOf(first)).toBe(want);
    first.fill(0);
    expect(hexOf(await computePcrDigest(ev.attest.quote!, ev.pcrs, ev.signature.hashAlg))).toBe(want);
    // One changed value gives a different digest (a memo entry of other bytes is not reused).
    const other = parseTpmEvidence(mutate((j) => (j.tpm_quote.pcrs[23] = '11'.repeat(32))));
    expect(hexOf(await computePcrDigest(other.attest.quote!, other.pcrs, other.signature.hashAlg))).not.toBe(want);
  });

  it('a cached AK key never makes another AK’s signature pass', async () => {
    const ev = parseTpmEvidence(vectorBytes);
    await verifyTpmQuoteSignature(ev.attest, ev.signature, ev.ak);
    const spki = ev.ak.spki.slice();
    spki[spki.length - 10]! ^= 0x01; // a different modulus, same length and form
    const other = { ...ev.ak, spki };
    await expect(verifyTpmQuoteSignature(ev.attest, ev.signature, other)).rejects.toMatchObject({ code: 'ERR_EVIDENCE_SIGNATURE' });
  });
});

describe('AK text cache', () => {
  for (const name of ['vector (SPKI)', 'swtpm ECC (TPM2B_PUBLIC)', 'swtpm RSA (TPM2B_PUBLIC)']) {
    it(`${name}: a repeated ak_public gives an equal AK that shares no buffer with the first`, () => {
      const text =
        name === 'vector (SPKI)'
          ? vectorJson.ak_public
          : (JSON.parse(readFileSync(new URL(`./testdata/swtpm-${name.includes('ECC') ? 'ecc' : 'rsa'}-quote.json`, import.meta.url), 'utf8')) as { ak_public: string }).ak_public;
      const a = readAttestationKeyString(text);
      const b = readAttestationKeyString(text);
      const fresh = readAttestationKey(fromBase64(text));
      expect(b).toEqual(fresh);
      expect(a).toEqual(fresh);
      // Scribble over every byte array of the first: the second and later reads are unchanged.
      const scribble = (v: unknown): void => {
        if (v instanceof Uint8Array) v.fill(0xee);
        else if (v && typeof v === 'object') Object.values(v).forEach(scribble);
      };
      scribble(a);
      expect(b).toEqual(fresh);
      expect(readAttestationKeyString(text)).toEqual(fresh);
    });
  }
});

describe('PublicKeyMemo', () => {
  it('keeps a computed value (peek sees it once settled) and drops a failure so the next call retries', async () => {
    const m = new PublicKeyMemo<number>(4);
    const k = [Uint8Array.of(1, 2, 3)];
    let calls = 0;
    await expect(m.get(k, () => (calls++, Promise.reject(new Error('no'))))).rejects.toThrow('no');
    await Promise.resolve();
    expect(m.peek(k)).toBeUndefined();
    const p = m.get(k, () => (calls++, Promise.resolve(7)));
    expect(m.peek(k)).toBeUndefined();
    expect(await p).toBe(7);
    expect(m.peek(k)).toBe(7);
    expect(await m.get(k, () => (calls++, Promise.resolve(8)))).toBe(7);
    expect(calls).toBe(2);
  });
});

describe('hexOfEach', () => {
  it('gives the same lowercase hex as hexOf for each value', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 70 }), { maxLength: 30 }), (list) => {
        expect(hexOfEach(list)).toEqual(list.map(hexOf));
      }),
    );
  });
});
