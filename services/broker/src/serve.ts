import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { listenFailure } from '@custody/core';
import { MAX_EAR_BYTES } from '@custody/policy';
import type { BrokerEnv } from './http/app.js';

export interface RunningServer {
  port: number;
  url: string;
  close(): Promise<void>;
}

/**
 * Largest request head the broker reads. A key release carries its EAR as a bearer token, and an
 * EAR covering GPUs grows by about 12 KiB per GPU (each one's annotated measurements): with two
 * GPUs it exceeds Node's 16 KiB default (431), with eight it is near 100 KiB. Room for the largest
 * EAR accepted at all (MAX_EAR_BYTES), plus other headers.
 */
export const MAX_REQUEST_HEADER_BYTES = MAX_EAR_BYTES + 16 * 1024;

/** Serves the broker app on `hostname:port` (port 0 picks a free one). */
export async function serveBroker(app: Hono<BrokerEnv>, options: { port?: number; hostname?: string } = {}): Promise<RunningServer> {
  const hostname = options.hostname ?? '127.0.0.1';
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: options.port ?? 0, hostname, serverOptions: { maxHeaderSize: MAX_REQUEST_HEADER_BYTES } }, (info: AddressInfo) => {
      resolve({
        port: info.port,
        url: `http://${hostname.includes(':') ? `[${hostname}]` : hostname}:${info.port}`,
        close: () =>
          new Promise<void>((done, fail) => {
            server.close((e) => (e ? fail(e) : done()));
            // Idle keep-alive connections would hold close() open.
            if ('closeAllConnections' in server) server.closeAllConnections();
          }),
      });
    });
    server.once('error', (e) => reject(listenFailure(e, `${hostname}:${options.port ?? 0}`)));
  });
}
