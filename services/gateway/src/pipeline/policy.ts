/**
 * Input and output policy on OpenAI-shaped bodies, inside the TEE.
 *
 * Input: every text the model would read (chat message contents and text parts, completion
 * prompts, embedding inputs) goes through the tenant's PII engine with one mask vault per
 * request; then the tenant's CEL rules must hold. A `block` finding or a failed rule is
 * ERR_POLICY_DENIED and nothing reaches the model. When nothing changed, the request bytes are
 * forwarded as received.
 *
 * Output: masked tokens are restored in the response (message contents, completion texts),
 * and in streams event by event with a restorer per choice that holds back a token split
 * across events.
 */
import { CustodyError, utf8, type Bytes } from '@custody/core';
import { MaskVault, StreamRestorer, type PiiFinding } from '@custody/policy';
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

/** Visits every model-readable text of a request body, replacing it with `f(text)`. */
function mapTexts(route: InferenceRoute, body: Record<string, unknown>, f: (text: string) => string): void {
  const mapStringOrList = (key: string) => {
    const v = body[key];
    if (typeof v === 'string') body[key] = f(v);
    else if (Array.isArray(v)) body[key] = (v as unknown[]).map((x) => (typeof x === 'string' ? f(x) : x));
  };
  if (route === 'chat.completions') {
    const messages = body.messages;
    if (!Array.isArray(messages)) throw new CustodyError('ERR_INPUT_MALFORMED', 'messages must be a list');
    for (const m of messages) {
      if (typeof m !== 'object' || m === null) throw new CustodyError('ERR_INPUT_MALFORMED', 'a message must be an object');
      const msg = m as Record<string, unknown>;
      if (typeof msg.content === 'string') msg.content = f(msg.content);
      else if (Array.isArray(msg.content)) {
        for (const part of msg.content) {
          if (typeof part === 'object' && part !== null && typeof (part as Record<string, unknown>).text === 'string') {
            (part as Record<string, unknown>).text = f((part as Record<string, unknown>).text as string);
          }
        }
      }
    }
  } else if (route === 'completions') {
    mapStringOrList('prompt');
  } else {
    mapStringOrList('input');
  }
}

export function applyInputPolicy(route: InferenceRoute, body: Record<string, unknown>, raw: Bytes, tenant: Tenant, request: { model: string; stream: boolean }): InputPolicyResult {
  const vault = new MaskVault();
  const all: PiiFinding[] = [];
  let chars = 0;
  let changed = false;
  mapTexts(route, body, (text) => {
    chars += text.length;
    const r = tenant.pii.apply(text, vault);
    all.push(...r.findings);
    if (r.text !== text) changed = true;
    return r.text;
  });
  const counts = new Map<string, FindingSummary>();
  for (const f of all) {
    const k = `${f.category}\u0000${f.action}`;
    const c = counts.get(k);
    if (c) c.count++;
    else counts.set(k, { category: f.category, action: f.action, count: 1 });
  }
  const findings = [...counts.values()];
  const categories = [...new Set(findings.map((f) => f.category))];
  for (const rule of tenant.rules) {
    const r = rule.condition.evaluate({ request: { route, model: request.model, stream: request.stream, chars }, tenant: { id: tenant.id }, pii: { categories, count: all.length } });
    if (!r.ok) throw new CustodyError('ERR_POLICY_DENIED', `rule ${rule.id}: ${rule.reason}`, { detail: { rule: rule.id } });
  }
  const action: PolicyAction = findings.some((f) => f.action === 'mask') ? 'mask' : findings.some((f) => f.action === 'redact') ? 'redact' : findings.length > 0 ? 'allow' : 'none';
  return { body: changed ? utf8(JSON.stringify(body)) : raw, changed, vault, findings, action, rules: tenant.rules.map((r) => r.id) };
}

function restoreChoiceTexts(route: InferenceRoute, obj: Record<string, unknown>, f: (index: number, text: string, finished: boolean) => string): void {
  const choices = obj.choices;
  if (!Array.isArray(choices)) return;
  for (const c of choices) {
    if (typeof c !== 'object' || c === null) continue;
    const choice = c as Record<string, unknown>;
    const index = typeof choice.index === 'number' ? choice.index : 0;
    const finished = choice.finish_reason !== undefined && choice.finish_reason !== null;
    if (route === 'chat.completions') {
      for (const key of ['message', 'delta']) {
        const m = choice[key];
        if (typeof m === 'object' && m !== null) {
          const msg = m as Record<string, unknown>;
          if (typeof msg.content === 'string' || finished) msg.content = f(index, typeof msg.content === 'string' ? msg.content : '', finished);
        }
      }
    } else if (route === 'completions') {
      if (typeof choice.text === 'string' || finished) choice.text = f(index, typeof choice.text === 'string' ? choice.text : '', finished);
    }
  }
}

/** Restores masked tokens in a whole JSON response. */
export function restoreJson(route: InferenceRoute, bytes: Uint8Array, vault: MaskVault): Uint8Array {
  if (vault.size === 0 || route === 'embeddings') return bytes;
  let obj: unknown;
  try {
    obj = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    return bytes;
  }
  if (typeof obj !== 'object' || obj === null) return bytes;
  restoreChoiceTexts(route, obj as Record<string, unknown>, (_i, text) => vault.restore(text));
  return enc.encode(JSON.stringify(obj));
}

/**
 * Restores masked tokens in a server-sent event stream. Events that are not JSON data pass
 * unchanged; a token split across events is held back until it is complete (or the choice
 * finishes, or the stream ends).
 */
export function restoreSseStream(route: InferenceRoute, vault: MaskVault): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  const restorers = new Map<number, StreamRestorer>();
  let pending = '';
  const restorer = (i: number): StreamRestorer => {
    let r = restorers.get(i);
    if (!r) restorers.set(i, (r = new StreamRestorer(vault)));
    return r;
  };
  const flushAll = (): string => {
    let out = '';
    for (const [i, r] of restorers) {
      const rest = r.flush();
      if (rest.length > 0) {
        const choice = route === 'chat.completions' ? { index: i, delta: { content: rest }, finish_reason: null } : { index: i, text: rest, finish_reason: null };
        out += `data: ${JSON.stringify({ object: route === 'chat.completions' ? 'chat.completion.chunk' : 'text_completion', choices: [choice] })}\n\n`;
      }
    }
    restorers.clear();
    return out;
  };
  const rewrite = (event: string): string => {
    const lines = event.split('\n');
    const dataLines = lines.filter((l) => l.startsWith('data:'));
    if (dataLines.length !== 1 || lines.length !== 1) return event + '\n\n';
    const data = dataLines[0]!.slice(5).trimStart();
    if (data === '[DONE]') return flushAll() + event + '\n\n';
    let obj: unknown;
    try {
      obj = JSON.parse(data);
    } catch {
      return event + '\n\n';
    }
    if (typeof obj !== 'object' || obj === null) return event + '\n\n';
    restoreChoiceTexts(route, obj as Record<string, unknown>, (i, text, finished) => {
      const r = restorer(i);
      const out = r.push(text);
      return finished ? out + r.flush() : out;
    });
    return `data: ${JSON.stringify(obj)}\n\n`;
  };
  // The readable side queues up to 16 rewritten chunks, so events the backend has already sent
  // are rewritten ahead and the gateway can seal them together (with the default of one, every
  // event would wait for the next read and leave alone).
  const transformer: Transformer<Uint8Array, Uint8Array> = {
    transform(chunk, controller) {
      pending += decoder.decode(chunk, { stream: true });
      pending = pending.replace(/\r\n/g, '\n');
      let out = '';
      for (let at = pending.indexOf('\n\n'); at >= 0; at = pending.indexOf('\n\n')) {
        out += rewrite(pending.slice(0, at));
        pending = pending.slice(at + 2);
      }
      if (out) controller.enqueue(enc.encode(out));
    },
    flush(controller) {
      pending += decoder.decode();
      const out = (pending.trim() ? rewrite(pending.replace(/\n+$/, '')) : '') + flushAll();
      if (out) controller.enqueue(enc.encode(out));
    },
  };
  return new TransformStream<Uint8Array, Uint8Array>(transformer, undefined, { highWaterMark: 16 });
}
