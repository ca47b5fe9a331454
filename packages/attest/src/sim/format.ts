import {
  ParseError,
  VerificationError,
  assertMaxSize,
  canonicalBytes,
  concatBytes,
  copyBytes,
  fromBase64Url,
  fromUtf8,
  subtle,
  toBase64Url,
  toHex,
  utf8,
  wipe,
  type Bytes,
} from '@custody/core';

/**
 * `custody-sim/v1`: software-signed evidence for development on machines without a TEE.
 * Nothing but a software key stands behind it; every verifier output labels it SIMULATED and
 * default policies reject it.
 *
 * ```json
 * { "format": "custody-sim/v1",
 *   "measurements": { "measurement": "<hex>", ... },   // 1..32 named values, lowercase hex
 *   "reportData": "<hex, at most 64 bytes>",
 *   "debug": false,
 *   "nonce": "<hex, at most 64 bytes>",                  // optional
 *   "issuedAt": "<RFC 3339 UTC time>",
 *   "publicKey": "<base64url raw Ed25519 public key (32 bytes)>",
 *   "signature": "<base64url Ed25519 signature (64 bytes)>" }
 * ```
 * The signature covers the RFC 8785 canonical JSON of the object without `signature`.
 */
export const SIM_FORMAT = 'custody-sim/v1';

export const MAX_SIM_EVIDENCE = 64 * 1024;
const MAX_MEASUREMENTS = 32;
const MAX_MEASUREMENT_BYTES = 128;
const MAX_DATA_BYTES = 64;

/**
 * The published development key seed. Anyone can sign with it, which is the point: sim evidence
 * proves nothing, and policies that allow it must say so explicitly.
 */
export const SIM_DEV_SEED: Bytes = utf8('custody-sim/v1 PUBLIC dev seed!!');

export interface SimEvidence {
  format: typeof SIM_FORMAT;
  measurements: Record<string, string>;
  reportData: string;
  debug: boolean;
  nonce?: string;
  issuedAt: string;
  publicKey: string;
  signature: string;
}

const FIELDS = new Set(['format', 'measurements', 'reportData', 'debug', 'nonce', 'issuedAt', 'publicKey', 'signature']);
const NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const HEX_RE = /^(?:[0-9a-f]{2})*$/;
const TIME_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

function hexField(v: unknown, what: string, maxBytes: number): string {
  if (typeof v !== 'string' || !HEX_RE.test(v)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not lowercase hex`);
  if (v.length > maxBytes * 2) throw new ParseError('ERR_INPUT_TOO_LARGE', `${what} is longer than ${maxBytes} bytes`, { detail: { length: v.length / 2 } });
  return v;
}

/** Parses and bounds a custody-sim/v1 document (no signature check). */
export function parseSimEvidence(bytes: Uint8Array): SimEvidence {
  assertMaxSize(bytes, MAX_SIM_EVIDENCE, 'sim evidence');
  let doc: unknown;
  try {
    doc = JSON.parse(fromUtf8(bytes));
  } catch (e) {
    if (e instanceof ParseError) throw e;
    throw new ParseError('ERR_INPUT_MALFORMED', 'sim evidence is not valid JSON', { cause: e });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new ParseError('ERR_INPUT_MALFORMED', 'sim evidence is not a JSON object');
  const o = doc as Record<string, unknown>;
  if (o.format !== SIM_FORMAT) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'evidence is not custody-sim/v1');
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) throw new ParseError('ERR_INPUT_MALFORMED', 'sim evidence has an unknown field', { detail: { field: k.slice(0, 32) } });
  const m = o.measurements;
  if (typeof m !== 'object' || m === null || Array.isArray(m)) throw new ParseError('ERR_INPUT_MALFORMED', 'measurements is not an object');
  const names = Object.keys(m);
  if (names.length === 0 || names.length > MAX_MEASUREMENTS) throw new ParseError('ERR_INPUT_MALFORMED', `measurements must hold 1 to ${MAX_MEASUREMENTS} values`);
  const measurements: Record<string, string> = {};
  for (const n of names) {
    if (!NAME_RE.test(n)) throw new ParseError('ERR_INPUT_MALFORMED', 'measurement name is not an identifier', { detail: { name: n.slice(0, 32) } });
    measurements[n] = hexField((m as Record<string, unknown>)[n], `measurements.${n}`, MAX_MEASUREMENT_BYTES);
  }
  if (typeof o.debug !== 'boolean') throw new ParseError('ERR_INPUT_MALFORMED', 'debug is not a boolean');
  if (typeof o.issuedAt !== 'string' || !TIME_RE.test(o.issuedAt) || Number.isNaN(Date.parse(o.issuedAt))) throw new ParseError('ERR_INPUT_MALFORMED', 'issuedAt is not an RFC 3339 time');
  if (typeof o.publicKey !== 'string' || o.publicKey.length > 64) throw new ParseError('ERR_INPUT_MALFORMED', 'publicKey is not a base64url string');
  if (typeof o.signature !== 'string' || o.signature.length > 128) throw new ParseError('ERR_INPUT_MALFORMED', 'signature is not a base64url string');
  if (fromBase64Url(o.publicKey).length !== 32) throw new ParseError('ERR_INPUT_MALFORMED', 'publicKey is not a 32-byte Ed25519 key');
  if (fromBase64Url(o.signature).length !== 64) throw new ParseError('ERR_INPUT_MALFORMED', 'signature is not a 64-byte Ed25519 signature');
  const out: SimEvidence = {
    format: SIM_FORMAT,
    measurements,
    reportData: hexField(o.reportData, 'reportData', MAX_DATA_BYTES),
    debug: o.debug,
    issuedAt: o.issuedAt,
    publicKey: o.publicKey,
    signature: o.signature,
  };
  if (o.nonce !== undefined) out.nonce = hexField(o.nonce, 'nonce', MAX_DATA_BYTES);
  return out;
}

/** The bytes the signature covers: canonical JSON of everything but `signature`. */
export function simSignedBytes(ev: Omit<SimEvidence, 'signature'> & { signature?: string }): Bytes {
  const { signature: _signature, ...rest } = ev;
  return canonicalBytes(rest);
}

/** Checks the Ed25519 signature; returns the raw public key. */
export async function verifySimSignature(ev: SimEvidence): Promise<Bytes> {
  const pub = fromBase64Url(ev.publicKey);
  let key: CryptoKey;
  try {
    key = await subtle.importKey('raw', pub, { name: 'Ed25519' }, false, ['verify']);
  } catch (e) {
    throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'sim public key is not a valid Ed25519 key', { cause: e });
  }
  let ok = false;
  try {
    ok = await subtle.verify({ name: 'Ed25519' }, key, fromBase64Url(ev.signature), simSignedBytes(ev));
  } catch {
    ok = false;
  }
  if (!ok) throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'sim evidence signature does not verify');
  return pub;
}

// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): the only import form WebCrypto accepts.
const ED25519_PKCS8_PREFIX = Uint8Array.of(0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20);

export interface CreateSimEvidenceOptions {
  measurements: Record<string, string | Uint8Array>;
  reportData: Uint8Array;
  debug?: boolean;
  nonce?: Uint8Array;
  /** Injected time (verification code never reads the clock). */
  issuedAt: Date;
  /** 32-byte Ed25519 seed; the published SIM_DEV_SEED when omitted. */
  seed?: Uint8Array;
}

/** Creates signed custody-sim/v1 evidence (for the sim attester and tests). */
export async function createSimEvidence(opts: CreateSimEvidenceOptions): Promise<Bytes> {
  const seed = opts.seed ?? SIM_DEV_SEED;
  if (seed.length !== 32) throw new ParseError('ERR_INPUT_MALFORMED', 'sim seed must be 32 bytes');
  if (opts.reportData.length > MAX_DATA_BYTES) throw new ParseError('ERR_INPUT_TOO_LARGE', `reportData is longer than ${MAX_DATA_BYTES} bytes`);
  if (opts.nonce && opts.nonce.length > MAX_DATA_BYTES) throw new ParseError('ERR_INPUT_TOO_LARGE', `nonce is longer than ${MAX_DATA_BYTES} bytes`);
  const measurements: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.measurements)) measurements[k] = typeof v === 'string' ? v.toLowerCase() : toHex(v);
  const pkcs8 = concatBytes(ED25519_PKCS8_PREFIX, seed);
  let priv: CryptoKey;
  try {
    priv = await subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
  } finally {
    wipe(pkcs8);
  }
  const jwk = await subtle.exportKey('jwk', priv);
  const doc: Omit<SimEvidence, 'signature'> & { signature?: string } = {
    format: SIM_FORMAT,
    measurements,
    reportData: toHex(opts.reportData),
    debug: opts.debug ?? false,
    issuedAt: opts.issuedAt.toISOString(),
    publicKey: jwk.x!,
  };
  if (opts.nonce) doc.nonce = toHex(opts.nonce);
  // Round-trip through the parser so the writer can never emit what the reader rejects.
  const unsigned = { ...doc, signature: toBase64Url(new Uint8Array(64)) };
  parseSimEvidence(utf8(JSON.stringify(unsigned)));
  const sig = new Uint8Array(await subtle.sign({ name: 'Ed25519' }, priv, copyBytes(simSignedBytes(doc))));
  return utf8(JSON.stringify({ ...doc, signature: toBase64Url(sig) }, null, 2) + '\n');
}

/** Cheap sniff for the verifier registry. */
export function looksLikeSimEvidence(bytes: Uint8Array): boolean {
  if (bytes.length > MAX_SIM_EVIDENCE) return false;
  let i = 0;
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++;
  if (bytes[i] !== 0x7b) return false;
  return new TextDecoder('utf-8', { fatal: false }).decode(bytes).includes(`"${SIM_FORMAT}"`);
}

