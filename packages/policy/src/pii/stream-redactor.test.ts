import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PiiEngine, type PiiFinding } from './engine.js';
import { StreamRedactor } from './stream-redactor.js';
import { generateCorpus } from './testing/corpus.js';

const redactAll = new PiiEngine({ defaultAction: 'redact' });
const cardsOnly = new PiiEngine({ defaultAction: 'allow', actions: { payment_card: 'redact', national_id: 'redact' } });

/** The text through a StreamRedactor in the given pieces: what leaves, and the findings. */
function stream(engine: PiiEngine, pieces: string[], hold?: number): { out: string; emitted: string[]; findings: PiiFinding[] } {
  const findings: PiiFinding[] = [];
  const r = new StreamRedactor(engine, (f) => findings.push(f), hold);
  const emitted = pieces.map((p) => r.push(p));
  emitted.push(r.flush());
  return { out: emitted.join(''), emitted, findings };
}

/** Cuts `text` at the given fractions. */
function split(text: string, cuts: number[]): string[] {
  const at = [...new Set(cuts.map((c) => Math.floor(c * text.length)))].sort((a, b) => a - b);
  const out: string[] = [];
  let prev = 0;
  for (const a of at) {
    out.push(text.slice(prev, a));
    prev = a;
  }
  out.push(text.slice(prev));
  return out;
}

describe('StreamRedactor', () => {
  it('redacts a value split across tokens, and never sends any part of it', () => {
    const tokens = ['Your card ', '4111', ' 1111', ' 1111', ' 1111', ' is on file', ...Array.from({ length: 40 }, (_, i) => ` word${i}`)];
    const { out, emitted, findings } = stream(cardsOnly, tokens);
    expect(out).toBe(cardsOnly.apply(tokens.join('')).text);
    expect(out).toContain('Your card [PAYMENT_CARD] is on file');
    for (const e of emitted) expect(e).not.toMatch(/4111|1111/);
    expect(findings).toEqual([{ category: 'payment_card', action: 'redact', start: 10, end: 29 }]);
  });

  it('holds a card padded with zero-width spaces between every digit (longer than the hold) until it is whole', () => {
    const card = [...'4111111111111111'].join('\u200B'.repeat(12));
    expect(card.length).toBeGreaterThan(128);
    const text = `Your card ${card} is on file` + Array.from({ length: 40 }, (_, i) => ` word${i}`).join('');
    for (const pieces of [[...text], split(text, [0.1, 0.3, 0.5, 0.7])]) {
      const { out, emitted } = stream(cardsOnly, pieces);
      expect(out).toBe(cardsOnly.apply(text).text);
      expect(out).toContain('Your card [PAYMENT_CARD] is on file');
      for (const e of emitted) expect(e.replace(/\u200B/g, '')).not.toMatch(/\d{4}/);
    }
  });

  it('redacts a card written in fullwidth digits with zero-width spaces, sent one character at a time', () => {
    const card = '\uFF14\uFF11\uFF11\uFF11\u200B \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11 \uFF11\uFF11\uFF11\uFF11';
    const text = `Your card ${card} is on file` + Array.from({ length: 40 }, (_, i) => ` word${i}`).join('');
    const { out, emitted, findings } = stream(cardsOnly, [...text]);
    expect(out).toBe(cardsOnly.apply(text).text);
    expect(out).toContain('Your card [PAYMENT_CARD] is on file');
    for (const e of emitted) expect(e).not.toMatch(/[\uFF10-\uFF19]/);
    expect(findings).toEqual([{ category: 'payment_card', action: 'redact', start: 10, end: 10 + card.length }]);
  });

  it('holds back `hold` characters (scanning again every `step`), and sends the rest at the end', () => {
    const r = new StreamRedactor(cardsOnly, () => undefined, 16, 0);
    expect(r.push('0123456789')).toBe('');
    expect(r.push('abcdefghij')).toBe('0123');
    expect(r.flush()).toBe('456789abcdefghij');
    expect(r.flush()).toBe('');
    const stepped = new StreamRedactor(cardsOnly, () => undefined, 16, 8);
    expect(stepped.push('0123456789abcdefghij')).toBe('');
    expect(stepped.push('klmno')).toBe('012345678');
    expect(stepped.push('p')).toBe('');
  });

  it('reports allowed findings without changing them', () => {
    const { out, findings } = stream(cardsOnly, ['mail ann@example.com ', 'or SSN 123-45-6789 ', 'x'.repeat(200)]);
    expect(out).toContain('mail ann@example.com or SSN [NATIONAL_ID] ');
    expect(findings.map((f) => [f.category, f.action])).toEqual([
      ['email', 'allow'],
      ['national_id', 'redact'],
    ]);
  });

  // Over the labelled corpus, cut at random places: the streamed answer is the whole-text
  // redaction, and each finding is reported once (the whole text's detections, in order).
  // Five documents to a text (some 1,200 characters), so values cross many cuts and hold-backs.
  const corpus = generateCorpus(60, 4242).map((d) => d.text);
  const docs = Array.from({ length: 12 }, (_, i) => corpus.slice(i * 5, i * 5 + 5).join('\n'));
  it('equals the whole-text redaction for any split of realistic text (corpus, random cuts)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: docs.length - 1 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 40 }), (i, cuts) => {
        const text = docs[i]!;
        const { out, findings } = stream(redactAll, split(text, cuts));
        expect(out).toBe(redactAll.apply(text).text);
        expect(findings.map((f) => [f.category, f.start, f.end])).toEqual(redactAll.detect(text).map((d) => [d.category, d.start, d.end]));
      }),
      { numRuns: 300 },
    );
  });

  it('token by token (one to four characters at a time) over every corpus document', () => {
    for (const text of docs) {
      const pieces: string[] = [];
      for (let at = 0, n = 1; at < text.length; at += n, n = (n % 4) + 1) pieces.push(text.slice(at, at + n));
      expect(stream(redactAll, pieces).out).toBe(redactAll.apply(text).text);
    }
  });

  it('text with combining marks, token by token: the same as the whole answer (names masked whole, the rest as it came)', () => {
    const intl = generateCorpus(40, 4243, 'development', 'international').map((d) => d.text.normalize('NFD')).filter((t) => t !== t.normalize('NFC'));
    expect(intl.length).toBeGreaterThan(10);
    for (const text of intl) {
      const pieces: string[] = [];
      for (let at = 0, n = 1; at < text.length; at += n, n = (n % 4) + 1) pieces.push(text.slice(at, at + n));
      expect(stream(redactAll, pieces).out).toBe(redactAll.apply(text).text);
    }
    const { out } = stream(redactAll, [...'The patient José García was seen.'.normalize('NFD')]);
    expect(out).toBe('The patient [PERSON_NAME] was seen.');
  });

  /** An engine that counts the characters it scans (the redactor's work). */
  class CountingEngine extends PiiEngine {
    scanned = 0;
    override detect(text: string) {
      this.scanned += text.length;
      return super.detect(text);
    }
  }

  const growing: { name: string; engine: () => CountingEngine; lead: string; piece: string; leaks: RegExp; placeholder: string }[] = [
    { name: 'a custom pattern over an endless token', engine: () => new CountingEngine({ defaultAction: 'allow', actions: { secret: 'redact' }, custom: [{ category: 'secret', pattern: '[A-Za-z0-9+/]{32,}' }] }), lead: 'key ', piece: 'AbCd', leaks: /AbCd/, placeholder: 'key [SECRET]' },
    { name: 'an e-mail address with endless domain labels', engine: () => new CountingEngine({ defaultAction: 'allow', actions: { email: 'redact' } }), lead: 'Write to x@', piece: 'ab.', leaks: /ab\./, placeholder: 'Write to [EMAIL]' },
  ];
  for (const g of growing) {
    it(`bounds a value that keeps growing (${g.name}): redacted as far as seen, the rest dropped, work linear in the text`, () => {
      for (const n of [20_000, 40_000]) {
        const engine = g.engine();
        const found: PiiFinding[] = [];
        const r = new StreamRedactor(engine, (f) => found.push(f));
        let out = r.push(g.lead);
        for (let i = 0; i < n; i += g.piece.length) out += r.push(g.piece);
        // Something left before the end (not held whole), and none of the value.
        expect(out).toBe(g.placeholder);
        out += r.push(' and then the answer goes on.' + ' more'.repeat(40)) + r.flush();
        expect(out).not.toMatch(g.leaks);
        expect(out.startsWith(g.placeholder + ' and then the answer goes on.')).toBe(true);
        expect(found.filter((f) => f.action === 'redact')).toHaveLength(1);
        // Each push scans at most the bounded window: no rescan of the whole value per token.
        expect(engine.scanned).toBeLessThan((n / g.piece.length) * (48 + 4 * 128 + 8 + g.piece.length) + 10_000);
      }
    });
  }

  it('never cuts between the halves of a surrogate pair', () => {
    const r = new StreamRedactor(cardsOnly, () => undefined);
    const pieces: string[] = [];
    for (let i = 0; i < 200; i++) pieces.push(r.push('\u{1F600}a'));
    pieces.push(r.flush());
    for (const p of pieces) {
      expect(p).not.toMatch(/[\uD800-\uDBFF]$/);
      expect(p).not.toMatch(/^[\uDC00-\uDFFF]/);
    }
    expect(pieces.join('')).toBe('\u{1F600}a'.repeat(200));
  });
});
