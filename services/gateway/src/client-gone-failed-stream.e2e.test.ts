// A client that goes away mid-stream while the backend fails its stream on the abort signal (as
// a fetch-based backend does): the gateway cancels the answer without an unhandled rejection
// (Node 20 exits on one). The cancel rejected when the backend's stream had already failed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import type { ModelBackend } from './backends/types.js';
import { postSealedRaw, sealedChunkedChat, startTestGateway, type TestGateway } from './testing/index.js';

const EVENT = utf8(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'hello' } }] })}\n\n`);
let backendAborted!: () => void;
const aborted = new Promise<void>((r) => (backendAborted = r));
// A backend that honours the abort signal by failing its stream (as a fetch-based one does).
const abortable: ModelBackend = {
  kind: 'test-abortable',
  models: () => [{ id: 'abortable' }],
  handle: (req) =>
    Promise.resolve({
      status: 200,
      contentType: 'text/event-stream',
      body: new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(EVENT);
          req.signal?.addEventListener('abort', () => {
            c.error(new Error('the request was cancelled'));
            backendAborted();
          });
        },
      }),
    }),
};

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => void unhandled.push(e);
let gw: TestGateway;
beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  gw = await startTestGateway({ backend: abortable });
});
afterAll(async () => {
  await gw.close();
  process.off('unhandledRejection', onUnhandled);
});

describe('a client that goes away mid-stream', () => {
  it('does not cause an unhandled rejection in the gateway', async () => {
    const { sealed } = await sealedChunkedChat(gw.url, { apiKey: gw.apiKey, model: 'abortable', stream: true });
    // The client reads the first piece of the answer, then hangs up.
    await new Promise<void>((resolve) => {
      postSealedRaw(gw.url, sealed, 'message/ohttp-chunked-req', (req, res) =>
        res.once('data', () => {
          req.destroy();
          resolve();
        }),
      );
    });
    await aborted;
    await new Promise((r) => setTimeout(r, 200));
    expect(unhandled).toEqual([]);
  });
});
