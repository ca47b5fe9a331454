import { serve, type ServerType } from '@hono/node-server';
import type { Hono } from 'hono';
import { listenFailure } from '@custody/core';
import { interceptingServer, type NodeIntercept } from '@custody/ledger-service';

export type { NodeIntercept };

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8443 */
  readonly url: string;
  readonly port: number;
  /**
   * Stops listening and ends when every connection has closed. By default every connection is cut
   * at once; with `drainMs`, requests in progress may finish for that long, then the rest are cut.
   * While draining, answers carry `Connection: close` and idle kept-alive connections are closed
   * as they become idle, so a pooled client does not keep sending new requests to be cut.
   */
  close(options?: CloseOptions): Promise<void>;
}

/** While draining, how often connections that became idle are closed. */
const DRAIN_IDLE_CHECK_MS = 50;

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
 * Serves a Hono app on Node; port 0 picks a free port. Loopback by default. `intercept` answers
 * the requests it claims without the app (the gateway's node:http OHTTP fast path).
 */
export function listen(app: Hono, options: { port?: number; host?: string; intercept?: NodeIntercept; requestTimeoutMs?: number } = {}): Promise<RunningServer> {
  const host = options.host ?? '127.0.0.1';
  const make = interceptingServer(options.intercept);
  return new Promise((resolve, reject) => {
    let server: ServerType;
    try {
      server = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: host, createServer: make as never }, (info) => {
        const h = host.includes(':') ? `[${host}]` : host;
        resolve({
          url: `http://${h}:${info.port}`,
          port: info.port,
          close: (o: CloseOptions = {}) =>
            new Promise<void>((res) => {
              const s = server as unknown as { closeAllConnections(): void; closeIdleConnections(): void; close(cb: () => void): void };
              const drainMs = o.drainMs ?? 0;
              if (drainMs <= 0) {
                s.close(() => res());
                return s.closeAllConnections();
              }
              const cut = setTimeout(() => s.closeAllConnections(), drainMs);
              const idle = setInterval(() => s.closeIdleConnections(), DRAIN_IDLE_CHECK_MS);
              server.on('request', (_req: unknown, r: { headersSent: boolean; setHeader(n: string, v: string): void }) => {
                if (!r.headersSent) r.setHeader('connection', 'close');
              });
              s.close(() => {
                clearTimeout(cut);
                clearInterval(idle);
                res();
              });
              s.closeIdleConnections();
            }),
        });
      });
      (server as unknown as { requestTimeout: number }).requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
      server.once('error', (e) => reject(listenFailure(e, `${host}:${options.port ?? 0}`)));
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}
