// The broker's HTTP server cuts requests that do not arrive in time: a body that stalls, or a
// head that never ends, holds its connection (and what it sent) for the request deadline, not
// Node's default of 300 s, and a connection that sends nothing for the head's deadline. It holds
// a bounded number of connections, in all and per client address. close({ drainMs }) stops
// accepting, closes what is idle, lets requests in progress finish (Connection: close), and cuts
// the rest at the end of the drain.
import { connect, type Socket } from 'node:net';
import { Hono } from 'hono';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { issueApiKey } from './auth/api-keys.js';
import { createBrokerApp, type BrokerEnv } from './http/app.js';
import { HEADERS_TIMEOUT_MS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, REQUEST_TIMEOUT_MS, serveBroker, type RunningServer } from './serve.js';
import { embeddedBackend, type Harness } from './testing/harness.js';

describe('serveBroker deadlines', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let server: RunningServer | undefined;

  beforeEach(async () => {
    h = await backend.open();
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await h.close();
  });

  it('defaults well below Node’s 300 s', () => {
    expect(REQUEST_TIMEOUT_MS).toBeLessThanOrEqual(30_000);
    expect(HEADERS_TIMEOUT_MS).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS);
  });

  it('closes a connection whose body stalls, or whose head never ends, at the request deadline', async () => {
    const token = (await issueApiKey(h.metadata, { tenant: 'acme', role: 'admin', label: 'admin', createdBy: 'test', now: Date.now() })).token;
    server = await serveBroker(createBrokerApp({ service: h.service, apiKeys: h.metadata }), { requestTimeoutMs: 1000 });
    const stalledBody = await open(server.port);
    const stalledHead = await open(server.port);
    const started = Date.now();
    const closed = [whenClosed(stalledBody), whenClosed(stalledHead)];
    // An admin's body the handler is reading, and a head.
    stalledBody.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n${' '.repeat(0x4000)}\r\n`);
    stalledHead.write('POST /v1/keys HTTP/1.1\r\nHost: x\r\nX-Slow: a');
    // Both keep trickling, so no idle timer could be what closes them.
    const trickle = setInterval(() => {
      if (!stalledBody.destroyed) stalledBody.write('1\r\n \r\n');
      if (!stalledHead.destroyed) stalledHead.write('a');
    }, 200);
    try {
      const answers = await Promise.race([Promise.all(closed), new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000))]);
      expect(answers, 'both connections closed within 5 s').toBeDefined();
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      // Node answers a request it cut with 408 before closing.
      for (const a of answers!) expect(a === '' || a.startsWith('HTTP/1.1 408'), a.slice(0, 40)).toBe(true);
    } finally {
      clearInterval(trickle);
      stalledBody.destroy();
      stalledHead.destroy();
    }
  });
});

describe('serveBroker connections', () => {
  let server: RunningServer | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await server?.close();
    server = undefined;
  });

  /** A connection that was served one request and is kept alive. */
  async function served(port: number, localAddress?: string): Promise<Socket> {
    const s = await open(port, localAddress);
    sockets.push(s);
    expect(await ask(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
    return s;
  }

  /** A connection the server accepts and closes at once: it answers nothing. */
  async function dropped(port: number, localAddress?: string): Promise<void> {
    const s = await open(port, localAddress);
    sockets.push(s);
    const text = whenClosed(s);
    s.write('GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', () => undefined);
    expect(await text).toBe('');
  }

  it('bounds the connections by default', () => {
    expect(MAX_CONNECTIONS).toBe(1024);
    expect(MAX_CONNECTIONS_PER_CLIENT).toBeLessThan(MAX_CONNECTIONS);
  });

  it('closes connections past maxConnections as they are accepted, and takes new ones once others closed', async () => {
    server = await serveBroker(healthApp(), { maxConnections: 2 });
    const [first] = [await served(server.port), await served(server.port)];
    await dropped(server.port);
    first.destroy();
    // The server sees the close a moment later.
    await waitFor(async () => {
      const s = await open(server!.port);
      sockets.push(s);
      return /^HTTP\/1\.1 200/.test(await ask(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')) ? true : undefined;
    });
  });

  it('closes connections of a client address past maxConnectionsPerClient, while other addresses are served', async () => {
    server = await serveBroker(healthApp(), { maxConnectionsPerClient: 2 });
    const [first] = [await served(server.port, '127.0.0.2'), await served(server.port, '127.0.0.2')];
    await dropped(server.port, '127.0.0.2');
    await served(server.port, '127.0.0.1');
    first.destroy();
    await waitFor(async () => {
      const s = await open(server!.port, '127.0.0.2');
      sockets.push(s);
      return /^HTTP\/1\.1 200/.test(await ask(s, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')) ? true : undefined;
    });
  });

  it('closes a connection that sends nothing at the head deadline, so that it cannot hold its place', async () => {
    server = await serveBroker(healthApp(), { headersTimeoutMs: 300, requestTimeoutMs: 600 });
    const silent = await open(server.port);
    sockets.push(silent);
    const answer = await whenClosed(silent);
    expect(answer === '' || answer.startsWith('HTTP/1.1 408'), answer.slice(0, 40)).toBe(true);
  });
});

describe('serveBroker close({ drainMs })', () => {
  let server: RunningServer | undefined;
  const sockets: Socket[] = [];
  afterEach(async () => {
    for (const s of sockets.splice(0)) s.destroy();
    await server?.close();
    server = undefined;
  });

  it('stops accepting, closes idle connections at once, and lets a request in progress finish with Connection: close', async () => {
    const hold = holdingApp();
    server = await serveBroker(hold.app);
    const port = server.port;
    const idle = await open(port);
    const silent = await open(port);
    const busy = await open(port);
    sockets.push(idle, silent, busy);
    expect(await ask(idle, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
    const idleClosed = whenClosed(idle);
    const silentClosed = whenClosed(silent);
    const answer = whenClosed(busy);
    busy.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
    await hold.reached;

    let done = false;
    const closing = server.close({ drainMs: 60_000 }).then(() => void (done = true));
    expect(await idleClosed).toBe('');
    expect(await silentClosed).toBe('');
    expect(await codeOfConnect(port)).toBe('ECONNREFUSED');
    expect(done).toBe(false);

    hold.release();
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(text.endsWith('held')).toBe(true);
    await closing;
    server = undefined;
  });

  it('reads a body still arriving when the drain begins, and answers with Connection: close', async () => {
    const hold = holdingApp();
    server = await serveBroker(hold.app);
    const sending = await open(server.port);
    sockets.push(sending);
    const answer = whenClosed(sending);
    sending.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhello');
    await hold.reading;
    const closing = server.close({ drainMs: 60_000 });
    expect(await codeOfConnect(server.port)).toBe('ECONNREFUSED');
    sending.write('world');
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(text.endsWith('helloworld')).toBe(true);
    await closing;
    server = undefined;
  });

  it('cuts what is still in progress when the drain ends, and at once on a second close without one', async () => {
    for (const second of [false, true]) {
      const hold = holdingApp();
      server = await serveBroker(hold.app);
      const busy = await open(server.port);
      sockets.push(busy);
      const answer = whenClosed(busy);
      busy.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
      await hold.reached;
      const closing = server.close({ drainMs: second ? 60_000 : 200 });
      if (second) await server.close();
      await closing;
      expect(await answer).toBe('');
      server = undefined;
      hold.release();
    }
  });
});

/** An app with GET /healthz only. */
function healthApp(): Hono<BrokerEnv> {
  const app = new Hono<BrokerEnv>();
  app.get('/healthz', (c) => c.json({ ok: true }));
  return app;
}

/**
 * GET /hold answers `held` once released (`reached`: a request waits there); POST /echo answers
 * its body (`reading`: its handler runs).
 */
function holdingApp(): { app: Hono<BrokerEnv>; reached: Promise<void>; reading: Promise<void>; release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reached!: () => void;
  const atHold = new Promise<void>((r) => (reached = r));
  let read!: () => void;
  const reading = new Promise<void>((r) => (read = r));
  const app = healthApp();
  app.get('/hold', async (c) => {
    reached();
    await gate;
    return c.text('held');
  });
  app.post('/echo', async (c) => {
    read();
    return c.text(await c.req.text());
  });
  return { app, reached: atHold, reading, release };
}

function open(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) }, () => resolve(s));
    s.once('error', reject);
  });
}

/** 'connected', or the error code of a connection attempt (closed at once when it connects). */
function codeOfConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
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

async function waitFor<T>(f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
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
