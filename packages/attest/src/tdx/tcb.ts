import { CustodyError, VerificationError, equalBytes, isAllZero, toHex } from '@custody/core';
import type { TcbStatus } from '../types.js';
import type { QeIdentity, TdxModuleIdentity, TdxTcbInfo, TdxTcbLevel } from './collateral.js';
import type { PckSgxExtensions } from './pck-extensions.js';
import type { SgxEnclaveReport, TdReportBody } from './quote.js';

/**
 * TCB appraisal as Intel's Quote Verification Library does it (QVL TcbLevelCheck, TdxModuleCheck,
 * TDRelaunchCheck, EnclaveReportVerifier; section numbers in comments refer to the QVL
 * verification steps 4.1.2.4.x).
 */

export interface MatchedLevel {
  status: TcbStatus;
  tcbDate: string;
  advisoryIds: string[];
}

export interface QeIdentityResult extends MatchedLevel {
  isvSvn: number;
}

/** Checks the QE report against the QE Identity (4.1.2.4.15) and returns the QE's TCB level. */
export function evaluateQeIdentity(identity: QeIdentity, report: SgxEnclaveReport): QeIdentityResult {
  // MISCSELECT is a uint32: little-endian in the report, a big-endian hex number in the QE
  // Identity (Intel's QVL compares the two as integers), so the report's bytes are reversed first.
  const miscSelect = report.miscSelect.slice().reverse();
  if (!equalBytes(mask(miscSelect, identity.miscSelectMask), identity.miscSelect)) {
    throw new CustodyError('ERR_TDX_QE_IDENTITY', 'QE report MISCSELECT does not match the QE Identity under its mask', { detail: { field: 'miscselect' } });
  }
  if (!equalBytes(mask(report.attributes, identity.attributesMask), identity.attributes)) {
    throw new CustodyError('ERR_TDX_QE_IDENTITY', 'QE report ATTRIBUTES do not match the QE Identity under its mask', { detail: { field: 'attributes' } });
  }
  if (!equalBytes(report.mrSigner, identity.mrSigner)) {
    throw new CustodyError('ERR_TDX_QE_IDENTITY', `QE MRSIGNER ${toHex(report.mrSigner)} is not the QE Identity's`, { detail: { field: 'mrsigner' } });
  }
  if (report.isvProdId !== identity.isvProdId) {
    throw new CustodyError('ERR_TDX_QE_IDENTITY', `QE ISVPRODID ${report.isvProdId} is not ${identity.isvProdId}`, { detail: { field: 'isvprodid' } });
  }
  const level = identity.tcbLevels.find((l) => report.isvSvn >= l.isvSvn);
  if (!level) {
    throw new VerificationError('ERR_TCB_NO_MATCH', `QE ISVSVN ${report.isvSvn} is below every QE Identity TCB level`, { detail: { qeIsvSvn: report.isvSvn } });
  }
  return { isvSvn: report.isvSvn, status: level.tcbStatus, tcbDate: level.tcbDate, advisoryIds: level.advisoryIds };
}

function mask(value: Uint8Array, m: Uint8Array): Uint8Array {
  const out = new Uint8Array(value.length);
  for (let i = 0; i < value.length; i++) out[i] = value[i]! & (m[i] ?? 0);
  return out;
}

export interface TdxModuleResult {
  /** TEE_TCB_SVN[1]: the TDX module's major version. */
  version: number;
  /** TEE_TCB_SVN[0]. */
  isvSvn: number;
  /** `TDX_<version as 2 hex digits>` when TCB Info module identities were used. */
  identity?: string;
  /** Absent for version 0 modules, which are appraised through the TDX TCB components alone. */
  level?: MatchedLevel;
}

/**
 * Finds the TDX module identity for the quote (4.1.2.4.11): version 0 uses TCB Info's `tdxModule`;
 * later versions need the `TDX_xx` identity. MRSIGNERSEAM must equal its mrsigner and
 * SEAMATTRIBUTES must be zero (Intel requires zero and equality, ignoring the mask).
 */
export function checkTdxModule(info: TdxTcbInfo, body: TdReportBody, quoteVersion: number): { identity?: TdxModuleIdentity } {
  const version = body.teeTcbSvn[1]!;
  let mrSigner = info.tdxModule.mrSigner;
  let attributes = info.tdxModule.attributes;
  let identity: TdxModuleIdentity | undefined;
  if (quoteVersion > 3 && version > 0) {
    identity = findModuleIdentity(info, version);
    mrSigner = identity.mrSigner;
    attributes = identity.attributes;
  }
  if (!equalBytes(body.mrSignerSeam, mrSigner)) {
    throw new CustodyError('ERR_TDX_MODULE_MISMATCH', 'MRSIGNERSEAM does not match the TDX module signer in the TCB Info', { detail: { mrSignerSeam: toHex(body.mrSignerSeam) } });
  }
  if (!isAllZero(body.seamAttributes) || !equalBytes(body.seamAttributes, attributes)) {
    throw new CustodyError('ERR_TDX_MODULE_MISMATCH', 'SEAMATTRIBUTES are not zero or do not match the TCB Info', { detail: { seamAttributes: toHex(body.seamAttributes) } });
  }
  return identity ? { identity } : {};
}

function moduleId(version: number): string {
  return 'TDX_' + version.toString(16).padStart(2, '0').toUpperCase();
}

function findModuleIdentity(info: TdxTcbInfo, version: number): TdxModuleIdentity {
  const want = moduleId(version);
  if (!info.tdxModuleIdentities) {
    throw new CustodyError('ERR_TDX_MODULE_MISMATCH', `TDX module version ${version} needs TCB Info tdxModuleIdentities, which this TCB Info lacks`, { detail: { identity: want } });
  }
  const found = info.tdxModuleIdentities.find((m) => m.id.toUpperCase() === want);
  if (!found) throw new CustodyError('ERR_TDX_MODULE_MISMATCH', `TCB Info has no TDX module identity ${want}`, { detail: { identity: want } });
  return found;
}

/** The module's own TCB level (QVL TdxModuleCheck). */
export function evaluateTdxModule(info: TdxTcbInfo, body: TdReportBody, quoteVersion: number): TdxModuleResult {
  const version = body.teeTcbSvn[1]!;
  const isvSvn = body.teeTcbSvn[0]!;
  if (quoteVersion > 3 && version === 0) return { version, isvSvn };
  const identity = findModuleIdentity(info, version);
  const level = identity.tcbLevels.find((l) => isvSvn >= l.isvSvn);
  if (!level) {
    throw new VerificationError('ERR_TCB_NO_MATCH', `TDX module ISVSVN ${isvSvn} is below every ${identity.id} TCB level`, { detail: { identity: identity.id, isvSvn } });
  }
  return { version, isvSvn, identity: identity.id, level: { status: level.tcbStatus, tcbDate: level.tcbDate, advisoryIds: level.advisoryIds } };
}

/** Selects the SGX and TDX TCB levels (4.1.2.4.17.1-3): the first level the platform meets. */
export function matchTcbLevels(info: TdxTcbInfo, pck: PckSgxExtensions, teeTcbSvn: Uint8Array): { sgx?: TdxTcbLevel; tdx?: TdxTcbLevel } {
  let sgx: TdxTcbLevel | undefined;
  // With a TDX module version > 0, bytes 0 and 1 are appraised through the module identity.
  const first = teeTcbSvn[1]! > 0 ? 2 : 0;
  for (const level of info.tcbLevels) {
    if (!pck.sgxTcbComponents.every((svn, i) => svn >= level.sgxTcbComponents[i]!)) continue;
    if (pck.pceSvn < level.pceSvn) continue;
    sgx ??= level;
    let tdxOk = true;
    for (let i = first; i < 16; i++) {
      if (teeTcbSvn[i]! < level.tdxTcbComponents[i]!) {
        tdxOk = false;
        break;
      }
    }
    if (tdxOk) return { sgx, tdx: level };
  }
  return sgx ? { sgx } : {};
}

/** Statuses the QVL treats as "not out of date" when deciding whether a relaunch would help. */
const CURRENT: ReadonlySet<TcbStatus> = new Set(['UpToDate', 'SWHardeningNeeded', 'ConfigurationNeeded', 'ConfigurationAndSWHardeningNeeded']);

/** An OutOfDate or Revoked component (QE or TDX module) pulls the platform status down. */
export function convergeStatus(levelStatus: TcbStatus, componentStatus: TcbStatus | undefined): TcbStatus {
  if (componentStatus === 'Revoked') return 'Revoked';
  if (componentStatus === 'OutOfDate') {
    if (levelStatus === 'UpToDate' || levelStatus === 'SWHardeningNeeded') return 'OutOfDate';
    if (levelStatus === 'ConfigurationNeeded' || levelStatus === 'ConfigurationAndSWHardeningNeeded') return 'OutOfDateConfigurationNeeded';
  }
  return levelStatus;
}

export interface TdxTcbEvaluation extends MatchedLevel {
  sgxLevel: TdxTcbLevel;
  tdxLevel: TdxTcbLevel;
  module: TdxModuleResult;
  qe?: QeIdentityResult;
  /**
   * TDX 1.5: the running module was updated in place to a level that would be current, so a
   * relaunch of the TD brings it up to date (QVL TDRelaunchCheck, "TDRelaunchAdvised").
   */
  relaunchAdvised: boolean;
}

/**
 * Appraises the platform TCB: SGX level from the PCK certificate, TDX level from TEE_TCB_SVN,
 * the TDX module identity level, then the QE's level, combined as the QVL does. Throws
 * ERR_TCB_NO_MATCH when no level applies; Revoked is returned, the caller decides.
 */
export function evaluateTdxTcb(info: TdxTcbInfo, pck: PckSgxExtensions, body: TdReportBody, quoteVersion: number, qe?: QeIdentityResult): TdxTcbEvaluation {
  const { sgx, tdx } = matchTcbLevels(info, pck, body.teeTcbSvn);
  if (!sgx) {
    throw new VerificationError('ERR_TCB_NO_MATCH', `no TCB level matches the PCK certificate (SGX components [${pck.sgxTcbComponents.join(',')}], PCESVN ${pck.pceSvn})`, {
      detail: { fmspc: info.fmspc, pceSvn: pck.pceSvn },
    });
  }
  if (!tdx) {
    throw new VerificationError('ERR_TCB_NO_MATCH', `no TCB level matches TEE_TCB_SVN ${toHex(body.teeTcbSvn)} with the PCK certificate's SGX level`, {
      detail: { fmspc: info.fmspc, teeTcbSvn: toHex(body.teeTcbSvn) },
    });
  }
  const module = evaluateTdxModule(info, body, quoteVersion);
  let status = convergeStatus(tdx.tcbStatus, module.level?.status);
  let relaunchAdvised = false;
  if (status !== 'Revoked' && body.type === 3 && body.teeTcbSvn2) {
    relaunchAdvised = isRelaunchAdvised(info, body.teeTcbSvn2, sgx.tcbStatus, status, module, qe);
  }
  if (qe) status = convergeStatus(status, qe.status);

  const advisoryIds = [...new Set([...tdx.advisoryIds, ...(module.level?.advisoryIds ?? []), ...(qe?.advisoryIds ?? [])])];
  // The platform is as old as its oldest matched component.
  const dates = [tdx.tcbDate, module.level?.tcbDate, qe?.tcbDate].filter((d): d is string => d !== undefined);
  const tcbDate = dates.reduce((a, b) => (Date.parse(b) < Date.parse(a) ? b : a));
  const out: TdxTcbEvaluation = { status, tcbDate, advisoryIds, sgxLevel: sgx, tdxLevel: tdx, module, relaunchAdvised };
  if (qe) out.qe = qe;
  return out;
}

function isRelaunchAdvised(info: TdxTcbInfo, teeTcbSvn2: Uint8Array, sgxStatus: TcbStatus, tdxStatus: TcbStatus, module: TdxModuleResult, qe: QeIdentityResult | undefined): boolean {
  if ((qe && !CURRENT.has(qe.status)) || !CURRENT.has(sgxStatus)) return false;
  if (tdxStatus !== 'OutOfDate' && tdxStatus !== 'OutOfDateConfigurationNeeded') return false;
  if (module.level?.status !== 'OutOfDate') return false;
  const latest = info.tcbLevels[0];
  if (!latest) return false;
  if (teeTcbSvn2[1] === 0) return teeTcbSvn2[0]! >= latest.tdxTcbComponents[0]! && teeTcbSvn2[2]! >= latest.tdxTcbComponents[2]!;
  const identity = info.tdxModuleIdentities?.find((m) => m.id.toUpperCase() === moduleId(teeTcbSvn2[1]!));
  const latestModule = identity?.tcbLevels[0];
  if (!latestModule) return false;
  return teeTcbSvn2[0]! >= latestModule.isvSvn && teeTcbSvn2[2]! >= latest.tdxTcbComponents[2]!;
}
