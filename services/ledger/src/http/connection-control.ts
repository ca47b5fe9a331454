import { createServer, type IncomingMessage, type RequestListener, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import { isIPv4, isIPv6, type Socket } from 'node:net';
import { CustodyError } from '@custody/core';
import type { NodeIntercept } from './node-server.js';

/** Bounds on the connections of a server, and the requests it offers to `intercept` first. */
export interface ConnectionControlOptions {
  /**
   * Connections open at once (Node: no bound). Past it a new connection is closed as soon as it is
   * accepted, so that the file descriptors and memory of many connections held open cannot take
   * the process down.
   */
  readonly maxConnections: number;
  /** Connections one client may hold open at once; none: no bound per client. */
  readonly perClient?: PerClientLimit;
  /** Takes the requests it claims before the app sees them (the OHTTP and events fast paths). */
  readonly intercept?: NodeIntercept;
}

export interface PerClientLimit {
  readonly max: number;
  /** The client a connection counts against, from its TCP peer's address (the broker: its IPv4 address or IPv6 /64). */
  readonly clientKey: (remoteAddress: string) => string;
}

/** The connections of the server that `createServer` makes. */
export interface ConnectionControl {
  /** A `createServer` for @hono/node-server's `serve`; it makes one server. */
  readonly createServer: (opts: ServerOptions, listener: RequestListener) => Server;
  /**
   * Stops listening and ends when every connection has closed. With `drainMs` 0 every connection
   * is cut at once; otherwise requests in progress may finish for that long, then the rest are
   * cut. While draining, answers carry `Connection: close`, connections with nothing in progress
   * (kept alive, or that never sent a byte) are closed at once, and the others once their answer
   * is written. A second call returns the same promise; one with `drainMs` 0 cuts what is left.
   */
  close(drainMs: number): Promise<void>;
}

interface ConnectionState {
  /** Requests received whose answer is not yet out. */
  open: number;
  /** socket.bytesRead when the last answer went out (0: none yet). */
  readAtRest: number;
}

/**
 * Connections under control from the server's creation: at most `maxConnections` in all and
 * `perClient.max` per client, and a close that drains. Node's own tools fall short for a drain:
 * closeIdleConnections leaves connections that never sent a byte open (and server.close() stops
 * Node's head and request deadlines, so they would hold the drain to its end), it closes a
 * connection once its answer is ended rather than written, and a 'request' listener added when
 * the drain begins runs after the app, too late for an answer given synchronously. So this keeps
 * its own account of each connection, and sees every request before the app (or `intercept`).
 */
export function controlConnections(options: ConnectionControlOptions): ConnectionControl {
  const { maxConnections, perClient: perClientLimit, intercept } = options;
  if (!isPositiveInteger(maxConnections) || (perClientLimit && !isPositiveInteger(perClientLimit.max))) {
    throw new CustodyError('ERR_USAGE', 'connection bounds (in all and per client) must be whole numbers, at least 1');
  }
  let server: Server | undefined;
  const states = new Map<Socket, ConnectionState>();
  const perClient = new Map<string, number>();
  /** Answers in progress whose head may not be written yet: they get `Connection: close` when a drain starts. */
  const answering = new Set<ServerResponse>();
  let draining = false;
  let closing: Promise<void> | undefined;

  /** Nothing in progress and nothing received since the last answer (a request still arriving has its head's deadline, or the drain's). */
  const atRest = (socket: Socket, state: ConnectionState) => state.open === 0 && socket.bytesRead === state.readAtRest;

  const onConnection = (socket: Socket) => {
    const client = perClientLimit && socket.remoteAddress !== undefined ? perClientLimit.clientKey(socket.remoteAddress) : undefined;
    if (perClientLimit && client !== undefined) {
      const n = perClient.get(client) ?? 0;
      if (n >= perClientLimit.max) {
        socket.destroy();
        return;
      }
      perClient.set(client, n + 1);
    }
    states.set(socket, { open: 0, readAtRest: 0 });
    socket.once('close', () => {
      states.delete(socket);
      if (client === undefined) return;
      const left = (perClient.get(client) ?? 1) - 1;
      if (left > 0) perClient.set(client, left);
      else perClient.delete(client);
    });
  };

  /** Every request, before the app sees it (a synchronous answer writes its head at once). */
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const socket = req.socket;
    const state = states.get(socket);
    if (!state) return;
    state.open++;
    if (draining) res.setHeader('connection', 'close');
    else answering.add(res);
    res.once('close', () => {
      answering.delete(res);
      state.open--;
      if (state.open > 0) return;
      state.readAtRest = socket.bytesRead;
      // An answer written before the drain began kept its connection: close it now that it is out
      // (handed to the kernel: 'close' follows 'finish'). One ending already (Connection: close,
      // or lingering after an early answer) closes by itself.
      if (draining && socket.writable) socket.destroy();
    });
  };

  return {
    createServer(opts, listener) {
      if (server) throw new CustodyError('ERR_INTERNAL', 'controlConnections makes one server');
      const made = createServer(opts, (req, res) => {
        onRequest(req, res);
        if (!intercept?.(req, res)) listener(req, res);
      });
      made.maxConnections = maxConnections;
      made.on('connection', onConnection);
      server = made;
      return made;
    },
    close(drainMs) {
      const s = server;
      if (!s) return Promise.resolve();
      if (!closing) {
        draining = true;
        closing = new Promise<void>((done, fail) => {
          const cut = drainMs > 0 ? setTimeout(() => s.closeAllConnections(), drainMs) : undefined;
          const stopped = (e?: Error) => {
            clearTimeout(cut);
            if (e) fail(e);
            else done();
          };
          if (drainMs <= 0) {
            s.close(stopped);
            return;
          }
          closeKeepingAnswers(s, stopped);
          for (const res of answering) if (!res.headersSent) res.setHeader('connection', 'close');
          answering.clear();
          for (const [socket, state] of states) if (atRest(socket, state)) socket.destroy();
        });
      }
      if (drainMs <= 0) s.closeAllConnections();
      return closing;
    },
  };
}

/**
 * server.close() without its first step, closeIdleConnections: that one takes a connection whose
 * answer is ended as idle, and cuts the answer when it is not yet written (a large one, a client
 * slow to read). The drain closes the connections at rest itself, and the others once their
 * answer is out. (Node calls it through the server, so an own property shadows it for the call.)
 */
function closeKeepingAnswers(server: Server, callback: (e?: Error) => void): void {
  Object.defineProperty(server, 'closeIdleConnections', { value: () => undefined, configurable: true, writable: true });
  try {
    server.close(callback);
  } finally {
    Reflect.deleteProperty(server, 'closeIdleConnections');
  }
}

/**
 * The client a TCP peer's address counts as (PerClientLimit's `clientKey`): `ip4:<address>`
 * (IPv4-mapped IPv6 too), `ip6:<first 64 bits>::/64` (one host of an IPv6 network can use its
 * whole /64, so that is one client), `other:<address>` for anything else. The broker's
 * clientAddressKey keys its peers and forwarded addresses with it.
 */
export function peerAddressKey(address: string): string {
  const a = address.replace(/%.*$/, '').toLowerCase();
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(a);
  if (mapped && isIPv4(mapped[1]!)) return `ip4:${mapped[1]!}`;
  if (isIPv4(a)) return `ip4:${a}`;
  const groups = expandIPv6(a);
  if (groups) return `ip6:${groups.slice(0, 4).join(':')}::/64`;
  return `other:${a.slice(0, 64)}`;
}

/** The eight 16-bit groups of an IPv6 address, without leading zeros; null when not one. */
function expandIPv6(a: string): string[] | null {
  if (!isIPv6(a)) return null;
  let text = a;
  // A trailing dotted quad (::ffff:1.2.3.4, 64:ff9b::1.2.3.4) is the last two groups.
  const quad = /(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (quad) {
    const [b0, b1, b2, b3] = quad.slice(1).map(Number) as [number, number, number, number];
    text = text.slice(0, quad.index) + `${((b0 << 8) | b1).toString(16)}:${((b2 << 8) | b3).toString(16)}`;
  }
  const [left, right] = text.split('::') as [string, string | undefined];
  const l = left === '' ? [] : left.split(':');
  const r = right === undefined || right === '' ? [] : right.split(':');
  const zeros = right === undefined ? 0 : 8 - l.length - r.length;
  const groups = [...l, ...Array<string>(zeros).fill('0'), ...r];
  if (groups.length !== 8) return null;
  return groups.map((g) => parseInt(g, 16).toString(16));
}

function isPositiveInteger(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1;
}
