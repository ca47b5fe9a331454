import { serve } from '@hono/node-server';
import type { Hono } from 'hono';
import type { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { CustodyError, fromUtf8, listenFailure, readBodyLimited, toCustodyError, type Bytes } from '@custody/core';
import { MAX_BUNDLE_SIZE, buildTlogProof, createEd25519Signer, httpLogSource, readEntry, toCustodyEvent, type AuditSink, type CustodyEvent, type FetchLike, type LogSource, type ServiceAuditEvent, type TlogPolicy, type TlogProof } from '@custody/ledger';
import { nodeHttpFetch, type NodeHttpFetch } from '@custody/crypto-node';
import { controlConnections, peerAddressKey } from './http/connection-control.js';
import type { NodeIntercept } from './http/node-server.js';
import { writerKeyFrom } from './http/writers.js';
import { ENTRY_WAIT_MS, TransparencyLog, checkpointSize } from './log.js';
import { FsTileStore } from './storage/tile-store.js';
import { SqliteSequencer } from './sequencer/sqlite.js';
import { PostgresSequencer } from './sequencer/postgres.js';
import type { Sequencer } from './sequencer/types.js';
import { WriterLock } from './storage/writer-lock.js';

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
  /** The log's clock for judging cosignature timestamps, seconds since the epoch (tests). */
  witnessNow?: () => number;
  /** How often an idle log has its unchanged checkpoint cosigned again (seconds; default 300, 0 never). */
  witnessRefreshSeconds?: number;
  /** How long witnesses the quorum does not need still get once it holds (ms; default 200). */
  witnessGraceMs?: number;
  integrateIntervalMs?: number;
  maxBatch?: number;
  onPublish?: (note: string, size: number) => void;
  onError?: (e: CustodyError) => void;
}

export async function openLog(cfg: OpenLogConfig): Promise<{ log: TransparencyLog; store: FsTileStore }> {
  const signer = await createEd25519Signer(cfg.skey);
  const origin = signer.name;
  const store = new FsTileStore(cfg.dir);
  // With SQLite the database's lock is per file, and another --db (or the directory through a
  // symlink) would name another file: the directory itself is locked too. Writers sharing a log
  // through PostgreSQL coordinate there.
  let lock: WriterLock | undefined;
  if (!cfg.postgres) {
    await store.init();
    lock = WriterLock.acquire(cfg.dir);
  }
  let sequencer: Sequencer;
  try {
    sequencer = cfg.postgres ? await PostgresSequencer.open(cfg.postgres, origin) : await SqliteSequencer.open(cfg.sqlitePath ?? `${cfg.dir.replace(/\/+$/, '')}.sqlite`, origin);
  } catch (e) {
    lock?.release();
    throw e;
  }
  try {
    const log = await TransparencyLog.open({
      origin,
      signer,
      store,
      sequencer,
      ...(lock ? { lock } : {}),
      ...(cfg.witnessPolicy ? { witnesses: { policy: cfg.witnessPolicy, ...(cfg.fetch ? { fetch: cfg.fetch } : {}), ...(cfg.witnessNow ? { now: cfg.witnessNow } : {}), ...(cfg.witnessRefreshSeconds !== undefined ? { refreshSeconds: cfg.witnessRefreshSeconds } : {}), ...(cfg.witnessGraceMs !== undefined ? { graceMs: cfg.witnessGraceMs } : {}) } } : {}),
      ...(cfg.integrateIntervalMs !== undefined ? { integrateIntervalMs: cfg.integrateIntervalMs } : {}),
      ...(cfg.maxBatch !== undefined ? { maxBatch: cfg.maxBatch } : {}),
      ...(cfg.onPublish ? { onPublish: cfg.onPublish } : {}),
      ...(cfg.onError ? { onError: cfg.onError } : {}),
    });
    return { log, store };
  } catch (e) {
    await sequencer.close().catch(() => undefined);
    lock?.release();
    throw e;
  }
}

export interface RunningServer {
  url: string;
  port: number;
  /**
   * Stops listening and ends when every connection has closed. By default every connection is cut
   * at once; with `drainMs`, requests in progress (an append waiting for its checkpoint among
   * them) may finish for that long, then the rest are cut. While draining, answers carry
   * `Connection: close`, and connections with nothing in progress are closed, as are the others
   * once their answer is written. A second call returns the same promise; one with `drainMs` 0
   * cuts what is left at once.
   */
  close(options?: CloseOptions): Promise<void>;
}

export interface CloseOptions {
  readonly drainMs?: number;
}

/**
 * Connections open at once, by default (Node: no bound). Past it a new connection is closed as
 * soon as it is accepted, so that the file descriptors and memory of many connections held open
 * cannot take the process down.
 */
export const MAX_CONNECTIONS = 1024;

/**
 * Connections one client address (peerAddressKey: an IPv4 address, an IPv6 /64) may hold open at
 * once, by default: a quarter of MAX_CONNECTIONS, so that filling the server takes four
 * addresses, and far above what one writer (a broker, a gateway) or reader keeps open.
 */
export const MAX_CONNECTIONS_PER_CLIENT = 256;

/**
 * How long requests in progress may finish when a served log stops (`custody log serve` on
 * SIGTERM and SIGINT): an append takes milliseconds, one with `?wait=1` about an integration
 * interval (250 ms by default) plus its witnesses' cosignatures; well inside an orchestrator's
 * grace period (Kubernetes: 30 s).
 */
export const DRAIN_MS = 10_000;

export interface ListenOptions {
  /** Answers the requests it claims straight from node:http (the log's `createEventsNodeHandler`). */
  intercept?: NodeIntercept;
  /** Default MAX_CONNECTIONS. */
  maxConnections?: number;
  /**
   * Default MAX_CONNECTIONS_PER_CLIENT. false: no bound per address, for a log reached only
   * through reverse proxies (every connection then comes from one of them).
   */
  maxConnectionsPerClient?: number | false;
}

/**
 * Serves a hono app on host:port (port 0 picks a free one): the log, the witness. `intercept`
 * answers the requests it claims straight from node:http, the app the others. Connections are
 * bounded in all and per client address.
 */
export function listen(app: Hono, host = '127.0.0.1', port = 0, options: ListenOptions = {}): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    try {
      const perClient = options.maxConnectionsPerClient ?? MAX_CONNECTIONS_PER_CLIENT;
      // controlConnections refuses bounds that are not whole numbers of at least 1 (ERR_USAGE).
      const connections = controlConnections({
        maxConnections: options.maxConnections ?? MAX_CONNECTIONS,
        ...(perClient !== false ? { perClient: { max: perClient, clientKey: peerAddressKey } } : {}),
        ...(options.intercept ? { intercept: options.intercept } : {}),
      });
      // Connections are under control from the server's creation (serve listens at once).
      const server = serve({ fetch: app.fetch, hostname: host, port, createServer: connections.createServer as typeof createServer }, (info: AddressInfo) => {
        const h = info.address.includes(':') ? `[${info.address}]` : info.address;
        resolve({
          url: `http://${h}:${info.port}`,
          port: info.port,
          close: (o: CloseOptions = {}) => connections.close(o.drainMs ?? 0),
        });
      });
      server.once('error', (e) => reject(listenFailure(e, `${host}:${port}`)));
    } catch (e) {
      reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}

/** Bound on the ledger's answer to `POST /events` (`{"index": n, "leafHash": ...}` or a problem). */
const MAX_SINK_RESPONSE = 64 * 1024;

/** What a service prints at start when `HttpAuditSink.sendsKeyInClear`. */
export const CLEARTEXT_KEY_WARNING = 'the ledger writer key travels in clear over http:// to another host; give the ledger an https:// URL';

/** Deadline of one call to the ledger (an append, a checkpoint or tile read). */
const CALL_TIMEOUT_MS = 10_000;

/**
 * The transparency ledger over HTTP, for services that do not run it in process (the key
 * broker, the gateway): appends through the log's `POST /events`, and reads entries back and
 * builds inclusion proofs from the C2SP tlog-tiles resources the same log serves (`/checkpoint`,
 * `/tile/...`), so what a service republishes is what any tile reader sees. `entry` waits,
 * polling the checkpoint for up to `waitMs`, for the integrator to publish a checkpoint that
 * includes the entry; `proof` does not. The checkpoint is not verified here: whoever relies on a
 * proof verifies it against its own tlog policy.
 */
export class HttpAuditSink implements AuditSink {
  private readonly source: LogSource;
  private readonly waitMs: number;
  private readonly appendFetch: FetchLike;
  /** The log's writer key, sent with appends (never with reads, never logged). */
  private readonly writerKey: string | undefined;
  /** The transports this sink made (and closes); none when the caller gave one. */
  private readonly owned: NodeHttpFetch[] = [];

  /**
   * `fetchFn`: the transport for every call (tests inject one). Default: node:http with
   * keep-alive, appends answered in at most 64 KiB and reads in at most one entry bundle, each
   * call ended within `timeoutMs` (default 10 s).
   */
  constructor(
    private readonly url: string,
    fetchFn?: FetchLike,
    options: { waitMs?: number; writerKey?: string; timeoutMs?: number } = {},
  ) {
    this.writerKey = options.writerKey === undefined ? undefined : writerKeyFrom(options.writerKey);
    let reads: FetchLike;
    if (fetchFn) reads = this.appendFetch = fetchFn;
    else {
      const ledger = { peer: 'the ledger', code: 'ERR_TLOG_UNAVAILABLE', timeoutMs: options.timeoutMs ?? CALL_TIMEOUT_MS } as const;
      const a = nodeHttpFetch({ ...ledger, maxBody: MAX_SINK_RESPONSE });
      const r = nodeHttpFetch({ ...ledger, maxBody: MAX_BUNDLE_SIZE });
      this.owned.push(a, r);
      this.appendFetch = a;
      reads = r;
    }
    this.source = httpLogSource(reads, url);
    this.waitMs = options.waitMs ?? ENTRY_WAIT_MS;
  }

  /** Closes the connections this sink keeps open to the ledger. */
  close(): void {
    for (const f of this.owned) f.close();
  }

  /**
   * A sink for the ledger at `url` (http or https), checked once: its checkpoint must be
   * readable, so a service pointed at a wrong or stopped ledger says so at start instead of
   * refusing its first audited operation.
   */
  static async connect(url: string, fetchFn?: FetchLike, options: { writerKey?: string; timeoutMs?: number } = {}): Promise<HttpAuditSink> {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new CustodyError('ERR_USAGE', "the ledger URL must be the ledger's http:// or https:// URL");
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CustodyError('ERR_USAGE', "the ledger URL must be the ledger's http:// or https:// URL");
    const sink = new HttpAuditSink(url, fetchFn, options);
    try {
      await sink.checkpoint();
      await sink.probeWrite();
    } catch (e) {
      sink.close();
      throw e;
    }
    return sink;
  }

  /**
   * Checks that this sink may append, without appending: an empty event is refused by the
   * log's schema (ERR_TLOG_EVENT) only after the writer key was accepted. Throws the log's
   * ERR_AUTH_REQUIRED or ERR_AUTH_INVALID when it is not.
   */
  private async probeWrite(): Promise<void> {
    const { status, body } = await this.postEvent('{}');
    const code = body.code;
    if (status === 401 && (code === 'ERR_AUTH_REQUIRED' || code === 'ERR_AUTH_INVALID')) {
      throw new CustodyError(code, code === 'ERR_AUTH_REQUIRED' ? 'the ledger takes appends from its writers only: give this service a writer key' : 'the ledger refused this writer key');
    }
    if (status !== 400 || code !== 'ERR_TLOG_EVENT') throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'the ledger did not answer a write as a Custody ledger does', { detail: { status } });
  }

  /**
   * `POST /events` with this sink's writer key: the status and the answer's JSON object (empty
   * when it is not JSON). The answer is a small JSON object; a ledger (or something in between)
   * sending more is refused, as is one that does not answer (ERR_TLOG_UNAVAILABLE).
   */
  private async postEvent(json: string): Promise<{ status: number; body: { index?: unknown; code?: unknown } }> {
    let res: Response;
    try {
      res = await this.appendFetch(this.url.replace(/\/+$/, '') + '/events', {
        method: 'POST',
        body: json,
        headers: { 'content-type': 'application/json', ...(this.writerKey ? { authorization: `Bearer ${this.writerKey}` } : {}) },
      });
    } catch (e) {
      throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'ledger did not answer', { cause: toCustodyError(e) });
    }
    let body: { index?: unknown; code?: unknown } = {};
    try {
      const parsed = JSON.parse(fromUtf8(await readBodyLimited(res, MAX_SINK_RESPONSE, 'ledger response'))) as unknown;
      if (typeof parsed === 'object' && parsed !== null) body = parsed;
    } catch (e) {
      const err = toCustodyError(e);
      if (err.code === 'ERR_INPUT_TOO_LARGE') throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'ledger response is too large', { cause: err, detail: { status: res.status } });
      // Not JSON: typed by status by the caller.
    }
    return { status: res.status, body };
  }

  /** Whether this sink's writer key would travel in clear: plain http to a host other than loopback. */
  get sendsKeyInClear(): boolean {
    if (!this.writerKey) return false;
    try {
      const u = new URL(this.url);
      return u.protocol === 'http:' && !['127.0.0.1', '[::1]', 'localhost'].includes(u.hostname);
    } catch {
      return false;
    }
  }

  /** The ledger's URL as safe to print: the credentials in it (user and password) are masked. */
  get location(): string {
    try {
      const u = new URL(this.url);
      if (u.username) u.username = '***';
      if (u.password) u.password = '***';
      return u.toString();
    } catch {
      return '(unparseable URL)';
    }
  }

  /** The latest published checkpoint (note text), as the log serves it. */
  async checkpoint(): Promise<string> {
    return fromUtf8(await this.source.readCheckpoint());
  }

  /** The entry at `index`, from its entry bundle, once a published checkpoint includes it (waiting up to `waitMs`). */
  async entry(index: number, waitMs = this.waitMs): Promise<Bytes> {
    const note = await this.checkpointIncluding(index, waitMs);
    return readEntry(this.source, index, checkpointSize(note));
  }

  /**
   * A tlog-proof of `index` against the latest published checkpoint. It does not wait (as
   * TransparencyLog.proof): a gateway serves proofs to anyone, and an index far ahead of the
   * log must not keep it polling the ledger.
   */
  async proof(index: number): Promise<TlogProof> {
    return buildTlogProof(this.source, index, await this.checkpointIncluding(index, 0));
  }

  private async checkpointIncluding(index: number, waitMs: number): Promise<string> {
    if (!Number.isSafeInteger(index) || index < 0) throw new CustodyError('ERR_TLOG_ENTRY', 'index must be a non-negative integer', { detail: { index } });
    const deadline = Date.now() + waitMs;
    for (let pause = 50; ; pause = Math.min(pause * 2, 1000)) {
      const note = await this.checkpoint();
      const size = checkpointSize(note);
      if (index < size) return note;
      if (waitMs === 0) throw new CustodyError('ERR_TLOG_INCLUSION', 'entry is not in a published checkpoint yet', { detail: { index, size } });
      if (Date.now() + pause > deadline) throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'no published checkpoint included the entry in time', { detail: { index, size } });
      // Not unref'd: a service starting up may have nothing else keeping it alive while it waits.
      await new Promise((r) => setTimeout(r, Math.min(pause, deadline - Date.now())));
    }
  }

  async append(event: CustodyEvent | ServiceAuditEvent): Promise<{ index: number }> {
    // Validate locally first: a refused event never leaves the process.
    const { status, body } = await this.postEvent(JSON.stringify(toCustodyEvent(event)));
    if (status !== 200 || !Number.isSafeInteger(body.index) || (body.index as number) < 0) {
      const code = typeof body.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(body.code) ? body.code : 'ERR_TLOG_UNAVAILABLE';
      throw new CustodyError(code, 'ledger refused the event', { detail: { status } });
    }
    return { index: body.index as number };
  }
}
