import { concatBytes, type Bytes } from '../bytes.js';
import { ParseError } from '../errors.js';
import { assertMaxSize, ByteReader } from '../reader.js';
import { decodeFloat16, encodeFloat16Exact } from './float.js';
import { CborFloat, CborSimple, CborTag, type CborDecodeOptions, type CborMap, type CborValue } from './types.js';

export const CBOR_DEFAULT_MAX_SIZE = 1024 * 1024;
export const CBOR_DEFAULT_MAX_DEPTH = 32;
export const CBOR_DEFAULT_MAX_ITEMS = 65536;

const BREAK = 0xff;
const INDEFINITE = 31;

/**
 * Decodes exactly one CBOR data item (RFC 8949) from untrusted bytes. Well-formedness and
 * validity are enforced: reserved additional-information values, stray break codes,
 * two-byte simple values below 32, invalid UTF-8 and duplicate map keys are all rejected,
 * as are trailing bytes. Sizes, nesting depth and the number of items are bounded, and every
 * length is checked against the remaining input before anything is allocated.
 */
export function decodeCbor(input: Uint8Array, options: CborDecodeOptions = {}): CborValue {
  assertMaxSize(input, options.maxSize ?? CBOR_DEFAULT_MAX_SIZE, 'CBOR item');
  const d = new Decoder(input, options);
  const value = d.item(0);
  d.reader.end();
  return value;
}

interface Head {
  major: number;
  ai: number;
  arg: number | bigint;
}

class Decoder {
  readonly reader: ByteReader;
  private items = 0;
  private readonly maxDepth: number;
  private readonly maxItems: number;
  private readonly allowIndefinite: boolean;
  private readonly deterministic: boolean;
  private readonly floatView = new DataView(new ArrayBuffer(8));

  constructor(
    readonly input: Uint8Array,
    o: CborDecodeOptions,
  ) {
    this.reader = new ByteReader(input, 'CBOR item');
    this.maxDepth = o.maxDepth ?? CBOR_DEFAULT_MAX_DEPTH;
    this.maxItems = o.maxItems ?? CBOR_DEFAULT_MAX_ITEMS;
    this.allowIndefinite = o.allowIndefinite ?? false;
    this.deterministic = o.deterministic ?? false;
  }

  item(depth: number): CborValue {
    if (depth > this.maxDepth) throw limit('CBOR nesting is deeper than allowed', { maxDepth: this.maxDepth });
    if (++this.items > this.maxItems) throw limit('CBOR input has more items than allowed', { maxItems: this.maxItems });
    const start = this.reader.offset;
    const h = this.head();
    switch (h.major) {
      case 0:
        return h.arg;
      case 1:
        return typeof h.arg === 'number' && h.arg < Number.MAX_SAFE_INTEGER ? -1 - h.arg : -1n - BigInt(h.arg);
      case 2:
        return h.ai === INDEFINITE ? this.indefiniteString(2) : this.reader.take(this.length(h.arg, 1));
      case 3:
        return h.ai === INDEFINITE ? text(this.indefiniteString(3)) : text(this.reader.bytesView(this.length(h.arg, 1)));
      case 4:
        return this.array(h, depth, start);
      case 5:
        return this.map(h, depth, start);
      case 6:
        return new CborTag(h.arg, this.item(depth + 1));
      default:
        return this.simpleOrFloat(h, start);
    }
  }

  /** Reads an initial byte and its argument; for ai 31 the argument is -1. */
  private head(): Head {
    const ib = this.reader.u8();
    const major = ib >> 5;
    const ai = ib & 0x1f;
    if (ai < 24) return { major, ai, arg: ai };
    if (ai === INDEFINITE) {
      if (major === 7) throw malformed('break code outside an indefinite-length item', this.reader.offset - 1);
      if (major === 0 || major === 1 || major === 6) throw malformed('indefinite length on a type that has none', this.reader.offset - 1);
      if (!this.allowIndefinite) {
        throw new ParseError('ERR_CBOR_INDEFINITE_LENGTH', 'CBOR indefinite-length item is not accepted here', { detail: { offset: this.reader.offset - 1 } });
      }
      if (this.deterministic) throw notDeterministic('indefinite length', this.reader.offset - 1);
      return { major, ai, arg: -1 };
    }
    if (ai > 27) throw malformed(`reserved additional information ${ai}`, this.reader.offset - 1);
    if (major === 7) return { major, ai, arg: -1 }; // floats and simple(24) read their own payload
    let arg: number | bigint;
    if (ai === 24) arg = this.reader.u8();
    else if (ai === 25) arg = this.reader.u16be();
    else if (ai === 26) arg = this.reader.u32be();
    else {
      const big = this.reader.u64be();
      arg = big <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(big) : big;
    }
    if (this.deterministic) {
      const min = ai === 24 ? 24 : ai === 25 ? 0x100 : ai === 26 ? 0x10000 : 0x100000000;
      if (arg < min) throw notDeterministic('argument not in its shortest form', this.reader.offset);
    }
    return { major, ai, arg };
  }

  /** A definite length as a number no larger than the input can possibly hold. */
  private length(arg: number | bigint, minBytesPerUnit: number): number {
    if (typeof arg === 'bigint' || arg * minBytesPerUnit > this.reader.remaining) {
      throw new ParseError('ERR_INPUT_TRUNCATED', 'CBOR length exceeds the remaining input', {
        detail: { offset: this.reader.offset, declared: String(arg), remaining: this.reader.remaining },
      });
    }
    return arg;
  }

  private indefiniteString(major: 2 | 3): Bytes {
    const chunks: Bytes[] = [];
    for (;;) {
      if (this.atBreak()) break;
      if (++this.items > this.maxItems) throw limit('CBOR input has more items than allowed', { maxItems: this.maxItems });
      const at = this.reader.offset;
      const h = this.head();
      if (h.major !== major || h.ai === INDEFINITE) throw malformed('indefinite-length string chunk of the wrong type', at);
      const chunk = this.reader.take(this.length(h.arg, 1));
      if (major === 3) text(chunk); // each chunk must be valid UTF-8 on its own
      chunks.push(chunk);
    }
    return concatBytes(...chunks);
  }

  private atBreak(): boolean {
    if (this.reader.remaining === 0) throw new ParseError('ERR_INPUT_TRUNCATED', 'CBOR indefinite-length item has no break', { detail: { offset: this.reader.offset } });
    if (this.input[this.reader.offset] !== BREAK) return false;
    this.reader.skip(1);
    return true;
  }

  private array(h: Head, depth: number, start: number): CborValue[] {
    const out: CborValue[] = [];
    if (h.ai === INDEFINITE) {
      while (!this.atBreak()) out.push(this.item(depth + 1));
      return out;
    }
    const n = this.length(h.arg, 1);
    this.checkItemBudget(n, start);
    for (let i = 0; i < n; i++) out.push(this.item(depth + 1));
    return out;
  }

  private map(h: Head, depth: number, start: number): CborMap {
    const out: CborMap = new Map();
    const indefinite = h.ai === INDEFINITE;
    const n = indefinite ? Infinity : this.length(h.arg, 2);
    if (!indefinite) this.checkItemBudget(2 * n, start);
    let prevKey: Bytes | undefined;
    for (let i = 0; i < n; i++) {
      if (indefinite && this.atBreak()) break;
      const keyStart = this.reader.offset;
      const key = this.item(depth + 1);
      if (typeof key !== 'number' && typeof key !== 'bigint' && typeof key !== 'string') {
        throw new ParseError('ERR_INPUT_UNSUPPORTED', 'CBOR map key is not an integer or text string', { detail: { offset: keyStart } });
      }
      if (out.has(key)) throw new ParseError('ERR_CBOR_DUPLICATE_KEY', 'CBOR map holds the same key twice', { detail: { offset: keyStart } });
      if (this.deterministic) {
        const keyBytes = this.input.subarray(keyStart, this.reader.offset) as Bytes;
        if (prevKey && compareBytes(prevKey, keyBytes) >= 0) throw notDeterministic('map keys not in bytewise order', keyStart);
        prevKey = keyBytes;
      }
      out.set(key, this.item(depth + 1));
    }
    return out;
  }

  /** Rejects a container that declares more items than the item budget allows, before reading it. */
  private checkItemBudget(n: number, start: number): void {
    if (this.items + n > this.maxItems) throw limit('CBOR input has more items than allowed', { maxItems: this.maxItems, offset: start });
  }

  private simpleOrFloat(h: Head, start: number): CborValue {
    const r = this.reader;
    const v = this.floatView;
    switch (h.ai) {
      case 20:
        return false;
      case 21:
        return true;
      case 22:
        return null;
      case 23:
        return undefined;
      case 24: {
        const s = r.u8();
        if (s < 32) throw malformed('two-byte simple value below 32', start);
        return new CborSimple(s);
      }
      case 25: {
        const bits = r.u16be();
        const f = decodeFloat16(bits);
        if (this.deterministic && Number.isNaN(f) && bits !== 0x7e00) throw notDeterministic('NaN not encoded as 0xf97e00', start);
        return new CborFloat(f);
      }
      case 26: {
        v.setUint32(0, r.u32be());
        const f = v.getFloat32(0);
        if (this.deterministic && encodeFloat16Exact(f) !== undefined) throw notDeterministic('float32 that fits a float16', start);
        return new CborFloat(f);
      }
      case 27: {
        v.setBigUint64(0, r.u64be());
        const f = v.getFloat64(0);
        if (this.deterministic && (Number.isNaN(f) || Math.fround(f) === f)) throw notDeterministic('float64 that fits a shorter float', start);
        return new CborFloat(f);
      }
      default:
        return new CborSimple(h.ai); // 0..19
    }
  }
}

// ignoreBOM: a leading U+FEFF is content in CBOR, not a byte-order mark to strip.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function text(b: Uint8Array): string {
  try {
    return utf8Decoder.decode(b);
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'CBOR text string is not valid UTF-8', { cause: e });
  }
}

export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function malformed(what: string, offset: number): ParseError {
  return new ParseError('ERR_INPUT_MALFORMED', `CBOR not well-formed: ${what}`, { detail: { offset } });
}

function notDeterministic(what: string, offset: number): ParseError {
  return new ParseError('ERR_CBOR_NOT_DETERMINISTIC', `CBOR not in deterministic encoding: ${what}`, { detail: { offset } });
}

function limit(what: string, detail: Record<string, number>): ParseError {
  return new ParseError('ERR_INPUT_TOO_LARGE', what, { detail });
}
