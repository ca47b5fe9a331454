// End to end on loopback: the official `openai` npm client with the SDK's confidential fetch,
// against the gateway (in-process demo model, and an OpenAI-compatible upstream test double).
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { nodeGatewayFetch } from '@custody/crypto-node';
import { createConfidentialFetch, renderVerificationText, verifyReceipt, type Receipt } from '@custody/sdk';
import { DEMO_MODEL_ID, DEMO_MODEL_LABEL } from './backends/demo.js';
import { startTestGateway, type TestGateway } from './testing/index.js';

function client(gw: TestGateway, receipts: Receipt[] = [], transport?: typeof fetch) {
  const cfetch = createConfidentialFetch({
    gateway: gw.url,
    jwks: gw.jwks!,
    allowSimulated: true,
    expectedMeasurements: { measurement: gw.measurement },
    onReceipt: (r) => receipts.push(r),
    ...(transport ? { fetch: transport } : {}),
  });
  const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.apiKey, fetch: cfetch, maxRetries: 0 });
  return { cfetch, openai };
}

describe('openai client through the SDK and the gateway (demo model)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway();
  });
  afterAll(async () => {
    await gw.close();
  });

  it('answers a chat completion, with a verified receipt naming the model and the policy', async () => {
    const receipts: Receipt[] = [];
    const { cfetch, openai } = client(gw, receipts);
    const res = await openai.chat.completions.create({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'Summarise the quarterly invoice backlog for finance' }] });
    expect(res.choices[0]!.message.content).toContain(DEMO_MODEL_LABEL);
    expect(res.choices[0]!.message.content).toContain('quarterly invoice backlog');
    expect(receipts).toHaveLength(1);
    const r = receipts[0]!;
    expect(r.model.id).toBe(DEMO_MODEL_ID);
    expect(r.model.digest).toMatch(/^sha256:/);
    expect(r.gateway.simulated).toBe(true);
    expect(r.gateway.measurements.measurement).toBe(gw.measurement);
    expect(r.gateway.earId).toBeTruthy();
    expect(r.ledger?.index).toBeGreaterThanOrEqual(0);
    expect(r.policy.version).toBe(gw.gateway.tenants.policyVersion);
    const doc = cfetch.lastVerification!;
    expect(doc.ok).toBe(true);
    expect(renderVerificationText(doc)).toContain('VERIFIED');
  });

  it('streams a chat completion token by token and verifies the receipt over the whole stream', async () => {
    const receipts: Receipt[] = [];
    const { openai } = client(gw, receipts);
    const stream = await openai.chat.completions.create({ model: DEMO_MODEL_ID, stream: true, messages: [{ role: 'user', content: 'Stream the demo answer please' }] });
    const parts: string[] = [];
    for await (const chunk of stream) parts.push(chunk.choices[0]?.delta?.content ?? '');
    expect(parts.filter((p) => p.length > 0).length).toBeGreaterThan(5);
    expect(parts.join('')).toContain(DEMO_MODEL_LABEL);
    // The receipt settles when the stream has been read to the end.
    await new Promise((r) => setTimeout(r, 10));
    expect(receipts).toHaveLength(1);
    expect(receipts[0]!.response.streamed).toBe(true);
  });

  it('does the same over the Node transport (nodeGatewayFetch: node:http, streamed answers), which carries every call of the SDK', async () => {
    const node = nodeGatewayFetch();
    const urls: string[] = [];
    const counted = ((input: string | URL | Request, init?: RequestInit) => {
      urls.push(input instanceof Request ? input.url : String(input));
      return node(input, init);
    }) as typeof fetch;
    try {
      const receipts: Receipt[] = [];
      const { cfetch, openai } = client(gw, receipts, counted);
      const res = await openai.chat.completions.create({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'Summarise the quarterly invoice backlog for finance' }] });
      expect(res.choices[0]!.message.content).toContain('quarterly invoice backlog');
      const stream = await openai.chat.completions.create({ model: DEMO_MODEL_ID, stream: true, messages: [{ role: 'user', content: 'Stream the demo answer please' }] });
      const parts: string[] = [];
      for await (const chunk of stream) parts.push(chunk.choices[0]?.delta?.content ?? '');
      expect(parts.filter((p) => p.length > 0).length).toBeGreaterThan(5);
      expect(parts.join('')).toContain(DEMO_MODEL_LABEL);
      await expect.poll(() => receipts.length).toBe(2);
      expect(receipts.map((r) => r.response.streamed)).toEqual([false, true]);
      expect(cfetch.lastVerification!.ok).toBe(true);
      // Discovery and both encapsulated requests went through it.
      expect(urls.filter((u) => u.endsWith('/ohttp'))).toHaveLength(2);
      expect(urls.some((u) => u.includes('/.well-known/custody/attestation'))).toBe(true);
    } finally {
      node.close();
    }
  });

  it('serves completions, embeddings and the model list', async () => {
    const { openai } = client(gw);
    const c = await openai.completions.create({ model: DEMO_MODEL_ID, prompt: 'Complete this please' });
    expect(c.choices[0]!.text).toContain(DEMO_MODEL_LABEL);
    const e = await openai.embeddings.create({ model: DEMO_MODEL_ID, input: ['alpha beta', 'gamma'] });
    expect(e.data).toHaveLength(2);
    expect(e.data[0]!.embedding).toHaveLength(64);
    const models = await openai.models.list();
    expect(models.data.map((m) => m.id)).toEqual([DEMO_MODEL_ID]);
  });

  it('a receipt verifies with the attested key, and a modified receipt does not', async () => {
    const { cfetch } = client(gw);
    const res = await cfetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'hello receipt' }] }),
    });
    expect(res.status).toBe(200);
    const header = res.headers.get('custody-receipt')!;
    const v = await cfetch.verify();
    const r = await verifyReceipt(header, v.receiptKey);
    expect(await cfetch.receiptOf(res)).toEqual(r);
    const tampered = { ...r, response: { ...r.response, status: 500 } };
    await expect(verifyReceipt(tampered, v.receiptKey)).rejects.toMatchObject({ code: 'ERR_RECEIPT_SIGNATURE' });
    const forgedDigest = { ...r, request: { ...r.request, digest: 'sha256:' + '00'.repeat(32) } };
    await expect(verifyReceipt(forgedDigest, v.receiptKey)).rejects.toMatchObject({ code: 'ERR_RECEIPT_SIGNATURE' });
    await expect(verifyReceipt(r, v.receiptKey, { responseDigest: 'sha256:' + '11'.repeat(32) })).rejects.toMatchObject({ code: 'ERR_RECEIPT_MISMATCH' });
  });
});

describe('openai client through the gateway to an OpenAI-compatible upstream (test double)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ backend: 'upstream' });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('passes non-streamed and streamed chat through', async () => {
    const receipts: Receipt[] = [];
    const { openai } = client(gw, receipts);
    const res = await openai.chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: 'upstream hello' }] });
    expect(res.choices[0]!.message.content).toContain('upstream hello');
    const stream = await openai.chat.completions.create({ model: 'fake-model', stream: true, messages: [{ role: 'user', content: 'stream from upstream' }] });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
    expect(text).toContain('stream from upstream tok0');
    await new Promise((r) => setTimeout(r, 10));
    expect(receipts.map((r) => r.response.streamed)).toEqual([false, true]);
    expect(receipts[0]!.model.digest).toBe('sha256:' + '0f'.repeat(32));
    expect(gw.upstream!.received).toHaveLength(2);
  });
});
