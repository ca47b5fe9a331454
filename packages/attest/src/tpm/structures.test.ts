import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { concatBytes, fromBase64, toHex } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { parseTpm2bPublic, parseTpmsAttest, parseTpmtPublic, parseTpmtSignature, tpmObjectName } from './structures.js';
import { akFromJwk, readAttestationKey } from './ak.js';
import { decodeSpki } from './spki.js';
import { TPM_ALG, TPMA_OBJECT } from './constants.js';

const vector = JSON.parse(new TextDecoder().decode(readVector('attestation/azure-vtpm/tpm_evidence.json'))) as { ak_public: string; tpm_quote: { message: string; signature: string } };
const quote = fromBase64(vector.tpm_quote.message);
const signature = fromBase64(vector.tpm_quote.signature);
const fixture = (name: string): { ak_public: string; quote: string; signature: string } =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`./testdata/${name}`, import.meta.url)), 'utf8')) as { ak_public: string; quote: string; signature: string };

const code = (f: () => unknown): string => {
  try {
    f();
  } catch (e) {
    return (e as { code: string }).code;
  }
  return 'no error';
};

describe('parseTpmsAttest', () => {
  it('reads every field of the vector quote', () => {
    const a = parseTpmsAttest(quote);
    expect(a.magic).toBe(0xff544347);
    expect(a.type).toBe(0x8018);
    expect(toHex(a.qualifiedSigner)).toBe('000b3081a4cbbe307f3de1456f9875a3c2632528a70d91fcf578ccf092465e4e8e09');
    expect(a.extraData.length).toBe(64);
    expect(a.clockInfo).toEqual({ clock: 1913548331n, resetCount: 2, restartCount: 0, safe: true });
    expect(a.firmwareVersion).toBe(0x2019102300163636n);
    expect(a.quote!.pcrSelect).toEqual([{ hashAlg: TPM_ALG.sha256, hash: 'sha256', sizeofSelect: 3, pcrs: [...Array(24).keys()] }]);
    expect(toHex(a.quote!.pcrDigest)).toBe('019de64c9318655e422c3d03831169896e31f02a1d74e4d8fef575bf4e0d75fa');
    expect(toHex(a.bytes)).toBe(toHex(quote));
  });

  it('accepts a TPM2B_ATTEST around the structure and signs over the inner bytes', () => {
    const wrapped = concatBytes(Uint8Array.of(quote.length >> 8, quote.length & 0xff), quote);
    expect(toHex(parseTpmsAttest(wrapped).bytes)).toBe(toHex(quote));
    const badSize = wrapped.slice();
    badSize[1] = badSize[1]! ^ 1;
    expect(code(() => parseTpmsAttest(badSize))).toBe('ERR_INPUT_MALFORMED');
  });

  it('reads a bitmap selection in PCR order (bit i of byte j = PCR 8j+i)', () => {
    const a = parseTpmsAttest(quote);
    const q = quote.slice();
    // The selection bitmap is the 3 bytes before the 34-byte pcrDigest TPM2B.
    q.set([0x81, 0x00, 0x80], q.length - 34 - 3);
    expect(parseTpmsAttest(q).quote!.pcrSelect[0]!.pcrs).toEqual([0, 7, 23]);
    expect(a.quote!.pcrSelect[0]!.pcrs).toHaveLength(24);
  });

  it('rejects bad magic, unknown types, lying lengths and trailing bytes with stable codes', () => {
    const badMagic = quote.slice();
    badMagic[0] = 0;
    expect(code(() => parseTpmsAttest(badMagic))).toBe('ERR_INPUT_MALFORMED');
    const badType = quote.slice();
    badType[5] = 0x99;
    expect(code(() => parseTpmsAttest(badType))).toBe('ERR_INPUT_MALFORMED');
    const longSigner = quote.slice();
    longSigner[6] = 0xff;
    expect(code(() => parseTpmsAttest(longSigner))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseTpmsAttest(quote.subarray(0, quote.length - 1)))).toBe('ERR_INPUT_TRUNCATED');
    expect(code(() => parseTpmsAttest(concatBytes(quote, Uint8Array.of(0))))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseTpmsAttest(new Uint8Array(5000)))).toBe('ERR_INPUT_TOO_LARGE');
    expect(code(() => parseTpmsAttest(new Uint8Array()))).toBe('ERR_INPUT_TRUNCATED');
  });

  it('keeps the attested bytes of other attestation types without parsing them as a quote', () => {
    const certify = quote.slice();
    certify[5] = 0x17; // TPM_ST_ATTEST_CERTIFY
    const a = parseTpmsAttest(certify);
    expect(a.quote).toBeUndefined();
    expect(a.attested.length).toBeGreaterThan(0);
  });
});

describe('parseTpmtSignature', () => {
  it('reads RSASSA/SHA-256 from the vector', () => {
    const s = parseTpmtSignature(signature);
    expect(s.scheme).toBe('rsassa');
    expect(s.hashAlg).toBe(TPM_ALG.sha256);
    expect(s.scheme === 'rsassa' && s.sig.length).toBe(256);
  });

  it('reads ECDSA r and s (swtpm fixture) and RSAPSS', () => {
    const s = parseTpmtSignature(fromBase64(fixture('swtpm-ecc-quote.json').signature));
    expect(s.scheme).toBe('ecdsa');
    if (s.scheme !== 'ecdsa') return;
    expect(s.r.length).toBe(32);
    expect(s.s.length).toBe(32);
    const pss = signature.slice();
    pss[1] = 0x16;
    expect(parseTpmtSignature(pss).scheme).toBe('rsapss');
  });

  it('rejects unknown schemes, non-hash algorithms, trailing and truncated input', () => {
    expect(code(() => parseTpmtSignature(Uint8Array.of(0x00, 0x01, 0x00, 0x0b)))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseTpmtSignature(Uint8Array.of(0x00, 0x14, 0x00, 0x01, 0, 0)))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseTpmtSignature(concatBytes(signature, Uint8Array.of(1))))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseTpmtSignature(signature.subarray(0, 100)))).toBe('ERR_INPUT_TRUNCATED');
    expect(code(() => parseTpmtSignature(Uint8Array.of(0x00, 0x14, 0x00, 0x0b, 0x00, 0x00)))).toBe('ERR_INPUT_MALFORMED');
    expect(code(() => parseTpmtSignature(Uint8Array.of(0x00, 0x14, 0x00, 0x0b, 0xff, 0xff)))).toBe('ERR_INPUT_MALFORMED');
  });
});

describe('parseTpm2bPublic / parseTpmtPublic', () => {
  it('reads the swtpm ECC AK: P-256, ECDSA/SHA-256, restricted signing key', async () => {
    const p = parseTpm2bPublic(fromBase64(fixture('swtpm-ecc-quote.json').ak_public));
    expect(p.type).toBe('ecc');
    expect(p.nameAlg).toBe(TPM_ALG.sha256);
    expect(p.objectAttributes & TPMA_OBJECT.restricted).toBeTruthy();
    expect(p.objectAttributes & TPMA_OBJECT.sign).toBeTruthy();
    expect(p.scheme).toEqual({ scheme: TPM_ALG.ecdsa, hashAlg: TPM_ALG.sha256 });
    expect(p.ecc!.curveId).toBe(3);
    expect(p.ecc!.x.length).toBe(32);
    expect((await tpmObjectName(p)).length).toBe(34);
    expect(toHex(parseTpmtPublic(fromBase64(fixture('swtpm-ecc-quote.json').ak_public).subarray(2)).bytes)).toBe(toHex(p.bytes));
  });

  it('reads the swtpm RSA AK: 2048 bits, RSASSA/SHA-256, default exponent', () => {
    const p = parseTpm2bPublic(fromBase64(fixture('swtpm-rsa-quote.json').ak_public));
    expect(p.type).toBe('rsa');
    expect(p.rsa!.keyBits).toBe(2048);
    expect(p.rsa!.exponent).toBe(0);
    expect(p.scheme).toEqual({ scheme: TPM_ALG.rsassa, hashAlg: TPM_ALG.sha256 });
  });

  it('rejects wrong sizes, key types and trailing bytes', () => {
    const b = fromBase64(fixture('swtpm-ecc-quote.json').ak_public);
    expect(code(() => parseTpm2bPublic(b.subarray(0, b.length - 1)))).toBe('ERR_INPUT_MALFORMED');
    const keyedHash = b.slice();
    keyedHash[3] = 0x08;
    expect(code(() => parseTpm2bPublic(keyedHash))).toBe('ERR_INPUT_UNSUPPORTED');
    const trailing = concatBytes(Uint8Array.of(0, b.length - 1), b.subarray(2), Uint8Array.of(0));
    expect(code(() => parseTpm2bPublic(trailing))).toBe('ERR_INPUT_MALFORMED');
    const rsa = fromBase64(fixture('swtpm-rsa-quote.json').ak_public);
    const badBits = rsa.slice();
    // keyBits sits right before the exponent and the 256-byte modulus TPM2B.
    badBits[rsa.length - 256 - 2 - 4 - 2] = 0x04;
    expect(code(() => parseTpm2bPublic(badBits))).toBe('ERR_INPUT_MALFORMED');
  });
});

describe('attestation key forms', () => {
  it('reads SPKI DER, PEM and JWK to the same SPKI', () => {
    const { publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-384' });
    const der = new Uint8Array(publicKey.export({ type: 'spki', format: 'der' }));
    const pem = new TextEncoder().encode(publicKey.export({ type: 'spki', format: 'pem' }) as string);
    const jwk = publicKey.export({ format: 'jwk' }) as { kty: string; crv: string; x: string; y: string };
    expect(toHex(readAttestationKey(der).spki)).toBe(toHex(der));
    expect(toHex(readAttestationKey(pem).spki)).toBe(toHex(der));
    expect(toHex(akFromJwk(jwk).spki)).toBe(toHex(der));
    const rsa = generateKeyPairSync('rsa', { modulusLength: 3072 }).publicKey;
    const rsaDer = new Uint8Array(rsa.export({ type: 'spki', format: 'der' }));
    expect(toHex(akFromJwk(rsa.export({ format: 'jwk' }) as { kty: string; n: string; e: string }).spki)).toBe(toHex(rsaDer));
    expect(decodeSpki(rsaDer)).toMatchObject({ kty: 'RSA', bits: 3072 });
  });

  it('rejects small RSA keys, unknown curves and other key types', () => {
    const small = new Uint8Array(generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'der' }));
    expect(code(() => readAttestationKey(small))).toBe('ERR_INPUT_UNSUPPORTED');
    const k1 = new Uint8Array(generateKeyPairSync('ec', { namedCurve: 'secp256k1' }).publicKey.export({ type: 'spki', format: 'der' }));
    expect(code(() => readAttestationKey(k1))).toBe('ERR_INPUT_UNSUPPORTED');
    const ed = new Uint8Array(generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'der' }));
    expect(code(() => readAttestationKey(ed))).toBe('ERR_INPUT_UNSUPPORTED');
    expect(code(() => readAttestationKey(new Uint8Array()))).toBe('ERR_INPUT_MALFORMED');
  });
});
