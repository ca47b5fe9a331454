/**
 * GGUF header reader (ggml's model file format, versions 2 and 3), to check a model file and
 * describe it before an engine loads it:
 *
 *   magic "GGUF" | version u32 | tensor_count u64 | kv_count u64 | kv* | tensor infos ...
 *   kv     = key: string | type: u32 | value
 *   string = len: u64 | UTF-8 bytes
 *   types  0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool, 8 string,
 *          9 array (elem type u32 | count u64 | elems), 10 u64, 11 i64, 12 f64   (little-endian)
 *
 * Untrusted input: every length is bounded before use; arrays are summarised (type and length,
 * and the first few scalar values) rather than kept.
 */
import { ByteReader, CustodyError, fromUtf8, isCustodyError, joinBytes } from '@custody/core';

export const GGUF_MAGIC = 0x46554747; // "GGUF" little-endian
const MAX_KV = 65536;
const MAX_STRING = 16 * 1024 * 1024;
const MAX_KEY = 65536;
const MAX_ARRAY = 16 * 1024 * 1024;
const MAX_TENSORS = 1 << 20;
const KEEP_ARRAY = 8;

export type GgufScalar = number | bigint | boolean | string;
export type GgufValue = GgufScalar | { arrayType: number; length: number; head: GgufScalar[] };

export interface GgufHeader {
  version: number;
  tensorCount: number;
  metadata: Record<string, GgufValue>;
  /** `general.architecture` (e.g. llama), when present. */
  architecture?: string;
  /** `general.name`, when present. */
  name?: string;
  /** Bytes the header's key-value section took (from the start of the file). */
  headerBytes: number;
}

function bad(why: string, cause?: unknown): CustodyError {
  return new CustodyError('ERR_GATEWAY_MODEL_FILE', `GGUF: ${why}`, cause === undefined ? {} : { cause, detail: { reason: isCustodyError(cause) ? cause.code : 'invalid' } });
}

function count(v: bigint, max: number, what: string): number {
  if (v > BigInt(max)) throw bad(`${what} ${v} exceeds ${max}`);
  return Number(v);
}

function readString(r: ByteReader, max: number): string {
  const n = count(r.u64le(), max, 'string length');
  return fromUtf8(r.bytesView(n));
}

function readScalar(r: ByteReader, type: number): GgufScalar {
  switch (type) {
    case 0:
      return r.u8();
    case 1:
      return (r.u8() << 24) >> 24;
    case 2:
      return r.u16le();
    case 3:
      return (r.u16le() << 16) >> 16;
    case 4:
      return r.u32le();
    case 5:
      return r.u32le() | 0;
    case 6: {
      const b = r.bytesView(4);
      return new DataView(b.buffer, b.byteOffset, 4).getFloat32(0, true);
    }
    case 7: {
      const v = r.u8();
      if (v > 1) throw bad('bool is neither 0 nor 1');
      return v === 1;
    }
    case 8:
      return readString(r, MAX_STRING);
    case 10:
      return r.u64le();
    case 11:
      return BigInt.asIntN(64, r.u64le());
    case 12: {
      const b = r.bytesView(8);
      return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, true);
    }
    default:
      throw bad(`unknown value type ${type}`);
  }
}

const SCALAR_SIZE: Record<number, number> = { 0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8 };

function readValue(r: ByteReader, type: number, depth: number): GgufValue {
  if (type !== 9) return readScalar(r, type);
  if (depth > 0) throw bad('nested arrays are not supported');
  const arrayType = r.u32le();
  const length = count(r.u64le(), MAX_ARRAY, 'array length');
  const head: GgufScalar[] = [];
  const size = SCALAR_SIZE[arrayType];
  if (size !== undefined) {
    // Fixed-size elements: bound the whole array before touching it.
    if (length * size > r.remaining) throw bad('array runs past the end of the data');
    for (let i = 0; i < length; i++) {
      if (i < KEEP_ARRAY) head.push(readScalar(r, arrayType));
      else {
        r.skip((length - i) * size);
        break;
      }
    }
  } else if (arrayType === 8) {
    for (let i = 0; i < length; i++) {
      const n = count(r.u64le(), MAX_STRING, 'string length');
      const b = r.bytesView(n);
      if (i < KEEP_ARRAY) head.push(fromUtf8(b));
    }
  } else {
    throw bad(`unsupported array element type ${arrayType}`);
  }
  return { arrayType, length, head };
}

/** Parses the header and metadata of a GGUF file (the leading bytes suffice). ERR_GATEWAY_MODEL_FILE. */
export function parseGgufHeader(bytes: Uint8Array): GgufHeader {
  try {
    const r = new ByteReader(bytes, 'GGUF header');
    if (r.u32le() !== GGUF_MAGIC) throw bad('not a GGUF file (magic)');
    const version = r.u32le();
    if (version !== 2 && version !== 3) throw bad(`unsupported version ${version}`);
    const tensorCount = count(r.u64le(), MAX_TENSORS, 'tensor count');
    const kvCount = count(r.u64le(), MAX_KV, 'metadata count');
    const metadata: Record<string, GgufValue> = Object.create(null) as Record<string, GgufValue>;
    for (let i = 0; i < kvCount; i++) {
      const key = readString(r, MAX_KEY);
      if (key.length === 0) throw bad('empty metadata key');
      if (Object.hasOwn(metadata, key)) throw bad('duplicate metadata key');
      metadata[key] = readValue(r, r.u32le(), 0);
    }
    const arch = metadata['general.architecture'];
    const name = metadata['general.name'];
    return {
      version,
      tensorCount,
      metadata,
      ...(typeof arch === 'string' ? { architecture: arch } : {}),
      ...(typeof name === 'string' ? { name } : {}),
      headerBytes: r.offset,
    };
  } catch (e) {
    if (isCustodyError(e) && e.code === 'ERR_GATEWAY_MODEL_FILE') throw e;
    throw bad(isCustodyError(e) && e.code === 'ERR_INPUT_TRUNCATED' ? 'the file ends inside its header' : 'malformed header', e);
  }
}

/** Writes a GGUF v3 header with metadata only (tests and tooling; no tensors). */
export function encodeGgufMetadata(metadata: Record<string, string | number | boolean | bigint | string[]>, tensorCount = 0): Uint8Array {
  const parts: Uint8Array[] = [];
  const u32 = (v: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    parts.push(b);
  };
  const u64 = (v: bigint | number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(v), true);
    parts.push(b);
  };
  const str = (s: string) => {
    const b = new TextEncoder().encode(s);
    u64(b.length);
    parts.push(b);
  };
  u32(GGUF_MAGIC);
  u32(3);
  u64(tensorCount);
  u64(Object.keys(metadata).length);
  for (const [k, v] of Object.entries(metadata)) {
    str(k);
    if (typeof v === 'string') {
      u32(8);
      str(v);
    } else if (typeof v === 'boolean') {
      u32(7);
      parts.push(new Uint8Array([v ? 1 : 0]));
    } else if (typeof v === 'bigint') {
      u32(10);
      u64(v);
    } else if (typeof v === 'number') {
      u32(4);
      u32(v >>> 0);
    } else {
      u32(9);
      u32(8);
      u64(v.length);
      for (const s of v) str(s);
    }
  }
  return joinBytes(parts);
}
