/**
 * Input and output policy on OpenAI-shaped bodies, inside the TEE.
 *
 * Input: every string of the request body goes through the tenant's PII engine with one mask
 * vault per request, and counts toward the CEL fact `request.chars` — message contents and
 * text parts, but also message names, assistant tool-call arguments (legacy `function_call`
 * too), tool definitions (name, description and every name and string of the parameters
 * schema), completion prompts and suffixes, embedding inputs, stop sequences, metadata,
 * structured-output schemas, and any member the gateway does not know. A `block`
 * finding or a failed rule is ERR_POLICY_DENIED and nothing reaches the model. When nothing
 * changed, the request bytes are forwarded as received; otherwise the received text is
 * forwarded with only the rewritten strings replaced.
 *
 * Unknown fields. OpenAI-compatible servers keep adding members the model reads (and vLLM,
 * llama.cpp and Ollama add their own), so a list of text fields is always one release behind
 * and every field missing from it would be a way around the policy. The scanner therefore
 * works the other way round: every string, every member name and every number is text unless
 * a fixed table (`ROOTS` below, per route) says where the non-text fields are:
 *  - enums (roles, `type`s, `tool_choice`, `encoding_format`, ...): never rewritten and not
 *    counted, but still scanned: a finding there denies the request;
 *  - opaque identifiers (tool-call ids, `user`, file ids): passed as they are when they look
 *    like one (letters, digits, `_.:-`), because server-made ids hold Luhn-valid digit runs
 *    (about one vLLM tool-call id in 600 reads as a card) and scanning them would deny whole
 *    conversations at random; any other value there (an e-mail, a spaced number) is text;
 *  - the model id, already matched against the backend's models;
 *  - base64 payloads (images, audio, files): not text and not rewritten, scanned like an
 *    enum when well formed (a digit run stuffed into one denies), text otherwise;
 *  - sampling parameters and token arrays, whose numbers are not text (a random 19-digit seed
 *    is Luhn-valid one time in ten);
 *  - member names of known objects (fixed identifiers).
 * Unknown members are scanned like text, so the gateway keeps forwarding them faithfully
 * (refusing them would break clients of servers with extensions) and no unknown member can
 * carry PII past the policy. Tool-call arguments are JSON the model reads as text: when they
 * parse, they are scanned value by value (a masked value stays inside its string, a rewritten
 * number becomes a string), so they stay valid JSON; when they do not parse, they are plain text.
 *
 * The scanner reads the received text, not the parsed object, so a member name given twice
 * (JSON.parse keeps the last, an upstream may keep the first) is refused as malformed, numbers
 * keep every digit, and escaped text (`\u0040`) is scanned decoded.
 *
 * Output: masked tokens are restored in the response (message contents and refusals, tool-call
 * names and arguments — JSON-escaped there — and completion texts), and in streams event by
 * event with a restorer per choice and per text (content, refusal, each tool call's arguments)
 * that holds back a token split across events. A tenant's output policy (`output.pii`) is
 * applied to the same texts first, to what the model wrote (its mask tokens, not the restored
 * values, so a caller's own masked values come back as sent): values it redacts become
 * `[CATEGORY]`, in streams through a StreamRedactor per text, which holds back
 * OUTPUT_HOLD_CHARS characters so that no part of a redacted value is sent before it is seen
 * whole. Tool-call arguments are scanned as the JSON text they are.
 */
import { CustodyError, utf8, type Bytes } from '@custody/core';
import { MaskVault, StreamRedactor, StreamRestorer, type PiiEngine, type PiiFinding } from '@custody/policy';
import type { PolicyAction } from '@custody/sdk';
import type { Tenant } from './tenants.js';

export type InferenceRoute = 'chat.completions' | 'completions' | 'embeddings';

export interface FindingSummary {
  category: string;
  action: string;
  count: number;
}

export interface InputPolicyResult {
  /** The body to forward: the original bytes when nothing changed. */
  body: Bytes;
  changed: boolean;
  vault: MaskVault;
  findings: FindingSummary[];
  action: PolicyAction;
  /** Ids of the rules evaluated (all held). */
  rules: string[];
}

const enc = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** How the scanner reads a string at one position of a body. */
type StringKind =
  /** Text: scanned, rewritten by the policy, counted in `request.chars`. */
  | 'text'
  /** An enum: never rewritten, not counted; a finding denies. */
  | 'protocol'
  /** An opaque identifier: as is when identifier-shaped, text otherwise. */
  | 'identifier'
  /** The model id, already resolved against the backend's list (any other value: protocol). */
  | 'model'
  /** A base64 payload or data: URL: like protocol when well formed, text otherwise. */
  | 'binary'
  /** JSON the model reads as text (tool-call arguments). */
  | 'json';

/** What the scanner knows about one position of a body. Anything left out is read as text. */
interface Shape {
  str?: StringKind;
  /** Numbers here are parameters or token ids. Elsewhere a number is scanned as text. */
  num?: 'param';
  /**
   * Known members of an object here: their names are fixed identifiers and are not scanned.
   * Any other member's name is text and its value is read with `rest` (default: all text).
   */
  fields?: Readonly<Record<string, Shape>>;
  rest?: Shape;
  /** Elements of an array here (default: all text). */
  items?: Shape;
}

/** Everything is text: strings, member names, numbers, at any depth. */
const FREE: Shape = {};
const TEXT: Shape = FREE;
const PROTOCOL: Shape = { str: 'protocol' };
const IDENTIFIER: Shape = { str: 'identifier' };
const PARAM: Shape = { num: 'param' };
const BINARY: Shape = { str: 'binary' };

const CONTENT: Shape = {
  items: {
    fields: {
      type: PROTOCOL,
      text: TEXT,
      refusal: TEXT,
      image_url: { str: 'binary', fields: { url: BINARY, detail: PROTOCOL } },
      input_audio: { fields: { data: BINARY, format: PROTOCOL } },
      file: { fields: { file_data: BINARY, file_id: IDENTIFIER, filename: TEXT } },
    },
  },
};
const FUNCTION_CALL: Shape = { fields: { name: TEXT, arguments: { str: 'json' } } };
const FUNCTION_DEFINITION: Shape = { fields: { name: TEXT, description: TEXT, parameters: FREE, strict: PARAM } };
const MESSAGE: Shape = {
  fields: {
    role: PROTOCOL,
    content: CONTENT,
    name: TEXT,
    refusal: TEXT,
    tool_call_id: IDENTIFIER,
    tool_calls: { items: { fields: { id: IDENTIFIER, type: PROTOCOL, function: FUNCTION_CALL } } },
    function_call: FUNCTION_CALL,
    audio: { fields: { id: IDENTIFIER } },
  },
};
/** Prompts and embedding inputs: text, a list of texts, token ids or lists of token ids. */
const TEXTS_OR_TOKENS: Shape = { num: 'param', items: { num: 'param', items: { num: 'param' } } };
const COMMON: Readonly<Record<string, Shape>> = {
  model: { str: 'model' },
  /** End-user ids for abuse monitoring (often a hash or a UUID): not read by the model. */
  user: IDENTIFIER,
  safety_identifier: IDENTIFIER,
  prompt_cache_key: IDENTIFIER,
  stream: PARAM,
  stream_options: { fields: { include_usage: PARAM } },
  n: PARAM,
  seed: PARAM,
  max_tokens: PARAM,
  max_completion_tokens: PARAM,
  temperature: PARAM,
  top_p: PARAM,
  top_k: PARAM,
  min_p: PARAM,
  presence_penalty: PARAM,
  frequency_penalty: PARAM,
  repetition_penalty: PARAM,
  logprobs: PARAM,
  top_logprobs: PARAM,
  best_of: PARAM,
  echo: PARAM,
  dimensions: PARAM,
  store: PARAM,
  parallel_tool_calls: PARAM,
  /** Token ids (member names, scanned as text) to biases. */
  logit_bias: { fields: {}, rest: PARAM },
  stop: TEXT,
  metadata: FREE,
};
const ROOTS: Readonly<Record<InferenceRoute, Shape>> = {
  'chat.completions': {
    fields: {
      ...COMMON,
      messages: { items: MESSAGE },
      tools: { items: { fields: { type: PROTOCOL, function: FUNCTION_DEFINITION } } },
      tool_choice: { str: 'protocol', fields: { type: PROTOCOL, function: { fields: { name: TEXT } } } },
      functions: { items: FUNCTION_DEFINITION },
      function_call: { str: 'protocol', fields: { name: TEXT } },
      response_format: { fields: { type: PROTOCOL, json_schema: { fields: { name: TEXT, description: TEXT, schema: FREE, strict: PARAM } } } },
      prediction: { fields: { type: PROTOCOL, content: CONTENT } },
      reasoning_effort: PROTOCOL,
      service_tier: PROTOCOL,
      verbosity: PROTOCOL,
      modalities: { items: PROTOCOL },
      audio: { fields: { voice: PROTOCOL, format: PROTOCOL } },
    },
  },
  completions: { fields: { ...COMMON, prompt: TEXTS_OR_TOKENS, suffix: TEXT } },
  embeddings: { fields: { ...COMMON, input: TEXTS_OR_TOKENS, encoding_format: PROTOCOL } },
};

/** Deeper than any real request or tool schema; bounds the scanner's recursion. */
const MAX_DEPTH = 256;
/** Base64, optionally as a data: URL (images, audio and files sent inline). */
const BASE64_PAYLOAD = /^(?:data:[\w.+-]+\/[\w.+-]+(?:;[\w.+-]+=[\w.+-]+)*;base64,)?[A-Za-z0-9+/]*={0,2}$/;
/** What server-made ids (call_…, chatcmpl-tool-<hex>, UUIDs) and client user ids look like. */
const IDENTIFIER_SHAPE = /^[A-Za-z0-9_.:-]{1,256}$/;
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

const malformed = (cause?: unknown) => new CustodyError('ERR_INPUT_MALFORMED', 'the request body is not well-formed JSON', cause === undefined ? {} : { cause });

interface ScanState {
  /** The engine applied: the tenant's input policy, or its output policy (tool-call arguments of answers). */
  readonly pii: PiiEngine;
  readonly vault: MaskVault;
  readonly model: string;
  readonly findings: PiiFinding[];
  chars: number;
}

/**
 * Walks one JSON text, applying the policy to each string, member name and number as its
 * position's `Shape` says, and copies the text through with only the rewritten tokens replaced.
 */
class JsonPolicyScanner {
  private i = 0;
  private copied = 0;
  private readonly parts: string[] = [];

  /** `uniqueNames`: refuse a member name given twice in one object (the request body). */
  constructor(
    private readonly src: string,
    private readonly st: ScanState,
    private readonly uniqueNames: boolean,
  ) {}

  /** The rewritten text; the very same string when nothing changed. */
  run(shape: Shape, depth: number): string {
    this.ws();
    this.value(shape, depth);
    this.ws();
    if (this.i !== this.src.length) throw malformed();
    if (this.parts.length === 0) return this.src;
    this.parts.push(this.src.slice(this.copied));
    return this.parts.join('');
  }

  private replace(start: number, end: number, token: string): void {
    this.parts.push(this.src.slice(this.copied, start), token);
    this.copied = end;
  }

  private ws(): void {
    for (let c = this.src.charCodeAt(this.i); c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = this.src.charCodeAt(this.i)) this.i++;
  }

  private expect(c: number): void {
    if (this.src.charCodeAt(this.i) !== c) throw malformed();
    this.i++;
  }

  private value(shape: Shape, depth: number): void {
    if (depth > MAX_DEPTH) throw new CustodyError('ERR_INPUT_MALFORMED', 'the request body nests too deeply');
    const c = this.src.charCodeAt(this.i);
    if (c === 0x7b) this.object(shape, depth);
    else if (c === 0x5b) this.array(shape, depth);
    else if (c === 0x22) this.stringValue(shape, depth);
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) this.number(shape);
    else {
      for (const literal of ['true', 'false', 'null']) {
        if (this.src.startsWith(literal, this.i)) {
          this.i += literal.length;
          return;
        }
      }
      throw malformed();
    }
  }

  private object(shape: Shape, depth: number): void {
    this.i++;
    this.ws();
    if (this.src.charCodeAt(this.i) === 0x7d) {
      this.i++;
      return;
    }
    const names = new Set<string>();
    const written = new Set<string>();
    const rewrittenCategories = new Set<string>();
    for (;;) {
      if (this.src.charCodeAt(this.i) !== 0x22) throw malformed();
      const start = this.i;
      const name = this.string();
      const known = shape.fields !== undefined && Object.hasOwn(shape.fields, name);
      let out = name;
      if (!known) {
        const before = this.st.findings.length;
        out = this.text(name);
        if (out !== name) {
          this.replace(start, this.i, JSON.stringify(out));
          for (const f of this.st.findings.slice(before)) if (f.action !== 'allow') rewrittenCategories.add(f.category);
        }
      }
      if (names.has(name)) {
        if (this.uniqueNames) throw new CustodyError('ERR_INPUT_MALFORMED', 'the request body gives a member name twice in one object');
      } else if (written.has(out)) {
        // Two names that differed would be one after the rewrite: the object would lose a member.
        const categories = [...rewrittenCategories].join(',');
        throw new CustodyError('ERR_POLICY_DENIED', `a member name rewritten for ${categories} collides with another`, { detail: { categories } });
      }
      names.add(name);
      written.add(out);
      this.ws();
      this.expect(0x3a);
      this.ws();
      this.value(known ? shape.fields![name]! : (shape.rest ?? FREE), depth + 1);
      this.ws();
      const c = this.src.charCodeAt(this.i++);
      if (c === 0x7d) return;
      if (c !== 0x2c) throw malformed();
      this.ws();
    }
  }

  private array(shape: Shape, depth: number): void {
    this.i++;
    this.ws();
    if (this.src.charCodeAt(this.i) === 0x5d) {
      this.i++;
      return;
    }
    for (;;) {
      this.value(shape.items ?? FREE, depth + 1);
      this.ws();
      const c = this.src.charCodeAt(this.i++);
      if (c === 0x5d) return;
      if (c !== 0x2c) throw malformed();
      this.ws();
    }
  }

  /** Reads a string token at `i` (a quote) and returns its decoded value. */
  private string(): string {
    const s = this.src;
    const start = this.i;
    let j = start + 1;
    let escaped = false;
    for (;;) {
      if (j >= s.length) throw malformed();
      const c = s.charCodeAt(j);
      if (c === 0x22) break;
      if (c === 0x5c) {
        escaped = true;
        j += 2;
        continue;
      }
      if (c < 0x20) throw malformed();
      j++;
    }
    this.i = j + 1;
    if (!escaped) return s.slice(start + 1, j);
    try {
      return JSON.parse(s.slice(start, j + 1)) as string;
    } catch (e) {
      throw malformed(e);
    }
  }

  private stringValue(shape: Shape, depth: number): void {
    const start = this.i;
    const value = this.string();
    let out = value;
    switch (shape.str ?? 'text') {
      case 'model':
        if (value !== this.st.model) this.inspect(value);
        break;
      case 'protocol':
        this.inspect(value);
        break;
      case 'identifier':
        if (!IDENTIFIER_SHAPE.test(value)) out = this.text(value);
        break;
      case 'binary':
        if (BASE64_PAYLOAD.test(value)) this.inspect(value);
        else out = this.text(value);
        break;
      case 'json':
        out = this.jsonText(value, depth);
        break;
      case 'text':
        out = this.text(value);
        break;
    }
    if (out !== value) this.replace(start, this.i, JSON.stringify(out));
  }

  private number(shape: Shape): void {
    NUMBER.lastIndex = this.i;
    const m = NUMBER.exec(this.src);
    if (!m) throw malformed();
    const start = this.i;
    this.i += m[0].length;
    if (shape.num === 'param') return;
    // Digits the model reads (a card number in a schema's enum, a phone number in tool-call
    // arguments): scanned like text but not counted; a rewritten number becomes a string.
    const r = this.st.pii.apply(m[0], this.st.vault);
    for (const f of r.findings) this.st.findings.push(f);
    if (r.text !== m[0]) this.replace(start, this.i, JSON.stringify(r.text));
  }

  private text(value: string): string {
    if (value.length === 0) return value;
    this.st.chars += value.length;
    const r = this.st.pii.apply(value, this.st.vault);
    for (const f of r.findings) this.st.findings.push(f);
    return r.text;
  }

  /** A string that must not be rewritten: a finding the policy would act on denies the request. */
  private inspect(value: string): void {
    if (value.length === 0) return;
    const pii = this.st.pii;
    const categories = [...new Set(pii.detect(value).map((d) => d.category))].filter((c) => pii.actionFor(c) !== 'allow');
    if (categories.length > 0) {
      throw new CustodyError('ERR_POLICY_DENIED', `a field the gateway does not rewrite (an enum or an encoded payload) contains ${categories.join(', ')}`, { detail: { categories: categories.join(',') } });
    }
  }

  /** JSON in a string (tool-call arguments): scanned value by value so it stays valid JSON. */
  private jsonText(value: string, depth: number): string {
    try {
      JSON.parse(value);
    } catch {
      return this.text(value);
    }
    return new JsonPolicyScanner(value, this.st, false).run(FREE, depth + 1);
  }
}

/** Makes `target` (the object the backend reads) hold `source`'s members, in place. */
function replaceMembers(target: Record<string, unknown>, source: unknown): void {
  if (typeof source !== 'object' || source === null || Array.isArray(source)) throw malformed();
  for (const k of Object.keys(target)) Reflect.deleteProperty(target, k);
  // defineProperty, not assignment: a member named "__proto__" stays a member.
  for (const [k, v] of Object.entries(source)) Object.defineProperty(target, k, { value: v, writable: true, enumerable: true, configurable: true });
}

/**
 * Applies the tenant's input policy to a request. `body` is `raw` parsed (the object the
 * backend reads); when the policy rewrites anything, it is updated in place to match the
 * forwarded bytes.
 */
export function applyInputPolicy(
  route: InferenceRoute,
  body: Record<string, unknown>,
  raw: Bytes,
  tenant: Tenant,
  request: { model: string; stream: boolean },
  /** `raw` already decoded (strict UTF-8) by the caller, which parsed `body` from it. */
  text?: string,
): InputPolicyResult {
  if (route === 'chat.completions') {
    const messages = body.messages;
    if (!Array.isArray(messages)) throw new CustodyError('ERR_INPUT_MALFORMED', 'messages must be a list');
    for (const m of messages) if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new CustodyError('ERR_INPUT_MALFORMED', 'a message must be an object');
  }
  let src: string;
  try {
    src = text ?? strictUtf8.decode(raw);
  } catch (e) {
    throw new CustodyError('ERR_INPUT_MALFORMED', 'the request body is not UTF-8', { cause: e });
  }
  const vault = new MaskVault();
  // Token-shaped text anywhere in the request ("[EMAIL_1]" typed by the user, also as JSON
  // escapes) is never issued, so restoring the answer leaves the user's literal as it was.
  vault.reserveTokensIn(src.includes('\\u') ? JSON.stringify(body) : src);
  const st: ScanState = { pii: tenant.pii, vault, model: request.model, findings: [], chars: 0 };
  const forwarded = new JsonPolicyScanner(src, st, true).run(ROOTS[route], 0);
  const changed = forwarded !== src;
  const counts = new Map<string, FindingSummary>();
  for (const f of st.findings) {
    const k = `${f.category}\u0000${f.action}`;
    const c = counts.get(k);
    if (c) c.count++;
    else counts.set(k, { category: f.category, action: f.action, count: 1 });
  }
  const findings = [...counts.values()];
  const categories = [...new Set(findings.map((f) => f.category))];
  for (const rule of tenant.rules) {
    const r = rule.condition.evaluate({ request: { route, model: request.model, stream: request.stream, chars: st.chars }, tenant: { id: tenant.id }, pii: { categories, count: st.findings.length } });
    if (!r.ok) throw new CustodyError('ERR_POLICY_DENIED', `rule ${rule.id}: ${rule.reason}`, { detail: { rule: rule.id } });
  }
  if (changed) replaceMembers(body, JSON.parse(forwarded));
  const action: PolicyAction = findings.some((f) => f.action === 'mask') ? 'mask' : findings.some((f) => f.action === 'redact') ? 'redact' : findings.length > 0 ? 'allow' : 'none';
  return { body: changed ? utf8(forwarded) : raw, changed, vault, findings, action, rules: tenant.rules.map((r) => r.id) };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The shape of a MaskVault token. */
const MASK_TOKEN = /\[[A-Z_]+_\d+\]/g;

/**
 * A view of a vault that restores values JSON-escaped, for tokens inside JSON string literals
 * (tool-call arguments): a value with a quote or a backslash keeps the arguments valid JSON.
 */
class JsonEscapingVault extends MaskVault {
  constructor(private readonly inner: MaskVault) {
    super();
  }

  override get size(): number {
    return this.inner.size;
  }

  override restore(text: string): string {
    if (this.inner.size === 0) return text;
    return text.replace(MASK_TOKEN, (t) => {
      const value = this.inner.restore(t);
      return value === t ? t : JSON.stringify(value).slice(1, -1);
    });
  }
}

/**
 * A tenant's output policy for one answer: its engine, and where each finding goes (the
 * pipeline counts them into the receipt; offsets are per text and not reported further).
 */
export interface OutputScan {
  readonly engine: PiiEngine;
  onFinding(f: PiiFinding): void;
}

/** The rewrite of one whole text: the output policy, then mask restoration. */
type Fix = (text: string) => string;

function fixer(vault: MaskVault, output: OutputScan | undefined): Fix {
  if (!output) return (t) => vault.restore(t);
  return (t) => {
    const r = output.engine.apply(t);
    for (const f of r.findings) output.onFinding(f);
    return vault.restore(r.text);
  };
}

/**
 * The rewrite of tool-call arguments, JSON the model wrote: the output policy value by value
 * (the input scanner's walk, so escapes are decoded before scanning, a redacted value stays
 * inside its string and a redacted number becomes a string: the arguments stay valid JSON;
 * arguments that are not JSON are scanned as text), then mask restoration JSON-escaped.
 */
function jsonFixer(jsonVault: MaskVault, output: OutputScan | undefined): Fix {
  if (!output) return (t) => jsonVault.restore(t);
  return (t) => jsonVault.restore(redactJsonOrText(t, output));
}

/**
 * The output policy over text that may be JSON: value by value when it parses (the scanner's
 * own refusals, such as nesting too deep, fail the answer), as plain text otherwise.
 */
function redactJsonOrText(t: string, output: OutputScan): string {
  let json = true;
  try {
    JSON.parse(t);
  } catch {
    json = false;
  }
  if (!json) {
    const r = output.engine.apply(t);
    for (const f of r.findings) output.onFinding(f);
    return r.text;
  }
  const st: ScanState = { pii: output.engine, vault: new MaskVault(), model: '', findings: [], chars: 0 };
  const out = new JsonPolicyScanner(t, st, false).run(FREE, 0);
  for (const f of st.findings) output.onFinding(f);
  return out;
}

/** Members of a message or delta that are not model text (`name` is restored, never redacted). */
const MESSAGE_STRUCTURE = new Set(['role', 'name', 'tool_call_id', 'tool_calls', 'function_call']);
/** Members of a choice, and of a whole answer, that are not the model's text. */
const CHOICE_STRUCTURE: Record<InferenceRoute, ReadonlySet<string>> = {
  'chat.completions': new Set(['index', 'finish_reason', 'logprobs', 'message', 'delta']),
  completions: new Set(['index', 'finish_reason', 'logprobs', 'text']),
  embeddings: new Set(),
};
const ANSWER_STRUCTURE = new Set(['id', 'object', 'created', 'model', 'system_fingerprint', 'service_tier', 'usage', 'choices']);
/** Deepest nesting the output policy walks; anything deeper is dropped. */
const MAX_OUTPUT_DEPTH = 16;

/**
 * Every string, member name and number in `holder[key]`, at any depth, through `fix` (in place);
 * true when anything changed. Under an output policy this is how members of no known shape are
 * scanned, as the input scanner reads them: a rewritten number becomes a string, a member whose
 * rewritten name collides with another is dropped, and deeper than MAX_OUTPUT_DEPTH a value is
 * replaced by null rather than passed unscanned. A `__proto__` member is dropped.
 */
function fixEverywhere(holder: Record<string, unknown> | unknown[], key: string | number, fix: Fix, depth = 0): boolean {
  const h = holder as Record<string | number, unknown>;
  if (key === '__proto__') {
    delete h[key];
    return true;
  }
  const v = h[key];
  const set = (next: unknown): boolean => {
    h[key] = next;
    return true;
  };
  if (typeof v === 'string' || typeof v === 'number') {
    const str = String(v);
    const next = fix(str);
    return next !== str ? set(next) : false;
  }
  if (typeof v !== 'object' || v === null) return false;
  if (depth >= MAX_OUTPUT_DEPTH) return set(null);
  let changed = false;
  if (Array.isArray(v)) {
    for (let i = 0; i < v.length; i++) if (fixEverywhere(v, i, fix, depth + 1)) changed = true;
    return changed;
  }
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (fixEverywhere(o, k, fix, depth + 1)) changed = true;
    if (k === '__proto__' || !Object.hasOwn(o, k)) continue;
    const name = fix(k);
    if (name === k) continue;
    if (!Object.hasOwn(o, name) && name !== '__proto__') Object.defineProperty(o, name, { value: o[k], enumerable: true, writable: true, configurable: true });
    delete o[k];
    changed = true;
  }
  return changed;
}

/** Drops every own `__proto__` member of parsed model JSON (JSON.parse makes them plain members; an assignment through one would reach Object.prototype); true when there was one. */
function stripProto(v: unknown, depth = 0): boolean {
  if (typeof v !== 'object' || v === null || depth > MAX_OUTPUT_DEPTH) return false;
  let found = false;
  if (Array.isArray(v)) {
    for (const x of v) if (stripProto(x, depth + 1)) found = true;
    return found;
  }
  const o = v as Record<string, unknown>;
  if (Object.hasOwn(o, '__proto__')) {
    delete o['__proto__'];
    found = true;
  }
  for (const k of Object.keys(o)) if (stripProto(o[k], depth + 1)) found = true;
  return found;
}

/**
 * Rewrites a whole chat message (or a stream event's `message`) in place; true when anything
 * changed. `output`: every member but the structure is model text, at any depth (content
 * parts of any type, reasoning, audio transcripts), and tool names are scanned too.
 */
function rewriteMessage(msg: Record<string, unknown>, text: Fix, json: Fix, names: Fix, output: boolean): boolean {
  let changed = false;
  const set = (holder: Record<string, unknown>, key: string, fix: Fix): void => {
    const v = holder[key];
    if (typeof v !== 'string') return;
    const next = fix(v);
    if (next !== v) {
      holder[key] = next;
      changed = true;
    }
  };
  for (const key of Object.keys(msg)) {
    if (MESSAGE_STRUCTURE.has(key)) continue;
    const v = msg[key];
    if (typeof v === 'string') set(msg, key, text);
    else if (output) {
      if (fixEverywhere(msg, key, text)) changed = true;
    } else if (Array.isArray(v)) for (const part of v as unknown[]) if (isObject(part)) set(part, 'text', text);
  }
  set(msg, 'name', output ? text : names);
  const calls: unknown[] = Array.isArray(msg.tool_calls) ? msg.tool_calls : [];
  if (output) {
    if (msg.tool_calls !== undefined && !Array.isArray(msg.tool_calls) && fixEverywhere(msg, 'tool_calls', text)) changed = true;
    if (msg.function_call !== undefined && !isObject(msg.function_call) && fixEverywhere(msg, 'function_call', text)) changed = true;
    if (fixToolCalls(calls, text)) changed = true;
  }
  for (const fn of [...calls.map((c) => (isObject(c) ? c.function : undefined)), msg.function_call]) {
    if (!isObject(fn)) continue;
    set(fn, 'name', output ? text : names);
    set(fn, 'arguments', json);
  }
  return changed;
}

/** Members of a tool call, and of its function, that rewriteMessage and the stream handle themselves. */
const TOOL_CALL_STRUCTURE = new Set(['id', 'type', 'index', 'function']);
const FUNCTION_STRUCTURE = new Set(['name', 'arguments']);

/**
 * Under an output policy: every other member of each tool call (a custom tool's input, say),
 * arguments that are not a string, and entries that are not objects, scanned as model text.
 */
function fixToolCalls(calls: unknown[], text: Fix): boolean {
  let changed = false;
  for (let i = 0; i < calls.length; i++) {
    const c = calls[i];
    if (!isObject(c)) {
      if (fixEverywhere(calls, i, text)) changed = true;
      continue;
    }
    if (fixUnknownMembers(c, TOOL_CALL_STRUCTURE, text)) changed = true;
    const fn = c.function;
    if (fn === undefined) continue;
    if (!isObject(fn)) {
      if (fixEverywhere(c, 'function', text)) changed = true;
      continue;
    }
    if (fixUnknownMembers(fn, FUNCTION_STRUCTURE, text)) changed = true;
    if (fn.arguments !== undefined && typeof fn.arguments !== 'string' && fixEverywhere(fn, 'arguments', text)) changed = true;
  }
  return changed;
}

/** Under an output policy: every member of `obj` outside `structure` scanned as model text. */
function fixUnknownMembers(obj: Record<string, unknown>, structure: ReadonlySet<string>, fix: Fix): boolean {
  let changed = false;
  for (const key of Object.keys(obj)) if (!structure.has(key) && fixEverywhere(obj, key, fix)) changed = true;
  return changed;
}

/** A choice's `message` (chat) or `text` (completions) present but not of its kind: scanned whole under an output policy. */
function wrongShape(choice: Record<string, unknown>, route: InferenceRoute): boolean {
  if (route === 'chat.completions') return choice.message !== undefined && !isObject(choice.message);
  return choice.text !== undefined && typeof choice.text !== 'string';
}

/** Drops a choice's token log-probabilities: they spell out the model's text token by token. */
function dropLogprobs(choice: Record<string, unknown>): boolean {
  if (choice.logprobs === undefined || choice.logprobs === null) return false;
  choice.logprobs = null;
  return true;
}

/**
 * Restores masked tokens in a whole response, after the output policy (when given) has
 * redacted what it redacts. The bytes come back as they were when nothing changed. With an
 * output policy nothing passes unscanned: token log-probabilities are dropped, every member
 * outside the answer's structure is scanned at any depth, and a body that is not a completion
 * (an error document, another shape) has every string scanned, or is scanned as text when it
 * is not JSON.
 */
export function restoreJson(route: InferenceRoute, bytes: Uint8Array, vault: MaskVault, output?: OutputScan): Uint8Array {
  if ((vault.size === 0 && !output) || route === 'embeddings') return bytes;
  const src = new TextDecoder().decode(bytes);
  let obj: unknown;
  try {
    obj = JSON.parse(src);
  } catch {
    return output ? redactOpaque(src, bytes, output) : bytes;
  }
  if (!isObject(obj) || !Array.isArray(obj.choices)) return output ? redactOpaque(src, bytes, output) : bytes;
  const text = fixer(vault, output);
  const json = jsonFixer(new JsonEscapingVault(vault), output);
  const names: Fix = (t) => vault.restore(t);
  let changed = output ? stripProto(obj) : false;
  if (output && fixUnknownMembers(obj, ANSWER_STRUCTURE, text)) changed = true;
  const choices = obj.choices as unknown[];
  for (let idx = 0; idx < choices.length; idx++) {
    const choice = choices[idx];
    if (!isObject(choice)) {
      if (output && fixEverywhere(choices, idx, text)) changed = true;
      continue;
    }
    if (output) {
      if (dropLogprobs(choice)) changed = true;
      if (fixUnknownMembers(choice, CHOICE_STRUCTURE[route], text)) changed = true;
      if (wrongShape(choice, route) && fixEverywhere(choice, route === 'chat.completions' ? 'message' : 'text', text)) changed = true;
    }
    if (route === 'chat.completions') {
      if (isObject(choice.message) && rewriteMessage(choice.message, text, json, names, output !== undefined)) changed = true;
    } else if (typeof choice.text === 'string') {
      const next = text(choice.text);
      if (next !== choice.text) {
        choice.text = next;
        changed = true;
      }
    }
  }
  return changed ? enc.encode(JSON.stringify(obj)) : bytes;
}

/** An answer of no known shape under an output policy: every string of its JSON scanned, or all of it as text. */
function redactOpaque(src: string, bytes: Uint8Array, output: OutputScan): Uint8Array {
  const out = redactJsonOrText(src, output);
  return out === src ? bytes : enc.encode(out);
}

/** One streamed text of an answer: what it sends now, and the held-back rest at its end. */
interface StreamChannel {
  push(text: string): string;
  flush(): string;
}

/**
 * One streamed text of an answer (a choice's content, refusal, reasoning): the output policy's
 * redactor (when there is one), then the mask restorer, each holding back what it cannot
 * decide yet.
 */
class TextChannel implements StreamChannel {
  private readonly restorer: StreamRestorer;
  private readonly redactor: StreamRedactor | undefined;

  constructor(vault: MaskVault, output: OutputScan | undefined) {
    this.restorer = new StreamRestorer(vault);
    this.redactor = output ? new StreamRedactor(output.engine, (f) => output.onFinding(f)) : undefined;
  }

  push(text: string): string {
    return this.restorer.push(this.redactor ? this.redactor.push(text) : text);
  }

  flush(): string {
    return (this.redactor ? this.restorer.push(this.redactor.flush()) : '') + this.restorer.flush();
  }
}

/**
 * A tool call's arguments under an output policy: held whole until the call ends, then
 * rewritten as JSON (jsonFixer), so values are scanned decoded and the arguments stay valid
 * JSON. Clients assemble arguments before they use them, so only their timing changes.
 */
class WholeJsonChannel implements StreamChannel {
  private held = '';

  constructor(private readonly fix: Fix) {}

  push(text: string): string {
    this.held += text;
    return '';
  }

  flush(): string {
    const all = this.held;
    this.held = '';
    return all.length > 0 ? this.fix(all) : '';
  }
}

/** Appends a held-back tail to its place in a delta (or a completions choice). */
type PutRest = (target: Record<string, unknown>, rest: string) => void;

const appendTo =
  (key: string): PutRest =>
  (target, rest) => {
    target[key] = (typeof target[key] === 'string' ? target[key] : '') + rest;
  };

/** Appends at a path of members and list positions inside a delta, making what is missing. */
const appendAtPath =
  (path: readonly (string | number)[]): PutRest =>
  (target, rest) => {
    // Model JSON's `__proto__` members are dropped before they get a channel; never write through one.
    if (path.includes('__proto__')) return;
    let cur = target as Record<string | number, unknown>;
    for (let j = 0; j < path.length - 1; j++) {
      const seg = path[j]!;
      const next = cur[seg];
      if (typeof next !== 'object' || next === null) cur[seg] = typeof path[j + 1] === 'number' ? [] : {};
      cur = cur[seg] as Record<string | number, unknown>;
    }
    const last = path[path.length - 1]!;
    cur[last] = (typeof cur[last] === 'string' ? cur[last] : '') + rest;
  };

const appendToolArguments =
  (index: number): PutRest =>
  (target, rest) => {
    const list: unknown[] = Array.isArray(target.tool_calls) ? target.tool_calls : (target.tool_calls = []);
    let call = list.find((c): c is Record<string, unknown> => isObject(c) && c.index === index);
    if (!call) list.push((call = { index, function: {} }));
    const fn = isObject(call.function) ? call.function : (call.function = {});
    appendTo('arguments')(fn, rest);
  };

const appendFunctionArguments: PutRest = (target, rest) => {
  appendTo('arguments')(isObject(target.function_call) ? target.function_call : (target.function_call = {}), rest);
};

/** The non-data lines of an event under an output policy: `id` and `event` (values scanned) and `retry`; nothing else. */
function sseFields(lines: readonly string[], fix: Fix): string[] {
  const out: string[] = [];
  for (const line of lines) {
    const m = /^(id|event|retry)(?::(.*))?$/.exec(line);
    if (!m) continue;
    const value = (m[2] ?? '').replace(/^ /, '');
    if (m[1] === 'retry') {
      if (/^\d+$/.test(value)) out.push(`retry: ${value}`);
    } else out.push(`${m[1]}: ${fix(value)}`);
  }
  return out;
}

/** The longest stream event (characters) the gateway holds to rewrite: the bound of a whole non-streamed answer. */
export const MAX_SSE_EVENT = 8 * 1024 * 1024;

/**
 * Restores masked tokens in a server-sent event stream, after the output policy (when given).
 * Events are read as the SSE format defines them (LF, CRLF or CR line ends; a payload over
 * several `data:` lines is one payload; `id:`, `event:` and comment lines are kept). A token
 * split across events is held back until it is complete (or the choice finishes, or the stream
 * ends). Each choice has a channel per text it streams: the content, the refusal, any other text
 * member of the delta (reasoning), and each tool call's arguments (restored JSON-escaped; under
 * an output policy held whole until the call ends). Under an output policy nothing passes
 * unscanned: token log-probabilities are dropped, and an event whose data is not a JSON object
 * (other than `[DONE]`) is dropped.
 */
export function restoreSseStream(route: InferenceRoute, vault: MaskVault, output?: OutputScan): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  const jsonVault = new JsonEscapingVault(vault);
  const wholeText = fixer(vault, output);
  const wholeJson = jsonFixer(jsonVault, output);
  const names: Fix = (t) => vault.restore(t);
  type Channel = { channel: StreamChannel; put: PutRest };
  const channels = new Map<number, Map<string, Channel>>();
  /** The event being received (no blank line yet), in pieces: joined once, when it is complete. */
  let held: string[] = [];
  let heldLength = 0;
  /** The held text ends with a LF (a LF starting the next piece completes the event). */
  let heldEndsLf = false;
  /** A CR that ended the last chunk: it may be half a CRLF. */
  let carriedCr = false;
  /** Rewrites `holder[field]` through the choice's channel named `key`. */
  const push = (choice: number, key: string, holder: Record<string, unknown>, field: string, put: PutRest, json = false): void => {
    const text = holder[field];
    if (typeof text !== 'string') return;
    let byKey = channels.get(choice);
    if (!byKey) channels.set(choice, (byKey = new Map<string, Channel>()));
    let ch = byKey.get(key);
    if (!ch) {
      const channel = json && output ? new WholeJsonChannel(wholeJson) : new TextChannel(json ? jsonVault : vault, output);
      byKey.set(key, (ch = { channel, put }));
    }
    holder[field] = ch.channel.push(text);
  };
  /** Every string under `holder[field]` through a channel named by its path (output policy only). */
  const pushLeaves = (choice: number, path: (string | number)[], holder: Record<string | number, unknown>, field: string | number, depth: number): void => {
    if (field === '__proto__') {
      delete holder[field];
      return;
    }
    const v = holder[field];
    // A part's `type` is structure: scanned in its event, never held back.
    if (typeof v === 'string' && field === 'type') {
      holder[field] = wholeText(v);
      return;
    }
    if (typeof v === 'number') {
      fixEverywhere(holder, field, wholeText);
      return;
    }
    if (typeof v === 'string') {
      push(choice, `leaf:${JSON.stringify(path)}`, holder, field as string, appendAtPath(path));
      return;
    }
    if (typeof v !== 'object' || v === null) return;
    if (depth >= MAX_OUTPUT_DEPTH) {
      holder[field] = null;
      return;
    }
    if (Array.isArray(v)) for (let k = 0; k < v.length; k++) pushLeaves(choice, [...path, k], v as unknown as Record<number, unknown>, k, depth + 1);
    else for (const k of Object.keys(v)) pushLeaves(choice, [...path, k], v as Record<string, unknown>, k, depth + 1);
  };
  /** Puts every held-back tail of a choice into `target`; true when there was one. */
  const flushChoice = (choice: number, target: Record<string, unknown>): boolean => {
    let any = false;
    for (const ch of channels.get(choice)?.values() ?? []) {
      const rest = ch.channel.flush();
      if (rest.length > 0) {
        ch.put(target, rest);
        any = true;
      }
    }
    channels.delete(choice);
    return any;
  };
  const flushAll = (): string => {
    let out = '';
    for (const i of [...channels.keys()]) {
      const target: Record<string, unknown> = {};
      if (!flushChoice(i, target)) continue;
      const choice = route === 'chat.completions' ? { index: i, delta: target, finish_reason: null } : { index: i, ...target, finish_reason: null };
      out += `data: ${JSON.stringify({ object: route === 'chat.completions' ? 'chat.completion.chunk' : 'text_completion', choices: [choice] })}\n\n`;
    }
    return out;
  };
  const restoreChoice = (choice: Record<string, unknown>): void => {
    const i = typeof choice.index === 'number' ? choice.index : 0;
    const finished = choice.finish_reason !== undefined && choice.finish_reason !== null;
    if (output) {
      dropLogprobs(choice);
      fixUnknownMembers(choice, CHOICE_STRUCTURE[route], wholeText);
      if (wrongShape(choice, route)) fixEverywhere(choice, route === 'chat.completions' ? 'message' : 'text', wholeText);
      if (route === 'chat.completions' && choice.delta !== undefined && !isObject(choice.delta)) fixEverywhere(choice, 'delta', wholeText);
    }
    if (route !== 'chat.completions') {
      push(i, 'text', choice, 'text', appendTo('text'));
      if (finished) flushChoice(i, choice);
      return;
    }
    if (isObject(choice.message)) rewriteMessage(choice.message, wholeText, wholeJson, names, output !== undefined);
    const delta = choice.delta;
    if (isObject(delta)) {
      for (const key of Object.keys(delta)) {
        if (MESSAGE_STRUCTURE.has(key)) continue;
        if (typeof delta[key] === 'string') push(i, key, delta, key, appendTo(key));
        // Text streamed inside objects or lists (content parts, audio transcripts): a channel per
        // path, so a value split across events is seen whole as in any other text.
        else if (output) pushLeaves(i, [key], delta, key, 0);
      }
      if (typeof delta.name === 'string') delta.name = output ? wholeText(delta.name) : vault.restore(delta.name);
      const calls: unknown[] = Array.isArray(delta.tool_calls) ? delta.tool_calls : [];
      if (output) {
        if (delta.tool_calls !== undefined && !Array.isArray(delta.tool_calls)) fixEverywhere(delta, 'tool_calls', wholeText);
        if (delta.function_call !== undefined && !isObject(delta.function_call)) fixEverywhere(delta, 'function_call', wholeText);
        fixToolCalls(calls, wholeText);
      }
      calls.forEach((c, position) => {
        if (!isObject(c) || !isObject(c.function)) return;
        const k = typeof c.index === 'number' ? c.index : position;
        if (typeof c.function.name === 'string') c.function.name = output ? wholeText(c.function.name) : vault.restore(c.function.name);
        push(i, `tool_calls.${k}`, c.function, 'arguments', appendToolArguments(k), true);
      });
      if (isObject(delta.function_call)) {
        if (typeof delta.function_call.name === 'string') delta.function_call.name = output ? wholeText(delta.function_call.name) : vault.restore(delta.function_call.name);
        push(i, 'function_call', delta.function_call, 'arguments', appendFunctionArguments, true);
      }
    }
    if (finished) {
      const target = isObject(delta) ? delta : {};
      if (flushChoice(i, target) && !isObject(delta)) choice.delta = target;
    }
  };
  /** One event (its lines, without the blank line that ended it), rewritten. */
  const rewrite = (event: string): string => {
    const lines = event.split('\n');
    const kept: string[] = [];
    const data: string[] = [];
    for (const line of lines) {
      if (line.startsWith('data:')) data.push(line.slice(line.startsWith('data: ') ? 6 : 5));
      else if (line === 'data') data.push('');
      else kept.push(line);
    }
    // Under an output policy only the fields SSE defines besides data pass, `id` and `event`
    // values scanned; comments and unknown fields are dropped (nothing a client reads unscanned).
    const fields = output ? sseFields(kept, wholeText) : kept;
    if (data.length === 0) {
      if (!output) return event + '\n\n';
      return fields.length > 0 ? fields.join('\n') + '\n\n' : '';
    }
    const payload = data.join('\n');
    const head = fields.length > 0 ? fields.join('\n') + '\n' : '';
    if (payload.trim() === '[DONE]') return flushAll() + (output ? `${head}data: [DONE]\n\n` : event + '\n\n');
    let obj: unknown;
    try {
      obj = JSON.parse(payload);
    } catch {
      obj = undefined;
    }
    if (!isObject(obj)) return output ? '' : event + '\n\n';
    if (output) stripProto(obj);
    if (Array.isArray(obj.choices)) {
      if (output) fixUnknownMembers(obj, ANSWER_STRUCTURE, wholeText);
      const choices = obj.choices as unknown[];
      for (let idx = 0; idx < choices.length; idx++) {
        const c = choices[idx];
        if (isObject(c)) restoreChoice(c);
        else if (output) fixEverywhere(choices, idx, wholeText);
      }
    } else if (output) {
      // Another object (an error event, say): every string in it scanned.
      const json = JSON.stringify(obj);
      return `${head}data: ${new TextDecoder().decode(redactOpaque(json, enc.encode(json), output))}\n\n`;
    }
    return `${head}data: ${JSON.stringify(obj)}\n\n`;
  };
  /**
   * Takes decoded text, line ends normalised to LF (a final CR waits: it may be half a CRLF), and
   * rewrites the events it completes. Only the new text is searched, and a held event is joined
   * once, so a stream costs time linear in its size however it is cut; an event that grows past
   * MAX_SSE_EVENT characters fails the stream (as the whole of a non-streamed answer is bounded).
   */
  const take = (decoded: string, final: boolean): string => {
    let text = carriedCr ? '\r' + decoded : decoded;
    carriedCr = !final && text.endsWith('\r');
    if (carriedCr) text = text.slice(0, -1);
    if (text.includes('\r')) text = text.replace(/\r\n?/g, '\n');
    let out = '';
    let start = 0;
    const complete = (last: string): void => {
      const event = held.length > 0 ? held.join('') + last : last;
      held = [];
      heldLength = 0;
      out += rewrite(event);
    };
    if (heldEndsLf && text.startsWith('\n')) {
      const last = held.pop()!;
      complete(last.slice(0, -1));
      start = 1;
    }
    for (let at = text.indexOf('\n\n', start); at >= 0; at = text.indexOf('\n\n', start)) {
      complete(text.slice(start, at));
      start = at + 2;
    }
    if (start < text.length) {
      const rest = start === 0 ? text : text.slice(start);
      held.push(rest);
      heldLength += rest.length;
      heldEndsLf = rest.endsWith('\n');
    } else if (start > 0) heldEndsLf = false;
    if (heldLength > MAX_SSE_EVENT) throw new CustodyError('ERR_GATEWAY_BACKEND', `the model server sent a stream event of over ${MAX_SSE_EVENT} characters`, { detail: { max: MAX_SSE_EVENT } });
    return out;
  };
  // The readable side queues up to 16 rewritten chunks, so events the backend has already sent
  // are rewritten ahead and the gateway can seal them together (with the default of one, every
  // event would wait for the next read and leave alone).
  const transformer: Transformer<Uint8Array, Uint8Array> = {
    transform(chunk, controller) {
      const out = take(decoder.decode(chunk, { stream: true }), false);
      if (out) controller.enqueue(enc.encode(out));
    },
    flush(controller) {
      let out = take(decoder.decode(), true);
      const rest = held.join('');
      held = [];
      heldLength = 0;
      if (rest.trim()) out += rewrite(rest.replace(/\n+$/, ''));
      out += flushAll();
      if (out) controller.enqueue(enc.encode(out));
    },
  };
  return new TransformStream<Uint8Array, Uint8Array>(transformer, undefined, { highWaterMark: 16 });
}
