import { ParseError } from '../errors.js';
import type { Bytes } from '../bytes.js';

/** One DER TLV: tag byte(s) folded into class/constructed/number, plus views of header and value. */
export interface DerNode {
  tagClass: number; // 0 universal, 1 application, 2 context, 3 private
  constructed: boolean;
  tagNumber: number;
  /** The whole TLV (header + value), a view into the input. */
  raw: Bytes;
  /** The value bytes, a view into the input. */
  value: Bytes;
}

export const TAG = {
  BOOLEAN: 1,
  INTEGER: 2,
  BIT_STRING: 3,
  OCTET_STRING: 4,
  NULL: 5,
  OID: 6,
  ENUMERATED: 10,
  UTF8_STRING: 12,
  SEQUENCE: 16,
  SET: 17,
  PRINTABLE_STRING: 19,
  T61_STRING: 20,
  IA5_STRING: 22,
  UTC_TIME: 23,
  GENERALIZED_TIME: 24,
  VISIBLE_STRING: 26,
  BMP_STRING: 30,
} as const;

const MAX_DEPTH = 32;

function fail(msg: string, offset: number): never {
  throw new ParseError('ERR_INPUT_MALFORMED', `DER: ${msg}`, { detail: { offset } });
}

/** Reads one TLV at `offset` of `buf`, checking every length against the buffer before use. */
export function readTlv(buf: Bytes, offset: number): { node: DerNode; next: number } {
  let p = offset;
  if (p >= buf.length) throw new ParseError('ERR_INPUT_TRUNCATED', 'DER: truncated tag', { detail: { offset: p } });
  const first = buf[p++]!;
  const tagClass = first >> 6;
  const constructed = (first & 0x20) !== 0;
  let tagNumber = first & 0x1f;
  if (tagNumber === 0x1f) {
    tagNumber = 0;
    for (let i = 0; ; i++) {
      if (i >= 4) fail('tag number too large', p);
      if (p >= buf.length) throw new ParseError('ERR_INPUT_TRUNCATED', 'DER: truncated tag', { detail: { offset: p } });
      const b = buf[p++]!;
      tagNumber = (tagNumber << 7) | (b & 0x7f);
      if ((b & 0x80) === 0) break;
    }
  }
  if (p >= buf.length) throw new ParseError('ERR_INPUT_TRUNCATED', 'DER: truncated length', { detail: { offset: p } });
  let len = buf[p++]!;
  if (len === 0x80) fail('indefinite length is not DER', p - 1);
  if (len > 0x80) {
    const n = len & 0x7f;
    if (n > 4) fail('length field too long', p - 1);
    if (p + n > buf.length) throw new ParseError('ERR_INPUT_TRUNCATED', 'DER: truncated length', { detail: { offset: p } });
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[p++]!;
    if (len < 0x80 || (n > 1 && buf[p - n] === 0)) fail('non-minimal length', p - n - 1);
  }
  if (p + len > buf.length) {
    throw new ParseError('ERR_INPUT_TRUNCATED', 'DER: value runs past the end of the input', { detail: { offset: p, length: len, available: buf.length - p } });
  }
  const node: DerNode = {
    tagClass,
    constructed,
    tagNumber,
    raw: buf.subarray(offset, p + len),
    value: buf.subarray(p, p + len),
  };
  return { node, next: p + len };
}

/** Parses exactly one TLV spanning the whole buffer. */
export function parseDer(buf: Bytes): DerNode {
  const { node, next } = readTlv(buf, 0);
  if (next !== buf.length) fail('trailing bytes after the outer element', next);
  return node;
}

/** Children of a constructed node. */
export function children(node: DerNode, depth = 0): DerNode[] {
  if (!node.constructed) fail('expected a constructed element', 0);
  if (depth > MAX_DEPTH) fail('nesting too deep', 0);
  const out: DerNode[] = [];
  let p = 0;
  while (p < node.value.length) {
    const { node: c, next } = readTlv(node.value, p);
    out.push(c);
    p = next;
  }
  return out;
}

export function expectTag(node: DerNode | undefined, tagNumber: number, what: string, tagClass = 0): DerNode {
  if (!node || node.tagNumber !== tagNumber || node.tagClass !== tagClass) fail(`expected ${what}`, 0);
  return node;
}

export function isContext(node: DerNode | undefined, n: number): node is DerNode {
  return node !== undefined && node.tagClass === 2 && node.tagNumber === n;
}

export function sequence(node: DerNode | undefined, what: string): DerNode[] {
  return children(expectTag(node, TAG.SEQUENCE, what));
}

export function decodeOid(node: DerNode): string {
  const v = expectTag(node, TAG.OID, 'OBJECT IDENTIFIER').value;
  if (v.length === 0 || v.length > 64) fail('bad OID length', 0);
  const parts: number[] = [];
  let acc = 0;
  for (let i = 0; i < v.length; i++) {
    const b = v[i]!;
    if (acc === 0 && b === 0x80) fail('non-minimal OID arc', i);
    acc = acc * 128 + (b & 0x7f);
    if (acc > Number.MAX_SAFE_INTEGER / 128) fail('OID arc too large', i);
    if ((b & 0x80) === 0) {
      if (parts.length === 0) {
        const first = acc < 40 ? 0 : acc < 80 ? 1 : 2;
        parts.push(first, acc - first * 40);
      } else parts.push(acc);
      acc = 0;
    } else if (i === v.length - 1) fail('truncated OID arc', i);
  }
  return parts.join('.');
}

/** INTEGER as unsigned big-endian bytes (sign byte stripped). Rejects negatives. */
export function decodeUnsignedInteger(node: DerNode): Bytes {
  const v = expectTag(node, TAG.INTEGER, 'INTEGER').value;
  if (v.length === 0) fail('empty INTEGER', 0);
  if (v[0]! & 0x80) fail('negative INTEGER where unsigned expected', 0);
  return (v[0] === 0 && v.length > 1 ? v.subarray(1) : v);
}

/** Small INTEGER as a number (up to 2^48). */
export function decodeSmallInteger(node: DerNode): number {
  const v = expectTag(node, TAG.INTEGER, 'INTEGER').value;
  if (v.length === 0 || v.length > 6) fail('INTEGER out of range', 0);
  let n = v[0]! & 0x80 ? -1 : 0;
  for (const b of v) n = n * 256 + b;
  return n;
}

export function decodeBitString(node: DerNode): Bytes {
  const v = expectTag(node, TAG.BIT_STRING, 'BIT STRING').value;
  if (v.length === 0 || v[0]! > 7) fail('bad BIT STRING', 0);
  return v.subarray(1);
}

export function decodeOctetString(node: DerNode): Bytes {
  return expectTag(node, TAG.OCTET_STRING, 'OCTET STRING').value;
}

export function decodeBoolean(node: DerNode): boolean {
  const v = expectTag(node, TAG.BOOLEAN, 'BOOLEAN').value;
  if (v.length !== 1) fail('bad BOOLEAN', 0);
  return v[0] !== 0;
}

const latin1 = new TextDecoder('latin1');
const utf8d = new TextDecoder('utf-8');

export function decodeString(node: DerNode): string {
  if (node.tagClass !== 0) fail('expected a string', 0);
  switch (node.tagNumber) {
    case TAG.UTF8_STRING:
      return utf8d.decode(node.value);
    case TAG.PRINTABLE_STRING:
    case TAG.IA5_STRING:
    case TAG.VISIBLE_STRING:
    case TAG.T61_STRING:
      return latin1.decode(node.value);
    case TAG.BMP_STRING: {
      let s = '';
      for (let i = 0; i + 1 < node.value.length; i += 2) s += String.fromCharCode((node.value[i]! << 8) | node.value[i + 1]!);
      return s;
    }
    default:
      fail(`unsupported string type ${node.tagNumber}`, 0);
  }
}

export function decodeTime(node: DerNode): Date {
  const s = latin1.decode(node.value);
  let m: RegExpMatchArray | null;
  if (node.tagNumber === TAG.UTC_TIME && node.tagClass === 0) {
    m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) fail('bad UTCTime', 0);
    const yy = Number(m[1]);
    return utc(yy >= 50 ? 1900 + yy : 2000 + yy, m);
  }
  if (node.tagNumber === TAG.GENERALIZED_TIME && node.tagClass === 0) {
    // RFC 5280 4.1.2.5.2: GeneralizedTime in certificates has no fractional seconds.
    m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
    if (!m) fail('bad GeneralizedTime', 0);
    return utc(Number(m[1]), m);
  }
  fail('expected a time', 0);
}

function utc(year: number, m: RegExpMatchArray): Date {
  const [month, day, hour, minute, second] = [Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])];
  // Not Date.UTC, which reads years 0-99 as 1900-1999 (GeneralizedTime 0050 is the year 50).
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  // A day or month out of range rolls over into a later date; a field out of range is a malformed time.
  if (Number.isNaN(d.getTime()) || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) fail('invalid date', 0);
  return d;
}

// ---- encoding (small, for building SPKI/JWK conversions and test fixtures) ----

export function encodeLength(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

export function encodeTlv(tagByte: number, value: Uint8Array): Bytes {
  const len = encodeLength(value.length);
  const out = new Uint8Array(1 + len.length + value.length);
  out[0] = tagByte;
  out.set(len, 1);
  out.set(value, 1 + len.length);
  return out;
}
