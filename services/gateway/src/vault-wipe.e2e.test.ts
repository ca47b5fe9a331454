// The request's mask vault (the masked PII values) is wiped however a request ends: a streamed
// answer whose backend stream fails mid-way, a backend call that fails, and a non-chunked
// exchange whose streamed inner answer fails.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { utf8 } from '@custody/core';
import { MaskVault } from '@custody/policy';
import { decodeBhttpResponse, encapsulateChunkedRequest, encapsulateRequest, parseRuntimeData, readAll, type AttestationBundle, type KeyConfig } from '@custody/sdk';
import type { ModelBackend } from './backends/types.js';
import { bhttpChatRequest, startTestGateway, type TestGateway } from './testing/index.js';

const EVENT = utf8(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'hi [EMAIL_1]' } }] })}\n\n`);
let mode: 'ok' | 'fail-mid-stream' | 'fail-call' = 'fail-mid-stream';
const backend: ModelBackend = {
  kind: 'test-failing',
  models: () => [{ id: 'failing' }],
  handle: () => {
    if (mode === 'fail-call') return Promise.reject(new Error('backend unreachable'));
    let n = 0;
    return Promise.resolve({
      status: 200,
      contentType: 'text/event-stream',
      body: new ReadableStream<Uint8Array>({
        async pull(c) {
          if (n++ === 0) c.enqueue(EVENT);
          else if (mode === 'ok') c.close();
          else {
            await new Promise((r) => setTimeout(r, 20));
            c.error(new Error('engine failed'));
          }
        },
      }),
    });
  },
};

const clear = vi.spyOn(MaskVault.prototype, 'clear');
const tokenFor = vi.spyOn(MaskVault.prototype, 'tokenFor');
let gw: TestGateway;
let config: KeyConfig;
beforeAll(async () => {
  gw = await startTestGateway({ backend });
  const bundle = (await (await fetch(`${gw.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
  config = parseRuntimeData(bundle.runtimeData).keyConfigs[0]!;
});
afterAll(async () => {
  await gw.close();
});
const content = 'please write to alice@example.com';
const settle = () => new Promise((r) => setTimeout(r, 200));

describe('the mask vault is wiped however a request ends', () => {
  it('control: a streamed answer that completes wipes it (the spy works)', async () => {
    mode = 'ok';
    clear.mockClear();
    const { body } = await encapsulateChunkedRequest(config, bhttpChatRequest({ apiKey: gw.apiKey, model: 'failing', stream: true, content }));
    const res = await fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: await readAll(body) });
    await res.arrayBuffer();
    await settle();
    expect(clear).toHaveBeenCalled();
  });

  it('chunked, backend stream fails mid-way', async () => {
    mode = 'fail-mid-stream';
    clear.mockClear();
    tokenFor.mockClear();
    const { body } = await encapsulateChunkedRequest(config, bhttpChatRequest({ apiKey: gw.apiKey, model: 'failing', stream: true, content }));
    const res = await fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-chunked-req' }, body: await readAll(body) });
    await res.arrayBuffer().catch(() => undefined);
    await settle();
    expect(tokenFor).toHaveBeenCalled(); // a value was masked into the vault
    expect(clear).toHaveBeenCalled();
  });

  it('backend call fails', async () => {
    mode = 'fail-call';
    clear.mockClear();
    tokenFor.mockClear();
    const { encapsulatedRequest, context } = await encapsulateRequest(config, bhttpChatRequest({ apiKey: gw.apiKey, model: 'failing', content }));
    const res = await fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulatedRequest });
    const inner = decodeBhttpResponse(await context.decapsulateResponse(new Uint8Array(await res.arrayBuffer())));
    expect(inner.status).toBe(500);
    await settle();
    expect(tokenFor).toHaveBeenCalled();
    expect(clear).toHaveBeenCalled();
  });

  it('non-chunked with stream:true, backend stream fails', async () => {
    mode = 'fail-mid-stream';
    clear.mockClear();
    tokenFor.mockClear();
    const { encapsulatedRequest, context } = await encapsulateRequest(config, bhttpChatRequest({ apiKey: gw.apiKey, model: 'failing', content, stream: true }));
    const res = await fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: encapsulatedRequest });
    const inner = decodeBhttpResponse(await context.decapsulateResponse(new Uint8Array(await res.arrayBuffer())));
    expect(inner.status).toBeGreaterThanOrEqual(500);
    await settle();
    expect(tokenFor).toHaveBeenCalled();
    expect(clear).toHaveBeenCalled();
  });
});
