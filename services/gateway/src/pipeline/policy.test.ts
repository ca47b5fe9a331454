// The input policy reads every string of a request body, not only message contents: each field
// of the OpenAI chat / completions / embeddings shapes (and any field the gateway does not know)
// is scanned, rewritten, counted in `request.chars`, or — for identifiers, enums and encoded
// payloads — left as is but denied when it holds PII. The forwarded body is the received text
// with only the rewritten strings replaced. The output side restores tokens in contents and in
// tool-call arguments (JSON-escaped), streams included.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, utf8 } from '@custody/core';
import { MaskVault } from '@custody/policy';
import { MAX_SSE_EVENT, applyInputPolicy, restoreJson, restoreSseStream, type InferenceRoute } from './policy.js';
import { apiKeyDigest, TenantDirectory, type TenantConfig } from './tenants.js';

const CARD = '4111 1111 1111 1111';
const EMAIL = 'alice@example.com';
const KEY = 'sk-policy-test-0001';

async function tenantWith(config: Partial<TenantConfig> = {}) {
  const dir = await TenantDirectory.create({
    id: 'p',
    version: 1,
    tenants: [{ id: 't', apiKeySha256: apiKeyDigest(KEY), pii: { defaultAction: 'redact', actions: { email: 'mask', payment_card: 'block' } }, ...config }],
  });
  return dir.authenticate(`Bearer ${KEY}`);
}

type Tenant = Awaited<ReturnType<typeof tenantWith>>;

function run(route: InferenceRoute, text: string, tenant: Tenant) {
  const body = JSON.parse(text) as Record<string, unknown>;
  const raw = utf8(text);
  const r = applyInputPolicy(route, body, raw, tenant, { model: 'm', stream: false });
  return { ...r, raw, json: body, sent: new TextDecoder().decode(r.body) };
}

function deniedCode(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return e instanceof CustodyError ? e.code : 'not a CustodyError';
  }
  return undefined;
}

const user = (content: unknown) => ({ role: 'user', content });
const chat = (extra: Record<string, unknown>) => ({ model: 'm', messages: [user('hello')], ...extra });
const tool = (fn: Record<string, unknown>) => ({ tools: [{ type: 'function', function: { name: 'pay', ...fn } }] });

/** Every field where a model (or the upstream) reads a text: [name, route, body with `v` there]. */
const FIELDS: [string, InferenceRoute, (v: string) => unknown][] = [
  ['system message content', 'chat.completions', (v) => ({ model: 'm', messages: [{ role: 'system', content: `policy: ${v}` }, user('hi')] })],
  ['developer message content', 'chat.completions', (v) => ({ model: 'm', messages: [{ role: 'developer', content: `use ${v}` }, user('hi')] })],
  ['user text part', 'chat.completions', (v) => ({ model: 'm', messages: [user([{ type: 'text', text: `part ${v}` }])] })],
  ['message name', 'chat.completions', (v) => ({ model: 'm', messages: [{ role: 'user', name: v, content: 'hi' }] })],
  ['assistant tool-call arguments', 'chat.completions', (v) => chat({ messages: [user('pay'), { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'pay', arguments: JSON.stringify({ card: v, note: 'x' }) } }] }, { role: 'tool', tool_call_id: 'call_1', content: 'ok' }] })],
  ['assistant tool-call function name', 'chat.completions', (v) => chat({ messages: [user('pay'), { role: 'assistant', tool_calls: [{ id: 'call_1', type: 'function', function: { name: `pay ${v}`, arguments: '{}' } }] }] })],
  ['legacy function_call arguments', 'chat.completions', (v) => chat({ messages: [user('pay'), { role: 'assistant', content: null, function_call: { name: 'pay', arguments: JSON.stringify({ to: v }) } }] })],
  ['tool message content', 'chat.completions', (v) => chat({ messages: [user('look up'), { role: 'tool', tool_call_id: 'call_1', content: `found ${v}` }] })],
  ['tool message content parts', 'chat.completions', (v) => chat({ messages: [user('look up'), { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: `found ${v}` }] }] })],
  ['assistant refusal', 'chat.completions', (v) => chat({ messages: [user('x'), { role: 'assistant', content: null, refusal: `no, ${v}` }, user('y')] })],
  ['tool description', 'chat.completions', (v) => chat(tool({ description: `always pay with ${v}`, parameters: { type: 'object' } }))],
  ['tool parameter description', 'chat.completions', (v) => chat(tool({ parameters: { type: 'object', properties: { card: { type: 'string', description: `e.g. ${v}` } } } }))],
  ['tool parameter enum value', 'chat.completions', (v) => chat(tool({ parameters: { type: 'object', properties: { card: { type: 'string', enum: [v] } } } }))],
  ['tool parameter default', 'chat.completions', (v) => chat(tool({ parameters: { type: 'object', properties: { card: { type: 'string', default: v } } } }))],
  ['tool parameter property name', 'chat.completions', (v) => chat(tool({ parameters: { type: 'object', properties: { [v]: { type: 'string' } }, required: [v] } }))],
  ['tool name', 'chat.completions', (v) => chat({ tools: [{ type: 'function', function: { name: `pay ${v}` } }], tool_choice: { type: 'function', function: { name: `pay ${v}` } } })],
  ['legacy functions description', 'chat.completions', (v) => chat({ functions: [{ name: 'pay', description: `pay ${v}`, parameters: {} }] })],
  ['structured output schema', 'chat.completions', (v) => chat({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object', description: `about ${v}` } } } })],
  ['predicted output', 'chat.completions', (v) => chat({ prediction: { type: 'content', content: `draft for ${v}` } })],
  ['stop sequence', 'chat.completions', (v) => chat({ stop: [v] })],
  ['user field', 'chat.completions', (v) => chat({ user: v })],
  ['metadata value', 'chat.completions', (v) => chat({ metadata: { customer: v } })],
  ['metadata member name', 'chat.completions', (v) => chat({ metadata: { [v]: 'vip' } })],
  ['unknown top-level field', 'chat.completions', (v) => chat({ system: `context: ${v}` })],
  ['unknown nested field in a message', 'chat.completions', (v) => ({ model: 'm', messages: [{ role: 'user', content: 'hi', context: { extra: [v] } }] })],
  ['unknown field in a content part', 'chat.completions', (v) => ({ model: 'm', messages: [user([{ type: 'text', text: 'hi', note: v }])] })],
  ['image URL (not a data: URL)', 'chat.completions', (v) => ({ model: 'm', messages: [user([{ type: 'image_url', image_url: { url: `https://img.example/?q=${v}` } }])] })],
  ['completions prompt', 'completions', (v) => ({ model: 'm', prompt: `say ${v}` })],
  ['completions prompt list', 'completions', (v) => ({ model: 'm', prompt: ['a', `say ${v}`] })],
  ['completions suffix', 'completions', (v) => ({ model: 'm', prompt: 'a', suffix: `end ${v}` })],
  ['completions unknown field', 'completions', (v) => ({ model: 'm', prompt: 'a', grammar: `root ::= "${v}"` })],
  ['embeddings input', 'embeddings', (v) => ({ model: 'm', input: `text ${v}` })],
  ['embeddings input list', 'embeddings', (v) => ({ model: 'm', input: ['a', `text ${v}`] })],
  ['embeddings unknown field', 'embeddings', (v) => ({ model: 'm', input: 'a', instruction: v })],
];

/** Every string and member name of a JSON value. */
function stringsOf(v: unknown): string[] {
  if (typeof v === 'string') return [v];
  if (Array.isArray(v)) return v.flatMap(stringsOf);
  if (typeof v === 'object' && v !== null) return Object.entries(v).flatMap(([k, x]) => [k, ...stringsOf(x)]);
  return [];
}

describe('input policy covers every text of the request', () => {
  it.each(FIELDS)('%s: a card is blocked, an e-mail is masked', async (_name, route, make) => {
    const tenant = await tenantWith();
    expect(deniedCode(() => run(route, JSON.stringify(make(CARD)), tenant))).toBe('ERR_POLICY_DENIED');
    const r = run(route, JSON.stringify(make(EMAIL)), tenant);
    expect(r.changed).toBe(true);
    expect(r.sent).not.toContain(EMAIL);
    expect(r.sent).toContain('[EMAIL_1]');
    expect(r.action).toBe('mask');
    expect(r.findings).toContainEqual(expect.objectContaining({ category: 'email', action: 'mask' }));
    // The forwarded bytes are JSON, and the object the backend reads is the forwarded body.
    const sent = JSON.parse(r.sent) as unknown;
    expect(r.json).toEqual(sent);
    // JSON inside strings (tool-call arguments) stays JSON.
    for (const s of stringsOf(sent)) if (s.startsWith('{')) expect(() => JSON.parse(s) as unknown).not.toThrow();
    // The same value, as escaped JSON text (\u0040 for @), is found all the same.
    const escaped = JSON.stringify(make(EMAIL)).replaceAll('@', '\\u0040');
    expect(run(route, escaped, tenant).sent).not.toMatch(/alice(@|\\u0040)example/);
  });

  it('tool-call arguments stay valid JSON: values, names and numbers rewritten in place', async () => {
    const tenant = await tenantWith({ pii: { defaultAction: 'redact', actions: { email: 'mask' } } });
    const args = `{ "to": "${EMAIL}", "${EMAIL}": [1, 2.5, {"deep": "mail ${EMAIL} now"}], "card": 4111111111111111, "n": 3, "quote": "a \\"b\\" c" }`;
    const body = chat({ messages: [user('x'), { role: 'assistant', tool_calls: [{ id: 'call_9', type: 'function', function: { name: 'send', arguments: args } }] }] });
    const r = run('chat.completions', JSON.stringify(body), tenant);
    const sentArgs = ((r.json.messages as { tool_calls?: { function: { arguments: string } }[] }[])[1]!.tool_calls![0]!.function.arguments);
    expect(sentArgs).toBe(args.replaceAll(EMAIL, '[EMAIL_1]').replace('4111111111111111', '"[PAYMENT_CARD]"'));
    expect(JSON.parse(sentArgs)).toEqual({ to: '[EMAIL_1]', '[EMAIL_1]': [1, 2.5, { deep: 'mail [EMAIL_1] now' }], card: '[PAYMENT_CARD]', n: 3, quote: 'a "b" c' });
    // Arguments that are not JSON are plain text to the model.
    const broken = chat({ messages: [user('x'), { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: `{"to": "${EMAIL}"` } }] }] });
    expect(run('chat.completions', JSON.stringify(broken), tenant).sent).toContain('{\\"to\\": \\"[EMAIL_1]\\"');
  });

  it('enums and encoded payloads are never rewritten, and deny when they hold PII', async () => {
    const tenant = await tenantWith({ pii: { defaultAction: 'redact' } });
    const ids = chat({
      messages: [user('x'), { role: 'assistant', tool_calls: [{ id: 'call_1234567', type: 'function', function: { name: 'f', arguments: '{}' } }] }, { role: 'tool', tool_call_id: 'call_1234567', content: 'ok' }],
      tool_choice: 'auto',
      response_format: { type: 'json_object' },
      reasoning_effort: 'low',
    });
    const clean = run('chat.completions', JSON.stringify(ids), tenant);
    expect(clean.body).toBe(clean.raw);
    const places: [string, InferenceRoute, (v: string) => unknown, string[]?][] = [
      ['role', 'chat.completions', (v) => ({ model: 'm', messages: [{ role: v, content: 'hi' }] })],
      ['content part type', 'chat.completions', (v) => ({ model: 'm', messages: [user([{ type: v, text: 'hi' }])] })],
      ['tool_choice', 'chat.completions', (v) => chat({ tool_choice: v })],
      ['encoding_format', 'embeddings', (v) => ({ model: 'm', input: 'a', encoding_format: v })],
      // Digits are base64 too (an e-mail is not: there it is text, and masked).
      ['audio data', 'chat.completions', (v) => ({ model: 'm', messages: [user([{ type: 'input_audio', input_audio: { data: v.replaceAll(' ', ''), format: 'wav' } }])] }), [CARD]],
    ];
    for (const [name, route, make, values] of places) {
      for (const v of values ?? [EMAIL, CARD]) {
        let err: unknown;
        try {
          run(route, JSON.stringify(make(v)), tenant);
        } catch (e) {
          err = e;
        }
        expect(err, name).toMatchObject({ code: 'ERR_POLICY_DENIED' });
        expect((err as CustodyError).detail?.categories, name).toBe(v === EMAIL ? 'email' : 'payment_card');
      }
    }
  });

  it('a literal mask token anywhere in the request (also as JSON escapes) is never issued, so restoring leaves it literal', async () => {
    const tenant = await tenantWith({});
    for (const literal of ['[EMAIL_1]', '\\u005bEMAIL_1\\u005d']) {
      const text = `{"model":"m","messages":[{"role":"user","content":"mail bob@x.com"},{"role":"user","content":"I typed ${literal} myself"}]}`;
      const r = run('chat.completions', text, tenant);
      expect(r.sent).toContain('mail [EMAIL_2]');
      expect(r.vault.restore('[EMAIL_1] and [EMAIL_2]')).toBe('[EMAIL_1] and bob@x.com');
    }
  });

  it('a field it does not rewrite is read composed: a name written with combining accents still denies', async () => {
    const tenant = await tenantWith({ pii: { defaultAction: 'redact' } });
    const nfd = 'Patient: Ángel'.normalize('NFD');
    expect(nfd).not.toBe('Patient: Ángel');
    expect(() => run('chat.completions', JSON.stringify(chat({ tool_choice: nfd })), tenant)).toThrow(expect.objectContaining({ code: 'ERR_POLICY_DENIED', detail: { categories: 'person_name' } }));
    // As text, the same value is masked whole.
    expect(run('chat.completions', JSON.stringify(chat({ messages: [user(nfd)] })), tenant).sent).toContain('Patient: [PERSON_NAME]');
  });

  it('opaque identifiers pass as they are (server-made ids hold card-like digit runs); anything else there is text', async () => {
    const tenant = await tenantWith();
    const conversation = (id: string, userId: string) =>
      chat({ user: userId, messages: [user('x'), { role: 'assistant', tool_calls: [{ id, type: 'function', function: { name: 'f', arguments: '{}' } }] }, { role: 'tool', tool_call_id: id, content: 'ok' }] });
    // A vLLM id that reads as a payment card, a UUID-shaped one that reads as a phone number.
    for (const [id, category] of [['chatcmpl-tool-237b87305266451581f863e764bd7da0', 'payment_card'], ['call_7e2e50d8-7450-4652-9767-323201e04dd2', 'phone']] as const) {
      expect(tenant.pii.detect(id).map((d) => d.category)).toEqual([category]);
      const r = run('chat.completions', JSON.stringify(conversation(id, '1234567890123456789')), tenant);
      expect(r.body).toBe(r.raw);
    }
    // An e-mail is no identifier: it is masked, with the same token wherever it appears.
    const r = run('chat.completions', JSON.stringify(conversation(EMAIL, EMAIL)), tenant);
    expect(r.json).toMatchObject({ user: '[EMAIL_1]', messages: [{}, { tool_calls: [{ id: '[EMAIL_1]' }] }, { tool_call_id: '[EMAIL_1]' }] });
    expect(deniedCode(() => run('chat.completions', JSON.stringify(conversation(CARD, 'u1')), tenant))).toBe('ERR_POLICY_DENIED');
  });

  it('base64 images pass untouched and uncounted; the model id is not scanned', async () => {
    const tenant = await tenantWith({ rules: [{ id: 'size', expr: 'request.chars == 2' }] });
    const png = 'data:image/png;base64,' + Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 7919) % 256)).toString('base64');
    const body = { model: 'm', messages: [user([{ type: 'text', text: 'hi' }, { type: 'image_url', image_url: { url: png, detail: 'high' } }])] };
    const r = run('chat.completions', JSON.stringify(body), tenant);
    expect(r.body).toBe(r.raw);
    const dir = await TenantDirectory.create({ id: 'p', version: 1, tenants: [{ id: 't', apiKeySha256: apiKeyDigest(KEY), pii: { defaultAction: 'block' } }] });
    const strict = dir.authenticate(`Bearer ${KEY}`);
    const named = { model: 'Dr John Smith 555-123-4567', messages: [user('hi')] };
    const raw = utf8(JSON.stringify(named));
    expect(applyInputPolicy('chat.completions', named, raw, strict, { model: named.model, stream: false }).body).toBe(raw);
  });

  it('numbers: parameters and token ids are not text; a number anywhere else is', async () => {
    const tenant = await tenantWith();
    // A random seed is Luhn-valid one time in ten.
    const seed = 4111111111111111;
    const ok = run('chat.completions', JSON.stringify(chat({ seed, max_tokens: 20, temperature: 0.5, logit_bias: { '50256': -100 } })), tenant);
    expect(ok.body).toBe(ok.raw);
    const tokens = run('completions', JSON.stringify({ model: 'm', prompt: [[seed, 2], [3]] }), tenant);
    expect(tokens.body).toBe(tokens.raw);
    const ids = run('embeddings', JSON.stringify({ model: 'm', input: [seed, 1] }), tenant);
    expect(ids.body).toBe(ids.raw);
    for (const body of [chat({ account: seed }), chat(tool({ parameters: { type: 'object', properties: { card: { type: 'integer', enum: [seed] } } } })), chat({ seed: `${seed}` })]) {
      expect(deniedCode(() => run('chat.completions', JSON.stringify(body), tenant))).toBe('ERR_POLICY_DENIED');
    }
    // Digits beyond 2^53 are read from the text: the parsed number (4000000000000000000) is not Luhn-valid.
    expect(deniedCode(() => run('chat.completions', '{"model":"m","messages":[],"x":4000000000000000006}', tenant))).toBe('ERR_POLICY_DENIED');
  });

  it('request.chars counts every scanned text (member names of free objects included), not identifiers', async () => {
    const body = chat({ messages: [{ role: 'user', name: 'bob', content: 'hello' }], tools: [{ type: 'function', function: { name: 'f', description: 'abc', parameters: { q: 'xy' } } }], tool_choice: 'auto' });
    // hello (5) + bob (3) + f (1) + abc (3) + q (1) + xy (2)
    const exact = await tenantWith({ rules: [{ id: 'exact', expr: 'request.chars == 15' }] });
    expect(run('chat.completions', JSON.stringify(body), exact).action).toBe('none');
    const small = await tenantWith({ rules: [{ id: 'small', expr: 'request.chars < 100' }] });
    const long = chat(tool({ description: 'x'.repeat(200) }));
    expect(deniedCode(() => run('chat.completions', JSON.stringify(long), small))).toBe('ERR_POLICY_DENIED');
  });

  it('refuses a member given twice (JSON.parse keeps the last, an upstream may keep the first) and rewrites that would merge two members', async () => {
    const tenant = await tenantWith();
    expect(deniedCode(() => run('chat.completions', `{"model":"m","messages":[{"role":"user","content":"${CARD}","content":"hi"}]}`, tenant))).toBe('ERR_POLICY_DENIED');
    expect(deniedCode(() => run('chat.completions', `{"model":"m","messages":[{"role":"user","content":"a","content":"hi"}]}`, tenant))).toBe('ERR_INPUT_MALFORMED');
    expect(deniedCode(() => run('chat.completions', '{"model":"other","model":"m","messages":[]}', tenant))).toBe('ERR_INPUT_MALFORMED');
    // Two redacted member names become the same "[PHONE]": refused.
    expect(deniedCode(() => run('chat.completions', JSON.stringify(chat({ metadata: { '555-010-4477': 1, '555-010-9999': 2 } })), tenant))).toBe('ERR_POLICY_DENIED');
    // A member named like a mask token is never merged with a masked one: the token is not issued.
    expect(run('chat.completions', JSON.stringify(chat({ metadata: { [EMAIL]: 1, '[EMAIL_1]': 2 } })), tenant).sent).toContain('"[EMAIL_2]":1,"[EMAIL_1]":2');
    // Inside tool-call arguments (model output, read as text) a repeated name is only text.
    const args = `{"a":"${EMAIL}","a":"x"}`;
    const r = run('chat.completions', JSON.stringify(chat({ messages: [user('x'), { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: args } }] }] })), tenant);
    expect(r.sent).toContain('{\\"a\\":\\"[EMAIL_1]\\",\\"a\\":\\"x\\"}');
  });

  it('forwards the received bytes when nothing is found, and otherwise only the rewritten strings change', async () => {
    const tenant = await tenantWith();
    const text = `{ "model" : "m",\n  "messages": [ {"role":"user","content":"caf\\u00e9 \\ud83d\\ude00 1.50"},\n {"role":"assistant","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{ \\"a\\" : 1.0e3 }"}}]} ],\n  "tools":[{"type":"function","function":{"name":"f","description":"d","parameters":{"type":"object","properties":{"a":{"type":"number"}}}}}],\n  "temperature": 0.70, "seed": 12345678901234567890, "vendor_extra": {"k": [true, null, -0]} }\n`;
    const r = run('chat.completions', text, tenant);
    expect(r.changed).toBe(false);
    expect(r.body).toBe(r.raw);
    const withMail = text.replace('"d"', `"mail ${EMAIL}"`);
    const m = run('chat.completions', withMail, tenant);
    expect(m.sent).toBe(text.replace('"d"', '"mail [EMAIL_1]"'));
  });

  it('keeps a "__proto__" member a member, and bounds nesting', async () => {
    const tenant = await tenantWith();
    const r = run('chat.completions', `{"model":"m","messages":[],"__proto__":{"x":"${EMAIL}"}}`, tenant);
    expect(Object.getPrototypeOf(r.json)).toBe(Object.prototype);
    expect(Object.hasOwn(r.json, '__proto__')).toBe(true);
    expect(r.sent).toBe('{"model":"m","messages":[],"__proto__":{"x":"[EMAIL_1]"}}');
    const deep = `{"model":"m","messages":[],"x":${'['.repeat(5000)}${']'.repeat(5000)}}`;
    expect(deniedCode(() => run('chat.completions', deep, tenant))).toBe('ERR_INPUT_MALFORMED');
  });

  it('property: random extra fields never carry an e-mail through, and the forwarded body is the object the backend reads', async () => {
    const tenant = await tenantWith({ pii: { defaultAction: 'mask' } });
    const leaf = fc.oneof(fc.constantFrom(EMAIL, `to ${EMAIL}!`, 'plain', ''), fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean(), fc.constant(null));
    const { value } = fc.letrec((tie) => ({
      value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(fc.oneof(fc.constantFrom(EMAIL, 'k', 'type', 'description'), fc.string()), tie('value'), { maxKeys: 4 })),
    }));
    fc.assert(
      fc.property(value, value, fc.constantFrom(0, 2), (extra, schema, indent) => {
        const body = chat({ extra, tools: [{ type: 'function', function: { name: 'f', parameters: schema } }], messages: [user('hi'), { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: JSON.stringify(extra) } }] }] });
        const text = JSON.stringify(body, null, indent);
        let r: ReturnType<typeof run>;
        try {
          r = run('chat.completions', text, tenant);
        } catch (e) {
          // Only a rewrite that would merge two members may refuse.
          expect(e).toMatchObject({ code: 'ERR_POLICY_DENIED' });
          return;
        }
        expect(r.sent.includes(EMAIL)).toBe(false);
        expect(r.json).toEqual(JSON.parse(r.sent));
        if (!r.changed) expect(r.sent).toBe(text);
        const args = (r.json.messages as { tool_calls?: { function: { arguments: string } }[] }[])[1]!.tool_calls![0]!.function.arguments;
        expect(() => JSON.parse(args) as unknown).not.toThrow();
      }),
      { numRuns: 300 },
    );
  });
});

async function runStream(chunks: string[], vault: MaskVault): Promise<string> {
  const src = new ReadableStream<Uint8Array>({
    start(c) {
      for (const x of chunks) c.enqueue(utf8(x));
      c.close();
    },
  });
  return new Response(src.pipeThrough(restoreSseStream('chat.completions', vault))).text();
}

const events = (sse: string) => sse.split('\n\n').filter((e) => e.startsWith('data: {')).map((e) => JSON.parse(e.slice(6)) as { choices: { index: number; delta: { content?: string; tool_calls?: { index: number; function?: { name?: string; arguments?: string } }[] } }[] });

describe('output policy restores masked values in tool calls', () => {
  const vault = new MaskVault();
  const email = vault.tokenFor('email', EMAIL);
  const quoted = vault.tokenFor('secret', 'say "hi" \\ there');

  it('in a whole response: contents, tool-call names and arguments (JSON-escaped)', () => {
    const res = { choices: [{ index: 0, message: { role: 'assistant', content: `to ${email}`, tool_calls: [{ id: 'c', type: 'function', function: { name: 'send', arguments: JSON.stringify({ to: email, text: quoted }) } }] }, finish_reason: 'tool_calls' }] };
    const out = JSON.parse(new TextDecoder().decode(restoreJson('chat.completions', utf8(JSON.stringify(res)), vault))) as typeof res;
    expect(out.choices[0]!.message.content).toBe(`to ${EMAIL}`);
    expect(JSON.parse(out.choices[0]!.message.tool_calls[0]!.function.arguments)).toEqual({ to: EMAIL, text: 'say "hi" \\ there' });
  });

  it('in a stream: a token split across argument deltas is held back, per tool call, and flushed at the finish', async () => {
    const ev = (choice: unknown) => `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [choice] })}\n\n`;
    const args = JSON.stringify({ to: email, text: quoted });
    const cut = args.indexOf(email) + 4;
    const tail = args.indexOf(quoted) + 3;
    const sse = [
      ev({ index: 0, delta: { role: 'assistant', tool_calls: [{ index: 0, id: 'c0', type: 'function', function: { name: 'send', arguments: '' } }] }, finish_reason: null }),
      ev({ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: args.slice(0, cut) } }] }, finish_reason: null }),
      ev({ index: 0, delta: { tool_calls: [{ index: 1, id: 'c1', type: 'function', function: { name: 'log', arguments: `{"who":"${email.slice(0, 3)}` } }] }, finish_reason: null }),
      ev({ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: args.slice(cut, tail) } }] }, finish_reason: null }),
      ev({ index: 0, delta: { tool_calls: [{ index: 1, function: { arguments: `${email.slice(3)}","tag":"[X` } }] }, finish_reason: null }),
      ev({ index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: args.slice(tail) } }] }, finish_reason: null }),
      ev({ index: 0, delta: {}, finish_reason: 'tool_calls' }),
      'data: [DONE]\n\n',
    ].join('');
    const out = await runStream([sse.slice(0, 50), sse.slice(50, 333), sse.slice(333)], vault);
    const byCall = new Map<number, string>();
    for (const e of events(out)) for (const tc of e.choices[0]!.delta.tool_calls ?? []) byCall.set(tc.index, (byCall.get(tc.index) ?? '') + (tc.function?.arguments ?? ''));
    expect(JSON.parse(byCall.get(0)!)).toEqual({ to: EMAIL, text: 'say "hi" \\ there' });
    expect(byCall.get(1)).toBe(`{"who":"${EMAIL}","tag":"[X`);
    // What looked like the start of a token is held back until the choice finishes.
    expect(events(out).at(-1)!.choices[0]!.delta).toEqual({ tool_calls: [{ index: 1, function: { arguments: '[X' } }] });
    expect(out).not.toContain('[EMAIL_1]');
  });

  it('in a stream: tails still held at [DONE] come out in one event per choice', async () => {
    const ev = (choice: unknown) => `data: ${JSON.stringify({ choices: [choice] })}\n\n`;
    const out = await runStream([ev({ index: 0, delta: { content: 'a [EMA', tool_calls: [{ index: 2, function: { arguments: '["[EMAIL' } }] }, finish_reason: null }) + 'data: [DONE]\n\n'], vault);
    const last = events(out).at(-1)!;
    expect(last.choices[0]!.delta).toEqual({ content: '[EMA', tool_calls: [{ index: 2, function: { arguments: '[EMAIL' } }] });
    expect(out.trimEnd().endsWith('data: [DONE]')).toBe(true);
  });
});

describe('stream events are framed alike however the stream is cut', () => {
  const vault = new MaskVault();
  const email = vault.tokenFor('email', EMAIL);
  const ev = (content: string, eol: string) => `data: ${JSON.stringify({ object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content }, finish_reason: null }] })}${eol}${eol}`;

  it('LF, CRLF and CR line ends, comments and multi-line data, cut at every position, give the same events as the whole', async () => {
    const sse = [ev(`to ${email} `, '\n'), ': keep-alive\r\n\r\n', ev('and ', '\r\n'), ev(`${email}!`, '\r'), `data: {"object":"chat.completion.chunk",\ndata: "choices":[{"index":0,"delta":{"content":"${email}"},"finish_reason":"stop"}]}\n\n`, 'data: [DONE]\r\n\r\n'].join('');
    const whole = await runStream([sse], vault);
    expect(events(whole).map((e) => e.choices[0]!.delta.content).join('')).toBe(`to ${EMAIL} and ${EMAIL}!${EMAIL}`);
    expect(whole).toContain(': keep-alive\n\n');
    expect(whole.endsWith('data: [DONE]\n\n')).toBe(true);
    for (let at = 0; at <= sse.length; at++) expect(await runStream([sse.slice(0, at), sse.slice(at)], vault)).toBe(whole);
    await fc.assert(
      fc.asyncProperty(fc.uniqueArray(fc.integer({ min: 1, max: sse.length - 1 }), { maxLength: 40 }), async (cuts) => {
        const sorted = [0, ...cuts.sort((a, b) => a - b), sse.length];
        const chunks = sorted.slice(1).map((end, i) => sse.slice(sorted[i], end));
        expect(await runStream(chunks, vault)).toBe(whole);
      }),
      { numRuns: 200 },
    );
  });

  it('an event that grows past MAX_SSE_EVENT fails the stream with ERR_GATEWAY_BACKEND; one just under it passes', async () => {
    const piece = 'x'.repeat(64 * 1024);
    const chunks = (n: number) => [`data: {"object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"${email}`, ...Array.from({ length: n }, () => piece)];
    const over = Math.ceil(MAX_SSE_EVENT / piece.length) + 1;
    await expect(runStream(chunks(over), vault)).rejects.toMatchObject({ code: 'ERR_GATEWAY_BACKEND', detail: { max: MAX_SSE_EVENT } });
    // Single LFs are line ends, not event ends: many of them still make one event.
    const lines = Array.from({ length: over }, () => `data: ${piece}\n`);
    await expect(runStream(lines, vault)).rejects.toMatchObject({ code: 'ERR_GATEWAY_BACKEND' });
    const under = await runStream([...chunks(Math.floor(MAX_SSE_EVENT / piece.length) - 2), '"},"finish_reason":"stop"}]}\n\n'], vault);
    expect(events(under)[0]!.choices[0]!.delta.content!.startsWith(EMAIL)).toBe(true);
  });
});
