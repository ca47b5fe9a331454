import {
  CustodyError,
  ParseError,
  TAG,
  children,
  decodeBoolean,
  decodeOctetString,
  decodeOid,
  expectTag,
  parseDer,
  sequence,
  toHex,
  type Bytes,
  type DerNode,
  type X509Certificate,
} from '@custody/core';
import { SGX_OID } from './constants.js';

/** The Intel SGX extensions of a PCK certificate (OID 1.2.840.113741.1.13.1). */
export interface PckSgxExtensions {
  ppid: Bytes;
  /** SGX TCB component SVNs 1..16, in order. */
  sgxTcbComponents: number[];
  pceSvn: number;
  cpuSvn: Bytes;
  pceId: Bytes;
  fmspc: Bytes;
  /** 0 Standard, 1 Scalable, 2 Scalable with integrity. */
  sgxType: number;
  /** Platform CA certificates only. */
  platformInstanceId?: Bytes;
  configuration?: { dynamicPlatform?: boolean; cachedKeys?: boolean; smtEnabled?: boolean };
}

/**
 * Reads the SGX extensions of a PCK leaf. A certificate without them, or with any required
 * field missing, duplicated or out of range, is not a PCK certificate: ERR_TDX_PCK_CERT.
 */
export function parsePckExtensions(cert: X509Certificate): PckSgxExtensions {
  const ext = cert.extension(SGX_OID.extensions);
  if (!ext) throw new CustodyError('ERR_TDX_PCK_CERT', 'PCK certificate has no Intel SGX extensions');
  try {
    return readSgxExtensions(ext.value);
  } catch (e) {
    if (e instanceof CustodyError && e.code === 'ERR_TDX_PCK_CERT') throw e;
    throw new ParseError('ERR_TDX_PCK_CERT', 'PCK certificate SGX extensions are malformed', { cause: e });
  }
}

function readSgxExtensions(der: Bytes): PckSgxExtensions {
  const fields = new Map<string, DerNode>();
  for (const item of sequence(parseDer(der), 'SGXExtensions')) {
    const [oidNode, value] = sequence(item, 'SGXExtension');
    if (!oidNode || !value) throw fail('SGX extension entry without a value');
    const oid = decodeOid(oidNode);
    if (fields.has(oid)) throw fail(`duplicate SGX extension ${oid}`);
    fields.set(oid, value);
  }
  const need = (oid: string): DerNode => {
    const v = fields.get(oid);
    if (!v) throw fail(`SGX extension ${oid} is missing`);
    return v;
  };

  const ppid = fixedOctets(need(SGX_OID.ppid), 16, 'PPID');
  const tcb = readTcb(need(SGX_OID.tcb));
  const pceId = fixedOctets(need(SGX_OID.pceId), 2, 'PCE-ID');
  const fmspc = fixedOctets(need(SGX_OID.fmspc), 6, 'FMSPC');
  const typeNode = need(SGX_OID.sgxType);
  expectTag(typeNode, TAG.ENUMERATED, 'SGX Type ENUMERATED');
  const sgxType = smallUnsigned(typeNode.value, 'SGX Type');
  const out: PckSgxExtensions = { ppid, ...tcb, pceId, fmspc, sgxType };
  const pid = fields.get(SGX_OID.platformInstanceId);
  if (pid) out.platformInstanceId = fixedOctets(pid, 16, 'PlatformInstanceID');
  const cfg = fields.get(SGX_OID.configuration);
  if (cfg) out.configuration = readConfiguration(cfg);
  return out;
}

function readTcb(node: DerNode): { sgxTcbComponents: number[]; pceSvn: number; cpuSvn: Bytes } {
  const comps = new Array<number | undefined>(16).fill(undefined);
  let pceSvn: number | undefined;
  let cpuSvn: Bytes | undefined;
  for (const item of sequence(node, 'TCB')) {
    const [oidNode, value] = sequence(item, 'TCB component');
    if (!oidNode || !value) throw fail('TCB component without a value');
    const oid = decodeOid(oidNode);
    if (oid === SGX_OID.cpuSvn) {
      if (cpuSvn) throw fail('duplicate CPUSVN');
      cpuSvn = fixedOctets(value, 16, 'CPUSVN');
      continue;
    }
    const v = integer(value, oid);
    if (oid === SGX_OID.pceSvn) {
      if (pceSvn !== undefined) throw fail('duplicate PCESVN');
      if (v > 0xffff) throw fail('PCESVN out of range');
      pceSvn = v;
      continue;
    }
    const prefix = SGX_OID.tcb + '.';
    const idx = oid.startsWith(prefix) ? Number(oid.slice(prefix.length)) : NaN;
    if (!Number.isInteger(idx) || idx < 1 || idx > 16) continue; // unknown TCB members are ignored, as Intel's parser does
    if (comps[idx - 1] !== undefined) throw fail(`duplicate SGX TCB component ${idx}`);
    if (v > 0xff) throw fail(`SGX TCB component ${idx} out of range`);
    comps[idx - 1] = v;
  }
  if (comps.some((c) => c === undefined) || pceSvn === undefined || !cpuSvn) throw fail('PCK TCB is incomplete');
  return { sgxTcbComponents: comps as number[], pceSvn, cpuSvn };
}

function readConfiguration(node: DerNode): NonNullable<PckSgxExtensions['configuration']> {
  const out: NonNullable<PckSgxExtensions['configuration']> = {};
  for (const item of children(expectTag(node, TAG.SEQUENCE, 'Configuration'))) {
    const [oidNode, value] = sequence(item, 'Configuration entry');
    if (!oidNode || !value) throw fail('configuration entry without a value');
    const oid = decodeOid(oidNode);
    if (oid === SGX_OID.configuration + '.1') out.dynamicPlatform = decodeBoolean(value);
    else if (oid === SGX_OID.configuration + '.2') out.cachedKeys = decodeBoolean(value);
    else if (oid === SGX_OID.configuration + '.3') out.smtEnabled = decodeBoolean(value);
  }
  return out;
}

function fixedOctets(node: DerNode, len: number, what: string): Bytes {
  const v = decodeOctetString(node);
  if (v.length !== len) throw fail(`${what} must be ${len} bytes`);
  return v;
}

function integer(node: DerNode, what: string): number {
  return smallUnsigned(expectTag(node, TAG.INTEGER, `${what} INTEGER`).value, what);
}

function smallUnsigned(v: Bytes, what: string): number {
  if (v.length === 0 || v.length > 3 || (v[0]! & 0x80) !== 0) throw fail(`${what} is not a small non-negative integer`);
  let n = 0;
  for (const b of v) n = n * 256 + b;
  return n;
}

function fail(msg: string): CustodyError {
  return new CustodyError('ERR_TDX_PCK_CERT', msg);
}

/** Hex form for claims and messages. */
export function pckExtensionsHex(x: PckSgxExtensions): Record<string, unknown> {
  return {
    fmspc: toHex(x.fmspc),
    pceId: toHex(x.pceId),
    pceSvn: x.pceSvn,
    cpuSvn: toHex(x.cpuSvn),
    sgxTcbComponents: x.sgxTcbComponents,
    sgxType: x.sgxType,
    ...(x.configuration ? { configuration: x.configuration } : {}),
  };
}
