import { BytesKeyedCache } from '@custody/core';

/**
 * A small bounded memo for work derived from public keys (imported CryptoKeys, SPKI digests,
 * TPM names). An AK is a long-lived identity, so a verifier that sees the same AK again skips
 * that work. Only public data goes in. Keyed by the exact bytes (one or more parts, e.g. an
 * algorithm tag and an SPKI): a lookup compares every byte, and no key string is built on the
 * hot path. A failed computation is dropped, so the next call tries again.
 */
export class PublicKeyMemo<T> {
  private readonly entries: BytesKeyedCache<{ promise: Promise<T>; value?: T; settled: boolean }>;

  constructor(max = 64) {
    this.entries = new BytesKeyedCache(max);
  }

  get(key: readonly Uint8Array[], compute: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(key);
    if (hit) return hit.promise;
    const entry: { promise: Promise<T>; value?: T; settled: boolean } = { promise: compute(), settled: false };
    this.entries.set(key, entry);
    // The caller's buffers may be reused; drop a failure by a copy of the key.
    const own = key.map((b) => b.slice());
    entry.promise.then(
      (v) => {
        entry.value = v;
        entry.settled = true;
      },
      () => {
        if (this.entries.get(own) === entry) this.entries.delete(own);
      },
    );
    return entry.promise;
  }

  /**
   * The value, when it was computed before and is cached: lets a caller start the work that
   * needs it (a signature check) synchronously instead of a microtask later.
   */
  peek(key: readonly Uint8Array[]): T | undefined {
    const hit = this.entries.get(key);
    return hit?.settled ? hit.value : undefined;
  }
}

const BYTE_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex with a byte table (PCR values are hex-encoded on every verification). */
export function hexOf(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += BYTE_HEX[b[i]!]!;
  return s;
}

const HEX_DIGITS = new TextEncoder().encode('0123456789abcdef');
const ascii = new TextDecoder();

/**
 * Lowercase hex of several byte strings at once: one pass into a byte buffer and one decode,
 * then a substring each (a verification hex-encodes every selected PCR value for the claims).
 */
export function hexOfEach(list: readonly Uint8Array[]): string[] {
  let n = 0;
  for (const b of list) n += b.length;
  const out = new Uint8Array(2 * n);
  let o = 0;
  for (const b of list) {
    for (let i = 0; i < b.length; i++) {
      const v = b[i]!;
      out[o++] = HEX_DIGITS[v >>> 4]!;
      out[o++] = HEX_DIGITS[v & 0x0f]!;
    }
  }
  const s = ascii.decode(out);
  const res = new Array<string>(list.length);
  let p = 0;
  for (let i = 0; i < list.length; i++) {
    const len = 2 * list[i]!.length;
    res[i] = s.slice(p, p + len);
    p += len;
  }
  return res;
}
