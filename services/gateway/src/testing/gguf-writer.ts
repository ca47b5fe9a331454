/**
 * A GGUF v3 writer (ggml's model file format), for tests and tooling: metadata of every scalar
 * type and arrays of scalars or strings, and F32 tensors, laid out as the format requires:
 *
 *   "GGUF" | version=3 u32 | tensor_count u64 | kv_count u64 | kv* | tensor_info* | pad | data
 *   kv          = key: string | value type: u32 | value
 *   tensor_info = name: string | n_dims u32 | dims u64[n_dims] | ggml type u32 | offset u64
 *
 * Everything is little-endian. Tensor data starts at the first multiple of `general.alignment`
 * (32 when the key is absent) after the tensor infos; each tensor's offset is relative to that
 * start and is itself a multiple of the alignment, the gaps filled with zero bytes. Dimensions
 * are listed innermost first (ggml's ne[0] is the length of one row).
 */
import { CustodyError } from '@custody/core';

/** GGUF metadata value types. */
export const GgufType = {
  u8: 0,
  i8: 1,
  u16: 2,
  i16: 3,
  u32: 4,
  i32: 5,
  f32: 6,
  bool: 7,
  string: 8,
  array: 9,
  u64: 10,
  i64: 11,
  f64: 12,
} as const;
export type GgufScalarTypeName = Exclude<keyof typeof GgufType, 'array'>;

export type GgufMetadataValue =
  | { readonly type: Exclude<GgufScalarTypeName, 'string' | 'bool' | 'u64' | 'i64'>; readonly value: number }
  | { readonly type: 'u64' | 'i64'; readonly value: bigint }
  | { readonly type: 'bool'; readonly value: boolean }
  | { readonly type: 'string'; readonly value: string }
  | { readonly type: 'array'; readonly of: 'string'; readonly value: readonly string[] }
  | { readonly type: 'array'; readonly of: Exclude<GgufScalarTypeName, 'string' | 'bool' | 'u64' | 'i64'>; readonly value: ArrayLike<number> };

/** Constructors for typed metadata values. */
export const gguf = {
  u32: (value: number): GgufMetadataValue => ({ type: 'u32', value }),
  i32: (value: number): GgufMetadataValue => ({ type: 'i32', value }),
  f32: (value: number): GgufMetadataValue => ({ type: 'f32', value }),
  u64: (value: bigint | number): GgufMetadataValue => ({ type: 'u64', value: BigInt(value) }),
  bool: (value: boolean): GgufMetadataValue => ({ type: 'bool', value }),
  string: (value: string): GgufMetadataValue => ({ type: 'string', value }),
  strings: (value: readonly string[]): GgufMetadataValue => ({ type: 'array', of: 'string', value }),
  f32s: (value: ArrayLike<number>): GgufMetadataValue => ({ type: 'array', of: 'f32', value }),
  i32s: (value: ArrayLike<number>): GgufMetadataValue => ({ type: 'array', of: 'i32', value }),
};

export interface GgufTensor {
  /** At most 64 bytes (UTF-8). */
  readonly name: string;
  /** Innermost first; 1 to 4 dimensions. */
  readonly dims: readonly number[];
  /** F32 values, `dims` multiplied out. */
  readonly data: Float32Array;
}

export interface GgufFile {
  /** Insertion order is file order. `general.alignment` (u32) sets the alignment when present. */
  readonly metadata: ReadonlyArray<readonly [string, GgufMetadataValue]>;
  readonly tensors: readonly GgufTensor[];
}

const GGML_TYPE_F32 = 0;
const enc = new TextEncoder();

/** Growable little-endian byte sink. */
class Sink {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;

  /** Makes room for n bytes and returns where they start; may replace `buf` and `view`, so callers read them after. */
  private reserve(n: number): number {
    if (this.length + n > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < this.length + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
      this.view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }
  u8(v: number): void {
    const at = this.reserve(1);
    this.view.setUint8(at, v);
  }
  i8(v: number): void {
    const at = this.reserve(1);
    this.view.setInt8(at, v);
  }
  u16(v: number): void {
    const at = this.reserve(2);
    this.view.setUint16(at, v, true);
  }
  i16(v: number): void {
    const at = this.reserve(2);
    this.view.setInt16(at, v, true);
  }
  u32(v: number): void {
    const at = this.reserve(4);
    this.view.setUint32(at, v, true);
  }
  i32(v: number): void {
    const at = this.reserve(4);
    this.view.setInt32(at, v, true);
  }
  u64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigUint64(at, v, true);
  }
  i64(v: bigint): void {
    const at = this.reserve(8);
    this.view.setBigInt64(at, v, true);
  }
  f32(v: number): void {
    const at = this.reserve(4);
    this.view.setFloat32(at, v, true);
  }
  f64(v: number): void {
    const at = this.reserve(8);
    this.view.setFloat64(at, v, true);
  }
  bytes(b: Uint8Array): void {
    const at = this.reserve(b.length); // may replace this.buf
    this.buf.set(b, at);
  }
  string(s: string): void {
    const b = enc.encode(s);
    this.u64(BigInt(b.length));
    this.bytes(b);
  }
  /** Zero bytes up to the next multiple of `alignment`. */
  pad(alignment: number): void {
    this.reserve((alignment - (this.length % alignment)) % alignment); // fresh buffer space is zero
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

function writeNumber(s: Sink, type: Exclude<GgufScalarTypeName, 'string' | 'bool' | 'u64' | 'i64'>, v: number): void {
  switch (type) {
    case 'u8':
      return s.u8(v);
    case 'i8':
      return s.i8(v);
    case 'u16':
      return s.u16(v);
    case 'i16':
      return s.i16(v);
    case 'u32':
      return s.u32(v);
    case 'i32':
      return s.i32(v);
    case 'f32':
      return s.f32(v);
    case 'f64':
      return s.f64(v);
  }
}

function writeValue(s: Sink, v: GgufMetadataValue): void {
  s.u32(GgufType[v.type]);
  switch (v.type) {
    case 'string':
      return s.string(v.value);
    case 'bool':
      return s.u8(v.value ? 1 : 0);
    case 'u64':
      return s.u64(v.value);
    case 'i64':
      return s.i64(v.value);
    case 'array':
      s.u32(GgufType[v.of]);
      s.u64(BigInt(v.value.length));
      if (v.of === 'string') for (const x of v.value) s.string(x);
      else for (let i = 0; i < v.value.length; i++) writeNumber(s, v.of, v.value[i]!);
      return;
    default:
      return writeNumber(s, v.type, v.value);
  }
}

function alignmentOf(metadata: GgufFile['metadata']): number {
  const entry = metadata.find(([k]) => k === 'general.alignment');
  if (!entry) return 32;
  const v = entry[1];
  if (v.type !== 'u32' || v.value <= 0 || v.value % 8 !== 0) throw new CustodyError('ERR_USAGE', 'general.alignment must be a u32 multiple of 8');
  return v.value;
}

/** Encodes a whole GGUF v3 file. */
export function encodeGguf(file: GgufFile): Uint8Array {
  const alignment = alignmentOf(file.metadata);
  const keys = new Set<string>();
  const s = new Sink();
  s.u32(0x46554747); // "GGUF"
  s.u32(3);
  s.u64(BigInt(file.tensors.length));
  s.u64(BigInt(file.metadata.length));
  for (const [key, value] of file.metadata) {
    if (keys.has(key)) throw new CustodyError('ERR_USAGE', `duplicate GGUF metadata key ${key}`);
    keys.add(key);
    s.string(key);
    writeValue(s, value);
  }
  let offset = 0;
  const names = new Set<string>();
  for (const t of file.tensors) {
    const elements = t.dims.reduce((a, b) => a * b, 1);
    if (t.dims.length < 1 || t.dims.length > 4 || elements !== t.data.length) throw new CustodyError('ERR_USAGE', `tensor ${t.name}: dims do not match its data`);
    if (enc.encode(t.name).length > 64 || names.has(t.name)) throw new CustodyError('ERR_USAGE', `tensor ${t.name}: name too long or repeated`);
    names.add(t.name);
    s.string(t.name);
    s.u32(t.dims.length);
    for (const d of t.dims) s.u64(BigInt(d));
    s.u32(GGML_TYPE_F32);
    s.u64(BigInt(offset));
    offset += t.data.length * 4;
    offset += (alignment - (offset % alignment)) % alignment;
  }
  s.pad(alignment);
  for (const t of file.tensors) {
    const bytes = new Uint8Array(t.data.length * 4);
    const dv = new DataView(bytes.buffer);
    for (let i = 0; i < t.data.length; i++) dv.setFloat32(i * 4, t.data[i]!, true);
    s.bytes(bytes);
    s.pad(alignment);
  }
  return s.result();
}
