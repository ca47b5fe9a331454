/**
 * The gateway's HTTP surface. Only `POST /ohttp` reaches the confidential routes; everything
 * else is public metadata (attestation bundle, key configuration, health, metrics) or a clear
 * refusal of plaintext.
 *
 *   GET  /.well-known/custody/attestation             attestation bundle (JSON); ?digest=sha256:<hex> a past one a receipt names
 *   POST /.well-known/custody/attestation/challenge   {"nonce": b64url} -> bundle with fresh evidence
 *   GET  /.well-known/ohttp-gateway                   application/ohttp-keys (RFC 9540)
 *   GET  /.well-known/custody/ledger/proof/:index     C2SP tlog-proof of a receipt or decision
 *   POST /ohttp                                       message/ohttp-req | message/ohttp-chunked-req
 *   *    /v1/*                                        403 ERR_GATEWAY_PLAINTEXT
 *   GET  /healthz, /readyz, /metrics
 */
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Hono, type MiddlewareHandler } from 'hono';
import { cors } from 'hono/cors';
import type { Logger } from 'pino';
import { concatBytes, CustodyError, fromBase64Url, joinBytes, toCustodyError, type Clock } from '@custody/core';
import { formatTlogProof } from '@custody/ledger';
import { BodyBudget, endWhole, readNodeBody } from '@custody/ledger-service';
import {
  ATTESTATION_PATH,
  CHALLENGE_PATH,
  OhttpMediaType,
  RECEIPT_HEADER,
  decapsulateChunkedRequest,
  decapsulateChunkedRequestBytes,
  decapsulateRequest,
  encodeBhttpContentChunk,
  encodeBhttpEnd,
  encodeBhttpResponse,
  encodeBhttpResponseHead,
  encodeKeyConfigs,
  MAX_OHTTP_MESSAGE,
  readAll,
  sealReady,
  type ChunkSealer,
  type HttpField,
  type ReceiptSignFn,
} from '@custody/sdk';
import type { AttestationManager, AttestationSnapshot } from '../attestation/attestation-manager.js';
import type { GatewayKeys } from '../keys/gateway-keys.js';
import type { LedgerSink } from '../ledger/ledger-sink.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { MAX_INNER_BODY, sha256Digest, type InferencePipeline, type InnerResponse } from '../pipeline/inference.js';
import type { ReplayStore } from '../pipeline/replay-guard.js';
import { PROBLEM_CONTENT_TYPE, problemBody, problemResponse, toProblem } from './problem.js';

export interface GatewayAppDeps {
  attestation: AttestationManager;
  keys: GatewayKeys;
  pipeline: InferencePipeline;
  replay: ReplayStore;
  ledger: LedgerSink;
  metrics: GatewayMetrics;
  logger: Logger;
  clock: Clock;
  /** Allow browsers on other origins to call the public endpoints (no credentials). Default true. */
  cors?: boolean;
  /** Longest a streamed answer waits for a client that stopped reading (its socket stays full) before it is cut off. Default WRITE_STALL_MS. */
  writeStallMs?: number;
  /** Most bytes of sealed request bodies held at once while they arrive (all clients together). Default BODY_BUDGET_BYTES. */
  maxArrivingBodyBytes?: number;
}

function essence(ct: string | undefined): string {
  return (ct ?? '').split(';')[0]!.trim().toLowerCase();
}

async function readLimited(body: ReadableStream<Uint8Array> | null, max: number): Promise<Uint8Array> {
  if (!body) return new Uint8Array(0);
  return readAll(body, max);
}

/**
 * A streamed inner answer read whole for a non-chunked exchange, bounded by MAX_INNER_BODY. A
 * client that goes away (`signal`) cancels the backend's stream, and the read fails rather than
 * ending short.
 */
async function readWhole(body: ReadableStream<Uint8Array>, signal: AbortSignal | undefined): Promise<Uint8Array> {
  try {
    return await readAll(body, MAX_INNER_BODY, signal);
  } catch (e) {
    if (signal?.aborted) throw new CustodyError('ERR_GATEWAY_BACKEND', 'the client went away before the answer was complete');
    throw new CustodyError('ERR_GATEWAY_BACKEND', 'the backend response could not be read', { cause: e, detail: { max: MAX_INNER_BODY } });
  }
}

/** The whole request body, bounded: by Content-Length when given (one read), else as a bounded stream. */
async function readRequest(req: Request, max: number): Promise<Uint8Array> {
  const declared = req.headers.get('content-length');
  if (declared !== null && /^[0-9]{1,10}$/.test(declared)) {
    if (Number(declared) > max) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'request body is too large', { detail: { max } });
    return new Uint8Array(await req.arrayBuffer());
  }
  return readLimited(req.body, max);
}

function withReceipt(headers: HttpField[], receipt: string | undefined): HttpField[] {
  return receipt ? [...headers, [RECEIPT_HEADER, receipt]] : headers;
}

const preflight = cors({ origin: '*', allowMethods: ['GET', 'POST'], allowHeaders: ['content-type', 'accept'], maxAge: 600 });

/**
 * CORS for the public endpoints, any origin, no credentials. Preflights go through Hono's
 * middleware; other responses get the one header it would add, set after the handler: Hono's
 * middleware sets it before, and a response whose headers were touched before the handler
 * ran is rebuilt (two Web Response objects and a re-wrapped body stream per request).
 */
const publicCors: MiddlewareHandler = async (c, next) => {
  if (c.req.method === 'OPTIONS') return preflight(c, next);
  await next();
  c.res.headers.set('Access-Control-Allow-Origin', '*');
};

/** Ledger proofs the gateway builds at once for `/.well-known/custody/ledger/proof/:index`. */
const MAX_PROOFS_IN_FLIGHT = 8;
export function createGatewayApp(d: GatewayAppDeps): Hono {
  const app = new Hono();
  app.onError((e) => problemResponse(e));
  app.notFound(() => problemResponse(new CustodyError('ERR_GATEWAY_ROUTE', 'no such route')));
  if (d.cors ?? true) {
    app.use('/.well-known/*', publicCors);
    app.use('/ohttp', publicCors);
  }

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', (c) => {
    const state = d.attestation.state;
    d.metrics.setState(state);
    try {
      d.attestation.assertServing();
    } catch (e) {
      return problemResponse(e);
    }
    return c.json({ ok: true, state });
  });
  app.get('/metrics', async (c) => {
    d.metrics.setState(d.attestation.state);
    return c.text(await d.metrics.registry.metrics(), 200, { 'content-type': d.metrics.registry.contentType });
  });

  app.get(ATTESTATION_PATH, (c) => {
    // `?digest=sha256:<hex>`: a bundle published in an earlier round, the one a receipt names.
    const digest = c.req.query('digest');
    if (digest !== undefined) {
      if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new CustodyError('ERR_INPUT_MALFORMED', 'digest must be sha256:<64 lowercase hex>');
      const b = d.attestation.publishedBundle(digest);
      if (!b) throw new CustodyError('ERR_GATEWAY_BUNDLE_UNKNOWN');
      return c.json(b, 200, { 'cache-control': 'public, max-age=3600' });
    }
    const s = d.attestation.assertServing();
    return c.json(s.bundle, 200, { 'cache-control': 'no-store' });
  });
  app.post(CHALLENGE_PATH, async (c) => {
    let nonce: Uint8Array;
    try {
      const text = new TextDecoder().decode(await readLimited(c.req.raw.body, 4096));
      const v = JSON.parse(text) as { nonce?: unknown };
      if (typeof v.nonce !== 'string' || v.nonce.length > 100) throw new Error('no nonce');
      nonce = fromBase64Url(v.nonce);
    } catch (e) {
      throw new CustodyError('ERR_INPUT_MALFORMED', 'the challenge body must be {"nonce": "<base64url, 8 to 64 bytes>"}', { cause: e });
    }
    return c.json(await d.attestation.challenge(nonce), 200, { 'cache-control': 'no-store' });
  });
  app.get('/.well-known/ohttp-gateway', () => {
    const s = d.attestation.assertServing();
    return new Response(encodeKeyConfigs(s.keyConfigs), { headers: { 'content-type': OhttpMediaType.Keys, 'cache-control': 'no-store' } });
  });
  // Anyone may ask, and each proof reads the ledger (its checkpoint and tiles): a bounded number at once.
  let proofsInFlight = 0;
  app.get('/.well-known/custody/ledger/proof/:index', async (c) => {
    const index = Number(c.req.param('index'));
    if (!Number.isSafeInteger(index) || index < 0) throw new CustodyError('ERR_INPUT_MALFORMED', 'index must be a non-negative integer');
    if (!d.ledger.proof) throw new CustodyError('ERR_GATEWAY_LEDGER', 'this gateway ledger gives no proofs');
    if (proofsInFlight >= MAX_PROOFS_IN_FLIGHT) throw new CustodyError('ERR_GATEWAY_OVERLOADED', 'too many ledger proofs are being built; retry later', { detail: { limit: 'ledger-proofs', max: MAX_PROOFS_IN_FLIGHT } });
    proofsInFlight++;
    try {
      const p = await d.ledger.proof(index).catch((e: unknown) => {
        throw new CustodyError('ERR_GATEWAY_LEDGER', 'no proof for this index', { cause: e });
      });
      return c.text(formatTlogProof(p), 200, { 'content-type': 'text/plain; charset=utf-8' });
    } finally {
      proofsInFlight--;
    }
  });

  app.all('/v1/*', () => problemResponse(new CustodyError('ERR_GATEWAY_PLAINTEXT')));

  const exchange = createOhttpExchange(d);
  const chunked = createChunkedExchange(d);
  app.post('/ohttp', async (c) => {
    const started = performance.now();
    const ct = essence(c.req.header('content-type'));
    if (ct !== OhttpMediaType.ChunkedRequest) {
      const a = await exchange(ct, () => readRequest(c.req.raw, MAX_OHTTP_MESSAGE), started, c.req.raw.signal);
      return new Response(a.body, { status: a.status, headers: a.headers });
    }
    const a = await chunked(() => c.req.raw.body ?? new ReadableStream(), started, c.req.raw.signal);
    return new Response('chunks' in a ? streamOfChunks(a.chunks) : a.body, { status: a.status, headers: a.headers });
  });

  return app;
}

/** A whole answer to an exchange, ready for any HTTP server: status, headers, body bytes. */
export interface ExchangeAnswer {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array<ArrayBuffer>;
}

function refusal(d: GatewayAppDeps, e: unknown): ExchangeAnswer {
  const p = toProblem(e);
  d.metrics.refusals.inc({ code: p.code });
  d.logger.info({ event: 'ohttp.refused', code: p.code }, 'encapsulated request refused');
  const headers: Record<string, string> = { 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store', 'x-custody-code': p.code };
  if (p.status === 503) headers['retry-after'] = '5';
  return { status: p.status, headers, body: problemBody(p) };
}

/**
 * What both exchanges do before the pipeline: refuse at once when the gateway is not attested
 * (an unattested gateway decrypts nothing), open the request (`open` reads and decapsulates
 * it), refuse a replay of it, and fix the receipt signer and attestation under its key id. A
 * refusal comes back as a whole answer.
 */
async function admit<C extends { readonly enc: Uint8Array; readonly header: { readonly keyId: number } }>(
  d: GatewayAppDeps,
  open: () => Promise<{ request: Uint8Array; context: C }>,
): Promise<ExchangeAnswer | { request: Uint8Array; context: C; answer: { snapshot: AttestationSnapshot; sign: ReceiptSignFn }; receivedAt: Date }> {
  try {
    d.attestation.assertServing();
  } catch (e) {
    return refusal(d, e);
  }
  const receivedAt = d.clock();
  try {
    const { request, context } = await open();
    await d.replay.commit(context.enc);
    return { request, context, answer: answerUnder(d, context.header.keyId), receivedAt };
  } catch (e) {
    return refusal(d, e);
  }
}

/**
 * Runs `work` once the pipeline waits for the backend: the pipeline runs on from here through
 * already-settled promises (policy, the decision in the ledger, the call to the backend), and an
 * immediate runs after them, while the model works. Work that does not depend on the answer
 * (the response nonce and keys) then leaves the path between the answer and the client.
 */
function whileTheModelWorks(work: () => void): void {
  setImmediate(work);
}

/**
 * The non-chunked OHTTP exchange (`message/ohttp-req`), independent of the HTTP server: the
 * media type (`ct`, its essence) and the sealed request's bytes in, the sealed response (or a
 * problem document) out. The Hono route and the node:http fast path both answer through it.
 */
export function createOhttpExchange(d: GatewayAppDeps): (ct: string, read: () => Promise<Uint8Array>, started: number, signal?: AbortSignal) => Promise<ExchangeAnswer> {
  return async (ct, read, started, signal) => {
    if (ct !== OhttpMediaType.Request) {
      return refusal(d, new CustodyError('ERR_OHTTP_MEDIA_TYPE', `expected ${OhttpMediaType.Request} or ${OhttpMediaType.ChunkedRequest}`));
    }
    const a = await admit(d, async () => decapsulateRequest(d.keys.ohttp.active, await read()));
    if ('body' in a) return a;
    const { context, answer } = a;
    whileTheModelWorks(() => context.prepareResponse());
    const inner = await d.pipeline.handle(a.request, answer.snapshot, a.receivedAt, answer.sign, signal);
    let content: Uint8Array;
    let status = inner.status;
    let headers = inner.headers;
    try {
      content = inner.body instanceof ReadableStream ? await readWhole(inner.body, signal) : inner.body;
      backendAnswered(inner);
      // An answer Binary HTTP cannot carry fails here, before a receipt is signed and logged for it.
      answerHead(status, headers);
      // Revoked or lapsed while the backend answered: the answer is withheld, and no receipt vouches for it.
      d.attestation.assertServing();
      headers = withReceipt(headers, await inner.finish(sha256Digest(content)));
    } catch (e) {
      // The answer is not going out: its masked values are wiped (finish did it if it ran).
      inner.abandon();
      const p = toProblem(e);
      status = p.status;
      content = problemBody(p);
      headers = [['content-type', PROBLEM_CONTENT_TYPE]];
    }
    const sealedResponse = await context.encapsulateResponse(encodeBhttpResponse({ status, headers, content }));
    observe(d, inner, status, started);
    return { status: 200, headers: { 'content-type': OhttpMediaType.Response, 'cache-control': 'no-store' }, body: sealedResponse };
  };
}

/**
 * Most chunks in one chunked request (each costs an AEAD open): an 8 MiB body in 2 KiB chunks.
 * Clients seal requests in far fewer (the SDK in one); a request cut into tiny chunks would buy
 * seconds of gateway CPU for a megabyte on the wire.
 */
const MAX_REQUEST_CHUNKS = 4096;

/** A sealed chunked request: as it arrives, or read whole. */
export type ChunkedRequestBody = ReadableStream<Uint8Array> | Uint8Array;

/** A chunked exchange's answer: a refusal (whole), or the sealed response chunk by chunk. */
export type ChunkedExchangeAnswer = ExchangeAnswer | { status: 200; headers: Record<string, string>; chunks: SealedChunks };

/**
 * The chunked OHTTP exchange (`message/ohttp-chunked-req`), independent of the HTTP server:
 * the sealed request in, as a stream or read whole (`body` is called once the gateway is known
 * to serve); a refusal, or the sealed response as chunks to write as they come, out. The Hono
 * route and the node:http fast path both answer through it.
 */
export function createChunkedExchange(d: GatewayAppDeps): (body: () => ChunkedRequestBody | Promise<ChunkedRequestBody>, started: number, signal?: AbortSignal) => Promise<ChunkedExchangeAnswer> {
  return async (body, started, signal) => {
    const a = await admit(d, async () => {
      const sealed = await body();
      // Read whole already (the node:http path): opened in one pass, with the same limits and errors.
      if (sealed instanceof Uint8Array) return decapsulateChunkedRequestBytes(d.keys.ohttp.active, sealed, { maxChunks: MAX_REQUEST_CHUNKS, maxPlaintext: MAX_INNER_BODY });
      const decap = await decapsulateChunkedRequest(d.keys.ohttp.active, sealed, { maxChunks: MAX_REQUEST_CHUNKS });
      return { request: await readAll(decap.request, MAX_INNER_BODY), context: decap.context };
    });
    if ('body' in a) return a;
    const { context } = a;
    whileTheModelWorks(() => context.prepareResponse());
    const inner = await d.pipeline.handle(a.request, a.answer.snapshot, a.receivedAt, a.answer.sign, signal);
    // From here the answer holds the tenant's place and the masked values until `finish` or
    // `abandon`: whatever fails before the chunks take it over gives them back.
    try {
      const sealer = await a.context.createResponseSealer();
      return { status: 200, headers: { 'content-type': OhttpMediaType.ChunkedResponse, 'cache-control': 'no-store' }, chunks: sealedBhttpChunks(d, inner, started, sealer) };
    } catch (e) {
      inner.abandon();
      if (inner.body instanceof ReadableStream) await inner.body.cancel(e).catch(() => undefined);
      d.logger.error({ event: 'ohttp.failed', code: toCustodyError(e).code }, 'the sealed response could not be started');
      return refusal(d, new CustodyError('ERR_INTERNAL', undefined, { cause: e }));
    }
  };
}

/**
 * `POST /ohttp` served straight from node:http, both media types, through the same exchanges as
 * the Hono route (no Web Request or Response objects). `message/ohttp-req`: the body is read
 * into one buffer and the sealed answer written in one call. `message/ohttp-chunked-req`: the
 * sealed request is read whole (the pipeline needs all of it before it starts, and the bound is
 * the same OHTTP message limit), and each sealed response chunk is written as it is made.
 * Everything else (other routes, other media types) goes to the app. Returns whether it took the
 * request.
 */
export function createOhttpNodeHandler(d: GatewayAppDeps): (req: IncomingMessage, res: ServerResponse) => boolean {
  const exchange = createOhttpExchange(d);
  const chunked = createChunkedExchange(d);
  const cors = d.cors ?? true;
  // Before any authentication a body is just bytes from anyone: slow senders together hold at most this much.
  const budget = new BodyBudget(d.maxArrivingBodyBytes ?? BODY_BUDGET_BYTES, () => new CustodyError('ERR_GATEWAY_OVERLOADED', 'too many request bodies are arriving at once; retry later'));
  d.metrics.watchArrivingBodies(budget);
  return (req, res) => {
    // `/ohttp` with or without a query: the Hono route takes both, so both are answered here alike.
    const url = req.url ?? '';
    if (req.method !== 'POST' || (url !== '/ohttp' && !url.startsWith('/ohttp?'))) return false;
    const ct = essence(req.headers['content-type']);
    if (ct !== OhttpMediaType.Request && ct !== OhttpMediaType.ChunkedRequest) return false;
    const started = performance.now();
    // A client that goes away before its answer stops the backend's work for it.
    const abandoned = new AbortController();
    res.once('close', () => {
      if (!res.writableFinished) abandoned.abort();
    });
    const answer: Promise<ChunkedExchangeAnswer> =
      ct === OhttpMediaType.Request
        ? exchange(ct, () => readNodeBody(req, MAX_OHTTP_MESSAGE, budget), started, abandoned.signal)
        : chunked(() => readNodeBody(req, MAX_OHTTP_MESSAGE, budget), started, abandoned.signal);
    answer
      .catch((e: unknown) => {
        // The exchanges answer every refusal themselves; reaching here is a defect, answered as one.
        d.logger.error({ event: 'ohttp.failed', code: toCustodyError(e).code }, 'encapsulated request failed');
        return refusal(d, new CustodyError('ERR_INTERNAL'));
      })
      .then(async (a) => {
        if (res.destroyed) {
          if ('chunks' in a) await a.chunks.cancel(new Error('the client went away'));
          return;
        }
        if (cors) a.headers['access-control-allow-origin'] = '*';
        if ('chunks' in a) {
          try {
            res.writeHead(a.status, a.headers);
          } catch (e) {
            // The chunks were never read: cancelling them gives back what the answer holds.
            await a.chunks.cancel(e);
            throw e;
          }
          await writeChunks(a.chunks, res, d);
          return;
        }
        // A refusal answered before the whole body arrived closes the connection after a bounded drain.
        endWhole(req, res, a.status, a.headers, a.body, { ms: DRAIN_MS, maxBytes: DRAIN_BYTES });
      })
      .catch((e: unknown) => {
        d.logger.error({ event: 'ohttp.failed', code: toCustodyError(e).code }, 'encapsulated response could not be written');
        res.destroy();
      });
    return true;
  };
}

/**
 * Bytes of sealed request bodies the fast path holds at once while they arrive: four of the
 * largest, or some sixteen thousand 4 KiB prompts. A body that would cross it is refused with
 * ERR_GATEWAY_OVERLOADED (503, retry later) instead of growing the gateway's memory.
 */
export const BODY_BUDGET_BYTES = 4 * MAX_OHTTP_MESSAGE;

/**
 * Longest a streamed answer waits by default for a client that stopped reading (its socket stays
 * full): then the response is cut off, which cancels the backend's work for it, instead of
 * holding it open.
 */
const WRITE_STALL_MS = 60_000;

/**
 * Writes sealed chunks to a node:http response as they are made, waiting for the socket when it
 * is full (for at most `d.writeStallMs`, then the response is cut off). Whenever the response
 * does not reach its end (the client went away, it stopped reading, or the response was
 * destroyed), the chunks are cancelled: nothing more is sealed, the backend's stream is
 * cancelled, and no receipt is issued for what the client did not get. A chunk that fails cuts
 * the response off without its end, so the client sees a truncated message.
 */
async function writeChunks(chunks: SealedChunks, res: ServerResponse, d: GatewayAppDeps): Promise<void> {
  const stallMs = d.writeStallMs ?? WRITE_STALL_MS;
  const gone = () => {
    if (!res.writableFinished) void chunks.cancel(new Error('the client went away')).catch(() => undefined);
  };
  res.once('close', gone);
  let ended = false;
  try {
    for (;;) {
      const chunk = await chunks.next();
      if (chunk === undefined) {
        ended = true;
        break;
      }
      if (res.destroyed) break;
      if (!res.write(chunk)) {
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(stalled);
            res.off('drain', done);
            res.off('close', done);
            resolve();
          };
          const stalled = setTimeout(() => {
            d.logger.info({ event: 'stream.stalled', waitedMs: stallMs }, 'the client stopped reading a streamed response; cut off');
            done();
            res.destroy();
          }, stallMs);
          res.on('drain', done);
          res.on('close', done);
        });
      }
    }
    if (ended && !res.destroyed) res.end();
  } catch {
    // Already logged where it failed (stream.failed).
    res.destroy();
  } finally {
    res.off('close', gone);
    // Cut off before the end: a destroyed response may not have emitted 'close' yet (the socket
    // closes later), so the chunks are cancelled here rather than left to `gone`.
    if (!ended) await chunks.cancel(new Error('the response was cut off')).catch(() => undefined);
  }
}

/** Longest and most a refused request's remaining body is read before its connection is closed. */
const DRAIN_MS = 500;
const DRAIN_BYTES = 64 * 1024 * 1024;

/**
 * The receipt signer and attestation for a request sealed to OHTTP key `keyId`, fixed at
 * decapsulation: the receipt key published beside that key (a shared identity's previous
 * version while its key is in grace), and the attestation that bound both.
 */
function answerUnder(d: GatewayAppDeps, keyId: number): { snapshot: AttestationSnapshot; sign: ReceiptSignFn } {
  const signer = d.keys.receiptFor(keyId);
  return { snapshot: d.attestation.snapshotFor(keyId, signer.publicKey), sign: signer.sign };
}

/**
 * The inner answer's Binary HTTP head (indeterminate-length framing), which checks its status
 * and header fields the way both encodings do. One Binary HTTP cannot carry is the backend's
 * failure (ERR_GATEWAY_BACKEND, 502), never the client's malformed input.
 */
function answerHead(status: number, headers: readonly HttpField[]): Uint8Array {
  try {
    return encodeBhttpResponseHead({ status, headers });
  } catch (e) {
    throw new CustodyError('ERR_GATEWAY_BACKEND', 'the answer cannot be carried in Binary HTTP', { cause: e });
  }
}

function observe(d: GatewayAppDeps, inner: InnerResponse, status: number, started: number): void {
  const streamed = inner.streamed ? 'true' : 'false';
  const labels = { route: inner.routeLabel, streamed };
  const ms = performance.now() - started;
  d.metrics.requests.inc({ ...labels, status: String(status) });
  d.metrics.duration.observe(labels, ms / 1000);
  // What the gateway added: only for answers the backend gave whole (not a failure mid-way).
  const b = inner.backend;
  if (b?.ended !== undefined) d.metrics.overhead.observe(labels, Math.max(0, ms - (b.ended - b.started)) / 1000);
}

/** Marks the end of the backend's answer when a stream of it reaches its end (once). */
function backendAnswered(inner: InnerResponse): void {
  if (inner.backend && inner.backend.ended === undefined) inner.backend.ended = performance.now();
}

/** What `reader.read()` gives when nothing is queued yet (see `sealedBhttpStream`). */
const NOT_YET = Symbol('not yet');
const notYet = Promise.resolve(NOT_YET);
/** Content bytes, and pieces, gathered into one sealed chunk at most (pieces already waiting, never waited for). */
const MAX_GATHER = 64 * 1024;
const MAX_GATHER_PIECES = 1024;

/** Sealed response chunks, pulled one at a time by whatever writes them. */
export interface SealedChunks {
  /** The next sealed chunk; undefined after the final one, or once cancelled. Throws (after logging) when the answer fails mid-way. */
  next(): Promise<Uint8Array | undefined>;
  /** The client went away: nothing more is sealed, and no receipt is finished or logged. */
  cancel(reason?: unknown): Promise<void>;
}

/** Sealed chunks as a Web stream (for the Hono route). */
function streamOfChunks(chunks: SealedChunks): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = await chunks.next();
        if (chunk === undefined) controller.close();
        else controller.enqueue(chunk);
      } catch (e) {
        controller.error(e);
      }
    },
    cancel: (reason) => chunks.cancel(reason),
  });
}

/**
 * The inner response as an indeterminate-length Binary HTTP message, sealed as chunked OHTTP:
 * the head leaves with the first content piece; then each sealed chunk carries the next piece
 * together with every piece already waiting behind it (tokens leave as soon as they come, and a
 * backend that runs ahead of the socket costs one seal per batch, not per token); the end
 * carries the receipt as a trailer, finished over the digest of the whole content, sealed as the
 * final chunk (with the last content when that was already there). An error mid-stream fails
 * `next`, and the client sees a truncated message rather than a short one.
 */
function sealedBhttpChunks(d: GatewayAppDeps, inner: InnerResponse, started: number, sealer: ChunkSealer): SealedChunks {
  // First, before the body's reader is taken: when it throws, the caller can still cancel the body.
  let head: Uint8Array | undefined = answerHead(inner.status, inner.headers);
  const hash = createHash('sha256');
  const reader = inner.body instanceof ReadableStream ? inner.body.getReader() : undefined;
  let pendingBytes = inner.body instanceof ReadableStream ? undefined : inner.body;
  /** Set when the consumer cancels: nothing more is sealed, finished or logged as a receipt. */
  let cancelled = false;
  /** Set once the final chunk is sealed (or the answer failed): `next` gives nothing more. */
  let over = false;
  /** A read that lost the race in `waiting`, still owed to the next call. */
  let owed: Promise<ReadableStreamReadResult<Uint8Array>> | undefined;
  const read = (): Promise<ReadableStreamReadResult<Uint8Array>> => {
    const r = owed ?? reader!.read();
    owed = undefined;
    return r;
  };
  /** The next piece of content, or undefined at its end. */
  const piece = async (): Promise<Uint8Array | undefined> => {
    if (pendingBytes) {
      const b = pendingBytes;
      pendingBytes = undefined;
      return b;
    }
    if (!reader) return undefined;
    const r = await read();
    return r.done ? undefined : r.value;
  };
  /**
   * The next piece if it is already queued (a read of a queued chunk is settled when it
   * returns, so it wins the race against an already-resolved marker), undefined at the end,
   * NOT_YET otherwise; a read that is not yet settled is kept for the next call.
   */
  const waiting = async (): Promise<Uint8Array | undefined | typeof NOT_YET> => {
    if (!reader) return undefined;
    const p = read();
    const r = await Promise.race<ReadableStreamReadResult<Uint8Array> | typeof NOT_YET>([p, notYet]);
    if (r === NOT_YET) {
      owed = p;
      return NOT_YET;
    }
    return r.done ? undefined : r.value;
  };
  /** Set once the receipt is being finished: a cancel after that cannot withhold it. */
  let finishing = false;
  /** Seals the end (after `lead`) with the receipt over the whole content. */
  const end = async (lead: Uint8Array, first: boolean): Promise<Uint8Array | undefined> => {
    backendAnswered(inner);
    // Revoked or lapsed while it streamed: no receipt vouches for the answer, which ends truncated.
    d.attestation.assertServing();
    finishing = true;
    const receipt = await inner.finish('sha256:' + hash.digest('hex'));
    const last = await sealReady(sealer, concatBytes(lead, encodeBhttpEnd(receipt ? [[RECEIPT_HEADER, receipt]] : [])), { first, final: true });
    over = true;
    if (cancelled) return undefined;
    observe(d, inner, inner.status, started);
    return last;
  };
  const next = async (): Promise<Uint8Array | undefined> => {
    const first = head !== undefined;
    let lead = head ?? new Uint8Array(0);
    head = undefined;
    const p = await piece();
    if (cancelled) return undefined;
    if (p === undefined) return end(lead, first);
    const pieces = [p];
    let size = p.length;
    let ended = false;
    for (let n = 1; size < MAX_GATHER && n < MAX_GATHER_PIECES; n++) {
      const more = await waiting();
      if (cancelled) return undefined;
      if (more === NOT_YET) break;
      if (more === undefined) {
        ended = true;
        break;
      }
      if (more.length === 0) continue;
      pieces.push(more);
      size += more.length;
    }
    // Nothing more leaves once the gateway is no longer attested (fail closed mid-stream).
    d.attestation.assertServing();
    const content = pieces.length === 1 ? p : joinBytes(pieces, size);
    hash.update(content);
    if (content.length > 0) lead = concatBytes(lead, encodeBhttpContentChunk(content));
    if (ended) return end(lead, first);
    const sealed = await sealReady(sealer, lead, { first });
    return cancelled ? undefined : sealed;
  };
  return {
    async next() {
      if (over || cancelled) return undefined;
      try {
        return await next();
      } catch (e) {
        over = true;
        // The answer will not be completed: its masked values are wiped.
        inner.abandon();
        if (cancelled) return undefined;
        const code = toCustodyError(e).code;
        d.logger.warn({ event: 'stream.failed', route: inner.routeLabel, code }, 'streamed response failed; the client sees a truncated message');
        d.metrics.streamsFailed.inc({ route: inner.routeLabel, code: code.slice(0, 48) });
        if (!finishing) d.metrics.receipts.inc({ outcome: 'withheld' });
        await reader?.cancel(e).catch(() => undefined);
        throw e;
      }
    },
    async cancel(reason) {
      // The client went away: what it did not get is not vouched for. No receipt is signed or
      // logged for a cut-short stream (a read pending in `next` resolves as done, which must not
      // read as the end of the answer).
      if (cancelled || over) return;
      cancelled = true;
      inner.abandon();
      if (finishing) d.logger.info({ event: 'stream.cancelled', route: inner.routeLabel, receipt: 'issued' }, 'streamed response cancelled by the client at its end, after its receipt was issued');
      else d.logger.info({ event: 'stream.cancelled', route: inner.routeLabel }, 'streamed response cancelled by the client; no receipt');
      // A backend stream that already failed rejects its cancel: nothing is left to stop, and a
      // rejection here would be unhandled (the callers cancel on socket events).
      await reader?.cancel(reason).catch(() => undefined);
    },
  };
}
