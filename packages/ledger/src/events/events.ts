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
 *     256-bit key in hex or base64 is longer). A digest belongs in a digest field, which checks
 *     its exact form; a fact named `...digest`, `...hash`, `...measurement` or `...fingerprint`
 *     may also hold bare hex of a hash length (40, 64, 96 or 128). Refused with
 *     ERR_TLOG_EVENT_SECRET.
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

/**
 * Whether a value contains something shaped like key material or ciphertext (rule 3).
 * `identifier` relaxes the run rule for random identifiers (only runs of 40+ count).
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
  return false;
}

function checkName(field: string): void {
  const words = nameWords(field.replace(/^labels\./, ''));
  if (words.some((w) => SECRET_WORDS.has(w))) throw secret(field, 'is named like a secret');
}

function checkString(field: string, v: unknown, max: number): string {
  if (typeof v !== 'string') throw refuse(field, 'must be a string');
  if (v.length === 0 || v.length > max) throw refuse(field, `must be 1..${max} characters`);
  return v;
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
      return;
    }
    case 'id': {
      const s = checkString(field, v, MAX_ID);
      if (!ID.test(s)) throw refuse(field, 'must be an identifier');
      if (looksLikeSecret(s, true)) throw secret(field, 'looks like key material or ciphertext');
      return;
    }
    case 'text': {
      const s = checkString(field, v, MAX_TEXT);
      if (/\p{Cc}/u.test(s)) throw refuse(field, 'must not contain control characters');
      if (looksLikeSecret(s)) throw secret(field, 'looks like key material or ciphertext');
      return;
    }
  }
}

function checkObject(field: string, v: unknown, fields: Record<string, 'id' | 'text' | 'count'>, optional: readonly string[] = []): void {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw refuse(field, 'must be an object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    checkName(`${field}.${k}`);
    const kind = fields[k];
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
    const spec = schema[key];
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
