import { ByteReader, ParseError, assertMaxSize, fromUtf8, isAllZero, type Bytes } from '@custody/core';
import { SNP_REPORT_SIZE } from '../sev-snp/index.js';

/**
 * The Azure HCL report (what the paravisor writes to vTPM NV index 0x01400001): the
 * IGVM_ATTEST request base that OpenHCL sends for an AK_CERT request.
 *
 * ```
 * 0x000  header (32)       signature "HCLA", version, report_size, request_type, status, reserved[3]
 * 0x020  hardware report   1184 bytes: SEV-SNP ATTESTATION_REPORT, or a 1024-byte TDREPORT + zeros
 * 0x4c0  request data (20) data_size, version, report_type, report_data_hash_type, variable_data_size
 * 0x4d4  [request data v2+: capability bitmap (4)]
 *        runtime data      variable_data_size bytes of JSON; its hash is in the hardware report_data
 * ```
 * Only the runtime data and the hardware report are measured; the header and request data are
 * transport fields, checked here for consistency only. All integers are little-endian.
 */

/** "HCLA" read as a little-endian u32. */
export const HCL_REPORT_SIGNATURE = 0x414c4348;
export const HCL_HEADER_SIZE = 0x20;
/** The hardware report area is sized for the largest report, SEV-SNP's. */
export const HCL_HW_REPORT_SIZE = SNP_REPORT_SIZE;
export const HCL_REQUEST_DATA_OFFSET = HCL_HEADER_SIZE + HCL_HW_REPORT_SIZE;
const REQUEST_DATA_SIZE = 20;
const REQUEST_DATA_EXT_SIZE = 4;
export const TD_REPORT_SIZE = 1024;
/** The NV index holds 2600 bytes; runtime claims never come near this bound. */
export const MAX_HCL_REPORT = 64 * 1024;

/** IgvmAttestReportType values. */
export const IGVM_REPORT_TYPE = { invalid: 0, vbs: 1, snp: 2, tvm: 3, tdx: 4, cca: 5 } as const;
/** IgvmAttestRequestType values. */
export const IGVM_REQUEST_TYPE = { invalid: 0, keyRelease: 1, akCert: 2, wrappedKey: 3 } as const;

export type HclReportType = 'snp' | 'tdx';
export type IgvmHashName = 'SHA-256' | 'SHA-384' | 'SHA-512';

const HASH_TYPES: Record<number, { name: IgvmHashName; size: number }> = {
  1: { name: 'SHA-256', size: 32 },
  2: { name: 'SHA-384', size: 48 },
  3: { name: 'SHA-512', size: 64 },
};
const REQUEST_TYPE_NAMES: Record<number, string> = { 1: 'KEY_RELEASE_REQUEST', 2: 'AK_CERT_REQUEST', 3: 'WRAPPED_KEY_REQUEST' };
const REPORT_TYPE_NAMES: Record<number, string> = { 0: 'INVALID', 1: 'VBS', 3: 'TVM', 5: 'CCA' };

export interface HclReportHeader {
  version: number;
  /** Bytes from the header to the end of the runtime data. */
  reportSize: number;
  requestType: number;
  requestTypeName: string;
  status: number;
}

export interface IgvmRequestData {
  dataSize: number;
  version: number;
  reportType: number;
  hashType: IgvmHashName;
  /** Digest length of `hashType`: how many leading report_data bytes the runtime data binds. */
  hashSize: number;
  variableDataSize: number;
  /** IgvmAttestRequestDataExt (request data version 2). */
  capabilityBitmap?: number;
}

export interface HclReport {
  raw: Bytes;
  header: HclReportHeader;
  reportType: HclReportType;
  /** The hardware report exactly: the 1184-byte SEV-SNP report or the 1024-byte TDREPORT. */
  hardwareReport: Bytes;
  requestData: IgvmRequestData;
  /** The runtime data exactly as hashed into report_data (JSON text, not yet parsed). */
  runtimeData: Bytes;
  runtimeDataOffset: number;
  /** Bytes after `reportSize` (the NV index read pads to a fixed size). */
  trailingBytes: number;
  /** Whether any of those padding bytes, or the area after a TDREPORT, is non-zero. */
  paddingNonZero: boolean;
}

/** Parses an HCL report; lengths and offsets are checked before any use. */
export function parseHclReport(input: Uint8Array): HclReport {
  assertMaxSize(input, MAX_HCL_REPORT, 'HCL report');
  const r = new ByteReader(input, 'HCL report');
  const signature = r.u32le();
  if (signature !== HCL_REPORT_SIGNATURE) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'HCL report does not start with the "HCLA" signature', { detail: { signature: signature.toString(16) } });
  }
  const headerVersion = r.u32le();
  const reportSize = r.u32le();
  const requestType = r.u32le();
  const status = r.u32le();
  r.skip(12);
  if (headerVersion < 1 || headerVersion > 2) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `HCL report header version ${headerVersion} is not 1 or 2`, { detail: { version: headerVersion } });
  }
  const hw = r.bytesView(HCL_HW_REPORT_SIZE);
  const dataSize = r.u32le();
  const requestVersion = r.u32le();
  const reportType = r.u32le();
  const hashTypeValue = r.u32le();
  const variableDataSize = r.u32le();
  if (requestVersion < 1 || requestVersion > 2) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `IGVM request data version ${requestVersion} is not 1 or 2`, { detail: { version: requestVersion } });
  }
  let type: HclReportType;
  if (reportType === IGVM_REPORT_TYPE.snp) type = 'snp';
  else if (reportType === IGVM_REPORT_TYPE.tdx) type = 'tdx';
  else {
    const name = REPORT_TYPE_NAMES[reportType] ?? 'unknown';
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `HCL report type ${reportType} (${name}) is not SEV-SNP (2) or TDX (4)`, { detail: { reportType } });
  }
  const hash = HASH_TYPES[hashTypeValue];
  if (!hash) throw new ParseError('ERR_INPUT_MALFORMED', `IGVM report data hash type ${hashTypeValue} is not SHA-256, SHA-384 or SHA-512`, { detail: { hashType: hashTypeValue } });
  const extSize = requestVersion >= 2 ? REQUEST_DATA_EXT_SIZE : 0;
  const capabilityBitmap = extSize ? r.u32le() : undefined;
  if (variableDataSize === 0) throw new ParseError('ERR_INPUT_MALFORMED', 'HCL report has no runtime data');
  const runtimeDataOffset = r.offset;
  const runtimeData = r.take(variableDataSize);
  // OpenHCL writes data_size = request data + extension + runtime data, report_size = all of it.
  if (dataSize !== REQUEST_DATA_SIZE + extSize + variableDataSize) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'IGVM request data_size does not match its runtime data size', { detail: { dataSize, variableDataSize } });
  }
  if (reportSize !== r.offset) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'HCL report_size does not match the end of its runtime data', { detail: { reportSize, end: r.offset } });
  }
  const trailing = input.subarray(r.offset);
  const hwSize = type === 'snp' ? SNP_REPORT_SIZE : TD_REPORT_SIZE;
  const report: HclReport = {
    raw: input.slice(),
    header: { version: headerVersion, reportSize, requestType, requestTypeName: REQUEST_TYPE_NAMES[requestType] ?? `unknown (${requestType})`, status },
    reportType: type,
    hardwareReport: hw.slice(0, hwSize),
    requestData: { dataSize, version: requestVersion, reportType, hashType: hash.name, hashSize: hash.size, variableDataSize },
    runtimeData,
    runtimeDataOffset,
    trailingBytes: trailing.length,
    paddingNonZero: !isAllZero(trailing) || !isAllZero(hw.subarray(hwSize)),
  };
  if (capabilityBitmap !== undefined) report.requestData.capabilityBitmap = capabilityBitmap;
  return report;
}

/** Cheap sniff for the raw binary form. */
export function looksLikeHclReport(input: Uint8Array): boolean {
  return input.length >= HCL_REQUEST_DATA_OFFSET + REQUEST_DATA_SIZE && input[0] === 0x48 && input[1] === 0x43 && input[2] === 0x4c && input[3] === 0x41;
}

// ---------------------------------------------------------------------------------------------
// Runtime data (runtime claims)

/** The key id of the vTPM attestation key in the runtime data. */
export const HCL_AK_KID = 'HCLAkPub';
/** The key id of the vTPM endorsement key. */
export const HCL_EK_KID = 'HCLEkPub';
const MAX_KEYS = 16;

/** A public JWK from the runtime data, exactly as given. */
export interface HclJwk {
  kid: string;
  kty: string;
  n?: string;
  e?: string;
  crv?: string;
  x?: string;
  y?: string;
  key_ops?: string[];
  [member: string]: unknown;
}

/** The runtime claims JSON: `{"keys":[JWK...],"vm-configuration":{...},"user-data":"<hex>"}`. */
export interface HclRuntimeData {
  json: Record<string, unknown>;
  keys: HclJwk[];
  akPub: HclJwk;
  ekPub?: HclJwk;
  vmConfiguration?: Record<string, unknown>;
  userData?: string;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * Parses the runtime data JSON and finds HCLAkPub (exactly one). The key material itself is
 * checked when it is imported (tpm/ak.ts).
 */
export function parseRuntimeData(bytes: Uint8Array): HclRuntimeData {
  assertMaxSize(bytes, MAX_HCL_REPORT, 'HCL runtime data');
  let doc: unknown;
  try {
    doc = JSON.parse(fromUtf8(bytes));
  } catch (e) {
    if (e instanceof ParseError) throw e;
    throw new ParseError('ERR_INPUT_MALFORMED', 'HCL runtime data is not JSON', { cause: e });
  }
  if (!isObject(doc)) throw new ParseError('ERR_INPUT_MALFORMED', 'HCL runtime data is not a JSON object');
  const keysValue = doc.keys;
  if (!Array.isArray(keysValue)) throw new ParseError('ERR_AZURE_AK_MISSING', 'HCL runtime data has no "keys" array');
  if (keysValue.length > MAX_KEYS) throw new ParseError('ERR_INPUT_TOO_LARGE', `HCL runtime data has more than ${MAX_KEYS} keys`);
  const keys: HclJwk[] = [];
  for (const [i, k] of (keysValue as unknown[]).entries()) {
    if (!isObject(k) || typeof k.kid !== 'string' || typeof k.kty !== 'string') {
      throw new ParseError('ERR_INPUT_MALFORMED', `HCL runtime data key ${i} is not a JWK with "kid" and "kty"`, { detail: { index: i } });
    }
    for (const m of ['n', 'e', 'crv', 'x', 'y'] as const) {
      if (k[m] !== undefined && typeof k[m] !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', `HCL runtime data key ${i} member "${m}" is not a string`, { detail: { index: i } });
    }
    if (k.key_ops !== undefined && (!Array.isArray(k.key_ops) || !(k.key_ops as unknown[]).every((o) => typeof o === 'string'))) {
      throw new ParseError('ERR_INPUT_MALFORMED', `HCL runtime data key ${i} "key_ops" is not a string array`, { detail: { index: i } });
    }
    keys.push(k as HclJwk);
  }
  const aks = keys.filter((k) => k.kid === HCL_AK_KID);
  if (aks.length === 0) throw new ParseError('ERR_AZURE_AK_MISSING', `HCL runtime data has no ${HCL_AK_KID} key`);
  if (aks.length > 1) throw new ParseError('ERR_INPUT_MALFORMED', `HCL runtime data has ${aks.length} ${HCL_AK_KID} keys`);
  const eks = keys.filter((k) => k.kid === HCL_EK_KID);
  if (eks.length > 1) throw new ParseError('ERR_INPUT_MALFORMED', `HCL runtime data has ${eks.length} ${HCL_EK_KID} keys`);
  const out: HclRuntimeData = { json: doc, keys, akPub: aks[0]! };
  if (eks[0]) out.ekPub = eks[0];
  const vm = doc['vm-configuration'];
  if (vm !== undefined) {
    if (!isObject(vm)) throw new ParseError('ERR_INPUT_MALFORMED', 'HCL runtime data "vm-configuration" is not an object');
    out.vmConfiguration = vm;
  }
  const userData = doc['user-data'];
  if (userData !== undefined) {
    if (typeof userData !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', 'HCL runtime data "user-data" is not a string');
    out.userData = userData;
  }
  return out;
}
