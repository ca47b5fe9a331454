import { describe, expect, it } from 'vitest';
import { concatBytes, fromBase64, joinBytes, toBase64, toBase64Url } from './bytes.js';

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

describe('base64', () => {
  // A seeded generator: the same bytes every run.
  let seed = 0x2545f491;
  const next = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 16) & 0xff;
  const bytes = (n: number) => Uint8Array.from({ length: n }, next);

  it('encodes as Node does, standard and URL-safe, every length to 70 and some long ones', () => {
    for (const n of [...Array.from({ length: 71 }, (_, i) => i), 1000, 4097]) {
      const b = bytes(n);
      expect(toBase64(b)).toBe(Buffer.from(b).toString('base64'));
      expect(toBase64Url(b)).toBe(Buffer.from(b).toString('base64url'));
    }
  });

  it('decodes both alphabets, padded or not, with whitespace, back to the same bytes', () => {
    for (const n of [...Array.from({ length: 71 }, (_, i) => i), 1000, 4097]) {
      const b = bytes(n);
      const std = Buffer.from(b).toString('base64');
      for (const s of [std, std.replace(/=+$/, ''), Buffer.from(b).toString('base64url'), std.replace(/(.{7})/g, '$1\n '), `${std}\r\n`]) {
        expect(fromBase64(s)).toEqual(b);
      }
    }
  });

  it.each([
    ['a character outside both alphabets', 'QUJD*EVG'],
    ['a character above U+00FF', 'QUJDĀEVG'],
    ['a lone last character', 'QUJDR'],
    ['text after padding', 'QQ==QUJD'],
    ['non-zero bits after the last byte (two characters)', 'QR'],
    ['non-zero bits after the last byte (three characters)', 'QUJ'],
    ['an alphabet character in the padding', 'QQ=A'],
  ])('refuses %s (ERR_INPUT_MALFORMED)', (_, s) => {
    expect(() => fromBase64(s)).toThrow(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }));
  });

  it('fuzz: any string decodes as the strict reference does, or fails as it does', () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_= \n*';
    // The reference: Node's decoder is lenient, so it is used only on strings a strict decoder accepts.
    const strictOk = (s: string) => {
      const t = s.replace(/[ \n\r\t]/g, '');
      const m = /^([A-Za-z0-9+/_-]*)(=*)$/.exec(t);
      if (!m || m[1]!.length % 4 === 1) return undefined;
      const b = Buffer.from(m[1]!.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
      // Canonical: re-encoding gives the same characters.
      return Buffer.from(b).toString('base64').replace(/=+$/, '') === m[1]!.replace(/-/g, '+').replace(/_/g, '/') ? b : undefined;
    };
    for (let i = 0; i < 20_000; i++) {
      const s = Array.from({ length: next() % 24 }, () => alphabet[next() % alphabet.length]).join('');
      const want = strictOk(s);
      if (want) expect(fromBase64(s)).toEqual(new Uint8Array(want));
      else expect(() => fromBase64(s)).toThrow(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }));
    }
  });
});
