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

export function toBase64(b: Uint8Array): string {
  let s = '';
  let i = 0;
  for (; i + 2 < b.length; i += 3) {
    const n = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + B64[(n >> 6) & 63]! + B64[n & 63]!;
  }
  if (i < b.length) {
    const rest = b.length - i;
    const n = (b[i]! << 16) | (rest > 1 ? b[i + 1]! << 8 : 0);
    s += B64[n >> 18]! + B64[(n >> 12) & 63]! + (rest > 1 ? B64[(n >> 6) & 63]! : '=') + '=';
  }
  return s;
}

export function toBase64Url(b: Uint8Array): string {
  return toBase64(b).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

/** Decodes standard or URL-safe base64, padded or not. Whitespace is ignored. */
export function fromBase64(s: string): Bytes {
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
