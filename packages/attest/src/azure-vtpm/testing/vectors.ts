// Test-only: the Azure vTPM vector sets and helpers to build tampered twins byte-exactly, in
// whichever of trustee's JSON forms the evidence uses.
import type fc from 'fast-check';
import { mutationOf as tpmMutationOf } from '../../tpm/testing/mutate.js';
import { ByteReader, fromBase64Url, fromHex, fromUtf8, toBase64Url, toHex, utf8, type Bytes } from '@custody/core';
import { readVector } from '../../../../../test/vectors.js';
import type { AzureTpmQuoteParts } from '../evidence.js';

export const A = 'attestation/azure-vtpm/';
export const SNP_V0 = `${A}az-snp-vtpm/evidence-v0.json`;
export const SNP_V1 = `${A}az-snp-vtpm/evidence-v1.json`;
export const TDX_V0 = `${A}az-tdx-vtpm/evidence-v0.json`;

/** v0 and v1 embed the same VCEK, valid 2025-01-28 .. 2032-01-28. */
export const AT_SNP = new Date('2025-06-01T00:00:00Z');
/** `vcek.pem`'s VCEK is valid 2023-05-02 .. 2030-05-02. */
export const AT_SNP_BIN = new Date('2024-01-01T00:00:00Z');
/** The real current time when these tests were written. */
export const NOW = new Date('2026-11-26T00:00:00Z');
/** The qualifying data all three quotes carry. */
export const CHALLENGE = utf8('challenge');

/** Offsets inside the HCL report (see ../hcl-report.ts). */
export const HW = 0x20;
export const SNP_MEASUREMENT = HW + 0x90;
export const SNP_REPORT_DATA = HW + 0x50;
export const SNP_VMPL = HW + 0x30;
export const SNP_SIGNATURE_R = HW + 0x2a0;
export const TD_REPORT_DATA = HW + 128;
export const TD_RTMR0 = HW + 512 + 16 + 4 * 48;

export type EvidenceDoc = Record<string, unknown>;

export function loadDoc(rel: string): EvidenceDoc {
  return JSON.parse(fromUtf8(readVector(rel))) as EvidenceDoc;
}

export function encodeDoc(o: EvidenceDoc): Bytes {
  return utf8(JSON.stringify(o));
}

const isV0 = (o: EvidenceDoc): boolean => o.version === undefined;
const hclKey = (o: EvidenceDoc): string => (isV0(o) && o.report !== undefined ? 'report' : 'hcl_report');
const quoteKey = (o: EvidenceDoc): string => (isV0(o) && o.quote !== undefined ? 'quote' : 'tpm_quote');

export function hclOf(o: EvidenceDoc): Bytes {
  const v = o[hclKey(o)];
  return isV0(o) ? Uint8Array.from(v as number[]) : fromBase64Url(v as string);
}

export function setHcl(o: EvidenceDoc, b: Uint8Array): EvidenceDoc {
  o[hclKey(o)] = isV0(o) ? Array.from(b) : toBase64Url(b);
  return o;
}

export function tdQuoteOf(o: EvidenceDoc): Bytes {
  return isV0(o) ? Uint8Array.from(o.td_quote as number[]) : fromBase64Url(o.td_quote as string);
}

export function setTdQuote(o: EvidenceDoc, b: Uint8Array): EvidenceDoc {
  o.td_quote = isV0(o) ? Array.from(b) : toBase64Url(b);
  return o;
}

export function quoteOf(o: EvidenceDoc): AzureTpmQuoteParts {
  const q = o[quoteKey(o)] as { message: unknown; signature: unknown; pcrs: unknown[] };
  if (isV0(o)) return { message: Uint8Array.from(q.message as number[]), signature: Uint8Array.from(q.signature as number[]), pcrs: q.pcrs.map((p) => Uint8Array.from(p as number[])) };
  return { message: fromHex(q.message as string), signature: fromHex(q.signature as string), pcrs: q.pcrs.map((p) => fromHex(p as string)) };
}

export function setQuote(o: EvidenceDoc, parts: AzureTpmQuoteParts): EvidenceDoc {
  o[quoteKey(o)] = isV0(o)
    ? { signature: Array.from(parts.signature), message: Array.from(parts.message), pcrs: parts.pcrs.map((p) => Array.from(p)) }
    : { signature: toHex(parts.signature), message: toHex(parts.message), pcrs: parts.pcrs.map((p) => toHex(p)) };
  return o;
}

/** A copy of `o` with its HCL report changed by `f`. */
export function withHcl(o: EvidenceDoc, f: (hcl: Bytes) => void): EvidenceDoc {
  const c = structuredClone(o);
  const h = hclOf(c);
  f(h);
  return setHcl(c, h);
}

export function withQuote(o: EvidenceDoc, f: (q: AzureTpmQuoteParts) => void): EvidenceDoc {
  const c = structuredClone(o);
  const q = quoteOf(c);
  f(q);
  return setQuote(c, q);
}

export function indexOfText(hay: Uint8Array, text: string): number {
  const needle = utf8(text);
  outer: for (let i = 0; i + needle.length <= hay.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  throw new Error(`"${text}" not found`);
}

/** trustee's `quote.bin`: bincode of `{signature: Vec<u8>, message: Vec<u8>, pcrs: Vec<[u8; 32]>}` (u64 LE lengths). */
export function readBincodeQuote(b: Uint8Array): AzureTpmQuoteParts {
  const r = new ByteReader(b, 'bincode quote');
  const len = (): number => Number(r.u64le());
  const signature = r.take(len());
  const message = r.take(len());
  const n = len();
  const pcrs = Array.from({ length: n }, () => r.take(32));
  r.end();
  return { signature, message, pcrs };
}

/** Real bytes with a few flipped bytes, a truncation or an insertion (the TPM tests' generator). */
export const mutationOf = (base: Uint8Array): fc.Arbitrary<Bytes> => tpmMutationOf(base) as fc.Arbitrary<Bytes>;

/** XORs one byte in place (a tampered twin's single change). */
export function flip(b: Uint8Array, at: number, x: number): void {
  if (at < 0 || at >= b.length) throw new Error(`offset ${at} outside ${b.length} bytes`);
  b[at] = b[at]! ^ x;
}
