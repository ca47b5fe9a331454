import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { BytesKeyedCache } from './bytes-cache.js';

describe('BytesKeyedCache', () => {
  it('hits only for identical bytes, part by part', () => {
    const c = new BytesKeyedCache<string>(8);
    c.set([Uint8Array.of(1, 2), Uint8Array.of(3)], 'a');
    expect(c.get([Uint8Array.of(1, 2), Uint8Array.of(3)])).toBe('a');
    expect(c.get([Uint8Array.of(1), Uint8Array.of(2, 3)])).toBeUndefined();
    expect(c.get([Uint8Array.of(1, 2, 3)])).toBeUndefined();
    expect(c.get([Uint8Array.of(1, 2), Uint8Array.of(4)])).toBeUndefined();
    expect(c.get([Uint8Array.of(1, 2)])).toBeUndefined();
  });

  it('tells apart keys with the same sampled hash (differing only in unsampled bytes)', () => {
    const c = new BytesKeyedCache<number>(8);
    const a = new Uint8Array(1000);
    const b = new Uint8Array(1000);
    b[1] = 1; // index 1 is neither one of the evenly spaced samples nor in the last 32 bytes
    c.set([a], 1);
    expect(c.get([b])).toBeUndefined();
    c.set([b], 2);
    expect(c.get([a])).toBe(1);
    expect(c.get([b])).toBe(2);
    expect(c.size).toBe(2);
  });

  it('stores a copy of the key: changing the caller’s buffer afterwards does not change the entry', () => {
    const c = new BytesKeyedCache<string>(4);
    const k = Uint8Array.of(9, 9, 9);
    c.set([k], 'v');
    k[0] = 0;
    expect(c.get([k])).toBeUndefined();
    expect(c.get([Uint8Array.of(9, 9, 9)])).toBe('v');
  });

  it('drops the oldest entry when full, and deletes on request', () => {
    const c = new BytesKeyedCache<number>(3);
    for (let i = 0; i < 5; i++) c.set([Uint8Array.of(i)], i);
    expect(c.size).toBe(3);
    expect(c.get([Uint8Array.of(0)])).toBeUndefined();
    expect(c.get([Uint8Array.of(1)])).toBeUndefined();
    expect(c.get([Uint8Array.of(4)])).toBe(4);
    expect(c.delete([Uint8Array.of(3)])).toBe(true);
    expect(c.delete([Uint8Array.of(3)])).toBe(false);
    expect(c.get([Uint8Array.of(3)])).toBeUndefined();
    expect(c.size).toBe(2);
    expect(c.getOrSet([Uint8Array.of(7)], () => 7)).toBe(7);
    expect(c.getOrSet([Uint8Array.of(7)], () => 8)).toBe(7);
    expect(() => new BytesKeyedCache(0)).toThrow(RangeError);
  });

  it('behaves like a map keyed by the bytes (model test)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('set', 'get', 'delete'), fc.array(fc.uint8Array({ maxLength: 3 }), { minLength: 1, maxLength: 2 }), fc.nat(100)), { maxLength: 60 }),
        (ops) => {
          const c = new BytesKeyedCache<number>(1000);
          const model = new Map<string, number>();
          const id = (k: Uint8Array[]): string => JSON.stringify(k.map((p) => [...p]));
          for (const [op, key, v] of ops) {
            if (op === 'set') {
              c.set(key, v);
              model.set(id(key), v);
            } else if (op === 'get') {
              expect(c.get(key)).toBe(model.get(id(key)));
            } else {
              expect(c.delete(key)).toBe(model.delete(id(key)));
            }
          }
          expect(c.size).toBe(model.size);
        },
      ),
    );
  });
});
