import { ParseError, assertMaxSize, fromUtf8, toBase64, toHex, utf8, type Bytes } from '@custody/core';
import { decodeBase64 } from './base64.js';
import { readAttestationKeyString, type TpmAttestationKey } from './ak.js';
import { tpmHash, tpmHashByName } from './constants.js';
import type { TpmPcrBank, TpmQuote } from './quote.js';
import { parseTpmsAttest, parseTpmtSignature } from './structures.js';

/**
 * TPM quote evidence files. Two JSON forms are read:
 *
 * 1. `custody-tpm-quote/v1`, what `custody attest collect --platform tpm` writes:
 *    ```json
 *    { "format": "custody-tpm-quote/v1",
 *      "ak_public": "<PEM SPKI, or base64 of SPKI DER, TPM2B_PUBLIC or TPMT_PUBLIC>",
 *      "quote": "<base64 TPMS_ATTEST, as tpm2_quote -m writes it>",
 *      "signature": "<base64 TPMT_SIGNATURE, as tpm2_quote -s writes it>",
 *      "pcrs": { "bank": "sha256", "values": { "0": "<hex>", "1": "<hex>", ... } } }
 *    ```
 *    `pcrs` may also be an array of such objects, one per bank the quote selects.
 * 2. The plain-TPM form used by trustee's tests (the shared vector `azure-vtpm/tpm_evidence.json`):
 *    `{ "ak_public": "<base64 SPKI>", "tpm_quote": { "message", "signature", "pcrs": ["<hex>" x N] } }`
 *    where `pcrs[i]` is PCR i of the single bank the quote selects.
 *
 * Neither form carries an AK certificate: a plain TPM quote has no vendor chain, and the AK is
 * trusted only if a policy lists its SPKI SHA-256.
 */
export const TPM_QUOTE_FORMAT = 'custody-tpm-quote/v1';

export const MAX_TPM_EVIDENCE = 1024 * 1024;
const MAX_PCR_INDEX = 63;
const MAX_BANKS = 8;

export interface TpmQuoteEvidence extends TpmQuote {
  format: typeof TPM_QUOTE_FORMAT | 'tpm-evidence-json';
}

type Json = Record<string, unknown>;

function asObject(v: unknown, what: string): Json {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not a JSON object`);
  return v as Json;
}

function asString(v: unknown, what: string, max: number): string {
  if (typeof v !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not a string`);
  if (v.length > max) throw new ParseError('ERR_INPUT_TOO_LARGE', `${what} is longer than ${max} characters`, { detail: { length: v.length } });
  return v;
}

function parseJson(bytes: Uint8Array, what: string): unknown {
  const text = fromUtf8(bytes);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not valid JSON`, { cause: e });
  }
}

function nibble(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Hex to bytes without regular expressions: PCR values are most of what this format holds. */
function decodeHex(s: string, what: string): Bytes {
  if (s.length % 2 !== 0) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not hex`);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) {
    const hi = nibble(s.charCodeAt(2 * i));
    const lo = nibble(s.charCodeAt(2 * i + 1));
    if (hi < 0 || lo < 0) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not hex`, { detail: { offset: 2 * i } });
    out[i] = (hi << 4) | lo;
  }
  return out;
}

function pcrValue(v: unknown, what: string, size: number): Bytes {
  const b = decodeHex(asString(v, what, 2 * 64), what);
  if (b.length !== size) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not a ${size}-byte digest`, { detail: { length: b.length } });
  return b;
}

function readBank(v: unknown, what: string): TpmPcrBank {
  const o = asObject(v, what);
  const name = asString(o.bank, `${what}.bank`, 16);
  const h = tpmHashByName(name.toLowerCase());
  if (!h) throw new ParseError('ERR_INPUT_UNSUPPORTED', `${what}.bank is not sha1, sha256, sha384 or sha512`);
  const values = new Map<number, Bytes>();
  const obj = asObject(o.values, `${what}.values`);
  const keys = Object.keys(obj);
  if (keys.length > MAX_PCR_INDEX + 1) throw new ParseError('ERR_INPUT_TOO_LARGE', `${what}.values has more than ${MAX_PCR_INDEX + 1} PCRs`);
  for (const k of keys) {
    if (!/^(0|[1-9][0-9]?)$/.test(k) || Number(k) > MAX_PCR_INDEX) throw new ParseError('ERR_INPUT_MALFORMED', `${what}.values has a key that is not a PCR index`, { detail: { key: k.slice(0, 8) } });
    values.set(Number(k), pcrValue(obj[k], `${what}.values[${k}]`, h.size));
  }
  return { hashAlg: h.alg, hash: h.name, values };
}

function readKey(v: unknown): TpmAttestationKey {
  return readAttestationKeyString(asString(v, 'ak_public', 8192));
}

/**
 * Reads either JSON form into parsed quote parts; every byte field is parsed and bounded.
 * `onSigned`, when given, is called with the signed parts (TPMS_ATTEST, TPMT_SIGNATURE, AK) as
 * soon as they are parsed and before the PCR values are: a verifier starts the signature check
 * there, so it runs while the rest is parsed. Its result counts only if the whole parse succeeds.
 */
export function parseTpmEvidence(bytes: Uint8Array, onSigned?: (parts: Pick<TpmQuote, 'attest' | 'signature' | 'ak'>) => void): TpmQuoteEvidence {
  assertMaxSize(bytes, MAX_TPM_EVIDENCE, 'TPM evidence');
  const o = asObject(parseJson(bytes, 'TPM evidence'), 'TPM evidence');
  if (o.format !== undefined) {
    if (o.format !== TPM_QUOTE_FORMAT) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'TPM evidence format is not custody-tpm-quote/v1');
    const ak = readKey(o.ak_public);
    const attest = parseTpmsAttest(decodeBase64(asString(o.quote, 'quote', 8192)));
    const signature = parseTpmtSignature(decodeBase64(asString(o.signature, 'signature', 2048)));
    onSigned?.({ attest, signature, ak });
    const rawBanks = Array.isArray(o.pcrs) ? (o.pcrs as unknown[]) : [o.pcrs];
    if (rawBanks.length === 0 || rawBanks.length > MAX_BANKS) throw new ParseError('ERR_INPUT_MALFORMED', `pcrs must hold 1 to ${MAX_BANKS} banks`);
    const pcrs = rawBanks.map((b, i) => readBank(b, `pcrs[${i}]`));
    if (new Set(pcrs.map((b) => b.hashAlg)).size !== pcrs.length) throw new ParseError('ERR_INPUT_MALFORMED', 'pcrs lists a bank twice');
    return { format: TPM_QUOTE_FORMAT, ak, attest, signature, pcrs };
  }
  if (o.tpm_quote !== undefined && o.ak_public !== undefined) {
    const ak = readKey(o.ak_public);
    const q = asObject(o.tpm_quote, 'tpm_quote');
    const attest = parseTpmsAttest(decodeBase64(asString(q.message, 'tpm_quote.message', 8192)));
    const signature = parseTpmtSignature(decodeBase64(asString(q.signature, 'tpm_quote.signature', 2048)));
    onSigned?.({ attest, signature, ak });
    if (!Array.isArray(q.pcrs)) throw new ParseError('ERR_INPUT_MALFORMED', 'tpm_quote.pcrs is not an array');
    const list = q.pcrs as unknown[];
    if (list.length > MAX_PCR_INDEX + 1) throw new ParseError('ERR_INPUT_TOO_LARGE', `tpm_quote.pcrs has more than ${MAX_PCR_INDEX + 1} values`);
    // The array form names no bank: it is the one bank the quote selects.
    const banks = (attest.quote?.pcrSelect ?? []).filter((s) => s.pcrs.length > 0);
    if (banks.length > 1) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'tpm_quote.pcrs cannot describe a quote over several PCR banks');
    const pcrs: TpmPcrBank[] = [];
    const sel = banks[0];
    if (sel) {
      const h = tpmHash(sel.hashAlg);
      if (!h) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'the quoted PCR bank uses a hash Custody cannot compute', { detail: { bank: sel.hashAlg } });
      const values = new Map<number, Bytes>();
      list.forEach((v, i) => values.set(i, pcrValue(v, `tpm_quote.pcrs[${i}]`, h.size)));
      pcrs.push({ hashAlg: sel.hashAlg, hash: h.name, values });
    }
    return { format: 'tpm-evidence-json', ak, attest, signature, pcrs };
  }
  throw new ParseError('ERR_INPUT_MALFORMED', 'JSON is neither custody-tpm-quote/v1 nor {ak_public, tpm_quote}');
}

/** Cheap sniff: a JSON object naming the custody format, or carrying `ak_public` and `tpm_quote` (and no HCL report). */
export function looksLikeTpmEvidence(bytes: Uint8Array): boolean {
  let i = 0;
  while (i < bytes.length && (bytes[i] === 0x20 || bytes[i] === 0x0a || bytes[i] === 0x0d || bytes[i] === 0x09)) i++;
  if (bytes[i] !== 0x7b /* { */ || bytes.length > MAX_TPM_EVIDENCE) return false;
  const text = new TextDecoder('utf-8', { fatal: false }).decode(bytes);
  if (text.includes(`"${TPM_QUOTE_FORMAT}"`)) return true;
  // Azure vTPM evidence also has a `tpm_quote`, but with an HCL report and no `ak_public`.
  return text.includes('"ak_public"') && text.includes('"tpm_quote"') && !text.includes('"hcl_report"');
}

export interface TpmEvidenceParts {
  /** The AK as TPM2B_PUBLIC, TPMT_PUBLIC or SPKI DER bytes, or PEM text. */
  akPublic: Uint8Array | string;
  /** TPMS_ATTEST bytes. */
  quote: Uint8Array;
  /** TPMT_SIGNATURE bytes. */
  signature: Uint8Array;
  pcrs: { bank: 'sha1' | 'sha256' | 'sha384' | 'sha512'; values: ReadonlyMap<number, Uint8Array> | Record<number, Uint8Array> }[];
}

function isMap(v: ReadonlyMap<number, Uint8Array> | Record<number, Uint8Array>): v is ReadonlyMap<number, Uint8Array> {
  return v instanceof Map;
}

/** Writes custody-tpm-quote/v1 JSON (the attester's output). */
export function encodeTpmEvidence(parts: TpmEvidenceParts): Bytes {
  const banks = parts.pcrs.map((b) => {
    const entries: [number, Uint8Array][] = isMap(b.values) ? [...b.values.entries()] : Object.entries(b.values).map(([k, v]) => [Number(k), v]);
    entries.sort((x, y) => x[0] - y[0]);
    return { bank: b.bank, values: Object.fromEntries(entries.map(([k, v]) => [String(k), toHex(v)])) };
  });
  const doc = {
    format: TPM_QUOTE_FORMAT,
    ak_public: typeof parts.akPublic === 'string' ? parts.akPublic : toBase64(parts.akPublic),
    quote: toBase64(parts.quote),
    signature: toBase64(parts.signature),
    pcrs: banks.length === 1 ? banks[0] : banks,
  };
  return utf8(JSON.stringify(doc, null, 2) + '\n');
}
