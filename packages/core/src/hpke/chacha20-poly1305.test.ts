import { createCipheriv } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex, utf8 } from '../bytes.js';
import { chacha20, chacha20Poly1305Open, chacha20Poly1305Seal, poly1305 } from './chacha20-poly1305.js';

const SUNSCREEN = utf8("Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.");

/** Straightforward BigInt Poly1305, the reference the limb arithmetic is checked against. */
function poly1305Reference(key: Uint8Array, msg: Uint8Array): Uint8Array {
  const le = (b: Uint8Array): bigint => b.reduceRight((acc, v) => (acc << 8n) | BigInt(v), 0n);
  const r = le(key.subarray(0, 16)) & 0x0ffffffc0ffffffc0ffffffc0fffffffn;
  const s = le(key.subarray(16, 32));
  const p = (1n << 130n) - 5n;
  let acc = 0n;
  for (let i = 0; i < msg.length; i += 16) {
    const block = msg.subarray(i, i + 16);
    const n = le(block) + (1n << BigInt(8 * block.length));
    acc = ((acc + n) * r) % p;
  }
  let t = (acc + s) & ((1n << 128n) - 1n);
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) {
    out[i] = Number(t & 0xffn);
    t >>= 8n;
  }
  return out;
}

function nodeSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
  const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
  c.setAAD(aad, { plaintextLength: pt.length });
  return new Uint8Array(Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]));
}

describe('ChaCha20 (RFC 8439)', () => {
  it('encrypts the section 2.4.2 example', () => {
    const key = fromHex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    const ct = chacha20(key, fromHex('000000000000004a00000000'), 1, SUNSCREEN);
    expect(toHex(ct).slice(0, 32)).toBe('6e2e359a2568f98041ba0728dd0d6981');
    expect(toHex(ct).slice(-36)).toBe('5af90bbf74a35be6b40b8eedf2785e42874d');
    expect(chacha20(key, fromHex('000000000000004a00000000'), 1, ct)).toEqual(SUNSCREEN);
  });

  it('gives the all-zero key and nonce keystream (appendix A.1 test vector 1)', () => {
    expect(toHex(chacha20(new Uint8Array(32), new Uint8Array(12), 0, new Uint8Array(64)))).toBe(
      '76b8e0ada0f13d90405d6ae55386bd28bdd219b8a08ded1aa836efcc8b770dc7da41597c5157488d7724e03fb8d84a376a43b8f41518a11cc387b669b2ee6586',
    );
  });
});

describe('Poly1305 (RFC 8439)', () => {
  it('authenticates the section 2.5.2 example', () => {
    const key = fromHex('85d6be7857556d337f4452fe42d506a80103808afb0db2fd4abff6af4149f51b');
    expect(toHex(poly1305(key, utf8('Cryptographic Forum Research Group')))).toBe('a8061dc1305136c6c22b8baf0c0127a9');
  });

  it('gives a zero tag for a zero key (appendix A.3 test vector 1)', () => {
    expect(toHex(poly1305(new Uint8Array(32), new Uint8Array(64)))).toBe('00000000000000000000000000000000');
  });

  it('matches a BigInt reference, including values at and above 2^130 - 5', () => {
    const edgeByte = fc.oneof(fc.constant(0xff), fc.constant(0), fc.integer({ min: 0, max: 255 }));
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 32, maxLength: 32 }), fc.array(edgeByte, { maxLength: 200 }), (key, msg) => {
        const m = Uint8Array.from(msg);
        expect(toHex(poly1305(key, m))).toBe(toHex(poly1305Reference(key, m)));
      }),
      { numRuns: 1500, seed: 1 },
    );
    const allOnes = new Uint8Array(32).fill(0xff);
    for (const n of [0, 1, 15, 16, 17, 64, 255]) {
      const m = new Uint8Array(n).fill(0xff);
      expect(toHex(poly1305(allOnes, m))).toBe(toHex(poly1305Reference(allOnes, m)));
    }
  });
});

describe('AEAD_CHACHA20_POLY1305 (RFC 8439 section 2.8.2)', () => {
  const key = fromHex('808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f');
  const nonce = fromHex('070000004041424344454647');
  const aad = fromHex('50515253c0c1c2c3c4c5c6c7');

  it('seals the RFC example and opens it again', () => {
    const sealed = chacha20Poly1305Seal(key, nonce, aad, SUNSCREEN);
    expect(toHex(sealed).slice(0, 32)).toBe('d31a8d34648e60db7b86afbc53ef7ec2');
    expect(toHex(sealed.subarray(sealed.length - 16))).toBe('1ae10b594f09e26a7e902ecbd0600691');
    expect(chacha20Poly1305Open(key, nonce, aad, sealed)).toEqual(SUNSCREEN);
  });

  it('refuses any modified byte, aad or nonce', () => {
    const sealed = chacha20Poly1305Seal(key, nonce, aad, SUNSCREEN);
    for (const i of [0, 57, sealed.length - 17, sealed.length - 1]) {
      const t = sealed.slice();
      t[i]! ^= 0x80;
      expect(chacha20Poly1305Open(key, nonce, aad, t)).toBeNull();
    }
    expect(chacha20Poly1305Open(key, nonce, aad.subarray(1), sealed)).toBeNull();
    expect(chacha20Poly1305Open(key, fromHex('070000004041424344454648'), aad, sealed)).toBeNull();
    expect(chacha20Poly1305Open(key, nonce, aad, sealed.subarray(0, 15))).toBeNull();
  });

  it('agrees with the platform implementation on random inputs', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.uint8Array({ minLength: 12, maxLength: 12 }),
        fc.uint8Array({ maxLength: 70 }),
        fc.uint8Array({ maxLength: 300 }),
        (k, n, a, p) => {
          const sealed = chacha20Poly1305Seal(k, n, a, p);
          expect(toHex(sealed)).toBe(toHex(nodeSeal(k, n, a, p)));
          expect(chacha20Poly1305Open(k, n, a, sealed)).toEqual(p);
        },
      ),
      { numRuns: 500, seed: 3 },
    );
  });
});
