import type { IncomingMessage, ServerResponse } from 'node:http';
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
 * Divisor of each budget that makes the share one client address may hold at once, by default
 * (ArrivingBodyLimits): filling a budget takes at least this many addresses (IPv6: /64 networks).
 */
export const CLIENT_SHARE_DIVISOR = 8;

/** Bounds on the request bodies held while they arrive; createBrokerApp's options. */
export interface ArrivingBodyLimits {
  /** All clients together: attestations and admin bodies. Default BODY_BUDGET_BYTES. */
  maxArrivingBodyBytes?: number;
  /**
   * One client address (clientAddressKey: an IPv4 address, an IPv6 /64; behind trusted proxies,
   * the forwarded one). Default 1/CLIENT_SHARE_DIVISOR of maxArrivingBodyBytes, at least one
   * attestation body of the largest size (MAX_ATTEST_BODY).
   */
  maxArrivingBodyBytesPerClient?: number;
  /** Challenges and key releases, all clients together. Default SMALL_BODY_BUDGET_BYTES. */
  maxArrivingSmallBodyBytes?: number;
  /** One client address. Default 1/CLIENT_SHARE_DIVISOR of maxArrivingSmallBodyBytes, at least one 16 KiB body. */
  maxArrivingSmallBodyBytesPerClient?: number;
}

/** Which bound refused a body: the budget of all clients, or one client's share of it. */
export type ArrivingBodyBound = 'arriving-bodies' | 'arriving-bodies-per-client';

/** The bytes of one request's body counted against an ArrivingBodyBudget. */
export interface BodyLease extends ByteBudget {
  /** Gives back everything still held; later takes are refused (the request is over). Idempotent. */
  release(): void;
}

/**
 * A budget of request bodies still arriving (core's BodyBudget, all clients together), of which
 * each client address may hold at most `perClientBytes`: a few addresses holding bodies open
 * cannot take it all. A body that would cross either bound is refused with 503
 * ERR_SERVICE_UNAVAILABLE (retry later), `detail.bound` naming it. Requests without a client
 * address (in process) have no share of their own; only the whole budget bounds them.
 */
export class ArrivingBodyBudget {
  private readonly total: BodyBudget;
  private readonly held = new Map<string, number>();

  constructor(
    readonly maxBytes: number,
    readonly perClientBytes: number,
    private readonly onRefused?: (bound: ArrivingBodyBound) => void,
  ) {
    if (!isPositiveInteger(maxBytes) || !isPositiveInteger(perClientBytes)) throw new CustodyError('ERR_USAGE', 'arriving-body budgets and their per-client shares must be whole numbers of bytes, at least 1');
    this.total = new BodyBudget(maxBytes, () => refusal('arriving-bodies'));
  }

  /** Bytes held now by bodies still arriving, all clients together. */
  get inUse(): number {
    return this.total.inUse;
  }

  /** Client addresses holding bytes now. */
  get clients(): number {
    return this.held.size;
  }

  /** Bytes `client` holds now. */
  heldBy(client: string): number {
    return this.held.get(client) ?? 0;
  }

  /** A lease for one request's body from `client` (undefined: no share of its own). */
  lease(client: string | undefined): BodyLease {
    let mine = 0;
    let over = false;
    let refused: ArrivingBodyBound | 'over' = 'arriving-bodies';
    const give = (n: number) => {
      const m = Math.min(n, mine);
      if (!(m > 0)) return;
      mine -= m;
      this.total.give(m);
      if (client === undefined) return;
      const left = this.heldBy(client) - m;
      if (left > 0) this.held.set(client, left);
      else this.held.delete(client);
    };
    return {
      take: (n) => {
        if (over) {
          refused = 'over';
          return false;
        }
        if (client !== undefined && this.heldBy(client) + n > this.perClientBytes) {
          refused = 'arriving-bodies-per-client';
          return false;
        }
        if (!this.total.take(n)) {
          refused = 'arriving-bodies';
          return false;
        }
        mine += n;
        if (client !== undefined) this.held.set(client, this.heldBy(client) + n);
        return true;
      },
      give,
      refusal: () => {
        // A request already over (its answer sent, its connection gone) reads nothing more.
        if (refused === 'over') return new CustodyError('ERR_INPUT_TRUNCATED', 'the request body was broken off');
        this.onRefused?.(refused);
        return refusal(refused);
      },
      release: () => {
        give(mine);
        over = true;
      },
    };
  }
}

function refusal(bound: ArrivingBodyBound): CustodyError {
  const message = bound === 'arriving-bodies' ? 'the broker holds as many arriving request bodies as it allows; retry later' : 'this client address holds as many arriving request bodies as the broker allows one client; retry later';
  return new CustodyError('ERR_SERVICE_UNAVAILABLE', message, { detail: { bound } });
}

function isPositiveInteger(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1;
}

/**
 * The request body as text, at most `maxBytes` (ERR_INPUT_TOO_LARGE, refused by its
 * Content-Length before reading when it declares one), its bytes counted against `budget` (and
 * the share of the request's client, `clientKey`) while they arrive. A body that stops before its
 * end (the client hung up, or the server's request timeout cut it) is the client's doing:
 * ERR_INPUT_TRUNCATED (400), not an internal error.
 *
 * Whatever way the read ends, its bytes are given back: when it returns or fails, and at the
 * latest when the answer is sent or the connection closes, should the body stream never settle.
 */
export async function readRequestText(c: Context, maxBytes: number, budget?: ArrivingBodyBudget): Promise<string> {
  const lease = budget?.lease(clientKey(c));
  const outgoing = lease ? nodeOutgoing(c) : undefined;
  const release = () => lease?.release();
  outgoing?.once('close', release);
  let bytes: Uint8Array;
  try {
    bytes = await readBodyLimited(c.req.raw, maxBytes, 'request body', lease);
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    throw new CustodyError('ERR_INPUT_TRUNCATED', 'the request body was broken off', { cause: e });
  } finally {
    // Held from here only by the handler, whose work the body's size bounds.
    release();
    outgoing?.off('close', release);
  }
  return new TextDecoder().decode(bytes);
}

/** The context variable holding the request's client address key (set by createBrokerApp). */
export const CLIENT_KEY = 'clientKey';

/** The request's client address key, when the app found one (see createBrokerApp). */
function clientKey(c: Context): string | undefined {
  const v: unknown = c.get(CLIENT_KEY);
  return typeof v === 'string' ? v : undefined;
}

/** The TCP peer as @hono/node-server exposes it (`env.incoming`, or `env.server.incoming` over HTTP/2); undefined in process. */
export function peerAddress(c: { env: unknown }): string | undefined {
  type Incoming = { incoming?: { socket?: { remoteAddress?: string } } };
  const env = c.env as (Incoming & { server?: Incoming }) | undefined;
  return (env?.server ?? env)?.incoming?.socket?.remoteAddress;
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

/** The node:http response under a Hono context served by @hono/node-server (HTTP/1.1). */
function nodeOutgoing(c: Context): ServerResponse | undefined {
  const env = c.env as { outgoing?: unknown } | undefined;
  const outgoing = env?.outgoing as ServerResponse | undefined;
  return outgoing && typeof outgoing.once === 'function' && typeof outgoing.off === 'function' ? outgoing : undefined;
}

/** The node:http request under a Hono context served by @hono/node-server (HTTP/1.1). */
function nodeIncoming(c: Context): IncomingMessage | undefined {
  const env = c.env as { incoming?: unknown } | undefined;
  const incoming = env?.incoming as IncomingMessage | undefined;
  return incoming && typeof incoming.complete === 'boolean' && incoming.socket ? incoming : undefined;
}
