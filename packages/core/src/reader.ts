import { ParseError } from './errors.js';
import type { Bytes } from './bytes.js';

/**
 * Bounds-checked cursor over untrusted bytes. Every read checks the remaining length first,
 * so a truncated or lying length field gives ERR_INPUT_TRUNCATED, never an out-of-range read.
 */
export class ByteReader {
  private pos: number;
  private readonly view: DataView;

  constructor(
    readonly bytes: Uint8Array,
    private readonly what = 'input',
    offset = 0,
  ) {
    this.pos = offset;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.bytes.length - this.pos;
  }

  private need(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.remaining) {
      throw new ParseError('ERR_INPUT_TRUNCATED', `${this.what} truncated`, {
        detail: { offset: this.pos, needed: n, remaining: this.remaining },
      });
    }
  }

  u8(): number {
    this.need(1);
    return this.view.getUint8(this.pos++);
  }

  u16le(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, true);
    this.pos += 2;
    return v;
  }

  u16be(): number {
    this.need(2);
    const v = this.view.getUint16(this.pos, false);
    this.pos += 2;
    return v;
  }

  u32le(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  u32be(): number {
    this.need(4);
    const v = this.view.getUint32(this.pos, false);
    this.pos += 4;
    return v;
  }

  u64le(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  u64be(): bigint {
    this.need(8);
    const v = this.view.getBigUint64(this.pos, false);
    this.pos += 8;
    return v;
  }

  /** A view (no copy) of the next n bytes. */
  bytesView(n: number): Bytes {
    this.need(n);
    const out = this.bytes.subarray(this.pos, this.pos + n) as Bytes;
    this.pos += n;
    return out;
  }

  /** A copy of the next n bytes. */
  take(n: number): Bytes {
    return this.bytesView(n).slice();
  }

  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }

  seek(offset: number): void {
    if (offset < 0 || offset > this.bytes.length) {
      throw new ParseError('ERR_INPUT_TRUNCATED', `${this.what} truncated`, { detail: { offset } });
    }
    this.pos = offset;
  }

  /** Fails unless every byte has been consumed. */
  end(): void {
    if (this.remaining !== 0) {
      throw new ParseError('ERR_INPUT_MALFORMED', `${this.what} has trailing bytes`, { detail: { trailing: this.remaining } });
    }
  }
}

/** Rejects input over `max` bytes before any parsing or allocation happens. */
export function assertMaxSize(b: Uint8Array, max: number, what: string): void {
  if (b.length > max) {
    throw new ParseError('ERR_INPUT_TOO_LARGE', `${what} is larger than ${max} bytes`, { detail: { size: b.length, max } });
  }
}
