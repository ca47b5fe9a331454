import { ParseError, canonicalBytes, canonicalize, equalBytes, fromUtf8, type Bytes } from '@custody/core';
import { MAX_ENTRY_SIZE } from '../tiles/bundle.js';

/**
 * Custody events: what goes into the ledger. Each event is canonical JSON (RFC 8785) so an
 * entry has exactly one byte form and its leaf hash means the same thing everywhere.
 *
 * What may go in (the secrets rule):
 *  1. Closed schemas. Every event type lists its fields and their kinds; any other field is
 *     refused (ERR_TLOG_EVENT). No kind can hold key material, plaintext, prompts or
 *     completions: sensitive or large things are referenced by digest (`sha256:<hex>`).
 *  2. Field names. A field or label name with a word (camelCase, snake_case, kebab-case and
 *     dotted names are split into words) that names a secret (secret, private, privkey,
 *     password, passphrase, plaintext, prompt, completion, seed, mnemonic, token, credential,
 *     pem, jwk, dek, kek, or a lone `d`/`k` as in a JWK) is refused with ERR_TLOG_EVENT_SECRET.
 *  3. Values. No string value may contain PEM armour (`-----BEGIN`) or a JWK private member
 *     (`"d":`). Free-text, label and fact values may not contain an opaque run: 20 or more
 *     consecutive characters of `[A-Za-z0-9+=]` (base64 and hex without separators) that mix
 *     at least 2 letters and 2 digits, or any such run of 32 or more. Key material,
 *     ciphertext, bearer tokens and bare hex digests look like that; names made of words,
 *     versions and UUIDs do not. Identifier fields (and facts named `...id`) may hold random
 *     identifiers such as `key_<32 hex>`, so for them only runs of 40 or more are refused (a
 *     256-bit key in hex or base64 is longer).
 *  4. Separators do not hide a run. Runs are also measured across the separators
 *     `[\s._:/@+,;-]` (so `0b30 557a ...`, `0b:30:55:...` and hex split by `.` or `/` count as
 *     one run): consecutive opaque pieces (with a digit, of one or two characters, a short hex
 *     group, or not shaped like a word) are joined, and a joined run that mixes digits and
 *     letters (at least 2 digits, letters at least a fifth) is refused from 32 characters in
 *     free text and from 40 in identifiers. Words (lowercase, Capitalized, CamelCase, short
 *     ACRONYMS, with a vowel) break a joined run, except in free text when glued by `+` or `/`
 *     to an opaque piece (base64), and a canonical RFC 9562 UUID in free text counts as a
 *     word. Free text also may not hold four or more regular groups of an encoding
 *     (`JBSW Y3DP EHPK 3PXP`).
 *  5. Codes (UPPER_SNAKE reasons) are words: each `_`-separated segment is at most 24
 *     characters, no segment may look like hex (8+ of `[0-9A-F]` with a digit, or 12+) or
 *     base32 (8+ of `[A-Z2-7]` with digits apart), a code has at most 8 digits in all, and
 *     rules 3 and 4 apply.
 *  Digests by design: a digest field holds exactly `sha256:`/`sha384:`/`sha512:` and hex, and a
 *  fact named `...digest`, `...hash`, `...measurement` or `...fingerprint` may hold bare hex of
 *  a hash length (40, 64, 96 or 128). Those are 20 to 64 opaque bytes by construction, so the
 *  schema cannot tell a digest from a raw key of that length there; producers pass digests
 *  (computed by Custody from the value, never the value itself). Refused with
 *  ERR_TLOG_EVENT_SECRET.
 *  The rule is a guard behind the schema, not a classifier: producers must still only pass
 *  digests, identifiers and verdicts.
 */

export const EVENT_VERSION = 1;

type FieldKind =
  | 'id'
  | 'digest'
  | 'code'
  | 'text'
  | 'count'
  /** {tenant, subject, role} of whoever acted. */
  | 'principal'
  /** {id, name, type, version?} of a key acted on. */
  | 'keyref'
  /** Up to 16 named public facts: strings, numbers, booleans. */
  | 'facts'
  | { enum: readonly string[] }
  | { list: 'id' | 'digest' | 'code' };

interface FieldSpec {
  kind: FieldKind;
  optional?: boolean;
}

const EVIDENCE_FORMATS = ['sev-snp', 'tdx', 'nitro', 'tpm', 'azure-vtpm', 'nvidia', 'sim'] as const;
const VERDICTS = ['affirming', 'warning', 'contraindicated', 'none'] as const;

const req = <const K extends FieldKind>(kind: K): { kind: K; optional?: false } => ({ kind });
const opt = <const K extends FieldKind>(kind: K): { kind: K; optional: true } => ({ kind, optional: true });

const SCHEMAS = {
  'attestation.appraised': {
    evidenceFormat: req({ enum: EVIDENCE_FORMATS }),
    evidenceDigest: req('digest'),
    verdict: req({ enum: VERDICTS }),
    policyId: req('id'),
    policyDigest: opt('digest'),
    resultDigest: opt('digest'),
    workload: opt('id'),
    reasons: opt({ list: 'code' }),
  },
  'key.released': {
    keyId: req('id'),
    keyVersion: opt('count'),
    workload: req('id'),
    attestationDigest: req('digest'),
    policyId: req('id'),
    recipientKeyDigest: req('digest'),
    requestId: opt('id'),
  },
  'key.denied': {
    keyId: req('id'),
    workload: opt('id'),
    reason: req('code'),
    policyId: opt('id'),
    attestationDigest: opt('digest'),
    requestId: opt('id'),
  },
  'key.created': {
    keyId: req('id'),
    keyVersion: req('count'),
    algorithm: req('id'),
    store: req({ enum: ['keystore', 'pkcs11'] }),
    publicKeyDigest: opt('digest'),
  },
  'key.rotated': { keyId: req('id'), fromVersion: req('count'), toVersion: req('count') },
  'key.revoked': { keyId: req('id'), keyVersion: opt('count'), reason: req('code') },
  'policy.changed': { policyId: req('id'), previousDigest: opt('digest'), policyDigest: req('digest'), author: req('id') },
  'checkpoint.signed': {
    modelId: req('id'),
    checkpointDigest: req('digest'),
    step: opt('count'),
    parentDigest: opt('digest'),
    datasetDigests: opt({ list: 'digest' }),
    provenanceDigest: opt('digest'),
    signer: req('id'),
  },
  'inference.receipt': {
    receiptId: req('id'),
    modelId: req('id'),
    modelDigest: opt('digest'),
    requestDigest: req('digest'),
    responseDigest: req('digest'),
    attestationDigest: opt('digest'),
    tokensIn: opt('count'),
    tokensOut: opt('count'),
  },
  'gate.decision': {
    gate: req('id'),
    decision: req({ enum: ['allow', 'deny', 'redact'] }),
    subject: req('id'),
    inputDigest: req('digest'),
    ruleIds: opt({ list: 'id' }),
    reason: opt('code'),
  },
  'operator.event': { action: req('id'), subject: req('id'), note: opt('text'), digest: opt('digest') },
  /** A service's own audit record (the key broker's AuditEvent), see `toCustodyEvent`. */
  'audit.recorded': {
    action: req('id'),
    tenant: req('id'),
    verdict: req({ enum: ['allow', 'deny', 'error'] }),
    principal: req('principal'),
    key: opt('keyref'),
    reason: opt('text'),
    detail: opt('facts'),
  },
} as const satisfies Record<string, Record<string, FieldSpec>>;

export type EventType = keyof typeof SCHEMAS;
export const EVENT_TYPES = Object.keys(SCHEMAS) as EventType[];

export interface Principal {
  tenant: string;
  subject: string;
  role: string;
}
export interface KeyRef {
  id: string;
  name: string;
  type: string;
  version?: number;
}
export type Facts = Record<string, string | number | boolean>;

type KindValue<K> = K extends 'count'
  ? number
  : K extends 'principal'
    ? Principal
    : K extends 'keyref'
      ? KeyRef
      : K extends 'facts'
        ? Facts
        : K extends { enum: readonly (infer E)[] }
          ? E
          : K extends { list: string }
            ? string[]
            : string;
type FieldsOf<S> = { [F in keyof S as S[F] extends { optional: true } ? never : F]: S[F] extends { kind: infer K } ? KindValue<K> : never } & {
  [F in keyof S as S[F] extends { optional: true } ? F : never]?: S[F] extends { kind: infer K } ? KindValue<K> : never;
};

interface EventEnvelope<T extends EventType> {
  v: typeof EVENT_VERSION;
  type: T;
  /** RFC 3339 UTC time the producer decided (e.g. 2025-05-01T12:00:00Z or with milliseconds). */
  time: string;
  /** Service or principal that produced the event. */
  actor?: string;
  /** Small free-form string labels; checked by the secrets rule. */
  labels?: Record<string, string>;
}

export type CustodyEvent = { [T in EventType]: EventEnvelope<T> & FieldsOf<(typeof SCHEMAS)[T]> }[EventType];
export type CustodyEventOf<T extends EventType> = Extract<CustodyEvent, { type: T }>;

const MAX_ID = 128;
const MAX_TEXT = 512;
const MAX_LIST = 64;
const MAX_LABELS = 16;

const SECRET_WORDS = new Set([
  'secret', 'secrets', 'private', 'privkey', 'password', 'passwd', 'passphrase', 'plaintext', 'prompt', 'prompts', 'completion',
  'completions', 'seed', 'mnemonic', 'token', 'credential', 'credentials', 'pem', 'jwk', 'dek', 'kek', 'd', 'k',
]);

/** Splits camelCase, snake_case, kebab-case and dotted names into lowercase words. */
function nameWords(name: string): string[] {
  return name
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .split(/[^A-Za-z0-9]+/)
    .filter(Boolean)
    .map((w) => w.toLowerCase());
}
const ID = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/;
const CODE = /^[A-Z][A-Z0-9_]{1,63}$/;
const DIGEST = /^(sha256:[0-9a-f]{64}|sha384:[0-9a-f]{96}|sha512:[0-9a-f]{128})$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const LABEL_KEY = /^[a-z][a-z0-9_.-]{0,63}$/;
const RUN = /[A-Za-z0-9+=]{20,}/g;

function refuse(field: string, why: string): ParseError {
  return new ParseError('ERR_TLOG_EVENT', `event field ${field}: ${why}`, { detail: { field } });
}

function secret(field: string, why: string): ParseError {
  return new ParseError('ERR_TLOG_EVENT_SECRET', `event field ${field} ${why}`, { detail: { field } });
}

/** Separators a run is measured across (rule 4). */
const SEPARATORS = /^[\s._:/@+,;-]{1,3}$/;
const PIECES = /([A-Za-z0-9=]+)/;
// No lookbehind (older Safari lacks it): the leading boundary is captured and put back.
const UUID_TEXT = /(^|[^0-9A-Za-z])[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[1-8][0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}(?![0-9A-Za-z])/g;

/**
 * Word shapes: lowercase, Capitalized, ACRONYMS (up to 12), CamelCase (`JavaScript`, `iPhone`,
 * `XMLHttpRequest`) and a word with a trailing acronym (`OpenSSL`, `PostgreSQL`). Random
 * base64 letters rarely keep to these shapes.
 */
const WORD = /^(?:[a-z]+|[A-Z][a-z]+|[A-Z]{2,12}s?|(?:[A-Z]{2,5}|[A-Z]?[a-z]+)(?:[A-Z][a-z]+)+[A-Z]{0,5}|[A-Z]?[a-z]+[A-Z]{2,5})$/;

/** Whether a piece between separators could be part of an encoding rather than a word. */
function opaquePiece(p: string): boolean {
  // Digits, padding, one or two characters (`x`, `fc`) and short hex groups (`DEAD BEEF`)
  // join a run even when they happen to look like a word.
  if (p.length <= 2 || /[0-9=]/.test(p) || /^[0-9a-fA-F]{1,4}$/.test(p)) return true;
  // Words have vowels (acronyms aside); random letters often do not.
  return !WORD.test(p) || (!/[aeiouyAEIOUY]/.test(p) && !/^[A-Z]{2,6}s?$/.test(p));
}

/** Rule 4: joins opaque pieces across separators; true when a joined run looks like an encoding. */
function separatedRunLooksOpaque(value: string, minLength: number, glueBase64: boolean): boolean {
  const parts = value.split(PIECES);
  const opaque = parts.map((p, i) => i % 2 === 1 && opaquePiece(p));
  // In free text `+` and `/` are base64 characters: a word-shaped fragment glued by one of
  // them to an opaque piece is part of the same token (`Xhpb` in `...Wp+Xhpb+MSQZ...`).
  // Identifiers use `/` as a path separator, so there it separates words.
  const glue = (g: string | undefined) => glueBase64 && (g === '+' || g === '/');
  const joins = parts.map((_, i) => opaque[i] || (i % 2 === 1 && ((glue(parts[i - 1]) && opaque[i - 2] === true) || (glue(parts[i + 1]) && opaque[i + 2] === true))));
  let len = 0;
  let digits = 0;
  let letters = 0;
  const looksOpaque = (): boolean => len >= minLength && digits >= 2 && letters * 5 >= len;
  for (let i = 0; i < parts.length; i++) {
    const part = parts[i]!;
    if (i % 2 === 1 && joins[i]) {
      len += part.length;
      for (const c of part) {
        if (c >= '0' && c <= '9') digits++;
        else if (c !== '=') letters++;
      }
      continue;
    }
    if (i % 2 === 0 && (part === '' || SEPARATORS.test(part))) continue;
    if (looksOpaque()) return true;
    len = digits = letters = 0;
  }
  return looksOpaque();
}

/**
 * Rule 4, regular groups: four or more pieces of one length (4 to 16; the last may be shorter)
 * joined by the same separator, at least three and a third of them mixing letters and digits,
 * no two alike at the start (`JBSW Y3DP EHPK 3PXP ...`, `Zm9v YmFy ...`). Lists of names such
 * as `node1 node2 node3` repeat their stem, and numbers between words do not mix.
 */
function groupedLooksOpaque(value: string): boolean {
  const parts = value.split(PIECES);
  for (let i = 1; i < parts.length; i += 2) {
    const n = parts[i]!.length;
    if (n < 4 || n > 16) continue;
    const sep = parts[i + 1];
    const group = [parts[i]!];
    let j = i + 2;
    while (j < parts.length && parts[j - 1] === sep && sep !== undefined && SEPARATORS.test(sep) && parts[j]!.length === n) {
      group.push(parts[j]!);
      j += 2;
    }
    if (j < parts.length && parts[j - 1] === sep && sep !== undefined && SEPARATORS.test(sep) && parts[j]!.length < n) group.push(parts[j]!);
    // A group is maximal: its later pieces need not start one of their own.
    i = Math.max(i, j - 2);
    if (group.length < 4) continue;
    const mixed = group.filter((g) => /[0-9]/.test(g) && /[A-Za-z]/.test(g)).length;
    const stems = new Set(group.map((g) => g.slice(0, 3)));
    if (mixed >= 3 && mixed * 3 >= group.length && stems.size === group.length) return true;
  }
  return false;
}

/**
 * Whether a value contains something shaped like key material or ciphertext (rules 3 and 4).
 * `identifier` relaxes the length for random identifiers (only runs of 40+ count).
 */
export function looksLikeSecret(value: string, identifier = false): boolean {
  if (value.includes('-----BEGIN') || /"d"\s*:/.test(value)) return true;
  for (const m of value.matchAll(RUN)) {
    const run = m[0];
    if (identifier) {
      if (run.length >= 40) return true;
      continue;
    }
    if (run.length >= 32) return true;
    const digits = run.replace(/[^0-9]/g, '').length;
    const letters = run.replace(/[^A-Za-z]/g, '').length;
    if (digits >= 2 && letters >= 2) return true;
  }
  if (identifier) return separatedRunLooksOpaque(value, 40, false);
  const text = value.replace(UUID_TEXT, '$1 uuid ');
  return separatedRunLooksOpaque(text, 32, true) || groupedLooksOpaque(text);
}

const MAX_CODE_SEGMENT = 24;
const MAX_CODE_DIGITS = 8;

/** Rule 5: a code is a few words; hex, base32 and long segments are refused. */
export function codeLooksLikeSecret(code: string): boolean {
  if (looksLikeSecret(code)) return true;
  if (code.replace(/[^0-9]/g, '').length > MAX_CODE_DIGITS) return true;
  for (const seg of code.split('_')) {
    if (seg.length > MAX_CODE_SEGMENT) return true;
    if (/^[0-9A-F]{12,}$/.test(seg) || (/^[0-9A-F]{8,}$/.test(seg) && /[0-9]/.test(seg))) return true;
    // Base32: digits scattered among the letters (`AES256GCM` keeps its digits together).
    if (/^[A-Z2-7]{8,}$/.test(seg) && /[2-7][A-Z]+[2-7]/.test(seg)) return true;
  }
  return false;
}

/** Field names already found clean: events repeat a small vocabulary of names (bounded). */
const cleanNames = new Set<string>();

function checkName(field: string): void {
  if (cleanNames.has(field)) return;
  const words = nameWords(field.replace(/^labels\./, ''));
  if (words.some((w) => SECRET_WORDS.has(w))) throw secret(field, 'is named like a secret');
  if (cleanNames.size < 4096) cleanNames.add(field);
}

function checkString(field: string, v: unknown, max: number): string {
  if (typeof v !== 'string') throw refuse(field, 'must be a string');
  if (v.length === 0 || v.length > max) throw refuse(field, `must be 1..${max} characters`);
  return v;
}

/**
 * Identifier and text values already found clean (bounded, short ones only): producers repeat
 * the same tenants, actors, routes and model ids in every event, and the secret checks are the
 * costliest part of validating one.
 */
const cleanValues = new Set<string>();
const MAX_CACHED_VALUE = 128;

function checkedClean(kind: 'id' | 'text', s: string, check: () => void): void {
  const key = kind === 'id' ? 'i' + s : 't' + s;
  if (cleanValues.has(key)) return;
  check();
  if (s.length <= MAX_CACHED_VALUE && cleanValues.size < 4096) cleanValues.add(key);
}

function checkScalar(field: string, kind: 'id' | 'digest' | 'code' | 'text', v: unknown): void {
  switch (kind) {
    case 'digest': {
      const s = checkString(field, v, 140);
      if (!DIGEST.test(s)) throw refuse(field, 'must be sha256:/sha384:/sha512: and lowercase hex');
      return;
    }
    case 'code': {
      const s = checkString(field, v, 64);
      if (!CODE.test(s)) throw refuse(field, 'must be an UPPER_SNAKE code');
      if (codeLooksLikeSecret(s)) throw secret(field, 'looks like key material, not a code');
      return;
    }
    case 'id': {
      const s = checkString(field, v, MAX_ID);
      checkedClean('id', s, () => {
        if (!ID.test(s)) throw refuse(field, 'must be an identifier');
        if (looksLikeSecret(s, true)) throw secret(field, 'looks like key material or ciphertext');
      });
      return;
    }
    case 'text': {
      const s = checkString(field, v, MAX_TEXT);
      checkedClean('text', s, () => {
        if (/\p{Cc}/u.test(s)) throw refuse(field, 'must not contain control characters');
        if (looksLikeSecret(s)) throw secret(field, 'looks like key material or ciphertext');
      });
      return;
    }
  }
}

function checkObject(field: string, v: unknown, fields: Record<string, 'id' | 'text' | 'count'>, optional: readonly string[] = []): void {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse(field, 'must be an object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    checkName(`${field}.${k}`);
    // Own members only: `constructor`, `toString` or `__proto__` must not find Object.prototype's.
    const kind = Object.hasOwn(fields, k) ? fields[k] : undefined;
    if (!kind) throw refuse(`${field}.${k}`, 'is not a known member');
    if (o[k] === undefined) continue;
    if (kind === 'count') {
      if (typeof o[k] !== 'number' || !Number.isSafeInteger(o[k]) || (o[k]) < 0) throw refuse(`${field}.${k}`, 'must be a non-negative integer');
    } else checkScalar(`${field}.${k}`, kind, o[k]);
  }
  for (const k of Object.keys(fields)) if (!optional.includes(k) && o[k] === undefined) throw refuse(`${field}.${k}`, 'is required');
}

const HASH_NAMED = /(digest|hash|measurement|fingerprint)$/i;
const ID_NAMED = /(id|session)$/i;
const BARE_HASH = /^(?:[0-9a-fA-F]{40}|[0-9a-fA-F]{64}|[0-9a-fA-F]{96}|[0-9a-fA-F]{128})$/;
const FACT_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;

function checkFacts(field: string, v: unknown): void {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse(field, 'must be an object of facts');
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > MAX_LABELS) throw refuse(field, `at most ${MAX_LABELS} facts`);
  for (const [k, x] of entries) {
    const f = `${field}.${k}`;
    checkName(f);
    if (!FACT_NAME.test(k)) throw refuse(f, 'fact names are identifiers');
    if (typeof x === 'boolean') continue;
    if (typeof x === 'number') {
      if (!Number.isFinite(x)) throw refuse(f, 'must be a finite number');
      continue;
    }
    const str = checkString(f, x, 256);
    if (DIGEST.test(str) || (HASH_NAMED.test(k) && BARE_HASH.test(str))) continue;
    if (/\p{Cc}/u.test(str)) throw refuse(f, 'must not contain control characters');
    if (looksLikeSecret(str, ID_NAMED.test(k))) throw secret(f, 'looks like key material or ciphertext');
  }
}

function checkField(field: string, spec: FieldSpec, v: unknown): void {
  const k = spec.kind;
  if (k === 'count') {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw refuse(field, 'must be a non-negative integer');
  } else if (k === 'principal') {
    checkObject(field, v, { tenant: 'id', subject: 'id', role: 'id' });
  } else if (k === 'keyref') {
    checkObject(field, v, { id: 'id', name: 'text', type: 'id', version: 'count' }, ['version']);
  } else if (k === 'facts') {
    checkFacts(field, v);
  } else if (typeof k === 'string') {
    checkScalar(field, k, v);
  } else if ('enum' in k) {
    if (typeof v !== 'string' || !k.enum.includes(v)) throw refuse(field, `must be one of ${k.enum.join(', ')}`);
  } else {
    if (!Array.isArray(v) || v.length > MAX_LIST) throw refuse(field, `must be a list of at most ${MAX_LIST}`);
    v.forEach((x, i) => checkScalar(`${field}[${i}]`, k.list, x));
  }
}

/** Checks an event against its schema and the secrets rule; returns it typed. */
export function validateEvent(value: unknown): CustodyEvent {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw refuse('(event)', 'must be an object');
  const obj = value as Record<string, unknown>;
  // Names first: a secret-named field is refused as a secret even when it is also unknown.
  for (const key of Object.keys(obj)) checkName(key);
  if (obj.v !== EVENT_VERSION) throw refuse('v', `must be ${EVENT_VERSION}`);
  if (typeof obj.type !== 'string' || !Object.hasOwn(SCHEMAS, obj.type)) throw refuse('type', 'is not a known event type');
  const schema = SCHEMAS[obj.type as EventType] as Record<string, FieldSpec>;
  if (typeof obj.time !== 'string' || !TIME.test(obj.time) || Number.isNaN(Date.parse(obj.time))) throw refuse('time', 'must be RFC 3339 UTC');
  if (obj.actor !== undefined) checkScalar('actor', 'id', obj.actor);
  if (obj.labels !== undefined) {
    const labels = obj.labels;
    if (typeof labels !== 'object' || labels === null || Array.isArray(labels)) throw refuse('labels', 'must be an object of strings');
    const entries = Object.entries(labels as Record<string, unknown>);
    if (entries.length > MAX_LABELS) throw refuse('labels', `at most ${MAX_LABELS} labels`);
    for (const [k, v] of entries) {
      checkName(`labels.${k}`);
      if (!LABEL_KEY.test(k)) throw refuse(`labels.${k}`, 'label names are lowercase identifiers');
      checkScalar(`labels.${k}`, 'text', v);
      if ((v as string).length > MAX_ID) throw refuse(`labels.${k}`, `label values are at most ${MAX_ID} characters`);
    }
  }
  for (const key of Object.keys(obj)) {
    if (key === 'v' || key === 'type' || key === 'time' || key === 'actor' || key === 'labels') continue;
    const spec = Object.hasOwn(schema, key) ? schema[key] : undefined;
    if (!spec) throw refuse(key, `is not a field of ${obj.type}`);
    if (obj[key] !== undefined) checkField(key, spec, obj[key]);
  }
  for (const [key, spec] of Object.entries(schema)) if (!spec.optional && obj[key] === undefined) throw refuse(key, 'is required');
  return obj as unknown as CustodyEvent;
}

/** Validates and encodes an event as its ledger entry (canonical JSON bytes). */
export function encodeEvent(event: CustodyEvent | ServiceAuditEvent | Record<string, unknown>): Bytes {
  const e = toCustodyEvent(event as CustodyEvent | ServiceAuditEvent);
  const bytes = canonicalBytes(e);
  if (bytes.length > MAX_ENTRY_SIZE) throw new ParseError('ERR_TLOG_ENTRY', 'event is larger than a log entry can be', { detail: { size: bytes.length } });
  return bytes;
}

/** Decodes a ledger entry into an event; the bytes must be the event's canonical form. */
export function decodeEvent(entry: Uint8Array): CustodyEvent {
  if (entry.length > MAX_ENTRY_SIZE) throw new ParseError('ERR_TLOG_ENTRY', 'entry is too large');
  let value: unknown;
  try {
    value = JSON.parse(fromUtf8(entry));
  } catch (e) {
    throw new ParseError('ERR_TLOG_EVENT', 'entry is not JSON', { cause: e });
  }
  const event = validateEvent(value);
  if (!equalBytes(canonicalBytes(event), entry)) throw new ParseError('ERR_TLOG_EVENT', 'entry is not in canonical JSON form');
  return event;
}

/** Canonical JSON text of an event (for display and digests). */
export function eventToString(e: CustodyEvent): string {
  return canonicalize(e);
}

/**
 * The audit record a Custody service keeps (the key broker's `AuditEvent`, structurally): no
 * `type`, an actor object and free-form public facts. `toCustodyEvent` maps it to an
 * `audit.recorded` event, so the broker can hand its events to the ledger unchanged.
 */
export interface ServiceAuditEvent {
  v: 1;
  action: string;
  time: string;
  actor: Principal;
  tenant: string;
  key?: KeyRef;
  verdict: 'allow' | 'deny' | 'error';
  reason?: string;
  detail?: Facts;
}

/** A Custody event as is, or a service audit record as an `audit.recorded` event (then validated). */
export function toCustodyEvent(e: CustodyEvent | ServiceAuditEvent): CustodyEvent {
  if (typeof e !== 'object' || e === null || Array.isArray(e) || 'type' in e) return validateEvent(e);
  const out: Record<string, unknown> = { v: 1, type: 'audit.recorded', time: e.time, action: e.action, tenant: e.tenant, verdict: e.verdict, principal: e.actor };
  if (e.key !== undefined) out.key = e.key;
  if (e.reason !== undefined) out.reason = e.reason;
  if (e.detail !== undefined) out.detail = e.detail;
  return validateEvent(out);
}

/**
 * Where producers (broker, gateway, trainer) send events; the ledger service implements it.
 * `append` resolves only once the entry is durably sequenced, with its log index.
 */
export interface AuditSink {
  append(event: CustodyEvent | ServiceAuditEvent): Promise<{ index: number }>;
}
