import { equalBytes } from '@custody/core';

interface Entry<V> {
  key: Uint8Array[];
  value: V;
}

/**
 * A bounded memo keyed by exact byte strings (one or more parts). Lookups bucket by a cheap sampled
 * hash and then compare every byte, so a hit means the key bytes are identical; no large string is
 * built or hashed on the hot path. Holds only values that are a pure function of the key bytes
 * (parsed certificates, signatures already verified).
 */
export class BytesMemo<V> {
  private readonly buckets = new Map<number, Entry<V>[]>();
  private readonly order: number[] = [];

  constructor(private readonly max = 1024) {}

  get(key: readonly Uint8Array[]): V | undefined {
    const bucket = this.buckets.get(sampleHash(key));
    if (!bucket) return undefined;
    for (const e of bucket) if (sameKey(e.key, key)) return e.value;
    return undefined;
  }

  set(key: readonly Uint8Array[], value: V): void {
    if (this.get(key) !== undefined) return;
    if (this.order.length >= this.max) {
      const old = this.order.shift()!;
      const b = this.buckets.get(old);
      b?.shift();
      if (b && b.length === 0) this.buckets.delete(old);
    }
    const h = sampleHash(key);
    const entry = { key: key.map((k) => k.slice()), value };
    const b = this.buckets.get(h);
    if (b) b.push(entry);
    else this.buckets.set(h, [entry]);
    this.order.push(h);
  }
}

function sameKey(a: readonly Uint8Array[], b: readonly Uint8Array[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i]!.length !== b[i]!.length) return false;
  for (let i = 0; i < a.length; i++) if (!equalBytes(a[i]!, b[i]!)) return false;
  return true;
}

/** FNV-1a over each part's length and up to 64 evenly spaced bytes (plus its last 32). */
function sampleHash(key: readonly Uint8Array[]): number {
  let h = 0x811c9dc5;
  const mix = (v: number): void => {
    h = Math.imul(h ^ v, 0x01000193);
  };
  for (const k of key) {
    mix(k.length & 0xff);
    mix(k.length >>> 8);
    const step = Math.max(1, Math.floor(k.length / 64));
    for (let i = 0; i < k.length; i += step) mix(k[i]!);
    for (let i = Math.max(0, k.length - 32); i < k.length; i++) mix(k[i]!);
  }
  return h >>> 0;
}
