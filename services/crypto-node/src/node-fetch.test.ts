import { createServer, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeGatewayFetch, nodeHttpFetch } from './node-fetch.js';

// nodeHttpFetch against a real node:http server on loopback: what it sends, what it gives
// back, and every way a call ends without an answer.
describe('nodeHttpFetch', () => {
  let server: Server;
  let base: string;
  const seen: { method: string; url: string; headers: Record<string, unknown>; body: string }[] = [];
  let gate: (() => void) | undefined;
  const ledger = { peer: 'the ledger', code: 'ERR_TLOG_UNAVAILABLE' } as const;

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
        } else if (req.url === '/chunks') {
          // A chunked answer whose second part waits until the client says it has the first.
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('first;');
          gate = () => res.end('second');
        } else if (req.url === '/stall') {
          // A chunked answer that gives one part and then nothing, for ever.
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('one;');
        } else if (req.url === '/cookies') {
          res.setHeader('set-cookie', ['a=1', 'b=2']);
          res.setHeader('x-dup', ['p', 'q']);
          res.end('ok');
        } else if (req.url === '/stream-cut') {
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('part;');
          gate = () => res.destroy();
        } else if (req.url === '/late-body') {
          // The head at once, the body after a pause longer than the caller's deadline.
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.flushHeaders();
          setTimeout(() => res.end('late'), 300);
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
    await expect(nodeHttpFetch({ timeoutMs: 100 })(`${base}/slow`)).rejects.toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', detail: { reason: 'timeout' } });
    // A deadline, not an idle timeout: bytes every 50 ms do not keep a 200 ms call alive.
    await expect(nodeHttpFetch({ ...ledger, timeoutMs: 200 })(`${base}/drip`)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'timeout' } });
    await expect(nodeHttpFetch(ledger)(`${base}/cut`)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'cut-off' }, message: 'the answer of the ledger was cut off' });
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
      await expect(nodeHttpFetch(ledger)(url)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'status' } });
    } finally {
      await new Promise((r) => raw.close(r));
    }
  });

  it('tells a server that got the request and broke its answer (not valid HTTP, or the connection closed before any) from one never reached', async () => {
    const raw: TcpServer = createTcpServer((sock) => {
      sock.once('data', (d) => {
        if (d.toString().startsWith('GET /garbage')) sock.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nbad header line\r\n\r\nok');
        else sock.destroy();
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    try {
      const at = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
      await expect(nodeHttpFetch(ledger)(`${at}/garbage`)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'answer' }, message: 'the answer of the ledger is not valid HTTP' });
      await expect(nodeHttpFetch(ledger)(`${at}/closed`)).rejects.toMatchObject({
        code: 'ERR_TLOG_UNAVAILABLE',
        detail: { reason: 'reset' },
        message: 'the ledger closed the connection after the request was sent, before answering',
      });
    } finally {
      await new Promise((r) => raw.close(r));
    }
  });

  it('refuses a URL that is not http(s), a Request object and a streamed body with ERR_USAGE, and an unreachable host with its code', async () => {
    await expect(nodeHttpFetch()('ftp://127.0.0.1/x')).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(nodeHttpFetch()(new Request(`${base}/x`))).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(nodeHttpFetch()(`${base}/x`, { method: 'POST', body: new ReadableStream(), duplex: 'half' } as RequestInit)).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(nodeHttpFetch(ledger)('http://127.0.0.1:9/x')).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { reason: 'connect' }, message: 'the ledger could not be reached' });
    await expect(nodeHttpFetch({ peer: 'the gateway', code: 'ERR_SDK_GATEWAY' })('http://127.0.0.1:9/x')).rejects.toMatchObject({ code: 'ERR_SDK_GATEWAY', message: 'the gateway could not be reached' });
  });

  it('gives repeated answer fields back as fetch does (each Set-Cookie on its own)', async () => {
    const res = await nodeHttpFetch()(`${base}/cookies`);
    expect(res.headers.getSetCookie()).toEqual(['a=1', 'b=2']);
    expect(res.headers.get('x-dup')).toBe('p, q');
  });

  it('refuses, without the secret in the error, a header value fetch would refuse and a URL with credentials; refuses a timer Node cannot set', async () => {
    const secret = 'Bearer SECRET-TOKEN';
    for (const headers of [[['authorization', `${secret}\u0000x`]], { authorization: `${secret}\r\nx: y` }] as HeadersInit[]) {
      const e = (await nodeHttpFetch()(`${base}/x`, { headers }).catch((x: unknown) => x)) as Error & { code: string; cause?: unknown };
      expect(e.code).toBe('ERR_USAGE');
      expect(`${e.message} ${String(e.cause)} ${JSON.stringify(e)}`).not.toContain('SECRET');
    }
    const creds = (await nodeHttpFetch()('http://user:SECRET-PW@127.0.0.1:9/x').catch((x: unknown) => x)) as Error & { code: string; cause?: unknown };
    expect(creds).toMatchObject({ code: 'ERR_USAGE', message: 'the URL of the server must not carry credentials' });
    const bad = (await nodeHttpFetch()('http://SECRET-PW@[::1').catch((x: unknown) => x)) as Error & { code: string; cause?: unknown };
    expect(bad.code).toBe('ERR_USAGE');
    expect(`${bad.message} ${String(bad.cause)}`).not.toContain('SECRET');
    expect(() => nodeHttpFetch({ timeoutMs: 2 ** 31 })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => nodeHttpFetch({ idleTimeoutMs: 0 })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => nodeHttpFetch({ timeoutMs: Infinity })).not.toThrow();
  });

  it('rejects an aborted call with the signal\'s reason, whatever it is', async () => {
    await expect(nodeHttpFetch()(`${base}/x`, { signal: AbortSignal.abort('stop') })).rejects.toBe('stop');
    const ac = new AbortController();
    const pending = nodeHttpFetch()(`${base}/slow`, { signal: ac.signal });
    setTimeout(() => ac.abort('later'), 20);
    await expect(pending).rejects.toBe('later');
  });

  it('takes headers as a Headers object or pairs, and a body as an ArrayBuffer (what fetch takes)', async () => {
    const f = nodeHttpFetch();
    await (await f(new URL(`${base}/h1`), { method: 'POST', headers: new Headers({ 'X-One': '1' }), body: new TextEncoder().encode('ab').buffer })).text();
    expect(seen.at(-1)).toMatchObject({ url: '/h1', body: 'ab', headers: { 'x-one': '1', 'content-length': '2' } });
    await (await f(`${base}/h2`, { headers: [['x-two', '2']] })).text();
    expect(seen.at(-1)).toMatchObject({ url: '/h2', headers: { 'x-two': '2' } });
  });

  describe('stream: true', () => {
    it('hands a chunked answer over at its head and gives its bytes as they arrive', async () => {
      const f = nodeHttpFetch({ stream: true, timeoutMs: 200 });
      const res = await f(`${base}/chunks`);
      expect(res.status).toBe(200);
      const reader = res.body!.getReader();
      const dec = new TextDecoder();
      // The first part is readable while the server still holds the second back.
      expect(dec.decode((await reader.read()).value)).toBe('first;');
      gate!();
      let rest = '';
      for (let r = await reader.read(); !r.done; r = await reader.read()) rest += dec.decode(r.value);
      expect(rest).toBe('second');
    });

    it('reads an answer with a Content-Length up to maxBody whole, and streams a longer one', async () => {
      const f = nodeHttpFetch({ stream: true, maxBody: 1000 });
      expect((await (await f(`${base}/big`)).arrayBuffer()).byteLength).toBe(4096);
      expect(await (await f(`${base}/x`, { method: 'POST', body: 'hi' })).json()).toEqual({ echo: 'hi' });
    });

    it('keeps the deadline to the head: a body after it still arrives', async () => {
      expect(await (await nodeHttpFetch({ stream: true, timeoutMs: 100 })(`${base}/late-body`)).text()).toBe('late');
      await expect(nodeHttpFetch({ timeoutMs: 100 })(`${base}/late-body`)).rejects.toMatchObject({ detail: { reason: 'timeout' } });
    });

    it('errors the body stream, typed, when the answer is cut off, and with the reason when the call is aborted', async () => {
      const f = nodeHttpFetch({ stream: true, peer: 'the gateway', code: 'ERR_SDK_GATEWAY' });
      const cut = (await f(`${base}/stream-cut`)).body!.getReader();
      expect(new TextDecoder().decode((await cut.read()).value)).toBe('part;');
      gate!();
      await expect(cut.read()).rejects.toMatchObject({ code: 'ERR_SDK_GATEWAY', detail: { reason: 'cut-off' } });
      const ac = new AbortController();
      const aborted = (await f(`${base}/chunks`, { signal: ac.signal })).body!.getReader();
      await aborted.read();
      ac.abort(new Error('caller gave up'));
      await expect(aborted.read()).rejects.toThrow(/caller gave up/);
    });

    it('fails a streamed body that goes silent for idleTimeoutMs, typed', async () => {
      const reader = (await nodeHttpFetch({ stream: true, idleTimeoutMs: 150, peer: 'the gateway', code: 'ERR_SDK_GATEWAY' })(`${base}/stall`)).body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe('one;');
      await expect(reader.read()).rejects.toMatchObject({ code: 'ERR_SDK_GATEWAY', detail: { reason: 'timeout' } });
    });

    it('nodeGatewayFetch is the SDK setup: streamed, ERR_SDK_GATEWAY, overridable', async () => {
      const f = nodeGatewayFetch({ timeoutMs: 100 });
      await expect(f(`${base}/slow`)).rejects.toMatchObject({ code: 'ERR_SDK_GATEWAY', detail: { reason: 'timeout' }, message: 'the gateway did not answer within 100 ms' });
      const res = await f(`${base}/chunks`);
      const reader = res.body!.getReader();
      expect(new TextDecoder().decode((await reader.read()).value)).toBe('first;');
      await reader.cancel();
      f.close();
    });

    it('a cancelled body drops its connection and the transport goes on', async () => {
      const f = nodeHttpFetch({ stream: true });
      const res = await f(`${base}/chunks`);
      await res.body!.cancel();
      expect(await (await f(`${base}/x`, { method: 'POST', body: 'after' })).json()).toEqual({ echo: 'after' });
      f.close();
    });
  });
});
