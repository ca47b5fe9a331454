import { ibanValid, ipv4Valid, ipv6Valid, luhnValid, ssnValid } from './checksums.js';
import { findPersonNames, trimToLettersAndDigits } from './names.js';

export const PII_CATEGORIES = ['person_name', 'email', 'phone', 'national_id', 'payment_card', 'iban', 'ip_address', 'date_of_birth'] as const;
export type BuiltinCategory = (typeof PII_CATEGORIES)[number];

export interface Detection {
  category: string;
  start: number;
  end: number;
}

export interface Detector {
  category: string;
  /** Higher wins when two detections overlap (a card number is not also a phone number). */
  priority: number;
  find(text: string): Detection[];
  /**
   * Also run on the text as sent, not only folded (`detectAll`): a custom pattern may be written
   * with characters the fold rewrites ("患者ID：", Devanagari digits, a ZWNJ).
   */
  raw?: boolean;
}

/** What every match of an expression contains: a string, or an ASCII digit (what `\d` matches). */
type Needs = string | typeof DIGIT;
const DIGIT: unique symbol = Symbol('an ASCII digit');

/** Whether the last text asked about has an ASCII digit: the digit detectors ask of the same text in turn. */
let digitText: string | undefined;
let digitFound = false;
function hasDigit(text: string): boolean {
  if (text !== digitText) {
    digitText = text;
    digitFound = /\d/.test(text);
  }
  return digitFound;
}

/**
 * `needs`: what every match contains; text without it is skipped without running the expression
 * (an e-mail address has an '@', an IPv6 address a ':', a card, IBAN, national id, IPv4 address,
 * phone number or date a digit), which saves a regex scan of every prompt that has none.
 */
function regexDetector(category: string, priority: number, re: RegExp, valid: (m: string) => boolean = () => true, group = 0, needs?: Needs): Detector {
  return {
    category,
    priority,
    find(text) {
      const out: Detection[] = [];
      if (needs === DIGIT ? !hasDigit(text) : needs !== undefined && !text.includes(needs)) return out;
      for (const m of text.matchAll(re)) {
        const value = m[group];
        if (value === undefined || !valid(value)) continue;
        const start = m.index + m[0].indexOf(value);
        out.push({ category, start, end: start + value.length });
      }
      return out;
    },
  };
}

const digitsOf = (s: string): string => s.replace(/\D/g, '');

/** RFC 5322-ish addresses as people write them (dot-atoms, no quoted local parts). */
const EMAIL = /(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_])?@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])/g;
/** 13-19 digits, optionally grouped by single spaces or dashes, Luhn-valid. */
const CARD = /(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])/g;
const IBAN = /(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8}(?![A-Za-z0-9])/g;
const SSN = /(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])/g;
/** An SSN written with spaces or no separators counts only after an SSN cue. */
const SSN_CUED = /\b(?:SSN|SS#|social security(?: number| no\.?)?)[:#\s]*(\d{3}[ -]?\d{2}[ -]?\d{4})(?![\d-])/gi;
/** UK National Insurance number. */
const NINO = /(?<![A-Za-z0-9])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?![A-Za-z0-9])/g;
const IPV4 = /(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.]*\d)/g;
const IPV6 = /(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![0-9A-Fa-f:])/g;
/**
 * Phone numbers: an optional +country code, then 7-15 digits in groups separated by a space,
 * dot or dash, optionally with a trunk prefix ("+44 (0)20 ..."), an area code in parentheses and
 * an extension.
 */
const PHONE = /(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(0\) ?)?(?:\(\d{2,4}\)[ .-]?|\d{1,4}[ .-])(?:\d{2,4}[ .-]){1,3}\d{2,8}(?: ?(?:x|ext\.?|extension) ?\d{1,6})?(?![\w])/gi;
const DATE = String.raw`(?:\d{4}-\d{2}-\d{2}|\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.? \d{1,2},? \d{4}|\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.? \d{4})`;
/** A date is a date of birth only with a cue just before it. */
const DOB = new RegExp(String.raw`(?:\b(?:DOB|date of birth|birth ?date|birthday|born(?: on)?)\b|\bD\.O\.B\.)[:\s]*(?:is\s+|was\s+|of\s+)?(${DATE})`, 'gi');

export const BUILTIN_DETECTORS: readonly Detector[] = [
  regexDetector('email', 90, EMAIL, () => true, 0, '@'),
  regexDetector('iban', 85, IBAN, ibanValid, 0, DIGIT),
  regexDetector('payment_card', 80, CARD, (m) => luhnValid(digitsOf(m)) && !/^(\d)\1+$/.test(digitsOf(m)), 0, DIGIT),
  regexDetector('national_id', 75, SSN, ssnValid, 0, DIGIT),
  regexDetector('national_id', 76, SSN_CUED, (m) => ssnValid(m.replace(/ /g, '-')), 1, DIGIT),
  regexDetector('national_id', 75, NINO, () => true, 0, DIGIT),
  regexDetector('date_of_birth', 70, DOB, () => true, 1, DIGIT),
  regexDetector('ip_address', 65, IPV4, ipv4Valid, 0, DIGIT),
  regexDetector('ip_address', 65, IPV6, (m) => m.includes(':') && ipv6Valid(m) && /[0-9a-fA-F]{1,4}:[0-9a-fA-F]{0,4}:/.test(m), 0, ':'),
  regexDetector('phone', 61, /(?<![\w+])\+[1-9]\d{7,14}(?!\w)/g, () => true, 0, DIGIT),
  regexDetector(
    'phone',
    60,
    PHONE,
    (m) => {
      if (/^\d{4}-\d{2}-\d{2}$|^\d{1,2}[.-]\d{1,2}[.-]\d{2,4}$/.test(m)) return false; // a date
      const n = digitsOf(m.replace(/(?:x|ext\.?|extension) ?\d+$/i, '')).length;
      return n >= 7 && n <= 15;
    },
    0,
    DIGIT,
  ),
  { category: 'person_name', priority: 10, find: (text) => findPersonNames(text).map((s) => ({ category: 'person_name', ...s })) },
];

/** A user-configured pattern such as a medical record number. */
export interface CustomPattern {
  category: string;
  pattern: string;
  flags?: string;
  /** Which capture group is the sensitive value (0 = whole match). */
  group?: number;
  priority?: number;
}

export function customDetector(p: CustomPattern): Detector {
  const flags = (p.flags ?? '').replace(/g/g, '') + 'g';
  return { ...regexDetector(p.category, p.priority ?? 95, new RegExp(p.pattern, flags), () => true, p.group ?? 0), raw: true };
}

/**
 * The text as the detectors read it, when folding changes it: each character folded to what the
 * ASCII patterns expect, so a value cannot slip past them by its spelling. Segment `i` covers
 * folded characters from `at[i]` and the text from `src[i]`: a run copied as it is (`len[i]` =
 * -1: character for character), or one code point of `len[i]` code units folded (every folded
 * character of it stands for the whole code point).
 */
interface FoldedText {
  text: string;
  at: number[];
  src: number[];
  len: number[];
}

/** A UTF-16 code unit outside ASCII (surrogates included). */
const NON_ASCII = /[\u0080-\uffff]/;
const REMOVABLE = /^[\p{Cf}\p{Default_Ignorable_Code_Point}]$/u;
const SPACE = /^\p{Zs}$/u;
const DECIMAL = /^\p{Nd}$/u;
const ALNUM = /^[A-Za-z0-9]+$/;
/** Hyphens and dashes written inside numbers and identifiers (not em dashes, which separate words). */
const DASHES = new Set([0x2010, 0x2011, 0x2012, 0x2013, 0x2212]);
/** Ideographic full stops, read as dots in addresses as IDNA reads them. */
const FULL_STOPS = new Set([0x3002, 0xff61, 0xfe12]);
/** Per code point: 0 not yet known, 1 folds to itself, 2 folds to `changed.get(cp)`. */
let state: Uint8Array | undefined;
/** What the code points that fold to something else fold to (a fixed, finite set: a few thousand). */
const changed = new Map<number, string>();

/** The value of a decimal digit of any script: Unicode encodes each script's digits 0 to 9 in runs of ten. */
function digitValue(cp: number): number {
  let k = 0;
  while (DECIMAL.test(String.fromCodePoint(cp - k - 1))) k++;
  return k % 10;
}

/**
 * One code point folded: invisible characters (format characters and the default-ignorable ones:
 * zero-width spaces and joiners, soft hyphens, direction marks, variation selectors, fillers) to
 * nothing; any space to ' '; a compatibility form whose NFKC form is one ASCII character, or
 * ASCII letters and digits (fullwidth digits, letters, '@' and '.', superscript digits,
 * ligatures), to that; hyphens, en dashes and the minus sign to '-'; ideographic full stops to
 * '.'; a decimal digit of any script to its ASCII digit. Anything else (em dashes and ellipses,
 * which separate words, included) stays as it is.
 */
function computeFold(cp: number): string {
  const ch = String.fromCodePoint(cp);
  if (REMOVABLE.test(ch)) return '';
  if (SPACE.test(ch)) return ' ';
  const nfkc = ch.normalize('NFKC');
  if (nfkc !== ch && ((nfkc.length === 1 && nfkc.charCodeAt(0) < 0x80) || ALNUM.test(nfkc))) return nfkc;
  if (DASHES.has(cp)) return '-';
  if (FULL_STOPS.has(cp)) return '.';
  if (DECIMAL.test(ch)) return String(digitValue(cp));
  return ch;
}

/** The fold of a non-ASCII code point, or undefined when it folds to itself. */
function foldOf(cp: number): string | undefined {
  state ??= new Uint8Array(0x110000);
  const s = state[cp];
  if (s === 1) return undefined;
  if (s === 2) return changed.get(cp);
  const f = computeFold(cp);
  if (f === String.fromCodePoint(cp)) {
    state[cp] = 1;
    return undefined;
  }
  changed.set(cp, f);
  state[cp] = 2;
  return f;
}

/** Whether a code unit is read as nothing (the stream redactor does not count it toward what it holds). */
export function foldsToNothing(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  return c >= 0x80 && foldOf(text.codePointAt(i)!) === '';
}

/** `undefined` when folding changes nothing (ASCII text, or text whose every character folds to itself). */
function foldForDetection(text: string): FoldedText | undefined {
  const first = text.search(NON_ASCII);
  if (first < 0) return undefined;
  let parts: string[] | undefined;
  const at: number[] = [];
  const src: number[] = [];
  const len: number[] = [];
  let size = 0;
  /** Start of the run of characters copied as they are. */
  let run = 0;
  for (let i = first; i < text.length; ) {
    const c = text.charCodeAt(i);
    if (c < 0x80) {
      i++;
      continue;
    }
    const cp = text.codePointAt(i)!;
    const n = cp > 0xffff ? 2 : 1;
    const f = foldOf(cp);
    if (f === undefined) {
      i += n;
      continue;
    }
    parts ??= [];
    if (i > run) {
      at.push(size);
      src.push(run);
      len.push(-1);
      parts.push(text.slice(run, i));
      size += i - run;
    }
    if (f.length > 0) {
      at.push(size);
      src.push(i);
      len.push(n);
      parts.push(f);
      size += f.length;
    }
    i += n;
    run = i;
  }
  if (!parts) return undefined;
  if (run < text.length) {
    at.push(size);
    src.push(run);
    len.push(-1);
    parts.push(text.slice(run));
  }
  return { text: parts.join(''), at, src, len };
}

/** The segment of folded character `k` (the last whose start is at or before it). */
function segmentOf(f: FoldedText, k: number): number {
  let lo = 0;
  let hi = f.at.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (f.at[mid]! <= k) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Where the text behind folded character `k` starts. */
function sourceStart(f: FoldedText, k: number): number {
  const s = segmentOf(f, k);
  return f.len[s] === -1 ? f.src[s]! + (k - f.at[s]!) : f.src[s]!;
}

/** Where the text behind folded character `k` ends. */
function sourceEnd(f: FoldedText, k: number): number {
  const s = segmentOf(f, k);
  return f.len[s] === -1 ? f.src[s]! + (k - f.at[s]!) + 1 : f.src[s]! + f.len[s]!;
}

type Candidate = Detection & { priority: number };

function candidates(text: string, detectors: readonly Detector[]): Candidate[] {
  const all: Candidate[] = [];
  for (const d of detectors) for (const hit of d.find(text)) if (hit.end > hit.start) all.push({ ...hit, priority: d.priority });
  return all;
}

/**
 * Runs detectors and resolves overlaps: higher priority first, then longer spans. Text that
 * folding changes is read folded (`computeFold`): a card number in fullwidth digits, a phone
 * number with no-break spaces or en dashes, an address with a fullwidth '@' or digits with
 * zero-width spaces between them are found as their ASCII spelling would be, and the spans
 * returned are those of the text as given (what is redacted or masked is what was sent).
 * Custom patterns also run on the text as given, and what they find there counts too.
 */
export function detectAll(text: string, detectors: readonly Detector[]): Detection[] {
  const folded = foldForDetection(text);
  if (!folded) return resolve(text, candidates(text, detectors)).map(plain);
  const mapped: Candidate[] = [];
  let end = 0;
  for (const d of resolve(folded.text, candidates(folded.text, detectors))) {
    // Two values folded from one character (a ligature) would overlap in the text: the later starts where the earlier ends.
    const start = Math.max(sourceStart(folded, d.start), end);
    const stop = sourceEnd(folded, d.end - 1);
    if (stop <= start) continue;
    mapped.push({ category: d.category, start, end: stop, priority: d.priority });
    end = stop;
  }
  const raw = detectors.some((d) => d.raw) ? candidates(text, detectors.filter((d) => d.raw)) : [];
  return (raw.length > 0 ? resolve(text, [...mapped, ...raw]) : mapped).map(plain);
}

function plain(c: Candidate): Detection {
  return { category: c.category, start: c.start, end: c.end };
}

/** Overlapping candidates resolved: higher priority first, then longer spans; in text order. */
function resolve(text: string, all: Candidate[]): Candidate[] {
  all.sort((a, b) => b.priority - a.priority || b.end - b.start - (a.end - a.start) || a.start - b.start);
  const taken: Candidate[] = [];
  // Characters already taken, once there are enough detections for a pairwise check to cost more
  // than marking them (a long text full of values): then each candidate checks its own characters.
  let covered: Uint8Array | undefined;
  const cover = (): Uint8Array => {
    if (covered === undefined) {
      covered = new Uint8Array(text.length);
      for (const t of taken) covered.fill(1, t.start, t.end);
    }
    return covered;
  };
  if (all.length > 32) cover();
  const free = (start: number, end: number): boolean => {
    if (covered === undefined) return !taken.some((t) => start < t.end && t.start < end);
    for (let i = start; i < end; i++) if (covered[i] === 1) return false;
    return true;
  };
  const take = (category: string, start: number, end: number, priority: number) => {
    taken.push({ category, start, end, priority });
    covered?.fill(1, start, end);
  };
  for (const c of all) {
    if (free(c.start, c.end)) take(c.category, c.start, c.end, c.priority);
    // A name that overlaps something else ("Globex Ruiz" where a custom pattern takes "Globex")
    // keeps the parts of it that are free, so no part of it goes out unmasked.
    else if (c.category === 'person_name') {
      const marks = cover();
      let i = c.start;
      while (i < c.end) {
        while (i < c.end && marks[i] === 1) i++;
        let j = i;
        while (j < c.end && marks[j] === 0) j++;
        const piece = trimToLettersAndDigits(text, i, j);
        if (piece !== undefined) take(c.category, piece.start, piece.end, c.priority);
        i = j;
      }
    }
  }
  return taken.sort((a, b) => a.start - b.start);
}
