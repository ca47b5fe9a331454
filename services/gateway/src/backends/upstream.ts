/**
 * An OpenAI-compatible upstream inside the same trust boundary (vLLM, llama.cpp's server,
 * Ollama's /v1): requests are forwarded as bytes, responses (streams included) pass through.
 * An upstream cannot prove which weights it serves, so a model digest comes from configuration.
 */
import { CustodyError } from '@custody/core';
import type { BackendRequest, BackendResponse, ModelBackend, ModelInfo } from './types.js';

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
  timeoutMs?: number;
}

const PATHS: Record<BackendRequest['route'], string> = {
  'chat.completions': '/v1/chat/completions',
  completions: '/v1/completions',
  embeddings: '/v1/embeddings',
};

export class UpstreamBackend implements ModelBackend {
  readonly kind = 'upstream';
  private readonly base: string;
  private readonly f: typeof fetch;

  private constructor(
    private readonly options: UpstreamBackendOptions,
    private readonly list: ModelInfo[],
  ) {
    this.base = options.url.replace(/\/+$/, '').replace(/\/v1$/, '');
    this.f = options.fetch ?? fetch;
  }

  static async create(options: UpstreamBackendOptions): Promise<UpstreamBackend> {
    const probe = new UpstreamBackend(options, []);
    const models = options.models ?? (await probe.listUpstream());
    const withDigests = models.map((m) => (options.digests?.[m.id] ? { ...m, digest: options.digests[m.id]! } : m));
    return new UpstreamBackend(options, withDigests);
  }

  private headers(accept: string): Record<string, string> {
    return { 'content-type': 'application/json', accept, ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}) };
  }

  private async listUpstream(): Promise<ModelInfo[]> {
    let res: Response;
    try {
      res = await this.f(`${this.base}/v1/models`, { headers: this.headers('application/json'), signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000) });
    } catch (e) {
      throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the upstream model server could not be reached', { cause: e });
    }
    if (!res.ok) throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', `the upstream answered ${res.status} to GET /v1/models`, { detail: { status: res.status } });
    const body = (await res.json()) as { data?: { id?: unknown; owned_by?: unknown }[] };
    const list = (body.data ?? []).filter((m) => typeof m.id === 'string').map((m) => ({ id: m.id as string, ...(typeof m.owned_by === 'string' ? { ownedBy: m.owned_by } : {}) }));
    if (list.length === 0) throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the upstream lists no models');
    return list;
  }

  models(): readonly ModelInfo[] {
    return this.list;
  }

  async handle(req: BackendRequest): Promise<BackendResponse> {
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
}
