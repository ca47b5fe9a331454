import { copyBytes, type Bytes } from './bytes.js';

/** WebCrypto, the same object in Node 20 and browsers. */
export const subtle: SubtleCrypto = globalThis.crypto.subtle;

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

function copyIfShared(b: Uint8Array): Bytes {
  return b.buffer instanceof ArrayBuffer ? (b as Bytes) : copyBytes(b);
}
