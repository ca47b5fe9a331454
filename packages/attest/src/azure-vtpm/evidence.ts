import { ParseError, assertMaxSize, fromBase64Url, fromHex, fromUtf8, type Bytes } from '@custody/core';
import { MAX_HCL_REPORT } from './hcl-report.js';

/**
 * Azure confidential VM evidence in the JSON forms trustee's attesters produce and its
 * `az-snp-vtpm` / `az-tdx-vtpm` verifiers read:
 *
 * | form | SEV-SNP | TDX |
 * |---|---|---|
 * | v0 (no `version`) | `{quote, report, vcek}` | `{tpm_quote, hcl_report, td_quote}` |
 * | v1, v2 | `{version, tpm_quote, hcl_report, vcek}` | `{version, tpm_quote, hcl_report, td_quote}` |
 *
 * v0 encodes bytes as JSON arrays of numbers (serde's `Vec<u8>`) and the VCEK as PEM text; the
 * quote is `{signature, message, pcrs}` with arrays. v1 and v2 encode the HCL report, the VCEK
 * (DER) and the TD quote as base64url, and the quote's `signature`, `message` and `pcrs[i]` as hex.
 * `message` is TPMS_ATTEST; `signature` is the raw RSASSA-PKCS1-v1_5/SHA-256 signature by
 * HCLAkPub; `pcrs[i]` is SHA-256 PCR i. v2 has v1's shape (its HCL `user-data` carries the
 * caller's report data).
 */
export interface AzureVtpmEvidence {
  form: 'trustee-v0' | 'trustee-v1' | 'trustee-v2';
  version: 0 | 1 | 2;
  hclReport: Bytes;
  tpmQuote: AzureTpmQuoteParts;
  /** The VCEK: PEM text (v0) or DER (v1, v2). SEV-SNP only. */
  vcek?: Bytes;
  /** The TD quote (DCAP v4/v5). TDX only. */
  tdQuote?: Bytes;
}

export interface AzureTpmQuoteParts {
  /** TPMS_ATTEST bytes. */
  message: Bytes;
  /** Raw RSA signature (not a TPMT_SIGNATURE). */
  signature: Bytes;
  /** PCR i of the SHA-256 bank at index i. */
  pcrs: Bytes[];
}

export const MAX_AZURE_EVIDENCE = 1024 * 1024;
/** TPMS_ATTEST of a quote is about 130 bytes; tpm/structures.ts bounds it at 4096 too. */
const MAX_TPMS_ATTEST = 4096;
/** RSA-4096 at most. */
const MAX_SIGNATURE = 512;
const MAX_PCRS = 24;
const PCR_SIZE = 32;
const MAX_VCEK = 16 * 1024;
const MAX_TD_QUOTE = 128 * 1024;

type Json = Record<string, unknown>;

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function firstNonSpace(b: Uint8Array): number | undefined {
  for (let i = 0; i < b.length && i < 64; i++) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return c;
  }
  return undefined;
}

function parseJsonObject(input: Uint8Array): Json {
  assertMaxSize(input, MAX_AZURE_EVIDENCE, 'Azure vTPM evidence');
  let doc: unknown;
  try {
    doc = JSON.parse(fromUtf8(input));
  } catch (e) {
    if (e instanceof ParseError) throw e;
    throw new ParseError('ERR_INPUT_MALFORMED', 'Azure vTPM evidence is not JSON', { cause: e });
  }
  if (!isObject(doc)) throw new ParseError('ERR_INPUT_MALFORMED', 'Azure vTPM evidence is not a JSON object');
  return doc;
}

/** serde's `Vec<u8>`: an array of integers 0..255, at most `max` long. */
function byteArray(v: unknown, what: string, max: number): Bytes {
  if (!Array.isArray(v)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not an array of bytes`);
  if (v.length > max) throw new ParseError('ERR_INPUT_TOO_LARGE', `${what} is longer than ${max} bytes`, { detail: { length: v.length, max } });
  const out = new Uint8Array(v.length);
  for (let i = 0; i < v.length; i++) {
    const x: unknown = v[i];
    if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 255) {
      throw new ParseError('ERR_INPUT_MALFORMED', `${what}[${i}] is not a byte`, { detail: { index: i } });
    }
    out[i] = x;
  }
  return out;
}

function string(v: unknown, what: string, maxChars: number): string {
  if (typeof v !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not a string`);
  if (v.length > maxChars) throw new ParseError('ERR_INPUT_TOO_LARGE', `${what} is longer than ${maxChars} characters`, { detail: { length: v.length, max: maxChars } });
  return v;
}

function hexBytes(v: unknown, what: string, maxBytes: number): Bytes {
  const s = string(v, what, 2 * maxBytes);
  try {
    return fromHex(s);
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not hex`, { cause: e });
  }
}

function base64UrlBytes(v: unknown, what: string, maxBytes: number): Bytes {
  const s = string(v, what, Math.ceil((maxBytes * 4) / 3) + 4);
  if (!/^[A-Za-z0-9_-]*={0,2}$/.test(s)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not base64url`);
  return fromBase64Url(s);
}

function nonEmpty(b: Bytes, what: string): Bytes {
  if (b.length === 0) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is empty`);
  return b;
}

function pcrList(v: unknown, what: string, item: (x: unknown, what: string) => Bytes): Bytes[] {
  if (!Array.isArray(v)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not an array`);
  if (v.length === 0 || v.length > MAX_PCRS) throw new ParseError('ERR_INPUT_MALFORMED', `${what} must hold 1 to ${MAX_PCRS} PCR values`, { detail: { count: v.length } });
  return (v as unknown[]).map((x, i) => {
    const b = item(x, `${what}[${i}]`);
    if (b.length !== PCR_SIZE) throw new ParseError('ERR_INPUT_MALFORMED', `${what}[${i}] is not a SHA-256 digest`, { detail: { index: i, length: b.length } });
    return b;
  });
}

/** The v0 quote: serde's `{signature: Vec<u8>, message: Vec<u8>, pcrs: Vec<[u8; 32]>}`. */
function quoteV0(v: unknown, what: string): AzureTpmQuoteParts {
  if (!isObject(v)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not an object`);
  return {
    signature: nonEmpty(byteArray(v.signature, `${what}.signature`, MAX_SIGNATURE), `${what}.signature`),
    message: nonEmpty(byteArray(v.message, `${what}.message`, MAX_TPMS_ATTEST), `${what}.message`),
    pcrs: pcrList(v.pcrs, `${what}.pcrs`, (x, w) => byteArray(x, w, PCR_SIZE)),
  };
}

/** The v1 quote: the same fields as hex strings. */
function quoteHex(v: unknown, what: string): AzureTpmQuoteParts {
  if (!isObject(v)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not an object`);
  return {
    signature: nonEmpty(hexBytes(v.signature, `${what}.signature`, MAX_SIGNATURE), `${what}.signature`),
    message: nonEmpty(hexBytes(v.message, `${what}.message`, MAX_TPMS_ATTEST), `${what}.message`),
    pcrs: pcrList(v.pcrs, `${what}.pcrs`, (x, w) => hexBytes(x, w, PCR_SIZE)),
  };
}

/** Reads any of trustee's Azure vTPM evidence forms; every field is type- and size-checked. */
export function readAzureVtpmEvidence(input: Uint8Array): AzureVtpmEvidence {
  if (firstNonSpace(input) !== 0x7b /* { */) {
    assertMaxSize(input, MAX_AZURE_EVIDENCE, 'Azure vTPM evidence');
    throw new ParseError('ERR_INPUT_MALFORMED', 'Azure vTPM evidence is not a JSON object');
  }
  const o = parseJsonObject(input);
  if (o.vcek !== undefined && o.td_quote !== undefined) throw new ParseError('ERR_INPUT_MALFORMED', 'Azure vTPM evidence has both a VCEK (SEV-SNP) and a TD quote (TDX)');
  if (o.version === undefined) {
    if (o.report !== undefined || o.quote !== undefined) {
      // az-snp-vtpm v0
      const ev: AzureVtpmEvidence = {
        form: 'trustee-v0',
        version: 0,
        hclReport: nonEmpty(byteArray(o.report, 'report', MAX_HCL_REPORT), 'report'),
        tpmQuote: quoteV0(o.quote, 'quote'),
      };
      if (o.vcek !== undefined) ev.vcek = nonEmpty(new TextEncoder().encode(string(o.vcek, 'vcek', MAX_VCEK * 2)), 'vcek');
      return ev;
    }
    // az-tdx-vtpm v0
    const ev: AzureVtpmEvidence = {
      form: 'trustee-v0',
      version: 0,
      hclReport: nonEmpty(byteArray(o.hcl_report, 'hcl_report', MAX_HCL_REPORT), 'hcl_report'),
      tpmQuote: quoteV0(o.tpm_quote, 'tpm_quote'),
    };
    if (o.td_quote !== undefined) ev.tdQuote = nonEmpty(byteArray(o.td_quote, 'td_quote', MAX_TD_QUOTE), 'td_quote');
    if (o.vcek !== undefined) ev.vcek = nonEmpty(new TextEncoder().encode(string(o.vcek, 'vcek', MAX_VCEK * 2)), 'vcek');
    return ev;
  }
  if (o.version !== 1 && o.version !== 2) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', 'Azure vTPM evidence version is not 1 or 2', { detail: { version: typeof o.version === 'number' ? o.version : typeof o.version } });
  }
  const version = o.version;
  const ev: AzureVtpmEvidence = {
    form: version === 1 ? 'trustee-v1' : 'trustee-v2',
    version,
    hclReport: nonEmpty(base64UrlBytes(o.hcl_report, 'hcl_report', MAX_HCL_REPORT), 'hcl_report'),
    tpmQuote: quoteHex(o.tpm_quote, 'tpm_quote'),
  };
  if (o.vcek !== undefined) ev.vcek = nonEmpty(base64UrlBytes(o.vcek, 'vcek', MAX_VCEK), 'vcek');
  if (o.td_quote !== undefined) ev.tdQuote = nonEmpty(base64UrlBytes(o.td_quote, 'td_quote', MAX_TD_QUOTE), 'td_quote');
  return ev;
}

/**
 * Cheap sniff: a JSON object with an HCL report and a TPM quote (`hcl_report` + `tpm_quote`, or
 * v0 SEV-SNP's `report` + `quote` + `vcek`). Plain TPM evidence (`ak_public`) is not Azure's.
 */
export function detectAzureVtpmEvidence(input: Uint8Array): boolean {
  if (firstNonSpace(input) !== 0x7b || input.length > MAX_AZURE_EVIDENCE) return false;
  let o: unknown;
  try {
    o = JSON.parse(new TextDecoder().decode(input));
  } catch {
    return false;
  }
  if (!isObject(o) || o.ak_public !== undefined) return false;
  return (o.hcl_report !== undefined && o.tpm_quote !== undefined) || (o.report !== undefined && o.quote !== undefined && o.vcek !== undefined);
}
