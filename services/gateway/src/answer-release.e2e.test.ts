// Whatever fails between the pipeline's answer and its end gives back what the answer holds (the
// tenant's place under its limits, the masked values) and signs no receipt for an answer the
// client does not get: a backend status Binary HTTP cannot carry (node:http accepts 100-999 from
// an upstream), a header it cannot carry, and a chunked response whose sealer cannot be made.
import { createServer, ServerResponse, type Server } from 'node:http';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { utf8 } from '@custody/core';
import { MaskVault } from '@custody/policy';
import { ChunkedServerContext, createConfidentialFetch } from '@custody/sdk';
import type { ModelBackend } from './backends/types.js';
import { UpstreamBackend } from './backends/upstream.js';
import { startTestGateway, type TestGateway } from './testing/index.js';

let gw: TestGateway | undefined;
let upstream: Server | undefined;
afterEach(async () => {
  vi.restoreAllMocks();
  await gw?.close();
  gw = undefined;
  await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
  upstream = undefined;
});

const ANSWER = utf8(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }] }));
const EVENT = utf8(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'ok' } }] })}\n\n`);

/** A backend answering with `contentType` (`streamType` for streams), counting the streams cancelled. */
function backend(contentType = 'application/json', streamType = 'text/event-stream') {
  const state = { cancelled: 0 };
  const b: ModelBackend = {
    kind: 'test-answers',
    models: () => [{ id: 'm' }],
    handle: ({ stream }) =>
      Promise.resolve(
        stream
          ? {
              status: 200,
              contentType: streamType,
              body: new ReadableStream<Uint8Array>({
                start: (c) => c.enqueue(EVENT),
                // Never ends on its own: only a cancel releases it.
                pull: () => new Promise<void>(() => undefined),
                cancel: () => void state.cancelled++,
              }),
            }
          : { status: 200, contentType, body: ANSWER },
      ),
  };
  return { backend: b, state };
}

/** An upstream model server over node:http answering every call with `status`. */
async function upstreamAnswering(status: number): Promise<UpstreamBackend> {
  upstream = createServer((req, res) => {
    const stream = (req.headers.accept ?? '').includes('text/event-stream');
    req.resume();
    req.on('end', () => {
      res.writeHead(status, { 'content-type': stream ? 'text/event-stream' : 'application/json' });
      if (stream) res.write('data: {"choices":[]}\n\n'); // and keeps the stream open
      else res.end('{"choices":[]}');
    });
  });
  await new Promise<void>((r) => upstream!.listen(0, '127.0.0.1', () => r()));
  const port = (upstream.address() as { port: number }).port;
  return UpstreamBackend.create({ url: `http://127.0.0.1:${port}`, models: [{ id: 'm' }] });
}

async function client(g: TestGateway) {
  const cfetch = createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true });
  await cfetch.verify();
  /** The answer's status and problem code, or the code the exchange was refused with (outside the encryption). */
  const ask = async (stream: boolean, content = 'hi') => {
    try {
      const res = await cfetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${g.apiKey}` }, body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content }] }) });
      const text = await res.text();
      const code = res.status >= 400 ? (JSON.parse(text) as { code: string }).code : undefined;
      return { status: res.status, code, receipt: await cfetch.receiptOf(res) };
    } catch (e) {
      return { refused: (e as { code?: string }).code ?? 'threw' };
    }
  };
  return ask;
}

const receiptsIssued = (g: TestGateway) => g.logs.filter((l) => l.includes('"receipt issued"')).length;

describe('an answer that fails before its end gives back what it holds', () => {
  for (const status of [600, 999]) {
    it(`an upstream answering ${status} (real node:http) is a sealed 502 ERR_GATEWAY_BACKEND, streamed or not, and the tenant keeps its place`, async () => {
      gw = await startTestGateway({ backend: await upstreamAnswering(status), tenant: { limits: { concurrent: 1 } } });
      const ask = await client(gw);
      for (let i = 0; i < 2; i++) {
        for (const stream of [true, false]) {
          const a = await ask(stream);
          // The 502 is the gateway's answer, and its receipt says so (never the upstream's status).
          expect(a).toMatchObject({ status: 502, code: 'ERR_GATEWAY_BACKEND', receipt: { response: { status: 502, streamed: false } } });
        }
      }
      expect(gw.logs.some((l) => l.includes('"ohttp.failed"'))).toBe(false);
    });
  }

  it('a non-chunked answer with a header Binary HTTP cannot carry: sealed 502, no receipt signed or logged, place given back', async () => {
    const b = backend('application/json\nx-injected: 1');
    gw = await startTestGateway({ backend: b.backend, tenant: { limits: { concurrent: 1 } } });
    const ask = await client(gw);
    const clear = vi.spyOn(MaskVault.prototype, 'clear');
    const entries = gw.ledger.entries.length;
    expect(await ask(false, 'mail alice@example.com')).toEqual({ status: 502, code: 'ERR_GATEWAY_BACKEND', receipt: undefined });
    // The decision only: no receipt vouches for an answer that never left.
    expect(gw.ledger.entries.length - entries).toBe(1);
    expect(receiptsIssued(gw)).toBe(0);
    expect(clear).toHaveBeenCalled();
    expect(await ask(false)).toMatchObject({ status: 502 });
  });

  it('a chunked answer whose head Binary HTTP cannot carry: refused, its backend stream cancelled, masked values wiped, place given back', async () => {
    const b = backend(undefined, 'text/event-stream\nx-injected: 1');
    gw = await startTestGateway({ backend: b.backend, tenant: { limits: { concurrent: 1 } } });
    const ask = await client(gw);
    const clear = vi.spyOn(MaskVault.prototype, 'clear');
    expect(await ask(true, 'mail alice@example.com')).toEqual({ refused: 'ERR_INTERNAL' });
    expect(gw.logs.some((l) => l.includes('"ohttp.failed"'))).toBe(true);
    expect(clear).toHaveBeenCalled();
    await expect.poll(() => b.state.cancelled).toBe(1);
    expect(receiptsIssued(gw)).toBe(0);
    // Not 429: the place came back.
    expect(await ask(false)).toMatchObject({ status: 200 });
    expect(await ask(true, 'again')).toEqual({ refused: 'ERR_INTERNAL' });
  });

  it('a chunked answer whose response sealer cannot be made: refused, backend stream cancelled, masked values wiped, place given back', async () => {
    const b = backend();
    gw = await startTestGateway({ backend: b.backend, tenant: { limits: { concurrent: 1 } } });
    const ask = await client(gw);
    const clear = vi.spyOn(MaskVault.prototype, 'clear');
    const sealer = vi.spyOn(ChunkedServerContext.prototype, 'createResponseSealer').mockRejectedValueOnce(new Error('sealer failed (test)'));
    expect(await ask(true, 'mail alice@example.com')).toEqual({ refused: 'ERR_INTERNAL' });
    expect(sealer).toHaveBeenCalledTimes(1);
    expect(clear).toHaveBeenCalled();
    await expect.poll(() => b.state.cancelled).toBe(1);
    expect(receiptsIssued(gw)).toBe(0);
    expect(await ask(false)).toMatchObject({ status: 200, receipt: { response: { status: 200 } } });
    // The next streamed request is served (and cancelled by the client here, giving its place back).
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] }) });
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    expect(new TextDecoder().decode((await reader.read()).value)).toContain('ok');
    await reader.cancel();
    await expect.poll(() => b.state.cancelled).toBe(2);
    await expect.poll(async () => (await ask(false)).status).toBe(200);
  });

  it('a chunked response whose head cannot be written to the socket: cut off, and its chunks cancelled (place given back, values wiped)', async () => {
    const b = backend();
    gw = await startTestGateway({ backend: b.backend, tenant: { limits: { concurrent: 1 } } });
    const ask = await client(gw);
    const clear = vi.spyOn(MaskVault.prototype, 'clear');
    const writeHead = vi.spyOn(ServerResponse.prototype, 'writeHead').mockImplementationOnce(() => {
      throw new Error('writeHead failed (test)');
    });
    expect(await ask(true, 'mail alice@example.com')).toHaveProperty('refused');
    expect(writeHead).toHaveBeenCalled();
    expect(gw.logs.some((l) => l.includes('"ohttp.failed"'))).toBe(true);
    await expect.poll(() => b.state.cancelled).toBe(1);
    expect(clear).toHaveBeenCalled();
    expect(receiptsIssued(gw)).toBe(0);
    expect(await ask(false)).toMatchObject({ status: 200 });
  });
});
