import { equalBytes } from './bytes.js';

interface Entry<V> {
  hash: number;
  key: Uint8Array[];
  value: V;
}

/**
 * A bounded cache keyed by exact byte strings (a key is one or more parts, e.g. an algorithm
 * tag and a public key). A lookup buckets by a cheap sampled hash and then compares every byte
 * of every part, so a hit means the key bytes are identical; no string is built from the bytes.
 * The key is copied when stored, so later changes to the caller's buffers do not reach it.
 * Use it only for values that are a pure function of the key bytes (an imported public key,
 * a digest); the oldest entry is dropped when the cache is full.
 */
export class BytesKeyedCache<V> {
  private readonly buckets = new Map<number, Entry<V>[]>();
  private readonly order: Entry<V>[] = [];

  constructor(readonly max = 256) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('cache size must be a positive integer');
  }

  get size(): number {
    return this.order.length;
  }

  get(key: readonly Uint8Array[]): V | undefined {
    return this.find(key, sampledHash(key))?.value;
  }

  set(key: readonly Uint8Array[], value: V): void {
    const hash = sampledHash(key);
    const hit = this.find(key, hash);
    if (hit) {
      hit.value = value;
      return;
    }
    if (this.order.length >= this.max) this.remove(this.order[0]!);
    const entry: Entry<V> = { hash, key: key.map((k) => k.slice()), value };
    const bucket = this.buckets.get(hash);
    if (bucket) bucket.push(entry);
    else this.buckets.set(hash, [entry]);
    this.order.push(entry);
  }

  delete(key: readonly Uint8Array[]): boolean {
    const hit = this.find(key, sampledHash(key));
    if (!hit) return false;
    this.remove(hit);
    return true;
  }

  /** The cached value, or `make()`'s (stored before it is returned). */
  getOrSet(key: readonly Uint8Array[], make: () => V): V {
    const hash = sampledHash(key);
    const hit = this.find(key, hash);
    if (hit) return hit.value;
    const value = make();
    this.set(key, value);
    return value;
  }

  private find(key: readonly Uint8Array[], hash: number): Entry<V> | undefined {
    const bucket = this.buckets.get(hash);
    if (!bucket) return undefined;
    for (const e of bucket) if (sameKey(e.key, key)) return e;
    return undefined;
  }

  private remove(entry: Entry<V>): void {
    const bucket = this.buckets.get(entry.hash);
    if (bucket) {
      const i = bucket.indexOf(entry);
      if (i >= 0) bucket.splice(i, 1);
      if (bucket.length === 0) this.buckets.delete(entry.hash);
    }
    const j = this.order.indexOf(entry);
    if (j >= 0) this.order.splice(j, 1);
  }
}

function sameKey(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.length !== b[i]!.length) return false;
  for (let i = 0; i < a.length; i++) if (!equalBytes(a[i]!, b[i]!)) return false;
  return true;
}

/** FNV-1a over each part's length, up to 64 evenly spaced bytes and its last 32 bytes. */
function sampledHash(key: readonly Uint8Array[]): number {
  let h = 0x811c9dc5;
  for (const k of key) {
    const n = k.length;
    h = Math.imul(h ^ (n & 0xff), 0x01000193);
    h = Math.imul(h ^ (n >>> 8), 0x01000193);
    const step = n > 64 ? Math.floor(n / 64) : 1;
    for (let i = 0; i < n; i += step) h = Math.imul(h ^ k[i]!, 0x01000193);
    for (let i = n > 32 ? n - 32 : 0; i < n; i++) h = Math.imul(h ^ k[i]!, 0x01000193);
  }
  return h >>> 0;
}
