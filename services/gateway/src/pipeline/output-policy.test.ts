// The output policy leaves nothing of the model's text unscanned, whole or streamed: tool-call
// arguments are scanned as the JSON they are (and stay valid JSON), reasoning and other text
// members are scanned, token log-probabilities are dropped, SSE is read as the format defines it
// and data the gateway cannot read is dropped, answers of no known shape are scanned whole.
// (Found by the review of the first output policy; each case leaked or broke before.)
import { describe, expect, it } from 'vitest';
import { MaskVault, PiiEngine, type PiiFinding } from '@custody/policy';
import { restoreJson, restoreSseStream, type OutputScan } from './policy.js';

const CARD = '4111 1111 1111 1111';
const enc = new TextEncoder();
const dec = new TextDecoder();

function scan(engine = new PiiEngine({ defaultAction: 'redact' })): OutputScan & { found: PiiFinding[] } {
  const found: PiiFinding[] = [];
  return { engine, found, onFinding: (f) => found.push(f) };
}

async function sse(events: string[], output?: OutputScan, route: 'chat.completions' | 'completions' = 'chat.completions', vault = new MaskVault()): Promise<string> {
  let i = 0;
  const src = new ReadableStream<Uint8Array>({ pull: (c) => (i < events.length ? c.enqueue(enc.encode(events[i++])) : c.close()) });
  return new Response(src.pipeThrough(restoreSseStream(route, vault, output))).text();
}
const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const json = (o: unknown) => enc.encode(JSON.stringify(o));
const toolCallAnswer = (args: string) => ({ choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'send', arguments: args } }] }, finish_reason: 'tool_calls' }] });
const argsOf = (bytes: Uint8Array) => (JSON.parse(dec.decode(bytes)) as { choices: { message: { tool_calls: { function: { arguments: string } }[] } }[] }).choices[0]!.message.tool_calls[0]!.function.arguments;
/** Every data object of a stream. */
const datas = (raw: string) => raw.split('\n').filter((l) => l.startsWith('data: {')).map((l) => JSON.parse(l.slice(6)) as { choices?: Record<string, unknown>[] } & Record<string, unknown>);
const deltas = (raw: string, key: string) => datas(raw).map((o) => ((o.choices?.[0]?.delta as Record<string, unknown> | undefined)?.[key] as string | undefined) ?? '');

describe('tool-call arguments', () => {
  const body = 'Contact:\nann@example.com. Dear\nJohn Smith,\nIBAN:\nDE89370400440532013000';
  it('whole: values are scanned decoded, a number becomes a string, and the arguments stay JSON', () => {
    const out = JSON.parse(argsOf(restoreJson('chat.completions', json(toolCallAnswer(JSON.stringify({ body, card: 4111111111111111 }))), new MaskVault(), scan()))) as { body: string; card: string };
    expect(out.body).toBe('Contact:\n[EMAIL]. Dear\n[PERSON_NAME],\nIBAN:\n[IBAN]');
    expect(out.card).toBe('[PAYMENT_CARD]');
  });

  it('streamed: held until the call ends, then the same; the caller\'s masked values are restored JSON-escaped', async () => {
    const vault = new MaskVault();
    const token = vault.tokenFor('email', 'me"quoted"@example.com');
    const args = JSON.stringify({ body, cc: token });
    const events = (args.match(/.{1,4}/gs) ?? []).map((p, n) => ev({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, ...(n === 0 ? { id: 'c1', type: 'function' } : {}), function: { ...(n === 0 ? { name: 'send' } : {}), arguments: p } }] }, finish_reason: null }] }));
    events.push(ev({ choices: [{ index: 0, delta: {}, finish_reason: 'tool_calls' }] }), 'data: [DONE]\n\n');
    const raw = await sse(events, scan(), 'chat.completions', vault);
    let joined = '';
    for (const o of datas(raw)) for (const c of ((o.choices?.[0]?.delta as { tool_calls?: { function?: { arguments?: string } }[] } | undefined)?.tool_calls ?? [])) joined += c.function?.arguments ?? '';
    expect(JSON.parse(joined)).toEqual({ body: 'Contact:\n[EMAIL]. Dear\n[PERSON_NAME],\nIBAN:\n[IBAN]', cc: 'me"quoted"@example.com' });
  });
});

describe('model text outside content', () => {
  it('token log-probabilities are dropped, whole and streamed, chat and completions', async () => {
    const tokens = ['Card', ' 4111', ' 1111', ' 1111', ' 1111'];
    const chat = { choices: [{ index: 0, message: { role: 'assistant', content: tokens.join('') }, logprobs: { content: tokens.map((t) => ({ token: t, logprob: -0.1, bytes: [...enc.encode(t)], top_logprobs: [] })) }, finish_reason: 'stop' }] };
    const out = dec.decode(restoreJson('chat.completions', json(chat), new MaskVault(), scan()));
    expect(out).toContain('"content":"Card [PAYMENT_CARD]"');
    expect(out).not.toContain('1111');
    const comp = { choices: [{ index: 0, text: tokens.join(''), logprobs: { tokens, token_logprobs: tokens.map(() => -0.1), top_logprobs: null, text_offset: [] }, finish_reason: 'stop' }] };
    expect(dec.decode(restoreJson('completions', json(comp), new MaskVault(), scan()))).not.toContain('1111');
    const events = [...tokens, ...Array.from({ length: 40 }, (_, i) => ` w${i}`)].map((t) => ev({ choices: [{ index: 0, delta: { content: t }, logprobs: { content: [{ token: t, logprob: -0.1, bytes: [...enc.encode(t)], top_logprobs: [] }] }, finish_reason: null }] }));
    events.push(ev({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), 'data: [DONE]\n\n');
    const raw = await sse(events, scan());
    expect(deltas(raw, 'content').join('')).toContain('Card [PAYMENT_CARD]');
    expect(raw).not.toContain('1111');
  });

  it('reasoning_content (and any other text member of a message or delta), whole and streamed', async () => {
    const whole = { choices: [{ index: 0, message: { role: 'assistant', content: 'done', reasoning_content: `The card is ${CARD}.`, thinking: `SSN 123-45-6789` }, finish_reason: 'stop' }] };
    const out = dec.decode(restoreJson('chat.completions', json(whole), new MaskVault(), scan()));
    expect(out).not.toContain(CARD);
    expect(out).not.toContain('123-45-6789');
    const raw = await sse([ev({ choices: [{ index: 0, delta: { reasoning_content: `The card is ${CARD}.` }, finish_reason: null }] }), ev({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), 'data: [DONE]\n\n'], scan());
    expect(raw).not.toContain('1111');
    expect(deltas(raw, 'reasoning_content').join('')).toBe('The card is [PAYMENT_CARD].');
  });
});

describe('SSE as the format defines it', () => {
  const choice = (content: string) => ({ choices: [{ index: 0, delta: { content }, finish_reason: null }] });
  const end = [ev({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), 'data: [DONE]\n\n'];
  it('an id: or event: line is kept and its data rewritten; a payload over two data: lines is one payload; CR and CRLF line ends', async () => {
    const raw = await sse(
      [
        `id: 1\nevent: message\ndata: ${JSON.stringify(choice(`card ${CARD} `))}\n\n`,
        `data: {"choices":[{"index":0,"delta":{"content":"ssn 123-45-6789 "},\ndata: "finish_reason":null}]}\n\n`,
        `data: ${JSON.stringify(choice('mail ann@example.com '))}\r\rdata: ${JSON.stringify(choice('ok.'))}\r\n\r\n`,
        ...end,
      ],
      scan(),
    );
    expect(raw).toContain('id: 1\nevent: message\ndata: ');
    expect(raw).not.toMatch(/1111|6789|ann@/);
    expect(deltas(raw, 'content').join('')).toBe('card [PAYMENT_CARD] ssn [NATIONAL_ID] mail [EMAIL] ok.');
  });

  it('data that is not a JSON object is dropped under an output policy (kept without one); other objects are scanned', async () => {
    const events = [`data: raw text with ${CARD}\n\n`, ev({ error: { message: `failed on ${CARD}` } }), ev(choice('fine')), ...end];
    const raw = await sse(events, scan());
    expect(raw).not.toContain('1111');
    expect(raw).toContain('"message":"failed on [PAYMENT_CARD]"');
    expect(deltas(raw, 'content').join('')).toBe('fine');
    expect(await sse(events)).toContain(`data: raw text with ${CARD}`);
  });

  it('no delta ends inside a surrogate pair', async () => {
    const events = Array.from({ length: 100 }, () => ev(choice('\u{1F600}a')));
    const raw = await sse([...events, ...end], scan());
    const parts = deltas(raw, 'content');
    for (const p of parts) expect(p).not.toMatch(/[\uD800-\uDBFF]$|^[\uDC00-\uDFFF]/);
    expect(parts.join('')).toBe('\u{1F600}a'.repeat(100));
  });
});

describe('answers of no known shape', () => {
  it('a text/plain or non-completion JSON answer is scanned whole under an output policy, and passed as is without one', () => {
    const text = enc.encode(`Your card ${CARD} is on file.`);
    expect(dec.decode(restoreJson('chat.completions', text, new MaskVault(), scan()))).toBe('Your card [PAYMENT_CARD] is on file.');
    const other = json({ result: { note: `card ${CARD}` }, id: 'x' });
    expect(dec.decode(restoreJson('chat.completions', other, new MaskVault(), scan()))).toBe('{"result":{"note":"card [PAYMENT_CARD]"},"id":"x"}');
    expect(restoreJson('chat.completions', text, (() => { const v = new MaskVault(); v.tokenFor('email', 'a@b.example'); return v; })())).toBe(text);
  });
});

// The second review: places outside the known text members.
describe('nothing outside the answer structure passes unscanned', () => {
  const SSN = '123-45-6789';
  const wholeOut = (message: Record<string, unknown>, extra: Record<string, unknown> = {}, top: Record<string, unknown> = {}) =>
    dec.decode(restoreJson('chat.completions', json({ id: 'c1', ...top, choices: [{ index: 0, message, finish_reason: 'stop', ...extra }] }), new MaskVault(), scan()));
  const cases: [string, () => string][] = [
    ['a tool-call function name', () => wholeOut({ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'lookup_4111111111111111', arguments: '{}' } }] })],
    ['content parts of any type (refusal, nested thinking)', () => wholeOut({ role: 'assistant', content: [{ type: 'refusal', refusal: `card ${CARD}` }, { type: 'thinking', thinking: [{ type: 'text', text: `ssn ${SSN}` }] }] })],
    ['an object member of the message (audio.transcript)', () => wholeOut({ role: 'assistant', content: 'ok', audio: { id: 'a1', transcript: `card ${CARD}` } })],
    ['a list of strings in the message', () => wholeOut({ role: 'assistant', content: 'ok', notes: [`card ${CARD}`, `ssn ${SSN}`] })],
    ['a choice member beside message, and a top-level member beside choices', () => wholeOut({ role: 'assistant', content: 'ok' }, { text: `card ${CARD}` }, { extra: { note: `ssn ${SSN}` } })],
  ];
  for (const [name, run] of cases) {
    it(`whole: ${name}`, () => {
      const out = run();
      expect(out).not.toMatch(/4111|123-45-6789/);
      expect(out).toMatch(/\[(PAYMENT_CARD|NATIONAL_ID)\]/);
    });
  }

  const end = [ev({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), 'data: [DONE]\n\n'];
  it('streamed: content as a list of parts, split across events, is scanned as one text per path', async () => {
    const parts = ['card 41', '11 1111 11', '11 1111 and more'];
    const raw = await sse([...parts.map((t) => ev({ choices: [{ index: 0, delta: { content: [{ type: 'text', text: t }] }, finish_reason: null }] })), ...end], scan());
    expect(raw).not.toMatch(/41|1111/);
    const texts = datas(raw).flatMap((o) => (((o.choices?.[0]?.delta as { content?: { text?: string }[] } | undefined)?.content ?? []).map((p) => p.text ?? '')));
    expect(texts.join('')).toBe('card [PAYMENT_CARD] and more');
  });

  it('streamed: an object member of a delta (audio.transcript), a tool name, and an event with no data line', async () => {
    const raw = await sse(
      [
        ev({ choices: [{ index: 0, delta: { audio: { id: 'a1', transcript: `card ${CARD}` } }, finish_reason: null }] }),
        ev({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'c', type: 'function', function: { name: `x_${SSN}`, arguments: '{}' } }] }, finish_reason: null }] }),
        `${JSON.stringify({ choices: [{ index: 0, message: { content: `card ${CARD}` } }] })}\n: a comment\nid: 7\n\n`,
        ...end,
      ],
      scan(),
    );
    expect(raw).not.toMatch(/4111|123-45-6789/);
    // Only SSE's own fields pass (values scanned); the comment is dropped.
    expect(raw).toContain('id: 7\n\n');
    expect(raw).not.toContain('a comment');
  });
});

// The third review: prototype members, names, other tool-call shapes, misshapen choices, field lines.
describe('model JSON of any shape under an output policy', () => {
  const SSN = '123-45-6789';
  const endEvents = [ev({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] }), 'data: [DONE]\n\n'];
  it('a __proto__ member never reaches Object.prototype (streamed, with and without a finishing event), whole or streamed', async () => {
    for (const events of [[`data: {"choices":[{"index":0,"delta":{"__proto__":{"pwned":"hello"}},"finish_reason":null}]}\n\n`, ...endEvents], [`data: {"choices":[{"index":0,"delta":{"__proto__":{"pwned":"hello"}},"finish_reason":null}]}\n\n`]]) {
      await sse(events, scan());
      expect(({} as Record<string, unknown>).pwned).toBeUndefined();
    }
    const whole = dec.decode(restoreJson('chat.completions', enc.encode(`{"choices":[{"index":0,"message":{"role":"assistant","content":"ok","__proto__":"card ${CARD}"}}]}`), new MaskVault(), scan()));
    expect(whole).not.toContain('1111');
    expect(({} as Record<string, unknown>).pwned).toBeUndefined();
  });

  it('names, custom tool calls, misshapen choices, member names and numbers in unknown members, and field lines are scanned', async () => {
    const whole = (o: unknown) => dec.decode(restoreJson('chat.completions', json(o), new MaskVault(), scan()));
    const outs = [
      whole({ choices: [{ index: 0, message: { role: 'assistant', name: `agent ${SSN}`, content: 'ok' } }] }),
      whole({ choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'custom', custom: { name: 'x', input: `card ${CARD}` } }] } }] }),
      whole({ choices: [`card ${CARD}`, { index: 1, message: [`ssn ${SSN}`] }] }),
      whole({ choices: [{ index: 0, message: { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: { card: CARD } } }] } }] }),
      whole({ choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }], extra: { [CARD]: 1, n: 4111111111111111 } }),
    ];
    for (const o of outs) expect(o).not.toMatch(/4111|123-45-6789/);
    const raw = await sse(
      [
        `id: ${SSN}\nevent: card ${CARD}\n: comment ${CARD}\nx-note: ${CARD}\ndata: ${JSON.stringify({ choices: [{ index: 0, delta: { name: `agent ${SSN}`, content: 'hi' }, finish_reason: null }] })}\n\n`,
        ev({ choices: [{ index: 0, delta: { tool_calls: [{ index: 0, id: 'c', type: 'custom', custom: { input: `card ${CARD}` } }] }, finish_reason: null }] }),
        ev({ choices: ['card 4111 1111 1111 1111', { index: 0, delta: `ssn ${SSN}` }] }),
        ...endEvents,
      ],
      scan(),
    );
    expect(raw).not.toMatch(/4111|123-45-6789/);
  });
});

