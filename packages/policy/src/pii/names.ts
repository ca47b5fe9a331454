/**
 * Person-name detection without a model: runs of capitalised words, cut at words that are
 * capitalised for other reasons (sentence starts, titles of things, places of work), and
 * accepted when two or more name-shaped words remain, or one after a strong cue ("Dr.",
 * "Dear", "Patient:"). On weaker cues (a team after the word: "Ann from Legal"; a phrase that
 * introduces a person: "talked to Zane", "this is zane here"; "per Ann's note") a single word is
 * taken only when it is a known given name (given-names.ts) and not everyday English
 * (common-words.ts): a word missing from a dictionary is no evidence of a name (drug, vendor and
 * product names are missing too), so these rules need positive evidence. Names written in lower
 * case are taken after a phrase that introduces a person: a given name, or two words neither of
 * which is everyday English ("this is tasha jaskolski,"), or a given name and such a word ("spoke
 * to maria lopez"). Letters are Unicode letters ("José García" is masked whole). The word lists
 * are generic, not tuned to any test corpus.
 */
import { isCommonWord } from './common-words.js';
import { isGivenName } from './given-names.js';

export const HONORIFICS = new Set(['mr', 'mrs', 'ms', 'miss', 'mx', 'dr', 'prof', 'sir', 'madam', 'rev', 'fr', 'sr', 'sra', 'srta', 'dra', 'herr', 'frau', 'mme', 'mlle', 'm', 'dhr', 'mevr', 'sig', 'sig.ra', 'dott']);
/** Titles that are also acronyms ("SIG Meeting", "DRA Report"): a title only written with a period ("Sig. Rossi", "Dhr. van Dijk"). */
const PERIOD_HONORIFICS = new Set(['srta', 'dra', 'dhr', 'mevr', 'sig', 'sig.ra', 'dott']);

/** Words after which a single capitalised word is taken as a name. */
export const NAME_CUES = new Set([
  'dear', 'hi', 'hello', 'hey', 'thanks', 'regards', 'sincerely', 'patient', 'name', 'customer', 'client', 'member',
  'applicant', 'cardholder', 'account holder', 'signed', 'attn', 'attention', 'contact', 'caller', 'user', 'employee',
  'beneficiary', 'payee', 'insured', 'guarantor', 'physician', 'nurse', 'agent', 'representative', 'mother', 'father',
  'son', 'daughter', 'wife', 'husband', 'spouse', 'brother', 'sister', 'colleague', 'manager',
]);

export const NAME_SUFFIXES = new Set(['jr', 'sr', 'ii', 'iii', 'iv', 'v', 'md', 'phd', 'dds', 'dvm', 'rn', 'esq', 'cpa', 'do', 'np', 'pa']);

/**
 * Capitalised words that are never part of a name: function words at sentence starts,
 * greetings, titles.
 */
export const NOT_NAME_WORDS = new Set(
  (
    'a an the this that these those there here it its i we you he she they my our your his her their me us them ' +
    'and or but if then so as at by for from in into of on onto to with without within about above across after against along among around ' +
    'before behind below beneath beside between beyond during except inside near off out outside over per since through toward under until up upon via ' +
    'is are was were be been being am has have had do does did will would shall should can could may might must not no yes ok okay ' +
    'please thank thanks hello hi dear regards sincerely best kind warm cheers note notes re fw fwd subject summary update reminder urgent important ' +
    'what when where which who whom whose why how all any each every some many much more most other another such only own same than too very just also ' +
    'monday tuesday wednesday thursday friday saturday sunday january february march april may june july august september october november december ' +
    'mr mrs ms miss dr prof sir madam ' +
    'sent received attached see called spoke confirmed verified reported noted requested approved denied declined ' +
    // Departments and business functions ("Customer Success", "Legal"): never a name, even after a cue.
    'success experience legal finance compliance marketing engineering operations security procurement payroll facilities ' +
    'accounting admissions pharmacy radiology cardiology oncology pediatrics surgery triage reception human resources relations ' +
    'collections fraud risk audit treasury underwriting shipping logistics warehouse returns product design research quality ' +
    // Things that come "from billing" or sit "in accounts" at the start of a sentence.
    'data information requests reports documents files updates changes emails messages calls approvals figures numbers ' +
    'details forms feedback complaints questions tickets funds charges errors'
  ).split(/\s+/).filter((w) => !['will', 'may', 'june', 'april', 'august', 'march'].includes(w)),
);

/**
 * Capitalised words that are usually not names (calendar words, nouns in titles of things,
 * places of work) but are also given names or surnames (April, Ward, West, Lane, Banks). They
 * count as part of a name only beside a word that is not on either list.
 */
export const WEAK_NAME_WORDS = new Set(
  (
    'senior junior lead head chief principal staff vice president director manager officer analyst engineer developer architect ' +
    'assistant associate specialist consultant coordinator administrator representative executive partner counsel ' +
    'will may june april august march jan feb mar apr jun jul aug sep sept oct nov dec today tomorrow yesterday morning afternoon evening night week month year day hour minute ' +
    'patient patients doctor nurse clinic hospital medical medicine center centre health care emergency department room ward unit icu er ' +
    'diagnosis history plan assessment exam examination chief complaint follow followup visit admission discharge report lab labs result results ' +
    'allergies allergy medication medications prescription dose insurance policy claim claims record records chart file ' +
    'bank account accounts card credit debit payment payments transfer wire invoice balance loan mortgage statement transaction transactions fee fees ' +
    'customer client support team service services ticket issue issues request case status order orders refund billing sales help desk ' +
    'company corporation corp inc llc ltd plc group holdings partners associates foundation university college school institute ' +
    'street st avenue ave road rd boulevard blvd lane ln drive dr court ct place suite apt floor building ' +
    'north south east west new old united states kingdom america american european national international global federal state city county ' +
    'email phone mobile tel fax address contact name date birth dob id number no ssn iban swift bic ip ' +
    'yes no none n/a na tbd fyi asap eta ' +
    // Places and products that are written like names ("Google Drive"); places whose words are
    // also names are phrases (PLACE_PHRASES).
    'york berlin chicago boston texas california jersey seattle toronto ' +
    // Places and products that are also given names ("Virginia in payroll", "talked to Claude"):
    // never a name alone on a weak cue, still one beside a surname or after a title.
    'virginia georgia carolina florida dakota sydney austin dallas houston orlando savannah chelsea india jordan israel kenya ' +
    'paris london madison phoenix denver victoria adelaide alexandria augusta charlotte florence lincoln raleigh ' +
    'claude alexa siri cortana erica harvey kira lexis athena loki apollo aurora cassandra django jenkins hugo jasper ruby sage rocky ' +
    'google microsoft amazon salesforce slack zoom outlook gmail dropbox linkedin facebook whatsapp paypal venmo zelle stripe ' +
    // Nationalities and languages, some of them also given names ("German customers", "talked to French support").
    'german french english dutch irish scottish welsh british italian spanish portuguese swiss austrian belgian danish swedish ' +
    'norwegian finnish polish russian greek turkish arabic persian hebrew hindi urdu bengali tamil chinese mandarin cantonese ' +
    'japanese korean vietnamese thai filipino indian african asian mexican canadian brazilian latin hispanic israeli egyptian nigerian ' +
    'sharepoint onedrive excel jira confluence github okta workday servicenow zendesk drive docs sheets teams office cloud'
  ).split(/\s+/),
);

/** Places written as two name-shaped words ("San Diego"), or two around a particle ("Rio de Janeiro"): never a name as a whole. */
export const PLACE_PHRASES = new Set([
  'marina del rey',
  'new york', 'new jersey', 'new orleans', 'new zealand', 'new delhi', 'los angeles', 'las vegas', 'san francisco', 'san diego', 'san jose', 'san antonio', 'hong kong', 'el paso', 'st louis', 'salt lake',
  'rio de janeiro', 'buenos aires', 'costa rica', 'puerto rico', 'sri lanka', 'tel aviv', 'abu dhabi', 'santo domingo', 'sao paulo', 'são paulo', 'porto alegre', 'belo horizonte', 'den haag', 'costa del sol',
]);

/** Teams a person is "from" or "in" ("Ann from Legal"; IT only in capitals), never themselves a lower-case name ("spoke to billing"). */
export const DEPARTMENTS = new Set(
  (
    'accounts accounting admin admissions audit billing collections compliance engineering facilities finance fraud hr legal ' +
    'logistics marketing operations ops payroll pharmacy procurement radiology reception records risk sales security shipping ' +
    'support treasury triage underwriting cardiology oncology pediatrics surgery'
  ).split(/\s+/),
);

/**
 * Words that follow "this is", "talked to" and the like without being a name, beyond everyday
 * English (common-words.ts): shorthand ("spoke with pt", "talked to hq") and a few more.
 */
export const COMMON_LOWER_WORDS = new Set(
  (
    'dev devs prod qa sre infra max min pt pts pcp rn np md er icu ed hq dept mgmt cs tl fyi asap tbd eta noone ok okay pls plz thx ty lol idk yesterday tomorrow meds ' +
    'ortho gi ent peds obgyn neuro cardio psych derm onc rehab ot slp advisor advisors frontline ' +
    'someone somebody anyone anybody everyone everybody nobody noone one another each both either neither several multiple ' +
    'myself yourself himself herself themselves ourselves people folks guys person lady man woman gentleman girl boy ' +
    'again earlier later today tonight now soon back already still also just really very quite actually definitely probably ' +
    'maybe perhaps finally regarding concerning re urgent important fine good great bad wrong correct right true false ' +
    'broken ridiculous unacceptable frustrating annoying confusing strange weird odd same different done over finished serious ' +
    'critical normal expected unexpected possible impossible going getting happening taking calling writing following ' +
    'management supervisor rep operator admin tech technician receptionist pharmacist physician surgeon therapist specialist ' +
    'front desk office someone else everyone two three four five first second last next previous new old my mine ' +
    'well sure sorry happy glad unhappy upset worried concerned ready available busy late early free away home here there ' +
    'not never always sometimes usually only even mom dad mum ma pa grandma grandpa dispatch corporate headquarters hq'
  ).split(/\s+/),
);

// Letters may carry combining marks ("Jose\u0301" as some systems write "José"; "ọ̀", which has no
// composed form): a mark belongs to the letter before it.
const UP = String.raw`\p{Lu}\p{M}*`;
const LOW = String.raw`(?:\p{Ll}\p{M}*)`;
/**
 * Title-case words: one inner capital (McDonald, VonRueden, DuBuque), an elided prefix
 * (O'Hara, D'Amore, D'angelo) and hyphenated parts (Turcotte-McCullough).
 */
const NAME_PART = String.raw`(?:${UP}['’])?${UP}${LOW}+(?:${UP}${LOW}+)?|${UP}['’]${LOW}+`;
const NAME_WORD = new RegExp(String.raw`^(?:${NAME_PART})(?:-(?:${NAME_PART}))*(?:['’]s)?$`, 'u');
const INITIAL = /^\p{Lu}\p{M}*\.$/u;

export interface NameSpan {
  start: number;
  end: number;
}

interface Token {
  /** The word; '' for a word that starts lower-case (never a name word), except particles. */
  text: string;
  start: number;
  end: number;
  /** A surname particle ("de", "van", "der"): inside a name only between its words ("Inger de Vries"). */
  particle: boolean;
}

/** Lower-case surname particles, taken inside a run of name words: "Yuri de Koning", "Thirza van der Laan", "María de los Ángeles". */
export const SURNAME_PARTICLES = new Set(['de', 'van', 'von', 'der', 'den', 'da', 'di', 'del', 'della', 'dos', 'das', 'du', 'la', 'le', 'los', 'las', 'ter', 'ten', 'bin', 'ibn']);
/** Length and first two letters of each particle, as one number: a test that builds no string. */
const particleKey = (length: number, c0: number, c1: number): number => (length << 16) | (c0 << 8) | c1;
const PARTICLE_KEYS = new Set([...SURNAME_PARTICLES].map((p) => particleKey(p.length, p.charCodeAt(0), p.charCodeAt(1))));

/** Whether the word at [start, end) is a surname particle, without building a string for most short words of a prompt. */
function isParticleAt(text: string, start: number, end: number): boolean {
  const n = end - start;
  if (n < 2 || n > 5) return false;
  const c0 = text.charCodeAt(start);
  const c1 = text.charCodeAt(start + 1);
  // Particles are ASCII: a wider letter is none.
  if (c0 > 0xff || c1 > 0xff || !PARTICLE_KEYS.has(particleKey(n, c0, c1))) return false;
  return SURNAME_PARTICLES.has(text.slice(start, end));
}

/** "SURNAME, Given" and "Surname, Given" as in lists and records (see surnameStart for longer surnames). */
const INVERTED = new RegExp(String.raw`(?<![\p{L}\p{M}0-9'’-])(\p{Lu}[\p{Lu}\p{M}'’-]+|${UP}${LOW}+(?:${UP}${LOW}+)?(?:-${UP}${LOW}+)?), (${UP}${LOW}+(?:-${UP}${LOW}+)?)(?![\p{L}\p{M}0-9'’-])`, 'gu');
const ALL_CAPS = /^\p{Lu}[\p{Lu}\p{M}'’-]+$/u;
/** The word that ends just before a space at the end of a text slice. */
const WORD_BEFORE = /(?<![\p{L}\p{M}\p{N}.@'’-])([\p{L}\p{M}'’-]+) $/u;

function findInvertedNames(text: string): NameSpan[] {
  const out: NameSpan[] = [];
  for (const m of text.matchAll(INVERTED)) {
    const [surname, given] = [m[1]!, m[2]!];
    const words = [surname.toLowerCase(), given.toLowerCase()];
    if (words.some((w) => NOT_NAME_WORDS.has(w) || WEAK_NAME_WORDS.has(w) || NAME_CUES.has(w))) continue;
    // All-capitals surnames need at least two letters of capitals and a title-case given name.
    if (surname.length < 2) continue;
    out.push({ start: surnameStart(text, m.index, ALL_CAPS.test(surname)), end: m.index + m[0].length });
  }
  return out;
}

/**
 * Where a surname found at `start` begins when up to three words before it belong to it:
 * particles ("de Vries, Jacobo", "VAN DER MEER, Long") and, before an all-capitals surname,
 * all-capitals words ("DELVALLE GUTIÉRREZ, Denise", "WHITE SMITH, Anna"; a heading before one
 * is taken too), but not words that introduce a name ("ATTN"), and not a word joined to what
 * comes before it (".de" of "anna@firma.de SCHMIDT, Anna").
 */
function surnameStart(text: string, start: number, capsSurname: boolean): number {
  let from = start;
  for (let n = 0; n < 3; n++) {
    const m = WORD_BEFORE.exec(text.slice(Math.max(0, from - 32), from));
    if (m === null) break;
    const w = m[1]!;
    if (!SURNAME_PARTICLES.has(w.toLowerCase()) && !(capsSurname && ALL_CAPS.test(w) && !isIntroWord(w))) break;
    from -= w.length + 1;
  }
  return from;
}

/** A word that may stand before a name without being part of it. */
function isIntroWord(word: string): boolean {
  const w = word.toLowerCase();
  return NOT_NAME_WORDS.has(w) || WEAK_NAME_WORDS.has(w) || NAME_CUES.has(w) || HONORIFICS.has(w);
}

/**
 * Phrases that introduce a person by name, after which a name may be written in lower case
 * ("this is maria lopez", "talked to zane"). The cue itself may start with a capital.
 */
const INTRO = String.raw`this is|my name is|name is|talked to|talked with|spoke to|spoke with|speak to|speak with|speaking with`;
const LOWER_CUE = new RegExp(String.raw`(?<!\p{L})(${INTRO})\s+(?=\p{Ll})`, 'giu');
/**
 * After these cues ("this is redis evicting keys") the two words are a name only at the end of
 * a clause or before a word that goes with introducing oneself ("this is maria lopez, calling",
 * "my name is maria lopez from the bank").
 */
const SELF_CUES = new Set(['this is', 'my name is', 'name is']);
const AFTER_SELF = /^(?:$|[,.!?;:]|\s*\n| (?:here|calling|speaking|from|and|with|at)\b)/;
/**
 * "this is X" also describes things ("this is dev", "this is Django 4.2"): a single name after it
 * needs a greeting before ("hi, this is zane") or a word of introduction after ("this is Zane
 * here", "this is zane from billing").
 */
const SELF_SINGLE = /^ (?:here|calling|speaking|from)\b/;
const GREETING_BEFORE = /(?:^|[^a-z])(?:hi|hello|hey|good (?:morning|afternoon|evening))[,!.]? *$/i;
/** The same phrases just before a capitalised word ("I talked to Zane yesterday"). */
const INTRO_BEFORE = new RegExp(String.raw`(?:^|[^a-z])(?:${INTRO}) $`);
/** What a person leaves that a text follows "per": "per Ann's note", "per Raj's email". */
const PERSONAL_AFTER_PER = /^ (?:note|notes|email|e-mail|message|call|voicemail|instructions|comments|orders?|advice|recommendation|reply|text)\b/;

/**
 * A word that may stand alone as a name on a weak cue: a known given name that is not everyday
 * English, or a hyphenated one whose parts are all given names ("Ann-Marie", "Jean-Pierre").
 */
function isKnownName(word: string): boolean {
  const w = word.replace(/['’]s$/, '').toLowerCase();
  const known = (x: string) => isGivenName(x) && !isCommonWord(x) && !lowerNotName(x) && !WEAK_NAME_WORDS.has(x);
  return known(w) || (w.includes('-') && w.split('-').every((x) => x.length > 1 && isGivenName(x)));
}

/** A single name after "this is": only with a greeting before or a word of introduction after. */
function introducedAfterThisIs(text: string, cueStart: number, nameEnd: number): boolean {
  return SELF_SINGLE.test(text.slice(nameEnd, nameEnd + 12)) || GREETING_BEFORE.test(text.slice(Math.max(0, cueStart - 16), cueStart));
}
const LOWER_WORD = /^\p{Ll}[\p{Ll}\p{M}'’-]*[\p{Ll}\p{M}]$/u;
/** Up to three lower-case words, ending at a space, punctuation or a full stop (not inside an address or a number). */
const LOWER_WORDS = /^(\p{Ll}[\p{Ll}\p{M}'’-]*)(?: (\p{Ll}[\p{Ll}\p{M}'’-]*))?(?: (\p{Ll}[\p{Ll}\p{M}'’-]*))?(?![\p{L}\p{M}\p{N}@'’-]|\.[\p{L}\p{N}])/u;
const LOWER_TWO = /^(\p{Ll}[\p{Ll}\p{M}'’-]*) (\p{Ll}[\p{Ll}\p{M}'’-]*)/u;

/** Never a name in lower case: function and cue words, teams, shorthand, particles and suffixes ("de", "jr"). */
function lowerNotName(w: string): boolean {
  return NOT_NAME_WORDS.has(w) || NAME_CUES.has(w) || HONORIFICS.has(w) || DEPARTMENTS.has(w) || COMMON_LOWER_WORDS.has(w) || SURNAME_PARTICLES.has(w) || NAME_SUFFIXES.has(w);
}

/** A lower-case word that can only be a name: no part of it is a word of any list or everyday English. */
function isLowerNameWord(w: string): boolean {
  return LOWER_WORD.test(w) && w.split(/[-'’]/).every((p) => p.length < 2 || (!lowerNotName(p) && !WEAK_NAME_WORDS.has(p) && !isCommonWord(p)));
}

/**
 * Lower-case names after a phrase that introduces a person: two words separated by a single
 * space, neither of them everyday English or on a list ("this is tasha jaskolski,"), or a given
 * name followed by such a word ("spoke to maria lopez"), with a third such word if one follows
 * ("ana luiza agyei-ampadu"), or a known given name followed by any other lower-case word ("zane
 * smith"), or a known given name alone ("talked to zane"). After "this is" and "my name is" the
 * name must end a clause or come before "here", "calling", "from"...
 */
function findLowerCaseNames(text: string): NameSpan[] {
  const out: NameSpan[] = [];
  for (const m of text.matchAll(LOWER_CUE)) {
    const start = m.index + m[0].length;
    const words = LOWER_WORDS.exec(text.slice(start, start + 64));
    if (!words) continue;
    const first = words[1]!;
    const bare = first.replace(/['’]s$/, '');
    // "zane's manager": a possessive ends the name.
    const second = bare !== first ? undefined : words[2]?.replace(/['’]s$/, '');
    const known = isKnownName(first);
    let end: number;
    if (second !== undefined && isLowerNameWord(second) && (isLowerNameWord(first) || (isGivenName(bare) && !lowerNotName(bare)))) {
      // A third word of the same kind belongs to the name ("ana luiza agyei-ampadu"); a word of any list ends it.
      const third = second === words[2] ? words[3] : undefined;
      end = start + (third !== undefined && isLowerNameWord(third.replace(/['’]s$/, '')) ? words[0].length : LOWER_TWO.exec(words[0])![0].length);
    }
    // A surname after a known given name is masked with it even when it is also a word ("zane smith").
    else if (second !== undefined && known && !lowerNotName(second) && !WEAK_NAME_WORDS.has(second) && LOWER_WORD.test(second)) end = start + LOWER_TWO.exec(words[0])![0].length;
    else if (known) end = start + first.length;
    else continue;
    const cue = m[1]!.toLowerCase().replace(/\s+/g, ' ');
    if (SELF_CUES.has(cue) && !AFTER_SELF.test(text.slice(end, end + 12))) continue;
    if (cue === 'this is' && end === start + first.length && !introducedAfterThisIs(text, m.index, end)) continue;
    out.push({ start, end });
  }
  return out;
}

/** Overlapping spans joined: sorted, disjoint intervals. */
function union(spans: NameSpan[]): NameSpan[] {
  const sorted = [...spans].sort((x, y) => x.start - y.start);
  const out: NameSpan[] = [];
  for (const s of sorted) {
    const last = out[out.length - 1];
    if (last && s.start < last.end) last.end = Math.max(last.end, s.end);
    else out.push({ ...s });
  }
  return out;
}

/**
 * Person-name spans of a text, sorted and disjoint. The finders overlap ("Itzel U. Mraz, Wilton
 * McGlynn" holds the forward names "Itzel U. Mraz" and "Wilton McGlynn" and the inverted "Mraz,
 * Wilton"). The forward spans stand; of the other finders' spans, the parts outside them are
 * added (trimmed to letters and digits), so every letter any finder takes is covered while each
 * span stays the size of one name: a list of names is not one span (one placeholder for many
 * people, and one span a higher-priority detection would drop whole).
 */
export function findPersonNames(text: string): NameSpan[] {
  const inverted = text.includes(', ') ? findInvertedNames(text) : [];
  const earlier = [...inverted, ...findLowerCaseNames(text)];
  const forward = findForwardNames(text);
  if (earlier.length === 0) return forward;
  const out = [...forward];
  let j = 0;
  for (const s of union(earlier)) {
    while (j < forward.length && forward[j]!.end <= s.start) j++;
    let from = s.start;
    for (let k = j; k < forward.length && forward[k]!.start < s.end; k++) {
      addTrimmed(text, from, forward[k]!.start, out);
      from = Math.max(from, forward[k]!.end);
    }
    addTrimmed(text, from, s.end, out);
  }
  return out.sort((a, b) => a.start - b.start);
}

/** Adds [start, end) trimmed to letters and digits, if anything is left. */
function addTrimmed(text: string, start: number, end: number, out: NameSpan[]): void {
  const span = trimToLettersAndDigits(text, start, end);
  if (span !== undefined) out.push(span);
}

/** [start, end) without the characters at its edges that are neither letters nor digits; undefined if nothing is left. */
export function trimToLettersAndDigits(text: string, start: number, end: number): NameSpan | undefined {
  while (start < end && !alnumCodePointAt(text, start)) start++;
  while (end > start && !alnumCodePointAt(text, end - 1)) end--;
  return start < end ? { start, end } : undefined;
}

const ALNUM = /^[\p{L}\p{N}\p{M}]/u;
/** Whether the code point that UTF-16 unit `i` belongs to is a letter, digit or combining mark (letters outside the BMP too: "𞤀𞤣𞤤𞤢𞤥"). */
function alnumCodePointAt(text: string, i: number): boolean {
  const c = text.charCodeAt(i);
  if (c < 0xd800 || c > 0xdfff) return isAlnum(c) || isMark(c);
  const from = c >= 0xdc00 && i > 0 ? i - 1 : i;
  return ALNUM.test(text.slice(from, from + 2));
}

const LETTER = /\p{L}/u;
const LOWER = /\p{Ll}/u;
const MARK = /\p{M}/u;
/** A combining mark (in the BMP): part of the letter before it. */
const isMark = (c: number): boolean => c >= 0x300 && (c <= 0x36f || MARK.test(String.fromCharCode(c)));
/** A letter: ASCII at once, any other UTF-16 unit through the Unicode letter class (surrogates are not letters here). */
const isLetter = (c: number): boolean => (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 0xc0 && LETTER.test(String.fromCharCode(c)));
const isLower = (c: number): boolean => (c >= 97 && c <= 122) || (c >= 0xc0 && LOWER.test(String.fromCharCode(c)));
const isAlnum = (c: number): boolean => isLetter(c) || (c >= 48 && c <= 57);
/** Inside a word: letters, combining marks, apostrophes (' and ’), periods and hyphens. */
const isWordInner = (c: number): boolean => isLetter(c) || c === 0x27 || c === 0x2019 || c === 0x2e || c === 0x2d || isMark(c);
/** A word ends in a letter, a combining mark or a period. */
const isWordEnd = (c: number): boolean => isLetter(c) || c === 0x2e || isMark(c);

/**
 * Calls `f(start, end)` for each word of a text: what
 * `/(?<![\p{L}0-9])(?:\p{L}[\p{L}\p{M}'’.-]*[\p{L}\p{M}.]|\p{L})/gu` matches in the BMP, scanned by hand
 * (the expression cost most of the name detector on long prompts). A test checks both give
 * the same words.
 */
export function forEachWord(text: string, f: (start: number, end: number) => void): void {
  const n = text.length;
  let p = 0;
  while (p < n) {
    const c = text.charCodeAt(p);
    if (!isLetter(c) || (p > 0 && isAlnum(text.charCodeAt(p - 1)))) {
      p++;
      continue;
    }
    let q = p + 1;
    while (q < n && isWordInner(text.charCodeAt(q))) q++;
    // Greedy, then back off to the last letter or period (at least the first letter).
    while (q > p + 1 && !isWordEnd(text.charCodeAt(q - 1))) q--;
    f(p, q);
    p = q;
  }
}

const MAX_SUFFIX = Math.max(...[...NAME_SUFFIXES].map((s) => s.length)) + 2;
const LONGEST_SUFFIX = MAX_SUFFIX - 2;

/**
 * Whether the word at [start, end) is a name suffix ("jr.", "pHD"): what
 * `NAME_SUFFIXES.has(word.replace(/\.+$/, '').toLowerCase())` says of a word at most MAX_SUFFIX
 * long, without building strings for the longer lower-case words that make up most of a prompt.
 */
function isSuffixAt(text: string, start: number, end: number): boolean {
  if (end - start > MAX_SUFFIX) return false;
  let bare = end;
  while (bare > start && text.charCodeAt(bare - 1) === 0x2e) bare--;
  return bare - start <= LONGEST_SUFFIX && NAME_SUFFIXES.has(text.slice(start, bare).toLowerCase());
}

function findForwardNames(text: string): NameSpan[] {
  // Words that start lower-case are never name words; they only end a run, so they are left
  // out (the gap they leave is not a single space, which ends the run the same way). Those
  // that may be a suffix ("jr.", "pHD": the suffix test ignores case) are kept, with empty text.
  const tokens: Token[] = [];
  forEachWord(text, (start, wordEnd) => {
    const lower = isLower(text.charCodeAt(start));
    // A particle counts only right after a word kept here (a capitalised word or another particle).
    const prev = tokens.length > 0 ? tokens[tokens.length - 1]! : undefined;
    if (lower && prev !== undefined && prev.end === start - 1 && prev.text !== '' && isParticleAt(text, start, wordEnd)) {
      tokens.push({ text: text.slice(start, wordEnd), start, end: wordEnd, particle: true });
      return;
    }
    if (lower && !isSuffixAt(text, start, wordEnd)) return;
    let end = wordEnd;
    // A trailing period belongs to the word only for initials and abbreviations.
    if (text.charCodeAt(end - 1) === 0x2e) {
      const t = text.slice(start, end);
      const bare = t.slice(0, -1).toLowerCase();
      if (!INITIAL.test(t) && !HONORIFICS.has(bare) && !NAME_SUFFIXES.has(bare)) end--;
    }
    tokens.push({ text: lower ? '' : text.slice(start, end), start, end, particle: false });
  });
  const spans: NameSpan[] = [];
  let i = 0;
  while (i < tokens.length) {
    const tok = tokens[i]!;
    // A lower-case word is neither an honorific nor a name word (both start with a capital).
    if (tok.text === '' || tok.particle) {
      i++;
      continue;
    }
    const bare = tok.text.replace(/\.$/, '').toLowerCase();
    const isHonorific = HONORIFICS.has(bare) && /^\p{Lu}/u.test(tok.text) && (!PERIOD_HONORIFICS.has(bare) || tok.text.endsWith('.'));
    if (!isHonorific && !isNameWord(tok)) {
      i++;
      continue;
    }
    // Collect a run of name-shaped tokens (with initials), adjacent in the text.
    let j = i + (isHonorific ? 1 : 0);
    const run: Token[] = [];
    // Up to MAX_RUN name words and initials ("Xuân Uyên Leo Danielsson Dahl"); particles and up
    // to two cue words that start a run ("Patient", "Pt", dropped below) do not count.
    let particles = 0;
    let leadingCues = 0;
    let cueBefore: boolean | undefined;
    while (j < tokens.length && run.length - particles - leadingCues < MAX_RUN) {
      const t = tokens[j]!;
      const prev = j > 0 ? tokens[j - 1]! : undefined;
      if (prev && j > i && !adjacent(text, prev, t)) break;
      if (isNameWord(t) || (INITIAL.test(t.text) && run.length > leadingCues)) {
        if (run.length === leadingCues && leadingCues < 2 && isRunCue(t.text)) leadingCues++;
        run.push(t);
        j++;
      } else if (t.particle && (particlesMayFollow(run, leadingCues, isHonorific) || (run.length > 0 && (cueBefore ??= precededByCue(text, tokens, i))))) {
        // Particles join the run only when a name word follows them ("de Vries", "van der Laan").
        let k = j;
        while (k < tokens.length && tokens[k]!.particle && adjacent(text, tokens[k - 1]!, tokens[k]!)) k++;
        if (k === j || k - j > 3 || k >= tokens.length || !adjacent(text, tokens[k - 1]!, tokens[k]!) || !isNameWord(tokens[k]!)) break;
        particles += k - j;
        for (; j < k; j++) run.push(tokens[j]!);
      } else break;
    }
    // Optional suffix (Jr., MD, DVM).
    const next = tokens[j];
    if (next && run.length > 0 && NAME_SUFFIXES.has(text.slice(next.start, next.end).replace(/\.$/, '').toLowerCase()) && adjacent(text, run[run.length - 1]!, next, true)) {
      run.push(next);
      j++;
    }
    // Cue words ("Customer", "Patient") that start a run introduce the name; they are not part of it.
    let cues = 0;
    while (cues < run.length && isRunCue(run[cues]!.text)) cues++;
    const cueInRun = cues > 0;
    if (cueInRun) run.splice(0, cues);
    // Weak words at the edges stay only when the run has a strong name word.
    const strong = run.filter((t) => isNameWord(t) && !WEAK_NAME_WORDS.has(t.text.toLowerCase())).length;
    const nameWords = run.filter((t) => isNameWord(t)).length;
    const cue = isHonorific || cueInRun || (cueBefore ??= precededByCue(text, tokens, i)) || (run.length === 1 && followedByCue(text, run[0]!));
    if (strong === 0 && !(cue && nameWords === 1)) {
      i = Math.max(j, i + 1);
      continue;
    }
    if ((run.length === 2 || (run.length === 3 && particles === 1)) && PLACE_PHRASES.has(run.map((t) => t.text).join(' ').toLowerCase())) {
      i = Math.max(j, i + 1);
      continue;
    }
    if (run.length > 0 && (nameWords >= 2 || (nameWords === 1 && cue))) {
      spans.push({ start: isHonorific ? tok.start : run[0]!.start, end: run[run.length - 1]!.end });
    }
    i = Math.max(j, i + 1);
  }
  return spans;
}

/**
 * Particles belong to a person's name ("Inger de Vries", "Dr. van der Berg"), but the same words
 * join the names of organisations, places and things ("Banco de Chile", "Gare de Lyon", "Tour de
 * France"): they join a run only after a title or a cue ("Dr.", "Patient", "Signed:"), or when
 * a word of the run before them is a given name ("Nnamdi Charles de Jong").
 */
function particlesMayFollow(run: Token[], leadingCues: number, afterHonorific: boolean): boolean {
  if (afterHonorific || leadingCues > 0) return true;
  return run.some((t) => !t.particle && isGivenName(t.text.toLowerCase()));
}

/** Most name words and initials in one run: longer runs of capitalised words are cut there. */
const MAX_RUN = 12;

/** A cue word at the start of a run ("Patient Ann Lee", "Pt Ann Lee"; "Pt" only there, not before a name as in "12 pt Arial"). */
function isRunCue(word: string): boolean {
  const w = word.toLowerCase();
  return NAME_CUES.has(w) || w === 'pt';
}

function isNameWord(t: Token): boolean {
  return NAME_WORD.test(t.text) && !NOT_NAME_WORDS.has(t.text.toLowerCase()) && t.text.length >= 2;
}

/** Two tokens are part of one name when only a single space (or ", " before a suffix) separates them. */
function adjacent(text: string, a: Token, b: Token, suffix = false): boolean {
  const gap = text.slice(a.end, b.start);
  return gap === ' ' || (suffix && gap === ', ');
}

function precededByCue(text: string, tokens: Token[], i: number): boolean {
  const tok = tokens[i]!;
  const before = text.slice(Math.max(0, tok.start - 24), tok.start).toLowerCase();
  const m = /(?<![a-z0-9])([a-z]+(?: holder)?)\s*[:,-]?\s*$/.exec(before);
  if (m !== null && NAME_CUES.has(m[1]!)) return true;
  // Weak cues, for a known given name only: "I talked to Zane", "per Ann's note".
  if (!isKnownName(tok.text)) return false;
  if (/(?:^|[^a-z])this is $/.test(before)) return introducedAfterThisIs(text, tok.start - 'this is '.length, tok.end);
  return INTRO_BEFORE.test(before) || (/(?:^|[^a-z])per $/.test(before) && /['’]s$/.test(tok.text) && PERSONAL_AFTER_PER.test(text.slice(tok.end, tok.end + 24)));
}

/** "Ann from Legal", "Raj in accounts", "Lee from IT": a team after a known given name. */
function followedByCue(text: string, tok: Token): boolean {
  const m = /^ (?:from|in) (?:the |our )?([A-Za-z]+)/.exec(text.slice(tok.end, tok.end + 32));
  return m !== null && (m[1] === 'IT' || DEPARTMENTS.has(m[1]!.toLowerCase())) && isKnownName(tok.text);
}
