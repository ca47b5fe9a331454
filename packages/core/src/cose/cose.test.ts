import { describe, expect, it } from 'vitest';
import { readVector } from '../../../../test/vectors.js';
import { fromHex, toHex, utf8 } from '../bytes.js';
import { subtle } from '../crypto.js';
import { CustodyError } from '../errors.js';
import { decodeCbor } from '../cbor/decode.js';
import { encodeCbor } from '../cbor/encode.js';
import { X509Certificate } from '../x509/certificate.js';
import { parseDer } from '../x509/der.js';
import { parsePublicKeyInfo, type PublicKeyInfo } from '../x509/signature.js';
import { coseSign1ToBeSigned, encodeCoseSign1, parseCoseSign1, signCoseSign1, verifyCoseSign1, type CoseAlgorithm } from './sign1.js';

async function keyInfo(key: CryptoKey): Promise<PublicKeyInfo> {
  return parsePublicKeyInfo(parseDer(new Uint8Array(await subtle.exportKey('spki', key))));
}

async function codeOf(fn: () => unknown): Promise<string> {
  try {
    await fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  return 'no error';
}

// cose-wg/Examples sign1-tests (https://github.com/cose-wg/Examples), key "11" (P-256).
const COSE_WG_KEY = { kty: 'EC', crv: 'P-256', x: 'usWxHK2PmfnHKwXPS54m0kTcGJ90UiglWiGahtagnv8', y: 'IBOL-C3BttVivg-lSreASjpkttcsz-1rb7btKLv8EX4' };
const SIG_A = 'EAE868ECC176883766C5DC5BA5B8DCA25DAB3C2E56A551CE5705B793914348E1';
const PAYLOAD = '546869732069732074686520636F6E74656E742E';
const COSE_WG: { name: string; cbor: string; externalAad?: string; toBeSigned?: string; expect: boolean | string }[] = [
  {
    name: 'sign-pass-01 (alg in the unprotected bucket, protected = empty map)',
    cbor: `D28441A0A2012604423131${'54' + PAYLOAD}5840${SIG_A}1A02E5F0344BF2D4EE5C7FD75A68A9F5E0B3CC1F1FC1409C189566586FF9D610`,
    toBeSigned: '846A5369676E617475726531404054546869732069732074686520636F6E74656E742E',
    expect: true,
  },
  {
    name: 'sign-pass-02 (external AAD)',
    cbor: `D28443A10126A104423131${'54' + PAYLOAD}5840${SIG_A}55388B10C4F1B59A6733EAB416870A945111A4B2FBDBEF33A77234B1DEFF2F9B`,
    externalAad: '11aa22bb33cc44dd55006699',
    toBeSigned: '846A5369676E61747572653143A101264C11AA22BB33CC44DD5500669954546869732069732074686520636F6E74656E742E',
    expect: true,
  },
  {
    name: 'sign-pass-03 (untagged)',
    cbor: `8443A10126A104423131${'54' + PAYLOAD}5840${SIG_A}9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794`,
    toBeSigned: '846A5369676E61747572653143A101264054546869732069732074686520636F6E74656E742E',
    expect: true,
  },
  { name: 'sign-fail-01 (wrong CBOR tag 998)', cbor: `D903E68443A10126A104423131${'54' + PAYLOAD}5840${SIG_A}9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794`, expect: 'ERR_INPUT_MALFORMED' },
  { name: 'sign-fail-02 (payload changed)', cbor: `D28443A10126A10442313154546869732069732074686520636F6E74656E742F5840${SIG_A}9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794`, expect: false },
  { name: 'sign-fail-03 (alg -999)', cbor: `D28445A1013903E6A104423131${'54' + PAYLOAD}5840${SIG_A}9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794`, expect: 'ERR_INPUT_UNSUPPORTED' },
  { name: 'sign-fail-04 (alg "unknown")', cbor: `D2844AA10167756E6B6E6F776EA104423131${'54' + PAYLOAD}5840${SIG_A}9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794`, expect: 'ERR_INPUT_UNSUPPORTED' },
  { name: 'sign-fail-06 (protected attribute added)', cbor: `D28445A201260300A104423131${'54' + PAYLOAD}5840${SIG_A}9F43D6C6BA654472DA301B645B293C9BA939295B97C4BDB847782BFF384C5794`, expect: false },
  { name: 'sign-fail-07 (protected attribute removed)', cbor: `D28443A10126A104423131${'54' + PAYLOAD}5840${SIG_A}72727F48461FABBBA2E343492DDECAC3983686250BC68E9F1A7A07D41225B59F`, expect: false },
];

describe('COSE_Sign1: cose-wg/Examples sign1 vectors', async () => {
  const pub = await subtle.importKey('jwk', COSE_WG_KEY, { name: 'ECDSA', namedCurve: 'P-256' }, true, ['verify']);
  const info = await keyInfo(pub);
  for (const v of COSE_WG) {
    it(v.name, async () => {
      const bytes = fromHex(v.cbor);
      if (typeof v.expect === 'string') {
        expect(await codeOf(() => parseCoseSign1(bytes))).toBe(v.expect);
        return;
      }
      const msg = parseCoseSign1(bytes);
      expect(msg.alg).toBe('ES256');
      const opts = v.externalAad ? { externalAad: fromHex(v.externalAad) } : {};
      if (v.toBeSigned) expect(toHex(coseSign1ToBeSigned(msg, opts))).toBe(v.toBeSigned.toLowerCase());
      expect(await verifyCoseSign1(msg, info, opts)).toBe(v.expect);
      if (v.expect && v.externalAad) expect(await verifyCoseSign1(msg, info)).toBe(false);
    });
  }
});

describe('COSE_Sign1: the AWS Nitro attestation document (ES384)', () => {
  const leafOf = (doc: Uint8Array) => {
    const payload = decodeCbor(parseCoseSign1(doc).payload!) as Map<string, unknown>;
    return new X509Certificate(payload.get('certificate') as Uint8Array);
  };

  it('parses the real document and verifies it with its signing certificate', async () => {
    const doc = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
    const msg = parseCoseSign1(doc, { requireTag: false });
    expect(msg.alg).toBe('ES384');
    expect(msg.algProtected).toBe(true);
    expect(toHex(msg.protectedBytes)).toBe('a1013822');
    expect(msg.unprotectedHeader.size).toBe(0);
    expect(msg.signature.length).toBe(96);
    expect(await verifyCoseSign1(msg, leafOf(doc).publicKey)).toBe(true);
  });

  it('returns false (not a DOMException) for a key WebCrypto cannot import', async () => {
    const doc = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
    const key = leafOf(doc).publicKey;
    const spki = key.spki.slice();
    spki[spki.length - 97] = 0x05; // the uncompressed-point prefix 04 of the P-384 key
    expect(await verifyCoseSign1(parseCoseSign1(doc), { ...key, spki })).toBe(false);
  });

  it('rejects the tampered fixture document', async () => {
    const doc = readVector('attestation/nitro/eternis_fixture_invalid_attestation.cbor');
    expect(await verifyCoseSign1(parseCoseSign1(doc), leafOf(doc).publicKey)).toBe(false);
  });

  it('refuses a key of the wrong curve for the algorithm', async () => {
    const doc = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
    const p256 = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const ed = (await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']));
    expect(await codeOf(async () => verifyCoseSign1(parseCoseSign1(doc), await keyInfo(ed.publicKey)))).toBe('ERR_INPUT_UNSUPPORTED');
    expect(await codeOf(async () => verifyCoseSign1(parseCoseSign1(doc), await keyInfo(p256.publicKey)))).toBe('ERR_INPUT_UNSUPPORTED');
  });
});

describe('COSE_Sign1: creation and round trip', () => {
  const algs: { alg: CoseAlgorithm; gen: EcKeyGenParams | Algorithm }[] = [
    { alg: 'ES256', gen: { name: 'ECDSA', namedCurve: 'P-256' } },
    { alg: 'ES384', gen: { name: 'ECDSA', namedCurve: 'P-384' } },
    { alg: 'ES512', gen: { name: 'ECDSA', namedCurve: 'P-521' } },
    { alg: 'EdDSA', gen: { name: 'Ed25519' } },
  ];
  for (const { alg, gen } of algs) {
    it(`signs and verifies ${alg}; a flipped signature, payload or AAD byte fails`, async () => {
      const kp = (await subtle.generateKey(gen, true, ['sign', 'verify'])) as CryptoKeyPair;
      const info = await keyInfo(kp.publicKey);
      const payload = utf8('custody payload');
      const externalAad = fromHex('0102');
      const kid = new Map([[4, utf8('k1')]]);
      const bytes = await signCoseSign1({ alg, key: kp.privateKey, payload, externalAad, unprotectedHeader: kid });
      const msg = parseCoseSign1(bytes, { requireTag: true });
      expect(msg.alg).toBe(alg);
      expect(msg.unprotectedHeader.get(4)).toStrictEqual(utf8('k1'));
      expect(await verifyCoseSign1(msg, info, { externalAad })).toBe(true);
      expect(await verifyCoseSign1(msg, info, { externalAad: fromHex('0103') })).toBe(false);
      const badSig = { ...msg, signature: msg.signature.slice() };
      badSig.signature[5]! ^= 1;
      expect(await verifyCoseSign1(badSig, info, { externalAad })).toBe(false);
      const badPayload = { ...msg, payload: utf8('custody payloaD') };
      expect(await verifyCoseSign1(badPayload, info, { externalAad })).toBe(false);
      const shortSig = { ...msg, signature: msg.signature.subarray(1) };
      expect(await verifyCoseSign1(shortSig, info, { externalAad })).toBe(false);
    });
  }

  it('supports detached payloads and untagged output', async () => {
    const kp = await subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']);
    const detachedPayload = utf8('detached');
    const bytes = await signCoseSign1({ alg: 'ES256', key: kp.privateKey, payload: null, detachedPayload, tagged: false });
    expect(bytes[0]).toBe(0x84);
    const msg = parseCoseSign1(bytes);
    expect(msg.payload).toBeNull();
    expect(msg.tagged).toBe(false);
    const info = await keyInfo(kp.publicKey);
    expect(await verifyCoseSign1(msg, info, { detachedPayload })).toBe(true);
    expect(await codeOf(() => verifyCoseSign1(msg, info))).toBe('ERR_INPUT_MALFORMED');
    expect(await codeOf(() => parseCoseSign1(bytes, { requireTag: true }))).toBe('ERR_INPUT_MALFORMED');
  });
});

describe('COSE_Sign1: malformed structures', () => {
  const sig = new Uint8Array(64);
  const prot = encodeCbor(new Map([[1, -7]]));
  const cases: { name: string; bytes: () => Uint8Array; code: string }[] = [
    { name: 'not an array', bytes: () => encodeCbor(new Map()), code: 'ERR_INPUT_MALFORMED' },
    { name: 'three items', bytes: () => encodeCbor([prot, new Map(), null]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'protected header as a map, not bytes', bytes: () => encodeCbor([new Map([[1, -7]]), new Map(), null, sig]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'protected bytes that are not a map', bytes: () => encodeCbor([encodeCbor([1]), new Map(), null, sig]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'protected bytes that are not CBOR', bytes: () => encodeCbor([fromHex('ff'), new Map(), null, sig]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'unprotected header as bytes', bytes: () => encodeCbor([prot, new Uint8Array(0), null, sig]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'payload as text', bytes: () => encodeCbor([prot, new Map(), 'x', sig]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'signature as an array', bytes: () => encodeCbor([prot, new Map(), null, []]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'no alg', bytes: () => encodeCbor([new Uint8Array(0), new Map(), null, sig]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'label in both buckets', bytes: () => encodeCbor([prot, new Map([[1, -7]]), null, sig]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'crit header', bytes: () => encodeCbor([encodeCbor(new Map<number, unknown>([[1, -7], [2, [99]]]) as never), new Map(), null, sig]), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'RS256 alg', bytes: () => encodeCbor([encodeCbor(new Map([[1, -257]])), new Map(), null, sig]), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'oversized message', bytes: () => encodeCbor([prot, new Map(), new Uint8Array(2 * 1024 * 1024), sig]), code: 'ERR_INPUT_TOO_LARGE' },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      expect(await codeOf(() => parseCoseSign1(c.bytes()))).toBe(c.code);
    });
  }

  it('re-encodes a parsed message to the same bytes', () => {
    const doc = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
    const msg = parseCoseSign1(doc);
    const again = encodeCoseSign1({ ...msg, tagged: msg.tagged });
    expect(toHex(again)).toBe(toHex(doc));
  });
});
