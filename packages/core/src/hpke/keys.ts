import type { Bytes } from '../bytes.js';
import { subtle } from '../crypto.js';
import { HpkeError, kemParams, type KemId } from './identifiers.js';
import { mapHpkeError, resolveKem } from './suite.js';

/** A KEM public key: its serialised form (SerializePublicKey) and the imported WebCrypto key. */
export interface HpkePublicKey {
  readonly kem: KemId;
  readonly bytes: Bytes;
  readonly key: CryptoKey;
}

/** A KEM key pair. The private key stays a CryptoKey; serialise it only to store it sealed. */
export interface HpkeKeyPair {
  readonly kem: KemId;
  readonly publicKey: HpkePublicKey;
  readonly privateKey: CryptoKey;
}

async function pairFrom(kem: KemId, pair: CryptoKeyPair): Promise<HpkeKeyPair> {
  const bytes = new Uint8Array(await resolveKem(kem).serializePublicKey(pair.publicKey));
  return { kem, publicKey: { kem, bytes, key: pair.publicKey }, privateKey: pair.privateKey };
}

/** A fresh key pair from the platform's secure random source (RFC 9180 GenerateKeyPair). */
export async function generateHpkeKeyPair(kemId: number): Promise<HpkeKeyPair> {
  const kem = kemParams(kemId).id;
  try {
    return await pairFrom(kem, await resolveKem(kem).generateKeyPair());
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_UNSUPPORTED');
  }
}

/**
 * DeriveKeyPair(ikm) (RFC 9180 section 7.1.3): the same ikm always gives the same key pair.
 * For test vectors and for keys derived from a sealed seed; ikm needs at least Nsk bytes of entropy.
 */
export async function deriveHpkeKeyPair(kemId: number, ikm: Uint8Array): Promise<HpkeKeyPair> {
  const params = kemParams(kemId);
  if (ikm.length < params.nSk) throw new HpkeError('ERR_HPKE_PARAMS', 'ikm is shorter than Nsk', { detail: { length: ikm.length, min: params.nSk } });
  try {
    return await pairFrom(params.id, await resolveKem(params.id).deriveKeyPair(ikm));
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_KEY');
  }
}

/** SerializePublicKey: the KEM's public key encoding (32 bytes for X25519, 65 for P-256). */
export function serializeHpkePublicKey(pk: HpkePublicKey): Bytes {
  return pk.bytes.slice();
}

/** DeserializePublicKey: validates length and encoding; ERR_HPKE_KEY when it is not a key of this KEM. */
export async function deserializeHpkePublicKey(kemId: number, bytes: Uint8Array): Promise<HpkePublicKey> {
  const params = kemParams(kemId);
  if (bytes.length !== params.nPk) throw new HpkeError('ERR_HPKE_KEY', 'public key has the wrong length', { detail: { length: bytes.length, expected: params.nPk } });
  try {
    const key = await resolveKem(params.id).deserializePublicKey(bytes);
    return { kem: params.id, bytes: bytes.slice(), key };
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_KEY');
  }
}

/** SerializePrivateKey. The caller owns the returned secret and should wipe it after use. */
export async function serializeHpkePrivateKey(pair: HpkeKeyPair): Promise<Bytes> {
  try {
    return new Uint8Array(await resolveKem(pair.kem).serializePrivateKey(pair.privateKey));
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_KEY');
  }
}

/** DeserializePrivateKey, returning the full pair (the public key is recomputed). */
export async function deserializeHpkePrivateKey(kemId: number, bytes: Uint8Array): Promise<HpkeKeyPair> {
  const params = kemParams(kemId);
  if (bytes.length !== params.nSk) throw new HpkeError('ERR_HPKE_KEY', 'private key has the wrong length', { detail: { length: bytes.length, expected: params.nSk } });
  const kem = resolveKem(params.id);
  try {
    const privateKey = await kem.deserializePrivateKey(bytes);
    // WebCrypto exports the public coordinates with a private JWK; drop `d` to import the public half.
    const jwk = await subtle.exportKey('jwk', privateKey);
    const pub: JsonWebKey = { kty: jwk.kty, crv: jwk.crv, x: jwk.x };
    if (jwk.y !== undefined) pub.y = jwk.y;
    const publicKey = await kem.importKey('jwk', pub, true);
    return await pairFrom(params.id, { privateKey, publicKey });
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_KEY');
  }
}
