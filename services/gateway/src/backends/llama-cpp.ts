/**
 * In-process GGUF models through node-llama-cpp (CPU confidential VMs run small models this
 * way). node-llama-cpp is an optional dependency that is NOT installed in this repository: it
 * is loaded at run time, and without it `create` fails with ERR_GATEWAY_BACKEND_UNAVAILABLE.
 * The model file is checked (GGUF header) and hashed before the engine sees it; the digest goes
 * into every receipt.
 *
 * Engine calls used (node-llama-cpp 3.x): getLlama(), llama.loadModel({ modelPath }),
 * model.createContext(), context.getSequence(), new LlamaChatSession({ contextSequence }),
 * session.prompt(text, { maxTokens, temperature, onTextChunk }), model.createEmbeddingContext(),
 * embeddingContext.getEmbeddingFor(text).vector.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { CustodyError, type Clock } from '@custody/core';
import { parseGgufHeader, type GgufHeader } from './gguf.js';
import type { BackendRequest, BackendResponse, ModelBackend, ModelInfo } from './types.js';

// The subset of node-llama-cpp's API this backend calls, typed here because the package is optional.
interface LlamaSequence {
  dispose?(): void;
}
interface LlamaContext {
  getSequence(): LlamaSequence;
  dispose(): Promise<void>;
}
interface LlamaEmbeddingContext {
  getEmbeddingFor(text: string): Promise<{ vector: readonly number[] }>;
  dispose(): Promise<void>;
}
interface LlamaModel {
  createContext(options?: { contextSize?: number; threads?: number }): Promise<LlamaContext>;
  createEmbeddingContext(options?: { contextSize?: number }): Promise<LlamaEmbeddingContext>;
  dispose(): Promise<void>;
}
interface LlamaChatSessionLike {
  prompt(text: string, options: { maxTokens?: number; temperature?: number; signal?: AbortSignal; onTextChunk?: (chunk: string) => void }): Promise<string>;
}
interface NodeLlamaCppModule {
  getLlama(options?: { gpu?: false | 'auto' }): Promise<{ loadModel(options: { modelPath: string }): Promise<LlamaModel> }>;
  LlamaChatSession: new (options: { contextSequence: LlamaSequence; systemPrompt?: string }) => LlamaChatSessionLike;
}

/** Loads an optional package by name; undefined when it is not installed. */
async function importOptional(name: string): Promise<unknown> {
  try {
    return (await import(name)) as unknown;
  } catch (e) {
    if (e instanceof Error && /Cannot find (package|module)/.test(e.message)) return undefined;
    throw e;
  }
}

const HEADER_READ = 32 * 1024 * 1024;

/** Reads and checks a GGUF file's header, and hashes the whole file (streamed). */
export async function describeGgufFile(path: string): Promise<{ header: GgufHeader; digest: string; size: number }> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new CustodyError('ERR_GATEWAY_MODEL_FILE', 'the model file cannot be opened', { cause: e, detail: { file: basename(path) } });
  }
  try {
    const { size } = await fh.stat();
    const head = new Uint8Array(Math.min(size, HEADER_READ));
    await fh.read(head, 0, head.length, 0);
    const header = parseGgufHeader(head);
    const hash = createHash('sha256');
    for await (const chunk of fh.createReadStream({ start: 0, highWaterMark: 1 << 20 })) hash.update(chunk as Buffer);
    return { header, digest: 'sha256:' + hash.digest('hex'), size };
  } finally {
    await fh.close().catch(() => undefined);
  }
}

export interface LlamaCppBackendOptions {
  modelPath: string;
  /** The id clients send; default the GGUF `general.name` or the file name. */
  modelId?: string;
  contextSize?: number;
  threads?: number;
  clock: Clock;
}

const enc = new TextEncoder();

export class LlamaCppBackend implements ModelBackend {
  readonly kind = 'llama-cpp';
  private counter = 0;
  private embeddings: Promise<LlamaEmbeddingContext> | undefined;

  private constructor(
    private readonly mod: NodeLlamaCppModule,
    private readonly model: LlamaModel,
    private readonly info: ModelInfo,
    private readonly options: LlamaCppBackendOptions,
  ) {}

  static async create(options: LlamaCppBackendOptions): Promise<LlamaCppBackend> {
    const file = await describeGgufFile(options.modelPath);
    const mod = (await importOptional('node-llama-cpp')) as NodeLlamaCppModule | undefined;
    if (!mod) {
      throw new CustodyError(
        'ERR_GATEWAY_BACKEND_UNAVAILABLE',
        'node-llama-cpp is not installed: add it (and its prebuilt @node-llama-cpp/linux-x64 binary) to serve GGUF models in process, or use --upstream',
        { detail: { model: file.header.name ?? basename(options.modelPath), digest: file.digest } },
      );
    }
    const llama = await mod.getLlama({ gpu: false });
    const model = await llama.loadModel({ modelPath: options.modelPath });
    const id = options.modelId ?? (file.header.name ?? basename(options.modelPath, '.gguf')).replace(/[^A-Za-z0-9._:/@+-]/g, '-');
    return new LlamaCppBackend(mod, model, { id, digest: file.digest, label: `${file.header.name ?? id} (GGUF ${file.header.architecture ?? 'unknown arch'})` }, options);
  }

  models(): readonly ModelInfo[] {
    return [this.info];
  }

  private promptOf(req: BackendRequest): string {
    const j = req.json;
    if (req.route === 'completions') return typeof j.prompt === 'string' ? j.prompt : Array.isArray(j.prompt) ? j.prompt.filter((x) => typeof x === 'string').join('\n') : '';
    const messages = Array.isArray(j.messages) ? (j.messages as Record<string, unknown>[]) : [];
    return messages.map((m) => `${String(m.role)}: ${typeof m.content === 'string' ? m.content : ''}`).join('\n');
  }

  async handle(req: BackendRequest): Promise<BackendResponse> {
    const created = Math.floor(this.options.clock().getTime() / 1000);
    if (req.route === 'embeddings') {
      this.embeddings ??= this.model.createEmbeddingContext(this.options.contextSize ? { contextSize: this.options.contextSize } : {});
      const ctx = await this.embeddings;
      const inputs = typeof req.json.input === 'string' ? [req.json.input] : Array.isArray(req.json.input) ? (req.json.input as unknown[]).filter((x): x is string => typeof x === 'string') : [];
      const data = [];
      for (const [index, t] of inputs.entries()) data.push({ object: 'embedding', index, embedding: [...(await ctx.getEmbeddingFor(t)).vector] });
      return { status: 200, contentType: 'application/json', body: enc.encode(JSON.stringify({ object: 'list', data, model: this.info.id })) };
    }
    const context = await this.model.createContext({ ...(this.options.contextSize ? { contextSize: this.options.contextSize } : {}), ...(this.options.threads ? { threads: this.options.threads } : {}) });
    const session = new this.mod.LlamaChatSession({ contextSequence: context.getSequence() });
    const maxTokens = typeof req.json.max_tokens === 'number' ? req.json.max_tokens : 256;
    const temperature = typeof req.json.temperature === 'number' ? req.json.temperature : 0;
    const id = `${req.route === 'chat.completions' ? 'chatcmpl' : 'cmpl'}-llama-${++this.counter}`;
    const chat = req.route === 'chat.completions';
    const prompt = this.promptOf(req);
    if (!req.stream) {
      try {
        const text = await session.prompt(prompt, { maxTokens, temperature, ...(req.signal ? { signal: req.signal } : {}) });
        const choice = chat ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' } : { index: 0, text, finish_reason: 'stop' };
        return { status: 200, contentType: 'application/json', body: enc.encode(JSON.stringify({ id, object: chat ? 'chat.completion' : 'text_completion', created, model: this.info.id, choices: [choice] })) };
      } finally {
        await context.dispose();
      }
    }
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const model = this.info.id;
    const event = (choice: Record<string, unknown>) => enc.encode(`data: ${JSON.stringify({ id, object, created, model, choices: [choice] })}\n\n`);
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        try {
          await session.prompt(prompt, {
            maxTokens,
            temperature,
            ...(req.signal ? { signal: req.signal } : {}),
            onTextChunk: (t) => controller.enqueue(event(chat ? { index: 0, delta: { content: t }, finish_reason: null } : { index: 0, text: t, finish_reason: null })),
          });
          controller.enqueue(event(chat ? { index: 0, delta: {}, finish_reason: 'stop' } : { index: 0, text: '', finish_reason: 'stop' }));
          controller.enqueue(enc.encode('data: [DONE]\n\n'));
          controller.close();
        } catch (e) {
          controller.error(new CustodyError('ERR_GATEWAY_BACKEND', 'the GGUF engine failed', { cause: e }));
        } finally {
          await context.dispose();
        }
      },
    });
    return { status: 200, contentType: 'text/event-stream', body };
  }

  async close(): Promise<void> {
    if (this.embeddings) await (await this.embeddings).dispose();
    await this.model.dispose();
  }
}
