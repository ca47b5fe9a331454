// The same with the real UpstreamBackend given a `fetch` (what tests and in-process benchmarks
// use): a client that disconnects mid-stream makes undici fail the body stream on abort, and
// the gateway stays up with no unhandled rejection.
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encapsulateChunkedRequest, parseRuntimeData, readAll, type AttestationBundle } from '@custody/sdk';
import { UpstreamBackend } from './backends/upstream.js';
import { bhttpChatRequest, startFakeUpstream, startTestGateway, type FakeUpstream, type TestGateway } from './testing/index.js';

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
    const bundle = (await (await fetch(`${gw.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
    const config = parseRuntimeData(bundle.runtimeData).keyConfigs[0]!;
    for (let i = 0; i < 5; i++) {
      const { body } = await encapsulateChunkedRequest(config, bhttpChatRequest({ apiKey: gw.apiKey, model: 'fake-model', stream: true }));
      const sealed = await readAll(body);
      await new Promise<void>((resolve) => {
        const req = request(`${gw.url}/ohttp`, { method: 'POST', agent: false, headers: { 'content-type': 'message/ohttp-chunked-req', 'content-length': sealed.length } }, (res) => {
          res.once('data', () => {
            req.destroy();
            resolve();
          });
        });
        req.on('error', () => undefined);
        req.end(sealed);
      });
      await new Promise((r) => setTimeout(r, 150));
    }
    await new Promise((r) => setTimeout(r, 300));
    expect(unhandled).toEqual([]);
  });
});
