// Request bodies: all of them together are bounded while they arrive, and each client address to
// its share of that; every byte is given back however a body ends; a body broken off by its
// client is the client's doing (400, not 500); and an answer given before the body arrived tells
// the client the connection ends (Connection: close) and still reaches it.
import { EventEmitter } from 'node:events';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { issueApiKey } from '../auth/api-keys.js';
import { serveBroker, type RunningServer } from '../serve.js';
import { bufferLogger, embeddedBackend, type Harness } from '../testing/harness.js';
import { createBrokerApp } from './app.js';
import { ArrivingBodyBudget } from './request-body.js';

describe('ArrivingBodyBudget', () => {
  it('holds each client address to its share while others still take theirs, and gives every byte back', () => {
    const refused: string[] = [];
    const budget = new ArrivingBodyBudget(100, 40, (bound) => refused.push(bound));
    const [a1, a2, b, local] = [budget.lease('ip4:10.0.0.1'), budget.lease('ip4:10.0.0.1'), budget.lease('ip4:10.0.0.2'), budget.lease(undefined)];
    expect([a1.take(30), a2.take(10), a2.take(1)]).toEqual([true, true, false]);
    expect(a2.refusal()).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', detail: { bound: 'arriving-bodies-per-client' } });
    expect(b.take(40)).toBe(true);
    // No client address (in process): no share of its own, only the whole budget.
    expect([local.take(20), local.take(1)]).toEqual([true, false]);
    expect(local.refusal()).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', detail: { bound: 'arriving-bodies' } });
    expect([budget.inUse, budget.heldBy('ip4:10.0.0.1'), budget.clients]).toEqual([100, 40, 2]);
    // A lease gives back only what it holds, however often it is told.
    a1.give(1000);
    a1.release();
    expect([budget.inUse, budget.heldBy('ip4:10.0.0.1')]).toEqual([70, 10]);
    for (const l of [a2, b, local, a2]) l.release();
    expect([budget.inUse, budget.clients]).toEqual([0, 0]);
    // A request that is over reads nothing more into the budget.
    expect(a1.take(1)).toBe(false);
    expect(a1.refusal()).toMatchObject({ code: 'ERR_INPUT_TRUNCATED' });
    expect(budget.inUse).toBe(0);
    expect(refused).toEqual(['arriving-bodies-per-client', 'arriving-bodies']);
  });

  it('refuses bounds that are not whole numbers of bytes', () => {
    for (const [max, share] of [[0, 1], [1, 0], [1.5, 1], [Number.NaN, 1]] as const) expect(() => new ArrivingBodyBudget(max, share)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });
});

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

  it('a client address holding its share is refused (503, per client) while another is served', async () => {
    const metrics = new Registry();
    const app = createBrokerApp({ service: h.service, apiKeys: h.metadata, metrics, trustProxy: true, maxArrivingBodyBytes: 1024 * 1024, maxArrivingBodyBytesPerClient: 100 * 1024 });
    server = await serveBroker(app);
    const port = server.port;
    // Forwarded addresses (trustProxy: the challenge limiter's notion of a client).
    const holder = await holdBody(port, token, 90 * 1024, '203.0.113.7');
    await waitFor(async () => ((await arrivingBytes(metrics, 'large')) === 90 * 1024 ? true : undefined));
    const sameClient = await sendBody(port, token, 20 * 1024, '203.0.113.7');
    expect(sameClient.head).toMatch(/^HTTP\/1\.1 503/);
    expect(sameClient.head).toMatch(/\r\nretry-after: \d+\r\n/i);
    expect(JSON.parse(sameClient.body)).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', facts: { bound: 'arriving-bodies-per-client' } });
    const other = await sendBody(port, token, 20 * 1024, '198.51.100.9');
    expect(other.head).toMatch(/^HTTP\/1\.1 400/);
    holder.destroy();
    await waitFor(async () => ((await arrivingBytes(metrics, 'large')) === 0 ? true : undefined));
    expect((await sendBody(port, token, 90 * 1024, '203.0.113.7')).head).toMatch(/^HTTP\/1\.1 400/);
    expect(await refusals(metrics)).toEqual({ 'large/arriving-bodies-per-client': 1 });
  });

  it('gives back every byte of a body however it ends: read, refused, over its size, broken off, cut at the deadline', async () => {
    const metrics = new Registry();
    // A share of one body: a byte kept by any path would lock this client out.
    const app = createBrokerApp({ service: h.service, apiKeys: h.metadata, metrics, maxArrivingBodyBytes: 1024 * 1024, maxArrivingBodyBytesPerClient: 130 * 1024 });
    server = await serveBroker(app, { requestTimeoutMs: 1000 });
    const port = server.port;
    const zero = () => waitFor(async () => ((await arrivingBytes(metrics, 'large')) === 0 ? true : undefined));
    // Read in full: created, or refused after reading (malformed).
    expect((await sendBody(port, token, 0)).head).toMatch(/^HTTP\/1\.1 201/);
    expect((await sendBody(port, token, 1000)).head).toMatch(/^HTTP\/1\.1 400/);
    await zero();
    // Refused by the share while another body of the same client holds it.
    const held = await holdBody(port, token, 100 * 1024);
    await waitFor(async () => ((await arrivingBytes(metrics, 'large')) === 100 * 1024 ? true : undefined));
    expect((await sendBody(port, token, 40 * 1024)).head).toMatch(/^HTTP\/1\.1 503/);
    // Broken off by its client.
    held.destroy();
    await zero();
    // Over its size as it arrives (chunked: no Content-Length to refuse it by).
    expect((await sendBody(port, token, 129 * 1024)).head).toMatch(/^HTTP\/1\.1 413/);
    await zero();
    // Cut at the request deadline.
    const stalled = await holdBody(port, token, 64 * 1024);
    await waitFor(async () => ((await arrivingBytes(metrics, 'large')) > 0 ? true : undefined));
    await closed(stalled);
    await zero();
    // Still this client's whole share.
    expect((await sendBody(port, token, 127 * 1024)).head).toMatch(/^HTTP\/1\.1 400/);
    await zero();
  });

  it('gives a body’s bytes back once its answer is out or its connection gone, even if its stream never settles', async () => {
    const metrics = new Registry();
    const app = createBrokerApp({ service: h.service, apiKeys: h.metadata, metrics });
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const body = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) });
    feed.enqueue(new Uint8Array(1000).fill(0x20));
    // Stands in for @hono/node-server's node:http response.
    const outgoing = new EventEmitter();
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const answer = app.request(new Request('http://broker/v1/keys', { method: 'POST', headers, body, duplex: 'half' } as RequestInit), undefined, { outgoing });
    await waitFor(async () => ((await arrivingBytes(metrics, 'large')) === 1000 ? true : undefined));
    outgoing.emit('close');
    expect(await arrivingBytes(metrics, 'large')).toBe(0);
    // What still comes is not counted: the request is over.
    feed.enqueue(new Uint8Array(1000).fill(0x20));
    const res = await answer;
    expect([res.status, res.headers.get('x-custody-code')]).toEqual([400, 'ERR_INPUT_TRUNCATED']);
    expect(await arrivingBytes(metrics, 'large')).toBe(0);
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

/** Bytes held now by the arriving-body budget `budget` (custody_broker_arriving_body_bytes). */
async function arrivingBytes(metrics: Registry, budget: 'large' | 'small'): Promise<number> {
  const metric = await metrics.getSingleMetric('custody_broker_arriving_body_bytes')!.get();
  return metric.values.find((v) => v.labels.budget === budget)?.value ?? 0;
}

/** custody_broker_arriving_bodies_refused_total as `budget/bound` -> count. */
async function refusals(metrics: Registry): Promise<Record<string, number>> {
  const metric = await metrics.getSingleMetric('custody_broker_arriving_bodies_refused_total')!.get();
  return Object.fromEntries(metric.values.map((v) => [`${v.labels.budget}/${v.labels.bound}`, v.value]));
}

function keyRequestHead(token: string, forwardedFor?: string): string {
  return `POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n${forwardedFor ? `X-Forwarded-For: ${forwardedFor}\r\n` : ''}Transfer-Encoding: chunked\r\n`;
}

/** A POST /v1/keys whose body sends `bytes` (spaces; none: a valid key) and then nothing more. */
async function holdBody(port: number, token: string, bytes: number, forwardedFor?: string): Promise<Socket> {
  const socket = await open(port);
  socket.on('error', () => undefined);
  // Reads (and drops) what comes, so that the server's close is seen.
  socket.resume();
  socket.write(`${keyRequestHead(token, forwardedFor)}\r\n${bytes.toString(16)}\r\n${' '.repeat(bytes)}\r\n`);
  return socket;
}

let keys = 0;

/** A whole POST /v1/keys (chunked) with `bytes` of spaces (0: a valid key), and its answer. */
async function sendBody(port: number, token: string, bytes: number, forwardedFor?: string): Promise<{ head: string; body: string }> {
  const socket = await open(port);
  socket.on('error', () => undefined);
  const body = bytes === 0 ? JSON.stringify({ name: `k${++keys}`, type: 'aes-256' }) : ' '.repeat(bytes);
  const text = new Promise<string>((resolve) => {
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString('latin1');
      const end = got.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(got.slice(0, end));
      if (end !== -1 && length && got.length >= end + 4 + Number(length[1])) resolve(got);
    });
    socket.once('close', () => resolve(got));
  });
  socket.write(`${keyRequestHead(token, forwardedFor)}\r\n${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`, () => undefined);
  const answer = await text;
  socket.destroy();
  const [head = '', rest = ''] = answer.split('\r\n\r\n');
  return { head, body: rest };
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => (socket.destroyed ? resolve() : socket.once('close', () => resolve())));
}

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

async function waitFor<T>(f: () => T | undefined | Promise<T | undefined>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
