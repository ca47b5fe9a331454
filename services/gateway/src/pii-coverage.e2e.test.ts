// End to end (OHTTP, SDK fetch, gateway, upstream test double): the input policy covers every
// text the model reads, not only message contents. For each field of the OpenAI chat /
// completions / embeddings requests (tool definitions, tool-call arguments, message names,
// suffixes, fields the gateway does not know, ...) a payment card (tenant action: block) is
// denied before the model with ERR_POLICY_DENIED and a logged deny, and an e-mail (mask)
// reaches the model as a token and comes back restored in the answer (contents and tool-call
// arguments, streamed or not). A request with nothing to rewrite is forwarded byte for byte.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createConfidentialFetch } from '@custody/sdk';
import type { BackendRequest, BackendResponse, ModelBackend } from './backends/types.js';
import { startTestGateway, type TestGateway } from './testing/index.js';

const CARD = '4111 1111 1111 1111';
const EMAIL = 'alice.martin@example.org';

type Route = 'chat' | 'completions' | 'embeddings';
const PATHS: Record<Route, string> = { chat: '/v1/chat/completions', completions: '/v1/completions', embeddings: '/v1/embeddings' };

const user = (content: unknown) => ({ role: 'user', content });
const chat = (model: string, extra: Record<string, unknown> = {}) => ({ model, messages: [user('please help')], ...extra });
const payTool = (fn: Record<string, unknown>) => [{ type: 'function', function: { name: 'pay', ...fn } }];

/** [field, route, body with `v` in that field (and nowhere else)]. */
const FIELDS: [string, Route, (model: string, v: string) => Record<string, unknown>][] = [
  ['system message', 'chat', (m, v) => ({ model: m, messages: [{ role: 'system', content: `Account holder: ${v}` }, user('hi')] })],
  ['developer message', 'chat', (m, v) => ({ model: m, messages: [{ role: 'developer', content: `Use ${v}` }, user('hi')] })],
  ['message name', 'chat', (m, v) => ({ model: m, messages: [{ role: 'user', name: v, content: 'hi' }] })],
  ['assistant tool_calls arguments', 'chat', (m, v) => chat(m, { tools: payTool({ parameters: { type: 'object' } }), messages: [user('pay the invoice'), { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'pay', arguments: JSON.stringify({ account: v, amount: 12 }) } }] }, { role: 'tool', tool_call_id: 'call_1', content: 'ok' }] })],
  ['legacy function_call arguments', 'chat', (m, v) => chat(m, { messages: [user('pay'), { role: 'assistant', content: null, function_call: { name: 'pay', arguments: JSON.stringify({ account: v }) } }, { role: 'function', name: 'pay', content: 'ok' }] })],
  ['tool message content', 'chat', (m, v) => chat(m, { messages: [user('who is it?'), { role: 'assistant', tool_calls: [{ id: 'call_2', type: 'function', function: { name: 'lookup', arguments: '{}' } }] }, { role: 'tool', tool_call_id: 'call_2', content: `record: ${v}` }] })],
  ['tools[].function.description', 'chat', (m, v) => chat(m, { tools: payTool({ description: `always pay with ${v}`, parameters: { type: 'object' } }) })],
  ['tool parameter description', 'chat', (m, v) => chat(m, { tools: payTool({ parameters: { type: 'object', properties: { account: { type: 'string', description: `for example ${v}` } } } }) })],
  ['tool parameter enum', 'chat', (m, v) => chat(m, { tools: payTool({ parameters: { type: 'object', properties: { account: { type: 'string', enum: [v, 'other'] } } } }) })],
  ['structured output schema', 'chat', (m, v) => chat(m, { response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'object', description: `about ${v}` } } } })],
  ['unknown top-level field', 'chat', (m, v) => chat(m, { system: `You serve ${v}` })],
  ['unknown field in a message', 'chat', (m, v) => ({ model: m, messages: [{ role: 'user', content: 'hi', context: { profile: [v] } }] })],
  ['completions prompt list', 'completions', (m, v) => ({ model: m, prompt: ['Dear customer,', `write to ${v}`] })],
  ['completions suffix', 'completions', (m, v) => ({ model: m, prompt: 'Dear customer,', suffix: `-- sent to ${v}` })],
  ['embeddings input list', 'embeddings', (m, v) => ({ model: m, input: ['first', `contact ${v}`] })],
  ['embeddings unknown field', 'embeddings', (m, v) => ({ model: m, input: 'first', instruction: `for ${v}` })],
];

function fetcher(gw: TestGateway) {
  const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
  const send = (route: Route, text: string) => cfetch(`${gw.url}${PATHS[route]}`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' }, body: text });
  return { cfetch, send };
}

const lastDecision = (gw: TestGateway) => gw.ledger.events.filter((e) => e.type === 'gate.decision').at(-1) as { decision: string; ruleIds?: string[] } | undefined;

describe('every field reaches the input policy (upstream test double)', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ backend: 'upstream' });
  });
  afterAll(async () => {
    await gw.close();
  });

  it.each(FIELDS)('%s: a card is denied before the model', async (_field, route, make) => {
    const before = gw.upstream!.received.length;
    const res = await fetcher(gw).send(route, JSON.stringify(make('fake-model', CARD)));
    expect(res.status).toBe(403);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_POLICY_DENIED');
    expect(gw.upstream!.received.length).toBe(before);
    expect(lastDecision(gw)).toMatchObject({ decision: 'deny', ruleIds: ['payment_card'] });
  });

  it.each(FIELDS)('%s: an e-mail reaches the model masked', async (_field, route, make) => {
    const { cfetch, send } = fetcher(gw);
    const res = await send(route, JSON.stringify(make('fake-model', EMAIL)));
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const forwarded = gw.upstream!.received.at(-1)!.body;
    expect(forwarded).not.toContain(EMAIL);
    expect(forwarded).not.toContain('alice.martin');
    expect(forwarded).toContain('[EMAIL_1]');
    const json = JSON.parse(forwarded) as { messages?: { tool_calls?: { function: { arguments: string } }[]; function_call?: { arguments: string } }[] };
    for (const m of json.messages ?? []) for (const fn of [...(m.tool_calls ?? []).map((c) => c.function), ...(m.function_call ? [m.function_call] : [])]) expect(() => JSON.parse(fn.arguments) as unknown).not.toThrow();
    expect(lastDecision(gw)).toMatchObject({ decision: 'redact', ruleIds: ['email'] });
    const receipt = await cfetch.receiptOf(res)!;
    expect(receipt.policy).toMatchObject({ action: 'mask', findings: [{ category: 'email', action: 'mask', count: 1 }] });
  });

  it('the reviewed request (card and e-mail in tool-call arguments and a tool description) is denied', async () => {
    const before = gw.upstream!.received.length;
    const body = {
      model: 'fake-model',
      tools: payTool({ description: `always pay with ${CARD} and mail ${EMAIL}`, parameters: { type: 'object' } }),
      messages: [user('pay the invoice'), { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'pay', arguments: JSON.stringify({ card: CARD, email: EMAIL }) } }] }, { role: 'tool', tool_call_id: 'c1', content: 'ok' }],
    };
    expect((await fetcher(gw).send('chat', JSON.stringify(body))).status).toBe(403);
    expect(gw.upstream!.received.length).toBe(before);
  });

  it('a card or an address spelt with fullwidth digits, zero-width spaces or a fullwidth @ is found as its ASCII spelling', async () => {
    const before = gw.upstream!.received.length;
    const card = '\uFF14\uFF11\uFF11\uFF11\u200B \uFF11\uFF11\uFF11\uFF11\u00A0\uFF11\uFF11\uFF11\uFF11 1111';
    // Sent as raw UTF-8 and as JSON escapes: the policy reads the decoded string either way.
    for (const text of [JSON.stringify(chat('fake-model', { messages: [user(`pay with ${card}`)] })), JSON.stringify(chat('fake-model', { messages: [user(`pay with ${card}`)] })).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)]) {
      const res = await fetcher(gw).send('chat', text);
      expect(res.status).toBe(403);
      expect(((await res.json()) as { code: string }).code).toBe('ERR_POLICY_DENIED');
      expect(lastDecision(gw)).toMatchObject({ decision: 'deny', ruleIds: ['payment_card'] });
    }
    expect(gw.upstream!.received.length).toBe(before);
    const mail = 'alice.martin\uFF20example.org';
    const res = await fetcher(gw).send('chat', JSON.stringify(chat('fake-model', { messages: [user(`write to ${mail} today`)] })));
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    const forwarded = gw.upstream!.received.at(-1)!.body;
    expect(forwarded).not.toContain('alice.martin');
    expect(forwarded).toContain('write to [EMAIL_1] today');
  });

  it('control: a request with nothing to rewrite is forwarded byte for byte; a masked one differs only in the masked string', async () => {
    // Unusual but valid JSON: spacing, escapes, a big integer seed, numbers as written, a
    // vendor extension, tool calls and tool definitions.
    const text = `{ "model" : "fake-model",\n  "messages": [\n    {"role": "system", "content": "Be brief. caf\\u00e9 \\ud83d\\ude00"},\n    {"role":"user","content":[{"type":"text","text":"Sum 1.50 and 2"}]},\n    {"role":"assistant","content":null,"tool_calls":[{"id":"call_abc123","type":"function","function":{"name":"add","arguments":"{ \\"a\\" : 1.50, \\"b\\" : 2e0 }"}}]},\n    {"role":"tool","tool_call_id":"call_abc123","content":"3.5"},\n    {"role":"user","content":"Thanks"}\n  ],\n  "tools": [{"type":"function","function":{"name":"add","description":"Adds two numbers","parameters":{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"}},"required":["a","b"]}}}],\n  "tool_choice": "auto", "temperature": 0.20, "seed": 18446744073709551615, "top_k": 40, "vendor": {"cache": true, "tags": ["x", null]}\n}\n`;
    const { cfetch, send } = fetcher(gw);
    const res = await send('chat', text);
    expect(res.status).toBe(200);
    await res.arrayBuffer();
    expect(gw.upstream!.received.at(-1)!.body).toBe(text);
    expect(lastDecision(gw)).toMatchObject({ decision: 'allow' });
    expect((await cfetch.receiptOf(res)!).policy.action).toBe('none');
    const withMail = text.replace('Adds two numbers', `Adds two numbers for ${EMAIL}`);
    expect((await send('chat', withMail)).status).toBe(200);
    expect(gw.upstream!.received.at(-1)!.body).toBe(text.replace('Adds two numbers', 'Adds two numbers for [EMAIL_1]'));
  });
});

/**
 * A model that answers with every mask token it was given, in its text and in a tool call's
 * arguments (streamed three characters at a time, so tokens are split across events).
 */
class MirrorBackend implements ModelBackend {
  readonly kind = 'test-mirror';
  models() {
    return [{ id: 'mirror-model' }];
  }
  handle(req: BackendRequest): Promise<BackendResponse> {
    const enc = new TextEncoder();
    const tokens = [...new Set(new TextDecoder().decode(req.body).match(/\[[A-Z_]+_\d+\]/g) ?? [])];
    const text = `I saw ${tokens.join(' ')}.`;
    const args = JSON.stringify({ seen: tokens });
    const chat = req.route === 'chat.completions';
    if (req.route === 'embeddings') return Promise.resolve({ status: 200, contentType: 'application/json', body: enc.encode(JSON.stringify({ object: 'list', data: [] })) });
    if (!req.stream) {
      const choice = chat ? { index: 0, message: { role: 'assistant', content: text, tool_calls: [{ id: 'call_m', type: 'function', function: { name: 'echo', arguments: args } }] }, finish_reason: 'tool_calls' } : { index: 0, text, finish_reason: 'stop' };
      return Promise.resolve({ status: 200, contentType: 'application/json', body: enc.encode(JSON.stringify({ id: 'm', object: chat ? 'chat.completion' : 'text_completion', choices: [choice] })) });
    }
    const pieces = (s: string) => Array.from({ length: Math.ceil(s.length / 3) }, (_, i) => s.slice(i * 3, i * 3 + 3));
    const chunk = (choice: unknown) => `data: ${JSON.stringify({ id: 'm', object: chat ? 'chat.completion.chunk' : 'text_completion', choices: [choice] })}\n\n`;
    const events = chat
      ? [
          ...pieces(text).map((p) => chunk({ index: 0, delta: { content: p }, finish_reason: null })),
          chunk({ index: 0, delta: { tool_calls: [{ index: 0, id: 'call_m', type: 'function', function: { name: 'echo', arguments: '' } }] }, finish_reason: null }),
          ...pieces(args).map((p) => chunk({ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: p } }] }, finish_reason: null })),
          chunk({ index: 0, delta: {}, finish_reason: 'tool_calls' }),
        ]
      : [...pieces(text).map((p) => chunk({ index: 0, text: p, finish_reason: null })), chunk({ index: 0, text: '', finish_reason: 'stop' })];
    const all = enc.encode(events.join('') + 'data: [DONE]\n\n');
    return Promise.resolve({ status: 200, contentType: 'text/event-stream', body: new Response(all).body! });
  }
}

interface Answer {
  text: string;
  args: string;
}

async function readAnswer(res: Response, stream: boolean): Promise<Answer> {
  type Fn = { arguments?: string };
  type Choice = { message?: { content?: string; tool_calls?: { function: Fn }[] }; delta?: { content?: string; tool_calls?: { function?: Fn }[] }; text?: string };
  const choices: Choice[] = stream
    ? (await res.text())
        .split('\n\n')
        .filter((e) => e.startsWith('data: {'))
        .map((e) => (JSON.parse(e.slice(6)) as { choices: Choice[] }).choices[0]!)
    : ((await res.json()) as { choices: Choice[] }).choices;
  let text = '';
  let args = '';
  for (const c of choices) {
    const m = c.message ?? c.delta;
    text += m?.content ?? c.text ?? '';
    for (const tc of m?.tool_calls ?? []) args += tc.function?.arguments ?? '';
  }
  return { text, args };
}

describe('values masked in any field are restored in the answer', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    gw = await startTestGateway({ backend: new MirrorBackend() });
  });
  afterAll(async () => {
    await gw.close();
  });

  const answered = FIELDS.filter(([, route]) => route !== 'embeddings');
  for (const stream of [false, true]) {
    it.each(answered)(`%s (${stream ? 'streamed' : 'whole'})`, async (_field, route, make) => {
      const res = await fetcher(gw).send(route, JSON.stringify({ ...make('mirror-model', EMAIL), ...(stream ? { stream: true } : {}) }));
      expect(res.status).toBe(200);
      const a = await readAnswer(res, stream);
      expect(a.text).toBe(`I saw ${EMAIL}.`);
      if (route === 'chat') expect(JSON.parse(a.args)).toEqual({ seen: [EMAIL] });
    });
  }
});
