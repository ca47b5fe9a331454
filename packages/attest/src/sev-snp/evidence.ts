import { ParseError, assertMaxSize, fromBase64Url, fromUtf8, toBase64Url, utf8, type Bytes } from '@custody/core';
import { parseSnpCertTable, type SnpCertTableEntry } from './cert-table.js';
import { SNP_REPORT_SIZE } from './report.js';

/**
 * The two ways SEV-SNP evidence arrives:
 * - `raw`: the 1184-byte ATTESTATION_REPORT (certificates come separately, in `certs`);
 * - `configfs-tsm`: the JSON form of a Linux configfs-tsm report,
 *   `{"provider":"sev_guest","outblob":<base64url report>,"auxblob":<base64url cert table>}`.
 */
export interface SevSnpEvidence {
  form: 'raw' | 'configfs-tsm';
  /** The report bytes (not yet parsed). */
  report: Bytes;
  /** Entries of the auxblob certificate table (empty for `raw`). */
  certTable: SnpCertTableEntry[];
}

/** The configfs-tsm provider name of the Linux sev-guest driver. */
export const CONFIGFS_TSM_SNP_PROVIDER = 'sev_guest';
/** Bound on the JSON form: a report and a certificate table in base64 are under 16 KiB. */
export const MAX_SNP_EVIDENCE_JSON = 1024 * 1024;

function firstNonSpace(b: Uint8Array): number | undefined {
  for (let i = 0; i < b.length && i < 64; i++) {
    const c = b[i]!;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) return c;
  }
  return undefined;
}

function looksLikeRawReport(b: Uint8Array): boolean {
  if (b.length !== SNP_REPORT_SIZE) return false;
  const version = b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24);
  return version >= 2 && version <= 0xff;
}

/** Reads SEV-SNP evidence in either form; every field is checked before use. */
export function readSevSnpEvidence(input: Uint8Array): SevSnpEvidence {
  if (firstNonSpace(input) === 0x7b /* { */) return readConfigfsTsm(input);
  if (input.length === SNP_REPORT_SIZE) return { form: 'raw', report: input.slice(), certTable: [] };
  assertMaxSize(input, SNP_REPORT_SIZE, 'SEV-SNP report');
  throw new ParseError('ERR_INPUT_TRUNCATED', `SEV-SNP report is ${input.length} bytes, not ${SNP_REPORT_SIZE}`, { detail: { length: input.length } });
}

function readConfigfsTsm(input: Uint8Array): SevSnpEvidence {
  assertMaxSize(input, MAX_SNP_EVIDENCE_JSON, 'SEV-SNP configfs-tsm evidence');
  let doc: unknown;
  try {
    doc = JSON.parse(fromUtf8(input));
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'SEV-SNP configfs-tsm evidence is not JSON', { cause: e });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'SEV-SNP configfs-tsm evidence is not a JSON object');
  }
  const o = doc as Record<string, unknown>;
  if (o.provider !== CONFIGFS_TSM_SNP_PROVIDER) {
    const provider = typeof o.provider === 'string' ? o.provider.slice(0, 32) : typeof o.provider;
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `configfs-tsm provider "${provider}" is not ${CONFIGFS_TSM_SNP_PROVIDER}`, { detail: { provider } });
  }
  if (typeof o.outblob !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', 'configfs-tsm evidence has no outblob string');
  if (o.auxblob !== undefined && o.auxblob !== null && typeof o.auxblob !== 'string') {
    throw new ParseError('ERR_INPUT_MALFORMED', 'configfs-tsm auxblob is not a string');
  }
  const report = fromBase64Url(o.outblob);
  const certTable = typeof o.auxblob === 'string' ? parseSnpCertTable(fromBase64Url(o.auxblob)) : [];
  return { form: 'configfs-tsm', report, certTable };
}

/** Cheap sniff: a raw report of the right size and version, or configfs-tsm JSON from sev_guest. */
export function detectSevSnpEvidence(input: Uint8Array): boolean {
  if (looksLikeRawReport(input)) return true;
  if (firstNonSpace(input) !== 0x7b || input.length > MAX_SNP_EVIDENCE_JSON) return false;
  try {
    const o = JSON.parse(fromUtf8(input)) as unknown;
    return typeof o === 'object' && o !== null && (o as Record<string, unknown>).provider === CONFIGFS_TSM_SNP_PROVIDER && typeof (o as Record<string, unknown>).outblob === 'string';
  } catch {
    return false;
  }
}

/** Builds the configfs-tsm JSON form from a report and an optional certificate table. */
export function createConfigfsTsmEvidence(report: Uint8Array, auxblob?: Uint8Array): Bytes {
  const doc: Record<string, string> = { provider: CONFIGFS_TSM_SNP_PROVIDER, outblob: toBase64Url(report) };
  if (auxblob && auxblob.length > 0) doc.auxblob = toBase64Url(auxblob);
  return utf8(JSON.stringify(doc));
}
