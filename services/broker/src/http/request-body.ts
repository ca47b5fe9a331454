import type { IncomingMessage } from 'node:http';
import type { Context, MiddlewareHandler } from 'hono';
import { BodyBudget, CustodyError, readBodyLimited, type ByteBudget } from '@custody/core';

/**
 * Bytes of request bodies the broker holds while they arrive, all requests together, by default:
 * sixteen attestation bodies of the largest size (MAX_ATTEST_BODY). Real ones are far smaller
 * (tens of KiB; some 2 MiB with eight GPUs), so this binds only many slow senders at once.
 */
export const BODY_BUDGET_BYTES = 64 * 1024 * 1024;

/**
 * Bytes of challenge and key-release bodies (at most 16 KiB each) held while they arrive, apart
 * from BODY_BUDGET_BYTES: a few senders holding 4 MiB attestation bodies open must not keep
 * every gateway from having its key released. 512 such bodies at once.
 */
export const SMALL_BODY_BUDGET_BYTES = 8 * 1024 * 1024;

/**
 * The broker's budget of request bodies still arriving (core's BodyBudget): a body that would
 * cross it is refused with 503 ERR_SERVICE_UNAVAILABLE (retry later).
 */
export function requestBodyBudget(maxBytes: number): BodyBudget {
  return new BodyBudget(maxBytes, () => new CustodyError('ERR_SERVICE_UNAVAILABLE', 'the broker holds as many arriving request bodies as it allows; retry later', { detail: { bound: 'arriving-bodies' } }));
}

/**
 * The request body as text, at most `maxBytes` (ERR_INPUT_TOO_LARGE, refused by its
 * Content-Length before reading when it declares one), its bytes counted against `budget` while
 * they arrive. A body that stops before its end (the client hung up, or the server's request
 * timeout cut it) is the client's doing: ERR_INPUT_TRUNCATED (400), not an internal error.
 */
export async function readRequestText(c: Context, maxBytes: number, budget?: ByteBudget): Promise<string> {
  let bytes: Uint8Array;
  try {
    bytes = await readBodyLimited(c.req.raw, maxBytes, 'request body', budget);
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    throw new CustodyError('ERR_INPUT_TRUNCATED', 'the request body was broken off', { cause: e });
  }
  // Held from here only by the handler, whose work the body's size bounds.
  budget?.give(bytes.length);
  return new TextDecoder().decode(bytes);
}

/** How long a connection answered before its request body arrived keeps reading (and discarding) it before it is closed. */
export const EARLY_ANSWER_LINGER_MS = 2000;

/**
 * An answer given before the request's body arrived in full (a refusal by size, media type or
 * credentials, an overload) is sent with `Connection: close`: the client learns that the
 * connection ends instead of sending its next request on it. node:http would then close the
 * socket as soon as the answer is written, and a close with the client's body still arriving
 * sends a reset, which can discard the answer before the client read it. So the close lingers
 * (as the ledger's `endWhole` does): the answer, then FIN, while what still comes is read and
 * discarded, for at most `lingerMs`; the socket is destroyed then, or when the client closes.
 * Outside @hono/node-server (app.request in tests) there is no socket: nothing to do.
 */
export function closeAfterEarlyAnswer(lingerMs = EARLY_ANSWER_LINGER_MS): MiddlewareHandler {
  return async (c, next) => {
    await next();
    const incoming = nodeIncoming(c);
    if (!incoming || incoming.complete || !declaresBody(incoming)) return;
    // Answers can be ready before node:http parsed the rest of the bytes already read (a small
    // body in the head's packet): let it, so that such a body keeps its connection.
    await new Promise((resolve) => setImmediate(resolve));
    if (incoming.complete || incoming.socket.destroyed) return;
    try {
      c.res.headers.set('connection', 'close');
    } catch {
      // Immutable headers (a response passed through): copy it.
      c.res = new Response(c.res.body, c.res);
      c.res.headers.set('connection', 'close');
    }
    const socket = incoming.socket;
    socket.destroySoon = function lingeringClose(this: typeof socket): void {
      if (this.writable) this.end();
    };
    const timer = setTimeout(() => socket.destroy(), lingerMs);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  };
}

/** Whether a request has a body at all (chunked, or a Content-Length above 0). */
function declaresBody(incoming: IncomingMessage): boolean {
  const length = incoming.headers['content-length'];
  return incoming.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** The node:http request under a Hono context served by @hono/node-server (HTTP/1.1). */
function nodeIncoming(c: Context): IncomingMessage | undefined {
  const env = c.env as { incoming?: unknown } | undefined;
  const incoming = env?.incoming as IncomingMessage | undefined;
  return incoming && typeof incoming.complete === 'boolean' && incoming.socket ? incoming : undefined;
}
