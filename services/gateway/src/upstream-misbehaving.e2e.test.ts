// A model server that misbehaves, over real sockets (UpstreamBackend on node:http): an answer
// framed only by the connection closing (its end cannot be told from a cut), a stream the request
// did not ask for, a stream cut mid-way and one that goes silent. Each is ERR_GATEWAY_BACKEND: a 502
// whose receipt vouches for the 502, or a stream cut with no receipt, counted in /metrics; the
// gateway serves the next good request.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { createConfidentialFetch, readAll, type Receipt } from '@custody/sdk';
import { UpstreamBackend } from './backends/upstream.js';
import { startTestGateway, type TestGateway } from './testing/index.js';

type Behaviour = (req: IncomingMessage, res: ServerResponse, body: { stream?: boolean }) => void;

const chunk = (content: string, finish: string | null = null) =>
  `data: ${JSON.stringify({ id: 'x', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: finish ? {} : { content }, finish_reason: finish }] })}\n\n`;
const answer = (content: string) => JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }] });

const good: Behaviour = (_req, res, body) => {
  if (body.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(chunk('hello'));
    res.write(chunk('', 'stop'));
    res.end('data: [DONE]\n\n');
  } else {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(answer('hello'));
  }
};

let behaviour: Behaviour = good;
let server: Server;
let gw: TestGateway;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model', created: 0, owned_by: 'test' }] }));
      return;
    }
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => behaviour(req, res, JSON.parse(Buffer.concat(parts).toString('utf8')) as { stream?: boolean }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const backend = await UpstreamBackend.create({ url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, idleTimeoutMs: 300 });
  gw = await startTestGateway({ backend });
});
afterAll(async () => {
  await gw?.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});
beforeEach(() => {
  behaviour = good;
});

/** One confidential chat through the SDK: its status, body text or error code, and receipt. */
async function chat(stream: boolean): Promise<{ status?: number; text?: string; code?: string; receipt?: Receipt }> {
  const receipts: Receipt[] = [];
  const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, onReceipt: (r) => receipts.push(r) });
  try {
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'hi' }] }) });
    const text = new TextDecoder().decode(await readAll(res.body!));
    const code = res.headers.get('content-type')?.includes('problem') ? (JSON.parse(text) as { code: string }).code : undefined;
    return { status: res.status, text, ...(code ? { code } : {}), ...(receipts[0] ? { receipt: receipts[0] } : {}) };
  } catch (e) {
    return { code: e instanceof CustodyError ? e.code : 'untyped', ...(receipts[0] ? { receipt: receipts[0] } : {}) };
  }
}

const metric = async (line: RegExp): Promise<number> => {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  return text.split('\n').filter((l) => line.test(l)).reduce((n, l) => n + Number(l.split(' ').at(-1)), 0);
};

describe('a model server that misbehaves', () => {
  it('an answer ended only by closing the connection is refused (its end cannot be told from a cut), streamed or not', async () => {
    behaviour = (_req, res, body) => {
      // HTTP/1.0 style: no Content-Length, no chunked encoding; the body ends with the connection.
      res.socket!.write(`HTTP/1.1 200 OK\r\ncontent-type: ${body.stream ? 'text/event-stream' : 'application/json'}\r\nconnection: close\r\n\r\n`);
      res.socket!.end(body.stream ? chunk('half an answ') : '{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"half an answ');
    };
    for (const stream of [false, true]) {
      const r = await chat(stream);
      expect(r).toMatchObject({ status: 502, code: 'ERR_GATEWAY_BACKEND' });
      // The receipt vouches for the 502 the client got, never for the cut-off answer.
      expect(r.receipt?.response).toMatchObject({ status: 502, streamed: false });
      expect(r.text).not.toContain('half an answ');
    }
    behaviour = good;
    expect(await chat(false)).toMatchObject({ status: 200, receipt: expect.objectContaining({ receiptId: expect.any(String) }) });
  });

  it('a stream the request did not ask for is a 502 ERR_GATEWAY_BACKEND, not a receipt the client refuses', async () => {
    behaviour = (_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk('a whole answer'));
      res.end('data: [DONE]\n\n');
    };
    const r = await chat(false);
    expect(r).toMatchObject({ status: 502, code: 'ERR_GATEWAY_BACKEND' });
    expect(r.receipt?.response).toMatchObject({ status: 502, streamed: false });
  });

  it('a stream cut or gone silent mid-way: no receipt, logged and counted as ERR_GATEWAY_BACKEND', async () => {
    const failed = () => metric(/^custody_gateway_streams_failed_total\{route="chat\.completions",code="ERR_GATEWAY_BACKEND"\}/);
    const withheld = () => metric(/^custody_gateway_receipts_total\{outcome="withheld"\}/);
    const [f0, w0] = [await failed(), await withheld()];
    const cuts: Behaviour[] = [
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(chunk('first'));
        setTimeout(() => res.socket?.resetAndDestroy(), 30);
      },
      (_req, res) => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(chunk('first'));
        // Then nothing: the gateway's idle timeout (300 ms here) ends it.
      },
    ];
    for (const cut of cuts) {
      behaviour = cut;
      const r = await chat(true);
      // The head (200) went out before the cut: the client's read of the body fails.
      expect(r.receipt).toBeUndefined();
      expect(r.code).toEqual(expect.any(String));
    }
    expect(await failed()).toBe(f0 + 2);
    expect(await withheld()).toBe(w0 + 2);
    const logged = gw.logs.filter((l) => l.includes('"event":"stream.failed"')).map((l) => JSON.parse(l) as { code: string });
    expect(logged.slice(-2).map((l) => l.code)).toEqual(['ERR_GATEWAY_BACKEND', 'ERR_GATEWAY_BACKEND']);
    behaviour = good;
    expect(await chat(true)).toMatchObject({ status: 200, receipt: expect.objectContaining({ receiptId: expect.any(String) }) });
  });

  it('an upstream silent before its head is ERR_GATEWAY_BACKEND saying it sent nothing for too long', async () => {
    behaviour = () => undefined;
    const r = await chat(false);
    expect(r).toMatchObject({ status: 502, code: 'ERR_GATEWAY_BACKEND' });
    expect(r.text).toContain('sent nothing for too long');
  });
});
