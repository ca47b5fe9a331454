// Streamed answers: every token leaves as soon as the backend gives it, and tokens that are
// already waiting when the gateway seals the next chunk travel together in that chunk. Both
// shapes decode to the same bytes, and the receipt covers the whole stream either way.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConfidentialFetch, decodeBhttpResponseStream, encapsulateChunkedRequest, encapsulateRequest, parseRuntimeData, readAll, streamOf, RECEIPT_HEADER, type AttestationBundle } from '@custody/sdk';
import type { BackendRequest, BackendResponse, ModelBackend, ModelInfo } from './backends/types.js';
import { bhttpChatRequest, startTestGateway, type TestGateway } from './testing/index.js';

const TOKENS = 24;
const enc = new TextEncoder();
const event = (i: number) => enc.encode(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { content: ` t${i}` }, finish_reason: null }] })}\n\n`);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A backend whose model `burst` queues every token at once, `paced` gives one every `gapMs`,
 * and `empties` queues 3,000 empty chunks among the tokens (more than one sealed chunk gathers).
 */
class ShapedBackend implements ModelBackend {
  readonly kind = 'test-shaped';
  cancelled = 0;
  /** Non-streamed requests to `slow` whose signal was aborted while the backend worked. */
  aborted = 0;
  /** Requests to `slow` the backend has started on. */
  slowStarted = 0;
  constructor(private readonly gapMs: number) {}
  models(): readonly ModelInfo[] {
    return [{ id: 'burst' }, { id: 'paced' }, { id: 'empties' }, { id: 'slow' }];
  }
  handle(req: BackendRequest): Promise<BackendResponse> {
    if (req.model.id === 'slow') {
      this.slowStarted++;
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => resolve({ status: 200, contentType: 'application/json', body: enc.encode('{}') }), 3000);
        req.signal?.addEventListener('abort', () => {
          clearTimeout(t);
          this.aborted++;
          reject(new Error('cancelled'));
        });
      });
    }
    const paced = req.model.id === 'paced';
    const empties = req.model.id === 'empties';
    let i = 0;
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        if (paced) return;
        for (let k = 0; k < TOKENS; k++) {
          if (empties && k % 8 === 1) for (let e = 0; e < 1000; e++) c.enqueue(new Uint8Array(0));
          c.enqueue(event(k));
        }
        c.enqueue(enc.encode('data: [DONE]\n\n'));
        c.close();
      },
      pull: async (c) => {
        if (!paced) return;
        await sleep(this.gapMs);
        if (i < TOKENS) c.enqueue(event(i++));
        else {
          c.enqueue(enc.encode('data: [DONE]\n\n'));
          c.close();
        }
      },
      cancel: () => {
        this.cancelled++;
      },
    });
    return Promise.resolve({ status: 200, contentType: 'text/event-stream', body });
  }
}

const expected = (() => {
  let s = '';
  for (let k = 0; k < TOKENS; k++) s += new TextDecoder().decode(event(k));
  return s + 'data: [DONE]\n\n';
})();

let gw: TestGateway;
const backend = new ShapedBackend(15);
beforeAll(async () => {
  gw = await startTestGateway({ backend });
});
afterAll(async () => {
  await gw.close();
});

/** POSTs a streamed chat request for `model`, sealed by hand; the response and the client context. */
async function open(model: string, signal?: AbortSignal, target: TestGateway = gw, content = 'hello') {
  const b = (await (await fetch(`${target.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
  const config = parseRuntimeData(b.runtimeData).keyConfigs[0]!;
  const request = bhttpChatRequest({ apiKey: target.apiKey, model, content, stream: true });
  const { body, context } = await encapsulateChunkedRequest(config, request);
  const res = await fetch(`${target.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: await readAll(body), ...(signal ? { signal } : {}) });
  expect(res.status).toBe(200);
  return { res, context };
}

/** Sends a streamed chat request by hand; returns the sealed chunks' plaintexts and the decoded answer. */
async function exchange(model: string, target: TestGateway = gw, content = 'hello'): Promise<{ chunks: number; text: string; receipt: string | undefined }> {
  const { res, context } = await open(model, undefined, target, content);
  const plain = context.decapsulateResponse(res.body!).getReader();
  const pieces: Uint8Array[] = [];
  for (;;) {
    const r = await plain.read();
    if (r.done) break;
    pieces.push(r.value);
  }
  const inner = await decodeBhttpResponseStream(streamOf(...pieces));
  const text = new TextDecoder().decode(await readAll(inner.body));
  const receipt = (await inner.trailers).find(([n]) => n === RECEIPT_HEADER)?.[1];
  return { chunks: pieces.length, text, receipt };
}

describe('streamed answers, sealed chunk by chunk', () => {
  it('tokens already waiting travel together: a burst of 25 events leaves in far fewer sealed chunks, byte for byte', async () => {
    const r = await exchange('burst');
    expect(r.text).toBe(expected);
    expect(r.receipt).toBeDefined();
    expect(r.chunks).toBeLessThan(TOKENS / 2);
  });

  it('tokens that come one by one leave one by one (nothing is held back to batch)', async () => {
    const r = await exchange('paced');
    expect(r.text).toBe(expected);
    expect(r.receipt).toBeDefined();
    expect(r.chunks).toBeGreaterThanOrEqual(TOKENS);
  });

  it('the SDK verifies the receipt over the whole stream in both shapes', async () => {
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    for (const model of ['burst', 'paced']) {
      const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model, stream: true, messages: [{ role: 'user', content: 'hello' }] }) });
      expect(await res.text()).toBe(expected);
      const receipt = await cfetch.receiptOf(res);
      expect(receipt?.response.streamed).toBe(true);
      expect(receipt?.model.id).toBe(model);
    }
  });

  it('a streamed answer cut off on the way fails the body, and the receipt the caller waits for fails too (it does not hang)', async () => {
    // A transport that passes the gateway's answer on without its last 30 bytes (inside the final chunk, which carries the receipt).
    const cutting: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (res.headers.get('content-type') !== 'message/ohttp-chunked-res') return res;
      const all = new Uint8Array(await res.arrayBuffer());
      return new Response(all.subarray(0, all.length - 30), { status: res.status, headers: res.headers });
    };
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, fetch: cutting });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'paced', stream: true, messages: [{ role: 'user', content: 'hello' }] }) });
    // The final chunk is read to the end of the message, so a short one fails to open (or reads as truncated).
    const read = await res.text().then(() => undefined, (e: { code?: string }) => e);
    expect(['ERR_OHTTP_TRUNCATED', 'ERR_OHTTP_RESPONSE_DECRYPT']).toContain(read?.code);
    await expect(cfetch.receiptOf(res)).rejects.toMatchObject({ code: read!.code });
  });

  it('a caller that cancels a streamed answer gets a rejected receipt (ERR_RECEIPT_MISSING), not one that never settles', async () => {
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'paced', stream: true, messages: [{ role: 'user', content: 'hello' }] }) });
    const reader = res.body!.getReader();
    await reader.read();
    await reader.cancel();
    await expect(cfetch.receiptOf(res)).rejects.toMatchObject({ code: 'ERR_RECEIPT_MISSING' });
  });

  it('empty pieces from a backend are skipped and bounded per chunk (the stream neither stalls the gateway nor overflows)', async () => {
    const r = await exchange('empties');
    expect(r.text).toBe(expected);
    expect(r.receipt).toBeDefined();
  });

  it('a client that drops the stream mid-answer gets no receipt: none is signed or logged, and the backend is cancelled', async () => {
    const receiptsBefore = gw.ledger.events.filter((e) => e.type === 'inference.receipt').length;
    const cancelledBefore = backend.cancelled;
    const ac = new AbortController();
    const { res } = await open('paced', ac.signal);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    ac.abort();
    await expect.poll(() => backend.cancelled, { timeout: 10_000 }).toBe(cancelledBefore + 1);
    expect(gw.ledger.events.filter((e) => e.type === 'inference.receipt').length).toBe(receiptsBefore);
    expect(gw.logs.some((l) => l.includes('"event":"stream.cancelled"'))).toBe(true);
    expect(gw.logs.some((l) => l.includes('"event":"stream.failed"'))).toBe(false);
  });

  it('the same through the Hono route (in process): a cancelled stream gets no receipt and cancels the backend', async () => {
    const receiptsBefore = gw.ledger.events.filter((e) => e.type === 'inference.receipt').length;
    const cancelledBefore = backend.cancelled;
    const logsBefore = gw.logs.filter((l) => l.includes('"event":"stream.cancelled"')).length;
    const b = (await (await fetch(`${gw.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
    const config = parseRuntimeData(b.runtimeData).keyConfigs[0]!;
    const { body } = await encapsulateChunkedRequest(config, bhttpChatRequest({ apiKey: gw.apiKey, model: 'paced', stream: true }));
    const res = await gw.gateway.fetch(new Request('http://gateway.invalid/ohttp', { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: await readAll(body) }));
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    await reader.read();
    await reader.read();
    await reader.cancel();
    await expect.poll(() => backend.cancelled, { timeout: 10_000 }).toBe(cancelledBefore + 1);
    expect(gw.ledger.events.filter((e) => e.type === 'inference.receipt').length).toBe(receiptsBefore);
    expect(gw.logs.filter((l) => l.includes('"event":"stream.cancelled"')).length).toBe(logsBefore + 1);
  });

  it('a client that leaves before a non-streamed answer stops the backend (node:http path)', async () => {
    const b = (await (await fetch(`${gw.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
    const config = parseRuntimeData(b.runtimeData).keyConfigs[0]!;
    const request = bhttpChatRequest({ apiKey: gw.apiKey, model: 'slow' });
    const { encapsulatedRequest } = await encapsulateRequest(config, request);
    const before = backend.aborted;
    const started = backend.slowStarted;
    const ac = new AbortController();
    const pending = fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulatedRequest, signal: ac.signal }).catch(() => undefined);
    // The client leaves once the backend works on its request (not after a guess at how long that takes).
    await expect.poll(() => backend.slowStarted, { timeout: 10_000 }).toBe(started + 1);
    ac.abort();
    await pending;
    await expect.poll(() => backend.aborted, { timeout: 10_000 }).toBe(before + 1);
  });

  it('a burst still travels in few chunks when masked PII is restored on the way out (through the restoring transform)', async () => {
    const masking = await startTestGateway({ backend: new ShapedBackend(15), tenant: { pii: { defaultAction: 'mask' } } });
    try {
      const r = await exchange('burst', masking, 'write to jane.roe@clinic.example please');
      expect(masking.ledger.events.some((e) => e.type === 'gate.decision' && e.decision === 'redact')).toBe(true);
      expect(r.text).toBe(expected);
      expect(r.chunks).toBeLessThan(TOKENS / 2);
    } finally {
      await masking.close();
    }
  });
});
