import type { Bytes } from '../bytes.js';

/** Map keys this decoder accepts: integers and text strings (what COSE, CWT and NSM use). */
export type CborKey = number | bigint | string;

/** A CBOR map in the order its entries appeared (the encoder sorts them). */
export type CborMap = Map<CborKey, CborValue>;

/**
 * A decoded CBOR data item (RFC 8949). Integers are `number` when they are safe JavaScript
 * integers and `bigint` otherwise; floats are wrapped in `CborFloat` so `1` and `1.0` never
 * pass for one another; byte strings are `Uint8Array` copies.
 */
export type CborValue =
  | number
  | bigint
  | string
  | Bytes
  | boolean
  | null
  | undefined
  | CborValue[]
  | CborMap
  | CborTag
  | CborFloat
  | CborSimple;

/** A tagged data item (major type 6), kept as is: the decoder interprets no tag. */
export class CborTag {
  constructor(
    readonly tag: number | bigint,
    readonly value: CborValue,
  ) {}
}

/** A floating-point value (major type 7, half, single or double precision). */
export class CborFloat {
  constructor(readonly value: number) {}
}

/** A simple value other than false, true, null and undefined (0..19, 32..255). */
export class CborSimple {
  constructor(readonly value: number) {
    if (!Number.isInteger(value) || value < 0 || value > 255 || (value >= 20 && value < 32)) {
      throw new RangeError('simple value must be 0..19 or 32..255');
    }
  }
}

export interface CborDecodeOptions {
  /** Largest input accepted, checked before decoding (default 1 MiB). */
  maxSize?: number;
  /** Deepest nesting of arrays, maps and tags (default 32). */
  maxDepth?: number;
  /** Most data items in total, map keys and values counted separately (default 65536). */
  maxItems?: number;
  /** Accept indefinite-length strings, arrays and maps (default false: reject them). */
  allowIndefinite?: boolean;
  /**
   * Require core deterministic encoding (RFC 8949 §4.2.1): shortest arguments, preferred float
   * widths, definite lengths and map keys sorted by their encoded bytes (default false).
   */
  deterministic?: boolean;
}

/** A short name of a value's CBOR type, for error details. */
export function cborTypeName(v: CborValue): string {
  if (v === null) return 'null';
  if (v === undefined) return 'undefined';
  if (typeof v === 'number' || typeof v === 'bigint') return 'integer';
  if (typeof v === 'string') return 'text';
  if (typeof v === 'boolean') return 'boolean';
  if (v instanceof Uint8Array) return 'bytes';
  if (Array.isArray(v)) return 'array';
  if (v instanceof Map) return 'map';
  if (v instanceof CborTag) return 'tag';
  if (v instanceof CborFloat) return 'float';
  return 'simple';
}
