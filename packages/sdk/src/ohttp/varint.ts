/**
 * QUIC variable-length integers (RFC 9000 section 16), used by Binary HTTP and chunked OHTTP.
 * Values are JavaScript numbers, so anything above 2^53 - 1 is refused as too large.
 */
import { ParseError, type ByteReader, type Bytes } from '@custody/core';

export const MAX_VARINT = 2 ** 62 - 1;

/** Number of bytes the minimal encoding of `v` takes. */
export function varintSize(v: number): 1 | 2 | 4 | 8 {
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x40000000) return 4;
  return 8;
}

/** Writes the minimal encoding of `v` into `out` at `offset`; returns the new offset. */
export function writeVarint(out: Uint8Array, offset: number, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new ParseError('ERR_INPUT_MALFORMED', 'varint out of range', { detail: { value: String(v) } });
  const n = varintSize(v);
  switch (n) {
    case 1:
      out[offset] = v;
      break;
    case 2:
      out[offset] = 0x40 | (v >>> 8);
      out[offset + 1] = v & 0xff;
      break;
    case 4:
      out[offset] = 0x80 | (v >>> 24);
      out[offset + 1] = (v >>> 16) & 0xff;
      out[offset + 2] = (v >>> 8) & 0xff;
      out[offset + 3] = v & 0xff;
      break;
    case 8: {
      const hi = Math.floor(v / 2 ** 32);
      const lo = v >>> 0;
      out[offset] = 0xc0 | (hi >>> 24);
      out[offset + 1] = (hi >>> 16) & 0xff;
      out[offset + 2] = (hi >>> 8) & 0xff;
      out[offset + 3] = hi & 0xff;
      out[offset + 4] = lo >>> 24;
      out[offset + 5] = (lo >>> 16) & 0xff;
      out[offset + 6] = (lo >>> 8) & 0xff;
      out[offset + 7] = lo & 0xff;
      break;
    }
  }
  return offset + n;
}

export function encodeVarint(v: number): Bytes {
  const out = new Uint8Array(varintSize(v));
  writeVarint(out, 0, v);
  return out;
}

/** Length in bytes of the varint whose first byte is `first`. */
export function varintLength(first: number): 1 | 2 | 4 | 8 {
  return (1 << (first >> 6)) as 1 | 2 | 4 | 8;
}

/** Decodes a varint from exactly its 1, 2, 4 or 8 bytes. Non-minimal encodings are accepted. */
export function decodeVarintBytes(b: Uint8Array): number {
  let v = b[0]! & 0x3f;
  for (let i = 1; i < b.length; i++) v = v * 256 + b[i]!;
  if (!Number.isSafeInteger(v)) throw new ParseError('ERR_INPUT_TOO_LARGE', 'varint exceeds 2^53 - 1');
  return v;
}

export function readVarint(r: ByteReader): number {
  const first = r.bytesView(1)[0]!;
  const n = varintLength(first);
  if (n === 1) return first & 0x3f;
  r.seek(r.offset - 1);
  return decodeVarintBytes(r.bytesView(n));
}
