// The real GGUF engine (node-llama-cpp's prebuilt llama.cpp CPU binary) end to end, on a tiny
// llama model the test writes: directly on the backend, and through the gateway with the
// official `openai` client and the SDK's confidential fetch. Random weights write gibberish, so
// the tests assert structure (shapes, token counts, determinism at temperature 0), not content.
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64, systemClock } from '@custody/core';
import { createConfidentialFetch, verifyReceipt, type Receipt } from '@custody/sdk';
import { encodeGguf, gguf } from '../testing/gguf-writer.js';
import { startTestGateway, type TestGateway } from '../testing/index.js';
import { writeTinyLlamaGguf } from '../testing/tiny-llama.js';
import { LlamaCppBackend, type LlamaCppBackendOptions } from './llama-cpp.js';
import type { BackendRequest, BackendResponse, InferenceRoute } from './types.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
let dir: string;
let modelPath: string;
let fileDigest: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'custody-llama-'));
  modelPath = join(dir, 'tiny.gguf');
  const bytes = await writeTinyLlamaGguf(modelPath);
  fileDigest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function backend(o: Partial<LlamaCppBackendOptions> = {}): Promise<LlamaCppBackend> {
  return LlamaCppBackend.create({ modelPath, clock: systemClock, onEngineLog: () => undefined, ...o });
}

function request(b: LlamaCppBackend, route: InferenceRoute, json: Record<string, unknown>, stream = false, signal?: AbortSignal): BackendRequest {
  return { route, json, body: enc.encode(JSON.stringify(json)), model: b.models()[0]!, stream, ...(signal ? { signal } : {}) };
}

async function bodyText(r: BackendResponse): Promise<string> {
  if (r.body instanceof Uint8Array) return dec.decode(r.body);
  let s = '';
  for await (const c of r.body as unknown as AsyncIterable<Uint8Array>) s += dec.decode(c, { stream: true });
  return s;
}

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

async function call(b: LlamaCppBackend, route: InferenceRoute, json: Record<string, unknown>): Promise<{ status: number; body: Json }> {
  const r = await b.handle(request(b, route, json));
  expect(r.contentType).toBe('application/json');
  return { status: r.status, body: JSON.parse(await bodyText(r)) as Json };
}

async function sse(b: LlamaCppBackend, route: InferenceRoute, json: Record<string, unknown>): Promise<Json[]> {
  const r = await b.handle(request(b, route, { ...json, stream: true }, true));
  expect(r.status).toBe(200);
  expect(r.contentType).toBe('text/event-stream');
  const events = (await bodyText(r)).split('\n\n').filter(Boolean);
  expect(events.at(-1)).toBe('data: [DONE]');
  return events.slice(0, -1).map((e) => {
    expect(e.startsWith('data: ')).toBe(true);
    return JSON.parse(e.slice(6)) as Json;
  });
}

const chat = (content: string, extra: Record<string, unknown> = {}) => ({ model: 'custody-tiny-llama', messages: [{ role: 'system', content: 'Answer briefly.' }, { role: 'user', content }], temperature: 0, ...extra });

describe('node-llama-cpp backend on a generated tiny GGUF model', () => {
  let b: LlamaCppBackend;
  beforeAll(async () => {
    b = await backend();
  });
  afterAll(async () => {
    await b.close();
  });

  it('describes the model with the sha256 of the file', () => {
    expect(b.kind).toBe('llama-cpp');
    const [m] = b.models();
    expect(m!.id).toBe('custody-tiny-llama');
    expect(m!.digest).toBe(fileDigest);
    expect(m!.label).toContain('GGUF llama');
  });

  it('answers a chat completion within max_tokens, deterministically at temperature 0', async () => {
    const a = await call(b, 'chat.completions', chat('Tell me about confidential inference', { max_tokens: 12 }));
    expect(a.status).toBe(200);
    expect(a.body.object).toBe('chat.completion');
    expect(a.body.model).toBe('custody-tiny-llama');
    const choice = a.body.choices[0];
    expect(choice.message.role).toBe('assistant');
    expect(choice.message.content.trim().length).toBeGreaterThan(0);
    expect(a.body.usage.completion_tokens).toBeGreaterThan(0);
    expect(a.body.usage.completion_tokens).toBeLessThanOrEqual(12);
    expect(choice.finish_reason).toBe(a.body.usage.completion_tokens === 12 ? 'length' : 'stop');
    expect(a.body.usage.prompt_tokens).toBeGreaterThan(5);
    expect(a.body.usage.total_tokens).toBe(a.body.usage.prompt_tokens + a.body.usage.completion_tokens);
    const again = await call(b, 'chat.completions', chat('Tell me about confidential inference', { max_tokens: 12 }));
    expect(again.body.choices[0].message.content).toBe(choice.message.content);
    expect(again.body.usage).toEqual(a.body.usage);
  });

  it('streams a chat completion as OpenAI chunks that add up to the non-streamed answer', async () => {
    const whole = await call(b, 'chat.completions', chat('Stream this', { max_tokens: 10 }));
    const chunks = await sse(b, 'chat.completions', chat('Stream this', { max_tokens: 10 }));
    expect(chunks[0]!.choices[0].delta).toEqual({ role: 'assistant', content: '' });
    for (const c of chunks) {
      expect(c.object).toBe('chat.completion.chunk');
      expect(c.id).toBe(chunks[0]!.id);
    }
    const deltas = chunks.slice(1, -1).map((c) => c.choices[0].delta.content as string);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.length).toBeLessThanOrEqual(10);
    expect(deltas.join('')).toBe(whole.body.choices[0].message.content);
    const last = chunks.at(-1)!;
    expect(last.choices[0].finish_reason).toBe(whole.body.choices[0].finish_reason);
    expect(last.usage).toEqual(whole.body.usage);
  });

  it('serves completions, streamed and not', async () => {
    const c = await call(b, 'completions', { prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
    expect(c.status).toBe(200);
    expect(c.body.object).toBe('text_completion');
    expect(c.body.choices[0].text.trim().length).toBeGreaterThan(0);
    expect(c.body.usage.completion_tokens).toBeLessThanOrEqual(6);
    const chunks = await sse(b, 'completions', { prompt: 'Once upon a time', max_tokens: 6, temperature: 0 });
    expect(chunks.map((x) => x.choices[0].text as string).join('')).toBe(c.body.choices[0].text);
    // A sampled answer (temperature 1, seeded) is still bounded.
    const s = await call(b, 'completions', { prompt: 'Once upon a time', max_tokens: 6, temperature: 1, seed: 42 });
    expect(s.body.usage.completion_tokens).toBeLessThanOrEqual(6);
  });

  it('computes embeddings (float and base64) and refuses bad inputs with an OpenAI error', async () => {
    const e = await call(b, 'embeddings', { input: ['alpha beta', 'gamma'] });
    expect(e.status).toBe(200);
    expect(e.body.data).toHaveLength(2);
    const v = e.body.data[0].embedding as number[];
    expect(v).toHaveLength(64);
    expect(v.every(Number.isFinite)).toBe(true);
    expect(e.body.usage.prompt_tokens).toBeGreaterThan(0);
    const b64 = await call(b, 'embeddings', { input: 'alpha beta', encoding_format: 'base64' });
    const raw = fromBase64(b64.body.data[0].embedding as string);
    expect([...new Float32Array(raw.buffer, raw.byteOffset, raw.byteLength / 4)]).toEqual(v.map((x) => Math.fround(x)));
    const bad = await call(b, 'embeddings', { input: [] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe('invalid_input');
  });

  it('bounds max_tokens and refuses a prompt longer than the context', async () => {
    const small = await backend({ maxTokensLimit: 5 });
    try {
      const r = await call(small, 'completions', { prompt: 'Go on', max_tokens: 100000, temperature: 0 });
      expect(r.body.usage.completion_tokens).toBeLessThanOrEqual(5);
      const none = await call(small, 'chat.completions', chat('no max_tokens given'));
      expect(none.body.usage.completion_tokens).toBeLessThanOrEqual(5);
      const long = await call(small, 'completions', { prompt: 'word '.repeat(small.contextSize + 10), max_tokens: 4 });
      expect(long.status).toBe(400);
      expect(long.body.error.code).toBe('context_length_exceeded');
      const noMessages = await call(small, 'chat.completions', { messages: [] });
      expect(noMessages.status).toBe(400);
    } finally {
      await small.close();
    }
  });

  it('runs requests in parallel sequences, queues the rest, and refuses past the queue bound', async () => {
    const one = await backend({ parallel: 1, maxQueue: 1 });
    try {
      const results = await Promise.allSettled([1, 2, 3].map(() => call(one, 'completions', { prompt: 'queue', max_tokens: 4, temperature: 0 })));
      expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected']);
      expect((results[2] as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_GATEWAY_OVERLOADED' });
      const texts = results.slice(0, 2).map((r) => (r as PromiseFulfilledResult<{ body: Json }>).value.body.choices[0].text as string);
      expect(texts[0]).toBe(texts[1]);
      // A stream cancelled half-way gives its sequence back.
      const r = await one.handle(request(one, 'completions', { prompt: 'cancel me', max_tokens: 200, temperature: 0 }, true));
      const reader = (r.body as ReadableStream<Uint8Array>).getReader();
      await reader.read();
      await reader.cancel();
      const after = await call(one, 'completions', { prompt: 'queue', max_tokens: 4, temperature: 0 });
      expect(after.body.choices[0].text).toBe(texts[0]);
    } finally {
      await one.close();
    }
    const four = await Promise.all([1, 2, 3, 4].map((i) => call(b, 'chat.completions', chat(`parallel ${i}`, { max_tokens: 8 }))));
    for (const r of four) expect(r.body.usage.completion_tokens).toBeLessThanOrEqual(8);
  });
});

describe('a bad model file gives a typed error, and nothing crashes', () => {
  const cases: [string, () => Uint8Array | Promise<Uint8Array>][] = [
    ['wrong magic', async () => Object.assign(new Uint8Array(await readFile(modelPath)), { 0: 0x47, 1: 0x47, 2: 0x4d, 3: 0x4c })],
    ['truncated inside the header', async () => (await readFile(modelPath)).subarray(0, 1000)],
    ['truncated inside the tensor data', async () => (await readFile(modelPath)).subarray(0, 400_000)],
    ['a header with no tensors', () => encodeGguf({ metadata: [['general.architecture', gguf.string('llama')]], tensors: [] })],
    ['an unknown architecture', () => encodeGguf({ metadata: [['general.architecture', gguf.string('nosucharch')]], tensors: [{ name: 'w', dims: [4], data: new Float32Array(4) }] })],
    ['an empty file', () => new Uint8Array(0)],
  ];
  it.each(cases)('%s: ERR_GATEWAY_MODEL_FILE', async (_name, make) => {
    const path = join(dir, 'bad.gguf');
    await writeFile(path, await make());
    await expect(backend({ modelPath: path })).rejects.toMatchObject({ code: 'ERR_GATEWAY_MODEL_FILE' });
  });
  it('a missing file: ERR_GATEWAY_MODEL_FILE', async () => {
    await expect(backend({ modelPath: join(dir, 'missing.gguf') })).rejects.toMatchObject({ code: 'ERR_GATEWAY_MODEL_FILE' });
    // The engine still works afterwards.
    const ok = await backend();
    expect(ok.models()[0]!.digest).toBe(fileDigest);
    await ok.close();
  });
});

describe('openai client through the SDK and the gateway to the GGUF engine', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ backend: await backend() });
  });
  afterAll(async () => {
    await gw.close();
  });

  function client(receipts: Receipt[]) {
    const cfetch = createConfidentialFetch({
      gateway: gw.url,
      jwks: gw.jwks!,
      allowSimulated: true,
      expectedMeasurements: { measurement: gw.measurement },
      onReceipt: (r) => receipts.push(r),
    });
    return { cfetch, openai: new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.apiKey, fetch: cfetch, maxRetries: 0 }) };
  }

  it('answers a chat completion with a verified receipt naming the GGUF file digest', async () => {
    const receipts: Receipt[] = [];
    const { cfetch, openai } = client(receipts);
    const res = await openai.chat.completions.create({ model: 'custody-tiny-llama', messages: [{ role: 'user', content: 'Summarise the attestation report' }], max_tokens: 10, temperature: 0 });
    expect(res.choices[0]!.message.content!.trim().length).toBeGreaterThan(0);
    expect(res.usage!.completion_tokens).toBeLessThanOrEqual(10);
    expect(receipts).toHaveLength(1);
    const r = receipts[0]!;
    expect(r.model.id).toBe('custody-tiny-llama');
    expect(r.model.digest).toBe(fileDigest);
    expect(r.response.streamed).toBe(false);
    expect(cfetch.lastVerification!.ok).toBe(true);
    await expect(verifyReceipt(r, (await cfetch.verify()).receiptKey)).resolves.toEqual(r);
    // Same answer as the backend gives directly (temperature 0).
    const direct = await call(gw.backend as LlamaCppBackend, 'chat.completions', { messages: [{ role: 'user', content: 'Summarise the attestation report' }], max_tokens: 10, temperature: 0 });
    expect(direct.body.choices[0].message.content).toBe(res.choices[0]!.message.content);
  });

  it('streams a chat completion and verifies the receipt over the whole stream', async () => {
    const receipts: Receipt[] = [];
    const { openai } = client(receipts);
    const stream = await openai.chat.completions.create({ model: 'custody-tiny-llama', stream: true, messages: [{ role: 'user', content: 'Stream a few words' }], max_tokens: 8, temperature: 0 });
    const parts: string[] = [];
    for await (const chunk of stream) parts.push(chunk.choices[0]?.delta?.content ?? '');
    expect(parts.filter((p) => p.length > 0).length).toBeGreaterThan(1);
    expect(parts.filter((p) => p.length > 0).length).toBeLessThanOrEqual(8);
    await new Promise((r) => setTimeout(r, 10));
    expect(receipts).toHaveLength(1);
    expect(receipts[0]!.response.streamed).toBe(true);
    expect(receipts[0]!.model.digest).toBe(fileDigest);
  });

  it('serves completions, embeddings and the model list', async () => {
    const { openai } = client([]);
    const c = await openai.completions.create({ model: 'custody-tiny-llama', prompt: 'The gateway', max_tokens: 5, temperature: 0 });
    expect(c.choices[0]!.text.trim().length).toBeGreaterThan(0);
    const e = await openai.embeddings.create({ model: 'custody-tiny-llama', input: ['alpha', 'beta gamma'] });
    expect(e.data).toHaveLength(2);
    expect(e.data[0]!.embedding).toHaveLength(64);
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toEqual(['custody-tiny-llama']);
  });
});
