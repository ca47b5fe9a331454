// A non-chunked exchange (message/ohttp-req) that asks for stream:true reads the backend's SSE
// stream whole; when its client goes away, that stream is cancelled (the upstream connection is
// released), as it is on the chunked path.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encapsulateRequest } from '@custody/sdk';
import { UpstreamBackend } from './backends/upstream.js';
import { bhttpChatRequest, postSealedRaw, publishedKeyConfig, sealedChunkedChat, startTestGateway, type TestGateway } from './testing/index.js';

let gw: TestGateway;
let upstream: Server;
let upstreamReq: IncomingMessage | undefined;
let upstreamClosed = false;
beforeAll(async () => {
  upstream = createServer((req, res) => {
    upstreamReq = req;
    req.resume();
    res.once('close', () => (upstreamClosed = true));
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'thinking...' } }] })}\n\n`);
    // ...and then nothing more, ever (a wedged model server).
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const backend = await UpstreamBackend.create({ url: `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`, models: [{ id: 'm' }], timeoutMs: 1000 });
  gw = await startTestGateway({ backend });
});
afterAll(async () => {
  await gw.close();
  upstream.closeAllConnections();
  await new Promise((r) => upstream.close(r));
});

describe('a non-chunked streamed request whose client went away', () => {
  it('control: the same over chunked OHTTP releases the backend stream', async () => {
    const { sealed } = await sealedChunkedChat(gw.url, { apiKey: gw.apiKey, model: 'm', stream: true });
    const req = postSealedRaw(gw.url, sealed, 'message/ohttp-chunked-req', () => undefined);
    for (let i = 0; i < 100 && !upstreamReq; i++) await new Promise((r) => setTimeout(r, 20));
    expect(upstreamReq).toBeDefined();
    req.destroy();
    // Released, however long a loaded machine takes to pass the close on.
    await expect.poll(() => upstreamClosed, { timeout: 10_000 }).toBe(true);
    upstreamReq = undefined;
    upstreamClosed = false;
  });

  it('releases the backend stream', async () => {
    const { encapsulatedRequest } = await encapsulateRequest(await publishedKeyConfig(gw.url), bhttpChatRequest({ apiKey: gw.apiKey, model: 'm', stream: true, content: 'mail alice@example.com' }));
    const req = postSealedRaw(gw.url, encapsulatedRequest, 'message/ohttp-req', () => undefined);
    // Wait until the upstream has been asked, then the client gives up.
    for (let i = 0; i < 100 && !upstreamReq; i++) await new Promise((r) => setTimeout(r, 20));
    expect(upstreamReq).toBeDefined();
    req.destroy();
    await expect.poll(() => upstreamClosed, { timeout: 10_000 }).toBe(true);
  });
});
