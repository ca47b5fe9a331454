import { fromBase64, fromUtf8, toBase64, type Bytes } from './bytes.js';
import { ParseError } from './errors.js';

export interface PemBlock {
  label: string;
  der: Bytes;
}

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** All PEM blocks in a text, in order. */
export function parsePem(text: string): PemBlock[] {
  const out: PemBlock[] = [];
  for (const m of text.matchAll(PEM_RE)) out.push({ label: m[1]!, der: fromBase64(m[2]!) });
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
