// The same with the real UpstreamBackend given a `fetch` (what tests and in-process benchmarks
// use): a client that disconnects mid-stream makes undici fail the body stream on abort, and
// the gateway stays up with no unhandled rejection.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamBackend } from './backends/upstream.js';
import { startFakeUpstream, postSealedRaw, sealedChunkedChat, startTestGateway, type FakeUpstream, type TestGateway } from './testing/index.js';

const unhandled: unknown[] = [];
const onUnhandled = (e: unknown) => void unhandled.push(e);
let gw: TestGateway;
let up: FakeUpstream;
beforeAll(async () => {
  process.on('unhandledRejection', onUnhandled);
  up = await startFakeUpstream({ tokenMs: 50, words: 200 });
  const backend = await UpstreamBackend.create({ url: up.url, fetch: globalThis.fetch });
  gw = await startTestGateway({ backend });
});
afterAll(async () => {
  await gw.close();
  await up.close();
  process.off('unhandledRejection', onUnhandled);
});

describe('a client that goes away mid-stream (upstream over fetch)', () => {
  it('does not cause an unhandled rejection in the gateway', async () => {
    for (let i = 0; i < 5; i++) {
      const { sealed } = await sealedChunkedChat(gw.url, { apiKey: gw.apiKey, model: 'fake-model', stream: true });
      await new Promise<void>((resolve) => {
        postSealedRaw(gw.url, sealed, 'message/ohttp-chunked-req', (req, res) =>
          res.once('data', () => {
            req.destroy();
            resolve();
          }),
        );
      });
      await new Promise((r) => setTimeout(r, 150));
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(unhandled).toEqual([]);
  });
});
