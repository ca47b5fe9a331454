// The tenant's output policy, end to end through the SDK: values the model writes that the policy
// redacts never reach the client (in streams, not even a first digit), the caller's own masked
// values still come back restored, and the receipt (which the SDK verifies over what it received)
// says what the output policy found.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import { createConfidentialFetch, type ConfidentialFetch } from '@custody/sdk';
import type { ModelBackend } from './backends/types.js';
import { startTestGateway, type TestGateway } from './testing/index.js';

const CARD = '4111 1111 1111 1111';
const SSN = '123-45-6789';
/** What the model writes: the caller's masked e-mail (a mask token), a card, an SSN and an address it made up. */
const answerFor = (masked: string) => `I wrote to ${masked}. Card ${CARD} and SSN ${SSN} were found; ask ops@corp.example if needed.`;
const filler = ' '.concat(...Array.from({ length: 30 }, (_, i) => `word${i} `));

/** Echoes the mask token it received for the e-mail; streams in 3-character tokens. */
const backend: ModelBackend = {
  kind: 'test-leaky',
  models: () => [{ id: 'leaky' }],
  handle: ({ body, stream }) => {
    const sent = JSON.parse(new TextDecoder().decode(body)) as { messages: { content: string }[] };
    const masked = /\[EMAIL_\d+\]/.exec(sent.messages[0]!.content)?.[0] ?? 'nobody';
    if (sent.messages[0]!.content.includes('fail please')) return Promise.resolve({ status: 400, contentType: 'application/json', body: utf8(JSON.stringify({ error: { message: `the model choked on ${CARD}`, type: 'invalid_request_error' } })) });
    const text = answerFor(masked) + (stream ? filler : '');
    if (!stream) return Promise.resolve({ status: 200, contentType: 'application/json', body: utf8(JSON.stringify({ id: 'c1', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }] })) });
    const pieces: string[] = [];
    for (let i = 0; i < text.length; i += 3) pieces.push(text.slice(i, i + 3));
    let n = 0;
    return Promise.resolve({
      status: 200,
      contentType: 'text/event-stream',
      body: new ReadableStream<Uint8Array>({
        pull(c) {
          if (n < pieces.length) c.enqueue(utf8(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: pieces[n++] }, finish_reason: null }] })}\n\n`));
          else if (n++ === pieces.length) c.enqueue(utf8(`data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\ndata: [DONE]\n\n`));
          else c.close();
        },
      }),
    });
  },
};

let gw: TestGateway;
let cfetch: ConfidentialFetch;
beforeAll(async () => {
  gw = await startTestGateway({
    backend,
    tenant: { pii: { defaultAction: 'allow', actions: { email: 'mask' } }, output: { pii: { actions: { payment_card: 'redact', national_id: 'redact', email: 'redact' } } } },
  });
  cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
});
afterAll(async () => {
  await gw.close();
});

const ask = (stream: boolean) =>
  cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'leaky', stream, messages: [{ role: 'user', content: 'Please write to ann@example.com' }] }) });

const expected = `I wrote to ann@example.com. Card [PAYMENT_CARD] and SSN [NATIONAL_ID] were found; ask [EMAIL] if needed.`;

describe('output policy', () => {
  it('redacts what the model wrote, restores the caller\'s masked value, and the receipt counts the findings', async () => {
    const res = await ask(false);
    expect(res.status).toBe(200);
    const body = await res.text();
    expect((JSON.parse(body) as { choices: { message: { content: string } }[] }).choices[0]!.message.content).toBe(expected);
    expect(body).not.toContain('1111');
    expect(body).not.toContain(SSN);
    const receipt = await cfetch.receiptOf(res)!;
    expect(receipt.policy.output?.findings).toEqual(
      expect.arrayContaining([
        { category: 'payment_card', action: 'redact', count: 1 },
        { category: 'national_id', action: 'redact', count: 1 },
        { category: 'email', action: 'redact', count: 1 },
      ]),
    );
    expect(receipt.policy.findings).toEqual([{ category: 'email', action: 'mask', count: 1 }]);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_output_pii_findings_total')).toContain('{category="payment_card",action="redact"} 1');
  });

  it('in a stream, no piece of a redacted value is sent, and the receipt verifies over the redacted stream', async () => {
    const res = await ask(true);
    expect(res.status).toBe(200);
    const reader = res.body!.getReader();
    let raw = '';
    for (;;) {
      const r = await reader.read();
      if (r.done) break;
      raw += new TextDecoder().decode(r.value);
    }
    let content = '';
    for (const line of raw.split('\n')) {
      if (!line.startsWith('data: {')) continue;
      const ev = JSON.parse(line.slice(6)) as { choices: { delta: { content?: string } }[] };
      const piece = ev.choices[0]?.delta.content ?? '';
      // Every event the client got: not one piece of the card, the SSN or the made-up address.
      expect(piece).not.toMatch(/\d{3}|ops@|corp\.example/);
      content += piece;
    }
    expect(content).toBe(expected + filler);
    const receipt = await cfetch.receiptOf(res)!;
    expect(receipt.response.streamed).toBe(true);
    expect(receipt.policy.output?.findings.map((f) => f.category).sort()).toEqual(['email', 'national_id', 'payment_card']);
  });

  it('a tenant without an output policy gets the model\'s answer as written, and no output member in its receipt', async () => {
    const plain = await startTestGateway({ backend, tenant: { pii: { defaultAction: 'allow' } } });
    try {
      const f = createConfidentialFetch({ gateway: plain.url, jwks: plain.jwks!, allowSimulated: true });
      const res = await f(`${plain.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${plain.apiKey}` }, body: JSON.stringify({ model: 'leaky', messages: [{ role: 'user', content: 'hi' }] }) });
      expect(await res.text()).toContain(CARD);
      const receipt = await f.receiptOf(res)!;
      expect(receipt.policy.output).toBeUndefined();
    } finally {
      await plain.close();
    }
  });

  it('refuses an output action other than redact or allow at load', async () => {
    const { TenantDirectory } = await import('./pipeline/tenants.js');
    for (const action of ['mask', 'block']) {
      await expect(TenantDirectory.create({ id: 'p', version: 1, tenants: [{ id: 'a', apiKeySha256: '00'.repeat(32), output: { pii: { actions: { email: action } } } }] } as never)).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    }
  });

  it('an error answer from the backend is scanned too', async () => {
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: 'leaky', messages: [{ role: 'user', content: 'fail please' }] }) });
    expect(res.status).toBe(400);
    const text = await res.text();
    expect(text).toContain('the model choked on [PAYMENT_CARD]');
    expect(text).not.toContain('1111');
  });
});
