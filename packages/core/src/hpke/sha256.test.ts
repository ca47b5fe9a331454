import { createHash, createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { toHex, utf8 } from '../bytes.js';
import { hmacSha256, sha256Sync } from './sha256.js';

describe('synchronous SHA-256 and HMAC-SHA256', () => {
  it('matches FIPS 180-4 examples', () => {
    expect(toHex(sha256Sync(utf8('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(toHex(sha256Sync(new Uint8Array(0)))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(toHex(sha256Sync(utf8('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')))).toBe('248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  });

  it('matches RFC 4231 test case 2', () => {
    expect(toHex(hmacSha256(utf8('Jefe'), utf8('what do ya want for nothing?')))).toBe('5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  });

  it('agrees with the platform on every length around the block boundaries and split inputs', () => {
    for (let n = 0; n < 200; n++) {
      const m = new Uint8Array(n).map((_, i) => i * 13 + n);
      expect(toHex(sha256Sync(m))).toBe(createHash('sha256').update(m).digest('hex'));
    }
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 150 }), { maxLength: 5 }), fc.uint8Array({ maxLength: 140 }), (parts, key) => {
        const whole = Buffer.concat(parts);
        expect(toHex(sha256Sync(...parts))).toBe(createHash('sha256').update(whole).digest('hex'));
        expect(toHex(hmacSha256(key, ...parts))).toBe(createHmac('sha256', key).update(whole).digest('hex'));
      }),
      { numRuns: 1000, seed: 9 },
    );
  });
});
