/**
 * HKDF (RFC 5869) with salts of any length: Oblivious HTTP needs that because its response salt
 * is enc || response_nonce, longer than the hash output. HKDF-SHA256 hashes synchronously (see
 * sha256.ts); SHA-384 and SHA-512 go through WebCrypto HMAC.
 */
import { concatBytes, copyBytes, type Bytes } from '../bytes.js';
import { subtle } from '../crypto.js';
import { HpkeError, kdfParams, type KdfParams } from './identifiers.js';
import { hmacSha256 } from './sha256.js';

function buf(b: Uint8Array): Bytes {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? (b as Bytes) : copyBytes(b);
}

/** HMAC with the KDF's hash over the concatenated message parts. */
export async function hmac(kdf: KdfParams, key: Uint8Array, ...message: Uint8Array[]): Promise<Bytes> {
  if (kdf.hash === 'SHA-256') return hmacSha256(key, ...message);
  const k = await subtle.importKey('raw', buf(key), { name: 'HMAC', hash: kdf.hash }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, message.length === 1 ? buf(message[0]!) : concatBytes(...message)));
}

/** HKDF-Extract(salt, IKM); an empty salt means Nh zero bytes. */
export function hkdfExtractWith(kdf: KdfParams, salt: Uint8Array, ...ikm: Uint8Array[]): Promise<Bytes> {
  return hmac(kdf, salt.length === 0 ? new Uint8Array(kdf.nH) : salt, ...ikm);
}

/** HKDF-Expand(PRK, info, L) for 0 <= L <= 255 * Nh; `info` may come in parts. */
export async function hkdfExpandWith(kdf: KdfParams, prk: Uint8Array, length: number, ...info: Uint8Array[]): Promise<Bytes> {
  if (!Number.isInteger(length) || length < 0 || length > 255 * kdf.nH) {
    throw new HpkeError('ERR_HPKE_PARAMS', 'HKDF-Expand length out of range', { detail: { length, max: 255 * kdf.nH } });
  }
  const out = new Uint8Array(length);
  let t: Uint8Array = new Uint8Array(0);
  const counter = new Uint8Array(1);
  for (let i = 1, off = 0; off < length; i++) {
    // T(i) = HMAC(PRK, T(i-1) || info || i)
    counter[0] = i;
    t = await hmac(kdf, prk, t, ...info, counter);
    out.set(t.subarray(0, Math.min(t.length, length - off)), off);
    off += t.length;
  }
  return out;
}

export function hkdfExtract(kdfId: number, salt: Uint8Array, ikm: Uint8Array): Promise<Bytes> {
  return hkdfExtractWith(kdfParams(kdfId), salt, ikm);
}

export function hkdfExpand(kdfId: number, prk: Uint8Array, info: Uint8Array, length: number): Promise<Bytes> {
  return hkdfExpandWith(kdfParams(kdfId), prk, length, info);
}
