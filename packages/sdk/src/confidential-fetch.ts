/**
 * `createConfidentialFetch`: a `fetch`-compatible function that sends every request to an
 * attested Custody gateway through Oblivious HTTP, so any client that takes a `fetch` (the
 * official `openai` package among them) becomes a confidential client:
 *
 *   const cfetch = createConfidentialFetch({ gateway: 'https://gw.example', jwks, expectedMeasurements });
 *   const openai = new OpenAI({ baseURL: 'https://gw.example/v1', apiKey: TENANT_KEY, fetch: cfetch });
 *
 * Per request: verify the gateway once (cached until its EAR or the max age runs out); encode
 * the request as Binary HTTP (its Authorization header stays inside the encryption) with a
 * Date for the gateway's replay window; encapsulate (RFC 9458), or chunked OHTTP when the
 * response will stream (`"stream": true` or `Accept: text/event-stream`); decapsulate; verify
 * the receipt against the request sent and the response received (for streams, when the
 * stream ends: a bad receipt errors the stream). The receipt is on the `custody-receipt`
 * header of non-streamed responses, and for every response through `onReceipt` and
 * `receiptOf(response)`.
 */
import { checkServiceUrl, concatBytes, CustodyError, equalBytes, isCustodyError, joinBytes, systemClock, toHex, type Bytes, type HpkePreparedEncap, type RandomSource } from '@custody/core';
import { Sha256 } from '@custody/ledger';
import { decodeBhttpResponse, decodeBhttpResponseStream, encodeBhttpRequest, type HttpField } from './ohttp/bhttp.js';
import { createChunkedRequest, sealReady } from './ohttp/chunked.js';
import { OHTTP_KEY_PROBLEM_TYPE, OhttpMediaType } from './ohttp/media-types.js';
import { encapsulateRequest, MAX_OHTTP_MESSAGE, prepareEncapsulation, type EncapsulateOptions } from './ohttp/ohttp.js';
import type { KeyConfig } from './ohttp/key-config.js';
import { readAll } from './ohttp/stream-buffer.js';
import { discoverGateway, failedDiscovery, fetchAttestationBundleByDigest, joinPath, type FetchLike } from './attestation/discovery.js';
import { bundleAttestationDigest, type AttestationBundle } from './attestation/bundle.js';
import { assertDeviceOptions, assertVerified, type GatewayTrustOptions, type VerificationDocument, type VerifiedGateway } from './attestation/verify.js';
import { digestOf, RECEIPT_HEADER, verifyReceipt, type Receipt } from './receipt/receipt.js';

export const OHTTP_PATH = '/ohttp';

export interface ReceiptInfo {
  readonly url: string;
  readonly status: number;
  readonly streamed: boolean;
}

export interface ConfidentialFetchOptions extends GatewayTrustOptions {
  /** The gateway's base URL (where `/.well-known/custody/attestation` and `/ohttp` live). */
  readonly gateway: string | URL;
  /** An OHTTP relay's base URL: requests and discovery go through it, so the gateway never sees the client address. */
  readonly relay?: string | URL;
  /** The broker's JWKS endpoint when `jwks` is not pinned: fetched from this URL only (never one the gateway names), at each verification of the gateway, so a rotated broker key is picked up. */
  readonly jwksUrl?: string | URL;
  /**
   * Transport for discovery and the encapsulated requests; default `globalThis.fetch`. In Node,
   * give `nodeGatewayFetch()` from @custody/crypto-node: the same calls over node:http, at a
   * fraction of undici's CPU per call (BENCHMARKS.md).
   */
  readonly fetch?: FetchLike;
  readonly clock?: () => Date;
  readonly random?: RandomSource;
  /** Challenge with a fresh nonce at each verification (default: when no broker JWKS is configured). */
  readonly freshNonce?: boolean;
  /**
   * Longest one verification of the gateway may take, from the discovery request to the last byte
   * of the broker's JWKS (default 30 s). Every call waits for the verification in progress, so a
   * gateway, relay or proxy that holds the answer open fails it (ERR_SDK_DISCOVERY,
   * `detail.timedOut`) instead of holding every call; a call's own `signal` ends its wait at once.
   */
  readonly verifyTimeoutMs?: number;
  /** Require a valid receipt on every response except 401, 429 and 5xx (default true). */
  readonly requireReceipt?: boolean;
  readonly onVerified?: (document: VerificationDocument) => void;
  readonly onReceipt?: (receipt: Receipt, info: ReceiptInfo) => void;
}

export interface ConfidentialFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Verifies the gateway now, or returns the cached verification while it is valid. Throws when it fails. */
  verify(): Promise<VerifiedGateway>;
  /** Drops the cached verification and verifies again (new keys, new nonce). */
  refresh(): Promise<VerifiedGateway>;
  /** The latest verification document, passed or failed. */
  readonly lastVerification: VerificationDocument | undefined;
  /**
   * The attestation bundle that verification was of. It names the receipts answered in the same
   * attestation round only: keep `bundleFor(receipt)` with each receipt for `verifyReceiptOffline`.
   */
  readonly lastBundle: AttestationBundle | undefined;
  /**
   * The bundle a receipt names (`gateway.attestationDigest`): `lastBundle` when it is that one,
   * else fetched from the gateway (through the relay, if any), which keeps its past bundles for
   * about two hours of rounds. Checked to have exactly that digest; not trusted (verify offline).
   */
  bundleFor(receipt: Receipt): Promise<AttestationBundle>;
  /** The verified receipt of a response this function returned (settles when a stream ends). */
  receiptOf(response: Response): Promise<Receipt> | undefined;
}

const DROP_HEADERS = new Set(['host', 'content-length', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'date']);
const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
const MAX_PROBLEM = 64 * 1024;
const MAX_REQUEST_BODY = 8 * 1024 * 1024;

const STREAM_TRUE = /"stream"\s*:\s*true/;
const VERIFY_TIMEOUT_MS = 30_000;
/** Longest wait for a "stale key" answer after which the request may still be sent again (staleKeyConfirmed). */
export const STALE_ANSWER_WINDOW_MS = 30_000;

/** `p`, or the signal's reason as soon as it aborts (`p` goes on for whoever else waits for it). */
function untilAborted<T>(p: Promise<T>, signal: AbortSignal | null | undefined): Promise<T> {
  if (!signal) return p;
  if (signal.aborted) {
    // Nobody else may wait for `p`: its failure must not go unhandled.
    p.catch(() => undefined);
    // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- an abort's reason may be any value, as with fetch
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason as Error);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/** Two key configurations that would seal alike: the same id, KEM and public key. */
function sameKeyConfig(a: KeyConfig, b: KeyConfig): boolean {
  return a.keyId === b.keyId && a.kem === b.kem && equalBytes(a.publicKey, b.publicKey);
}

/**
 * Whether a "stale key" answer to a request sealed to `config` under verification `before` is
 * borne out by the verification made after it (`after`), so that sending the request once more
 * cannot have the model answer it twice. The answer itself is not authenticated (a relay can
 * put it in place of an answer the gateway gave); the gateway stops decapsulating a retired key
 * only once it publishes an attestation without it. So: the new verification must no longer list
 * the key, and must be newer than the one the request was sealed under: evidence bound to this
 * client's own nonce, or an EAR issued later (a relay that replays an older bundle, from before
 * the key existed, gets no second answer). And the answer must have come at once
 * (`answeredAfterMs`, within STALE_ANSWER_WINDOW_MS of sending): a gateway refuses a key it no
 * longer holds as soon as the request arrives, while a relay that held the answer until the key
 * was dropped (having had the gateway answer it meanwhile) takes as long as the rest of the
 * key's grace period, minutes with the defaults.
 */
export function staleKeyConfirmed(config: KeyConfig, before: VerifiedGateway, after: VerifiedGateway, answeredAfterMs: number): boolean {
  if (!(answeredAfterMs <= STALE_ANSWER_WINDOW_MS)) return false;
  if (after.keyConfigs.some((k) => sameKeyConfig(k, config))) return false;
  if (after.nonceBound) return true;
  return before.earIssuedAt !== undefined && after.earIssuedAt !== undefined && after.earIssuedAt.getTime() > before.earIssuedAt.getTime();
}

/** Whether the response will be a stream: OpenAI-style `"stream": true`, or an SSE Accept header. */
export function wantsStream(req: OutgoingRequest, body: Uint8Array): boolean {
  if ((req.headers.get('accept') ?? '').includes('text/event-stream')) return true;
  // No size cut-off: the gateway streams whenever the body says `"stream": true`, and a receipt
  // that says it streamed an answer the client received whole is refused (ERR_RECEIPT_MISMATCH).
  if (body.length === 0) return false;
  const text = new TextDecoder().decode(body);
  // Top-level `"stream": true` leaves this text in the JSON (or a \u escape spelling it); only
  // then is the body parsed (a 4 KiB prompt costs a parse otherwise).
  if (!STREAM_TRUE.test(text) && !text.includes('\\u')) return false;
  try {
    const v = JSON.parse(text) as { stream?: unknown };
    return v.stream === true;
  } catch {
    return false;
  }
}

function requestFields(req: OutgoingRequest, now: Date): HttpField[] {
  const out: HttpField[] = [];
  req.headers.forEach((value, name) => {
    if (!DROP_HEADERS.has(name)) out.push([name, value]);
  });
  out.push(['date', now.toUTCString()]);
  return out;
}

/** What the SDK needs of a request: the parts a `Request` would hold, without building one. */
interface OutgoingRequest {
  readonly method: string;
  readonly url: string;
  readonly headers: Headers;
  readonly signal?: AbortSignal | null;
}

const NORMALISED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT']);

/**
 * The request as the Fetch standard would see it, for the common call shape `(url, init)` with
 * a string or byte body (what the `openai` client sends), without a `Request` object and its
 * body stream; undefined for anything else, which goes through `new Request`. Matches Request:
 * method normalisation, an absolute URL, header list, and the `text/plain;charset=UTF-8`
 * content type a string body gets when none is set. Exported for its test only.
 */
export function fastRequest(input: string | URL | Request, init: RequestInit | undefined): { req: OutgoingRequest; body: Bytes } | undefined {
  if (input instanceof Request || (init?.body !== undefined && init.body !== null && typeof init.body !== 'string' && !(init.body instanceof Uint8Array) && !(init.body instanceof ArrayBuffer))) return undefined;
  let url: URL;
  try {
    url = new URL(input);
  } catch {
    return undefined;
  }
  if (url.username || url.password) return undefined;
  const rawMethod = init?.method ?? 'GET';
  const method = NORMALISED_METHODS.has(rawMethod.toUpperCase()) ? rawMethod.toUpperCase() : rawMethod;
  if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(method) || ['CONNECT', 'TRACE', 'TRACK'].includes(method.toUpperCase())) return undefined;
  const b = init?.body;
  if ((method === 'GET' || method === 'HEAD') && b !== undefined && b !== null) return undefined;
  const headers = new Headers(init?.headers);
  let body: Bytes;
  if (typeof b === 'string') {
    body = new TextEncoder().encode(b);
    if (!headers.has('content-type')) headers.set('content-type', 'text/plain;charset=UTF-8');
  } else if (b instanceof Uint8Array) body = new Uint8Array(b);
  else if (b instanceof ArrayBuffer) body = new Uint8Array(b.slice(0));
  else body = new Uint8Array(0);
  return { req: { method, url: url.href, headers, signal: init?.signal ?? null }, body };
}

/**
 * The request to send, through `fastRequest` or a `Request`. Their errors (a TypeError) quote
 * what they refuse: a header value (the API key) or a URL with its credentials. So any error is
 * replaced by ERR_INPUT_MALFORMED, without the error as its cause, which would carry the secret.
 */
async function buildRequest(input: string | URL | Request, init: RequestInit | undefined): Promise<{ req: OutgoingRequest; body: Bytes }> {
  try {
    const fast = fastRequest(input, init);
    if (fast) return fast;
    const r = new Request(input, init);
    return { req: r, body: new Uint8Array(await r.arrayBuffer()) };
  } catch (e) {
    if (isCustodyError(e)) throw e;
    throw new CustodyError('ERR_INPUT_MALFORMED', 'the request cannot be built: its URL (credentials are not allowed), method, headers or body are invalid');
  }
}

function receiptOfTrailers(trailers: readonly HttpField[]): string | null {
  return trailers.find(([n]) => n === RECEIPT_HEADER)?.[1] ?? null;
}

async function problemOf(res: Response): Promise<{ code: string; type?: string }> {
  let text = '';
  try {
    text = res.body ? new TextDecoder().decode(await readAll(res.body, MAX_PROBLEM)) : '';
  } catch {
    // an unreadable body is an unknown refusal
  }
  try {
    const p = JSON.parse(text) as { code?: unknown; type?: unknown };
    const code = typeof p.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(p.code) ? p.code : 'ERR_SDK_GATEWAY';
    return typeof p.type === 'string' ? { code, type: p.type } : { code };
  } catch {
    return { code: 'ERR_SDK_GATEWAY' };
  }
}

/**
 * The code of a refusal the gateway answered inside the encrypted exchange (so it is the
 * gateway's own, not a relay's) as problem JSON, when it has one: what a missing receipt on it
 * is reported as, rather than ERR_RECEIPT_MISSING (the gateway checks the request's date before
 * the tenant, and a request it refuses before the tenant has no receipt).
 */
function innerRefusal(status: number, headers: Headers, content: Uint8Array): InnerRefusal | undefined {
  if (status < 400 || status >= 500 || !(headers.get('content-type') ?? '').startsWith('application/problem+json') || content.length > MAX_PROBLEM) return undefined;
  try {
    const p = JSON.parse(new TextDecoder().decode(content)) as { code?: unknown; facts?: { gatewayTime?: unknown } };
    if (typeof p.code !== 'string' || !/^ERR_[A-Z0-9_]{1,60}$/.test(p.code)) return undefined;
    const t = typeof p.facts?.gatewayTime === 'string' ? Date.parse(p.facts.gatewayTime) : NaN;
    return Number.isFinite(t) ? { code: p.code, gatewayTime: t } : { code: p.code };
  } catch {
    return undefined;
  }
}

interface InnerRefusal {
  code: string;
  /** The gateway's clock when it refused a request's date (ms since the epoch). */
  gatewayTime?: number;
}

/**
 * The gateway refused the request's date (this client's clock is off) and said what time it is
 * (inside the encrypted answer, so it is the gateway's word): the request may be sent once more
 * with a date on the gateway's clock. It reached no tenant check and no model.
 */
class DateRefused extends Error {
  constructor(readonly gatewayTime: number) {
    super('the gateway refused the request date');
  }
}

/** Lets an answer that will not be read go: its connection is not held for a body nobody reads. */
async function discard(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => undefined);
}

/**
 * A streamed answer whose body methods (`text`, `json`, `arrayBuffer`, `bytes`, `blob`) read
 * through the body's reader: Chromium's own methods turn any error of the stream (a receipt that
 * does not verify, a cut stream) into `TypeError: Failed to fetch`, and the caller would not
 * learn that what it read must not be trusted. Errors reach the caller as the stream raised
 * them, on every engine.
 */
function withStreamErrors(response: Response): Response {
  const collect = async (): Promise<Uint8Array> => {
    if (response.bodyUsed || !response.body) throw new TypeError('the body has already been read');
    const reader = response.body.getReader();
    const parts: Uint8Array[] = [];
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      parts.push(r.value);
    }
    return joinBytes(parts);
  };
  const text = async () => new TextDecoder().decode(await collect());
  Object.defineProperties(response, {
    arrayBuffer: { value: async () => (await collect()).slice().buffer, configurable: true },
    bytes: { value: collect, configurable: true },
    text: { value: text, configurable: true },
    json: { value: async (): Promise<unknown> => JSON.parse(await text()), configurable: true },
    blob: { value: async () => new Blob([(await collect()).slice().buffer], { type: response.headers.get('content-type') ?? '' }), configurable: true },
  });
  return response;
}

function contentType(res: Response): string {
  return (res.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
}

export function createConfidentialFetch(options: ConfidentialFetchOptions): ConfidentialFetch {
  // A GPU requirement no gateway could meet is the caller's mistake: say so now, not at the first request.
  assertDeviceOptions(options);
  const transport: FetchLike = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  const clock = options.clock ?? systemClock;
  const requireReceipt = options.requireReceipt ?? true;
  const verifyTimeoutMs = options.verifyTimeoutMs ?? VERIFY_TIMEOUT_MS;
  if (!(verifyTimeoutMs > 0)) throw new CustodyError('ERR_USAGE', 'verifyTimeoutMs must be a positive number of milliseconds');
  for (const [name, value] of [['gateway', options.gateway], ['relay', options.relay]] as const) {
    if (value !== undefined) checkServiceUrl(value, name);
  }
  const minGpus = options.minGpus ?? 0;
  const ohttpUrl = joinPath(options.relay ?? options.gateway, OHTTP_PATH);
  const encapsulateOptions: EncapsulateOptions = options.random ? { random: options.random } : {};
  const receipts = new WeakMap<Response, Promise<Receipt>>();
  let cached: Promise<VerifiedGateway> | undefined;
  /** Added to this client's clock for a request's date, once the gateway refused one and said its time. */
  let dateOffsetMs = 0;
  let last: VerificationDocument | undefined;
  let lastBundle: AttestationBundle | undefined;

  async function verifyNow(): Promise<VerifiedGateway> {
    // A deadline over the whole verification, the bodies' bytes included (a trickle keeps no transport's own timer from firing).
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new CustodyError('ERR_SDK_DISCOVERY', `the gateway's attestation was not fetched within ${verifyTimeoutMs} ms`, { detail: { timedOut: true } })), verifyTimeoutMs);
    let r: Awaited<ReturnType<typeof discoverGateway>>;
    try {
      // Raced too: a transport that does not honour the signal cannot hold the verification past it.
      r = await untilAborted(discoverGateway({ ...options, fetch: transport, now: clock, signal: deadline.signal, ...(options.relay ? { via: options.relay } : {}) }), deadline.signal);
    } catch (e) {
      // Only the deadline rejects here (discoverGateway reports every failure in its document).
      last = failedDiscovery(options.gateway, clock(), e, 'discovery');
      options.onVerified?.(last);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    last = r.document;
    lastBundle = r.bundle;
    options.onVerified?.(r.document);
    return assertVerified(r);
  }

  function verify(): Promise<VerifiedGateway> {
    const current = cached;
    if (current) {
      return current.then((v) => {
        if (v.validUntil.getTime() > clock().getTime()) return v;
        if (cached === current) cached = undefined;
        return verify();
      });
    }
    const p = verifyNow();
    cached = p;
    p.catch(() => {
      if (cached === p) cached = undefined;
    });
    return p;
  }

  function invalidate(): void {
    cached = undefined;
    spare?.prepared.then((p) => p?.discard(), () => undefined);
    spare = undefined;
  }

  // The next request's encapsulation up to the seal (ephemeral key, X25519, and the key schedule
  // for a request of the kind that just went out), made after a request has gone out, while the
  // client waits: the next request then spends only the seal before it leaves. Not with
  // injected randomness (deterministic tests).
  let spare: { config: KeyConfig; prepared: Promise<HpkePreparedEncap | undefined> } | undefined;

  function prepareNext(config: KeyConfig, chunked: boolean): void {
    if (options.random || spare) return;
    setTimeout(() => {
      if (spare) return;
      spare = { config, prepared: prepareEncapsulation(config, { chunked }).catch(() => undefined) };
    }, 0);
  }

  async function takePrepared(config: KeyConfig): Promise<HpkePreparedEncap | undefined> {
    const s = spare;
    if (!s) return undefined;
    spare = undefined;
    const p = await s.prepared;
    if (p && (s.config !== config || p.used)) {
      p.discard();
      return undefined;
    }
    return p;
  }

  async function encapsulateOptionsFor(config: KeyConfig): Promise<EncapsulateOptions> {
    const prepared = await takePrepared(config);
    return prepared ? { ...encapsulateOptions, prepared } : encapsulateOptions;
  }

  async function send(req: OutgoingRequest, body: Bytes, stream: boolean, retried: boolean): Promise<Response> {
    // An aborted call neither starts nor joins a verification.
    if (req.signal?.aborted) throw req.signal.reason;
    const gw = await untilAborted(verify(), req.signal);
    const url = new URL(req.url);
    const bhttp = encodeBhttpRequest(
      {
        method: req.method,
        scheme: url.protocol.replace(/:$/, ''),
        authority: url.host,
        path: url.pathname + url.search,
        headers: requestFields(req, new Date(clock().getTime() + dateOffsetMs)),
        content: body,
      },
      stream ? { framing: 'indeterminate' } : {},
    );
    const requestDigest = digestOf(bhttp);
    const config = gw.keyConfigs[0]!;
    let outer: Response;
    /** When the sealed request was handed to the transport (monotonic ms). */
    let sentAt: number;
    let open: (res: Response) => Promise<Response>;
    if (!stream) {
      const { encapsulatedRequest, context } = await encapsulateRequest(config, bhttp, await encapsulateOptionsFor(config));
      prepareNext(config, false);
      sentAt = performance.now();
      outer = await transport(ohttpUrl, {
        method: 'POST',
        headers: { 'content-type': OhttpMediaType.Request, accept: OhttpMediaType.Response },
        body: encapsulatedRequest,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      open = async (res) => {
        if (contentType(res) !== OhttpMediaType.Response) {
          await discard(res);
          throw new CustodyError('ERR_OHTTP_MEDIA_TYPE', 'the gateway did not answer with message/ohttp-res');
        }
        const sealed = await readAll(res.body!, MAX_OHTTP_MESSAGE);
        const inner = decodeBhttpResponse(await context.decapsulateResponse(sealed));
        const headers = new Headers(inner.headers as [string, string][]);
        const status = inner.status;
        const refusal = innerRefusal(status, headers, inner.content);
        if (!retried && refusal?.code === 'ERR_GATEWAY_REQUEST_DATE' && refusal.gatewayTime !== undefined) throw new DateRefused(refusal.gatewayTime);
        const receipt = checkReceipt(gw, headers.get(RECEIPT_HEADER), { requestDigest: await requestDigest, responseDigest: await digestOf(inner.content), status, streamed: false, refusal: refusal?.code });
        const response = new Response(NULL_BODY_STATUS.has(status) ? null : inner.content, { status, headers });
        track(response, receipt, { url: req.url, status, streamed: false });
        if (receipt) await receipt;
        return response;
      };
    } else {
      // The whole request is known, so it is sealed up front: browsers only stream request bodies over HTTP/2.
      // Sealed straight into bytes: the prefix and the request's chunks, then an empty final
      // chunk (the bytes encapsulateChunkedRequest's stream would give, without the stream).
      const { sealer, context } = await createChunkedRequest(config, await encapsulateOptionsFor(config));
      const sealed = concatBytes(await sealReady(sealer, bhttp, { first: true }), await sealer.seal(new Uint8Array(0), true));
      prepareNext(config, true);
      sentAt = performance.now();
      outer = await transport(ohttpUrl, {
        method: 'POST',
        headers: { 'content-type': OhttpMediaType.ChunkedRequest, accept: OhttpMediaType.ChunkedResponse },
        body: sealed,
        ...(req.signal ? { signal: req.signal } : {}),
      });
      open = async (res) => {
        if (contentType(res) !== OhttpMediaType.ChunkedResponse) {
          await discard(res);
          throw new CustodyError('ERR_OHTTP_MEDIA_TYPE', 'the gateway did not answer with message/ohttp-chunked-res');
        }
        const inner = await decodeBhttpResponseStream(context.decapsulateResponse(res.body!));
        const headers = new Headers(inner.headers as [string, string][]);
        const status = inner.status;
        if (NULL_BODY_STATUS.has(status) || (status >= 400 && status < 500 && (headers.get('content-type') ?? '').startsWith('application/problem+json'))) {
          // No body stream to fail when the receipt does not verify (or a short refusal): read the
          // content and the trailers now and check the receipt before the answer is returned, as
          // for a plain one.
          const content = await readAll(inner.body, MAX_OHTTP_MESSAGE);
          const refusal = innerRefusal(status, headers, content);
          if (!retried && refusal?.code === 'ERR_GATEWAY_REQUEST_DATE' && refusal.gatewayTime !== undefined) throw new DateRefused(refusal.gatewayTime);
          const checked = checkReceipt(gw, receiptOfTrailers(await inner.trailers), { requestDigest: await requestDigest, responseDigest: await digestOf(content), status, refusal: refusal?.code });
          const response = new Response(NULL_BODY_STATUS.has(status) ? null : content, { status, headers });
          track(response, checked, { url: req.url, status, streamed: true });
          if (checked) await checked;
          return response;
        }
        const hash = new Sha256();
        let resolveReceipt!: (r: Promise<Receipt> | undefined) => void;
        const receiptReady = new Promise<Promise<Receipt> | undefined>((res) => (resolveReceipt = res));
        let settled = false;
        // Once: a rejected promise made after the receipt was settled would be unhandled.
        const settle = (r: Promise<Receipt> | undefined | (() => Promise<Receipt>)) => {
          if (settled) return;
          settled = true;
          resolveReceipt(typeof r === 'function' ? r() : r);
        };
        // The content as it comes, hashed on the way; at its end the receipt (a trailer) is
        // checked over the whole content. One pull-through layer, not a TransformStream: a pipe
        // costs several promise hops per chunk.
        const source = inner.body.getReader();
        const piped = new ReadableStream<Uint8Array>({
          async pull(controller) {
            let r: ReadableStreamReadResult<Uint8Array>;
            try {
              r = await source.read();
            } catch (e) {
              // A cut or undecryptable stream has no receipt to give: whoever waits for it learns
              // why. A transport's own error (undici's "terminated") becomes a typed one; the
              // caller's abort stays what it is.
              const name = (e as { name?: unknown } | null)?.name;
              const kept = isCustodyError(e) || name === 'AbortError' || name === 'TimeoutError' || (req.signal?.aborted === true && e === req.signal.reason);
              const err = kept ? (e as Error) : new CustodyError('ERR_SDK_GATEWAY', 'the streamed response was cut off before its end', { cause: e });
              settle(() => Promise.reject(err));
              throw err;
            }
            if (!r.done) {
              hash.update(r.value);
              controller.enqueue(r.value);
              return;
            }
            const checked = checkReceipt(gw, receiptOfTrailers(await inner.trailers), { requestDigest: await requestDigest, responseDigest: 'sha256:' + toHex(hash.digest()), status });
            settle(checked);
            // A receipt that does not verify fails the stream: the caller must not trust what it read.
            if (checked) await checked;
            controller.close();
          },
          cancel: (reason) => {
            // The caller stopped reading: there is no receipt for what it did not read.
            settle(() => Promise.reject(new CustodyError('ERR_RECEIPT_MISSING', 'the streamed response was cancelled before its end')));
            return source.cancel(reason);
          },
        });
        const response = withStreamErrors(new Response(piped, { status, headers }));
        track(response, receiptReady.then((r) => r ?? Promise.reject(new CustodyError('ERR_RECEIPT_MISSING'))), { url: req.url, status, streamed: true });
        return response;
      };
    }

    if (outer.status === 200) {
      try {
        return await open(outer);
      } catch (e) {
        if (!(e instanceof DateRefused)) throw e;
        // This client's clock is off: dates go out on the gateway's clock from now on.
        dateOffsetMs = e.gatewayTime - clock().getTime();
        return send(req, body, stream, true);
      }
    }
    const problem = await problemOf(outer);
    // An unknown key id, or a key id that now names another key (the request did not decrypt):
    // the configuration may be stale, so verify the gateway again, and send once more only when
    // that verification bears the answer out (staleKeyConfirmed). The outer answer is not
    // authenticated: a relay could put this error in place of an answer the gateway gave.
    if (problem.code === 'ERR_OHTTP_KEY_ID' || problem.type === OHTTP_KEY_PROBLEM_TYPE || problem.code === 'ERR_OHTTP_REQUEST_DECRYPT') {
      invalidate();
      const answeredAfterMs = performance.now() - sentAt;
      if (!retried && staleKeyConfirmed(config, gw, await untilAborted(verify(), req.signal), answeredAfterMs)) return send(req, body, stream, true);
    }
    if (problem.code.startsWith('ERR_GATEWAY_ATTESTATION') || problem.code === 'ERR_GATEWAY_NOT_ATTESTED') invalidate();
    throw new CustodyError(problem.code, `the gateway refused the encapsulated request (${outer.status} ${problem.code})`, { detail: { status: outer.status, code: problem.code } });
  }

  /**
   * The receipt checked against the request sent, the response received and the verified
   * gateway. `streamed` is known only for a plain exchange (false: the answer came whole); the
   * gateway records whether the model's answer streamed, and a chunked exchange carries whole
   * answers too (errors, embeddings, backends that do not stream), so there it is not compared.
   */
  function checkReceipt(gw: VerifiedGateway, value: string | null, expect: { requestDigest: string; responseDigest: string; status: number; streamed?: boolean; refusal?: string | undefined }): Promise<Receipt> | undefined {
    if (value === null) {
      // 401: no tenant, so no receipt; 429: the tenant was refused at its limit before anything
      // was looked at; 5xx: the gateway withheld the answer (nothing to vouch for).
      if (requireReceipt && expect.status !== 401 && expect.status !== 429 && expect.status < 500) {
        // A refusal the gateway gave inside the encrypted answer: its own code says why there is no receipt.
        if (expect.refusal) return Promise.reject(new CustodyError(expect.refusal, `the gateway refused the request (${expect.status} ${expect.refusal}); it gave no receipt`, { detail: { status: expect.status, code: expect.refusal, receipt: false } }));
        return Promise.reject(new CustodyError('ERR_RECEIPT_MISSING'));
      }
      return undefined;
    }
    return verifyReceipt(value, gw.receiptKeyJwk, expect).then((r) => {
      if (r.gateway.platform !== gw.platform || Object.entries(gw.measurements).some(([k, v]) => r.gateway.measurements[k] !== v)) {
        throw new CustodyError('ERR_RECEIPT_MISMATCH', 'the receipt names another gateway measurement than the verified one');
      }
      // The mode the verified evidence reported (always set on a verified document; a missing one refuses).
      if (r.gateway.simulated !== gw.document.simulated) {
        throw new CustodyError('ERR_RECEIPT_MISMATCH', 'the receipt names another gateway mode (simulated or not) than the verified one', { detail: { field: 'gateway.simulated' } });
      }
      // Replicas that share an identity key share the receipt key, whatever GPUs each has: the
      // replica that answered may not be the one verified, so its receipt must name enough GPUs.
      const gpus = r.gateway.gpus ?? 0;
      if (minGpus > 0 && gpus < minGpus) {
        throw new CustodyError('ERR_RECEIPT_MISMATCH', `the receipt names ${gpus} attested GPU(s), the client requires ${minGpus}`, { detail: { field: 'gateway.gpus', gpus, required: minGpus } });
      }
      return r;
    });
  }

  function track(response: Response, receipt: Promise<Receipt> | undefined, info: ReceiptInfo): void {
    if (!receipt) return;
    receipt.then(
      (r) => options.onReceipt?.(r, info),
      () => undefined,
    );
    receipts.set(response, receipt);
  }

  const fn = (async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const { req, body } = await buildRequest(input, init);
    if (body.byteLength > MAX_REQUEST_BODY) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'request body is too large for the gateway', { detail: { max: MAX_REQUEST_BODY } });
    try {
      return await send(req, body, wantsStream(req, body), false);
    } catch (e) {
      if (isCustodyError(e)) throw e;
      // An abort rejects with its reason, whatever it is, as fetch does.
      if ((e instanceof Error && e.name === 'AbortError') || (req.signal?.aborted === true && e === req.signal.reason)) throw e;
      throw new CustodyError('ERR_SDK_GATEWAY', 'the confidential request failed', { cause: e });
    }
  }) as ConfidentialFetch;
  Object.defineProperties(fn, {
    verify: { value: verify },
    refresh: {
      value: () => {
        invalidate();
        return verify();
      },
    },
    lastVerification: { get: () => last },
    lastBundle: { get: () => lastBundle },
    bundleFor: {
      value: async (receipt: Receipt): Promise<AttestationBundle> => {
        const digest = receipt.gateway.attestationDigest;
        if (lastBundle && (await bundleAttestationDigest(lastBundle)) === digest) return lastBundle;
        return fetchAttestationBundleByDigest(options.relay ?? options.gateway, digest, { fetch: transport });
      },
    },
    receiptOf: { value: (r: Response) => receipts.get(r) },
  });
  return fn;
}
