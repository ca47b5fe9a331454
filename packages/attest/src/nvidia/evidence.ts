import { ParseError, assertMaxSize, fromHex, fromUtf8, readCertificates, toHex, toPem, type Bytes } from '@custody/core';
import { MAX_SPDM_REPORT_SIZE, SPDM_GET_MEASUREMENTS } from './spdm.js';

/**
 * NVIDIA GPU evidence in any of three forms:
 * - the binary SPDM report (request || response), starting `11 e0`;
 * - the same as hex text, as NVIDIA's tools print it (whitespace allowed);
 * - `custody-nvidia-gpu/v1` JSON, which also carries the device certificate chain:
 *   `{"format": "custody-nvidia-gpu/v1", "report": "<hex>", "certChain": "<PEM blocks, leaf first>"}`
 *   (`certChain` optional: the chain may come separately, as `certs`).
 */
export const NVIDIA_GPU_FORMAT = 'custody-nvidia-gpu/v1';

export interface NvidiaGpuEvidence {
  report: Bytes;
  /** DER certificates from the evidence itself, leaf first. */
  certChain: Bytes[];
  form: 'binary' | 'hex' | 'json';
}

/** Hex text is twice the binary, plus whitespace; JSON adds a certificate chain of a few KiB. */
export const MAX_NVIDIA_EVIDENCE_SIZE = 2 * MAX_SPDM_REPORT_SIZE + 64 * 1024;
const JSON_FIELDS = new Set(['format', 'report', 'certChain']);
const HEX_PREFIX = /^\s*(?:0x)?11e0/i;

export function looksLikeNvidiaEvidence(b: Uint8Array): boolean {
  if (b.length >= 2 && (b[0]! >> 4) === 1 && b[1] === SPDM_GET_MEASUREMENTS) return true;
  const head = new TextDecoder('latin1').decode(b.subarray(0, 256));
  if (HEX_PREFIX.test(head)) return true;
  return head.trimStart().startsWith('{') && head.includes(`"${NVIDIA_GPU_FORMAT}"`);
}

export function readNvidiaEvidence(b: Uint8Array): NvidiaGpuEvidence {
  assertMaxSize(b, MAX_NVIDIA_EVIDENCE_SIZE, 'NVIDIA GPU evidence');
  if (b.length >= 2 && (b[0]! >> 4) === 1 && b[1] === SPDM_GET_MEASUREMENTS) return { report: b.slice(), certChain: [], form: 'binary' };
  const text = fromUtf8(b).trim();
  if (text.startsWith('{')) return readJson(text);
  return { report: hexReport(text, 'evidence'), certChain: [], form: 'hex' };
}

function readJson(text: string): NvidiaGpuEvidence {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'NVIDIA GPU evidence is not valid JSON', { cause: e });
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new ParseError('ERR_INPUT_MALFORMED', 'NVIDIA GPU evidence is not a JSON object');
  const obj = o as Record<string, unknown>;
  if (obj.format !== NVIDIA_GPU_FORMAT) throw new ParseError('ERR_INPUT_UNSUPPORTED', `evidence is not ${NVIDIA_GPU_FORMAT}`);
  for (const k of Object.keys(obj)) if (!JSON_FIELDS.has(k)) throw new ParseError('ERR_INPUT_MALFORMED', 'NVIDIA GPU evidence has an unknown field', { detail: { field: k.slice(0, 32) } });
  if (typeof obj.report !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', 'report is not a hex string');
  let certChain: Bytes[] = [];
  if (obj.certChain !== undefined) {
    if (typeof obj.certChain !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', 'certChain is not PEM text');
    certChain = readCertificates(new TextEncoder().encode(obj.certChain));
  }
  return { report: hexReport(obj.report, 'report'), certChain, form: 'json' };
}

function hexReport(text: string, what: string): Bytes {
  const hex = text.replace(/\s+/g, '');
  if (hex.length / 2 > MAX_SPDM_REPORT_SIZE) throw new ParseError('ERR_INPUT_TOO_LARGE', `${what} is over ${MAX_SPDM_REPORT_SIZE} bytes`);
  if (!/^(?:0x)?[0-9a-fA-F]*$/.test(hex)) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is not hex`);
  return fromHex(hex);
}

/** Writes the JSON form (for collectors and tests). */
export function createNvidiaEvidence(report: Uint8Array, certChain: Uint8Array[] = []): string {
  const o: Record<string, string> = { format: NVIDIA_GPU_FORMAT, report: toHex(report) };
  if (certChain.length > 0) o.certChain = certChain.map((d) => toPem('CERTIFICATE', d)).join('');
  return JSON.stringify(o);
}
