import { ByteReader, ParseError, assertMaxSize, toHex, type Bytes } from '@custody/core';
import {
  ATTESTATION_KEY_ECDSA_P256,
  BODY_SGX_ENCLAVE_REPORT,
  BODY_TD_REPORT10,
  BODY_TD_REPORT15,
  CERT_DATA_PCK_CHAIN,
  CERT_DATA_QE_REPORT,
  ECDSA_P256_KEY_SIZE,
  ECDSA_P256_SIGNATURE_SIZE,
  ENCLAVE_REPORT_SIZE,
  MAX_CERT_CHAIN_DATA,
  MAX_QE_AUTH_DATA,
  MAX_QUOTE_SIZE,
  QUOTE_HEADER_SIZE,
  TD_REPORT10_SIZE,
  TD_REPORT15_SIZE,
  TEE_TYPE_TDX,
} from './constants.js';

/** The 48-byte quote header (same layout in v4 and v5). */
export interface TdxQuoteHeader {
  version: 4 | 5;
  /** 2 = ECDSA-256-with-P-256. */
  attestationKeyType: number;
  /** 0x81 = TDX. */
  teeType: number;
  /** Bytes 8..11: QE SVN and PCE SVN in SGX v3 quotes, reserved in TDX quotes. */
  reserved: Bytes;
  qeVendorId: Bytes;
  userData: Bytes;
}

/** A TD report as carried in a quote body: TDX 1.0 (type 2) or TDX 1.5 (type 3). */
export interface TdReportBody {
  /** 2 = TD report 1.0 (v4 quotes, v5 body type 2), 3 = TD report 1.5. */
  type: 2 | 3;
  teeTcbSvn: Bytes;
  mrSeam: Bytes;
  mrSignerSeam: Bytes;
  seamAttributes: Bytes;
  tdAttributes: Bytes;
  xfam: Bytes;
  mrTd: Bytes;
  mrConfigId: Bytes;
  mrOwner: Bytes;
  mrOwnerConfig: Bytes;
  rtmr: [Bytes, Bytes, Bytes, Bytes];
  reportData: Bytes;
  /** TDX 1.5 only. */
  teeTcbSvn2?: Bytes;
  /** TDX 1.5 only. */
  mrServiceTd?: Bytes;
}

/** SGX REPORT body (384 bytes), here the Quoting Enclave's report. */
export interface SgxEnclaveReport {
  /** The exact 384 bytes the PCK key signed. */
  raw: Bytes;
  cpuSvn: Bytes;
  /** 4 bytes as stored (little-endian). */
  miscSelect: Bytes;
  attributes: Bytes;
  mrEnclave: Bytes;
  mrSigner: Bytes;
  isvProdId: number;
  isvSvn: number;
  reportData: Bytes;
}

/** A parsed Intel TDX quote, v4 or v5, with ECDSA P-256 attestation and QE report certification data. */
export interface TdxQuote {
  raw: Bytes;
  header: TdxQuoteHeader;
  body: TdReportBody;
  /** The bytes the attestation key signed: header + body (v5: including the body type and size). */
  signedData: Bytes;
  /** ECDSA P-256 signature, raw r||s. */
  signature: Bytes;
  /** Attestation public key, raw x||y (64 bytes). */
  attestationKey: Bytes;
  qeReport: SgxEnclaveReport;
  /** ECDSA P-256 signature of the QE report by the PCK key, raw r||s. */
  qeReportSignature: Bytes;
  qeAuthData: Bytes;
  /** Certification data type nested in the QE report certification data (5 = PCK chain). */
  certificationDataType: number;
  /** PEM text of the PCK leaf, intermediate CA and root (trailing NULs allowed). */
  pckCertChain: Bytes;
  /** Unsigned bytes after the signature data (configfs-tsm pads quotes with zeros). */
  trailingBytes: number;
}

/** Parses a TDX quote v4 or v5. Every length is checked against the remaining input before use. */
export function parseTdxQuote(input: Uint8Array): TdxQuote {
  assertMaxSize(input, MAX_QUOTE_SIZE, 'TDX quote');
  const r = new ByteReader(input, 'TDX quote');
  const header = parseHeader(r);
  let body: TdReportBody;
  if (header.version === 4) {
    body = parseTdReportBody(r, BODY_TD_REPORT10);
  } else {
    const type = r.u16le();
    const size = r.u32le();
    if (type === BODY_SGX_ENCLAVE_REPORT) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'v5 quote carries an SGX enclave report, not a TD report', { detail: { bodyType: type } });
    if (type !== BODY_TD_REPORT10 && type !== BODY_TD_REPORT15) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'unknown v5 quote body type', { detail: { bodyType: type } });
    const expected = type === BODY_TD_REPORT10 ? TD_REPORT10_SIZE : TD_REPORT15_SIZE;
    if (size !== expected) throw new ParseError('ERR_INPUT_MALFORMED', 'v5 quote body size does not match its type', { detail: { bodyType: type, size, expected } });
    body = parseTdReportBody(r, type);
  }
  const signedData = r.bytes.subarray(0, r.offset) as Bytes;

  const sigDataLen = r.u32le();
  if (sigDataLen > r.remaining) {
    throw new ParseError('ERR_INPUT_TRUNCATED', 'quote signature data runs past the end of the quote', { detail: { sigDataLen, remaining: r.remaining } });
  }
  const sig = new ByteReader(r.bytesView(sigDataLen), 'TDX quote signature data');
  // Bytes after the signature data are not signed; real quotes carry zero padding there.
  const trailingBytes = r.remaining;
  const signature = sig.bytesView(ECDSA_P256_SIGNATURE_SIZE);
  const attestationKey = sig.bytesView(ECDSA_P256_KEY_SIZE);
  const certType = sig.u16le();
  const certSize = sig.u32le();
  if (certType !== CERT_DATA_QE_REPORT) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', 'quote certification data is not QE report certification data (type 6)', { detail: { certificationDataType: certType } });
  }
  const cert = new ByteReader(sig.bytesView(certSize), 'QE report certification data');
  sig.end();
  const qeReport = parseEnclaveReport(cert.bytesView(ENCLAVE_REPORT_SIZE));
  const qeReportSignature = cert.bytesView(ECDSA_P256_SIGNATURE_SIZE);
  const authSize = cert.u16le();
  if (authSize > MAX_QE_AUTH_DATA) throw new ParseError('ERR_INPUT_TOO_LARGE', 'QE authentication data too large', { detail: { size: authSize, max: MAX_QE_AUTH_DATA } });
  const qeAuthData = cert.bytesView(authSize);
  const innerType = cert.u16le();
  const innerSize = cert.u32le();
  if (innerType !== CERT_DATA_PCK_CHAIN) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', 'QE certification data is not a PCK certificate chain (type 5)', { detail: { certificationDataType: innerType } });
  }
  if (innerSize > MAX_CERT_CHAIN_DATA) throw new ParseError('ERR_INPUT_TOO_LARGE', 'PCK certificate chain too large', { detail: { size: innerSize, max: MAX_CERT_CHAIN_DATA } });
  const pckCertChain = cert.bytesView(innerSize);
  cert.end();

  return {
    raw: input as Bytes,
    header,
    body,
    signedData,
    signature,
    attestationKey,
    qeReport,
    qeReportSignature,
    qeAuthData,
    certificationDataType: innerType,
    pckCertChain,
    trailingBytes,
  };
}

function parseHeader(r: ByteReader): TdxQuoteHeader {
  if (r.remaining < QUOTE_HEADER_SIZE) throw new ParseError('ERR_INPUT_TRUNCATED', 'TDX quote shorter than its header', { detail: { size: r.remaining } });
  const version = r.u16le();
  if (version !== 4 && version !== 5) throw new ParseError('ERR_INPUT_UNSUPPORTED', `unsupported quote version ${version}`, { detail: { version } });
  const attestationKeyType = r.u16le();
  if (attestationKeyType !== ATTESTATION_KEY_ECDSA_P256) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', 'quote attestation key type is not ECDSA-256-with-P-256', { detail: { attestationKeyType } });
  }
  const teeType = r.u32le();
  if (teeType !== TEE_TYPE_TDX) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'quote is not a TDX quote (TEE type 0x81)', { detail: { teeType } });
  return { version, attestationKeyType, teeType, reserved: r.bytesView(4), qeVendorId: r.bytesView(16), userData: r.bytesView(20) };
}

/** Reads a TD report body (TD 1.0: 584 bytes, TD 1.5: 648 bytes) at the reader's position. */
export function parseTdReportBody(r: ByteReader, type: 2 | 3): TdReportBody {
  const size = type === BODY_TD_REPORT10 ? TD_REPORT10_SIZE : TD_REPORT15_SIZE;
  if (r.remaining < size) throw new ParseError('ERR_INPUT_TRUNCATED', 'TD report body truncated', { detail: { offset: r.offset, needed: size, remaining: r.remaining } });
  const body: TdReportBody = {
    type,
    teeTcbSvn: r.bytesView(16),
    mrSeam: r.bytesView(48),
    mrSignerSeam: r.bytesView(48),
    seamAttributes: r.bytesView(8),
    tdAttributes: r.bytesView(8),
    xfam: r.bytesView(8),
    mrTd: r.bytesView(48),
    mrConfigId: r.bytesView(48),
    mrOwner: r.bytesView(48),
    mrOwnerConfig: r.bytesView(48),
    rtmr: [r.bytesView(48), r.bytesView(48), r.bytesView(48), r.bytesView(48)],
    reportData: r.bytesView(64),
  };
  if (type === BODY_TD_REPORT15) {
    body.teeTcbSvn2 = r.bytesView(16);
    body.mrServiceTd = r.bytesView(48);
  }
  return body;
}

/** Parses a 384-byte SGX enclave REPORT body. */
export function parseEnclaveReport(raw: Bytes): SgxEnclaveReport {
  if (raw.length !== ENCLAVE_REPORT_SIZE) throw new ParseError('ERR_INPUT_MALFORMED', 'SGX enclave report must be 384 bytes', { detail: { size: raw.length } });
  const r = new ByteReader(raw, 'SGX enclave report');
  const cpuSvn = r.bytesView(16);
  const miscSelect = r.bytesView(4);
  r.skip(28);
  const attributes = r.bytesView(16);
  const mrEnclave = r.bytesView(32);
  r.skip(32);
  const mrSigner = r.bytesView(32);
  r.skip(96);
  const isvProdId = r.u16le();
  const isvSvn = r.u16le();
  r.skip(60);
  const reportData = r.bytesView(64);
  r.end();
  return { raw, cpuSvn, miscSelect, attributes, mrEnclave, mrSigner, isvProdId, isvSvn, reportData };
}

/** Cheap sniff: a v4/v5 quote header with ECDSA P-256 and TEE type TDX. */
export function looksLikeTdxQuote(b: Uint8Array): boolean {
  if (b.length < QUOTE_HEADER_SIZE + TD_REPORT10_SIZE) return false;
  const version = b[0]! | (b[1]! << 8);
  return (version === 4 || version === 5) && b[2] === ATTESTATION_KEY_ECDSA_P256 && b[3] === 0 && b[4] === TEE_TYPE_TDX && b[5] === 0 && b[6] === 0 && b[7] === 0;
}

/** The TD report's fields as lowercase hex, named as in the Intel spec. */
export function tdReportHex(body: TdReportBody): Record<string, string> {
  const out: Record<string, string> = {
    teeTcbSvn: toHex(body.teeTcbSvn),
    mrSeam: toHex(body.mrSeam),
    mrSignerSeam: toHex(body.mrSignerSeam),
    seamAttributes: toHex(body.seamAttributes),
    tdAttributes: toHex(body.tdAttributes),
    xfam: toHex(body.xfam),
    mrTd: toHex(body.mrTd),
    mrConfigId: toHex(body.mrConfigId),
    mrOwner: toHex(body.mrOwner),
    mrOwnerConfig: toHex(body.mrOwnerConfig),
    rtmr0: toHex(body.rtmr[0]),
    rtmr1: toHex(body.rtmr[1]),
    rtmr2: toHex(body.rtmr[2]),
    rtmr3: toHex(body.rtmr[3]),
    reportData: toHex(body.reportData),
  };
  if (body.teeTcbSvn2) out.teeTcbSvn2 = toHex(body.teeTcbSvn2);
  if (body.mrServiceTd) out.mrServiceTd = toHex(body.mrServiceTd);
  return out;
}
