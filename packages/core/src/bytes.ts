import { ParseError } from './errors.js';

export type Bytes = Uint8Array<ArrayBuffer>;

const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

export function toHex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX_BYTE[b[i]!]!;
  return s;
}

export function fromHex(hex: string): Bytes {
  const h = hex.startsWith('0x') || hex.startsWith('0X') ? hex.slice(2) : hex;
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'not a hex string', { detail: { length: h.length } });
  }
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.substr(i * 2, 2), 16);
  return out;
}

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const B64_LOOKUP = (() => {
  const t = new Int16Array(256).fill(-1);
  for (let i = 0; i < 64; i++) t[B64.charCodeAt(i)] = i;
  t['-'.charCodeAt(0)] = 62;
  t['_'.charCodeAt(0)] = 63;
  return t;
})();

/** The two alphabets as ASCII codes: a code at a time into a byte array, decoded once at the end. */
const B64_STD = Uint8Array.from(B64, (c) => c.charCodeAt(0));
const B64_URL = Uint8Array.from(B64.slice(0, 62) + '-_', (c) => c.charCodeAt(0));
/** The encoders' output is ASCII, which UTF-8 decodes as is (and fast). */
const ascii = new TextDecoder();
const EQ = 0x3d;

function encode64(b: Uint8Array, alphabet: Uint8Array, pad: boolean): string {
  const n = b.length;
  const full = n - (n % 3);
  const rest = n - full;
  const out = new Uint8Array((full / 3) * 4 + (rest === 0 ? 0 : pad ? 4 : rest + 1));
  let o = 0;
  for (let i = 0; i < full; i += 3) {
    const v = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    out[o] = alphabet[v >> 18]!;
    out[o + 1] = alphabet[(v >> 12) & 63]!;
    out[o + 2] = alphabet[(v >> 6) & 63]!;
    out[o + 3] = alphabet[v & 63]!;
    o += 4;
  }
  if (rest > 0) {
    const v = (b[full]! << 16) | (rest > 1 ? b[full + 1]! << 8 : 0);
    out[o++] = alphabet[v >> 18]!;
    out[o++] = alphabet[(v >> 12) & 63]!;
    if (rest > 1) out[o++] = alphabet[(v >> 6) & 63]!;
    else if (pad) out[o++] = EQ;
    if (pad) out[o] = EQ;
  }
  return ascii.decode(out);
}

export function toBase64(b: Uint8Array): string {
  return encode64(b, B64_STD, true);
}

/** URL-safe base64 without padding (RFC 4648 section 5). */
export function toBase64Url(b: Uint8Array): string {
  return encode64(b, B64_URL, false);
}

/**
 * Decodes standard or URL-safe base64, padded or not. Whitespace is ignored. Strict: a
 * character outside both alphabets, anything after padding, or non-zero bits after the last
 * whole byte is an error (ERR_INPUT_MALFORMED).
 */
export function fromBase64(s: string): Bytes {
  return fromBase64Quads(s) ?? fromBase64Chars(s);
}

/**
 * The common case, four characters at a time: only alphabet characters, then at most trailing
 * `=`. Undefined for anything else (whitespace, an error), which the character-at-a-time
 * decoder handles, with its errors.
 */
function fromBase64Quads(s: string): Bytes | undefined {
  let end = s.length;
  while (end > 0 && s.charCodeAt(end - 1) === EQ) end--;
  const tail = end & 3;
  if (tail === 1) return undefined;
  const quads = end - tail;
  const out = new Uint8Array((quads / 4) * 3 + (tail === 0 ? 0 : tail - 1));
  let o = 0;
  for (let i = 0; i < quads; i += 4) {
    const a = s.charCodeAt(i);
    const b = s.charCodeAt(i + 1);
    const c = s.charCodeAt(i + 2);
    const d = s.charCodeAt(i + 3);
    if ((a | b | c | d) > 255) return undefined;
    const v = (B64_LOOKUP[a]! << 18) | (B64_LOOKUP[b]! << 12) | (B64_LOOKUP[c]! << 6) | B64_LOOKUP[d]!;
    // A -1 anywhere sets the sign bit.
    if (v < 0) return undefined;
    out[o] = v >> 16;
    out[o + 1] = (v >> 8) & 0xff;
    out[o + 2] = v & 0xff;
    o += 3;
  }
  if (tail > 0) {
    const a = s.charCodeAt(quads);
    const b = s.charCodeAt(quads + 1);
    const c = tail === 3 ? s.charCodeAt(quads + 2) : 0x41; /* 'A', zero bits */
    if ((a | b | c) > 255) return undefined;
    const v = (B64_LOOKUP[a]! << 18) | (B64_LOOKUP[b]! << 12) | (B64_LOOKUP[c]! << 6);
    if (v < 0) return undefined;
    // Non-zero bits after the last whole byte: the character decoder refuses it.
    if ((tail === 2 ? v & 0xffff : v & 0xff) !== 0) return undefined;
    out[o] = v >> 16;
    if (tail === 3) out[o + 1] = (v >> 8) & 0xff;
  }
  return out;
}

function fromBase64Chars(s: string): Bytes {
  const out = new Uint8Array(Math.floor((s.length * 3) / 4) + 3);
  let o = 0;
  let acc = 0;
  let bits = 0;
  let chars = 0;
  let padding = false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) continue;
    if (c === 0x3d /* = */) {
      padding = true;
      continue;
    }
    const v = c < 256 ? B64_LOOKUP[c]! : -1;
    if (v < 0 || padding) throw new ParseError('ERR_INPUT_MALFORMED', 'not a base64 string', { detail: { offset: i } });
    chars++;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  if (chars % 4 === 1) throw new ParseError('ERR_INPUT_MALFORMED', 'not a base64 string');
  // The bits after the last whole byte must be zero: otherwise several strings decode to the
  // same bytes, and a signed value could be re-spelled without breaking its signature.
  if ((acc & ((1 << bits) - 1)) !== 0) throw new ParseError('ERR_INPUT_MALFORMED', 'base64 string is not in canonical form (non-zero padding bits)');
  return out.slice(0, o);
}

export const fromBase64Url = fromBase64;

export function concatBytes(...parts: Uint8Array[]): Bytes {
  return joinBytes(parts);
}

/** The parts as one array; takes a list (any length: no spread), and their total size when known. */
export function joinBytes(parts: readonly Uint8Array[], size?: number): Bytes {
  let n = size ?? 0;
  if (size === undefined) for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Constant-time comparison for secrets and MACs (time depends only on the lengths). */
export function timingSafeEqual(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) diff |= (a[i] ?? 0) ^ (b[i] ?? 0);
  return diff === 0;
}

export function isAllZero(b: Uint8Array): boolean {
  let acc = 0;
  for (let i = 0; i < b.length; i++) acc |= b[i]!;
  return acc === 0;
}

const enc = new TextEncoder();
const dec = new TextDecoder('utf-8', { fatal: true });

export function utf8(s: string): Bytes {
  return enc.encode(s);
}

export function fromUtf8(b: Uint8Array): string {
  try {
    return dec.decode(b);
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'not valid UTF-8', { cause: e });
  }
}

/** Copies into a fresh ArrayBuffer-backed array (WebCrypto wants exact buffers). */
export function copyBytes(b: Uint8Array): Bytes {
  const out = new Uint8Array(b.length);
  out.set(b);
  return out;
}

/** Overwrites a buffer that held secret material. */
export function wipe(b: Uint8Array): void {
  b.fill(0);
}

/** Reverses byte order (AMD writes ECDSA r and s little-endian). */
export function reverseBytes(b: Uint8Array): Bytes {
  const out = new Uint8Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = b[b.length - 1 - i]!;
  return out;
}
