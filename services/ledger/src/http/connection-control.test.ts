// controlConnections, under the broker's serveBroker and the gateway's listen(): connections
// bounded in all and per client (by an injected key), and a close that drains: new connections
// refused, those at rest (kept alive, or that never sent a byte) closed at once, answers in
// progress finished and written whole, with `Connection: close` set before the app (or the
// intercept) answers, the rest cut when the drain ends or at a second close without one.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { controlConnections, peerAddressKey, type ConnectionControl, type ConnectionControlOptions } from './connection-control.js';
import { ask, codeOfConnect, finishesWithin, received, waitFor, whenClosed } from '../testing/raw-http.js';

/** A drain far longer than any test may take; "well before" it: nothing held it. */
const LONG_DRAIN_MS = 20_000;
const WELL_BEFORE_MS = 10_000;
const BIG_BYTES = 32 << 20;

let control: ConnectionControl | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await control?.close(0);
  control = undefined;
});

/**
 * Serves GET /now (answered synchronously; then `answered`), GET /hold (answered once released;
 * `reached` when one waits), GET /stream (`first`, then the end once released) and GET /big
 * (BIG_BYTES, ended at once); `intercept` claims GET /intercepted (answered synchronously too).
 */
async function start(options: Omit<ConnectionControlOptions, 'intercept'>): Promise<{ port: number; reached: Promise<void>; answered: Promise<void>; release(): void }> {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let reach!: () => void;
  const reached = new Promise<void>((r) => (reach = r));
  let answer!: () => void;
  const answered = new Promise<void>((r) => (answer = r));
  const big = Buffer.alloc(BIG_BYTES);
  const end = (res: ServerResponse, body: string | Buffer) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
    res.end(body);
  };
  const intercept = (req: IncomingMessage, res: ServerResponse) => {
    if (req.url !== '/intercepted') return false;
    end(res, 'intercepted');
    answer();
    return true;
  };
  const c = controlConnections({ ...options, intercept });
  control = c;
  const server = c.createServer({}, (req, res) => {
    if (req.url === '/now') {
      end(res, 'now');
      return answer();
    }
    if (req.url === '/big') return end(res, big);
    if (req.url === '/stream') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first');
      return void gate.then(() => res.end('rest'));
    }
    reach();
    void gate.then(() => end(res, 'held'));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as { port: number }).port, reached, answered, release };
}

describe('controlConnections close(drainMs)', () => {
  it('refuses new connections, closes those at rest at once, and ends once the answer in progress is out', async () => {
    const s = await start({ maxConnections: 10 });
    const silent = await open(s.port);
    const idle = await open(s.port);
    const busy = await open(s.port);
    expect(await ask(idle, 'GET /now HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
    const [silentClosed, idleClosed, answer] = [whenClosed(silent), whenClosed(idle), whenClosed(busy)];
    busy.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
    await s.reached;

    let done = false;
    const closing = control!.close(LONG_DRAIN_MS).then(() => void (done = true));
    expect(await silentClosed).toBe('');
    expect(await idleClosed).toBe('');
    expect(await codeOfConnect(s.port)).toBe('ECONNREFUSED');
    expect(done).toBe(false);
    s.release();
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 200/);
    expect(text).toMatch(/\r\nconnection: close\r\n/i);
    expect(text.endsWith('held')).toBe(true);
    expect(await finishesWithin(closing, WELL_BEFORE_MS)).toBe(true);
  });

  it('sets Connection: close before a synchronous answer, of the app or the intercept, to a request that arrives during the drain', async () => {
    for (const path of ['/now', '/intercepted']) {
      const s = await start({ maxConnections: 10 });
      // A streamed answer whose head is out before the drain: the connection is kept alive for now.
      const conn = await open(s.port);
      const text = whenClosed(conn);
      conn.write('GET /stream HTTP/1.1\r\nHost: x\r\n\r\n');
      await received(conn, 'first');
      const closing = control!.close(LONG_DRAIN_MS);
      // Pipelined behind it, answered at once on arrival, and sent once the stream ends.
      conn.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`);
      await s.answered;
      s.release();
      const [first, second] = (await text).split(/(?=HTTP\/1\.1 )/);
      expect(first).toMatch(/^HTTP\/1\.1 200/);
      expect(first).not.toMatch(/\r\nconnection: close\r\n/i);
      expect(second).toMatch(/^HTTP\/1\.1 200/);
      expect(second).toMatch(/\r\nconnection: close\r\n/i);
      expect(second!.endsWith(path.slice(1))).toBe(true);
      expect(await finishesWithin(closing, WELL_BEFORE_MS)).toBe(true);
    }
  });

  it('writes an answer ended but not yet written (a client slow to read) whole', async () => {
    const s = await start({ maxConnections: 10 });
    const conn = await open(s.port);
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
    const closing = control!.close(LONG_DRAIN_MS);
    await new Promise((r) => setTimeout(r, 300));
    conn.resume();
    await closed;
    expect(bytes).toBe(head.indexOf('\r\n\r\n') + 4 + BIG_BYTES);
    expect(await finishesWithin(closing, WELL_BEFORE_MS)).toBe(true);
  });

  it('cuts what is still in progress when the drain ends, and at once on a second close without one', async () => {
    for (const second of [false, true]) {
      const s = await start({ maxConnections: 10 });
      const busy = await open(s.port);
      const answer = whenClosed(busy);
      busy.write('GET /hold HTTP/1.1\r\nHost: x\r\n\r\n');
      await s.reached;
      const closing = control!.close(second ? LONG_DRAIN_MS : 200);
      if (second) await control!.close(0);
      expect(await finishesWithin(closing, WELL_BEFORE_MS)).toBe(true);
      expect(await answer).toBe('');
      s.release();
    }
  });
});

describe('controlConnections bounds', () => {
  it('closes connections past maxConnections as they are accepted', async () => {
    const s = await start({ maxConnections: 2 });
    await served(s.port);
    await served(s.port);
    await dropped(s.port);
  });

  it('closes connections past perClient.max for one client key, while other clients are served', async () => {
    const s = await start({ maxConnections: 10, perClient: { max: 2, clientKey: (address) => address } });
    const first = await served(s.port, '127.0.0.2');
    await served(s.port, '127.0.0.2');
    await dropped(s.port, '127.0.0.2');
    await served(s.port, '127.0.0.1');
    first.destroy();
    // The server sees the close a moment later.
    await waitFor(async () => {
      const c = await open(s.port, '127.0.0.2');
      return /^HTTP\/1\.1 200/.test(await ask(c, 'GET /now HTTP/1.1\r\nHost: x\r\n\r\n')) ? true : undefined;
    });
  });

  it('refuses bounds that are not whole numbers, at least 1', () => {
    for (const options of [{ maxConnections: 0 }, { maxConnections: 1.5 }, { maxConnections: 4, perClient: { max: 0, clientKey: () => '' } }]) {
      expect(() => controlConnections(options)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    }
  });
});

describe('peerAddressKey', () => {
  it('keys an IPv4 peer by its address (also IPv4-mapped), an IPv6 peer by its /64, anything else apart', () => {
    const cases: [string, string][] = [
      ['127.0.0.2', 'ip4:127.0.0.2'],
      ['::ffff:10.1.2.3', 'ip4:10.1.2.3'],
      ['::FFFF:10.1.2.3', 'ip4:10.1.2.3'],
      ['2001:db8:0:1::1', 'ip6:2001:db8:0:1::/64'],
      ['2001:DB8:0000:0001:ffff::2', 'ip6:2001:db8:0:1::/64'],
      ['2001:db8::1:0:0:1', 'ip6:2001:db8:0:0::/64'],
      ['2001:db8:0:0:1::1', 'ip6:2001:db8:0:0::/64'],
      ['fe80::1%eth0', 'ip6:fe80:0:0:0::/64'],
      ['::1', 'ip6:0:0:0:0::/64'],
      ['64:ff9b::1.2.3.4', 'ip6:64:ff9b:0:0::/64'],
      ['1:2:3:4:5:6:1.2.3.4', 'ip6:1:2:3:4::/64'],
      ['not-an-address', 'other:not-an-address'],
    ];
    for (const [address, key] of cases) expect(peerAddressKey(address), address).toBe(key);
  });
});

/** A connection that was served one request and is kept alive. */
async function served(port: number, localAddress?: string): Promise<Socket> {
  const s = await open(port, localAddress);
  expect(await ask(s, 'GET /now HTTP/1.1\r\nHost: x\r\n\r\n')).toMatch(/^HTTP\/1\.1 200/);
  return s;
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






