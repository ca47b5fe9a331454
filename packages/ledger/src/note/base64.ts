import { fromBase64, toBase64, type Bytes } from '@custody/core';

const STD_B64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Strict standard base64 (RFC 4648 section 4, padded, no whitespace, canonical trailing bits),
 * as signed notes and checkpoints use. Returns undefined instead of throwing so callers can
 * attach their own error code.
 */
export function decodeStdBase64(s: string): Bytes | undefined {
  if (!STD_B64.test(s)) return undefined;
  try {
    // fromBase64 rejects non-canonical encodings (unused trailing bits set): one value, one spelling.
    const b = fromBase64(s);
    return toBase64(b) === s ? b : undefined;
  } catch {
    return undefined;
  }
}
