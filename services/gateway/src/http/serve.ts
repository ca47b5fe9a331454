import { createServer, type IncomingMessage, type RequestListener, type ServerOptions, type ServerResponse } from 'node:http';
import { serve, type ServerType } from '@hono/node-server';
import type { Hono } from 'hono';

/** Takes a request straight from node:http before the app sees it; returns whether it did. */
export type NodeIntercept = (req: IncomingMessage, res: ServerResponse) => boolean;

export interface RunningServer {
  /** Base URL, e.g. http://127.0.0.1:8443 */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/**
 * Serves a Hono app on Node; port 0 picks a free port. Loopback by default. `intercept` answers
 * the requests it claims without the app (the gateway's node:http OHTTP fast path).
 */
export function listen(app: Hono, options: { port?: number; host?: string; intercept?: NodeIntercept } = {}): Promise<RunningServer> {
  const intercept = options.intercept;
  const host = options.host ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    let server: ServerType;
    try {
      const make = (opts: ServerOptions, listener: RequestListener) =>
        createServer(
          opts,
          intercept
            ? (req, res) => {
                if (!intercept(req, res)) listener(req, res);
              }
            : listener,
        );
      server = serve({ fetch: app.fetch, port: options.port ?? 0, hostname: host, createServer: make as never }, (info) => {
        const h = host.includes(':') ? `[${host}]` : host;
        resolve({
          url: `http://${h}:${info.port}`,
          port: info.port,
          close: () =>
            new Promise<void>((res) => {
              const s = server as unknown as { closeAllConnections?: () => void; close(cb: () => void): void };
              s.close(() => res());
              s.closeAllConnections?.();
            }),
        });
      });
      server.once('error', reject);
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}
