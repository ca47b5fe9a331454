import { createHash, createPublicKey } from 'node:crypto';
import { canonicalize, concatBytes, copyBytes, CustodyError, equalBytes, fromBase64Url, toBase64Url, type Bytes, type HashName } from '@custody/core';
import type { RecipientCurve, RecipientKey } from '../keystore/types.js';

/**
 * The runtime data of the key release handshake (docs/key-release-protocol.md section 2): the
 * RFC 8785 canonical JSON the TEE binds into its evidence, carrying the challenge nonce and the
 * TEE's ephemeral public key.
 *
 *   {"nonce":"<base64url, 32 bytes>","tee-pubkey":{"crv":"X25519","kty":"OKP","x":"..."}}
 *   {"nonce":"...","tee-pubkey":{"crv":"P-256","kty":"EC","x":"...","y":"..."}}
 *
 * Other members may be present (the gateway binds its OHTTP keys and receipt key in the same
 * object); the broker does not read them, and the digest covers them like the rest.
 */

export type TeeKeyJwk = { kty: 'OKP'; crv: 'X25519'; x: string } | { kty: 'EC'; crv: 'P-256'; x: string; y: string };

export interface RuntimeData {
  /** The exact text bound (its digest is in the evidence). */
  text: string;
  /** The challenge nonce as carried: base64url, no padding. */
  nonce: string;
  teeKey: RecipientKey;
  teeJwk: TeeKeyJwk;
}

export const MAX_RUNTIME_DATA = 64 * 1024;
const MAX_MEMBERS = 16;
const MEMBER_RE = /^[a-z][a-z0-9-]{0,63}$/;
const B64URL_32 = /^[A-Za-z0-9_-]{43}$/;

/** X25519 SubjectPublicKeyInfo (RFC 8410): this prefix, then the 32-byte key. */
const X25519_SPKI_PREFIX = Uint8Array.of(0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00);
/** P-256 SubjectPublicKeyInfo (RFC 5480): this prefix, then the 65-byte uncompressed point. */
const P256_SPKI_PREFIX = Uint8Array.of(
  0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
);

function fail(message: string, detail?: Record<string, string | number | boolean>): CustodyError {
  return new CustodyError('ERR_RUNTIME_DATA', message, detail ? { detail } : {});
}

/** The public JWK of a TEE key, as runtime data carries it. */
export function teeKeyJwk(key: RecipientKey): TeeKeyJwk {
  if (key.curve === 'X25519') {
    if (key.publicKey.length !== 32) throw fail('an X25519 key is 32 bytes');
    return { kty: 'OKP', crv: 'X25519', x: toBase64Url(key.publicKey) };
  }
  if (key.publicKey.length !== 65 || key.publicKey[0] !== 0x04) throw fail('a P-256 key is a 65-byte uncompressed point');
  return { kty: 'EC', crv: 'P-256', x: toBase64Url(key.publicKey.subarray(1, 33)), y: toBase64Url(key.publicKey.subarray(33)) };
}

/** Builds the canonical runtime data text for a challenge nonce and a TEE key. */
export function buildRuntimeData(nonce: Uint8Array, teeKey: RecipientKey, extra: Record<string, unknown> = {}): string {
  if (nonce.length !== 32) throw fail('the challenge nonce is 32 bytes');
  for (const k of Object.keys(extra)) if (k === 'nonce' || k === 'tee-pubkey' || !MEMBER_RE.test(k)) throw fail('extra runtime data members need other lowercase names');
  return canonicalize({ ...extra, nonce: toBase64Url(nonce), 'tee-pubkey': teeKeyJwk(teeKey) });
}

function b64url32(v: unknown, what: string): Bytes {
  if (typeof v !== 'string' || !B64URL_32.test(v)) throw fail(`${what} is not 32 bytes of base64url`);
  let bytes: Bytes;
  try {
    // @custody/core decodes only the canonical spelling (the last character's unused bits zero).
    bytes = fromBase64Url(v);
  } catch {
    throw fail(`${what} is not in canonical base64url`);
  }
  // One value, one encoding: the last character's unused bits must be zero.
  if (toBase64Url(bytes) !== v) throw fail(`${what} is not in canonical base64url`);
  return bytes;
}

function parseTeeKey(v: unknown): { key: RecipientKey; jwk: TeeKeyJwk } {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fail('tee-pubkey is not a JWK');
  const o = v as Record<string, unknown>;
  const members = Object.keys(o).sort().join(',');
  if (o.kty === 'OKP' && o.crv === 'X25519' && members === 'crv,kty,x') {
    const x = b64url32(o.x, 'tee-pubkey.x');
    return { key: { curve: 'X25519', publicKey: x }, jwk: { kty: 'OKP', crv: 'X25519', x: o.x as string } };
  }
  if (o.kty === 'EC' && o.crv === 'P-256' && members === 'crv,kty,x,y') {
    const point = concatBytes(Uint8Array.of(4), b64url32(o.x, 'tee-pubkey.x'), b64url32(o.y, 'tee-pubkey.y'));
    try {
      createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: o.x as string, y: o.y as string }, format: 'jwk' });
    } catch {
      throw fail('tee-pubkey is not a point on P-256');
    }
    return { key: { curve: 'P-256', publicKey: point }, jwk: { kty: 'EC', crv: 'P-256', x: o.x as string, y: o.y as string } };
  }
  throw fail('tee-pubkey must be an X25519 (OKP) or P-256 (EC) public JWK with only its public members');
}

/**
 * Parses runtime data received from a workload (untrusted): bounded, JSON, exactly its own
 * RFC 8785 form (so one digest means one object), a 32-byte base64url nonce and a public JWK.
 */
export function parseRuntimeData(text: unknown): RuntimeData {
  if (typeof text !== 'string') throw fail('runtime data must be a string');
  if (text.length > MAX_RUNTIME_DATA) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'runtime data is too large', { detail: { length: text.length, max: MAX_RUNTIME_DATA } });
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw fail('runtime data is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw fail('runtime data is not a JSON object');
  const o = value as Record<string, unknown>;
  const names = Object.keys(o);
  if (names.length > MAX_MEMBERS) throw fail(`runtime data has more than ${MAX_MEMBERS} members`);
  for (const n of names) if (!MEMBER_RE.test(n)) throw fail('runtime data member names are lowercase identifiers', { member: n.slice(0, 32) });
  let canonical: string;
  try {
    canonical = canonicalize(o);
  } catch {
    throw fail('runtime data cannot be put in canonical form');
  }
  if (canonical !== text) throw fail('runtime data is not in RFC 8785 canonical form');
  b64url32(o.nonce, 'nonce');
  const { key, jwk } = parseTeeKey(o['tee-pubkey']);
  return { text, nonce: o.nonce as string, teeKey: key, teeJwk: jwk };
}

/**
 * Which digest of the runtime data a platform's evidence carries: SHA-256 where a TPM quote's
 * qualifying data holds it (tpm, azure-vtpm) and in an NVIDIA GPU's 32-byte SPDM request nonce
 * (GPU evidence rides along a CPU TEE's, bound to the same runtime data), SHA-512 everywhere
 * else (SNP and TDX report data, Nitro user_data, sim).
 */
export function runtimeDigestAlgorithm(platform: string): HashName {
  return platform === 'tpm' || platform === 'azure-vtpm' || platform === 'nvidia' ? 'SHA-256' : 'SHA-512';
}

/** The digest the evidence of `platform` must carry for this runtime data text (UTF-8 bytes). */
export function runtimeDigest(platform: string, text: string): Promise<Bytes> {
  const h = createHash(runtimeDigestAlgorithm(platform) === 'SHA-256' ? 'sha256' : 'sha512');
  return Promise.resolve(copyBytes(h.update(text, 'utf8').digest()));
}

/** SubjectPublicKeyInfo DER of a TEE key (how the EAR carries it). */
export function teeKeySpki(key: RecipientKey): Bytes {
  return key.curve === 'X25519' ? concatBytes(X25519_SPKI_PREFIX, key.publicKey) : concatBytes(P256_SPKI_PREFIX, key.publicKey);
}

/** The TEE key of an SPKI the broker wrote into an EAR (X25519 or P-256 only). */
export function teeKeyFromSpki(spki: Uint8Array): RecipientKey {
  const is = (prefix: Uint8Array, keyLength: number): boolean => spki.length === prefix.length + keyLength && equalBytes(spki.subarray(0, prefix.length), prefix);
  let curve: RecipientCurve;
  if (is(X25519_SPKI_PREFIX, 32)) curve = 'X25519';
  else if (is(P256_SPKI_PREFIX, 65) && spki[P256_SPKI_PREFIX.length] === 0x04) curve = 'P-256';
  else throw new CustodyError('ERR_EAR_CLAIMS', 'the EAR TEE key is not an X25519 or P-256 public key');
  return { curve, publicKey: copyBytes(spki.subarray(spki.length - (curve === 'X25519' ? 32 : 65))) };
}
