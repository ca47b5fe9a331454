import { ByteReader, ParseError, concatBytes, equalBytes, fromBase64Url, type Bytes } from '@custody/core';
import type { EcCurveName } from './constants.js';

// Just enough DER to move attestation keys between TPM, JWK and SubjectPublicKeyInfo form
// (RFC 5280 4.1.2.7, RFC 8017 A.1.1, RFC 5480 2). Decoding is strict: definite lengths,
// minimal length encoding, no trailing bytes.

const OID_RSA = Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01);
const OID_EC = Uint8Array.of(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01);
const CURVE_OIDS: Record<EcCurveName, Bytes> = {
  'P-256': Uint8Array.of(0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07),
  'P-384': Uint8Array.of(0x2b, 0x81, 0x04, 0x00, 0x22),
  'P-521': Uint8Array.of(0x2b, 0x81, 0x04, 0x00, 0x23),
};
const CURVE_SIZES: Record<EcCurveName, number> = { 'P-256': 32, 'P-384': 48, 'P-521': 66 };

const MAX_SPKI = 2048;
const MIN_RSA_BITS = 2048;
const MAX_RSA_BITS = 4096;

export type SpkiKey =
  | { kty: 'RSA'; bits: number; n: Bytes; e: Bytes }
  | { kty: 'EC'; curve: EcCurveName; x: Bytes; y: Bytes };

function derLength(n: number): Bytes {
  if (n < 0x80) return Uint8Array.of(n);
  const out: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) out.unshift(v & 0xff);
  return Uint8Array.of(0x80 | out.length, ...out);
}

function tlv(tag: number, body: Uint8Array): Bytes {
  return concatBytes(Uint8Array.of(tag), derLength(body.length), body);
}

function derUnsignedInteger(v: Uint8Array): Bytes {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const body = v.subarray(i);
  return tlv(0x02, body[0]! & 0x80 ? concatBytes(Uint8Array.of(0), body) : body);
}

/** SubjectPublicKeyInfo DER for an RSA key (rsaEncryption, NULL parameters). */
export function encodeRsaSpki(modulus: Uint8Array, exponent: Uint8Array): Bytes {
  const alg = tlv(0x30, concatBytes(tlv(0x06, OID_RSA), Uint8Array.of(0x05, 0x00)));
  const key = tlv(0x30, concatBytes(derUnsignedInteger(modulus), derUnsignedInteger(exponent)));
  return tlv(0x30, concatBytes(alg, tlv(0x03, concatBytes(Uint8Array.of(0), key))));
}

/** SubjectPublicKeyInfo DER for an uncompressed NIST curve point (id-ecPublicKey). */
export function encodeEcSpki(curve: EcCurveName, x: Uint8Array, y: Uint8Array): Bytes {
  const size = CURVE_SIZES[curve];
  const alg = tlv(0x30, concatBytes(tlv(0x06, OID_EC), tlv(0x06, CURVE_OIDS[curve])));
  const point = concatBytes(Uint8Array.of(0, 0x04), leftPad(x, size, 'x'), leftPad(y, size, 'y'));
  return tlv(0x30, concatBytes(alg, tlv(0x03, point)));
}

/** Left-pads a big-endian integer to `size` bytes; longer values (other than zero padding) are malformed. */
export function leftPad(v: Uint8Array, size: number, what: string): Bytes {
  let i = 0;
  while (v.length - i > size && v[i] === 0) i++;
  const body = v.subarray(i);
  if (body.length > size) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is longer than the curve size`, { detail: { length: body.length, size } });
  const out = new Uint8Array(size);
  out.set(body, size - body.length);
  return out;
}

function readTlv(r: ByteReader, tag: number, what: string): Bytes {
  const offset = r.offset;
  const t = r.u8();
  if (t !== tag) throw new ParseError('ERR_INPUT_MALFORMED', `${what}: expected DER tag 0x${tag.toString(16)}`, { detail: { offset, tag: t } });
  const first = r.u8();
  let len = first;
  if (first >= 0x80) {
    const n = first & 0x7f;
    if (n === 0 || n > 2) throw new ParseError('ERR_INPUT_MALFORMED', `${what}: unsupported DER length`, { detail: { offset } });
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + r.u8();
    if (len < 0x80 || (n === 2 && len < 0x100)) throw new ParseError('ERR_INPUT_MALFORMED', `${what}: non-minimal DER length`, { detail: { offset } });
  }
  return r.bytesView(len);
}

function readUnsignedInteger(r: ByteReader, what: string): Bytes {
  const v = readTlv(r, 0x02, what);
  if (v.length === 0 || v[0]! & 0x80) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not a positive INTEGER`);
  if (v.length > 1 && v[0] === 0 && !(v[1]! & 0x80)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not minimally encoded`);
  return v[0] === 0 && v.length > 1 ? v.slice(1) : v.slice();
}

/** Decodes an RSA or NIST-curve EC SubjectPublicKeyInfo. */
export function decodeSpki(der: Uint8Array): SpkiKey {
  if (der.length > MAX_SPKI) throw new ParseError('ERR_INPUT_TOO_LARGE', `SubjectPublicKeyInfo is larger than ${MAX_SPKI} bytes`, { detail: { size: der.length } });
  const outer = new ByteReader(der, 'SubjectPublicKeyInfo');
  const spki = new ByteReader(readTlv(outer, 0x30, 'SubjectPublicKeyInfo'), 'SubjectPublicKeyInfo');
  outer.end();
  const alg = new ByteReader(readTlv(spki, 0x30, 'AlgorithmIdentifier'), 'AlgorithmIdentifier');
  const oid = readTlv(alg, 0x06, 'algorithm OID');
  const bits = readTlv(spki, 0x03, 'subjectPublicKey');
  spki.end();
  if (bits.length < 1 || bits[0] !== 0) throw new ParseError('ERR_INPUT_MALFORMED', 'subjectPublicKey has unused bits');
  const key = bits.subarray(1);
  if (equalBytes(oid, OID_RSA)) {
    const nul = readTlv(alg, 0x05, 'RSA parameters');
    if (nul.length !== 0) throw new ParseError('ERR_INPUT_MALFORMED', 'RSA parameters are not NULL');
    alg.end();
    const seq = new ByteReader(key, 'RSAPublicKey');
    const body = new ByteReader(readTlv(seq, 0x30, 'RSAPublicKey'), 'RSAPublicKey');
    seq.end();
    const n = readUnsignedInteger(body, 'RSA modulus');
    const e = readUnsignedInteger(body, 'RSA exponent');
    body.end();
    const nbits = n.length * 8 - Math.clz32(n[0]!) + 24;
    if (nbits < MIN_RSA_BITS || nbits > MAX_RSA_BITS) throw new ParseError('ERR_INPUT_UNSUPPORTED', `RSA keys must have ${MIN_RSA_BITS} to ${MAX_RSA_BITS} bits`, { detail: { bits: nbits } });
    if (e.length > 4) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'RSA exponent is larger than 32 bits');
    return { kty: 'RSA', bits: nbits, n, e };
  }
  if (equalBytes(oid, OID_EC)) {
    const curveOid = readTlv(alg, 0x06, 'EC curve OID');
    alg.end();
    const curve = (Object.keys(CURVE_OIDS) as EcCurveName[]).find((c) => equalBytes(CURVE_OIDS[c], curveOid));
    if (!curve) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'EC key is not on a NIST P-256/384/521 curve');
    const size = CURVE_SIZES[curve];
    if (key.length !== 1 + 2 * size || key[0] !== 0x04) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'EC point is not uncompressed or has the wrong size', { detail: { length: key.length } });
    return { kty: 'EC', curve, x: key.slice(1, 1 + size), y: key.slice(1 + size) };
  }
  throw new ParseError('ERR_INPUT_UNSUPPORTED', 'public key is neither RSA nor EC');
}

export interface RsaOrEcJwk {
  kty: string;
  n?: string;
  e?: string;
  crv?: string;
  x?: string;
  y?: string;
}

/** SPKI DER of a public JWK (RSA or NIST EC), e.g. Azure's HCLAkPub. */
export function jwkToSpki(jwk: RsaOrEcJwk): Bytes {
  if (jwk.kty === 'RSA' && typeof jwk.n === 'string' && typeof jwk.e === 'string') {
    const der = encodeRsaSpki(fromBase64Url(jwk.n), fromBase64Url(jwk.e));
    decodeSpki(der);
    return der;
  }
  if (jwk.kty === 'EC' && typeof jwk.x === 'string' && typeof jwk.y === 'string' && (jwk.crv === 'P-256' || jwk.crv === 'P-384' || jwk.crv === 'P-521')) {
    return encodeEcSpki(jwk.crv, fromBase64Url(jwk.x), fromBase64Url(jwk.y));
  }
  throw new ParseError('ERR_INPUT_UNSUPPORTED', 'JWK is not an RSA or NIST EC public key');
}
