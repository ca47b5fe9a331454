/**
 * Inference receipts (custody.dev/receipt/v1): one per response, signed by the gateway's
 * attested receipt key (Ed25519), so that a caller can later prove what the attested gateway
 * received, what it forwarded to the model after policy, and what it answered.
 *
 * ```json
 * { "format": "custody.dev/receipt/v1",
 *   "receiptId": "<UUIDv8 from SHA-256 of the canonical body>",
 *   "tenant": "acme", "route": "/v1/chat/completions",
 *   "gateway": { "platform": "sim", "simulated": true, "measurements": {...},
 *                "earId": "<EAR jti>", "attestationDigest": "sha256:<the EAR; without one the evidence, or with GPUs {devices, evidence}: bundleAttestationDigest>",
 *                "gpus": 1 },
 *              ("gpus": how many GPUs the answering gateway attested, 1..8; absent when it has none,
 *              so receipts of gateways without GPUs are unchanged. Replicas sharing an identity
 *              key share the receipt key, so this says which kind of replica answered.)
 *   "model": { "id": "custody-demo", "digest": "sha256:...", "backend": "demo" },
 *   "policy": { "version": "...", "action": "mask", "findings": [{"category":"email","action":"mask","count":1}] },
 *              (plus "output": { "findings": [...] } when the tenant has an output policy: what
 *              was found in the model's answer, redacted or allowed, counts only)
 *   "request": { "digest": "sha256:<binary HTTP request as received>", "forwardedDigest": "sha256:<body sent to the model>" },
 *   "response": { "digest": "sha256:<response content, whole stream>", "status": 200, "streamed": false },
 *   "timestamps": { "receivedAt": "...", "completedAt": "..." },
 *   "ledger": { "index": 42, "entryDigest": "sha256:<the inference.receipt event>" },
 *   "signature": { "alg": "Ed25519", "value": "<base64url>" } }
 * ```
 *
 * - The body is everything but `receiptId`, `ledger` and `signature`; `receiptId` is derived
 *   from its digest, and the ledger entry (`inference.receipt`) carries that id, so the log
 *   commits to the whole body.
 * - The signature covers the RFC 8785 form of everything but `signature`.
 */
import { z } from 'zod';
import {
  CustodyError,
  canonicalBytes,
  canonicalFromMembers,
  canonicalize,
  canonicalMembers,
  getSignatureProvider,
  utf8,
  type CanonicalMembers,
  copyBytes,
  equalBytes,
  fromBase64Url,
  fromUtf8,
  getHpkeProvider,
  sha256,
  subtle,
  toBase64Url,
  toHex,
  type Bytes,
} from '@custody/core';
import { encodeEvent, sha256Sync, verifyTlogProof, type CustodyEventOf, type TlogPolicy, type TlogProof } from '@custody/ledger';
import { MAX_BUNDLE_DEVICES } from '../attestation/bundle.js';
import type { OkpPublicJwk } from '../attestation/runtime-data.js';

export const RECEIPT_FORMAT = 'custody.dev/receipt/v1';
/** Header (non-streamed responses) and trailer (streamed responses) carrying the receipt. */
export const RECEIPT_HEADER = 'custody-receipt';
export const MAX_RECEIPT_BYTES = 16 * 1024;

export type PolicyAction = 'none' | 'allow' | 'redact' | 'mask' | 'block' | 'deny';

export interface ReceiptBody {
  format: typeof RECEIPT_FORMAT;
  tenant: string;
  route: string;
  gateway: {
    platform: string;
    simulated: boolean;
    measurements: Record<string, string>;
    earId?: string;
    attestationDigest: string;
    /** The answering gateway's attested GPUs (1..8); absent when it has none. */
    gpus?: number;
  };
  model: { id: string; digest?: string; backend: string };
  policy: {
    version: string;
    action: PolicyAction;
    findings: { category: string; action: string; count: number }[];
    rules?: string[];
    /** Present when the tenant has an output policy: what it found in the model's answer (redact or allow). */
    output?: { findings: { category: string; action: string; count: number }[] };
  };
  request: { digest: string; forwardedDigest?: string };
  response: { digest: string; status: number; streamed: boolean };
  timestamps: { receivedAt: string; completedAt: string };
}

export interface ReceiptLedgerRef {
  index: number;
  entryDigest: string;
}

export interface Receipt extends ReceiptBody {
  receiptId: string;
  ledger: ReceiptLedgerRef | null;
  signature: { alg: 'Ed25519'; value: string };
}

const DIGEST = /^sha256:[0-9a-f]{64}$/;
const digestField = z.string().regex(DIGEST);
const time = z.string().max(40).regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/);
const id = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/);

const receiptSchema = z.strictObject({
  format: z.literal(RECEIPT_FORMAT),
  receiptId: z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/),
  tenant: id,
  route: z.string().max(256),
  gateway: z.strictObject({
    platform: z.string().max(32),
    simulated: z.boolean(),
    measurements: z.record(z.string().max(64), z.string().max(256)).refine((r) => Object.keys(r).length <= 64),
    earId: z.string().max(256).optional(),
    attestationDigest: digestField,
    gpus: z.number().int().min(1).max(MAX_BUNDLE_DEVICES).optional(),
  }),
  model: z.strictObject({ id, digest: digestField.optional(), backend: z.string().max(64) }),
  policy: z.strictObject({
    version: z.string().max(512),
    action: z.enum(['none', 'allow', 'redact', 'mask', 'block', 'deny']),
    findings: z.array(z.strictObject({ category: z.string().max(64), action: z.string().max(16), count: z.number().int().min(0) })).max(64),
    rules: z.array(z.string().max(128)).max(64).optional(),
    output: z.strictObject({ findings: z.array(z.strictObject({ category: z.string().max(64), action: z.string().max(16), count: z.number().int().min(0) })).max(64) }).optional(),
  }),
  request: z.strictObject({ digest: digestField, forwardedDigest: digestField.optional() }),
  response: z.strictObject({ digest: digestField, status: z.number().int().min(100).max(599), streamed: z.boolean() }),
  timestamps: z.strictObject({ receivedAt: time, completedAt: time }),
  ledger: z.strictObject({ index: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), entryDigest: digestField }).nullable(),
  signature: z.strictObject({ alg: z.literal('Ed25519'), value: z.string().max(100) }),
});

const RECEIPT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;
const TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;
const ID = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*$/;
const ACTIONS: ReadonlySet<unknown> = new Set(['none', 'allow', 'redact', 'mask', 'block', 'deny']);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v) && Object.getPrototypeOf(v) === Object.prototype;
const str = (v: unknown, max: number): v is string => typeof v === 'string' && v.length <= max;
const digestOk = (v: unknown): v is string => typeof v === 'string' && DIGEST.test(v);
const idOk = (v: unknown): v is string => typeof v === 'string' && v.length >= 1 && v.length <= 128 && ID.test(v);
const timeOk = (v: unknown): v is string => str(v, 40) && TIME.test(v);
const intIn = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;
/** True when `o` has no keys but `required` and `optional` (all of `required` present). */
function keysOk(o: Obj, required: readonly string[], optional: readonly string[] = []): boolean {
  let n = 0;
  for (const k of required) if (!Object.hasOwn(o, k)) return false;
  for (const k in o) {
    if (!Object.hasOwn(o, k)) return false;
    if (!required.includes(k) && !optional.includes(k)) return false;
    n++;
  }
  return n >= required.length;
}

function fastFindings(v: unknown): Receipt['policy']['findings'] | undefined {
  if (!Array.isArray(v) || v.length > 64) return undefined;
  const findings: Receipt['policy']['findings'] = [];
  for (const f of v as unknown[]) {
    if (!isObj(f) || !keysOk(f, ['category', 'action', 'count']) || !str(f.category, 64) || !str(f.action, 16) || !intIn(f.count, 0, Number.MAX_SAFE_INTEGER)) return undefined;
    findings.push({ category: f.category, action: f.action, count: f.count });
  }
  return findings;
}

/**
 * The receipt schema checked by hand, for JSON the SDK parsed itself: the same object zod
 * builds (members in schema order, optional members only when present), or undefined when
 * anything is off, in which case the zod schema decides (and names the failing path). It may
 * refuse what zod accepts, never the reverse (property-tested against the schema).
 */
function fastReceipt(v: unknown): Receipt | undefined {
  if (!isObj(v) || !keysOk(v, ['format', 'receiptId', 'tenant', 'route', 'gateway', 'model', 'policy', 'request', 'response', 'timestamps', 'ledger', 'signature'])) return undefined;
  if (v.format !== RECEIPT_FORMAT || typeof v.receiptId !== 'string' || !RECEIPT_ID.test(v.receiptId) || !idOk(v.tenant) || !str(v.route, 256)) return undefined;
  const g = v.gateway;
  if (!isObj(g) || !keysOk(g, ['platform', 'simulated', 'measurements', 'attestationDigest'], ['earId', 'gpus'])) return undefined;
  if (!str(g.platform, 32) || typeof g.simulated !== 'boolean' || !digestOk(g.attestationDigest) || (g.earId !== undefined && !str(g.earId, 256)) || (g.gpus !== undefined && !intIn(g.gpus, 1, MAX_BUNDLE_DEVICES))) return undefined;
  const m = g.measurements;
  if (!isObj(m)) return undefined;
  const measurements: Record<string, string> = {};
  let count = 0;
  for (const k in m) {
    const val = m[k];
    if (!Object.hasOwn(m, k) || k === '__proto__' || k.length > 64 || !str(val, 256)) return undefined;
    measurements[k] = val;
    count++;
  }
  if (count > 64) return undefined;
  const md = v.model;
  if (!isObj(md) || !keysOk(md, ['id', 'backend'], ['digest']) || !idOk(md.id) || (md.digest !== undefined && !digestOk(md.digest)) || !str(md.backend, 64)) return undefined;
  const p = v.policy;
  if (!isObj(p) || !keysOk(p, ['version', 'action', 'findings'], ['rules', 'output']) || !str(p.version, 512) || !ACTIONS.has(p.action)) return undefined;
  const findings = fastFindings(p.findings);
  if (!findings) return undefined;
  let output: { findings: Receipt['policy']['findings'] } | undefined;
  if (p.output !== undefined) {
    const o = p.output;
    const of = isObj(o) && keysOk(o, ['findings']) ? fastFindings(o.findings) : undefined;
    if (!of) return undefined;
    output = { findings: of };
  }
  let rules: string[] | undefined;
  if (p.rules !== undefined) {
    if (!Array.isArray(p.rules) || p.rules.length > 64) return undefined;
    rules = [];
    for (const r of p.rules as unknown[]) {
      if (!str(r, 128)) return undefined;
      rules.push(r);
    }
  }
  const rq = v.request;
  if (!isObj(rq) || !keysOk(rq, ['digest'], ['forwardedDigest']) || !digestOk(rq.digest) || (rq.forwardedDigest !== undefined && !digestOk(rq.forwardedDigest))) return undefined;
  const rs = v.response;
  if (!isObj(rs) || !keysOk(rs, ['digest', 'status', 'streamed']) || !digestOk(rs.digest) || !intIn(rs.status, 100, 599) || typeof rs.streamed !== 'boolean') return undefined;
  const t = v.timestamps;
  if (!isObj(t) || !keysOk(t, ['receivedAt', 'completedAt']) || !timeOk(t.receivedAt) || !timeOk(t.completedAt)) return undefined;
  const l = v.ledger;
  if (l !== null && (!isObj(l) || !keysOk(l, ['index', 'entryDigest']) || !intIn(l.index, 0, Number.MAX_SAFE_INTEGER) || !digestOk(l.entryDigest))) return undefined;
  const sg = v.signature;
  if (!isObj(sg) || !keysOk(sg, ['alg', 'value']) || sg.alg !== 'Ed25519' || !str(sg.value, 100)) return undefined;
  return {
    format: RECEIPT_FORMAT,
    receiptId: v.receiptId,
    tenant: v.tenant,
    route: v.route,
    gateway: { platform: g.platform, simulated: g.simulated, measurements, ...(g.earId !== undefined ? { earId: g.earId } : {}), attestationDigest: g.attestationDigest, ...(g.gpus !== undefined ? { gpus: g.gpus } : {}) },
    model: { id: md.id, ...(md.digest !== undefined ? { digest: md.digest } : {}), backend: md.backend },
    policy: { version: p.version, action: p.action as PolicyAction, findings, ...(rules !== undefined ? { rules } : {}), ...(output !== undefined ? { output } : {}) },
    request: { digest: rq.digest, ...(rq.forwardedDigest !== undefined ? { forwardedDigest: rq.forwardedDigest } : {}) },
    response: { digest: rs.digest, status: rs.status, streamed: rs.streamed },
    timestamps: { receivedAt: t.receivedAt, completedAt: t.completedAt },
    ledger: l === null ? null : { index: l.index as number, entryDigest: l.entryDigest as string },
    signature: { alg: 'Ed25519', value: sg.value },
  };
}

/** @internal The zod schema alone (tests compare the hand check with it). */
export function parseReceiptWithSchema(value: unknown): Receipt | undefined {
  const r = receiptSchema.safeParse(value);
  return r.success ? r.data : undefined;
}

/** @internal The hand check alone (tests compare it with the schema). */
export const fastReceiptForTests = fastReceipt;

// Below this size a synchronous hash is cheaper than a round trip through WebCrypto's job queue.
const SYNC_HASH_MAX = 64 * 1024;

/** SHA-256, synchronously: the HPKE provider's native hash when it has one (node:crypto), else JavaScript. */
function syncSha256(data: Uint8Array): Bytes {
  const provider = getHpkeProvider();
  return provider.sha256 ? provider.sha256(data) : sha256Sync(data);
}

/** `sha256:<hex>` of some bytes. */
export async function digestOf(data: Uint8Array): Promise<string> {
  return 'sha256:' + toHex(getHpkeProvider().sha256 || data.length <= SYNC_HASH_MAX ? syncSha256(data) : await sha256(data));
}

const RECEIPT_ONLY = ['receiptId', 'ledger', 'signature'] as const;

function idFromDigest(d: Uint8Array): string {
  const b = d.slice(0, 16);
  b[6] = (b[6]! & 0x0f) | 0x80;
  b[8] = (b[8]! & 0x3f) | 0x80;
  const h = toHex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The id from a receipt's (or a body's) canonical members: SHA-256 of the body's RFC 8785 form. */
function idOfMembers(members: CanonicalMembers): string {
  return idFromDigest(syncSha256(utf8(canonicalFromMembers(members, { omit: RECEIPT_ONLY }))));
}

/** The receipt id: SHA-256 of the canonical body, shaped as an RFC 9562 version 8 UUID. */
export function receiptIdOf(body: ReceiptBody): Promise<string> {
  return Promise.resolve(idOfMembers(canonicalMembers(body as unknown as Record<string, unknown>)));
}

/** A receipt body canonicalised once, with its id: what the gateway logs before it signs. */
export interface PreparedReceipt {
  readonly body: ReceiptBody;
  readonly receiptId: string;
  readonly members: CanonicalMembers;
}

export function prepareReceipt(body: ReceiptBody): PreparedReceipt {
  const members = canonicalMembers(body as unknown as Record<string, unknown>);
  return { body, receiptId: idOfMembers(members), members };
}

/** The `inference.receipt` ledger event for a receipt body and its id. */
export function receiptLedgerEvent(body: ReceiptBody, receiptId: string): CustodyEventOf<'inference.receipt'> {
  return {
    v: 1,
    type: 'inference.receipt',
    time: body.timestamps.completedAt,
    actor: 'custody-gateway',
    receiptId,
    modelId: body.model.id,
    ...(body.model.digest !== undefined ? { modelDigest: body.model.digest } : {}),
    requestDigest: body.request.digest,
    responseDigest: body.response.digest,
    attestationDigest: body.gateway.attestationDigest,
  };
}

/** The bytes the signature covers: RFC 8785 JSON of the receipt without `signature`. */
export function receiptSigningBytes(r: Omit<Receipt, 'signature'> & { signature?: unknown }): Bytes {
  const { signature: _sig, ...rest } = r;
  return canonicalBytes(rest);
}

/** An Ed25519 signing function (a platform key handle the caller keeps). */
export type ReceiptSignFn = (message: Bytes) => Uint8Array | Promise<Uint8Array>;

/**
 * Signs a prepared receipt (gateway side) and encodes its header value, from the body's
 * canonical members: the body is canonicalised once for id, signature and header together.
 */
export async function signPreparedReceipt(p: PreparedReceipt, ledger: ReceiptLedgerRef | null, key: CryptoKey | ReceiptSignFn): Promise<{ receipt: Receipt; header: string }> {
  const extra = { receiptId: JSON.stringify(p.receiptId), ledger: canonicalize(ledger) };
  const message = utf8(canonicalFromMembers(p.members, { omit: RECEIPT_ONLY, extra }));
  const sig = typeof key === 'function' ? await key(message) : new Uint8Array(await subtle.sign({ name: 'Ed25519' }, key, message));
  const signature = { alg: 'Ed25519' as const, value: toBase64Url(sig) };
  const header = toBase64Url(utf8(canonicalFromMembers(p.members, { omit: RECEIPT_ONLY, extra: { ...extra, signature: canonicalize(signature) } })));
  return { receipt: { ...p.body, receiptId: p.receiptId, ledger, signature }, header };
}

/** Signs a receipt (gateway side): id from the body, ledger reference, Ed25519 signature. */
export async function signReceipt(body: ReceiptBody, receiptId: string, ledger: ReceiptLedgerRef | null, key: CryptoKey | ReceiptSignFn): Promise<Receipt> {
  const p = prepareReceipt(body);
  return (await signPreparedReceipt({ ...p, receiptId }, ledger, key)).receipt;
}

/** Header value: base64url of the receipt's canonical JSON. */
export function encodeReceiptHeader(r: Receipt): string {
  return toBase64Url(canonicalBytes(r));
}

/**
 * Whether a JSON value has a `__proto__` member at any depth. The schema's records drop such a
 * member without failing, so a parsed receipt would no longer hold everything received (and a
 * signature checked over the parsed receipt would not cover it). Receipt values nest at most 4
 * levels and the schema refuses an object or array wherever it wants a string, number or
 * boolean, so the search stops at depth 8 (also ending cycles in an object given by a caller).
 */
function hasProtoMember(v: unknown, depth = 0): boolean {
  if (typeof v !== 'object' || v === null || depth > 8) return false;
  if (Array.isArray(v)) return v.some((x) => hasProtoMember(x, depth + 1));
  if (Object.hasOwn(v, '__proto__')) return true;
  return Object.values(v).some((x) => hasProtoMember(x, depth + 1));
}

/** A parsed receipt and, when it came from a header value, the JSON bytes it was decoded from. */
function decodeReceipt(input: unknown): { receipt: Receipt; bytes?: Bytes } {
  let value: unknown = input;
  let bytes: Bytes | undefined;
  if (typeof input === 'string') {
    if (input.length > (MAX_RECEIPT_BYTES * 4) / 3 + 4) throw new CustodyError('ERR_RECEIPT_MALFORMED', 'receipt is too large');
    try {
      bytes = fromBase64Url(input);
      value = JSON.parse(fromUtf8(bytes));
    } catch (e) {
      throw new CustodyError('ERR_RECEIPT_MALFORMED', 'receipt is not base64url JSON', { cause: e });
    }
    // Freshly parsed JSON: the hand check builds what the schema would (the schema decides otherwise).
    const fast = fastReceipt(value);
    if (fast) return { receipt: fast, bytes };
  }
  if (hasProtoMember(value)) throw new CustodyError('ERR_RECEIPT_MALFORMED', 'receipt has a __proto__ member');
  const r = receiptSchema.safeParse(value);
  if (!r.success) {
    throw new CustodyError('ERR_RECEIPT_MALFORMED', `receipt is malformed at ${r.error.issues[0]?.path.map(String).join('.') || '(root)'}`);
  }
  return bytes ? { receipt: r.data, bytes } : { receipt: r.data };
}

/** Parses a receipt from its header value or JSON object (shape and bounds only). */
export function parseReceipt(input: unknown): Receipt {
  return decodeReceipt(input).receipt;
}

/** Imported receipt keys by their `x`: a client verifies every response with the same key. */
const receiptKeys = new Map<string, Promise<CryptoKey>>();

export function importReceiptKey(jwk: OkpPublicJwk): Promise<CryptoKey> {
  let p = receiptKeys.get(jwk.x);
  if (!p) {
    p = subtle.importKey('jwk', { kty: 'OKP', crv: 'Ed25519', x: jwk.x }, { name: 'Ed25519' }, true, ['verify']).catch((e: unknown) => {
      receiptKeys.delete(jwk.x);
      throw new CustodyError('ERR_RECEIPT_SIGNATURE', 'receipt key is not a usable Ed25519 public key', { cause: e });
    });
    if (receiptKeys.size >= 64) receiptKeys.delete(receiptKeys.keys().next().value!);
    receiptKeys.set(jwk.x, p);
  }
  return p;
}

export interface ReceiptExpectations {
  /** `sha256:` of the binary HTTP request the client encapsulated. */
  requestDigest?: string;
  /** `sha256:` of the response content the client received (whole stream). */
  responseDigest?: string;
  status?: number;
  /** Whether the response was streamed (an answer sent whole must not have a receipt that says it streamed). */
  streamed?: boolean;
}

/**
 * Verifies a receipt: shape, Ed25519 signature by the attested receipt key, id derived from the
 * body, and, when given, that it describes this request and response. Errors: ERR_RECEIPT_*.
 */
export async function verifyReceipt(input: unknown, key: CryptoKey | OkpPublicJwk, expect: ReceiptExpectations = {}): Promise<Receipt> {
  const { receipt: r, bytes } = decodeReceipt(input);
  // One canonical pass: the signed bytes, the id's bytes and the whole receipt's form are all assembled from it.
  const members = canonicalMembers(r as unknown as Record<string, unknown>);
  // The signature is checked over the parsed receipt, so the bytes received must be exactly its
  // RFC 8785 form (what the gateway sends): otherwise a member the parse dropped or merged (a
  // repeated key, a member the schema does not keep), or any other spelling, would go unsigned.
  // Assembled from the members above (a join, not a second canonicalisation), so every header
  // takes this check, the fast path included: the hand check cannot see repeated keys either.
  if (bytes && !equalBytes(utf8(canonicalFromMembers(members)), bytes)) throw new CustodyError('ERR_RECEIPT_MALFORMED', 'receipt is not in its canonical (RFC 8785) form');
  const message = utf8(canonicalFromMembers(members, { omit: ['signature'] }));
  let ok = false;
  try {
    const sig = fromBase64Url(r.signature.value);
    if ('type' in key && key.type === 'public') ok = await subtle.verify({ name: 'Ed25519' }, key, copyBytes(sig), message);
    else ok = await getSignatureProvider().verifyEd25519(fromBase64Url((key as OkpPublicJwk).x), sig, message);
  } catch {
    ok = false;
  }
  if (!ok) throw new CustodyError('ERR_RECEIPT_SIGNATURE');
  if (idOfMembers(members) !== r.receiptId) throw new CustodyError('ERR_RECEIPT_MALFORMED', 'receipt id is not derived from the receipt body');
  if (expect.requestDigest !== undefined && r.request.digest !== expect.requestDigest) throw new CustodyError('ERR_RECEIPT_MISMATCH', 'the receipt names another request', { detail: { field: 'request.digest' } });
  if (expect.responseDigest !== undefined && r.response.digest !== expect.responseDigest) throw new CustodyError('ERR_RECEIPT_MISMATCH', 'the receipt names another response', { detail: { field: 'response.digest' } });
  if (expect.status !== undefined && r.response.status !== expect.status) throw new CustodyError('ERR_RECEIPT_MISMATCH', 'the receipt names another status', { detail: { field: 'response.status' } });
  if (expect.streamed !== undefined && r.response.streamed !== expect.streamed) throw new CustodyError('ERR_RECEIPT_MISMATCH', expect.streamed ? 'the receipt says the response was not streamed' : 'the receipt says the response was streamed', { detail: { field: 'response.streamed' } });
  return r;
}

/**
 * Strict check of a receipt against the transparency log: the `inference.receipt` event rebuilt
 * from the receipt is the entry at `ledger.index`, under a checkpoint the log policy trusts
 * whose witness cosignatures are fresh at `now`.
 */
export async function verifyReceiptInclusion(r: Receipt, proof: string | Uint8Array | TlogProof, policy: TlogPolicy, opts: { now: Date }): Promise<{ index: number; treeSize: number }> {
  if (!r.ledger) throw new CustodyError('ERR_TLOG_INCLUSION', 'the receipt names no ledger entry');
  const entry = encodeEvent(receiptLedgerEvent(r, r.receiptId));
  if ((await digestOf(entry)) !== r.ledger.entryDigest) throw new CustodyError('ERR_RECEIPT_MISMATCH', 'the ledger entry digest does not match the receipt', { detail: { field: 'ledger.entryDigest' } });
  const v = await verifyTlogProof(proof, { entry }, policy, { now: opts.now });
  if (v.index !== r.ledger.index) throw new CustodyError('ERR_TLOG_INCLUSION', 'the proof is for another index', { detail: { index: v.index, expected: r.ledger.index } });
  return { index: v.index, treeSize: v.checkpoint.size };
}

