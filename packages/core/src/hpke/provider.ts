/**
 * The primitives under HPKE, pluggable in the manner of hpke-js: Diffie-Hellman in each KEM
 * group, the AEADs and HMAC. The protocol (DHKEM, the key schedule, contexts, key wrap,
 * Oblivious HTTP) is written once above this interface, so every provider runs exactly the
 * same RFC 9180 code and passes the same vectors.
 *
 * The default provider is WebCrypto (browsers, Node, Deno). A server can install a faster one
 * process-wide with `setHpkeProvider` (the gateway installs node:crypto, synchronous) or pass
 * `provider` to a single call. Keys remember the provider that made them; another provider
 * imports them once, on first use, through their serialised form.
 */
import type { Bytes } from '../bytes.js';
import type { AeadKey } from './aead.js';
import { AeadId, aeadParams, HpkeError, type AeadParams, type KdfParams, type KemParams } from './identifiers.js';
import { webCryptoHpkePrimitives } from './webcrypto-provider.js';

/** A value or a promise of it: synchronous providers return values, WebCrypto promises. */
export type MaybePromise<T> = T | Promise<T>;

/** A key pair as a provider holds it: its own private-key handle and SerializePublicKey(pk). */
export interface ProviderKeyPair {
  readonly privateKey: unknown;
  readonly publicKey: Bytes;
}

/**
 * What a provider implements. Handles (`unknown`) belong to the provider that returned them
 * and are only ever passed back to it. Byte results are fresh Uint8Arrays the caller owns and
 * wipes (not Node Buffers, whose slice() is a view). Methods may throw anything on bad input;
 * the HPKE layer maps failures to its own codes. A provider that lacks an algorithm throws an
 * HpkeError with ERR_HPKE_UNSUPPORTED.
 */
export interface HpkePrimitives {
  /** Shown in benchmarks and error details, e.g. "webcrypto", "node:crypto". */
  readonly name: string;
  /** A fresh key pair from the platform's secure random source. */
  generateKeyPair(kem: KemParams): MaybePromise<ProviderKeyPair>;
  /**
   * Imports a private key of exactly Nsk bytes (for NIST curves a scalar the caller has checked
   * to be in 1..n-1) and computes its public key.
   */
  importPrivateKey(kem: KemParams, sk: Uint8Array): MaybePromise<ProviderKeyPair>;
  /** SerializePrivateKey: Nsk bytes the caller wipes after use. */
  exportPrivateKey(kem: KemParams, privateKey: unknown): MaybePromise<Bytes>;
  /** DeserializePublicKey: Npk bytes; throws when they are not a valid point of the group. */
  importPublicKey(kem: KemParams, pk: Uint8Array): MaybePromise<unknown>;
  /** DH(sk, pk): the Ndh-byte shared secret (an all-zero result is checked by the caller). */
  dh(kem: KemParams, privateKey: unknown, publicKey: unknown): MaybePromise<Bytes>;
  /** A keyed AEAD (not export-only); the key is exactly Nk bytes and the provider keeps its own copy. */
  createAead(aead: AeadParams, key: Uint8Array): AeadKey;
  /** HMAC with the KDF's hash over the concatenated message parts. */
  hmac(kdf: KdfParams, key: Uint8Array, message: readonly Uint8Array[]): MaybePromise<Bytes>;
  /**
   * Optional: SHA-256 of some bytes, synchronously (a fresh 32-byte array). Providers with a
   * native hash offer it so callers that hash on a hot path (receipt ids, request and response
   * digests) skip the JavaScript implementation; callers fall back to that when it is absent.
   */
  sha256?(data: Uint8Array): Bytes;
}

let current: HpkePrimitives = webCryptoHpkePrimitives;

/** The provider calls use when they are not given one. */
export function getHpkeProvider(): HpkePrimitives {
  return current;
}

/**
 * Sets the process-wide provider (no argument: back to WebCrypto) and returns the previous
 * one. Install it at startup, before keys are created, so they live in the provider that uses them.
 */
export function setHpkeProvider(provider?: HpkePrimitives): HpkePrimitives {
  const previous = current;
  current = provider ?? webCryptoHpkePrimitives;
  return previous;
}

/** A keyed AEAD for `aeadId` from a provider (default the process-wide one); the key must be exactly Nk bytes. */
export function createAeadKey(aeadId: number, key: Uint8Array, provider: HpkePrimitives = current): AeadKey {
  const params = aeadParams(aeadId);
  if (params.id === AeadId.ExportOnly) throw new HpkeError('ERR_HPKE_EXPORT_ONLY');
  if (key.length !== params.nK) throw new HpkeError('ERR_HPKE_KEY', 'AEAD key has the wrong length', { detail: { length: key.length, expected: params.nK } });
  return provider.createAead(params, key);
}

/** The default provider: WebCrypto, with HKDF-SHA256 hashed synchronously in TypeScript. */
export { webCryptoHpkePrimitives };
