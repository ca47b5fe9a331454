import { Agent as HttpAgent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { CustodyError, toCustodyError, type ErrorCode } from '@custody/core';

const NULL_BODY = new Set([204, 205, 304]);

/** Default bound on an answer read whole: 16 MiB. */
export const DEFAULT_MAX_BODY = 16 * 1024 * 1024;

/** The longest delay a Node timer takes (about 24.8 days); a longer one would fire at once. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * A fetch-shaped transport that owns its (keep-alive) connections. It takes what fetch takes, so it fits the SDK's and the ledger clients' `fetch` options; a
 * `Request` object or a streamed request body is refused (ERR_USAGE), the body must be bytes or text.
 */
export interface NodeHttpFetch {
  (input: string | URL | Request, init?: RequestInit): Promise<Response>;
  /** Destroys every connection, idle or in use (a body being streamed errors); later calls open new ones. */
  close(): void;
}

export interface NodeHttpFetchOptions {
  /** Longest answer body read whole (default 16 MiB); a longer one fails the call (ERR_INPUT_TOO_LARGE), unless `stream`. */
  maxBody?: number;
  /**
   * Deadline of a call (default 30 s, `Infinity` for none), however the bytes trickle in: connect
   * to last byte for an answer read whole, connect to the answer's head for a streamed one.
   */
  timeoutMs?: number;
  /** A streamed body that gives no byte for this long fails (default 300 s, as undici's fetch; `Infinity` for never). */
  idleTimeoutMs?: number;
  /** Most connections open at once to one host and port (default 16); more calls wait for one. */
  maxSockets?: number;
  /**
   * Streamed answers (default false). When true, an answer without a Content-Length (chunked)
   * or with one above `maxBody` is handed over at its head, its body a stream that gives the
   * bytes as they arrive (with backpressure: the socket is paused while the reader is behind);
   * an answer with a Content-Length up to `maxBody` is still read whole first. The reader bounds
   * what it reads. When false, every answer is read whole, up to `maxBody`.
   */
  stream?: boolean;
  /** Who is called, in error messages (default "the server"): "the ledger", "the gateway". */
  peer?: string;
  /** The code of a call that ends without an answer (default ERR_SERVICE_UNAVAILABLE): the caller's own, such as ERR_TLOG_UNAVAILABLE. */
  code?: ErrorCode;
}

/**
 * A fetch over node:http and node:https with keep-alive agents. In Node 20 undici's fetch costs
 * several times node:http's CPU per call (bench/gateway.ts measures both); this is the transport
 * the key broker and the gateway use to reach the ledger (twice on every inference request: the
 * policy decision, the receipt), and, set up by `nodeGatewayFetch`, the one a Node client gives
 * the SDK (`createConfidentialFetch({ fetch: nodeGatewayFetch() })`).
 *
 * Differences from fetch: redirects are not followed (a 3xx is the answer); no cookies, cache or
 * CORS; the answer's `url` is empty; a URL with credentials is refused. A call that has not
 * ended within `timeoutMs`, an answer cut off, a status outside 200-599, an answer that is not
 * valid HTTP, a connection lost after the request was sent and one that cannot be made are `code`
 * (`detail.reason`: timeout, cut-off, status, answer, reset, connect; only after `connect` has the
 * server certainly not seen the request); a streamed body cut off,
 * or silent for `idleTimeoutMs`, errors its stream the same way.
 * An aborted call rejects with the signal's reason, as fetch does, and errors a body being streamed.
 */
export function nodeHttpFetch(options: NodeHttpFetchOptions = {}): NodeHttpFetch {
  const maxBody = options.maxBody ?? DEFAULT_MAX_BODY;
  const timeoutMs = checkDelay('timeoutMs', options.timeoutMs ?? 30_000);
  const idleTimeoutMs = checkDelay('idleTimeoutMs', options.idleTimeoutMs ?? 300_000);
  const streaming = options.stream ?? false;
  const peer = options.peer ?? 'the server';
  const code: ErrorCode = options.code ?? 'ERR_SERVICE_UNAVAILABLE';
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 16, timeout: 60_000 };
  const agents = { http: new HttpAgent(agentOptions), https: new HttpsAgent(agentOptions) };
  const unavailable = (reason: string, message: string, cause?: unknown) => new CustodyError(code, message, { detail: { reason }, ...(cause !== undefined ? { cause } : {}) });
  const call = (input: string | URL | Request, init: RequestInit = {}) =>
    new Promise<Response>((resolve, reject) => {
      let u: URL;
      let headers: Record<string, string | number>;
      let body: string | Uint8Array | undefined;
      try {
        u = urlOf(input, peer);
        headers = headersOf(init.headers);
        body = bodyOf(init.body);
      } catch (e) {
        reject(toCustodyError(e, 'ERR_USAGE'));
        return;
      }
      const signal = init.signal ?? undefined;
      if (signal?.aborted) {
        // As fetch: the signal's reason, whatever it is (the default is an AbortError DOMException).
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        reject(signal.reason);
        return;
      }
      const https = u.protocol === 'https:';
      const method = (init.method ?? 'GET').toUpperCase();
      if (body !== undefined) headers['content-length'] = typeof body === 'string' ? Buffer.byteLength(body) : body.byteLength;
      // settled: the call's promise is decided; streaming: a body stream is open after that.
      let settled = false;
      let streamFail: ((e: unknown) => void) | undefined;
      const deadline = Number.isFinite(timeoutMs) ? setTimeout(() => fail(unavailable('timeout', `${peer} did not answer within ${timeoutMs} ms`)), timeoutMs) : undefined;
      deadline?.unref();
      const done = () => {
        settled = true;
        clearTimeout(deadline);
        if (!streamFail) signal?.removeEventListener('abort', onAbort);
      };
      // The first outcome wins; a failure drops the connection (it may be mid-answer).
      const fail = (e: unknown) => {
        if (settled) {
          if (streamFail) {
            const f = streamFail;
            streamFail = undefined;
            signal?.removeEventListener('abort', onAbort);
            f(e);
            req.destroy();
          }
          return;
        }
        done();
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- an abort's reason may be any value, as with fetch
        reject(e);
        req.destroy();
      };
      const onAbort = () => fail(signal!.reason);
      let req: ClientRequest;
      try {
        req = (https ? httpsRequest : httpRequest)(u, { method, headers, agent: https ? agents.https : agents.http }, onResponse);
      } catch (e) {
        // A header Node refuses (a control character in a value): a usage error, nothing sent.
        clearTimeout(deadline);
        reject(new CustodyError('ERR_USAGE', `the request to ${peer} could not be made (a header is invalid)`, { cause: e }));
        return;
      }
      function onResponse(res: IncomingMessage): void {
        const status = res.statusCode ?? 0;
        // Any 3-digit status parses; a Response holds 200-599 only.
        if (status < 200 || status > 599) {
          fail(unavailable('status', `${peer} answered with an invalid HTTP status`));
          return;
        }
        let out: Headers;
        try {
          // From the raw lines, as fetch does: repeated fields kept (each Set-Cookie on its own).
          out = new Headers();
          const raw = res.rawHeaders;
          for (let i = 0; i + 1 < raw.length; i += 2) out.append(raw[i]!, raw[i + 1]!);
        } catch (e) {
          fail(unavailable('answer', `the answer of ${peer} is not valid HTTP`, e));
          return;
        }
        // Read whole or streamed, an answer that breaks off fails the call or errors its stream.
        res.on('error', (e) => fail(unavailable('cut-off', `the answer of ${peer} was cut off`, e)));
        res.once('close', () => {
          if (!res.complete) fail(unavailable('cut-off', `the answer of ${peer} was cut off`));
        });
        const declared = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
        const empty = NULL_BODY.has(status) || method === 'HEAD';
        if (streaming && !empty && (declared === undefined || declared > maxBody)) streamAnswer(res, status, out);
        else readWhole(res, status, out, empty);
      }
      function readWhole(res: IncomingMessage, status: number, out: Headers, empty: boolean): void {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          if (settled) return;
          size += chunk.length;
          if (size > maxBody) fail(new CustodyError('ERR_INPUT_TOO_LARGE', 'the answer is larger than allowed', { detail: { max: maxBody } }));
          else parts.push(chunk);
        });
        res.once('end', () => {
          if (settled) return;
          let answer: Response;
          try {
            answer = new Response(empty ? null : Buffer.concat(parts, size), { status, headers: out });
          } catch (e) {
            fail(unavailable('answer', `the answer of ${peer} is not valid HTTP`, e));
            return;
          }
          done();
          resolve(answer);
        });
      }
      function streamAnswer(res: IncomingMessage, status: number, out: Headers): void {
        let ended = false;
        // The stream is over (read to its end or cancelled): nothing more to fail, no abort to hear.
        const finish = () => {
          ended = true;
          streamFail = undefined;
          signal?.removeEventListener('abort', onAbort);
        };
        const stream = new ReadableStream<Uint8Array>(
          {
            start(controller) {
              streamFail = (e) => {
                if (!ended) controller.error(e);
                ended = true;
              };
              res.on('data', (chunk: Buffer) => {
                if (ended) return;
                controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
                if ((controller.desiredSize ?? 0) <= 0) res.pause();
              });
              res.once('end', () => {
                if (ended) return;
                finish();
                req.setTimeout(0);
                controller.close();
              });
            },
            pull() {
              res.resume();
            },
            cancel() {
              finish();
              req.destroy();
            },
          },
          { highWaterMark: 16 },
        );
        let answer: Response;
        try {
          answer = new Response(stream, { status, headers: out });
        } catch (e) {
          streamFail = undefined;
          fail(unavailable('answer', `the answer of ${peer} is not valid HTTP`, e));
          return;
        }
        done();
        // The head is in: from now on a body that goes quiet for idleTimeoutMs fails (the deadline is over).
        if (Number.isFinite(idleTimeoutMs)) req.setTimeout(idleTimeoutMs, () => fail(unavailable('timeout', `${peer} sent nothing for ${idleTimeoutMs} ms of a streamed answer`)));
        resolve(answer);
      }
      // Written whole to the connection: from then on the server may have acted on the request.
      let sent = false;
      req.once('finish', () => (sent = true));
      req.on('error', (e) => {
        const errno = String((e as NodeJS.ErrnoException).code ?? '');
        if (errno.startsWith('HPE_')) fail(unavailable('answer', `the answer of ${peer} is not valid HTTP`, e));
        else if (sent) fail(unavailable('reset', `${peer} closed the connection after the request was sent, before answering`, e));
        else fail(unavailable('connect', `${peer} could not be reached`, e));
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end(body);
    });
  return Object.assign(call, {
    close() {
      agents.http.destroy();
      agents.https.destroy();
    },
  });
}

function checkDelay(name: string, ms: number): number {
  if (ms === Infinity || (Number.isFinite(ms) && ms > 0 && ms <= MAX_TIMER_MS)) return ms;
  throw new CustodyError('ERR_USAGE', `${name} must be a positive number of milliseconds up to ${MAX_TIMER_MS}, or Infinity`);
}

/** The URL to call: http(s), without credentials (fetch refuses them too). Errors name neither the URL nor its parts. */
function urlOf(input: string | URL | Request, peer: string): URL {
  if (typeof input !== 'string' && !(input instanceof URL)) throw new CustodyError('ERR_USAGE', 'this transport takes a URL, not a Request object');
  let u: URL;
  try {
    u = new URL(input);
  } catch {
    throw new CustodyError('ERR_USAGE', `the URL of ${peer} is not a valid URL`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new CustodyError('ERR_USAGE', `the URL of ${peer} must be http:// or https://`);
  if (u.username || u.password) throw new CustodyError('ERR_USAGE', `the URL of ${peer} must not carry credentials`);
  return u;
}

/** Request headers as Node takes them. A value fetch would refuse is refused without itself in the error (it may be a key). */
function headersOf(h: HeadersInit | undefined): Record<string, string | number> {
  const out: Record<string, string | number> = {};
  if (h === undefined) return out;
  if (h instanceof Headers || Array.isArray(h)) {
    let all: Headers;
    try {
      all = h instanceof Headers ? h : new Headers(h);
    } catch {
      throw new CustodyError('ERR_USAGE', 'a request header is invalid');
    }
    for (const [k, v] of all) out[k] = v;
    return out;
  }
  for (const [k, v] of Object.entries(h)) out[k.toLowerCase()] = v;
  return out;
}

function bodyOf(b: RequestInit['body']): string | Uint8Array | undefined {
  if (b === undefined || b === null) return undefined;
  if (typeof b === 'string') return b;
  if (b instanceof Uint8Array) return b;
  if (b instanceof ArrayBuffer) return new Uint8Array(b);
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  throw new CustodyError('ERR_USAGE', 'this transport sends a body of bytes or text only (not a stream, form or blob)');
}

/**
 * The transport a Node client gives the SDK: `createConfidentialFetch({ ..., fetch:
 * nodeGatewayFetch() })`. Streamed answers as they come; a non-streamed answer's head comes only
 * when the model has finished, so a call may take up to 10 minutes (the openai client's own
 * default) and a stream may be silent for 300 s; failures are ERR_SDK_GATEWAY, as the SDK's own.
 * `overrides` change any of it. `close()` when done.
 */
export function nodeGatewayFetch(overrides: NodeHttpFetchOptions = {}): NodeHttpFetch {
  return nodeHttpFetch({ stream: true, peer: 'the gateway', code: 'ERR_SDK_GATEWAY', timeoutMs: 600_000, idleTimeoutMs: 300_000, ...overrides });
}
