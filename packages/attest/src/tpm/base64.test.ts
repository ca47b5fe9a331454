import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CustodyError, fromBase64, toBase64, toBase64Url } from '@custody/core';
import { decodeBase64 } from './base64.js';

type Outcome = { bytes: number[] } | { code: string };

function outcome(f: () => Uint8Array): Outcome {
  try {
    return { bytes: [...f()] };
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return { code: (e as CustodyError).code };
  }
}

const sameAsCore = (s: string): void => {
  expect(outcome(() => decodeBase64(s))).toEqual(outcome(() => fromBase64(s)));
};

describe('decodeBase64 (fast path of core fromBase64)', () => {
  it('round-trips standard and URL-safe base64 of random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        expect([...decodeBase64(toBase64(b))]).toEqual([...b]);
        sameAsCore(toBase64(b));
        sameAsCore(toBase64Url(b));
      }),
      { numRuns: 500 },
    );
  });

  it('accepts and rejects exactly what core does, with the same bytes or error code', () => {
    const chars = fc.constantFrom(...'AQgw/+_-=Z9az ', '\n', '\t', '!', '\u00e9', '\u0100');
    fc.assert(fc.property(fc.array(chars, { maxLength: 24 }).map((a) => a.join('')), sameAsCore), { numRuns: 5000 });
  });

  it('matches core on mutated real encodings', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 80 }), fc.nat(), fc.constantFrom(...'A=Q/ _!-g'), (b, at, c) => {
        const s = toBase64(b);
        const i = at % s.length;
        sameAsCore(s.slice(0, i) + c + s.slice(i + 1));
        sameAsCore(s.slice(0, i) + s.slice(i + 1));
        sameAsCore(s + c);
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps core’s canonical-padding rule', () => {
    sameAsCore('QQ==');
    sameAsCore('QR==');
    sameAsCore('QUE=');
    sameAsCore('QUF=');
    sameAsCore('Q===');
    sameAsCore('====');
    sameAsCore('');
    expect(() => decodeBase64('QR==')).toThrow(CustodyError);
  });
});
