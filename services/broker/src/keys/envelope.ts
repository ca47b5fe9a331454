import { canonicalize, CustodyError, fromBase64Url, toBase64Url, utf8, type Bytes } from '@custody/core';
import type { AeadCiphertext } from '../keystore/types.js';

/**
 * Envelope encryption: a data key wrapped by a key-encryption key (an `aes-256` key in the
 * store) with AES-256-GCM, inside the store. Text form:
 *
 *   cdk1.<kek key id>.<kek version>.<iv, base64url>.<ciphertext||tag, base64url>
 *
 * The AAD binds the tenant, KEK id and version and the caller's encryption context, so a
 * wrapped key only unwraps in the same tenant, with the same version, for the same context.
 */
export interface WrappedDataKey {
  keyId: string;
  version: number;
  sealed: AeadCiphertext;
}

const MAX_WRAPPED_CHARS = 4096;
const WRAPPED_RE = /^cdk1\.(key_[0-9a-f]{32})\.([1-9][0-9]{0,8})\.([A-Za-z0-9_-]{16})\.([A-Za-z0-9_-]{22,2048})$/;

export function encodeWrappedDataKey(w: WrappedDataKey): string {
  return `cdk1.${w.keyId}.${w.version}.${toBase64Url(w.sealed.iv)}.${toBase64Url(w.sealed.ciphertext)}`;
}

export function decodeWrappedDataKey(text: string): WrappedDataKey {
  if (text.length > MAX_WRAPPED_CHARS) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'wrapped data key is too long', { detail: { length: text.length } });
  const m = WRAPPED_RE.exec(text);
  if (!m) throw new CustodyError('ERR_INPUT_MALFORMED', 'not a wrapped data key (cdk1.<key>.<version>.<iv>.<ciphertext>)');
  const iv = fromBase64Url(m[3]!);
  const ciphertext = fromBase64Url(m[4]!);
  if (iv.length !== 12 || ciphertext.length < 17) throw new CustodyError('ERR_INPUT_MALFORMED', 'wrapped data key has the wrong sizes');
  return { keyId: m[1]!, version: Number(m[2]), sealed: { iv, ciphertext } };
}

export type EncryptionContext = Record<string, string>;

export function envelopeAad(tenant: string, keyId: string, version: number, context: EncryptionContext = {}): Bytes {
  for (const [k, v] of Object.entries(context)) {
    if (typeof v !== 'string' || k.length > 256 || v.length > 1024) throw new CustodyError('ERR_INPUT_MALFORMED', 'encryption context must map short strings to short strings');
  }
  return utf8(`custody/envelope/v1\n${tenant}\n${keyId}\n${version}\n${canonicalize(context)}`);
}
