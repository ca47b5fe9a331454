import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { AddressInfo } from 'node:net';
import { CustodyError, fromUtf8, toCustodyError } from '@custody/core';
import { createEd25519Signer, readBodyLimited, toCustodyEvent, type AuditSink, type CustodyEvent, type FetchLike, type ServiceAuditEvent, type TlogPolicy } from '@custody/ledger';
import { TransparencyLog } from './log.js';
import { FsTileStore } from './storage/tile-store.js';
import { SqliteSequencer } from './sequencer/sqlite.js';
import { PostgresSequencer } from './sequencer/postgres.js';

export interface OpenLogConfig {
  /** Public directory: checkpoint and tiles (serve it with any static server or `custody log serve`). */
  dir: string;
  /** Log signer key `PRIVATE+KEY+<origin>+...`; its name is the origin. */
  skey: string;
  /** SQLite file for sequencing state (default `<dir>.sqlite`, outside the public directory). */
  sqlitePath?: string;
  /** PostgreSQL connection string; when set, sequencing is shared through PostgreSQL instead. */
  postgres?: string;
  /** Witnesses to ask for cosignatures and the quorum required before publishing. */
  witnessPolicy?: TlogPolicy;
  fetch?: FetchLike;
  integrateIntervalMs?: number;
  maxBatch?: number;
  onPublish?: (note: string, size: number) => void;
  onError?: (e: CustodyError) => void;
}

export async function openLog(cfg: OpenLogConfig): Promise<{ log: TransparencyLog; store: FsTileStore }> {
  const signer = await createEd25519Signer(cfg.skey);
  const origin = signer.name;
  const store = new FsTileStore(cfg.dir);
  const sequencer = cfg.postgres ? await PostgresSequencer.open(cfg.postgres, origin) : await SqliteSequencer.open(cfg.sqlitePath ?? `${cfg.dir.replace(/\/+$/, '')}.sqlite`, origin);
  try {
    const log = await TransparencyLog.open({
      origin,
      signer,
      store,
      sequencer,
      ...(cfg.witnessPolicy ? { witnesses: { policy: cfg.witnessPolicy, ...(cfg.fetch ? { fetch: cfg.fetch } : {}) } } : {}),
      ...(cfg.integrateIntervalMs !== undefined ? { integrateIntervalMs: cfg.integrateIntervalMs } : {}),
      ...(cfg.maxBatch !== undefined ? { maxBatch: cfg.maxBatch } : {}),
      ...(cfg.onPublish ? { onPublish: cfg.onPublish } : {}),
      ...(cfg.onError ? { onError: cfg.onError } : {}),
    });
    return { log, store };
  } catch (e) {
    await sequencer.close().catch(() => undefined);
    throw e;
  }
}

export interface RunningServer {
  url: string;
  port: number;
  close(): Promise<void>;
}

/** Serves a hono app on host:port (port 0 picks a free one). */
export function listen(app: Hono, host = '127.0.0.1', port = 0): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const server = serve({ fetch: app.fetch, hostname: host, port }, (info: AddressInfo) => {
      const h = info.address.includes(':') ? `[${info.address}]` : info.address;
      resolve({
        url: `http://${h}:${info.port}`,
        port: info.port,
        close: () =>
          new Promise<void>((res) => {
            (server as unknown as { closeAllConnections?: () => void }).closeAllConnections?.();
            server.close(() => res());
          }),
      });
    });
    server.once('error', (e) => reject(new CustodyError('ERR_TLOG_UNAVAILABLE', 'cannot listen', { cause: e, detail: { host, port } })));
  });
}

/** Bound on the ledger's answer to `POST /events` (`{"index": n, "leafHash": ...}` or a problem). */
const MAX_SINK_RESPONSE = 64 * 1024;

/** An AuditSink that posts events to a remote ledger's `POST /events`. */
export class HttpAuditSink implements AuditSink {
  constructor(
    private readonly url: string,
    private readonly fetchFn: FetchLike = (u, i) => fetch(u, i),
  ) {}

  async append(event: CustodyEvent | ServiceAuditEvent): Promise<{ index: number }> {
    // Validate locally first: a refused event never leaves the process.
    const e = toCustodyEvent(event);
    let res: Response;
    try {
      res = await this.fetchFn(this.url.replace(/\/+$/, '') + '/events', {
        method: 'POST',
        body: JSON.stringify(e),
        headers: { 'content-type': 'application/json' },
      });
    } catch (e) {
      throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'ledger did not answer', { cause: toCustodyError(e) });
    }
    // The answer is a small JSON object; a ledger (or something in between) streaming more is refused.
    let body: { index?: unknown; code?: unknown } = {};
    try {
      const parsed = JSON.parse(fromUtf8(await readBodyLimited(res, MAX_SINK_RESPONSE, 'ledger response'))) as unknown;
      if (typeof parsed === 'object' && parsed !== null) body = parsed;
    } catch (e) {
      const err = toCustodyError(e);
      if (err.code === 'ERR_INPUT_TOO_LARGE') throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'ledger response is too large', { cause: err, detail: { status: res.status } });
      // Not JSON: typed by status below.
    }
    if (res.status !== 200 || typeof body.index !== 'number') {
      const code = typeof body.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(body.code) ? body.code : 'ERR_TLOG_UNAVAILABLE';
      throw new CustodyError(code, 'ledger refused the event', { detail: { status: res.status } });
    }
    return { index: body.index };
  }
}
