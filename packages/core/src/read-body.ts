import { ParseError } from './errors.js';
import { joinBytes, type Bytes } from './bytes.js';

/** A fetch `Response` or `Request`: anything with headers and a body stream. */
export interface BodySource {
  readonly headers: { get(name: string): string | null };
  readonly body: ReadableStream<Uint8Array> | null;
}

function tooLarge(what: string, max: number, detail: Record<string, unknown> = {}): ParseError {
  return new ParseError('ERR_INPUT_TOO_LARGE', `${what} is too large`, { detail: { max, ...detail } });
}

/** Bytes shared by the bodies a server holds at once (BodyBudget). */
export interface ByteBudget {
  /** Counts `n` more bytes held; false (nothing counted) when that would cross the budget. */
  take(n: number): boolean;
  give(n: number): void;
  /** The error a body that would cross the budget fails with. */
  refusal(): Error;
}

/**
 * How many bytes of request bodies a server holds while they arrive, across all its requests:
 * one slow sender cannot pin more than its own body, and many cannot pin more than this. A body
 * that would cross it is refused with `refusal()`; its bytes are given back once it is read,
 * refused or broken off.
 */
export class BodyBudget implements ByteBudget {
  private used = 0;

  constructor(
    readonly maxBytes: number,
    readonly refusal: () => Error,
  ) {}

  /** Bytes held now by bodies still arriving. */
  get inUse(): number {
    return this.used;
  }

  take(n: number): boolean {
    if (this.used + n > this.maxBytes) return false;
    this.used += n;
    return true;
  }

  give(n: number): void {
    this.used -= n;
  }
}

/**
 * Reads a body of at most `max` bytes: a declared Content-Length above `max` is refused before
 * reading, and the stream is cancelled as soon as more than `max` bytes arrived, so a peer can
 * never make us buffer more than `max` (plus one chunk). Browser-safe (Web streams only).
 * Throws ERR_INPUT_TOO_LARGE; errors of the stream itself propagate as they are.
 *
 * With a `budget`, each chunk is counted against it as it arrives, and a chunk that would cross
 * it fails the read with `budget.refusal()`. A read that fails gives its bytes back; a body
 * returned is still counted, and the caller gives its length back once it no longer holds it.
 */
export async function readBodyLimited(source: BodySource, max: number, what = 'body', budget?: ByteBudget): Promise<Bytes> {
  const declared = source.headers.get('content-length');
  if (declared !== null && /^[0-9]+$/.test(declared.trim()) && Number(declared.trim()) > max) {
    await source.body?.cancel().catch(() => undefined);
    throw tooLarge(what, max, { declared: Number(declared.trim()) });
  }
  if (!source.body) return new Uint8Array(0);
  const reader = source.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      if (n + value.length > max) {
        await reader.cancel().catch(() => undefined);
        throw tooLarge(what, max);
      }
      if (budget && !budget.take(value.length)) {
        await reader.cancel().catch(() => undefined);
        throw budget.refusal();
      }
      n += value.length;
      parts.push(value);
    }
  } catch (e) {
    budget?.give(n);
    throw e;
  } finally {
    reader.releaseLock();
  }
  return joinBytes(parts, n);
}
