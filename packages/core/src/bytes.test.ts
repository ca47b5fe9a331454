import { describe, expect, it } from 'vitest';
import { concatBytes, joinBytes } from './bytes.js';

describe('concatBytes and joinBytes', () => {
  it('join in order, with or without the total size given', () => {
    const parts = [Uint8Array.of(1, 2), new Uint8Array(0), Uint8Array.of(3)];
    expect([...concatBytes(...parts)]).toEqual([1, 2, 3]);
    expect([...joinBytes(parts)]).toEqual([1, 2, 3]);
    expect([...joinBytes(parts, 3)]).toEqual([1, 2, 3]);
    expect(joinBytes([]).length).toBe(0);
  });

  it('joinBytes takes more parts than a spread could pass', () => {
    const parts = Array.from({ length: 200_000 }, (_, i) => Uint8Array.of(i & 0xff));
    const out = joinBytes(parts);
    expect(out.length).toBe(200_000);
    expect(out[199_999]).toBe(199_999 & 0xff);
  });
});
