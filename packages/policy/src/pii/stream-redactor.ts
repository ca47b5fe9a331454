import type { PiiEngine, PiiFinding } from './engine.js';
import { foldsToNothing, type Detection } from './detectors.js';

/** Characters of an answer held back before they are sent, so a value is seen whole before any of it leaves. */
export const OUTPUT_HOLD_CHARS = 128;
/** Characters gathered past the hold before the held text is scanned again (fewer scans; that much more latency). */
export const OUTPUT_STEP_CHARS = 32;
/** Characters already sent that stay as left context (cues such as "Dr." or "SSN:" before a value). */
const CONTEXT_CHARS = 48;
/** Most characters held for one value that keeps growing (times the hold): past it, what was seen is redacted and sent. */
const MAX_HELD_FACTOR = 4;

/**
 * Output policy on a streamed text (a model's answer arriving token by token): redacts what the
 * engine finds, without ever sending part of a value it would redact.
 *
 * Every character waits until `hold` more have arrived after it (or the text ends; characters the
 * detectors read as nothing, such as zero-width spaces, do not count, up to `MAX_HELD_FACTOR *
 * hold` code units held), and the text
 * is scanned with that much right context and `CONTEXT_CHARS` of what was already sent as left
 * context. A value crossing the cut is held back whole. So any value up to `hold` characters
 * long (cards, IBANs, phone numbers, national ids, addresses, names with their cue) is redacted
 * as in a whole answer. Longer values are bounded, not held without end:
 *  - a value still growing when `MAX_HELD_FACTOR * hold` characters are held (a custom pattern
 *    matching a long run, an address with endless labels) is redacted as far as it has come,
 *    and its continuation is dropped until it ends (one placeholder in all);
 *  - a value recognised only by text more than `hold` characters after its start (a multi-line
 *    block whose end marker comes late) may have been sent in part before it is recognised, and
 *    its cue may have left the left context: such patterns are only reliable on whole answers.
 * The scan window is bounded (context, held text and the new piece), so the cost per piece does
 * not grow with the answer, and the held text is scanned once per `step` characters, not per
 * piece. A cut never splits a surrogate pair. The price is latency: the client sees each
 * character `hold` to `hold + step` characters later, and the rest at the end.
 *
 * Findings are reported once each, through `onFinding`, with offsets into the whole text (a
 * value cut short as above is reported as far as it was seen). Only `redact` and `allow` apply
 * here (an answer already partly sent cannot be blocked); `mask` acts as `redact`.
 */
export class StreamRedactor {
  private pending = '';
  /** The tail of what was sent, as it was before redaction. */
  private context = '';
  /** Characters of the whole text before `pending`. */
  private sent = 0;
  /** The last thing sent was a placeholder for a value that had not ended: its continuation is dropped. */
  private suppressing = false;

  constructor(
    private readonly engine: PiiEngine,
    private readonly onFinding: (f: PiiFinding) => void,
    private readonly hold = OUTPUT_HOLD_CHARS,
    private readonly step = OUTPUT_STEP_CHARS,
  ) {}

  push(chunk: string): string {
    this.pending += chunk;
    return this.pending.length > this.hold + this.step ? this.emit(false) : '';
  }

  /** The held-back rest, redacted: the text has ended. */
  flush(): string {
    return this.pending.length > 0 ? this.emit(true) : '';
  }

  private emit(final: boolean): string {
    const base = this.context.length;
    const text = this.context + this.pending;
    const found = this.engine.detect(text).filter((d) => d.end > base);
    const maxHeld = this.hold * MAX_HELD_FACTOR;
    let cut = final ? text.length : this.holdStart(text);
    // A value crossing the cut waits whole (detections do not overlap; from the last one back),
    // unless it started before this round (its start was sent or dropped already) or has grown
    // past the bound: then it is cut here, redacted, and its continuation dropped.
    for (let i = found.length - 1; i >= 0; i--) {
      const d = found[i]!;
      if (d.start < cut && d.end > cut && d.start >= base && text.length - d.start <= maxHeld) cut = d.start;
    }
    if (!final && cut > base && cut < text.length && isHighSurrogate(text.charCodeAt(cut - 1))) cut--;
    if (cut <= base) return '';
    let out = '';
    let at = base;
    let open = false;
    if (this.suppressing) {
      // The value cut short last round goes on: dropped while the engine still sees it, or (when
      // its start has left the context and the engine no longer can) up to the next whitespace.
      const cont = found.find((d) => d.start < base && this.engine.actionFor(d.category) !== 'allow');
      if (cont) {
        at = Math.min(cont.end, cut);
        open = cont.end > cut;
      } else {
        const ws = text.slice(base, cut).search(/\s/);
        at = ws < 0 ? cut : base + ws;
        open = ws < 0;
      }
    }
    for (const d of found) {
      if (d.start >= cut) break;
      if (d.end <= at) continue;
      const action = this.engine.actionFor(d.category);
      if (this.suppressing && d.start < at) {
        // Still the value being dropped.
        if (action !== 'allow') {
          at = Math.min(d.end, cut);
          open = d.end > cut;
        }
        continue;
      }
      // Reported once: a redacted value when it is first cut or sent, an allowed one when it ends.
      if (action !== 'allow' || d.end <= cut) this.report(d, action, base);
      if (action === 'allow') continue;
      out += text.slice(at, Math.max(d.start, at)) + `[${d.category.toUpperCase()}]`;
      at = Math.min(d.end, cut);
      open = d.end > cut;
    }
    out += text.slice(at, cut);
    this.suppressing = open;
    this.sent += cut - base;
    this.context = text.slice(Math.max(0, cut - CONTEXT_CHARS), cut);
    this.pending = text.slice(cut);
    return out;
  }

  /**
   * Where the held tail starts: `hold` characters back from the end, not counting those the
   * detectors read as nothing (zero-width spaces, variation selectors...), so a value padded
   * with them is still held whole; but never more than `hold * MAX_HELD_FACTOR` code units back.
   */
  private holdStart(text: string): number {
    const limit = Math.max(0, text.length - this.hold * MAX_HELD_FACTOR);
    let i = text.length;
    let seen = 0;
    while (i > limit && seen < this.hold) {
      i--;
      // A surrogate pair is one character, read at its first unit.
      if (i > limit && isLowSurrogate(text.charCodeAt(i)) && isHighSurrogate(text.charCodeAt(i - 1))) i--;
      if (!foldsToNothing(text, i)) seen++;
    }
    return i;
  }

  private report(d: Detection, action: string, base: number): void {
    const offset = this.sent - base;
    this.onFinding({ category: d.category, action: action === 'allow' ? 'allow' : 'redact', start: offset + d.start, end: offset + d.end });
  }
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}

function isLowSurrogate(c: number): boolean {
  return c >= 0xdc00 && c <= 0xdfff;
}
