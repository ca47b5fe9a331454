/**
 * An OpenAI-compatible upstream inside the same trust boundary (vLLM, llama.cpp's server,
 * Ollama's /v1): requests are forwarded as bytes, responses (streams included) pass through.
 * An upstream cannot prove which weights it serves, so a model digest comes from configuration.
 *
 * Transport: node:http(s) with a keep-alive agent (a third of the CPU of the global fetch,
 * which builds Web Request, Response and stream objects for every call); an injected `fetch`
 * replaces it (tests, in-process benchmarks).
 */
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { CustodyError, joinBytes, readBodyLimited } from '@custody/core';
import { MAX_INNER_BODY } from '../pipeline/inference.js';
import type { BackendRequest, BackendResponse, ModelBackend, ModelInfo } from './types.js';

/** Largest model list read from an upstream's GET /v1/models. */
const MAX_MODEL_LIST = 1024 * 1024;

export interface UpstreamBackendOptions {
  /** Server root or its `/v1` base, e.g. http://127.0.0.1:8000 or http://127.0.0.1:11434/v1. */
  url: string;
  /** Served models; default: what the upstream lists at GET /v1/models. */
  models?: ModelInfo[];
  /** Weight digests by model id (`sha256:`), for receipts. */
  digests?: Record<string, string>;
  /** Bearer key for the upstream (never the tenant's key). */
  apiKey?: string;
  fetch?: typeof fetch;
  /** Bound on `GET /v1/models` (default 10 s). */
  timeoutMs?: number;
  /**
   * Longest the upstream may send nothing during an inference call, before its answer starts or
   * between two pieces of a stream (default 600 s: a long answer that is not streamed arrives all
   * at once). A wedged upstream then fails the call (ERR_GATEWAY_BACKEND) instead of holding the
   * request, its pipeline and its masked values for good. Over node:http only (not an injected fetch).
   */
  idleTimeoutMs?: number;
  /**
   * How long a kept-alive connection to the upstream may sit unused before the gateway closes it
   * (default 4 s). Servers close idle connections after their own keep-alive timeout (uvicorn,
   * which serves vLLM, after 5 s; Node after 5 s); a request sent on a connection the server is
   * closing at that moment fails. Closing first, and by the server's `Keep-Alive: timeout=` hint
   * less a second when it sends a shorter one, keeps the gateway out of that race.
   */
  freeSocketTimeoutMs?: number;
}

const IDLE_TIMEOUT_MS = 600_000;
const FREE_SOCKET_TIMEOUT_MS = 4_000;

const PATHS: Record<BackendRequest['route'], string> = {
  'chat.completions': '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
};

/** An IncomingMessage as a byte stream with backpressure; cancelling it drops the connection. */
function webStream(res: IncomingMessage): ReadableStream<Uint8Array> {
  let done = false;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      res.on('data', (chunk: Buffer) => {
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        if ((controller.desiredSize ?? 1) <= 0) res.pause();
      });
      res.once('end', () => {
        done = true;
        controller.close();
      });
      const fail = (e: CustodyError) => {
        if (done) return;
        done = true;
        controller.error(e);
      };
      res.once('error', (e) => fail(backendError(e, 'the upstream stream failed')));
      // A connection that closes before the end of the body is an error, never a short stream.
      res.once('close', () => fail(new CustodyError('ERR_GATEWAY_BACKEND', 'the upstream closed the stream before its end')));
    },
    pull() {
      res.resume();
    },
    cancel() {
      res.destroy();
    },
  });
}

/** The gateway's own typed failure (the idle timeout) as it is; anything else as ERR_GATEWAY_BACKEND with `message`. */
function backendError(e: unknown, message: string): CustodyError {
  return e instanceof CustodyError && e.code === 'ERR_GATEWAY_BACKEND' ? e : new CustodyError('ERR_GATEWAY_BACKEND', message, { cause: e });
}

/**
 * Whether the answer's end can be told from a cut: a Content-Length or chunked encoding, or a
 * status without a body. A body that ends only when the connection closes (HTTP/1.0 style)
 * reads the same whole or cut off, and the gateway signs no receipt for what may be a cut one.
 */
function framed(res: IncomingMessage): boolean {
  const status = res.statusCode ?? 0;
  if (status === 204 || status === 304 || (status >= 100 && status < 200)) return true;
  return res.headers['content-length'] !== undefined || /(?:^|,)\s*chunked\s*$/i.test(res.headers['transfer-encoding'] ?? '');
}

/** The whole body of a non-streamed response, bounded like the pipeline bounds it. */
function readBody(res: IncomingMessage): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    res.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_INNER_BODY) {
        res.destroy();
        reject(new CustodyError('ERR_GATEWAY_BACKEND', 'the backend response could not be read', { detail: { max: MAX_INNER_BODY } }));
        return;
      }
      parts.push(chunk);
    });
    res.once('end', () => resolve(joinBytes(parts, size)));
    res.once('error', (e) => reject(backendError(e, 'the backend response could not be read')));
    // A connection that closes before the end of the body (or is destroyed on an abort) fails the read.
    res.once('close', () => {
      if (!res.complete) reject(new CustodyError('ERR_GATEWAY_BACKEND', 'the backend response could not be read'));
    });
  });
}

export class UpstreamBackend implements ModelBackend {
  readonly kind = 'upstream';
  private readonly base: string;
  private readonly f: typeof fetch | undefined;
  private readonly agent: HttpAgent | HttpsAgent;

  private constructor(
    private readonly options: UpstreamBackendOptions,
    private readonly list: ModelInfo[],
  ) {
    this.base = options.url.replace(/\/+$/, '').replace(/\/v1$/, '');
    this.f = options.fetch;
    // `timeout` is what a free socket gets (node:http also lowers it to a server's keep-alive
    // hint less a second); a call in progress runs under its own `idleTimeoutMs` instead.
    const agentOptions = { keepAlive: true, timeout: options.freeSocketTimeoutMs ?? FREE_SOCKET_TIMEOUT_MS };
    this.agent = this.base.startsWith('https:') ? new HttpsAgent(agentOptions) : new HttpAgent(agentOptions);
  }

  static async create(options: UpstreamBackendOptions): Promise<UpstreamBackend> {
    const probe = new UpstreamBackend(options, []);
    const models = options.models ?? (await probe.listUpstream());
    // Model ids come from the upstream: own members only, so a model named `constructor` finds no digest.
    const digests = options.digests ?? {};
    const withDigests = models.map((m) => (Object.hasOwn(digests, m.id) && digests[m.id] ? { ...m, digest: digests[m.id]! } : m));
    return new UpstreamBackend(options, withDigests);
  }

  private headers(accept: string): Record<string, string> {
    return { 'content-type': 'application/json', accept, ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}) };
  }

  private async listUpstream(): Promise<ModelInfo[]> {
    let res: Response;
    try {
      res = await (this.f ?? fetch)(`${this.base}/v1/models`, { headers: this.headers('application/json'), signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    } catch (e) {
      throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the upstream model server could not be reached', { cause: e });
    }
    if (!res.ok) {
      await res.body?.cancel().catch(() => undefined);
      throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', `the upstream answered ${res.status} to GET /v1/models`, { detail: { status: res.status } });
    }
    let body: unknown;
    try {
      body = JSON.parse(new TextDecoder().decode(await readBodyLimited(res, MAX_MODEL_LIST, 'the upstream model list')));
    } catch (e) {
      throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the upstream answered GET /v1/models with no readable JSON model list', { cause: e });
    }
    const data = (body as { data?: unknown } | null)?.data;
    const entries = Array.isArray(data) ? (data as unknown[]).filter((m): m is { id: string; owned_by?: unknown } => typeof (m as { id?: unknown } | null)?.id === 'string') : [];
    const list = entries.map((m) => ({ id: m.id, ...(typeof m.owned_by === 'string' ? { ownedBy: m.owned_by } : {}) }));
    if (list.length === 0) throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the upstream lists no models');
    return list;
  }

  models(): readonly ModelInfo[] {
    return this.list;
  }

  async handle(req: BackendRequest): Promise<BackendResponse> {
    if (!this.f) return this.post(req);
    let res: Response;
    try {
      res = await this.f(this.base + PATHS[req.route], {
        method: 'POST',
        headers: this.headers(req.stream ? 'text/event-stream' : 'application/json'),
        body: req.body,
        ...(req.signal ? { signal: req.signal } : {}),
      });
    } catch (e) {
      throw new CustodyError('ERR_GATEWAY_BACKEND', 'the upstream model server could not be reached', { cause: e });
    }
    const contentType = res.headers.get('content-type') ?? 'application/json';
    return { status: res.status, contentType, body: res.body ?? new Uint8Array(0) };
  }

  /**
   * POST over node:http(s): a stream for server-sent events, the whole body otherwise. An abort
   * of `req.signal` (the client went away) destroys the request until the response head is in
   * (a stream is then cancelled through its reader). A plain listener, not the `signal` option,
   * whose per-request bookkeeping costs more than the rest of this call.
   */
  private post(req: BackendRequest): Promise<BackendResponse> {
    const url = new URL(this.base + PATHS[req.route]);
    const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
    const signal = req.signal;
    if (signal?.aborted) return Promise.reject(new CustodyError('ERR_GATEWAY_BACKEND', 'the request was cancelled'));
    return new Promise<BackendResponse>((resolve, reject) => {
      const unreachable = (e: unknown) => {
        stopListening();
        reject(backendError(e, 'the upstream model server could not be reached'));
      };
      const r = send(url, { method: 'POST', agent: this.agent, headers: { ...this.headers(req.stream ? 'text/event-stream' : 'application/json'), 'content-length': String(req.body.length) } }, (res) => {
        const status = res.statusCode ?? 502;
        const contentType = res.headers['content-type'] ?? 'application/json';
        if (!framed(res)) {
          stopListening();
          res.destroy();
          reject(new CustodyError('ERR_GATEWAY_BACKEND', 'the upstream answered without a Content-Length or chunked encoding: the end of its body could not be told from a cut', { detail: { framing: 'connection-close' } }));
          return;
        }
        if (contentType.includes('text/event-stream')) {
          stopListening();
          resolve({ status, contentType, body: webStream(res) });
        } else
          readBody(res).then(
            (body) => {
              stopListening();
              resolve({ status, contentType, body });
            },
            (e: unknown) => {
              stopListening();
              reject(e instanceof Error ? e : new Error(String(e)));
            },
          );
      });
      const idleMs = this.options.idleTimeoutMs ?? IDLE_TIMEOUT_MS;
      r.setTimeout(idleMs, () => r.destroy(new CustodyError('ERR_GATEWAY_BACKEND', 'the upstream model server sent nothing for too long', { detail: { idleMs } })));
      const onAbort = () => r.destroy(new Error('the request was cancelled'));
      const stopListening = () => signal?.removeEventListener('abort', onAbort);
      signal?.addEventListener('abort', onAbort, { once: true });
      r.once('error', unreachable);
      r.end(req.body);
    });
  }

  close(): Promise<void> {
    this.agent.destroy();
    return Promise.resolve();
  }
}
