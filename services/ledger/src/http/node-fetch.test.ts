import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeHttpFetch } from './node-fetch.js';

// nodeHttpFetch against a real node:http server on loopback: what it sends, what it gives
// back, and every way a call ends without an answer.
describe('nodeHttpFetch', () => {
  let server: Server;
  let base: string;
  const seen: { method: string; url: string; headers: Record<string, unknown>; body: string }[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(parts).toString() });
        if (req.url === '/big') {
          res.writeHead(200, { 'content-type': 'application/octet-stream' });
          res.end(Buffer.alloc(4096, 1));
        } else if (req.url === '/empty') {
          res.writeHead(204);
          res.end();
        } else if (req.url === '/slow') {
          // never answers
        } else if (req.url === '/drip') {
          // One byte every 50 ms, for ever: never idle, never done.
          res.writeHead(200, { 'content-type': 'text/plain' });
          const t = setInterval(() => res.write('.'), 50);
          res.once('close', () => clearInterval(t));
        } else if (req.url === '/cut') {
          res.writeHead(200, { 'content-length': '1000' });
          res.write('only part of it');
          setTimeout(() => res.destroy(), 20);
        } else {
          res.writeHead(201, { 'content-type': 'application/json', 'x-multi': ['a', 'b'] });
          res.end(JSON.stringify({ echo: Buffer.concat(parts).toString() }));
        }
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  it('sends method, headers and body, and gives back status, headers and the body', async () => {
    const f = nodeHttpFetch();
    const res = await f(`${base}/events`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"a":1}' });
    expect(res.status).toBe(201);
    expect(res.headers.get('content-type')).toBe('application/json');
    expect(res.headers.get('x-multi')).toBe('a, b');
    expect(await res.json()).toEqual({ echo: '{"a":1}' });
    expect(seen.at(-1)).toMatchObject({ method: 'POST', url: '/events', body: '{"a":1}', headers: { 'content-type': 'application/json', 'content-length': '7' } });
    const bytes = await f(`${base}/events`, { method: 'POST', body: new Uint8Array([0xe2, 0x82, 0xac]) });
    expect(await bytes.json()).toEqual({ echo: '€' });
    expect((await f(`${base}/empty`)).status).toBe(204);
  });

  it('reuses one connection for calls in sequence (keep-alive)', async () => {
    const ports = new Set<number>();
    const onConn = (s: { remotePort?: number }) => ports.add(s.remotePort!);
    server.on('connection', onConn);
    const f = nodeHttpFetch();
    for (let i = 0; i < 5; i++) await (await f(`${base}/x`)).text();
    server.off('connection', onConn);
    expect(ports.size).toBe(1);
  });

  it('fails, typed, a longer answer than maxBody, a call past its deadline (silent or trickling), a cut-off answer; an aborted call rejects with its reason', async () => {
    await expect(nodeHttpFetch({ maxBody: 1000 })(`${base}/big`)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect((await (await nodeHttpFetch({ maxBody: 4096 })(`${base}/big`)).arrayBuffer()).byteLength).toBe(4096);
    await expect(nodeHttpFetch({ timeoutMs: 100 })(`${base}/slow`)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'timeout' } });
    // A deadline, not an idle timeout: bytes every 50 ms do not keep a 200 ms call alive.
    await expect(nodeHttpFetch({ timeoutMs: 200 })(`${base}/drip`)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'timeout' } });
    await expect(nodeHttpFetch()(`${base}/cut`)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'cut-off' } });
    const ac = new AbortController();
    const pending = nodeHttpFetch()(`${base}/slow`, { signal: ac.signal });
    setTimeout(() => ac.abort(new Error('caller gave up')), 20);
    await expect(pending).rejects.toThrow(/caller gave up/);
    await expect(nodeHttpFetch()(`${base}/x`, { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow(/already/);
  });

  it('refuses a status outside 200-599 with a typed error instead of throwing from the socket (a hostile ledger)', async () => {
    const raw: TcpServer = createTcpServer((sock) => {
      sock.once('data', () => sock.end('HTTP/1.1 600 Odd\r\ncontent-length: 2\r\n\r\nok'));
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(raw.address() as AddressInfo).port}/x`;
      await expect(nodeHttpFetch()(url)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'status' } });
    } finally {
      await new Promise((r) => raw.close(r));
    }
  });

  it('refuses a URL that is not http(s) with ERR_USAGE, and an unreachable host with ERR_TLOG_UNAVAILABLE', async () => {
    await expect(nodeHttpFetch()('ftp://127.0.0.1/x')).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(nodeHttpFetch()('http://127.0.0.1:9/x')).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'connect' } });
  });
});
