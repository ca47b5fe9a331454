import { copyBytes, type Bytes } from './bytes.js';
import { CustodyError } from './errors.js';

/**
 * WebCrypto, the same object in Node 20 and browsers. Browsers give it only to secure contexts
 * (https:// pages, or http://localhost): elsewhere every use fails ERR_CRYPTO_UNAVAILABLE, which
 * says so, rather than a TypeError read as an internal error.
 */
export const subtle: SubtleCrypto =
  (globalThis.crypto as Crypto | undefined)?.subtle ??
  new Proxy({} as SubtleCrypto, {
    get() {
      throw new CustodyError('ERR_CRYPTO_UNAVAILABLE', 'WebCrypto (crypto.subtle) is not available here: browsers give it only to secure contexts, pages served over https:// or from http://localhost');
    },
  });

export type HashName = 'SHA-1' | 'SHA-256' | 'SHA-384' | 'SHA-512';

export async function digest(hash: HashName, data: Uint8Array): Promise<Bytes> {
  return new Uint8Array(await subtle.digest(hash, copyIfShared(data)));
}

export const sha256 = (data: Uint8Array): Promise<Bytes> => digest('SHA-256', data);
export const sha384 = (data: Uint8Array): Promise<Bytes> => digest('SHA-384', data);
export const sha512 = (data: Uint8Array): Promise<Bytes> => digest('SHA-512', data);

/** Source of randomness, injectable for deterministic tests. */
export type RandomSource = (n: number) => Bytes;

export const secureRandom: RandomSource = (n) => {
  const out = new Uint8Array(n);
  // getRandomValues is limited to 65536 bytes per call.
  for (let i = 0; i < n; i += 65536) globalThis.crypto.getRandomValues(out.subarray(i, Math.min(n, i + 65536)));
  return out;
};

/** Bytes drawn at once by `publicNonceRandom`. */
const NONCE_POOL_BYTES = 4096;
/** Pieces longer than this are drawn on their own. */
const NONCE_POOL_MAX_PIECE = 64;
let noncePool = new Uint8Array(0);
let noncePoolAt = 0;

/**
 * Randomness for values that are sent in the clear, such as Oblivious HTTP's response nonce:
 * drawn from the secure generator 4 KiB at a time and handed out in pieces, each wiped from the
 * pool as it is handed out. Drawing from the platform generator costs about 20 µs when it is done
 * once per request, as the gateway does (measured there; 5 µs in a hot loop); the pool pays it
 * once per 256 nonces of 16 bytes. Never for keys or other secrets: bytes not yet handed out
 * wait in memory until they are.
 */
export const publicNonceRandom: RandomSource = (n) => {
  if (!Number.isSafeInteger(n) || n < 0) throw new CustodyError('ERR_USAGE', 'a random length is a non-negative whole number', { detail: { n: String(n) } });
  if (n > NONCE_POOL_MAX_PIECE) return secureRandom(n);
  if (noncePoolAt + n > noncePool.length) {
    noncePool.fill(0);
    noncePool = secureRandom(NONCE_POOL_BYTES);
    noncePoolAt = 0;
  }
  const out = noncePool.slice(noncePoolAt, noncePoolAt + n);
  noncePool.fill(0, noncePoolAt, noncePoolAt + n);
  noncePoolAt += n;
  return out;
};

function copyIfShared(b: Uint8Array): Bytes {
  return b.buffer instanceof ArrayBuffer ? (b as Bytes) : copyBytes(b);
}
