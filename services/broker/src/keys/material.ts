import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { CustodyError, copyBytes, fromBase64Url, wipe, type Bytes } from '@custody/core';
import { DEFAULT_SECRET_BYTES, MAX_SECRET_BYTES, type KeyType } from './types.js';

/**
 * Software key material for the embedded store and for import validation. Formats:
 * `aes-256` 32 raw bytes; `secret` raw bytes; signing keys PKCS#8 DER (the format released).
 */

export function secretLength(length: number | undefined): number {
  const n = length ?? DEFAULT_SECRET_BYTES;
  if (!Number.isInteger(n) || n < 1 || n > MAX_SECRET_BYTES) {
    throw new CustodyError('ERR_KEY_MATERIAL', `secret length must be 1..${MAX_SECRET_BYTES} bytes`, { detail: { length: String(length) } });
  }
  return n;
}

export function generateSoftwareMaterial(type: KeyType, length?: number): Bytes {
  switch (type) {
    case 'aes-256':
      return toBytes(randomBytes(32));
    case 'secret':
      return toBytes(randomBytes(secretLength(length)));
    case 'ed25519':
      return toBytes(generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' }));
    case 'ecdsa-p256':
      return toBytes(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' }));
  }
}

/**
 * Validates imported material for its type and returns it in the stored form (a fresh copy;
 * signing keys re-encoded as canonical PKCS#8). Error messages never include the bytes.
 */
export function normalizeImportedMaterial(type: KeyType, material: Uint8Array): Bytes {
  switch (type) {
    case 'aes-256':
      if (material.length !== 32) throw new CustodyError('ERR_KEY_MATERIAL', 'aes-256 material must be exactly 32 bytes', { detail: { length: material.length } });
      return copyBytes(material);
    case 'secret':
      if (material.length < 1 || material.length > MAX_SECRET_BYTES) {
        throw new CustodyError('ERR_KEY_MATERIAL', `secret must be 1..${MAX_SECRET_BYTES} bytes`, { detail: { length: material.length } });
      }
      return copyBytes(material);
    case 'ed25519':
    case 'ecdsa-p256': {
      const key = parsePkcs8(type, material);
      return toBytes(key.export({ format: 'der', type: 'pkcs8' }));
    }
  }
}

/** Parses PKCS#8 DER and checks it is a private key of the given signing type. */
export function parsePkcs8(type: 'ed25519' | 'ecdsa-p256', der: Uint8Array): KeyObject {
  if (der.length < 16 || der.length > 4096) throw new CustodyError('ERR_KEY_MATERIAL', 'signing key must be PKCS#8 DER', { detail: { length: der.length } });
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'pkcs8' });
  } catch (e) {
    throw new CustodyError('ERR_KEY_MATERIAL', 'signing key is not PKCS#8 DER', { cause: scrub(e) });
  }
  const ok = type === 'ed25519' ? key.asymmetricKeyType === 'ed25519' : key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1';
  if (!ok) throw new CustodyError('ERR_KEY_MATERIAL', `PKCS#8 key is not ${type}`, { detail: { keyType: key.asymmetricKeyType ?? 'unknown' } });
  return key;
}

/** SubjectPublicKeyInfo DER of a PKCS#8 signing key. */
export function publicKeyOfPkcs8(type: 'ed25519' | 'ecdsa-p256', der: Uint8Array): Bytes {
  return toBytes(createPublicKey(parsePkcs8(type, der)).export({ format: 'der', type: 'spki' }));
}

/** The private scalar (P-256 `d`, 32 bytes) or seed (Ed25519, 32 bytes) and public point. */
export function privateComponents(type: 'ed25519' | 'ecdsa-p256', der: Uint8Array): { d: Bytes; publicPoint: Bytes } {
  const jwk = parsePkcs8(type, der).export({ format: 'jwk' });
  if (typeof jwk.d !== 'string' || typeof jwk.x !== 'string') throw new CustodyError('ERR_KEY_MATERIAL', 'signing key has no private component');
  const d = fromBase64Url(jwk.d);
  const x = fromBase64Url(jwk.x);
  if (type === 'ed25519') return { d, publicPoint: x };
  if (typeof jwk.y !== 'string') throw new CustodyError('ERR_KEY_MATERIAL', 'P-256 key has no y coordinate');
  const y = fromBase64Url(jwk.y);
  const point = new Uint8Array(65);
  point[0] = 4;
  point.set(x, 1);
  point.set(y, 33);
  return { d, publicPoint: point };
}

/** SPKI DER from a raw public point (P-256 uncompressed, 65 bytes) or Ed25519 key (32 bytes). */
export function spkiFromPoint(type: 'ed25519' | 'ecdsa-p256', point: Uint8Array): Bytes {
  const b64u = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
  try {
    const key =
      type === 'ed25519'
        ? createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: b64u(point) }, format: 'jwk' })
        : createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64u(point.subarray(1, 33)), y: b64u(point.subarray(33, 65)) }, format: 'jwk' });
    return toBytes(key.export({ format: 'der', type: 'spki' }));
  } catch (e) {
    throw new CustodyError('ERR_STORE_BACKEND', 'public key from the store is not a valid point', { cause: scrub(e) });
  }
}

/** Node returns Buffers from a shared pool; copy into an exact ArrayBuffer and wipe the Buffer. */
export function toBytes(b: Buffer): Bytes {
  const out = copyBytes(b);
  wipe(b);
  return out;
}

/**
 * Errors from crypto libraries can quote their input; keep only the name and code so nothing
 * derived from key material travels in a `cause`.
 */
export function scrub(e: unknown): Error {
  const name = e instanceof Error ? e.name : 'Error';
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : undefined;
  const out = new Error(code ? `${name} (${code})` : name);
  out.name = name;
  return out;
}
