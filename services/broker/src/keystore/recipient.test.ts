// Recipient key checks at wrap time: small-order X25519 keys (every clamped scalar gives an
// all-zero shared secret) are refused like malformed ones, ordinary keys pass.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Bytes } from '@custody/core';
import { assertContributoryX25519, assertRecipient } from './recipient.js';

const P = (1n << 255n) - 19n;
function u(n: bigint): Bytes {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

const ORDER_8 = 325606250916557431795983626356110631294008115727848805560023387167927233504n;

describe('X25519 recipient keys', () => {
  it.each([
    ['u = 0', u(0n)],
    ['an order-8 point', u(ORDER_8)],
    ['u = p', u(P)],
    ['u = p + 1', u(P + 1n)],
    ['u = 0 with the top bit set (masked off by X25519)', u(1n << 255n)],
  ] as Array<[string, Bytes]>)('refuses %s', (_name, key) => {
    expect(() => assertContributoryX25519(key)).toThrowError(expect.objectContaining({ code: 'ERR_KEY_RECIPIENT' }) as Error);
    expect(() => assertRecipient({ curve: 'X25519', publicKey: key }, ['X25519'])).toThrowError(expect.objectContaining({ code: 'ERR_KEY_RECIPIENT' }) as Error);
  });

  it('accepts an ordinary key and refuses a wrong length', () => {
    const raw = Buffer.from(generateKeyPairSync('x25519').publicKey.export({ format: 'jwk' }).x!, 'base64url');
    expect(() => assertRecipient({ curve: 'X25519', publicKey: new Uint8Array(raw) }, ['X25519', 'P-256'])).not.toThrow();
    expect(() => assertContributoryX25519(new Uint8Array(31))).toThrowError(expect.objectContaining({ code: 'ERR_KEY_RECIPIENT' }) as Error);
  });
});
