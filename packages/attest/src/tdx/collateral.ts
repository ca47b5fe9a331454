import {
  CustodyError,
  ParseError,
  X509Certificate,
  X509Crl,
  assertMaxSize,
  fromHex,
  fromUtf8,
  parsePem,
  readCertificates,
  utf8,
  type Bytes,
} from '@custody/core';
import type { TcbStatus } from '../types.js';
import { signatureFromHex, splitSignedJson, type SignedJson } from './signed-json.js';

/** Largest TCB Info / QE Identity response accepted (real ones are 2-30 KB). */
export const MAX_COLLATERAL_JSON = 1024 * 1024;
/** Largest collateral bundle accepted (hex CRLs double their size). */
export const MAX_COLLATERAL_BUNDLE = 16 * 1024 * 1024;
const MAX_CHAIN_PEM = 64 * 1024;
const MAX_TCB_LEVELS = 256;
const MAX_ADVISORIES = 256;

/**
 * Collateral names a caller passes in `VerifyInput.collateral` (one file each), or `bundle`: one
 * JSON object in the form Intel PCS clients and dcap-qvl (QuoteCollateralV3) produce.
 */
export const TDX_COLLATERAL_KEYS = ['tcbInfo', 'qeIdentity', 'pckCrl', 'rootCaCrl', 'tcbInfoIssuerChain', 'qeIdentityIssuerChain', 'pckCrlIssuerChain', 'bundle'] as const;
export type TdxCollateralKey = (typeof TDX_COLLATERAL_KEYS)[number];

export const TCB_STATUSES: readonly TcbStatus[] = [
  'UpToDate',
  'SWHardeningNeeded',
  'ConfigurationNeeded',
  'ConfigurationAndSWHardeningNeeded',
  'OutOfDate',
  'OutOfDateConfigurationNeeded',
  'Revoked',
];

/** Collateral as read from its container, before any signature or freshness check. */
export interface TdxCollateralInput {
  tcbInfo?: SignedJson;
  qeIdentity?: SignedJson;
  pckCrl?: X509Crl;
  rootCaCrl?: X509Crl;
  tcbInfoIssuerChain?: X509Certificate[];
  qeIdentityIssuerChain?: X509Certificate[];
  pckCrlIssuerChain?: X509Certificate[];
  /** Names that were supplied but are not TDX collateral. */
  ignored: string[];
}

export interface TdxTcbLevel {
  sgxTcbComponents: number[];
  pceSvn: number;
  tdxTcbComponents: number[];
  tcbDate: string;
  tcbStatus: TcbStatus;
  advisoryIds: string[];
}

export interface TdxModuleTcbLevel {
  isvSvn: number;
  tcbDate: string;
  tcbStatus: TcbStatus;
  advisoryIds: string[];
}

export interface TdxModuleIdentity {
  id: string;
  mrSigner: Bytes;
  attributes: Bytes;
  attributesMask: Bytes;
  tcbLevels: TdxModuleTcbLevel[];
}

/** TDX TCB Info v3 (Intel PCS `GET /tdx/certification/v4/tcb`). */
export interface TdxTcbInfo {
  id: 'TDX';
  version: 3;
  issueDate: Date;
  nextUpdate: Date;
  /** Lowercase hex. */
  fmspc: string;
  /** Lowercase hex. */
  pceId: string;
  tcbType: number;
  tcbEvaluationDataNumber: number;
  tdxModule: { mrSigner: Bytes; attributes: Bytes; attributesMask: Bytes };
  tdxModuleIdentities?: TdxModuleIdentity[];
  tcbLevels: TdxTcbLevel[];
}

export interface QeTcbLevel {
  isvSvn: number;
  tcbDate: string;
  tcbStatus: TcbStatus;
  advisoryIds: string[];
}

/** TD_QE Enclave Identity v2 (Intel PCS `GET /tdx/certification/v4/qe/identity`). */
export interface QeIdentity {
  id: string;
  version: number;
  issueDate: Date;
  nextUpdate: Date;
  tcbEvaluationDataNumber: number;
  miscSelect: Bytes;
  miscSelectMask: Bytes;
  attributes: Bytes;
  attributesMask: Bytes;
  mrSigner: Bytes;
  isvProdId: number;
  tcbLevels: QeTcbLevel[];
}

// ---------- containers ----------

/** Reads the named collateral blobs (or a `bundle`) into typed values. Bad input: typed errors. */
export function readTdxCollateral(collateral: Record<string, Uint8Array> | undefined): TdxCollateralInput {
  const out: TdxCollateralInput = { ignored: [] };
  if (!collateral) return out;
  if (collateral.bundle) Object.assign(out, parseCollateralBundle(collateral.bundle));
  for (const [name, blob] of Object.entries(collateral)) {
    switch (name) {
      case 'bundle':
        break;
      case 'tcbInfo':
        out.tcbInfo = readSignedResponse(blob, 'tcbInfo', 'TCB Info');
        break;
      case 'qeIdentity':
        out.qeIdentity = readSignedResponse(blob, 'enclaveIdentity', 'QE Identity');
        break;
      case 'pckCrl':
        out.pckCrl = readCrl(blob, 'PCK CRL');
        break;
      case 'rootCaCrl':
        out.rootCaCrl = readCrl(blob, 'root CA CRL');
        break;
      case 'tcbInfoIssuerChain':
        out.tcbInfoIssuerChain = readChain(blob, 'TCB Info issuer chain');
        break;
      case 'qeIdentityIssuerChain':
        out.qeIdentityIssuerChain = readChain(blob, 'QE Identity issuer chain');
        break;
      case 'pckCrlIssuerChain':
        out.pckCrlIssuerChain = readChain(blob, 'PCK CRL issuer chain');
        break;
      default:
        out.ignored.push(name);
    }
  }
  return out;
}

/** Reads an Intel PCS signed response, `{"tcbInfo":{...},"signature":"hex"}` or `{"enclaveIdentity":...}`. */
export function readSignedResponse(blob: Uint8Array, bodyKey: 'tcbInfo' | 'enclaveIdentity', what: string): SignedJson {
  assertMaxSize(blob, MAX_COLLATERAL_JSON, what);
  return splitSignedJson(text(blob, what), bodyKey, what);
}

/**
 * Reads the one-JSON collateral form (dcap-qvl `QuoteCollateralV3`, PCCS clients): PEM issuer
 * chains, `tcb_info`/`qe_identity` as the exact signed JSON text, signatures and CRLs as hex (or
 * as byte arrays, which is how serde_bytes writes them).
 */
export function parseCollateralBundle(blob: Uint8Array): Omit<TdxCollateralInput, 'ignored'> {
  assertMaxSize(blob, MAX_COLLATERAL_BUNDLE, 'collateral bundle');
  let v: unknown;
  try {
    v = JSON.parse(text(blob, 'collateral bundle'));
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    throw new ParseError('ERR_COLLATERAL_INVALID', 'collateral bundle is not JSON', { cause: e });
  }
  const b = obj(v, 'collateral bundle');
  const out: Omit<TdxCollateralInput, 'ignored'> = {};
  const str = (k: string): string | undefined => {
    const x = b[k];
    if (x === undefined || x === null) return undefined;
    if (typeof x !== 'string') throw invalid(`collateral bundle "${k}" must be a string`);
    return x;
  };
  const tcbInfo = str('tcb_info');
  if (tcbInfo !== undefined) {
    assertMaxSize(utf8(tcbInfo), MAX_COLLATERAL_JSON, 'tcb_info');
    out.tcbInfo = { body: tcbInfo, signature: signatureField(b.tcb_info_signature, 'tcb_info_signature') };
  }
  const qe = str('qe_identity');
  if (qe !== undefined) {
    assertMaxSize(utf8(qe), MAX_COLLATERAL_JSON, 'qe_identity');
    out.qeIdentity = { body: qe, signature: signatureField(b.qe_identity_signature, 'qe_identity_signature') };
  }
  if (b.pck_crl !== undefined && b.pck_crl !== null) out.pckCrl = readCrl(bytesField(b.pck_crl, 'pck_crl'), 'PCK CRL');
  if (b.root_ca_crl !== undefined && b.root_ca_crl !== null) out.rootCaCrl = readCrl(bytesField(b.root_ca_crl, 'root_ca_crl'), 'root CA CRL');
  const chains: [string, 'tcbInfoIssuerChain' | 'qeIdentityIssuerChain' | 'pckCrlIssuerChain'][] = [
    ['tcb_info_issuer_chain', 'tcbInfoIssuerChain'],
    ['qe_identity_issuer_chain', 'qeIdentityIssuerChain'],
    ['pck_crl_issuer_chain', 'pckCrlIssuerChain'],
  ];
  for (const [k, name] of chains) {
    const pem = str(k);
    if (pem !== undefined) out[name] = readChain(utf8(pem), k);
  }
  return out;
}

/** A CRL given as DER, PEM (`X509 CRL`) or hex text of the DER. */
export function readCrl(blob: Uint8Array, what: string): X509Crl {
  if (blob.length > 0 && blob[0] === 0x30) return new X509Crl(blob);
  const t = text(blob, what).trim();
  if (t.startsWith('-----BEGIN')) {
    const block = parsePem(t).find((p) => p.label === 'X509 CRL');
    if (!block) throw new ParseError('ERR_CRL_INVALID', `${what} has no PEM X509 CRL block`);
    return new X509Crl(block.der);
  }
  let der: Bytes;
  try {
    der = fromHex(t);
  } catch (e) {
    throw new ParseError('ERR_CRL_INVALID', `${what} is neither DER, PEM nor hex`, { cause: e });
  }
  return new X509Crl(der);
}

function readChain(blob: Uint8Array, what: string): X509Certificate[] {
  assertMaxSize(blob, MAX_CHAIN_PEM, what);
  return readCertificates(blob).map((d) => new X509Certificate(d));
}

function signatureField(v: unknown, what: string): Bytes {
  if (Array.isArray(v)) {
    const b = bytesField(v, what);
    if (b.length !== 64) throw invalid(`${what} must be 64 bytes`);
    return b;
  }
  return signatureFromHex(v, what);
}

function bytesField(v: unknown, what: string): Bytes {
  if (typeof v === 'string') {
    try {
      return fromHex(v.trim());
    } catch (e) {
      throw new ParseError('ERR_COLLATERAL_INVALID', `${what} is not hex`, { cause: e });
    }
  }
  if (Array.isArray(v)) {
    if (v.length > MAX_COLLATERAL_BUNDLE) throw invalid(`${what} too large`);
    const out = new Uint8Array(v.length);
    v.forEach((x, i) => {
      if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x > 255) throw invalid(`${what} is not a byte array`);
      out[i] = x;
    });
    return out;
  }
  throw invalid(`${what} must be hex or a byte array`);
}

function text(blob: Uint8Array, what: string): string {
  try {
    return fromUtf8(blob);
  } catch (e) {
    throw new ParseError('ERR_COLLATERAL_INVALID', `${what} is not UTF-8 text`, { cause: e });
  }
}

// ---------- signed bodies ----------

/** Parses the signed TCB Info body. Only TDX TCB Info v3 applies to TDX quotes. */
export function parseTdxTcbInfo(body: string): TdxTcbInfo {
  const t = obj(parseJson(body, 'TCB Info'), 'TCB Info');
  if (t.id !== 'TDX') throw new ParseError('ERR_COLLATERAL_MISMATCH', `TCB Info id is ${JSON.stringify(t.id)}, not TDX`);
  if (t.version !== 3) throw new ParseError('ERR_COLLATERAL_MISMATCH', `TCB Info version is ${JSON.stringify(t.version)}, TDX needs version 3`);
  const mod = obj(t.tdxModule, 'tdxModule');
  const info: TdxTcbInfo = {
    id: 'TDX',
    version: 3,
    issueDate: date(t.issueDate, 'issueDate'),
    nextUpdate: date(t.nextUpdate, 'nextUpdate'),
    fmspc: hexText(t.fmspc, 6, 'fmspc'),
    pceId: hexText(t.pceId, 2, 'pceId'),
    tcbType: uint(t.tcbType, 'tcbType'),
    tcbEvaluationDataNumber: uint(t.tcbEvaluationDataNumber, 'tcbEvaluationDataNumber'),
    tdxModule: { mrSigner: hexBytes(mod.mrsigner, 48, 'tdxModule.mrsigner'), attributes: hexBytes(mod.attributes, 8, 'tdxModule.attributes'), attributesMask: hexBytes(mod.attributesMask, 8, 'tdxModule.attributesMask') },
    tcbLevels: list(t.tcbLevels, 'tcbLevels', MAX_TCB_LEVELS).map((l, i) => tdxTcbLevel(l, `tcbLevels[${i}]`)),
  };
  if (t.tcbType !== 0) throw new ParseError('ERR_COLLATERAL_INVALID', `TCB Info tcbType ${info.tcbType} is not supported`);
  if (t.tdxModuleIdentities !== undefined) {
    info.tdxModuleIdentities = list(t.tdxModuleIdentities, 'tdxModuleIdentities', MAX_TCB_LEVELS).map((m, i) => moduleIdentity(m, `tdxModuleIdentities[${i}]`));
  }
  return info;
}

function tdxTcbLevel(v: unknown, where: string): TdxTcbLevel {
  const l = obj(v, where);
  const tcb = obj(l.tcb, `${where}.tcb`);
  return {
    sgxTcbComponents: components(tcb.sgxtcbcomponents, `${where}.tcb.sgxtcbcomponents`),
    pceSvn: uint(tcb.pcesvn, `${where}.tcb.pcesvn`),
    tdxTcbComponents: components(tcb.tdxtcbcomponents, `${where}.tcb.tdxtcbcomponents`),
    ...levelCommon(l, where),
  };
}

function moduleIdentity(v: unknown, where: string): TdxModuleIdentity {
  const m = obj(v, where);
  if (typeof m.id !== 'string' || m.id.length > 64) throw invalid(`${where}.id must be a string`);
  return {
    id: m.id,
    mrSigner: hexBytes(m.mrsigner, 48, `${where}.mrsigner`),
    attributes: hexBytes(m.attributes, 8, `${where}.attributes`),
    attributesMask: hexBytes(m.attributesMask, 8, `${where}.attributesMask`),
    tcbLevels: list(m.tcbLevels, `${where}.tcbLevels`, MAX_TCB_LEVELS).map((x, i) => isvLevel(x, `${where}.tcbLevels[${i}]`)),
  };
}

function isvLevel(v: unknown, where: string): TdxModuleTcbLevel {
  const l = obj(v, where);
  const tcb = obj(l.tcb, `${where}.tcb`);
  return { isvSvn: uint(tcb.isvsvn, `${where}.tcb.isvsvn`), ...levelCommon(l, where) };
}

function levelCommon(l: Record<string, unknown>, where: string): { tcbDate: string; tcbStatus: TcbStatus; advisoryIds: string[] } {
  date(l.tcbDate, `${where}.tcbDate`);
  const tcbDate = l.tcbDate as string;
  if (typeof l.tcbStatus !== 'string' || !(TCB_STATUSES as readonly string[]).includes(l.tcbStatus)) throw invalid(`${where}.tcbStatus is not a known TCB status`);
  const advisoryIds =
    l.advisoryIDs === undefined
      ? []
      : list(l.advisoryIDs, `${where}.advisoryIDs`, MAX_ADVISORIES).map((a) => {
          if (typeof a !== 'string' || a.length > 64) throw invalid(`${where}.advisoryIDs must be strings`);
          return a;
        });
  return { tcbDate, tcbStatus: l.tcbStatus as TcbStatus, advisoryIds };
}

function components(v: unknown, where: string): number[] {
  const arr = list(v, where, 16);
  if (arr.length !== 16) throw invalid(`${where} must have 16 entries`);
  return arr.map((c, i) => {
    const svn = uint(obj(c, `${where}[${i}]`).svn, `${where}[${i}].svn`);
    if (svn > 255) throw invalid(`${where}[${i}].svn out of range`);
    return svn;
  });
}

/** Parses the signed Enclave Identity body (TD_QE v2 for TDX). */
export function parseQeIdentity(body: string): QeIdentity {
  const q = obj(parseJson(body, 'QE Identity'), 'QE Identity');
  if (typeof q.id !== 'string') throw invalid('QE Identity id must be a string');
  const isvProdId = uint(q.isvprodid, 'isvprodid');
  if (isvProdId > 0xffff) throw invalid('isvprodid out of range');
  return {
    id: q.id,
    version: uint(q.version, 'version'),
    issueDate: date(q.issueDate, 'issueDate'),
    nextUpdate: date(q.nextUpdate, 'nextUpdate'),
    tcbEvaluationDataNumber: uint(q.tcbEvaluationDataNumber, 'tcbEvaluationDataNumber'),
    miscSelect: hexBytes(q.miscselect, 4, 'miscselect'),
    miscSelectMask: hexBytes(q.miscselectMask, 4, 'miscselectMask'),
    attributes: hexBytes(q.attributes, 16, 'attributes'),
    attributesMask: hexBytes(q.attributesMask, 16, 'attributesMask'),
    mrSigner: hexBytes(q.mrsigner, 32, 'mrsigner'),
    isvProdId,
    tcbLevels: list(q.tcbLevels, 'tcbLevels', MAX_TCB_LEVELS).map((x, i) => isvLevel(x, `tcbLevels[${i}]`)),
  };
}

// ---------- small validators ----------

function parseJson(s: string, what: string): unknown {
  try {
    return JSON.parse(s);
  } catch (e) {
    throw new ParseError('ERR_COLLATERAL_INVALID', `${what} is not JSON`, { cause: e });
  }
}

function invalid(msg: string): ParseError {
  return new ParseError('ERR_COLLATERAL_INVALID', msg);
}

function obj(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalid(`${what} must be an object`);
  return v as Record<string, unknown>;
}

function list(v: unknown, what: string, max: number): unknown[] {
  if (!Array.isArray(v)) throw invalid(`${what} must be an array`);
  if (v.length > max) throw invalid(`${what} has too many entries`);
  return v;
}

function uint(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw invalid(`${what} must be a non-negative integer`);
  return v;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

function date(v: unknown, what: string): Date {
  if (typeof v !== 'string' || !ISO_UTC.test(v)) throw invalid(`${what} must be an RFC 3339 UTC time`);
  const d = new Date(v);
  if (Number.isNaN(d.getTime())) throw invalid(`${what} is not a valid time`);
  return d;
}

function hexBytes(v: unknown, len: number, what: string): Bytes {
  if (typeof v !== 'string' || v.length !== len * 2) throw invalid(`${what} must be ${len} bytes of hex`);
  try {
    return fromHex(v);
  } catch (e) {
    throw new ParseError('ERR_COLLATERAL_INVALID', `${what} is not hex`, { cause: e });
  }
}

function hexText(v: unknown, len: number, what: string): string {
  hexBytes(v, len, what);
  return (v as string).toLowerCase();
}
