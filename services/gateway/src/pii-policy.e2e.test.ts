// Input and output policy end to end: masks reach the model instead of values and are restored
// in responses, streams included (also when a token is split across events); redactions stay;
// blocks and CEL rules stop a request before the model; every decision is in the ledger; and no
// prompt text appears in logs, ledger events or metrics.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConfidentialFetch, type Receipt } from '@custody/sdk';
import type { BackendRequest, BackendResponse, ModelBackend } from './backends/types.js';
import { startTestGateway, type TestGateway } from './testing/index.js';

const EMAIL = 'alice.martin@example.org';
const PHONE = '+1 415 555 0134';
const CARD = '4111 1111 1111 1111';
const SECRET_PHRASE = 'zebra-quartz-lantern';

function openaiFor(gw: TestGateway, receipts: Receipt[] = []) {
  const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, onReceipt: (r) => receipts.push(r) });
  return new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.apiKey, fetch: cfetch, maxRetries: 0 });
}

describe('PII policy with an upstream model (test double that echoes the prompt)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({
      backend: 'upstream',
      tenant: {
        pii: { defaultAction: 'redact', actions: { email: 'mask', payment_card: 'block' } },
        rules: [{ id: 'no-codeword', expr: "!request.model.startsWith('forbidden')", reason: 'forbidden models' }],
      },
    });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('masks an e-mail for the model and restores it in a non-streamed answer; redacts a phone number', async () => {
    const receipts: Receipt[] = [];
    const res = await openaiFor(gw, receipts).chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: `Write to ${EMAIL} or call ${PHONE} about ${SECRET_PHRASE}` }] });
    const sent = gw.upstream!.received.at(-1)!.body;
    expect(sent).not.toContain(EMAIL);
    expect(sent).toContain('[EMAIL_1]');
    expect(sent).not.toContain('555 0134');
    expect(sent).toContain('[PHONE]');
    const text = res.choices[0]!.message.content!;
    expect(text).toContain(EMAIL);
    expect(text).toContain('[PHONE]');
    expect(receipts[0]!.policy).toMatchObject({ action: 'mask' });
    expect(receipts[0]!.request.forwardedDigest).not.toBe(receipts[0]!.request.digest);
  });

  it('restores masks in a stream', async () => {
    const stream = await openaiFor(gw).chat.completions.create({ model: 'fake-model', stream: true, messages: [{ role: 'user', content: `Reply to ${EMAIL} today` }] });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toContain(`Reply to ${EMAIL} today`);
    expect(gw.upstream!.received.at(-1)!.body).not.toContain(EMAIL);
  });

  it('blocks a payment card before the model (ERR_POLICY_DENIED, 403) and logs the decision', async () => {
    const n = gw.upstream!.received.length;
    const e = await openaiFor(gw)
      .chat.completions.create({ model: 'fake-model', messages: [{ role: 'user', content: `Charge ${CARD} now` }] })
      .then(
        () => undefined,
        (err: unknown) => err,
      );
    expect(e).toBeInstanceOf(OpenAI.APIError);
    expect((e as InstanceType<typeof OpenAI.APIError>).status).toBe(403);
    expect((e as InstanceType<typeof OpenAI.APIError>).code).toBe('ERR_POLICY_DENIED');
    expect(gw.upstream!.received.length).toBe(n);
    const last = gw.ledger.events.filter((x) => x.type === 'gate.decision').at(-1)!;
    expect(last).toMatchObject({ decision: 'deny', reason: 'ERR_POLICY_DENIED', ruleIds: ['payment_card'] });
  });

  it('the gateway logs, ledger events and metrics never contain prompt text or PII values', async () => {
    const metrics = await gw.gateway.metrics.registry.metrics();
    const haystacks = [gw.logs.join('\n'), gw.ledger.entries.map((e) => new TextDecoder().decode(e)).join('\n'), JSON.stringify(gw.ledger.events), metrics];
    // The card is looked for as written and as bare digits; a four-digit piece of it alone would be
    // found, about once in a hundred runs, inside the random digests and receipt ids of the events.
    for (const h of haystacks) {
      for (const needle of [EMAIL, 'alice.martin', '555 0134', CARD, CARD.replaceAll(' ', ''), '4111 1111', SECRET_PHRASE, 'Reply to', 'Write to', 'Charge']) expect(h).not.toContain(needle);
    }
    expect(gw.logs.length).toBeGreaterThan(3);
    expect(metrics).toContain('custody_gateway_pii_findings_total{category="email",action="mask"}');
  });
});

/** A backend whose stream splits a mask token across events, as a tokenizer may. */
class SplittingBackend implements ModelBackend {
  readonly kind = 'test-splitting';
  seen: string[] = [];
  models() {
    return [{ id: 'split-model' }];
  }
  handle(req: BackendRequest): Promise<BackendResponse> {
    this.seen.push(new TextDecoder().decode(req.body));
    const pieces = ['Contact ', '[EMA', 'IL_', '1] and ', '[EMAIL_1', ']', ' soon'];
    const enc = new TextEncoder();
    const events = pieces.map((p) => `data: ${JSON.stringify({ id: 's', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: p }, finish_reason: null }] })}\n\n`);
    events.push(`data: ${JSON.stringify({ id: 's', object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`);
    // Network-style chunking that does not respect event boundaries either.
    const all = enc.encode(events.join(''));
    const chunks = [all.subarray(0, 37), all.subarray(37, 200), all.subarray(200)];
    let i = 0;
    return Promise.resolve({
      status: 200,
      contentType: 'text/event-stream',
      body: new ReadableStream<Uint8Array>({
        pull(c) {
          if (i < chunks.length) c.enqueue(chunks[i++]!);
          else c.close();
        },
      }),
    });
  }
}

describe('mask restoration across split stream events', () => {
  const backend = new SplittingBackend();
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ backend, tenant: { pii: { defaultAction: 'mask' } } });
  });
  afterAll(async () => {
    await gw.close();
  });

  it('restores a token split over three events and over network chunks', async () => {
    const receipts: Receipt[] = [];
    const stream = await openaiFor(gw, receipts).chat.completions.create({ model: 'split-model', stream: true, messages: [{ role: 'user', content: `please email ${EMAIL}` }] });
    let text = '';
    for await (const c of stream) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toBe(`Contact ${EMAIL} and ${EMAIL} soon`);
    expect(backend.seen[0]).toContain('[EMAIL_1]');
    expect(backend.seen[0]).not.toContain(EMAIL);
    await new Promise((r) => setTimeout(r, 10));
    expect(receipts[0]!.response.streamed).toBe(true);
  });

  it('an unknown tenant key gets ERR_AUTH_INVALID (401) and nothing reaches the model', async () => {
    const n = backend.seen.length;
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer sk-wrong-key-000000' }, body: JSON.stringify({ model: 'split-model', messages: [] }) });
    expect(res.status).toBe(401);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_AUTH_INVALID');
    expect(backend.seen.length).toBe(n);
    expect(cfetch.receiptOf(res)).toBeUndefined();
  });

  it('a CEL rule that does not hold denies with the rule id', async () => {
    await gw.close();
    gw = await startTestGateway({ backend, tenant: { rules: [{ id: 'small-prompts', expr: 'request.chars < 10', reason: 'prompts under 10 characters only' }] } });
    const n = backend.seen.length;
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'split-model', messages: [{ role: 'user', content: 'this prompt is too long' }] }) });
    expect(res.status).toBe(403);
    const receipt = await cfetch.receiptOf(res)!;
    expect(receipt.policy).toMatchObject({ action: 'deny', rules: ['small-prompts'] });
    expect(receipt.request.forwardedDigest).toBeUndefined();
    expect(backend.seen.length).toBe(n);
  });

  it('fails closed when the ledger refuses: the response is withheld (ERR_GATEWAY_LEDGER)', async () => {
    gw.ledger.setFailing(true);
    const lines = gw.logs.length;
    try {
      const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
      const ask = () => cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'split-model', messages: [{ role: 'user', content: 'hi' }] }) }).catch((e: unknown) => e);
      const res = await ask();
      expect(res).toBeInstanceOf(Response);
      const problem = (await (res as Response).json()) as { code: string; detail: string };
      expect([(res as Response).status, problem.code]).toEqual([503, 'ERR_GATEWAY_LEDGER']);
      // The step that failed is named: the decision was refused, so nothing reached the model
      // (not the receipt's refusal, which a second append for the problem answer used to report).
      expect(problem.detail).toMatch(/policy decision; nothing was forwarded/);
      // The operator sees it in the log: one line for a burst of refusals, with its code.
      for (let i = 0; i < 5; i++) await ask();
      const failed = gw.logs.slice(lines).map((l) => JSON.parse(l) as { event?: string; entry?: string; code?: string; failed?: number }).filter((l) => l.event === 'ledger.failed');
      expect(failed.length).toBeGreaterThanOrEqual(1);
      expect(failed.length).toBeLessThan(6);
      expect(failed[0]).toMatchObject({ entry: 'decision', code: expect.stringMatching(/^ERR_/), failed: 1 });
    } finally {
      gw.ledger.setFailing(false);
    }
  });
});
