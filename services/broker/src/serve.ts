import type { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import { listenFailure } from '@custody/core';
import { controlConnections } from '@custody/ledger-service';
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
  // controlConnections refuses bounds that are not whole numbers of at least 1 (ERR_USAGE).
  const connections = controlConnections({
    maxConnections,
    ...(perClient !== false ? { perClient: { max: perClient, clientKey: (address: string) => clientAddressKey(address, undefined, false) } } : {}),
  });
  const serverOptions = {
    maxHeaderSize: MAX_REQUEST_HEADER_BYTES,
    requestTimeout,
    headersTimeout,
    connectionsCheckingInterval: Math.min(DEADLINE_CHECK_MS, Math.max(100, Math.floor(headersTimeout / 2))),
  };
  return new Promise((resolve, reject) => {
    // Connections are under control from the server's creation (serve listens at once).
    const server = serve({ fetch: app.fetch, port: options.port ?? 0, hostname, serverOptions, createServer: connections.createServer as typeof createServer }, (info: AddressInfo) => {
      resolve({
        port: info.port,
        url: `http://${hostname.includes(':') ? `[${hostname}]` : hostname}:${info.port}`,
        close: (o: CloseOptions = {}) => connections.close(o.drainMs ?? 0),
      });
    });
    server.once('error', (e) => reject(listenFailure(e, `${hostname}:${options.port ?? 0}`)));
  });
}
