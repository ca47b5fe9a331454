// listen() serves the gateway and the relay. close({ drainMs }) stops accepting, closes what has
// nothing in progress (kept alive, or never sent a byte) at once, lets answers in progress finish
// and be written whole, each with `Connection: close` when its head is not out yet (answers given
// synchronously too), and ends as soon as the last connection closes. Connections are bounded.
import { connect, type Socket } from 'node:net';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { MAX_CONNECTIONS, listen, type RunningServer } from './serve.js';

/** A drain far longer than any test may take: a close that ends "well before" it was held by nothing. */
const LONG_DRAIN_MS = 20_000;
/** Generous for a loaded machine, and still half the drain. */
const WELL_BEFORE_MS = 10_000;

let server: RunningServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.close();
  server = undefined;
});

describe('listen() close({ drainMs })', () => {
  it('closes a connection that never sent a byte at once: it does not hold the drain', async () => {
    server = await listen(testApp().app);
    const silent = await open(server.port);
    // Accepted after the silent one, so once this one is served the server holds both.
    const idle = await open(server.port);
    expect(await ask(idle, 'GET /now HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
    const silentClosed = whenClosed(silent);
    const idleClosed = whenClosed(idle);

    const started = performance.now();
    const closed = await finishesWithin(server.close({ drainMs: LONG_DRAIN_MS }), WELL_BEFORE_MS);
    expect(closed, `drain ended within ${WELL_BEFORE_MS} ms`).toBe(true);
    expect(performance.now() - started).toBeLessThan(WELL_BEFORE_MS);
    expect(await silentClosed).toBe('');
    expect(await idleClosed).toBe('');
    server = undefined;
  });

  it('answers a request that arrives during the drain with Connection: close, when the app answers synchronously too', async () => {
    const t = testApp();
    server = await listen(t.app);
    const conn = await open(server.port);
    const text = whenClosed(conn);
    // A streamed answer whose head is out before the drain: the connection is kept alive for now.
    conn.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n');
    await t.streaming;
    await received(conn, 'first');
    const closing = server.close({ drainMs: LONG_DRAIN_MS });
    // The next request on it (pipelined) arrives during the drain; the app answers it at once.
    conn.write('GET /now HTTP/1.1\r\nHost: x\r\n\r\n');
    await t.nowAnswered;
    t.release();
    const all = await text;
    const second = all.slice(all.indexOf('HTTP/1.1', 1));
    expect(all.startsWith('HTTP/1.1 200')).toBe(true);
    expect(second).toMatch(/^HTTP\/1\.1 200/);
    expect(second).toMatch(/\r\nconnection: close\r\n/i);
    expect(second.endsWith('now')).toBe(true);
    expect(await finishesWithin(closing, WELL_BEFORE_MS), `drain ended within ${WELL_BEFORE_MS} ms`).toBe(true);
    server = undefined;
  });

  it('writes an answer ended but not yet written (a client slow to read) whole before closing its connection', async () => {
    server = await listen(testApp().app);
    const conn = await open(server.port);
    let bytes = 0;
    let head = '';
    conn.on('data', (d: Buffer) => {
      if (bytes === 0) head = d.toString('latin1', 0, Math.min(d.length, 512));
      bytes += d.length;
    });
    conn.on('error', () => undefined);
    const closed = new Promise<void>((r) => conn.once('close', () => r()));
    conn.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    // The app ends its answer at once; the client reads its first bytes, then stops reading.
    await new Promise<void>((r) => conn.once('data', () => r()));
    conn.pause();
    const closing = server.close({ drainMs: LONG_DRAIN_MS });
    await new Promise((r) => setTimeout(r, 300));
    conn.resume();
    await closed;
    const length = Number(/content-length: (\d+)/i.exec(head)?.[1]);
    expect(length).toBe(BIG_BYTES);
    expect(bytes).toBe(head.indexOf('\r\n\r\n') + 4 + BIG_BYTES);
    expect(await finishesWithin(closing, WELL_BEFORE_MS), `drain ended within ${WELL_BEFORE_MS} ms`).toBe(true);
    server = undefined;
  });
});

describe('listen() connections', () => {
  it('bounds the connections by default', () => {
    expect(MAX_CONNECTIONS).toBe(1024);
  });

  it('closes connections past maxConnections as they are accepted', async () => {
    server = await listen(testApp().app, { maxConnections: 2 });
    for (let i = 0; i < 2; i++) {
      const s = await open(server.port);
      expect(await ask(s, 'GET /now HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
    }
    const third = await open(server.port);
    const text = whenClosed(third);
    third.write('GET /now HTTP/1.1\r\nHost: x\r\n\r\n', () => undefined);
    expect(await text).toBe('');
  });
});

const BIG_BYTES = 32 << 20;

/**
 * GET /now answers `now` synchronously; GET /stream streams `first`, then `rest` once released;
 * GET /big answers BIG_BYTES at once.
 */
function testApp(): { app: Hono; streaming: Promise<void>; nowAnswered: Promise<void>; release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let streamed!: () => void;
  const streaming = new Promise<void>((r) => (streamed = r));
  let answered!: () => void;
  const nowAnswered = new Promise<void>((r) => (answered = r));
  const big = new Uint8Array(BIG_BYTES);
  const app = new Hono();
  app.get('/now', (c) => {
    const res = c.text('now');
    answered();
    return res;
  });
  app.get('/stream', (c) => {
    streamed();
    const body = new ReadableStream<Uint8Array>({
      async start(controller) {
        controller.enqueue(new TextEncoder().encode('first'));
        await gate;
        controller.enqueue(new TextEncoder().encode('rest'));
        controller.close();
      },
    });
    return c.body(body, 200, { 'content-type': 'text/plain' });
  });
  app.get('/big', (c) => c.body(big, 200, { 'content-type': 'application/octet-stream' }));
  return { app, streaming, nowAnswered, release };
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1' }, () => resolve(s));
    sockets.push(s);
    s.once('error', reject);
  });
}

/** Whether `p` settles within `ms` (the drain is not left to run to its end when it does not). */
async function finishesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Resolves once `text` has come on `socket`. */
function received(socket: Socket, text: string): Promise<void> {
  return new Promise((resolve) => {
    let seen = '';
    const onData = (d: Buffer) => {
      seen += d.toString('latin1');
      if (!seen.includes(text)) return;
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
  });
}

/** Sends `request` and resolves with the first whole answer (head and Content-Length body). */
function ask(socket: Socket, request: string): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text.slice(0, end));
      if (end !== -1 && length && text.length >= end + 4 + Number(length[1])) done();
    };
    const done = () => {
      socket.off('data', onData);
      socket.off('close', done);
      resolve(text);
    };
    socket.on('data', onData);
    socket.once('close', done);
    socket.on('error', () => undefined);
    socket.write(request, () => undefined);
  });
}

/** What the server sent until the connection closed. */
function whenClosed(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(text));
  });
}
