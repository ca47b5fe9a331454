import { ParseError } from '@custody/core';

// `ignoreBOM: true` keeps a leading U+FEFF in the text instead of silently dropping it: signed
// bytes must decode to exactly the characters they encode, or a signature would be checked over
// other bytes than the ones given (Go's note.Open keeps the BOM, so such a note fails there too).
const exact = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Decodes UTF-8 byte for byte: invalid UTF-8 throws ERR_INPUT_MALFORMED and a byte-order mark is
 * kept as U+FEFF, so `utf8(decodeUtf8Exact(b))` equals `b`. Use it for every signed or
 * signature-bearing input (notes, checkpoints, tlog-proofs, witness requests and responses).
 */
export function decodeUtf8Exact(bytes: Uint8Array): string {
  try {
    return exact.decode(bytes);
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'not valid UTF-8', { cause: e });
  }
}
