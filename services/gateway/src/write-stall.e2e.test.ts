// A client that stops reading a streamed answer: the gateway waits for it at most `writeStallMs`,
// then cuts the response off, which cancels the backend's work for it (no receipt is issued for
// an answer the client did not get). Without the bound a stalled client would hold the backend,
// the pipeline and the sealed chunks for as long as it kept its connection open.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import type { ModelBackend } from './backends/types.js';
import { postSealedRaw, sealedChunkedChat, startTestGateway, type TestGateway } from './testing/index.js';

const STALL_MS = 300;
// One SSE event of about 64 KiB: a few hundred of them fill any loopback socket's buffers.
const EVENT = utf8(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'x'.repeat(64 * 1024) } }] })}\n\n`);

let events = 0;
let cancelled!: () => void;
const backendCancelled = new Promise<void>((r) => (cancelled = r));
const flood: ModelBackend = {
  kind: 'test-flood',
  models: () => [{ id: 'flood' }],
  handle: () =>
    Promise.resolve({
      status: 200,
      contentType: 'text/event-stream',
      body: new ReadableStream<Uint8Array>({
        pull(c) {
          events++;
          c.enqueue(EVENT);
        },
        cancel() {
          cancelled();
        },
      }),
    }),
};

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway({ backend: flood, gateway: { writeStallMs: STALL_MS } });
});
afterAll(async () => {
  await gw.close();
});

describe('a client that stops reading a streamed answer', () => {
  it(`is cut off after the write-stall bound (${STALL_MS} ms here): the backend's stream is cancelled and no receipt is issued`, async () => {
    const { sealed } = await sealedChunkedChat(gw.url, { apiKey: gw.apiKey, model: 'flood', stream: true });
    const receiptsBefore = gw.ledger.events.filter((e) => e.type === 'inference.receipt').length;
    const started = Date.now();
    // The client reads the first piece of the answer, then stops reading for good: the sockets'
    // buffers fill and the gateway's writes wait. (It cannot see the cut-off itself: the close
    // queues behind the data it does not read.)
    const status = await new Promise<number>((resolve) => {
      postSealedRaw(gw.url, sealed, 'message/ohttp-chunked-req', (req, res) => {
        res.once('data', () => res.pause());
        resolve(res.statusCode ?? 0);
        void backendCancelled.then(() => req.destroy());
      });
    });
    expect(status).toBe(200);
    await backendCancelled;
    const elapsed = Date.now() - started;
    // Cut off after the bound, long before the default minute.
    expect(elapsed).toBeGreaterThanOrEqual(STALL_MS);
    expect(elapsed).toBeLessThan(20_000);
    expect(gw.logs.some((l) => l.includes('"event":"stream.stalled"'))).toBe(true);
    // No receipt for an answer the client did not get.
    await new Promise((r) => setTimeout(r, 100));
    expect(gw.ledger.events.filter((e) => e.type === 'inference.receipt').length).toBe(receiptsBefore);
    // The backend was pulled only as fast as the socket drained, and not at all after the cut.
    const atCut = events;
    await new Promise((r) => setTimeout(r, 200));
    expect(events).toBe(atCut);
    expect(atCut).toBeLessThan(2_000);
  });
});
