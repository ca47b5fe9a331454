import type { IncomingMessage, ServerResponse } from 'node:http';
import { BodyBudget, CustodyError, joinBytes, type Bytes } from '@custody/core';

/** Re-exported for the services that took it from here. */
export { BodyBudget };

/**
 * Node-side HTTP helpers shared by the services that answer their hot route straight from
 * node:http and the rest through a Hono app (the ledger's `POST /events`, the gateway's
 * `POST /ohttp`).
 */

/** Takes a request before the app sees it; returns whether it did. */
export type NodeIntercept = (req: IncomingMessage, res: ServerResponse) => boolean;

/**
 * A node:http request body in one buffer, bounded: refused up front by its Content-Length, then
 * by what arrives (ERR_INPUT_TOO_LARGE); a body the client breaks off is ERR_INPUT_MALFORMED.
 * With a `budget`, the bytes held while the body arrives count against it (its refusal when it
 * is spent). A body that came in one chunk is returned without a copy.
 */
export function readNodeBody(req: IncomingMessage, max: number, budget?: BodyBudget): Promise<Bytes> {
  const tooLarge = () => new CustodyError('ERR_INPUT_TOO_LARGE', 'request body is larger than allowed', { detail: { max } });
  const declared = req.headers['content-length'];
  if (declared !== undefined && /^[0-9]{1,15}$/.test(declared) && Number(declared) > max) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    let failed = false;
    /** Bytes taken from the budget and not yet given back. */
    let held = 0;
    const release = () => {
      budget?.give(held);
      held = 0;
    };
    req.on('data', (chunk: Buffer) => {
      if (failed) return;
      size += chunk.length;
      if (size > max) {
        failed = true;
        release();
        reject(tooLarge());
      } else if (budget && !budget.take(chunk.length)) {
        failed = true;
        release();
        parts.length = 0;
        reject(budget.refusal());
      } else {
        held += budget ? chunk.length : 0;
        parts.push(chunk);
      }
    });
    req.once('end', () => {
      release();
      if (failed) return;
      const only = parts.length === 1 ? parts[0]! : undefined;
      resolve(only ? new Uint8Array(only.buffer as ArrayBuffer, only.byteOffset, only.byteLength) : joinBytes(parts, size));
      // The listeners keep `parts` reachable as long as the request object lives: let the pieces go.
      parts.length = 0;
    });
    req.once('error', (e) => {
      release();
      parts.length = 0;
      if (!failed) reject(new CustodyError('ERR_INPUT_MALFORMED', 'the request body could not be read', { cause: e }));
      failed = true;
    });
    // A connection closed or timed out before the end: the bytes are not held for a body that will not come.
    req.once('close', () => {
      if (req.complete) return;
      release();
      parts.length = 0;
      if (!failed) reject(new CustodyError('ERR_INPUT_MALFORMED', 'the request body was broken off'));
      failed = true;
    });
  });
}

/** How long, and how much, of a request answered before its body arrived is read before its connection is closed. */
export interface DrainBounds {
  readonly ms: number;
  readonly maxBytes?: number;
}

/**
 * Writes a whole answer (with its Content-Length). An answer given before the request body
 * arrived (a refusal) is sent with `Connection: close`, and the rest of the body is read and
 * discarded for at most `drain.ms` and `drain.maxBytes`, then the connection is closed: a
 * client that keeps sending is cut off, and one that finishes gets to read the answer (closing
 * with unread data would reset the connection first).
 */
export function endWhole(req: IncomingMessage, res: ServerResponse, status: number, headers: Record<string, string>, body: string | Uint8Array, drain: DrainBounds): void {
  const early = !req.complete;
  const socket = req.socket;
  if (early) {
    // node:http closes a `Connection: close` socket as soon as the answer is written
    // (destroySoon). With the client's body still arriving, that close sends a reset, which can
    // discard the answer before the client has read it. Instead, a lingering close: the answer,
    // then FIN (the client reads to the end), while what still comes is read and discarded
    // within the bounds below; the socket is destroyed when the client closes its side too, or
    // at the first bound reached.
    socket.destroySoon = function lingeringClose(this: typeof socket): void {
      if (this.writable) this.end();
    };
  }
  res.writeHead(status, { ...headers, 'content-length': String(typeof body === 'string' ? Buffer.byteLength(body) : body.length), ...(early ? { connection: 'close' } : {}) });
  res.end(body);
  if (!early) return;
  let seen = 0;
  const stop = () => socket.destroy();
  // Also after the body's end: a client that never closes its side is closed at the time bound.
  const timer = setTimeout(stop, drain.ms);
  timer.unref();
  socket.once('close', () => clearTimeout(timer));
  req.on('data', (chunk: Buffer) => {
    seen += chunk.length;
    if (drain.maxBytes !== undefined && seen > drain.maxBytes) stop();
  });
  req.once('error', stop);
  req.resume();
}
