// The upstream backend over node:http: an abort stops the upstream request, and a response cut
// off before its end fails instead of never settling.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { UpstreamBackend } from './upstream.js';

let server: Server | undefined;
afterEach(async () => {
  const s = server;
  server = undefined;
  if (s) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

async function upstream(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  server = createServer(handler);
  await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
  const a = server.address();
  return `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
}

const request = (signal?: AbortSignal) => ({
  route: 'chat.completions' as const,
  body: new TextEncoder().encode('{"model":"m","messages":[]}'),
  json: { model: 'm' },
  model: { id: 'm' },
  stream: false,
  ...(signal ? { signal } : {}),
});

describe('UpstreamBackend', () => {
  it('an abort while the upstream works closes the upstream request and rejects with ERR_GATEWAY_BACKEND', async () => {
    let arrived!: () => void;
    const arrival = new Promise<void>((r) => (arrived = r));
    let closedAt = 0;
    const url = await upstream((req) => {
      req.resume();
      arrived();
      // Never answers; records when the gateway side goes away.
      req.socket.once('close', () => (closedAt = performance.now()));
    });
    const backend = await UpstreamBackend.create({ url, models: [{ id: 'm' }] });
    try {
      const ac = new AbortController();
      const pending = backend.handle(request(ac.signal));
      // Aborted once the upstream works on it (awaited, not guessed with a sleep).
      await arrival;
      const abortedAt = performance.now();
      ac.abort();
      await expect(pending).rejects.toMatchObject({ code: 'ERR_GATEWAY_BACKEND' });
      await expect.poll(() => closedAt, { timeout: 10_000 }).toBeGreaterThanOrEqual(abortedAt);
    } finally {
      await backend.close();
    }
  });

  it('an upstream that sends nothing for idleTimeoutMs fails the call (before the answer, and mid-stream)', async () => {
    const url = await upstream((req, res) => {
      req.resume();
      if (req.headers.accept === 'text/event-stream') {
        // One event, then silence.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"choices":[]}\n\n');
      }
      // Otherwise never answers.
    });
    const backend = await UpstreamBackend.create({ url, models: [{ id: 'm' }], idleTimeoutMs: 150 });
    try {
      const started = performance.now();
      await expect(backend.handle(request())).rejects.toMatchObject({ code: 'ERR_GATEWAY_BACKEND' });
      expect(performance.now() - started).toBeGreaterThanOrEqual(140);
      const streamed = await backend.handle({ ...request(), stream: true });
      const reader = (streamed.body as ReadableStream<Uint8Array>).getReader();
      expect((await reader.read()).done).toBe(false);
      await expect(reader.read()).rejects.toBeDefined();
    } finally {
      await backend.close();
    }
  });

  it('reuses a kept-alive connection for back-to-back calls, and closes it itself once idle for freeSocketTimeoutMs', async () => {
    const opened: number[] = [];
    const closed: number[] = [];
    let delayMs = 0;
    const answer = (req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      req.on('end', () => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}'), delayMs));
    };
    const url = await upstream(answer);
    // The server would keep an idle connection for 10 s: any close before that is the gateway's.
    server!.keepAliveTimeout = 10_000;
    server!.on('connection', (socket) => {
      opened.push(performance.now());
      socket.once('close', () => closed.push(performance.now()));
    });
    const backend = await UpstreamBackend.create({ url, models: [{ id: 'm' }], freeSocketTimeoutMs: 150 });
    try {
      for (let i = 0; i < 3; i++) expect((await backend.handle(request())).status).toBe(200);
      expect(opened).toHaveLength(1);
      const idleFrom = performance.now();
      await new Promise((r) => setTimeout(r, 600));
      expect(closed).toHaveLength(1);
      expect(closed[0]! - idleFrom).toBeGreaterThanOrEqual(100);
      // The next call opens a new connection and is answered; a call in progress is not cut by
      // the free-socket timeout (the model may think longer than that before it answers).
      delayMs = 500;
      expect((await backend.handle(request())).status).toBe(200);
      expect(opened).toHaveLength(2);
    } finally {
      await backend.close();
    }
  });

  it('an already-aborted signal sends nothing', async () => {
    let requests = 0;
    const url = await upstream((_req, res) => {
      requests++;
      res.end('{}');
    });
    const backend = await UpstreamBackend.create({ url, models: [{ id: 'm' }] });
    try {
      const ac = new AbortController();
      ac.abort();
      await expect(backend.handle(request(ac.signal))).rejects.toMatchObject({ code: 'ERR_GATEWAY_BACKEND' });
      expect(requests).toBe(0);
    } finally {
      await backend.close();
    }
  });

  it('a response whose connection closes before the end of its body rejects instead of hanging', async () => {
    const url = await upstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100' });
      res.write('{"partial":');
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const backend = await UpstreamBackend.create({ url, models: [{ id: 'm' }] });
    try {
      await expect(backend.handle(request())).rejects.toMatchObject({ code: 'ERR_GATEWAY_BACKEND' });
    } finally {
      await backend.close();
    }
  });

  it('an answer is read whole, and the abort listener is gone afterwards (a later abort changes nothing)', async () => {
    const url = await upstream((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{"ok":true}');
    });
    const backend = await UpstreamBackend.create({ url, models: [{ id: 'm' }] });
    try {
      const ac = new AbortController();
      const res = await backend.handle(request(ac.signal));
      expect(res.status).toBe(200);
      expect(new TextDecoder().decode(res.body as Uint8Array)).toBe('{"ok":true}');
      ac.abort();
      // The keep-alive connection is still usable: a second request goes through.
      const again = await backend.handle(request());
      expect(again.status).toBe(200);
    } finally {
      await backend.close();
    }
  });

  // The model list at start, from GET /v1/models: what is not a list of models is a typed refusal.
  const listed = (body: BodyInit | null, status = 200) => ({ fetch: () => Promise.resolve(new Response(body, { status, headers: { 'content-type': 'application/json' } })) });
  it.each([
    ['not JSON', '<html>captive portal</html>'],
    ['JSON null', 'null'],
    ['data not a list', '{"data":{"id":"m"}}'],
    ['entries without a string id', '{"data":[null,{"id":7},"m"]}'],
    ['an empty list', '{"data":[]}'],
    ['more than 1 MiB (a valid list, padded)', '{"data":[{"id":"m"}]}' + ' '.repeat(1024 * 1024)],
  ])('a model list that is %s refuses to start (ERR_GATEWAY_BACKEND_UNAVAILABLE)', async (_, body) => {
    await expect(UpstreamBackend.create({ url: 'http://upstream.invalid', ...listed(body) })).rejects.toMatchObject({ code: 'ERR_GATEWAY_BACKEND_UNAVAILABLE' });
  });

  it('reads the models of a list, skipping entries it cannot use', async () => {
    const backend = await UpstreamBackend.create({ url: 'http://upstream.invalid', ...listed('{"data":[{"id":"llama-3-8b","owned_by":"me"},null,{"id":3},{"id":"qwen"}]}') });
    expect(backend.models()).toEqual([{ id: 'llama-3-8b', ownedBy: 'me' }, { id: 'qwen' }]);
    await backend.close();
  });

  // Model ids are the upstream's: an id Object.prototype has must not find the digest table's member.
  it.each(['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf'])('a listed model %s gets no digest unless one is given for it', async (id) => {
    const digest = `sha256:${'ab'.repeat(32)}`;
    const backend = await UpstreamBackend.create({ url: 'http://upstream.invalid', ...listed(JSON.stringify({ data: [{ id }, { id: 'qwen' }] })), digests: { qwen: digest } });
    expect(backend.models()).toEqual([{ id }, { id: 'qwen', digest }]);
    await backend.close();
    const given = await UpstreamBackend.create({ url: 'http://upstream.invalid', models: [{ id }], digests: Object.fromEntries([[id, digest]]) });
    expect(given.models()).toEqual([{ id, digest }]);
    await given.close();
  });
});
