// listen(), which serves the log (`custody log serve`) and the witness: connections bounded in all
// and per client address, as the broker's, and close({ drainMs }) that stops accepting, closes
// what is idle, lets requests in progress finish with their answers written whole (an append on
// the node:http path among them), and cuts the rest at the end of the drain.
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { SIG_TYPE_ED25519, generateSignerKey, type CustodyEvent } from '@custody/ledger';
import { createEventsNodeHandler, createLogApp } from './http/log-app.js';
import type { NodeIntercept } from './http/node-server.js';
import { DRAIN_MS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, listen, openLog, type RunningServer } from './open.js';
import { tempDir } from './testing/tmp.js';
import { ask, codeOfConnect, waitFor, whenClosed } from './testing/raw-http.js';

/** A drain far longer than any test may take. */
const LONG_DRAIN_MS = 60_000;
const BIG_BYTES = 32 << 20;

let server: RunningServer | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await server?.close();
  server = undefined;
});

describe('listen connections', () => {
  it('bounds the connections, and drains, by default as the broker does', () => {
    expect(MAX_CONNECTIONS).toBe(1024);
    expect(MAX_CONNECTIONS_PER_CLIENT).toBe(256);
    expect(DRAIN_MS).toBe(10_000);
  });

  it('closes connections past maxConnections as they are accepted, serves those under it, and takes new ones once others closed', async () => {
    server = await listen(holdingApp().app, '127.0.0.1', 0, { maxConnections: 2 });
    const port = server.port;
    const [first] = [await served(port), await served(port)];
    await dropped(port);
    first.destroy();
    // The server sees the close a moment later.
    await waitFor(async () => ((await answersOn(port)) ? true : undefined));
  });

  it('closes connections of a client address past maxConnectionsPerClient, while other addresses are served', async () => {
    server = await listen(holdingApp().app, '127.0.0.1', 0, { maxConnectionsPerClient: 2 });
    const port = server.port;
    const [first] = [await served(port, '127.0.0.2'), await served(port, '127.0.0.2')];
    await dropped(port, '127.0.0.2');
    await served(port, '127.0.0.1');
    first.destroy();
    await waitFor(async () => ((await answersOn(port, '127.0.0.2')) ? true : undefined));
  });

  it('refuses bounds that are not whole numbers, at least 1 (ERR_USAGE)', async () => {
    for (const options of [{ maxConnections: 0 }, { maxConnections: 1.5 }, { maxConnectionsPerClient: 0 }]) {
      await expect(listen(holdingApp().app, '127.0.0.1', 0, options)).rejects.toMatchObject({ code: 'ERR_USAGE' });
    }
  });
});

describe('listen close({ drainMs })', () => {
  it('lets a request in progress finish, its answer whole with Connection: close, and closes idle connections at once', async () => {
    const hold = holdingApp();
    server = await listen(hold.app);
    const idle = await served(server.port);
    const silent = await open(server.port);
    const busy = await open(server.port);
    const [idleClosed, silentClosed, answer] = [whenClosed(idle), whenClosed(silent), whenClosed(busy)];
    busy.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
    await hold.reached;

    let done = false;
    const closing = server.close({ drainMs: LONG_DRAIN_MS }).then(() => void (done = true));
    expect(await idleClosed).toBe('');
    expect(await silentClosed).toBe('');
    expect(done).toBe(false);
    hold.release();
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(text).toMatch(/\r\ncontent-length: 4\r\n/i);
    expect(text.endsWith('\r\n\r\nheld')).toBe(true);
    await closing;
    server = undefined;
  });

  it('refuses a new connection once the drain has begun, while a request in progress still waits', async () => {
    const hold = holdingApp();
    server = await listen(hold.app);
    const port = server.port;
    const busy = await open(port);
    const answer = whenClosed(busy);
    busy.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
    await hold.reached;

    let done = false;
    const closing = server.close({ drainMs: LONG_DRAIN_MS }).then(() => void (done = true));
    expect(await codeOfConnect(port)).toBe('ECONNREFUSED');
    expect(busy.destroyed).toBe(false);
    expect(done).toBe(false);
    hold.release();
    expect((await answer).endsWith('held')).toBe(true);
    await closing;
    server = undefined;
  });

  it('writes an answer ended but not yet written (a client slow to read) whole', async () => {
    server = await listen(holdingApp().app);
    const conn = await open(server.port);
    let bytes = 0;
    let head = '';
    conn.on('data', (d: Buffer) => {
      if (bytes === 0) head = d.toString('latin1', 0, Math.min(d.length, 512));
      bytes += d.length;
    });
    const closed = new Promise<void>((r) => conn.once('close', () => r()));
    conn.write('GET /big HTTP/1.1\r\nHost: x\r\n\r\n');
    await new Promise<void>((r) => conn.once('data', () => r()));
    conn.pause();
    const closing = server.close({ drainMs: LONG_DRAIN_MS });
    await new Promise((r) => setTimeout(r, 300));
    conn.resume();
    await closed;
    expect(bytes).toBe(head.indexOf('\r\n\r\n') + 4 + BIG_BYTES);
    await closing;
    server = undefined;
  });

  it('lets an append on the node:http path whose body still arrives when the drain begins be sequenced and answered whole', async () => {
    const t = tempDir();
    const key = await generateSignerKey('log.test/drain', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(12));
    const { log, store } = await openLog({ dir: join(t.dir, 'log'), skey: key.skey, integrateIntervalMs: 50 });
    try {
      const handler = createEventsNodeHandler(log);
      let claim!: () => void;
      const claimed = new Promise<void>((r) => (claim = r));
      const intercept: NodeIntercept = (req, res) => {
        const took = handler(req, res);
        if (took) claim();
        return took;
      };
      server = await listen(createLogApp(log, store), '127.0.0.1', 0, { intercept });
      const body = JSON.stringify(event);
      const sending = await open(server.port);
      const answer = whenClosed(sending);
      sending.write(`POST /events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 10)}`);
      // The node:http path took it and reads its body.
      await claimed;
      const closing = server.close({ drainMs: LONG_DRAIN_MS });
      expect(await codeOfConnect(server.port)).toBe('ECONNREFUSED');
      sending.write(body.slice(10));
      const text = await answer;
      expect(text).toMatch(/^HTTP\/1\.1 200/);
      expect(text).toMatch(/\r\nconnection: close\r\n/i);
      const length = Number(/\r\ncontent-length: (\d+)\r\n/i.exec(text)?.[1]);
      const json = text.slice(text.indexOf('\r\n\r\n') + 4);
      expect(json.length).toBe(length);
      expect(JSON.parse(json)).toMatchObject({ index: 0 });
      await closing;
      server = undefined;
      await log.integrateNow();
      expect((await log.proof(0)).index).toBe(0);
    } finally {
      await server?.close();
      server = undefined;
      await log.close({ integrate: false });
      t.cleanup();
    }
  });
});

const event: CustodyEvent = { v: 1, type: 'operator.event', time: '2025-05-01T12:00:00Z', action: 'test', subject: 'drained' };

/** GET /now answers at once; GET /hold answers `held` once released (`reached`: a request waits there); GET /big, BIG_BYTES. */
function holdingApp(): { app: Hono; reached: Promise<void>; release(): void } {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  const big = new Uint8Array(BIG_BYTES);
  const app = new Hono();
  app.get('/now', (c) => c.text('now'));
  app.get('/hold', async (c) => {
    reach();
    await gate;
    return c.text('held');
  });
  app.get('/big', (c) => c.body(big, 200, { 'content-type': 'application/octet-stream' }));
  return { app, reached, release };
}

/** A connection that was served one request and is kept alive. */
async function served(port: number, localAddress?: string): Promise<Socket> {
  const s = await open(port, localAddress);
  expect(await ask(s, 'GET /now HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
  return s;
}

/** Whether a new connection is served. */
async function answersOn(port: number, localAddress?: string): Promise<boolean> {
  const s = await open(port, localAddress);
  return /^HTTP\/1\.1 200/.test(await ask(s, 'GET /now HTTP/1.1\r\nHost: x\r\n\r\n'));
}

/** A connection the server accepts and closes at once: it answers nothing. */
async function dropped(port: number, localAddress?: string): Promise<void> {
  const s = await open(port, localAddress);
  const text = whenClosed(s);
  s.write('GET /now HTTP/1.1\r\nHost: x\r\n\r\n', () => undefined);
  expect(await text).toBe('');
}

function open(port: number, localAddress?: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', ...(localAddress ? { localAddress } : {}) }, () => resolve(s));
    sockets.push(s);
    s.once('error', reject);
  });
}




