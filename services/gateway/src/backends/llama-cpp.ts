/**
 * In-process GGUF models through node-llama-cpp 3.x (CPU confidential VMs run small models this
 * way). The package and its prebuilt CPU binary (@node-llama-cpp/linux-x64) are dependencies of
 * this service; the GPU variants are replaced by an empty package (see the root package.json
 * `overrides`). The engine is imported lazily, so the gateway starts without it for the demo and
 * upstream backends, and a machine whose binary cannot load gets ERR_GATEWAY_BACKEND_UNAVAILABLE.
 * The engine never builds llama.cpp and never downloads anything (`build: 'never'`,
 * `skipDownload: true`, `gpu: false`).
 *
 * The model file is checked (GGUF header) and hashed before the engine sees it, and stat'ed again
 * after loading (a file swapped in between is refused); the digest goes into every receipt.
 *
 * Concurrency: one llama context with `parallel` sequences; a request takes a free sequence or
 * waits in a bounded FIFO queue (ERR_GATEWAY_OVERLOADED past it). The engine batches the
 * sequences' tokens together. A sequence's KV cache is cleared before and after each request, so
 * no request reuses another's prompt prefix (no cross-tenant prefix-cache timing channel).
 *
 * Routes: chat completions (the model's chat template through LlamaChat), completions
 * (LlamaCompletion), both streamed or not, with usage counts; embeddings through an embedding
 * context. `max_tokens` is bounded by `maxTokensLimit` and the context size.
 */
import { createHash } from 'node:crypto';
import { stat, type FileHandle } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename } from 'node:path';
import { CustodyError, toBase64, type Clock } from '@custody/core';
import type * as NodeLlamaCppModule from 'node-llama-cpp';
import type { ChatHistoryItem, Llama, LlamaContext, LlamaContextSequence, LlamaEmbeddingContext, LlamaModel, LlamaOptions } from 'node-llama-cpp';
import { parseGgufHeader, type GgufHeader } from './gguf.js';
import { openModelFile } from './sealed-model.js';
import type { BackendRequest, BackendResponse, ModelBackend, ModelInfo } from './types.js';

type NodeLlamaCpp = typeof NodeLlamaCppModule;

const HEADER_READ = 32 * 1024 * 1024;
const SMALL_MODEL_BYTES = 32 * 1024 * 1024;

interface FileIdentity {
  size: number;
  mtimeMs: number;
  ino: number;
  dev: number;
}

async function identityOf(path: string): Promise<FileIdentity> {
  const s = await stat(path);
  return { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, dev: s.dev };
}

async function headerOf(fh: FileHandle, size: number): Promise<GgufHeader> {
  const head = new Uint8Array(Math.min(size, HEADER_READ));
  await fh.read(head, 0, head.length, 0);
  return parseGgufHeader(head);
}

/**
 * Reads and checks a GGUF file's header and hashes the whole file (streamed), unless the caller
 * gives the digest it already computed over this very file (a sealed model, checked as it was
 * decrypted). ERR_GATEWAY_MODEL_FILE.
 */
export async function describeGgufFile(path: string, knownDigest?: string): Promise<{ header: GgufHeader; digest: string; size: number; identity: FileIdentity }> {
  const { fh, stat: s } = await openModelFile(path);
  try {
    const header = await headerOf(fh, s.size);
    let digest = knownDigest;
    if (digest === undefined) {
      const hash = createHash('sha256');
      for await (const chunk of fh.createReadStream({ start: 0, highWaterMark: 1 << 20, autoClose: false })) hash.update(chunk as Buffer);
      digest = 'sha256:' + hash.digest('hex');
    }
    return { header, digest, size: s.size, identity: { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, dev: s.dev } };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** A GGUF file's header alone, the file not hashed (what `custody model seal` names a model by). ERR_GATEWAY_MODEL_FILE. */
export async function readGgufHeader(path: string): Promise<GgufHeader> {
  const { fh, stat: s } = await openModelFile(path);
  try {
    return await headerOf(fh, s.size);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

export interface LlamaCppBackendOptions {
  modelPath: string;
  /** The id clients send; default the GGUF `general.name` or the file name. */
  modelId?: string;
  /** The weights' digest when the caller already computed it over this very file (a sealed model); the file is then not hashed again. */
  digest?: string;
  /** Tokens each sequence can see (prompt and answer); default min(2048, the model's training context). */
  contextSize?: number;
  /** Requests generated at the same time (sequences of the one context); default 2. */
  parallel?: number;
  /** Requests waiting for a sequence before ERR_GATEWAY_OVERLOADED; default 32. */
  maxQueue?: number;
  /** Upper bound on `max_tokens` (and the default when a request gives none is min(256, this)); default 1024. */
  maxTokensLimit?: number;
  /**
   * CPU threads per evaluation; default the number of CPUs this process may use, or 1 for a model
   * file under 32 MiB (there ggml's thread synchronisation costs more than it saves: measured
   * ~10x slower with 2 threads on a tiny model on a busy 2-core machine).
   */
  threads?: number;
  /** Where llama.cpp's warnings and errors go; default stderr. Prompts are never logged at these levels. */
  onEngineLog?: (level: string, message: string) => void;
  clock: Clock;
}

const enc = new TextEncoder();
const DEFAULT_MAX_TOKENS = 256;
const MAX_EMBEDDING_INPUTS = 256;

function json(status: number, body: unknown): BackendResponse {
  return { status, contentType: 'application/json', body: enc.encode(JSON.stringify(body)) };
}

/** An OpenAI-shaped client error (the gateway passes backend statuses through). */
function invalid(message: string, code: string, param?: string): BackendResponse {
  return json(400, { error: { message, type: 'invalid_request_error', param: param ?? null, code } });
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return (content as unknown[]).map((p) => (p && typeof p === 'object' && typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : '')).join('');
  return '';
}

/** OpenAI messages as node-llama-cpp chat history, ending with the (empty) answer to generate. */
export function chatHistoryOf(messages: unknown): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  for (const m of Array.isArray(messages) ? (messages as unknown[]) : []) {
    if (!m || typeof m !== 'object') continue;
    const role = (m as { role?: unknown }).role;
    const text = textOf((m as { content?: unknown }).content);
    if (role === 'system' || role === 'developer') history.push({ type: 'system', text });
    else if (role === 'assistant') history.push({ type: 'model', response: [text] });
    else history.push({ type: 'user', text });
  }
  const last = history.at(-1);
  if (!last || last.type !== 'model') history.push({ type: 'model', response: [] });
  return history;
}

function stopsOf(stop: unknown): string[] {
  const list = typeof stop === 'string' ? [stop] : Array.isArray(stop) ? stop.filter((s): s is string => typeof s === 'string') : [];
  return list.filter((s) => s.length > 0).slice(0, 4);
}

function positive(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isInteger(v) && v > 0 ? v : undefined;
}

/**
 * The engine: one per process, loaded on first use and kept (node-llama-cpp binds llama.cpp's
 * log callback to the first instance; disposing it and loading another sends llama.cpp's own
 * messages straight to stderr, past `onEngineLog`).
 */
let engine: Promise<{ mod: NodeLlamaCpp; llama: Llama }> | undefined;
let engineLog: (level: string, message: string) => void = () => undefined;

async function loadEngine(maxThreads: number): Promise<{ mod: NodeLlamaCpp; llama: Llama }> {
  let mod: NodeLlamaCpp;
  try {
    mod = await import('node-llama-cpp');
  } catch (e) {
    throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'node-llama-cpp is not installed: run npm ci (it installs node-llama-cpp and its prebuilt CPU binary), or use --upstream', { cause: e });
  }
  const options: LlamaOptions = {
    gpu: false,
    build: 'never',
    skipDownload: true,
    usePrebuiltBinaries: true,
    progressLogs: false,
    // ggml's worker threads spin: more threads than cores (the engine's default is at least 4) is very slow.
    maxThreads,
    logLevel: mod.LlamaLogLevel.warn,
    logger: (level, message) => engineLog(String(level), message.trimEnd()),
  };
  try {
    return { mod, llama: await mod.getLlama(options) };
  } catch (e) {
    throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the prebuilt llama.cpp CPU binary could not be loaded on this machine', { cause: e });
  }
}

function acquireEngine(onLog: (level: string, message: string) => void, maxThreads: number): Promise<{ mod: NodeLlamaCpp; llama: Llama }> {
  engineLog = onLog;
  const e = (engine ??= loadEngine(maxThreads));
  e.catch(() => {
    if (engine === e) engine = undefined;
  });
  return e;
}

/** A FIFO of requests waiting for a free sequence. */
class SequencePool {
  private readonly free: LlamaContextSequence[];
  private readonly waiting: { resolve: (s: LlamaContextSequence) => void; reject: (e: unknown) => void; signal?: AbortSignal; onAbort?: () => void }[] = [];

  constructor(
    sequences: LlamaContextSequence[],
    private readonly maxQueue: number,
  ) {
    this.free = sequences;
  }

  get queued(): number {
    return this.waiting.length;
  }

  acquire(signal?: AbortSignal): Promise<LlamaContextSequence> {
    if (signal?.aborted) return Promise.reject(new CustodyError('ERR_GATEWAY_BACKEND', 'the request was cancelled'));
    const s = this.free.pop();
    if (s) return Promise.resolve(s);
    if (this.waiting.length >= this.maxQueue) return Promise.reject(new CustodyError('ERR_GATEWAY_OVERLOADED', 'the GGUF engine queue is full', { detail: { queued: this.waiting.length } }));
    return new Promise((resolve, reject) => {
      const w: (typeof this.waiting)[number] = { resolve, reject, ...(signal ? { signal } : {}) };
      if (signal) {
        w.onAbort = () => {
          const i = this.waiting.indexOf(w);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(new CustodyError('ERR_GATEWAY_BACKEND', 'the request was cancelled while queued'));
        };
        signal.addEventListener('abort', w.onAbort, { once: true });
      }
      this.waiting.push(w);
    });
  }

  release(s: LlamaContextSequence): void {
    const w = this.waiting.shift();
    if (!w) {
      this.free.push(s);
      return;
    }
    if (w.signal && w.onAbort) w.signal.removeEventListener('abort', w.onAbort);
    w.resolve(s);
  }

  rejectAll(e: unknown): void {
    for (const w of this.waiting.splice(0)) w.reject(e);
  }
}

/** A serial lock (the embedding context evaluates one text at a time). */
class Mutex {
  private tail: Promise<void> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.tail.then(fn);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

export class LlamaCppBackend implements ModelBackend {
  readonly kind = 'llama-cpp';
  private counter = 0;
  private embeddings: Promise<LlamaEmbeddingContext> | undefined;
  private readonly embeddingLock = new Mutex();
  private closed = false;

  private constructor(
    private readonly mod: NodeLlamaCpp,
    private readonly model: LlamaModel,
    private readonly context: LlamaContext,
    private readonly pool: SequencePool,
    private readonly info: ModelInfo,
    private readonly maxTokensLimit: number,
    private readonly clock: Clock,
  ) {}

  static async create(options: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
    const file = await describeGgufFile(options.modelPath, options.digest);
    const onLog = options.onEngineLog ?? ((level, message) => process.stderr.write(`llama.cpp ${level}: ${message}\n`));
    const threads = Math.max(1, options.threads ?? (file.size < SMALL_MODEL_BYTES ? 1 : availableParallelism()));
    const { mod, llama } = await acquireEngine(onLog, Math.max(threads, availableParallelism()));
    let model: LlamaModel | undefined;
    try {
      try {
        model = await llama.loadModel({ modelPath: options.modelPath, gpuLayers: 0 });
      } catch (e) {
        throw new CustodyError('ERR_GATEWAY_MODEL_FILE', 'the GGUF engine could not load the model file', { cause: e, detail: { file: basename(options.modelPath), reason: 'engine', digest: file.digest } });
      }
      const after = await identityOf(options.modelPath);
      if (after.size !== file.identity.size || after.mtimeMs !== file.identity.mtimeMs || after.ino !== file.identity.ino || after.dev !== file.identity.dev) {
        throw new CustodyError('ERR_GATEWAY_MODEL_FILE', 'the model file changed while it was being hashed and loaded', { detail: { file: basename(options.modelPath), reason: 'changed' } });
      }
      const parallel = Math.max(1, Math.min(options.parallel ?? 2, 16));
      const contextSize = options.contextSize ?? Math.min(2048, model.trainContextSize);
      const context = await model.createContext({ sequences: parallel, contextSize, threads }).catch((e: unknown) => {
        throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the GGUF engine could not create a context of this size (memory)', { cause: e, detail: { contextSize, parallel } });
      });
      const sequences: LlamaContextSequence[] = [];
      for (let i = 0; i < parallel; i++) sequences.push(context.getSequence());
      const id = options.modelId ?? (file.header.name ?? basename(options.modelPath, '.gguf')).replace(/[^A-Za-z0-9._:/@+-]/g, '-');
      const info: ModelInfo = { id, digest: file.digest, label: `${file.header.name ?? id} (GGUF ${file.header.architecture ?? 'unknown arch'}, llama.cpp CPU)` };
      return new LlamaCppBackend(mod, model, context, new SequencePool(sequences, options.maxQueue ?? 32), info, Math.max(1, options.maxTokensLimit ?? 1024), options.clock);
    } catch (e) {
      await model?.dispose().catch(() => undefined);
      throw e;
    }
  }

  models(): readonly ModelInfo[] {
    return [this.info];
  }

  /** Tokens each sequence can hold. */
  get contextSize(): number {
    return this.context.contextSize;
  }

  private maxTokensOf(j: Readonly<Record<string, unknown>>): number {
    const asked = positive(j.max_completion_tokens) ?? positive(j.max_tokens);
    return Math.min(asked ?? Math.min(DEFAULT_MAX_TOKENS, this.maxTokensLimit), this.maxTokensLimit, this.context.contextSize);
  }

  async handle(req: BackendRequest): Promise<BackendResponse> {
    if (this.closed) throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the GGUF backend is closed');
    if (req.route === 'embeddings') return this.embed(req);
    const j = req.json;
    const chat = req.route === 'chat.completions';
    let prompt: string | undefined;
    if (!chat) {
      const p = j.prompt;
      prompt = typeof p === 'string' ? p : Array.isArray(p) && p.length === 1 && typeof p[0] === 'string' ? p[0] : undefined;
      if (prompt === undefined) return invalid('prompt must be a string (one prompt per request)', 'invalid_prompt', 'prompt');
      if (this.model.tokenize(prompt).length >= this.context.contextSize) return invalid(`the prompt does not fit the context of ${this.context.contextSize} tokens`, 'context_length_exceeded', 'prompt');
    } else if (!Array.isArray(j.messages) || j.messages.length === 0) {
      return invalid('messages must be a non-empty array', 'invalid_messages', 'messages');
    }
    const maxTokens = this.maxTokensOf(j);
    const temperature = typeof j.temperature === 'number' && j.temperature >= 0 && j.temperature <= 2 ? j.temperature : 1;
    const topP = typeof j.top_p === 'number' && j.top_p > 0 && j.top_p <= 1 ? j.top_p : undefined;
    const seed = typeof j.seed === 'number' && Number.isInteger(j.seed) ? j.seed >>> 0 : undefined;
    const stops = stopsOf(j.stop);
    const created = Math.floor(this.clock().getTime() / 1000);
    const id = `${chat ? 'chatcmpl' : 'cmpl'}-llama-${++this.counter}`;
    const model = this.info.id;

    const abort = new AbortController();
    const onOuterAbort = () => abort.abort();
    req.signal?.addEventListener('abort', onOuterAbort, { once: true });
    const seq = await this.pool.acquire(req.signal).catch((e: unknown) => {
      req.signal?.removeEventListener('abort', onOuterAbort);
      throw e;
    });

    let completionTokens = 0;
    const generate = async (onText?: (t: string) => void) => {
      await seq.clearHistory();
      const before = seq.tokenMeter.getState();
      const common = {
        maxTokens,
        temperature,
        ...(topP !== undefined ? { topP } : {}),
        ...(seed !== undefined ? { seed } : {}),
        ...(stops.length ? { customStopTriggers: stops } : {}),
        signal: abort.signal,
        stopOnAbortSignal: true,
        onToken: (t: readonly number[]) => void (completionTokens += t.length),
        ...(onText ? { onTextChunk: onText } : {}),
      };
      let text: string;
      let stopReason: string;
      if (chat) {
        const llamaChat = new this.mod.LlamaChat({ contextSequence: seq, autoDisposeSequence: false });
        try {
          const r = await llamaChat.generateResponse(chatHistoryOf(j.messages), common);
          text = r.response;
          stopReason = r.metadata.stopReason;
        } finally {
          llamaChat.dispose({ disposeSequence: false });
        }
      } else {
        const completion = new this.mod.LlamaCompletion({ contextSequence: seq, autoDisposeSequence: false });
        try {
          const r = await completion.generateCompletionWithMeta(prompt!, common);
          text = r.response;
          stopReason = r.metadata.stopReason;
        } finally {
          completion.dispose({ disposeSequence: false });
        }
      }
      const used = seq.tokenMeter.diff(before);
      const usage = { prompt_tokens: used.usedInputTokens, completion_tokens: completionTokens, total_tokens: used.usedInputTokens + completionTokens };
      return { text, finish: stopReason === 'maxTokens' ? 'length' : 'stop', usage };
    };
    const done = async () => {
      req.signal?.removeEventListener('abort', onOuterAbort);
      await seq.clearHistory().catch(() => undefined);
      this.pool.release(seq);
    };
    const engineFailed = (e: unknown) => (e instanceof CustodyError ? e : new CustodyError('ERR_GATEWAY_BACKEND', 'the GGUF engine failed', { cause: e }));

    if (!req.stream) {
      try {
        const r = await generate();
        const choice = chat ? { index: 0, message: { role: 'assistant', content: r.text }, finish_reason: r.finish } : { index: 0, text: r.text, finish_reason: r.finish };
        return json(200, { id, object: chat ? 'chat.completion' : 'text_completion', created, model, choices: [choice], usage: r.usage });
      } catch (e) {
        throw engineFailed(e);
      } finally {
        await done();
      }
    }

    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const event = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}) => enc.encode(`data: ${JSON.stringify({ id, object, created, model, choices: [choice], ...extra })}\n\n`);
    let cancelled = false;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        const push = (b: Uint8Array) => {
          if (!cancelled) controller.enqueue(b);
        };
        if (chat) push(event({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }));
        void generate((t) => t.length > 0 && push(event(chat ? { index: 0, delta: { content: t }, finish_reason: null } : { index: 0, text: t, finish_reason: null })))
          .then((r) => {
            push(event(chat ? { index: 0, delta: {}, finish_reason: r.finish } : { index: 0, text: '', finish_reason: r.finish }, { usage: r.usage }));
            push(enc.encode('data: [DONE]\n\n'));
            if (!cancelled) controller.close();
          })
          .catch((e: unknown) => {
            if (!cancelled) controller.error(engineFailed(e));
          })
          .finally(() => void done());
      },
      cancel() {
        cancelled = true;
        abort.abort();
      },
    });
    return { status: 200, contentType: 'text/event-stream', body };
  }

  private async embed(req: BackendRequest): Promise<BackendResponse> {
    const input = req.json.input;
    const texts = typeof input === 'string' ? [input] : Array.isArray(input) && input.every((x) => typeof x === 'string') ? (input) : undefined;
    if (!texts || texts.length === 0) return invalid('input must be a string or a non-empty array of strings', 'invalid_input', 'input');
    if (texts.length > MAX_EMBEDDING_INPUTS) return invalid(`at most ${MAX_EMBEDDING_INPUTS} inputs per request`, 'too_many_inputs', 'input');
    let promptTokens = 0;
    for (const t of texts) {
      const n = this.model.tokenize(t).length;
      if (n >= this.context.contextSize) return invalid(`an input does not fit the context of ${this.context.contextSize} tokens`, 'context_length_exceeded', 'input');
      promptTokens += n;
    }
    const base64 = req.json.encoding_format === 'base64';
    try {
      const data = await this.embeddingLock.run(async () => {
        this.embeddings ??= this.model.createEmbeddingContext({ contextSize: this.context.contextSize });
        const ctx = await this.embeddings;
        const out = [];
        for (const [index, t] of texts.entries()) {
          const vector = (await ctx.getEmbeddingFor(t)).vector;
          out.push({ object: 'embedding', index, embedding: base64 ? toBase64(new Uint8Array(new Float32Array(vector).buffer)) : [...vector] });
        }
        return out;
      });
      return json(200, { object: 'list', data, model: this.info.id, usage: { prompt_tokens: promptTokens, total_tokens: promptTokens } });
    } catch (e) {
      this.embeddings = undefined;
      throw new CustodyError('ERR_GATEWAY_BACKEND', 'the GGUF engine could not compute embeddings for this model', { cause: e });
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.pool.rejectAll(new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the GGUF backend is closed'));
    const emb = this.embeddings;
    this.embeddings = undefined;
    if (emb) await (await emb.catch(() => undefined))?.dispose();
    await this.context.dispose();
    await this.model.dispose();
  }
}
