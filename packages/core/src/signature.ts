/**
 * Signature verification on the hot path, pluggable like the HPKE primitives: WebCrypto by
 * default (browsers, Node, Deno), and a synchronous node:crypto provider that a Node process
 * installs with `setSignatureProvider` (@custody/crypto-node). WebCrypto's Ed25519 verify runs
 * as a job on another thread, which costs a round trip per response for a 50 µs check.
 */
import { BytesKeyedCache } from './bytes-cache.js';
import type { MaybePromise } from './hpke/provider.js';
import { subtle } from './crypto.js';

export interface SignaturePrimitives {
  /** Shown in benchmarks, e.g. "webcrypto", "node:crypto". */
  readonly name: string;
  /**
   * Ed25519 (RFC 8032) verification with a raw 32-byte public key. False when the signature
   * does not verify or the key is not a valid point; never throws for bad input.
   */
  verifyEd25519(publicKey: Uint8Array, signature: Uint8Array, message: Uint8Array): MaybePromise<boolean>;
}

/** Imported public keys by their exact bytes: a client verifies many signatures by one key. */
const webKeys = new BytesKeyedCache<Promise<CryptoKey | undefined>>(64);

export const webCryptoSignaturePrimitives: SignaturePrimitives = {
  name: 'webcrypto',
  async verifyEd25519(publicKey, signature, message) {
    if (publicKey.length !== 32 || signature.length !== 64) return false;
    const key = await webKeys.getOrSet([publicKey], () =>
      subtle.importKey('raw', new Uint8Array(publicKey), { name: 'Ed25519' }, false, ['verify']).catch(() => undefined),
    );
    if (!key) return false;
    try {
      return await subtle.verify({ name: 'Ed25519' }, key, new Uint8Array(signature), new Uint8Array(message));
    } catch {
      return false;
    }
  },
};

let current: SignaturePrimitives = webCryptoSignaturePrimitives;

export function getSignatureProvider(): SignaturePrimitives {
  return current;
}

/** Sets the process-wide signature provider (no argument: back to WebCrypto); returns the previous one. */
export function setSignatureProvider(provider?: SignaturePrimitives): SignaturePrimitives {
  const previous = current;
  current = provider ?? webCryptoSignaturePrimitives;
  return previous;
}
