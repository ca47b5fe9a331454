import type { createServer } from 'node:http';
import { serve, type ServerType } from '@hono/node-server';
import type { Hono } from 'hono';
import { listenFailure } from '@custody/core';
import { controlConnections, type NodeIntercept } from '@custody/ledger-service';

export type { NodeIntercept };

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8443 */
  readonly url: string;
  readonly port: number;
  /**
   * Stops listening and ends when every connection has closed. By default every connection is cut
   * at once; with `drainMs`, requests in progress may finish for that long, then the rest are cut.
   * While draining, answers carry `Connection: close`, and connections with nothing in progress
   * (kept alive, or that never sent a byte) are closed, as are the others once their answer is
   * written, so a pooled client does not keep sending new requests to be cut. A second call
   * returns the same promise; one with `drainMs` 0 cuts what is left at once.
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  readonly drainMs?: number;
}

/**
 * Longest a client may take to send a whole request (head and body), by default: a 16 MiB body
 * at under 300 KB/s is cut off, and so is a sender that stalls, instead of holding its bytes for
 * Node's default of 300 s. (Node checks every 30 s, so the cut comes up to that much later.)
 */
const REQUEST_TIMEOUT_MS = 60_000;

/**
 * Connections open at once, by default (Node: no bound). Past it a new connection is closed as
 * soon as it is accepted, so that many connections held open cannot take the process down. No
 * bound per client address: a gateway's clients often come through a relay or load balancer,
 * every connection then from one of a few addresses.
 */
export const MAX_CONNECTIONS = 1024;

export interface ListenOptions {
  port?: number;
  host?: string;
  /** Answers the requests it claims without the app (the gateway's node:http OHTTP fast path). */
  intercept?: NodeIntercept;
  /** Default 60 s. */
  requestTimeoutMs?: number;
  /** Default MAX_CONNECTIONS. */
  maxConnections?: number;
}

/**
 * Serves a Hono app on Node (the gateway, the relay); port 0 picks a free port. Loopback by
 * default. Requests must arrive within the request deadline; connections are bounded in all.
 */
export function listen(app: Hono, options: ListenOptions = {}): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    let server: ServerType;
    try {
      const connections = controlConnections({ maxConnections: options.maxConnections ?? MAX_CONNECTIONS, ...(options.intercept ? { intercept: options.intercept } : {}) });
      const serverOptions = { requestTimeout: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS };
      server = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: host, serverOptions, createServer: connections.createServer as typeof createServer }, (info) => {
        const h = host.includes(':') ? `[${host}]` : host;
        resolve({
          url: `http://${h}:${info.port}`,
          port: info.port,
          close: (o: CloseOptions = {}) => connections.close(o.drainMs ?? 0),
        });
      });
      server.once('error', (e) => reject(listenFailure(e, `${host}:${options.port ?? 0}`)));
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}
