// Stopping a gateway (SIGTERM, `custody gateway serve`): with a drain period, a confidential
// request in progress finishes and gets its answer and receipt, new connections are refused, and
// the close ends once it is done; without one (or past it), connections are cut.
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createConfidentialFetch } from '@custody/sdk';
import { startTestGateway, type TestGateway } from './testing/index.js';

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close().catch(() => undefined);
  gw = undefined;
});

async function slowGateway(): Promise<{ gw: TestGateway; chat: () => Promise<Response>; cfetch: ReturnType<typeof createConfidentialFetch> }> {
  const g = await startTestGateway({ backend: 'upstream', upstream: { serviceMs: 1500 } });
  const cfetch = createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true });
  await cfetch.verify();
  const chat = () =>
    cfetch(`${g.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${g.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'finish me' }] }),
    });
  return { gw: g, chat, cfetch };
}

describe('closing the gateway server', () => {
  it('with drainMs: the request in progress gets its answer and receipt; new connections are refused; close ends when it is done', async () => {
    const s = await slowGateway();
    gw = s.gw;
    const inFlight = s.chat();
    await new Promise((r) => setTimeout(r, 300));
    const started = performance.now();
    const closing = s.gw.server.close({ drainMs: 10_000 });
    const res = await inFlight;
    expect(res.status).toBe(200);
    expect(await s.cfetch.receiptOf(res)).toBeDefined();
    await closing;
    // Soon after the answer, not at the end of the drain period, nor after the client's kept-alive
    // connection times out (5 s): a connection that finished is closed as soon as it is idle.
    expect(performance.now() - started).toBeLessThan(3000);
    await expect(fetch(`${s.gw.url}/healthz`)).rejects.toThrow();
  });

  it('with drainMs and nothing in progress: a connection that never sent a byte does not hold the close', async () => {
    gw = await startTestGateway();
    const silent = connect(gw.server.port, '127.0.0.1');
    silent.on('error', () => undefined);
    const silentClosed = new Promise<void>((r) => silent.once('close', () => r()));
    await new Promise<void>((r) => silent.once('connect', () => r()));
    // Accepted after the silent one (and kept alive by fetch's pool).
    expect((await fetch(`${gw.url}/healthz`)).status).toBe(200);
    const started = performance.now();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // A drain of 20 s that ends well before it: nothing held it.
    const ended = await Promise.race([gw.server.close({ drainMs: 20_000 }).then(() => true), new Promise<false>((r) => (timer = setTimeout(() => r(false), 10_000)))]);
    clearTimeout(timer);
    expect(ended).toBe(true);
    expect(performance.now() - started).toBeLessThan(10_000);
    await silentClosed;
  });

  it('without it, the request in progress is cut', async () => {
    const s = await slowGateway();
    gw = s.gw;
    const inFlight = s.chat().then(
      (r) => r.status,
      (e: unknown) => (e as { code?: string }).code ?? 'error',
    );
    await new Promise((r) => setTimeout(r, 300));
    await s.gw.server.close();
    expect(await inFlight).toBe('ERR_SDK_GATEWAY');
  });
});
