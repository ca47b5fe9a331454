import type { Bytes } from '../bytes.js';
import { CustodyError, ParseError } from '../errors.js';
import { compareBytes } from './decode.js';
import { encodeFloat16Exact } from './float.js';
import { CborFloat, CborSimple, CborTag, type CborValue } from './types.js';

const MAX_ENCODE_DEPTH = 256;
const TWO_64 = 1n << 64n;
const utf8Encoder = new TextEncoder();
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/**
 * Encodes a value in core deterministic encoding (RFC 8949 §4.2.1): shortest arguments,
 * definite lengths, map entries sorted by the bytes of their encoded keys, floats in the
 * shortest width that keeps their value (NaN as 0xf97e00), integers beyond 64 bits as
 * bignums (tags 2/3). A JavaScript number is an integer when it is integral (except -0) and a
 * float otherwise; wrap it in `CborFloat` to force a float.
 */
export function encodeCbor(value: CborValue): Bytes {
  const e = new Encoder();
  e.item(value, 0);
  return e.result();
}

class Encoder {
  private buf = new Uint8Array(256);
  private pos = 0;
  private readonly view8 = new DataView(new ArrayBuffer(8));

  result(): Bytes {
    return this.buf.slice(0, this.pos);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
  }

  private bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
  }

  private byte(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  head(major: number, arg: number | bigint): void {
    const m = major << 5;
    if (typeof arg === 'number' && arg < 24) return this.byte(m | arg);
    if (typeof arg === 'number' && arg < 0x100) {
      this.byte(m | 24);
      return this.byte(arg);
    }
    if (typeof arg === 'number' && arg < 0x10000) {
      this.byte(m | 25);
      this.byte(arg >> 8);
      return this.byte(arg & 0xff);
    }
    if (typeof arg === 'number' && arg < 0x100000000) {
      this.byte(m | 26);
      this.view8.setUint32(0, arg);
      return this.bytes(new Uint8Array(this.view8.buffer, 0, 4));
    }
    const big = BigInt(arg);
    if (big < 0n || big >= TWO_64) throw new CustodyError('ERR_INTERNAL', 'CBOR argument out of range');
    if (big < 0x100000000n) return this.head(major, Number(big));
    this.byte(m | 27);
    this.view8.setBigUint64(0, big);
    this.bytes(new Uint8Array(this.view8.buffer, 0, 8));
  }

  item(v: CborValue, depth: number): void {
    if (depth > MAX_ENCODE_DEPTH) throw new ParseError('ERR_INPUT_TOO_LARGE', 'value nests too deeply to encode as CBOR');
    if (typeof v === 'number') return this.number(v);
    if (typeof v === 'bigint') return this.bigint(v);
    if (typeof v === 'string') {
      if (LONE_SURROGATE.test(v)) throw new ParseError('ERR_INPUT_MALFORMED', 'text has a lone UTF-16 surrogate and cannot be encoded as UTF-8');
      const b = utf8Encoder.encode(v);
      this.head(3, b.length);
      return this.bytes(b);
    }
    if (v instanceof Uint8Array) {
      this.head(2, v.length);
      return this.bytes(v);
    }
    if (v === false) return this.byte(0xf4);
    if (v === true) return this.byte(0xf5);
    if (v === null) return this.byte(0xf6);
    if (v === undefined) return this.byte(0xf7);
    if (Array.isArray(v)) {
      this.head(4, v.length);
      for (const x of v) this.item(x, depth + 1);
      return;
    }
    if (v instanceof Map) return this.map(v, depth);
    if (v instanceof CborTag) {
      this.head(6, v.tag);
      return this.item(v.value, depth + 1);
    }
    if (v instanceof CborFloat) return this.float(v.value);
    if (v instanceof CborSimple) {
      if (v.value < 24) return this.byte(0xe0 | v.value);
      this.byte(0xf8);
      return this.byte(v.value);
    }
    throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'value has no CBOR encoding');
  }

  private number(v: number): void {
    if (!Number.isInteger(v) || Object.is(v, -0)) return this.float(v);
    if (!Number.isSafeInteger(v)) return this.bigint(BigInt(v));
    if (v >= 0) this.head(0, v);
    else this.head(1, -1 - v);
  }

  private bigint(v: bigint): void {
    if (v >= 0n) {
      if (v < TWO_64) return this.head(0, v < BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
      return this.bignum(2, v);
    }
    const n = -1n - v;
    if (n < TWO_64) return this.head(1, n < BigInt(Number.MAX_SAFE_INTEGER) ? Number(n) : n);
    this.bignum(3, n);
  }

  /** Tag 2/3 with the big-endian magnitude, no leading zero bytes (RFC 8949 §3.4.3). */
  private bignum(tag: 2 | 3, n: bigint): void {
    let hex = n.toString(16);
    if (hex.length % 2) hex = '0' + hex;
    const b = new Uint8Array(hex.length / 2);
    for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.slice(i * 2, i * 2 + 2), 16);
    this.head(6, tag);
    this.head(2, b.length);
    this.bytes(b);
  }

  private float(f: number): void {
    const half = encodeFloat16Exact(f);
    if (half !== undefined) {
      this.byte(0xf9);
      this.byte(half >> 8);
      return this.byte(half & 0xff);
    }
    if (Math.fround(f) === f) {
      this.byte(0xfa);
      this.view8.setFloat32(0, f);
      return this.bytes(new Uint8Array(this.view8.buffer, 0, 4));
    }
    this.byte(0xfb);
    this.view8.setFloat64(0, f);
    this.bytes(new Uint8Array(this.view8.buffer, 0, 8));
  }

  private map(m: Map<unknown, CborValue>, depth: number): void {
    const entries: { key: Bytes; value: CborValue }[] = [];
    for (const [k, value] of m) {
      if (typeof k !== 'number' && typeof k !== 'bigint' && typeof k !== 'string') {
        throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'CBOR map keys must be integers or text strings');
      }
      const ke = new Encoder();
      ke.item(k, depth + 1);
      entries.push({ key: ke.result(), value });
    }
    entries.sort((a, b) => compareBytes(a.key, b.key));
    for (let i = 1; i < entries.length; i++) {
      if (compareBytes(entries[i - 1]!.key, entries[i]!.key) === 0) throw new ParseError('ERR_CBOR_DUPLICATE_KEY', 'two map keys have the same CBOR encoding');
    }
    this.head(5, entries.length);
    for (const e of entries) {
      this.bytes(e.key);
      this.item(e.value, depth + 1);
    }
  }
}
