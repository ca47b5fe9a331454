import { CustodyError } from '@custody/core';
import { BUILTIN_DETECTORS, customDetector, detectAll, type CustomPattern, type Detection, type Detector } from './detectors.js';

export type PiiAction = 'redact' | 'mask' | 'block' | 'allow';

export interface PiiPolicy {
  /** Action per category; categories not named use `defaultAction`. */
  actions?: Record<string, PiiAction>;
  defaultAction?: PiiAction;
  custom?: CustomPattern[];
}

/** What was found, without the values: safe for logs, metrics and the ledger. */
export interface PiiFinding {
  category: string;
  action: PiiAction;
  start: number;
  end: number;
}

export interface PiiResult {
  text: string;
  findings: PiiFinding[];
  /** Tokens standing for masked values, to restore them in the response. Holds plaintext: never log it. */
  vault: MaskVault;
}

/** A mask token: `[CATEGORY_N]`. */
const TOKEN = /\[[A-Z][A-Z0-9_]*_\d+\]/g;

/**
 * Reversible masks: each masked value becomes `[CATEGORY_N]`; the vault maps tokens back.
 * The same value within one request gets the same token, so the model can still refer to it.
 */
export class MaskVault {
  private readonly byToken = new Map<string, string>();
  private readonly byValue = new Map<string, string>();
  private readonly counters = new Map<string, number>();
  /** Token-shaped text that was in the request itself: never issued, never restored. */
  private readonly reserved = new Set<string>();

  /**
   * Keeps token-shaped text found in `text` ("[EMAIL_1]" typed by the user) from being issued,
   * so a restore never turns the user's own literal into a masked value.
   */
  reserveTokensIn(text: string): void {
    if (!text.includes('[')) return;
    for (const m of text.matchAll(TOKEN)) if (!this.byToken.has(m[0])) this.reserved.add(m[0]);
  }

  tokenFor(category: string, value: string): string {
    const key = `${category}\u0000${value}`;
    const existing = this.byValue.get(key);
    if (existing) return existing;
    let n = this.counters.get(category) ?? 0;
    let token: string;
    do token = `[${category.toUpperCase()}_${++n}]`;
    while (this.reserved.has(token));
    this.counters.set(category, n);
    this.byToken.set(token, value);
    this.byValue.set(key, token);
    return token;
  }

  get size(): number {
    return this.byToken.size;
  }

  /** Replaces every known token in `text` by its original value. */
  restore(text: string): string {
    if (this.byToken.size === 0) return text;
    // Categories are `[a-z][a-z0-9_]*` (digits too: `ssn2` gives `[SSN2_1]`).
    return text.replace(TOKEN, (t) => this.byToken.get(t) ?? t);
  }

  /** Wipes the mapping (best effort: JS strings cannot be zeroed). */
  clear(): void {
    this.byToken.clear();
    this.byValue.clear();
  }

  toJSON(): { tokens: number } {
    return { tokens: this.byToken.size };
  }
}

/** Longest mask token we hold back for when a stream splits one across chunks. */
const MAX_TOKEN = 48;

/**
 * Restores masked tokens in a stream of text chunks. A chunk ending in what may be the start of a
 * token is held back until the next chunk (or `flush`) completes it.
 */
export class StreamRestorer {
  private pending = '';

  constructor(private readonly vault: MaskVault) {}

  push(chunk: string): string {
    const text = this.pending + chunk;
    const open = text.lastIndexOf('[');
    if (open >= 0 && text.indexOf(']', open) < 0 && text.length - open <= MAX_TOKEN && /^\[(?:[A-Z][A-Z0-9_]*)?$/.test(text.slice(open))) {
      this.pending = text.slice(open);
      return this.vault.restore(text.slice(0, open));
    }
    this.pending = '';
    return this.vault.restore(text);
  }

  flush(): string {
    const rest = this.vault.restore(this.pending);
    this.pending = '';
    return rest;
  }
}

export class PiiEngine {
  private readonly detectors: Detector[];
  private readonly actions: Record<string, PiiAction>;
  private readonly defaultAction: PiiAction;

  constructor(policy: PiiPolicy = {}) {
    this.actions = policy.actions ?? {};
    this.defaultAction = policy.defaultAction ?? 'redact';
    this.detectors = [...BUILTIN_DETECTORS];
    for (const c of policy.custom ?? []) {
      try {
        this.detectors.push(customDetector(c));
      } catch (e) {
        throw new CustodyError('ERR_POLICY_INVALID', `custom PII pattern for "${c.category}" is not a valid regular expression`, { cause: e });
      }
    }
  }

  actionFor(category: string): PiiAction {
    // Own members only: a category named like an Object.prototype member ("constructor") is a category.
    return (Object.hasOwn(this.actions, category) ? this.actions[category] : undefined) ?? this.defaultAction;
  }

  detect(text: string): Detection[] {
    return detectAll(text, this.detectors);
  }

  /**
   * Applies the policy. A `block` finding throws ERR_POLICY_DENIED naming the categories (never
   * the values); otherwise returns the rewritten text, the findings and the mask vault.
   */
  apply(text: string, vault = new MaskVault()): PiiResult {
    vault.reserveTokensIn(text);
    const findings: PiiFinding[] = this.detect(text).map((d) => ({ ...d, action: this.actionFor(d.category) }));
    const blocked = [...new Set(findings.filter((f) => f.action === 'block').map((f) => f.category))];
    if (blocked.length > 0) {
      throw new CustodyError('ERR_POLICY_DENIED', `input contains ${blocked.join(', ')}, which the policy blocks`, { detail: { categories: blocked.join(',') } });
    }
    let out = '';
    let at = 0;
    for (const f of findings) {
      if (f.action === 'allow') continue;
      out += text.slice(at, f.start);
      const value = text.slice(f.start, f.end);
      out += f.action === 'mask' ? vault.tokenFor(f.category, value) : `[${f.category.toUpperCase()}]`;
      at = f.end;
    }
    out += text.slice(at);
    return { text: out, findings, vault };
  }
}
