// Sealed request bodies are read before anything authenticates them, so the bytes held while
// bodies arrive are bounded for all clients together: a body that would cross the bound is
// refused at once with ERR_GATEWAY_OVERLOADED (503), and the bytes of a body that is broken off
// are given back. Without the bound, slow senders could each pin up to 16 MiB for minutes.
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEMO_MODEL_ID } from './backends/demo.js';
import { createConfidentialFetch } from '@custody/sdk';
import { startTestGateway, type TestGateway } from './testing/index.js';

const MiB = 1024 * 1024;
let gw: TestGateway;
const sockets: Socket[] = [];
beforeAll(async () => {
  gw = await startTestGateway({ gateway: { maxArrivingBodyBytes: 8 * MiB } });
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await gw.close();
});

/** The gateway's gauge of bytes held by bodies still arriving, as a scrape reads it. */
async function arriving(): Promise<number> {
  const text = await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_arriving_body_bytes');
  return Number(/^custody_gateway_arriving_body_bytes (\d+)$/m.exec(text)![1]);
}

/** Opens a raw connection that declares `declared` bytes of sealed request and sends `sent` of them, then waits. */
function slowSender(declared: number, sent: number): Promise<{ socket: Socket; answer: Promise<string> }> {
  const port = Number(new URL(gw.url).port);
  return new Promise((resolve) => {
    let text = '';
    const answer = new Promise<string>((done) => {
      const s = connect(port, '127.0.0.1', () => {
        s.write(`POST /ohttp HTTP/1.1\r\nHost: gw\r\nContent-Type: message/ohttp-req\r\nContent-Length: ${declared}\r\n\r\n`);
        s.write(Buffer.alloc(sent, 7), () => resolve({ socket: s, answer }));
      });
      s.on('data', (d: Buffer) => (text += d.toString('latin1')));
      s.on('close', () => done(text));
      s.on('error', () => undefined);
      sockets.push(s);
    });
  });
}

describe('bodies arriving at once', () => {
  it('are bounded together: the body that would cross the bound gets 503 ERR_GATEWAY_OVERLOADED; a broken-off body gives its bytes back', async () => {
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_arriving_body_limit_bytes')).toContain(` ${8 * MiB}`);
    expect(await arriving()).toBe(0);
    // A holds 6 MiB of a 10 MiB body and stalls.
    const a = await slowSender(10 * MiB, 6 * MiB);
    await expect.poll(arriving).toBe(6 * MiB);
    // B's 4 MiB would take the total past 8 MiB: refused, and its connection closed.
    const b = await slowSender(10 * MiB, 4 * MiB);
    const refused = await b.answer;
    expect(refused).toMatch(/^HTTP\/1\.1 503 /);
    expect(refused).toContain('ERR_GATEWAY_OVERLOADED');
    expect(refused.toLowerCase()).toContain('connection: close');
    // A small honest request is still answered while A holds its share.
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    const ok = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'hello' }] }) });
    expect(ok.status).toBe(200);
    // B's refusal gave back what it had taken; A still holds its 6 MiB.
    expect(await arriving()).toBe(6 * MiB);
    // A breaks off: its 6 MiB are given back, so a 7 MiB body fits again: held, and not answered.
    a.socket.destroy();
    await a.answer;
    await expect.poll(arriving).toBe(0);
    const c = await slowSender(10 * MiB, 7 * MiB);
    let answered = false;
    void c.answer.then(() => (answered = true));
    await expect.poll(arriving).toBe(7 * MiB);
    expect(answered).toBe(false);
    c.socket.destroy();
    await c.answer;
    await expect.poll(arriving).toBe(0);
  });
});
