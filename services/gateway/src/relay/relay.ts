/**
 * Oblivious HTTP relay (RFC 9458 section 2): forwards encapsulated requests, and the public
 * attestation endpoints, to one gateway, so the gateway never learns client addresses. It
 * sends only the content type and an accept header of its own for the route (no Forwarded,
 * X-Forwarded-For, Via, cookies or client headers, not even the client's Accept, whose wording
 * tells browsers and libraries apart) and cannot read what it forwards.
 */
import type { ServerResponse } from 'node:http';
import { Hono } from 'hono';
import { cors } from 'hono/cors';
import type { Logger } from 'pino';
import { checkServiceUrl, CustodyError, isCustodyError, readBodyLimited, toCustodyError } from '@custody/core';
import { nodeGatewayFetch } from '@custody/crypto-node';
import { BodyBudget } from '@custody/ledger-service';
import { ATTESTATION_PATH, CHALLENGE_PATH, MAX_OHTTP_MESSAGE, OhttpMediaType } from '@custody/sdk';
import { BODY_BUDGET_BYTES } from '../http/app.js';
import { problemResponse } from '../http/problem.js';

export interface RelayOptions {
  /** The gateway's base URL. */
  gateway: string;
  /** Transport to the gateway (tests inject one). Default: node:http with keep-alive, answers streamed through as they come. */
  fetch?: typeof fetch;
  logger?: Logger;
  /** Longest wait for the head of the gateway's answer (default 10 minutes: a non-streamed answer's head comes when the model has finished). */
  timeoutMs?: number;
  /**
   * A streamed answer that gives no byte for this long is cut off (default 300 s), and so is a
   * client that takes none of it for this long (its connection backed up). Its length is not bounded.
   */
  idleTimeoutMs?: number;
  /**
   * Bytes of request bodies held at once, across all clients, from their first byte until the
   * gateway begins its answer (default 64 MiB, four of the largest OHTTP messages): slow senders,
   * or a gateway slow to answer, cannot pin more. A body that would cross it is refused with 503
   * ERR_RELAY_OVERLOADED.
   */
  maxArrivingBodyBytes?: number;
}

const FORWARDED_RESPONSE_HEADERS = ['cache-control', 'retry-after', 'x-custody-code'];

/** The transport's `detail.reason`s (crypto-node's nodeHttpFetch) of a gateway that got the request and then failed to answer it. */
const BROKEN_ANSWER = new Set(['cut-off', 'answer', 'status', 'reset']);

/** How long a streamed answer may go without a byte, from the gateway or to the client. */
const DEFAULT_IDLE_TIMEOUT_MS = 300_000;

/** The problem documents every route may answer with. */
const PROBLEM_JSON = 'application/problem+json';

/**
 * Answers with a Content-Length up to this are read whole before they are passed on (one write);
 * longer ones stream through as they come, as chunked ones do, so a client that does not read
 * pins at most a stream's few buffered chunks, not a whole answer of up to 16 MiB.
 */
const WHOLE_ANSWER_MAX = 64 * 1024;

/** The gateway as the relay calls it: a base URL the routes are appended to (see checkServiceUrl). */
function parseGatewayUrl(gateway: string): string {
  return checkServiceUrl(gateway, 'the gateway URL').href.replace(/\/+$/, '');
}

/**
 * The gateway's answer, passed on as it comes. When it breaks off (the gateway closed its
 * connection, or went silent past idleTimeoutMs), `broke` is told and the stream ends where it
 * broke: the caller cuts the client's connection, so the client sees a truncated answer (a chunked
 * OHTTP response without its final chunk does not open). Without a connection to cut (an
 * injected server), the stream errors instead.
 */
function passOn(body: ReadableStream<Uint8Array>, broke: (e: unknown) => boolean): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        let chunk: ReadableStreamReadResult<Uint8Array>;
        try {
          chunk = await reader.read();
        } catch (e) {
          if (broke(e)) controller.close();
          else controller.error(e);
          return;
        }
        if (chunk.done) controller.close();
        else controller.enqueue(chunk.value);
      },
      cancel: (reason) => reader.cancel(reason).catch(() => undefined),
    },
    { highWaterMark: 0 },
  );
}

/** The Node response under a request served by @hono/node-server, when there is one. */
function nodeResponse(env: unknown): ServerResponse | undefined {
  const out = (env as { outgoing?: unknown } | undefined)?.outgoing;
  return out && typeof (out as ServerResponse).destroy === 'function' ? (out as ServerResponse) : undefined;
}

export function createRelayApp(options: RelayOptions): Hono {
  const base = parseGatewayUrl(options.gateway);
  const timeoutMs = options.timeoutMs ?? 600_000;
  const idleMs = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const f: typeof fetch = options.fetch ?? nodeGatewayFetch({ maxSockets: 256, timeoutMs, maxBody: WHOLE_ANSWER_MAX, idleTimeoutMs: idleMs });
  const budget = new BodyBudget(options.maxArrivingBodyBytes ?? BODY_BUDGET_BYTES, () => new CustodyError('ERR_RELAY_OVERLOADED', 'too many request bodies are arriving at the relay at once; retry later'));
  const app = new Hono();
  app.onError((e) => problemResponse(e));
  app.use('*', cors({ origin: '*', allowMethods: ['GET', 'POST'], allowHeaders: ['content-type', 'accept'], maxAge: 600 }));

  /**
   * `accepted`: the request media types forwarded, each with the Accept header the relay sends for
   * it (GET: `accept` alone). `answers`: the media types the route's answers are served as (and
   * problem JSON); any other is served as application/octet-stream, so a gateway cannot have the
   * relay's origin serve a page (HTML, SVG) of its making.
   */
  async function forward(
    path: string,
    method: 'GET' | 'POST',
    req: Request,
    accepted: Readonly<Record<string, string>>,
    answers: readonly string[],
    client?: ServerResponse,
    accept = 'application/json',
  ): Promise<Response> {
    const ct = (req.headers.get('content-type') ?? '').split(';')[0]!.trim().toLowerCase();
    if (method === 'POST' && !Object.hasOwn(accepted, ct)) throw new CustodyError('ERR_OHTTP_MEDIA_TYPE', `the relay forwards only ${Object.keys(accepted).join(', ')}`);
    // Counted against the budget from its first byte until the gateway begins its answer (below).
    const body = method === 'POST' && req.body ? await readBodyLimited(req, MAX_OHTTP_MESSAGE, 'request body', budget) : undefined;
    let res: Response;
    try {
      res = await f(base + path, {
        method,
        headers: method === 'POST' ? { 'content-type': ct, accept: accepted[ct]! } : { accept },
        ...(body ? { body } : {}),
        // A client that leaves ends the call, before the answer's head too (the gateway then
        // stops the model). With an injected fetch, the deadline covers the whole call (fetch has
        // no other); the default transport keeps it to the head and bounds a stream's silences.
        signal: options.fetch ? AbortSignal.any([req.signal, AbortSignal.timeout(timeoutMs)]) : req.signal,
      });
    } catch (e) {
      if (req.signal.aborted) throw new CustodyError('ERR_SDK_GATEWAY', 'the client left before the answer', { cause: e });
      // The default transport's deadline is typed (detail.reason 'timeout'); an injected fetch's is AbortSignal.timeout's TimeoutError.
      const timedOut = isCustodyError(e) ? e.detail?.reason === 'timeout' : (e as { name?: unknown } | null)?.name === 'TimeoutError';
      if (timedOut) {
        options.logger?.warn({ event: 'relay.gateway_timeout' }, 'the gateway did not answer in time');
        throw new CustodyError('ERR_RELAY_GATEWAY_TIMEOUT', `the gateway did not begin its answer within ${timeoutMs} ms`, { cause: e });
      }
      // Reached, then broken: the gateway may have run the model, so this is not "retry later".
      // Only the default transport tells these apart (an injected fetch's failures are "unreachable").
      const reason = isCustodyError(e) ? e.detail?.reason : undefined;
      if (typeof reason === 'string' && BROKEN_ANSWER.has(reason)) {
        options.logger?.warn({ event: 'relay.gateway_answer_broken', reason }, 'the gateway got the request but its answer broke');
        throw new CustodyError('ERR_RELAY_GATEWAY_ANSWER', 'the gateway got the request, but its answer broke off or was not valid HTTP', { cause: e, detail: { reason } });
      }
      options.logger?.warn({ event: 'relay.unreachable' }, 'gateway unreachable');
      throw new CustodyError('ERR_RELAY_GATEWAY_UNREACHABLE', 'the relay could not reach the gateway', { cause: e });
    } finally {
      // The body is held until the gateway begins its answer (the transport may need it until then).
      if (body) budget.give(body.byteLength);
    }
    const headers = new Headers({ 'x-content-type-options': 'nosniff' });
    const type = res.headers.get('content-type');
    if (type !== null) {
      const media = type.split(';')[0]!.trim().toLowerCase();
      headers.set('content-type', media === PROBLEM_JSON || answers.includes(media) ? type : 'application/octet-stream');
    }
    for (const h of FORWARDED_RESPONSE_HEADERS) {
      const v = res.headers.get(h);
      if (v !== null) headers.set(h, v);
    }
    // The body streams through (chunked OHTTP responses arrive token by token). A break is logged
    // here, through the relay's logger, and not left to the HTTP server (which prints it).
    const clientStalled = () => options.logger?.warn({ event: 'relay.client_stalled', path }, "the client stopped reading the gateway's answer; its connection is cut");
    const answer = res.body
      ? passOn(res.body, (e) => {
          // A client that left ended the call itself: nothing to report.
          if (!req.signal.aborted && !client?.destroyed) {
            // Cut off by the gateway, or silent for idleTimeoutMs. A client that stops reading
            // stalls the stream too (the relay stops reading the gateway): with the client's
            // connection backed up, the client is named, not the gateway.
            if (client?.writableNeedDrain === true) clientStalled();
            else options.logger?.warn({ event: 'relay.stream_cut', code: toCustodyError(e).code, path }, "the gateway's answer broke off or stalled; the client's connection is cut");
          }
          if (!client) return false;
          client.destroy();
          return true;
        })
      : null;
    // A client that stops reading holds its connection, the stream's buffered chunks and the call
    // to the gateway for as long as it likes: nothing reads the stream, so the gateway side's
    // silence limit is never looked at. Its own connection, backed up and silent for as long, is cut
    // (ending the call to the gateway, so the gateway stops the model).
    if (answer && client) {
      client.setTimeout(idleMs, () => {
        if (!client.writableNeedDrain || client.destroyed) return;
        clientStalled();
        client.destroy();
      });
    }
    return new Response(answer, { status: res.status, headers });
  }

  app.post('/ohttp', (c) =>
    forward(
      '/ohttp',
      'POST',
      c.req.raw,
      { [OhttpMediaType.Request]: OhttpMediaType.Response, [OhttpMediaType.ChunkedRequest]: OhttpMediaType.ChunkedResponse },
      [OhttpMediaType.Response, OhttpMediaType.ChunkedResponse],
      nodeResponse(c.env),
    ),
  );
  app.get(ATTESTATION_PATH, (c) => {
    // A past bundle by digest passes through; nothing else of the query does.
    const digest = c.req.query('digest');
    if (digest !== undefined && !/^sha256:[0-9a-f]{64}$/.test(digest)) throw new CustodyError('ERR_INPUT_MALFORMED', 'digest must be sha256:<64 lowercase hex>');
    return forward(digest !== undefined ? `${ATTESTATION_PATH}?digest=${digest}` : ATTESTATION_PATH, 'GET', c.req.raw, {}, ['application/json'], nodeResponse(c.env));
  });
  app.post(CHALLENGE_PATH, (c) => forward(CHALLENGE_PATH, 'POST', c.req.raw, { 'application/json': 'application/json' }, ['application/json'], nodeResponse(c.env)));
  app.get('/.well-known/ohttp-gateway', (c) => forward('/.well-known/ohttp-gateway', 'GET', c.req.raw, {}, [OhttpMediaType.Keys], nodeResponse(c.env), OhttpMediaType.Keys));
  app.get('/healthz', (c) => c.json({ ok: true, relay: true }));
  app.notFound(() => problemResponse(new CustodyError('ERR_GATEWAY_ROUTE', 'the relay forwards only OHTTP and attestation discovery')));
  return app;
}
