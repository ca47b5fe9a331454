import { createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CustodyError } from '@custody/core';
import type { RecipientCurve, RecipientKey } from './types.js';

/** Checks a recipient key's encoding: for P-256 that the point is on the curve, for X25519 that it is not of small order. */
export function assertRecipient(recipient: RecipientKey, allowed: readonly RecipientCurve[]): void {
  if (!allowed.includes(recipient.curve)) {
    throw new CustodyError('ERR_KEY_RECIPIENT', `this key store wraps only to ${allowed.join(', ')} keys`, { detail: { curve: String(recipient.curve) } });
  }
  const pk = recipient.publicKey;
  if (recipient.curve === 'X25519') {
    assertContributoryX25519(pk);
    return;
  }
  if (pk.length !== 65 || pk[0] !== 0x04) throw new CustodyError('ERR_KEY_RECIPIENT', 'P-256 public key must be a 65-byte uncompressed point', { detail: { length: pk.length } });
  const b = Buffer.from(pk.buffer, pk.byteOffset, pk.byteLength);
  try {
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b.subarray(1, 33).toString('base64url'), y: b.subarray(33).toString('base64url') }, format: 'jwk' });
  } catch {
    throw new CustodyError('ERR_KEY_RECIPIENT', 'P-256 public key is not a point on the curve');
  }
}

let throwaway: KeyObject | undefined;

/**
 * Refuses an X25519 public key of small order (RFC 7748 section 6.1, RFC 9180 section 7.1.4):
 * its shared secret with any clamped scalar is all zero, so nothing wrapped to it is secret.
 * The check is an X25519 agreement with a throwaway key, which OpenSSL fails on an all-zero
 * result; it covers non-canonical encodings (u >= p, the top bit set) the same way.
 */
export function assertContributoryX25519(publicKey: Uint8Array): void {
  if (publicKey.length !== 32) throw new CustodyError('ERR_KEY_RECIPIENT', 'X25519 public key must be 32 bytes', { detail: { length: publicKey.length } });
  throwaway ??= generateKeyPairSync('x25519').privateKey;
  try {
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: Buffer.from(publicKey.buffer, publicKey.byteOffset, publicKey.byteLength).toString('base64url') }, format: 'jwk' });
    diffieHellman({ privateKey: throwaway, publicKey: pub });
  } catch {
    throw new CustodyError('ERR_KEY_RECIPIENT', 'X25519 public key is a small-order point (no contributory shared secret)');
  }
}
