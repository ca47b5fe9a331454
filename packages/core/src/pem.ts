import { fromBase64, fromUtf8, toBase64, type Bytes } from './bytes.js';
import { ParseError } from './errors.js';

export interface PemBlock {
  label: string;
  der: Bytes;
}

/** Largest PEM text Custody reads (a long certificate chain is a few tens of KiB). */
export const MAX_PEM_TEXT = 1024 * 1024;
const MAX_PEM_BLOCKS = 64;

/**
 * All PEM blocks in a text, in order. A linear scan (a backtracking regex is quadratic on input
 * full of unmatched BEGIN lines); text outside blocks is ignored.
 */
export function parsePem(text: string): PemBlock[] {
  if (text.length > MAX_PEM_TEXT) throw new ParseError('ERR_INPUT_TOO_LARGE', `PEM text is larger than ${MAX_PEM_TEXT} characters`);
  const out: PemBlock[] = [];
  let at = 0;
  for (;;) {
    const begin = text.indexOf('-----BEGIN ', at);
    if (begin < 0) break;
    const labelEnd = text.indexOf('-----', begin + 11);
    if (labelEnd < 0) break;
    const label = text.slice(begin + 11, labelEnd);
    if (!/^[A-Z0-9 ]{1,64}$/.test(label)) {
      at = begin + 11;
      continue;
    }
    const endMarker = `-----END ${label}-----`;
    const end = text.indexOf(endMarker, labelEnd + 5);
    if (end < 0) break;
    out.push({ label, der: fromBase64(text.slice(labelEnd + 5, end)) });
    if (out.length > MAX_PEM_BLOCKS) throw new ParseError('ERR_INPUT_TOO_LARGE', `more than ${MAX_PEM_BLOCKS} PEM blocks`);
    at = end + endMarker.length;
  }
  return out;
}

export function toPem(label: string, der: Uint8Array): string {
  let b64 = '';
  const raw = toBase64(der);
  for (let i = 0; i < raw.length; i += 64) b64 += raw.slice(i, i + 64) + '\n';
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/**
 * Accepts DER, or PEM text holding one or more CERTIFICATE blocks; returns the DER blobs.
 * DER starts with a SEQUENCE tag (0x30); anything else is read as text.
 */
export function readCertificates(input: Uint8Array): Bytes[] {
  if (input.length > 0 && input[0] === 0x30) return [input.slice()];
  let text: string;
  try {
    text = fromUtf8(input);
  } catch {
    throw new ParseError('ERR_CERT_PARSE', 'certificate input is neither DER nor PEM');
  }
  const blocks = parsePem(text).filter((b) => b.label === 'CERTIFICATE');
  if (blocks.length === 0) throw new ParseError('ERR_CERT_PARSE', 'no PEM CERTIFICATE block found');
  return blocks.map((b) => b.der);
}
