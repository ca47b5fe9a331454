// Request bodies: all of them together are bounded while they arrive; a body broken off by its
// client is the client's doing (400, not 500); and an answer given before the body arrived tells
// the client the connection ends (Connection: close) and still reaches it.
import { connect, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { issueApiKey } from '../auth/api-keys.js';
import { serveBroker, type RunningServer } from '../serve.js';
import { bufferLogger, embeddedBackend, type Harness } from '../testing/harness.js';
import { createBrokerApp } from './app.js';

describe('request bodies', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let token: string;
  let server: RunningServer | undefined;

  beforeEach(async () => {
    h = await backend.open();
    token = (await issueApiKey(h.metadata, { tenant: 'acme', role: 'admin', label: 'admin', createdBy: 'test', now: Date.now() })).token;
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await h.close();
  });

  it('refuses a body that would cross the budget of bodies arriving at once (503, retry later), and takes it once the others arrived', async () => {
    const app = createBrokerApp({ service: h.service, apiKeys: h.metadata, maxArrivingBodyBytes: 64 * 1024 });
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const slow = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) });
    feed.enqueue(new TextEncoder().encode(`{"name":"slow","type":"aes-256","pad":"${' '.repeat(48 * 1024)}`));
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const first = app.request(new Request('http://broker/v1/keys', { method: 'POST', headers, body: slow, duplex: 'half' } as RequestInit));
    await new Promise((r) => setTimeout(r, 50));

    const body = JSON.stringify({ name: 'k', type: 'secret', material: 'A'.repeat(24 * 1024) });
    const refused = await app.request('/v1/keys', { method: 'POST', headers, body });
    expect([refused.status, refused.headers.get('x-custody-code'), refused.headers.get('retry-after')]).toEqual([503, 'ERR_SERVICE_UNAVAILABLE', '5']);

    feed.enqueue(new TextEncoder().encode('"}'));
    feed.close();
    expect((await first).status).toBe(400);
    expect((await app.request('/v1/keys', { method: 'POST', headers, body })).status).toBe(201);
  });

  it('a client that hangs up in the middle of its body is logged as 400 ERR_INPUT_TRUNCATED, not 500', async () => {
    const { logger, lines } = bufferLogger();
    server = await serveBroker(createBrokerApp({ service: h.service, apiKeys: h.metadata, logger }));
    const socket = await open(server.port);
    socket.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"a":\r\n`);
    await new Promise((r) => setTimeout(r, 200));
    socket.destroy();
    const line = await waitFor(() => lines.find((l) => l.includes('"path":"/v1/keys"')));
    expect(JSON.parse(line)).toMatchObject({ method: 'POST', status: 400, code: 'ERR_INPUT_TRUNCATED' });
  });

  it('answers before a large body arrived with Connection: close, and the client reads the whole answer', async () => {
    server = await serveBroker(createBrokerApp({ service: h.service, apiKeys: h.metadata }));
    for (const [auth, status] of [
      ['', 401],
      [`Authorization: Bearer ${token}\r\n`, 413],
    ] as const) {
      const socket = await open(server.port);
      const answer = readAll(socket);
      socket.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\n${auth}Content-Type: application/json\r\nContent-Length: 2000000\r\n\r\n`);
      socket.write(Buffer.alloc(2_000_000, 0x20), () => undefined);
      const text = await answer;
      expect(text.slice(0, 12)).toBe(`HTTP/1.1 ${status}`);
      expect(text).toMatch(/\r\nconnection: close\r\n/i);
      const [head, body] = text.split('\r\n\r\n');
      expect(JSON.parse(body!)).toMatchObject({ status });
      expect(Number(/content-length: (\d+)/i.exec(head!)![1])).toBe(Buffer.byteLength(body!));
    }
  });

  it('keeps the connection when the refused body had arrived anyway', async () => {
    server = await serveBroker(createBrokerApp({ service: h.service, apiKeys: h.metadata }));
    const socket = await open(server.port);
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.write('POST /v1/keys HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}');
    await waitFor(() => (text.includes('\r\n\r\n{') && text.endsWith('}') ? text : undefined));
    expect(text).toMatch(/^HTTP\/1\.1 401/);
    expect(text).toMatch(/\r\nconnection: keep-alive\r\n/i);
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n');
    await waitFor(() => (/HTTP\/1\.1 200/.test(text) ? text : undefined));
    socket.destroy();
  });
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** Everything the server sends until it closes the connection (a reset after the answer still counts). */
function readAll(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(text));
  });
}

async function waitFor<T>(f: () => T | undefined, ms = 5000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
