import type { PiiEngine, PiiFinding } from './engine.js';

/** Characters of an answer held back before they are sent, so a value is seen whole before any of it leaves. */
export const OUTPUT_HOLD_CHARS = 128;
/** Characters already sent that stay as left context (cues such as "Dr." or "SSN:" before a value). */
const CONTEXT_CHARS = 48;

/**
 * Output policy on a streamed text (a model's answer arriving token by token): redacts what the
 * engine finds, without ever sending part of a value it would redact.
 *
 * Every character waits until `hold` more have arrived after it (or the text ends), and the text
 * is scanned with that much right context and `CONTEXT_CHARS` of what was already sent as left
 * context. A value crossing the cut is held back whole. So any value up to `hold` characters
 * long (cards, IBANs, phone numbers, national ids, addresses, names with their cue) is redacted
 * as in a whole answer; only a value longer than that can be found after its start was sent, and
 * then its remaining part is redacted. The price is latency: the client sees each character
 * about `hold` characters later (some 25 to 30 tokens), and the rest at the end.
 *
 * Findings are reported once each, as their (redacted) end is sent, through `onFinding`, with
 * offsets into the whole text. Only `redact` and `allow` actions apply here (an answer already
 * partly sent cannot be blocked); `mask` acts as `redact`.
 */
export class StreamRedactor {
  private pending = '';
  /** The tail of what was sent, as it was before redaction. */
  private context = '';
  /** Characters of the whole text before `pending`. */
  private sent = 0;

  constructor(
    private readonly engine: PiiEngine,
    private readonly onFinding: (f: PiiFinding) => void,
    private readonly hold = OUTPUT_HOLD_CHARS,
  ) {}

  push(chunk: string): string {
    this.pending += chunk;
    return this.pending.length > this.hold ? this.emit(false) : '';
  }

  /** The held-back rest, redacted: the text has ended. */
  flush(): string {
    return this.pending.length > 0 ? this.emit(true) : '';
  }

  private emit(final: boolean): string {
    const base = this.context.length;
    const text = this.context + this.pending;
    const found = this.engine.detect(text).filter((d) => d.end > base);
    let cut = final ? text.length : text.length - this.hold;
    // A value crossing the cut waits whole (detections do not overlap; from the last one back).
    for (let i = found.length - 1; i >= 0; i--) {
      const d = found[i]!;
      if (d.start < cut && d.end > cut) cut = d.start;
    }
    if (cut <= base) return '';
    let out = '';
    let at = base;
    for (const d of found) {
      if (d.end > cut) break;
      const action = this.engine.actionFor(d.category);
      this.onFinding({ category: d.category, action: action === 'allow' ? 'allow' : 'redact', start: this.sent - base + d.start, end: this.sent - base + d.end });
      if (action === 'allow') continue;
      const start = Math.max(d.start, base);
      out += text.slice(at, start) + `[${d.category.toUpperCase()}]`;
      at = d.end;
    }
    out += text.slice(at, cut);
    this.sent += cut - base;
    this.context = text.slice(Math.max(0, cut - CONTEXT_CHARS), cut);
    this.pending = text.slice(cut);
    return out;
  }
}
