import { createPublicKey } from 'node:crypto';
import { CustodyError } from '@custody/core';
import type { RecipientCurve, RecipientKey } from './types.js';

/** Checks a recipient key's encoding and, for P-256, that the point is on the curve. */
export function assertRecipient(recipient: RecipientKey, allowed: readonly RecipientCurve[]): void {
  if (!allowed.includes(recipient.curve)) {
    throw new CustodyError('ERR_KEY_RECIPIENT', `this key store wraps only to ${allowed.join(', ')} keys`, { detail: { curve: String(recipient.curve) } });
  }
  const pk = recipient.publicKey;
  if (recipient.curve === 'X25519') {
    if (pk.length !== 32) throw new CustodyError('ERR_KEY_RECIPIENT', 'X25519 public key must be 32 bytes', { detail: { length: pk.length } });
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
