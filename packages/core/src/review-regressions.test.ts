// Regression tests for findings of the 2026-11-26 security review of core.
import { describe, expect, it } from 'vitest';
import { canonicalize } from './canonical-json.js';
import { parsePem } from './pem.js';
import { decodeTime, parseDer } from './x509/der.js';
import { ecdsaDerToRaw } from './x509/signature.js';

describe('review regressions', () => {
  it('parses PEM in linear time: 256 KiB of unmatched BEGIN lines is quick and finds nothing', () => {
    const junk = '-----BEGIN A-----'.repeat(15_000);
    const t0 = performance.now();
    expect(parsePem(junk)).toEqual([]);
    // Not a benchmark: the quadratic regex took seconds here; anything linear takes milliseconds.
    expect(performance.now() - t0).toBeLessThan(1000);
  });

  it('canonicalize refuses Maps, Sets and typed arrays instead of collapsing them to {}', () => {
    for (const v of [new Map([['k', 1]]), new Set([1]), Uint8Array.of(1, 2)]) {
      expect(() => canonicalize({ a: v })).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    }
    expect(canonicalize(Object.assign(Object.create(null) as object, { b: 1 }))).toBe('{"b":1}');
  });

  it('rejects out-of-range and fractional certificate times', () => {
    const t = (tag: number, s: string) => parseDer(Uint8Array.of(tag, s.length, ...new TextEncoder().encode(s)));
    expect(() => decodeTime(t(0x17, '991345996099Z'))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => decodeTime(t(0x18, '20240101000000.5Z'))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(decodeTime(t(0x17, '240229235959Z')).toISOString()).toBe('2024-02-29T23:59:59.000Z');
  });

  it('rejects non-minimal INTEGERs in ECDSA signatures', () => {
    const sig = (r: number[], s: number[]) => Uint8Array.of(0x30, r.length + s.length + 4, 0x02, r.length, ...r, 0x02, s.length, ...s);
    expect(ecdsaDerToRaw(sig([1], [2]), 32)[31]).toBe(1);
    expect(() => ecdsaDerToRaw(sig([0, 1], [2]), 32)).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
  });
});
