// Fail closed mid-answer: when the gateway's attestation is revoked while an answer streams,
// nothing more of it leaves, it ends truncated, and no receipt is signed or logged that would
// name the revoked attestation.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import { decodeBhttpResponseStream, RECEIPT_HEADER } from '@custody/sdk';
import type { ModelBackend } from './backends/types.js';
import { sealedChunkedChat, startTestGateway, type TestGateway } from './testing/index.js';

const ev = (i: number) => utf8(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: `tok${i} ` } }] })}\n\n`);
let emitted = 0;
const slow: ModelBackend = {
  kind: 'test-slow',
  models: () => [{ id: 'slow' }],
  handle: () =>
    Promise.resolve({
      status: 200,
      contentType: 'text/event-stream',
      body: new ReadableStream<Uint8Array>({
        async pull(c) {
          await new Promise((r) => setTimeout(r, 50));
          if (emitted >= 20) return c.close();
          c.enqueue(ev(emitted++));
        },
      }),
    }),
};

let gw: TestGateway;
beforeAll(async () => {
  gw = await startTestGateway({ backend: slow });
});
afterAll(async () => {
  await gw.close();
});

describe('attestation revoked while an answer streams', () => {
  it('stops the answer and issues no receipt', async () => {
    const { sealed, context } = await sealedChunkedChat(gw.url, { apiKey: gw.apiKey, model: 'slow', stream: true });
    const res = await fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: sealed });
    expect(res.status).toBe(200);
    const inner = await decodeBhttpResponseStream(context.decapsulateResponse(res.body!));
    const reader = inner.body.getReader();
    await reader.read();
    gw.gateway.attestation.revoke('test: revoked mid-stream');
    const emittedAtRevoke = emitted;
    let failed = false;
    try {
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
      }
    } catch {
      failed = true;
    }
    const trailers = await inner.trailers.catch(() => []);
    const receipt = trailers.find(([n]) => n === RECEIPT_HEADER);
    // The answer ended truncated (an error, not an end), at most a piece already on its way after the revocation, and no receipt.
    expect(failed).toBe(true);
    expect(emitted - emittedAtRevoke).toBeLessThanOrEqual(2);
    expect(receipt).toBeUndefined();
    expect(gw.ledger.events.filter((e) => e.type === 'inference.receipt').length).toBe(0);
  });
});
