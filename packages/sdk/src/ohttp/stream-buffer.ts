/**
 * Pull-based reader over a ReadableStream<Uint8Array> for incremental parsers: buffers only
 * what a parse step needs and never more than the caller's bound.
 */
import { ParseError, type Bytes } from '@custody/core';
import { decodeVarintBytes, varintLength } from './varint.js';

export class StreamBuffer {
  private chunks: Uint8Array[] = [];
  private buffered = 0;
  private done = false;

  constructor(private readonly reader: ReadableStreamDefaultReader<Uint8Array>) {}

  get available(): number {
    return this.buffered;
  }

  /** Pulls until at least `n` bytes are buffered; false when the stream ended first. */
  async fill(n: number): Promise<boolean> {
    while (this.buffered < n && !this.done) {
      const { value, done } = await this.reader.read();
      if (done) this.done = true;
      else if (value.length > 0) {
        if (!(value instanceof Uint8Array)) throw new ParseError('ERR_INPUT_MALFORMED', 'stream chunk is not a Uint8Array');
        this.chunks.push(value);
        this.buffered += value.length;
      }
    }
    return this.buffered >= n;
  }

  /** True when no byte is buffered and the stream has ended. */
  async atEnd(): Promise<boolean> {
    return !(await this.fill(1));
  }

  /** Removes and returns exactly `n` buffered bytes (call `fill(n)` first). */
  take(n: number): Bytes {
    if (n > this.buffered) throw new ParseError('ERR_INPUT_TRUNCATED', 'stream ended early', { detail: { needed: n, available: this.buffered } });
    const out = new Uint8Array(n);
    let o = 0;
    while (o < n) {
      const head = this.chunks[0]!;
      const k = Math.min(head.length, n - o);
      out.set(head.subarray(0, k), o);
      o += k;
      if (k === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(k);
    }
    this.buffered -= n;
    return out;
  }

  /** Up to `max` bytes that are available now or after one more pull; null at the end. */
  async takeSome(max: number): Promise<Bytes | null> {
    if (this.buffered === 0 && !(await this.fill(1))) return null;
    return this.take(Math.min(max, this.buffered, this.chunks[0]!.length));
  }

  /** Next varint, or null when the stream ends cleanly before its first byte. */
  async readVarint(): Promise<number | null> {
    if (!(await this.fill(1))) return null;
    const first = this.chunks[0]![0]!;
    const n = varintLength(first);
    if (!(await this.fill(n))) throw new ParseError('ERR_INPUT_TRUNCATED', 'stream ended inside a varint');
    return decodeVarintBytes(this.take(n));
  }

  /** Everything up to the end of the stream, refusing more than `max` bytes. */
  async readToEnd(max: number): Promise<Bytes> {
    while (!this.done) {
      if (this.buffered > max) break;
      await this.fill(this.buffered + 1);
    }
    if (this.buffered > max) throw new ParseError('ERR_INPUT_TOO_LARGE', 'stream tail exceeds its size bound', { detail: { max } });
    return this.take(this.buffered);
  }

  async cancel(reason?: unknown): Promise<void> {
    this.chunks = [];
    this.buffered = 0;
    await this.reader.cancel(reason).catch(() => undefined);
  }

  release(): void {
    this.reader.releaseLock();
  }
}

/** A ReadableStream over one byte array (for callers holding the whole body). */
export function streamOf(...parts: Uint8Array[]): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < parts.length) controller.enqueue(parts[i++]!);
      else controller.close();
    },
  });
}

/**
 * Reads a whole stream into one array, refusing more than `max` bytes. An abort of `signal`
 * cancels the stream and fails the read with the signal's reason (a read cut short by the
 * cancel never passes for the whole stream).
 */
export async function readAll(stream: ReadableStream<Uint8Array>, max = Number.MAX_SAFE_INTEGER, signal?: AbortSignal): Promise<Bytes> {
  const buf = new StreamBuffer(stream.getReader());
  const stop = () => void buf.cancel(signal!.reason);
  signal?.addEventListener('abort', stop, { once: true });
  try {
    signal?.throwIfAborted();
    const all = await buf.readToEnd(max);
    signal?.throwIfAborted();
    return all;
  } catch (e) {
    await buf.cancel(e);
    throw e;
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}
