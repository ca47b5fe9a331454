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

export interface ServeBrokerOptions {
  port?: number;
  hostname?: string;
  /** Default REQUEST_TIMEOUT_MS. */
  requestTimeoutMs?: number;
  /** Default HEADERS_TIMEOUT_MS, and never more than the request timeout. */
  headersTimeoutMs?: number;
}

/**
 * Serves the broker app on `hostname:port` (port 0 picks a free one). Requests must arrive
 * within the request and head deadlines; request bodies are also bounded one by one and all
 * together while they arrive (createBrokerApp's `maxArrivingBodyBytes`).
 */
export async function serveBroker(app: Hono<BrokerEnv>, options: ServeBrokerOptions = {}): Promise<RunningServer> {
  const hostname = options.hostname ?? '127.0.0.1';
  const requestTimeout = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
  const headersTimeout = Math.min(options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS, requestTimeout);
  const serverOptions = {
    maxHeaderSize: MAX_REQUEST_HEADER_BYTES,
    requestTimeout,
    headersTimeout,
    connectionsCheckingInterval: Math.min(DEADLINE_CHECK_MS, Math.max(100, Math.floor(headersTimeout / 2))),
  };
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, port: options.port ?? 0, hostname, serverOptions }, (info: AddressInfo) => {
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
