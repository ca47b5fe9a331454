import { createCipheriv, createDecipheriv, createECDH, createHash, type KeyObject } from 'node:crypto';
import { canonicalBytes, CustodyError, concatBytes, copyBytes, utf8, wipe, type Bytes } from '@custody/core';
import type { ReleaseContext } from '../types.js';

/**
 * How a key held in a PKCS#11 HSM is released: ECDH-ES to the TEE's P-256 key, computed and
 * applied inside the HSM, so the released material never exists in broker memory.
 *
 * Inside the HSM, per release (all intermediate objects are session objects, CKA_SENSITIVE
 * true, CKA_EXTRACTABLE false, destroyed afterwards):
 *   1. (e, E)  = C_GenerateKeyPair(CKM_EC_KEY_PAIR_GEN, P-256)           ephemeral pair
 *   2. Z       = C_DeriveKey(CKM_ECDH1_DERIVE, kdf CKD_NULL, publicData = R, base e)
 *                (Z is the 32-byte x-coordinate of e*R, held as an AES key object)
 *   3. info    = SHA-256("custody/pkcs11-release/v1" || 0x00 || E || R || u32be(length) || JCS(context))
 *                (JCS = RFC 8785 canonical JSON of the release context)
 *   4. K       = C_DeriveKey(CKM_AES_CBC_ENCRYPT_DATA, iv = 0^16, data = info, base Z)
 *                (K = AES-256-CBC_Z(info), two blocks: a PRF of Z bound to both public keys,
 *                the material length and the release context; SoftHSM2 2.6 rejects the
 *                X9.63 KDFs for ECDH1_DERIVE, so the KDF step is this derive)
 *   5. W       = C_WrapKey(CKM_AES_KEY_WRAP_PAD, wrapping key K, key = the stored key object)
 *                (RFC 5649; the stored object is CKA_SENSITIVE, so this is the only way out)
 * Payload: E (65 bytes, uncompressed) || u32be(length) || W.
 *
 * R is the TEE's ephemeral P-256 public key (65 bytes, uncompressed) bound into its evidence.
 * The TEE recomputes Z = x(r*E), info and K in software and unwraps W (`openPkcs11Release`).
 * `length` is the exact material length for AES keys and secrets; 0 for private keys, whose
 * PKCS#8 DER is self-delimiting. The unwrapped bytes are cut to that length and the rest must
 * be zero: SoftHSM2 2.6 pads the key to a multiple of 8 before wrapping and writes the padded
 * length into the RFC 5649 message length indicator.
 */
export const PKCS11_RELEASE_SCHEME = 'custody-pkcs11-ecdh-p256-a256kwp-v1';

const LABEL = utf8('custody/pkcs11-release/v1');
const KWP_AIV = Buffer.from('a65959a6', 'hex');

export function releaseInfo(ephemeralPublic: Uint8Array, recipientPublic: Uint8Array, length: number, context: ReleaseContext): Bytes {
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, length);
  const h = createHash('sha256');
  h.update(concatBytes(LABEL, Uint8Array.of(0), ephemeralPublic, recipientPublic, len, canonicalBytes(context)));
  return copyBytes(h.digest());
}

export function encodeReleasePayload(ephemeralPublic: Uint8Array, length: number, wrapped: Uint8Array): Bytes {
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, length);
  return concatBytes(ephemeralPublic, len, wrapped);
}

/**
 * The TEE side: opens a PKCS11_RELEASE_SCHEME payload with the recipient's P-256 private key.
 * Node-only (it needs AES key wrap with padding, which WebCrypto lacks).
 */
export function openPkcs11Release(recipientPrivateKey: KeyObject, payload: Uint8Array, context: ReleaseContext): Bytes {
  if (payload.length < 65 + 4 + 16 || payload[0] !== 0x04) throw new CustodyError('ERR_KEY_UNWRAP', 'release payload is malformed', { detail: { length: payload.length } });
  const epk = payload.subarray(0, 65);
  const length = new DataView(payload.buffer, payload.byteOffset + 65, 4).getUint32(0);
  const wrapped = payload.subarray(69);
  const jwk = recipientPrivateKey.export({ format: 'jwk' });
  if (jwk.crv !== 'P-256' || typeof jwk.d !== 'string' || typeof jwk.x !== 'string' || typeof jwk.y !== 'string') {
    throw new CustodyError('ERR_KEY_RECIPIENT', 'recipient private key must be P-256');
  }
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(Buffer.from(jwk.d, 'base64url'));
  const recipientPublic = concatBytes(Uint8Array.of(4), Buffer.from(jwk.x, 'base64url'), Buffer.from(jwk.y, 'base64url'));
  let z: Buffer | undefined;
  let k: Buffer | undefined;
  let out: Buffer | undefined;
  try {
    z = ecdh.computeSecret(epk);
    const info = releaseInfo(epk, recipientPublic, length, context);
    const cbc = createCipheriv('aes-256-cbc', z, Buffer.alloc(16));
    cbc.setAutoPadding(false);
    k = Buffer.concat([cbc.update(info), cbc.final()]);
    const kwp = createDecipheriv('id-aes256-wrap-pad', k, KWP_AIV);
    out = Buffer.concat([kwp.update(wrapped), kwp.final()]);
  } catch {
    throw new CustodyError('ERR_KEY_UNWRAP');
  } finally {
    z?.fill(0);
    k?.fill(0);
  }
  const n = length === 0 ? derLength(out) : length;
  if (n > out.length || out.subarray(n).some((b) => b !== 0)) {
    out.fill(0);
    throw new CustodyError('ERR_KEY_UNWRAP', 'unwrapped material does not match its length');
  }
  const material = copyBytes(out.subarray(0, n));
  wipe(out);
  return material;
}

/** Total length of the DER SEQUENCE at the start of `b`. */
function derLength(b: Uint8Array): number {
  if (b.length < 2 || b[0] !== 0x30) return Number.MAX_SAFE_INTEGER;
  const first = b[1]!;
  if (first < 0x80) return 2 + first;
  const n = first & 0x7f;
  if (n < 1 || n > 2 || b.length < 2 + n) return Number.MAX_SAFE_INTEGER;
  let len = 0;
  for (let i = 0; i < n; i++) len = (len << 8) | b[2 + i]!;
  return 2 + n + len;
}
