/**
 * `custody-demo (not a real LLM)`: a deterministic in-process stand-in so that the whole
 * confidential flow works with zero setup. It does not understand anything: it counts the words
 * of the last user message, lists its most frequent terms and echoes its beginning (so masked
 * values visibly come back restored), streams word by word, and makes embeddings from hashed
 * words. Every answer says what it is.
 */
import { canonicalBytes, sha256, toBase64, toHex, type Clock } from '@custody/core';
import type { BackendRequest, BackendResponse, ModelBackend, ModelInfo } from './types.js';

export const DEMO_MODEL_ID = 'custody-demo';
export const DEMO_MODEL_LABEL = 'custody-demo (not a real LLM)';
const DEFINITION = { name: DEMO_MODEL_ID, label: DEMO_MODEL_LABEL, version: 1, algorithm: 'word-count, top-terms, echo-24; embeddings: fnv1a-64 hashed bag of words' };
const EMBEDDING_DIMS = 64;
const STOP = new Set('the a an and or of to in on for with is are was were be this that it as at by from your you our we i me my please can could would should'.split(' '));

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** The demo's answer to a text: deterministic, and labelled. */
export function demoReply(text: string): string[] {
  const words = text.split(/\s+/).filter(Boolean);
  const freq = new Map<string, { n: number; first: number }>();
  words.forEach((w, i) => {
    const k = w.toLowerCase().replace(/[^\p{L}\p{N}_-]/gu, '');
    if (k.length < 4 || STOP.has(k)) return;
    const e = freq.get(k);
    if (e) e.n++;
    else freq.set(k, { n: 1, first: i });
  });
  const terms = [...freq.entries()].sort((a, b) => b[1].n - a[1].n || a[1].first - b[1].first).slice(0, 5).map(([k]) => k);
  const echo = words.slice(0, 24).join(' ') + (words.length > 24 ? ' …' : '');
  const reply = `[${DEMO_MODEL_LABEL}] You wrote ${words.length} words. Key terms: ${terms.join(', ') || '(none)'}. Echo: ${echo}`;
  return reply.split(' ');
}

function lastUserText(json: Readonly<Record<string, unknown>>): string {
  const messages = Array.isArray(json.messages) ? (json.messages as unknown[]) : [];
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i] as Record<string, unknown> | null;
    if (!m || (m.role !== 'user' && i !== 0)) continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) return (m.content as Record<string, unknown>[]).map((p) => (typeof p?.text === 'string' ? p.text : '')).join(' ');
  }
  return '';
}

function textsOf(v: unknown): string[] {
  return typeof v === 'string' ? [v] : Array.isArray(v) ? v.filter((x): x is string => typeof x === 'string') : [];
}

export function demoEmbedding(text: string): number[] {
  const v = new Array<number>(EMBEDDING_DIMS).fill(0);
  for (const w of text.toLowerCase().split(/\s+/).filter(Boolean)) {
    const h = fnv1a(w);
    v[h % EMBEDDING_DIMS]! += h & 0x80000000 ? -1 : 1;
  }
  const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0)) || 1;
  return v.map((x) => Math.round((x / norm) * 1e6) / 1e6);
}

const enc = new TextEncoder();

/** OpenAI's `encoding_format: "base64"`: little-endian float32 values, base64. */
function float32Base64(v: number[]): string {
  const f = new Float32Array(v);
  return toBase64(new Uint8Array(f.buffer));
}

export class DemoBackend implements ModelBackend {
  readonly kind = 'demo';
  private counter = 0;

  private constructor(
    private readonly info: ModelInfo,
    private readonly clock: Clock,
    private readonly tokenMs: number,
  ) {}

  /**
   * `tokenMs`: the pause before each streamed token after the first (default 3 ms), so a
   * streamed answer arrives token by token as from a model; 0 answers at once.
   */
  static async create(clock: Clock, options: { tokenMs?: number } = {}): Promise<DemoBackend> {
    const digest = 'sha256:' + toHex(await sha256(canonicalBytes(DEFINITION)));
    return new DemoBackend({ id: DEMO_MODEL_ID, digest, label: DEMO_MODEL_LABEL, ownedBy: 'custody' }, clock, options.tokenMs ?? 3);
  }

  models(): readonly ModelInfo[] {
    return [this.info];
  }

  handle(req: BackendRequest): Promise<BackendResponse> {
    const created = Math.floor(this.clock().getTime() / 1000);
    const id = `${req.route === 'chat.completions' ? 'chatcmpl' : 'cmpl'}-demo-${++this.counter}`;
    const json = req.json;
    if (req.route === 'embeddings') {
      const inputs = textsOf(json.input);
      const body = {
        object: 'list',
        data: inputs.map((t, index) => ({ object: 'embedding', index, embedding: json.encoding_format === 'base64' ? float32Base64(demoEmbedding(t)) : demoEmbedding(t) })),
        model: this.info.id,
        usage: { prompt_tokens: inputs.join(' ').split(/\s+/).filter(Boolean).length, total_tokens: inputs.join(' ').split(/\s+/).filter(Boolean).length },
      };
      return Promise.resolve({ status: 200, contentType: 'application/json', body: enc.encode(JSON.stringify(body)) });
    }
    const prompt = req.route === 'chat.completions' ? lastUserText(json) : textsOf(json.prompt).join('\n');
    const maxTokens = typeof json.max_tokens === 'number' && json.max_tokens > 0 ? json.max_tokens : typeof json.max_completion_tokens === 'number' && json.max_completion_tokens > 0 ? json.max_completion_tokens : 256;
    const all = demoReply(prompt);
    const words = all.slice(0, maxTokens);
    const finish = words.length < all.length ? 'length' : 'stop';
    const usage = { prompt_tokens: prompt.split(/\s+/).filter(Boolean).length, completion_tokens: words.length, total_tokens: prompt.split(/\s+/).filter(Boolean).length + words.length };
    const chat = req.route === 'chat.completions';
    if (!req.stream) {
      const text = words.join(' ');
      const body = chat
        ? { id, object: 'chat.completion', created, model: this.info.id, choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: finish }], usage }
        : { id, object: 'text_completion', created, model: this.info.id, choices: [{ index: 0, text, finish_reason: finish }], usage };
      return Promise.resolve({ status: 200, contentType: 'application/json', body: enc.encode(JSON.stringify(body)) });
    }
    const object = chat ? 'chat.completion.chunk' : 'text_completion';
    const event = (choice: Record<string, unknown>) => enc.encode(`data: ${JSON.stringify({ id, object, created, model: this.info.id, choices: [choice] })}\n\n`);
    let i = 0;
    const pause = this.tokenMs;
    const body = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (i > 0 && pause > 0) await new Promise((r) => setTimeout(r, pause));
        if (i === 0 && chat) controller.enqueue(event({ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }));
        if (i < words.length) {
          const piece = (i === 0 ? '' : ' ') + words[i]!;
          controller.enqueue(event(chat ? { index: 0, delta: { content: piece }, finish_reason: null } : { index: 0, text: piece, finish_reason: null }));
          i++;
          return;
        }
        controller.enqueue(event(chat ? { index: 0, delta: {}, finish_reason: finish } : { index: 0, text: '', finish_reason: finish }));
        controller.enqueue(enc.encode('data: [DONE]\n\n'));
        controller.close();
      },
    });
    return Promise.resolve({ status: 200, contentType: 'text/event-stream', body });
  }
}
