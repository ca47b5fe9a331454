/**
 * TEST DOUBLE of an OpenAI-compatible model server (the shape vLLM, llama.cpp's server and
 * Ollama serve), on loopback. It answers deterministically, records every body it receives
 * (so tests can assert what reached the model, or that nothing did), and can pace streamed
 * tokens and add a fixed service time (the benchmark's stand-in for model work).
 */
import { Hono } from 'hono';
import { listen, type RunningServer } from '../http/serve.js';

export interface FakeUpstreamOptions {
  /** Words in each answer. Default 12. */
  words?: number;
  /** Delay before answering a non-streamed request, ms. Default 0. */
  serviceMs?: number;
  /** Delay between streamed tokens, ms. Default 0. */
  tokenMs?: number;
  /** Echo the last user message at the start of the answer (to test mask restoration). Default true. */
  echo?: boolean;
  /**
   * Keep every request body in `received` (what tests inspect). Default true; benchmarks turn it
   * off, or the server's heap grows by each request and its GC weighs on every later measurement.
   */
  record?: boolean;
}

export interface FakeUpstream {
  readonly url: string;
  readonly received: { path: string; body: string }[];
  close(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function lastUser(body: Record<string, unknown>): string {
  const msgs = Array.isArray(body.messages) ? (body.messages as { role?: string; content?: unknown }[]) : [];
  const m = [...msgs].reverse().find((x) => x.role === 'user');
  return typeof m?.content === 'string' ? m.content : typeof body.prompt === 'string' ? body.prompt : '';
}

export function createFakeUpstreamApp(options: FakeUpstreamOptions = {}, received: { path: string; body: string }[] = []): Hono {
  const app = new Hono();
  const n = options.words ?? 12;
  const answer = (body: Record<string, unknown>): string[] => {
    const filler = Array.from({ length: n }, (_, i) => `tok${i}`);
    return options.echo === false ? filler : [...lastUser(body).split(/\s+/).filter(Boolean).slice(0, 32), ...filler];
  };
  app.get('/v1/models', (c) => c.json({ object: 'list', data: [{ id: 'fake-model', object: 'model', created: 0, owned_by: 'test-double' }] }));
  const completion = async (c: { req: { text(): Promise<string>; path: string } }, chat: boolean): Promise<Response> => {
    const text = await c.req.text();
    if (options.record !== false) received.push({ path: c.req.path, body: text });
    const body = JSON.parse(text) as Record<string, unknown>;
    const words = answer(body);
    const id = 'fake-1';
    if (body.stream !== true) {
      if (options.serviceMs) await sleep(options.serviceMs);
      const content = words.join(' ');
      const choice = chat ? { index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' } : { index: 0, text: content, finish_reason: 'stop' };
      return new Response(JSON.stringify({ id, object: chat ? 'chat.completion' : 'text_completion', created: 0, model: 'fake-model', choices: [choice], usage: { prompt_tokens: 1, completion_tokens: words.length, total_tokens: words.length + 1 } }), {
        headers: { 'content-type': 'application/json' },
      });
    }
    const enc = new TextEncoder();
    let i = 0;
    const stream = new ReadableStream<Uint8Array>({
      async pull(ctl) {
        if (options.tokenMs) await sleep(options.tokenMs);
        if (i < words.length) {
          const piece = (i === 0 ? '' : ' ') + words[i]!;
          const choice = chat ? { index: 0, delta: { content: piece }, finish_reason: null } : { index: 0, text: piece, finish_reason: null };
          ctl.enqueue(enc.encode(`data: ${JSON.stringify({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: 0, model: 'fake-model', choices: [choice] })}\n\n`));
          i++;
          return;
        }
        const last = chat ? { index: 0, delta: {}, finish_reason: 'stop' } : { index: 0, text: '', finish_reason: 'stop' };
        ctl.enqueue(enc.encode(`data: ${JSON.stringify({ id, object: chat ? 'chat.completion.chunk' : 'text_completion', created: 0, model: 'fake-model', choices: [last] })}\n\ndata: [DONE]\n\n`));
        ctl.close();
      },
    });
    return new Response(stream, { headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' } });
  };
  app.post('/v1/chat/completions', (c) => completion(c, true));
  app.post('/v1/completions', (c) => completion(c, false));
  app.post('/v1/embeddings', async (c) => {
    const text = await c.req.text();
    if (options.record !== false) received.push({ path: c.req.path, body: text });
    const body = JSON.parse(text) as { input?: unknown };
    const inputs = typeof body.input === 'string' ? [body.input] : Array.isArray(body.input) ? body.input : [];
    return c.json({ object: 'list', data: inputs.map((_, index) => ({ object: 'embedding', index, embedding: [0.5, 0.5, 0.5, 0.5] })), model: 'fake-model', usage: { prompt_tokens: 1, total_tokens: 1 } });
  });
  return app;
}

/** Starts the test double on a free loopback port. */
export async function startFakeUpstream(options: FakeUpstreamOptions = {}): Promise<FakeUpstream> {
  const received: { path: string; body: string }[] = [];
  const server: RunningServer = await listen(createFakeUpstreamApp(options, received));
  return { url: server.url, received, close: () => server.close() };
}
