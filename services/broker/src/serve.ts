import { createServer as createNodeServer, type IncomingMessage, type RequestListener, type Server, type ServerOptions, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { CustodyError, listenFailure } from '@custody/core';
import { MAX_EAR_BYTES } from '@custody/policy';
import { clientAddressKey } from './attestation/challenge-limits.js';
import type { BrokerEnv } from './http/app.js';

export interface RunningServer {
  port: number;
  url: string;
  /**
   * Stops listening and ends when every connection has closed. By default every connection is cut
   * at once; with `drainMs`, requests in progress may finish for that long, then the rest are cut.
   * While draining, answers carry `Connection: close`, and connections with nothing in progress
   * (kept alive, or that never sent a byte) are closed, as are the others once their answer is out.
   * A second call returns the same promise; one with `drainMs` 0 cuts what is left at once.
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  drainMs?: number;
}

/**
 * Largest request head the broker reads. A key release carries its EAR as a bearer token, and an
 * EAR covering GPUs grows by about 12 KiB per GPU (each one's annotated measurements): with two
 * GPUs it exceeds Node's 16 KiB default (431), with eight it is near 100 KiB. Room for the largest
 * EAR accepted at all (MAX_EAR_BYTES), plus other headers.
 */
export const MAX_REQUEST_HEADER_BYTES = MAX_EAR_BYTES + 16 * 1024;

/**
 * Longest a client may take to send a whole request (head and body), by default: a 4 MiB
 * attestation at under about 140 KB/s is cut off (408), and so is a sender that stalls, instead
 * of holding its connection and body for Node's default of 300 s. Real attestations are tens of
 * KiB; the largest, with eight GPUs, some 2 MiB.
 */
export const REQUEST_TIMEOUT_MS = 30_000;
/** Longest a client may take to send a request's head, by default (Node: 60 s). */
export const HEADERS_TIMEOUT_MS = 20_000;
/** How often Node looks for requests past those deadlines (its default, 30 s, would double them). */
const DEADLINE_CHECK_MS = 5_000;

/**
 * Connections open at once, by default (Node: no bound). Past it a new connection is closed as
 * soon as it is accepted, so that the file descriptors and memory of many connections held open
 * cannot take the process down.
 */
export const MAX_CONNECTIONS = 1024;

/**
 * Connections one client address (an IPv4 address, an IPv6 /64: clientAddressKey of the TCP peer)
 * may hold open at once, by default: a quarter of MAX_CONNECTIONS, so that filling the server
 * takes four addresses, and far above what one workload or gateway (or a NAT in front of many)
 * keeps open.
 */
export const MAX_CONNECTIONS_PER_CLIENT = 256;

/**
 * How long requests in progress may finish when a broker stops (startBroker's close(); `custody
 * broker serve` on SIGTERM and SIGINT): a key release takes milliseconds, and its audit write
 * waits for the ledger a few seconds at most (`custody broker serve`: 4 s) before the interim
 * table takes it; well inside an orchestrator's grace period (Kubernetes: 30 s).
 */
export const DRAIN_MS = 10_000;

export interface ServeBrokerOptions {
  port?: number;
  hostname?: string;
  /** Default REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
  /** Default HEADERS_TIMEOUT_MS, and never more than the request timeout (also for a connection that sends nothing). */
  headersTimeoutMs?: number;
  /** Default MAX_CONNECTIONS. */
  maxConnections?: number;
  /**
   * Default MAX_CONNECTIONS_PER_CLIENT. false: no bound per address, for a broker reached only
   * through reverse proxies (every connection then comes from one of them).
   */
  maxConnectionsPerClient?: number | false;
}

/**
 * Serves the broker app on `hostname:port` (port 0 picks a free one). Requests must arrive
 * within the request and head deadlines; request bodies are also bounded one by one and all
 * together while they arrive (createBrokerApp's `maxArrivingBodyBytes` and its per-client
 * shares); connections are bounded in all and per client address.
 */
export async function serveBroker(app: Hono<BrokerEnv>, options: ServeBrokerOptions = {}): Promise<RunningServer> {
  const hostname = options.hostname ?? '127.0.0.1';
  const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, requestTimeout);
  const maxConnections = options.maxConnections ?? MAX_CONNECTIONS;
  const perClient = options.maxConnectionsPerClient ?? MAX_CONNECTIONS_PER_CLIENT;
  if (!isPositiveInteger(maxConnections) || (perClient !== false && !isPositiveInteger(perClient))) throw new CustodyError('ERR_USAGE', 'maxConnections and maxConnectionsPerClient must be whole numbers, at least 1');
  const serverOptions = {
    maxHeaderSize: MAX_REQUEST_HEADER_BYTES,
    requestTimeout,
    headersTimeout,
    connectionsCheckingInterval: Math.min(DEADLINE_CHECK_MS, Math.max(100, Math.floor(headersTimeout / 2))),
  };
  return new Promise((resolve, reject) => {
    let connections: ConnectionControl | undefined;
    // Connections are under control from the server's creation (serve listens at once), and every
    // request is seen before the app answers it (a synchronous answer writes its head at once).
    const createServer = ((opts: ServerOptions, listener: RequestListener) => {
      const server = createNodeServer(opts, (req, res) => {
        connections?.onRequest(req, res);
        listener(req, res);
      });
      server.maxConnections = maxConnections;
      connections = controlConnections(server, perClient);
      return server;
    }) as typeof createNodeServer;
    const server = serve({ fetch: app.fetch, port: options.port ?? 0, hostname, serverOptions, createServer }, (info: AddressInfo) => {
      resolve({
        port: info.port,
        url: `http://${hostname.includes(':') ? `[${hostname}]` : hostname}:${info.port}`,
        close: (o: CloseOptions = {}) => connections!.close(o.drainMs ?? 0),
      });
    });
    server.once('error', (e) => reject(listenFailure(e, `${hostname}:${options.port ?? 0}`)));
  });
}

interface ConnectionState {
  /** Requests received whose answer is not yet out. */
  open: number;
  /** socket.bytesRead when the last answer went out (0: none yet). */
  readAtRest: number;
}

interface ConnectionControl {
  /** Called for every request before the app sees it. */
  onRequest(req: IncomingMessage, res: ServerResponse): void;
  close(drainMs: number): Promise<void>;
}

/**
 * The connections of `server`: at most `perClientLimit` per client address, and close() with a
 * drain. The gateway's listen() drains with Node's closeIdleConnections on a timer; that leaves
 * connections that never sent a byte open (and server.close() stops Node's head and request
 * deadlines, so they would hold the drain to its end), and it closes a connection once its answer
 * is ended rather than written. So the broker keeps its own account of connections at rest.
 */
function controlConnections(server: Server, perClientLimit: number | false): ConnectionControl {
  const states = new Map<Socket, ConnectionState>();
  const perClient = new Map<string, number>();
  /** Answers in progress whose head is not yet written: they get `Connection: close` when a drain starts. */
  const answering = new Set<ServerResponse>();
  let draining = false;
  let closing: Promise<void> | undefined;

  /** Nothing in progress and nothing received since the last answer (a request still arriving has its head's deadline, or the drain's). */
  const atRest = (socket: Socket, state: ConnectionState) => state.open === 0 && socket.bytesRead === state.readAtRest;

  server.on('connection', (socket: Socket) => {
    const limit = perClientLimit;
    const client = limit === false || socket.remoteAddress === undefined ? undefined : clientAddressKey(socket.remoteAddress, undefined, false);
    if (client !== undefined) {
      const n = perClient.get(client) ?? 0;
      if (limit !== false && n >= limit) {
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
  });

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
    onRequest,
    close(drainMs) {
      if (!closing) {
        draining = true;
        closing = new Promise<void>((done, fail) => {
          const cut = drainMs > 0 ? setTimeout(() => server.closeAllConnections(), drainMs) : undefined;
          server.close((e) => {
            clearTimeout(cut);
            if (e) fail(e);
            else done();
          });
          if (drainMs <= 0) return;
          for (const res of answering) if (!res.headersSent) res.setHeader('connection', 'close');
          answering.clear();
          for (const [socket, state] of states) if (atRest(socket, state)) socket.destroy();
        });
      }
      if (drainMs <= 0) server.closeAllConnections();
      return closing;
    },
  };
}

function isPositiveInteger(n: number): boolean {
  return Number.isSafeInteger(n) && n >= 1;
}
