import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { composeForDetection } from './compose.js';

describe('composeForDetection', () => {
  it('is undefined for text without combining marks', () => {
    expect(composeForDetection('José García')).toBeUndefined();
  });

  it('composes letters with their marks, drops marks that do not compose, and maps offsets back', () => {
    const original = 'Jose\u0301 Ade\u0301ba\u0301yo\u0323\u0300 x';
    const c = composeForDetection(original)!;
    expect(c.text).toBe('José Adébáyọ x');
    // "Adébáyọ" in the composed text is "Ade\u0301ba\u0301yo\u0323\u0300" in the original.
    const at = c.text.indexOf('Adé');
    expect(original.slice(c.startOf(at), c.endOf(at + 'Adébáyọ'.length))).toBe('Ade\u0301ba\u0301yo\u0323\u0300');
    expect(original.slice(c.startOf(0), c.endOf(4))).toBe('Jose\u0301');
    expect(c.startOf(c.text.length)).toBe(original.length);
  });

  it('keeps offsets in order and within the original for any text (marks alone, surrogates, at the edges)', () => {
    const alphabet = fc.constantFrom('a', 'E', ' ', '\u0301', '\u0323', '\u0300', '\u20dd', '𝐀', '\ud800', '.', 'ñ');
    fc.assert(
      fc.property(fc.array(alphabet, { maxLength: 40 }), (chars) => {
        const original = chars.join('');
        const c = composeForDetection(original);
        if (c === undefined) return;
        let prevStart = 0;
        let prevEnd = 0;
        for (let i = 0; i <= c.text.length; i++) {
          const s = c.startOf(i);
          const e = c.endOf(i);
          expect(s).toBeGreaterThanOrEqual(prevStart);
          expect(e).toBeGreaterThanOrEqual(prevEnd);
          expect(s).toBeLessThanOrEqual(original.length);
          expect(e).toBeLessThanOrEqual(original.length);
          prevStart = s;
          prevEnd = e;
        }
        // Every letter of the composed text maps to a span of the original that holds it (or its decomposition).
        for (let i = 0; i < c.text.length; i++) {
          const span = original.slice(c.startOf(i), c.endOf(i + 1));
          expect(span.length).toBeGreaterThan(0);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
