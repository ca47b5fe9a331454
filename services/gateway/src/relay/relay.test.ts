// The relay's own transport to the gateway: a streamed answer passes through for as long as it
// keeps coming (the deadline covers the wait for its head), and one that falls silent is cut off,
// logged through the relay's logger (not printed by the HTTP server).
import { createServer, request as httpRequest, type ClientRequest, type Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Server as TcpServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { listen, type RunningServer } from '../http/serve.js';
import { createGatewayLogger } from '../observability/logger.js';
import { createRelayApp } from './relay.js';

describe('relay transport', () => {
  let gateway: Server;
  let relay: RunningServer;
  const lines: string[] = [];
  let finished = 0;
  let closedEarly = 0;
  let closedBeforeHead = 0;
  const seen: Record<string, unknown>[] = [];

  beforeAll(async () => {
    // A stand-in gateway: a chunked answer of six parts 100 ms apart, or one part and then silence.
    gateway = createServer((req, res) => {
      req.resume();
      seen.push({ ...req.headers });
      // A body of 41 (or 60 001) bytes stands for a request the model takes long to begin answering.
      if (req.headers['content-length'] === '41' || req.headers['content-length'] === '60001') {
        // A model still working: no head for a while.
        const t = setTimeout(() => res.end('late'), 5000);
        res.once('close', () => {
          clearTimeout(t);
          if (!res.writableFinished) closedBeforeHead++;
        });
        return;
      }
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'message/ohttp-chunked-res', 'x-not-forwarded': 'secret-ish' });
        if (req.headers['content-type'] === 'message/ohttp-chunked-req') {
          let n = 0;
          const t = setInterval(() => {
            res.write(`part${n};`);
            if (++n === 6) {
              clearInterval(t);
              res.end();
            }
          }, 100);
          res.once('finish', () => finished++);
          res.once('close', () => {
            clearInterval(t);
            if (n < 6) closedEarly++;
          });
        } else res.write('only;');
      });
    });
    await new Promise<void>((r) => gateway.listen(0, '127.0.0.1', r));
    relay = await listen(
      createRelayApp({ gateway: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`, timeoutMs: 250, idleTimeoutMs: 250, logger: createGatewayLogger({ destination: { write: (l: string) => void lines.push(l) } }) }),
    );
  });
  afterAll(async () => {
    await relay.close();
    gateway.closeAllConnections();
    await new Promise((r) => gateway.close(r));
  });

  it('passes a stream longer than its deadline through whole, as it comes, with only the forwarded headers', async () => {
    seen.length = 0;
    // The client's own headers, Accept included (its wording tells clients apart), do not reach the gateway.
    const res = await fetch(`${relay.url}/ohttp`, {
      method: 'POST',
      headers: { 'content-type': 'message/ohttp-chunked-req', accept: 'message/ohttp-chunked-res, text/x-client-fingerprint', 'user-agent': 'probe/1', 'x-forwarded-for': '203.0.113.9' },
      body: new Uint8Array(40),
    });
    expect(Object.keys(seen[0]!).sort()).toEqual(['accept', 'connection', 'content-length', 'content-type', 'host']);
    expect(seen[0]).toMatchObject({ accept: 'message/ohttp-chunked-res', 'content-type': 'message/ohttp-chunked-req' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('message/ohttp-chunked-res');
    expect(res.headers.get('x-not-forwarded')).toBeNull();
    const started = performance.now();
    const text = await res.text();
    expect(text).toBe('part0;part1;part2;part3;part4;part5;');
    // Six parts 100 ms apart: longer than the 250 ms deadline, which only covers the head.
    expect(performance.now() - started).toBeGreaterThan(300);
  });

  it("closes its call to the gateway when the client leaves mid-answer", async () => {
    const before = { finished, closedEarly };
    const ac = new AbortController();
    const res = await fetch(`${relay.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: new Uint8Array(40), signal: ac.signal });
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('part0;');
    ac.abort();
    await expect.poll(() => closedEarly).toBe(before.closedEarly + 1);
    expect(finished).toBe(before.finished);
  });

  it('closes its call to the gateway when the client leaves before the answer has begun, and logs nothing for it', async () => {
    // A relay whose deadline for the head (10 s) is far off: only the client's leaving can end the call.
    const own: string[] = [];
    const patient = await listen(createRelayApp({ gateway: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`, timeoutMs: 10_000, logger: createGatewayLogger({ destination: { write: (l: string) => void own.push(l) } }) }));
    try {
      const ac = new AbortController();
      const pending = fetch(`${patient.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(41), signal: ac.signal });
      await new Promise((r) => setTimeout(r, 100));
      ac.abort();
      await expect(pending).rejects.toThrow();
      await expect.poll(() => closedBeforeHead, { timeout: 3000 }).toBe(1);
      expect(own.filter((l) => l.includes('relay.'))).toEqual([]);
    } finally {
      await patient.close();
    }
  });

  it('answers 504 ERR_RELAY_GATEWAY_TIMEOUT when the gateway does not begin its answer in time, and 502 ERR_RELAY_GATEWAY_UNREACHABLE when it cannot be reached', async () => {
    const slow = await fetch(`${relay.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(41) });
    expect(slow.status).toBe(504);
    expect(await slow.json()).toMatchObject({ code: 'ERR_RELAY_GATEWAY_TIMEOUT' });
    // A port nothing listens on.
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const orphan = await listen(createRelayApp({ gateway: `http://127.0.0.1:${port}`, logger: createGatewayLogger({ destination: { write: () => undefined } }) }));
    try {
      for (const path of ['/ohttp', '/.well-known/custody/attestation']) {
        const res = await fetch(`${orphan.url}${path}`, path === '/ohttp' ? { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) } : {});
        expect(res.status).toBe(502);
        expect(await res.json()).toMatchObject({ code: 'ERR_RELAY_GATEWAY_UNREACHABLE' });
      }
    } finally {
      await orphan.close();
    }
  });

  it('answers 502 ERR_RELAY_GATEWAY_ANSWER, not "unreachable, retry later", when the gateway got the request and its answer broke (it may have run the model)', async () => {
    // A gateway that reads the whole request, then closes without a head, or answers bytes that are not HTTP.
    const breaking: TcpServer = createTcpServer((sock) => {
      let got = '';
      sock.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (!got.includes('\r\n\r\n')) return;
        if (got.includes('/.well-known/custody/attestation')) sock.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nno colon here\r\n\r\nok');
        else sock.destroy();
      });
    });
    await new Promise<void>((r) => breaking.listen(0, '127.0.0.1', r));
    const logged: string[] = [];
    const broken = await listen(createRelayApp({ gateway: `http://127.0.0.1:${(breaking.address() as AddressInfo).port}`, logger: createGatewayLogger({ destination: { write: (l: string) => logged.push(l) } }) }));
    try {
      const posted = await fetch(`${broken.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) });
      expect(posted.status).toBe(502);
      expect(await posted.json()).toMatchObject({ code: 'ERR_RELAY_GATEWAY_ANSWER', facts: { reason: 'reset' } });
      const got = await fetch(`${broken.url}/.well-known/custody/attestation`);
      expect(got.status).toBe(502);
      expect(await got.json()).toMatchObject({ code: 'ERR_RELAY_GATEWAY_ANSWER', facts: { reason: 'answer' } });
      expect(logged.filter((l) => l.includes('relay.gateway_answer_broken'))).toHaveLength(2);
      expect(logged.filter((l) => l.includes('relay.unreachable'))).toEqual([]);
    } finally {
      await broken.close();
      await new Promise((r) => breaking.close(r));
    }
  });

  it('holds at most maxArrivingBodyBytes of bodies still arriving, across clients: a body that would cross it is refused (503 ERR_RELAY_OVERLOADED), and the bytes are given back when a sender leaves', async () => {
    const small = await listen(createRelayApp({ gateway: `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`, maxArrivingBodyBytes: 100_000, logger: createGatewayLogger({ destination: { write: () => undefined } }) }));
    const url = new URL(`${small.url}/ohttp`);
    /** A client that declares 200 000 bytes, sends `n` and waits; `answer` settles with the status (or 0 when its connection is cut). */
    const slowSender = (n: number) => {
      let req!: ClientRequest;
      const answer = new Promise<{ status: number; body: string }>((resolve) => {
        req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'message/ohttp-req', 'content-length': '200000' } }, (res) => {
          const parts: Buffer[] = [];
          res.on('data', (c: Buffer) => parts.push(c));
          res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(parts).toString('utf8') }));
          res.on('error', () => resolve({ status: res.statusCode!, body: '' }));
        });
        req.on('error', () => resolve({ status: 0, body: '' }));
        req.write(Buffer.alloc(n));
      });
      return { answer, leave: () => req.destroy() };
    };
    try {
      const first = slowSender(60_000);
      await new Promise((r) => setTimeout(r, 200));
      const second = slowSender(60_000);
      const refused = await second.answer;
      expect(refused.status).toBe(503);
      expect(JSON.parse(refused.body)).toMatchObject({ code: 'ERR_RELAY_OVERLOADED' });
      first.leave();
      await first.answer;
      await new Promise((r) => setTimeout(r, 200));
      // The first sender's bytes are back: a whole request of the same size goes through.
      const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: new Uint8Array(60_000) });
      expect(res.status).toBe(200);
      expect(await res.text()).toBe('part0;part1;part2;part3;part4;part5;');
      // A whole body is held until the gateway begins its answer: while it has not, another is refused.
      const waiting = new AbortController();
      const slow = fetch(url, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(60_001), signal: waiting.signal }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      const meanwhile = await fetch(url, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: new Uint8Array(60_000) });
      expect(meanwhile.status).toBe(503);
      expect(await meanwhile.json()).toMatchObject({ code: 'ERR_RELAY_OVERLOADED' });
      // The client that waits leaves: the call to the gateway ends and its bytes are given back.
      waiting.abort();
      await slow;
      await new Promise((r) => setTimeout(r, 200));
      const third = await fetch(url, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: new Uint8Array(60_000) });
      expect(third.status).toBe(200);
      await third.text();
    } finally {
      await small.close();
    }
  });

  it('cuts a client that stopped reading mid-stream after idleTimeoutMs, names it (not the gateway) and ends the call to the gateway', async () => {
    // A gateway with an endless stream, sent as fast as the relay takes it.
    let gatewayCallsEnded = 0;
    const endless = createServer((req, res) => {
      req.resume();
      res.once('close', () => gatewayCallsEnded++);
      res.writeHead(200, { 'content-type': 'message/ohttp-chunked-res' });
      const block = Buffer.alloc(64 * 1024, 7);
      const more = () => {
        while (!res.destroyed && res.write(block));
      };
      res.on('drain', more);
      more();
    });
    await new Promise<void>((r) => endless.listen(0, '127.0.0.1', r));
    const logged: string[] = [];
    const r2 = await listen(createRelayApp({ gateway: `http://127.0.0.1:${(endless.address() as AddressInfo).port}`, idleTimeoutMs: 250, logger: createGatewayLogger({ destination: { write: (l: string) => void logged.push(l) } }) }));
    let client: ClientRequest | undefined;
    try {
      const u = new URL(`${r2.url}/ohttp`);
      client = httpRequest({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' } }, (res) => res.pause());
      client.on('error', () => undefined);
      client.end(Buffer.alloc(40));
      const events = () => logged.map((l) => (JSON.parse(l) as { event?: string }).event).filter((e) => e?.startsWith('relay.'));
      await expect.poll(events, { timeout: 20_000, interval: 100 }).toEqual(['relay.client_stalled']);
      // The call to the gateway is ended too (the gateway stops the model).
      await expect.poll(() => gatewayCallsEnded, { timeout: 5000 }).toBe(1);
    } finally {
      client?.destroy();
      await r2.close();
      endless.closeAllConnections();
      await new Promise((r) => endless.close(r));
    }
  });

  it('cuts off a stream that falls silent for idleTimeoutMs, and logs it through its logger only', async () => {
    const printed = [vi.spyOn(console, 'error').mockImplementation(() => undefined), vi.spyOn(console, 'info').mockImplementation(() => undefined)];
    lines.length = 0;
    const res = await fetch(`${relay.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toBe('only;');
    // The client's connection is cut: the answer ends in an error, not a clean end.
    await expect(reader.read()).rejects.toThrow();
    await expect.poll(() => lines.map((l) => JSON.parse(l) as { event?: string; code?: string; path?: string }).filter((l) => l.event === 'relay.stream_cut')).toEqual([
      expect.objectContaining({ event: 'relay.stream_cut', code: 'ERR_SDK_GATEWAY', path: '/ohttp' }),
    ]);
    // Nothing else reached the console (the HTTP server would print the error and append it to the answer).
    await new Promise((r) => setTimeout(r, 50));
    for (const spy of printed) {
      expect(spy).not.toHaveBeenCalled();
      spy.mockRestore();
    }
  });
});
