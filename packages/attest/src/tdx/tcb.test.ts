import { describe, expect, it } from 'vitest';
import { readVector } from '../../../../test/vectors.js';
import type { TcbStatus } from '../types.js';
import { parseTdxTcbInfo, readSignedResponse, type TdxTcbInfo } from './collateral.js';
import type { PckSgxExtensions } from './pck-extensions.js';
import type { TdReportBody } from './quote.js';
import { convergeStatus, evaluateQeIdentity, evaluateTdxTcb, matchTcbLevels } from './tcb.js';
import type { QeIdentity } from './collateral.js';
import type { SgxEnclaveReport } from './quote.js';
import { G } from './testing/sets.js';

const z = (n: number) => new Uint8Array(n);

function body(teeTcbSvn: number[], teeTcbSvn2?: number[]): TdReportBody {
  const svn = z(16);
  svn.set(teeTcbSvn);
  const b: TdReportBody = {
    type: teeTcbSvn2 ? 3 : 2,
    teeTcbSvn: svn,
    mrSeam: z(48),
    mrSignerSeam: z(48),
    seamAttributes: z(8),
    tdAttributes: z(8),
    xfam: z(8),
    mrTd: z(48),
    mrConfigId: z(48),
    mrOwner: z(48),
    mrOwnerConfig: z(48),
    rtmr: [z(48), z(48), z(48), z(48)],
    reportData: z(64),
  };
  if (teeTcbSvn2) {
    const s2 = z(16);
    s2.set(teeTcbSvn2);
    b.teeTcbSvn2 = s2;
    b.mrServiceTd = z(48);
  }
  return b;
}

function pck(sgx: number[], pceSvn: number): PckSgxExtensions {
  const comps = new Array<number>(16).fill(0);
  sgx.forEach((v, i) => (comps[i] = v));
  return { ppid: z(16), sgxTcbComponents: comps, pceSvn, cpuSvn: z(16), pceId: z(2), fmspc: z(6), sgxType: 0 };
}

/** The real v5 TCB Info (FMSPC 90c06f000000): levels 2024-11-13 UpToDate, 2024-03-13 and 2018-01-04 OutOfDate; TDX_01 / TDX_03 identities. */
const v5: TdxTcbInfo = parseTdxTcbInfo(readSignedResponse(readVector(G + 'sample_tcbinfo_response_v5'), 'tcbInfo', 'TCB Info').body);

describe('convergeStatus (QVL convergeTcbStatusWithQeTcbStatus / WithTdxModuleStatus)', () => {
  const table: [TcbStatus, TcbStatus | undefined, TcbStatus][] = [
    ['UpToDate', undefined, 'UpToDate'],
    ['UpToDate', 'UpToDate', 'UpToDate'],
    ['UpToDate', 'OutOfDate', 'OutOfDate'],
    ['SWHardeningNeeded', 'OutOfDate', 'OutOfDate'],
    ['ConfigurationNeeded', 'OutOfDate', 'OutOfDateConfigurationNeeded'],
    ['ConfigurationAndSWHardeningNeeded', 'OutOfDate', 'OutOfDateConfigurationNeeded'],
    ['OutOfDate', 'OutOfDate', 'OutOfDate'],
    ['ConfigurationNeeded', 'UpToDate', 'ConfigurationNeeded'],
    ['UpToDate', 'Revoked', 'Revoked'],
    ['Revoked', 'UpToDate', 'Revoked'],
  ];
  for (const [level, component, want] of table) {
    it(`${level} with component ${component ?? 'none'} -> ${want}`, () => expect(convergeStatus(level, component)).toBe(want));
  }
});

describe('TDX TCB level matching on the v5 TCB Info', () => {
  it('module version > 0: TEE_TCB_SVN bytes 0 and 1 are left to the module identity', () => {
    // byte 0 (module ISVSVN 1) is far below the level's 5, but is not compared for module version 1
    const m = matchTcbLevels(v5, pck([3, 3, 2, 2, 4, 1, 0, 5], 13), body([1, 1, 3]).teeTcbSvn);
    expect(m.tdx?.tcbDate).toBe('2024-11-13T00:00:00Z');
  });

  it('module version 0: every TEE_TCB_SVN byte is compared', () => {
    const m = matchTcbLevels(v5, pck([3, 3, 2, 2, 4, 1, 0, 5], 13), body([1, 0, 3]).teeTcbSvn);
    expect(m.sgx?.tcbDate).toBe('2024-11-13T00:00:00Z');
    expect(m.tdx).toBeUndefined();
  });

  it('a lower SGX level selects the first level it meets', () => {
    const r = evaluateTdxTcb(v5, pck([2, 2, 2, 2, 3, 1, 0, 5], 13), body([6, 1, 2]), 5);
    expect(r.status).toBe('OutOfDate');
    expect(r.tdxLevel.tcbDate).toBe('2024-03-13T00:00:00Z');
    expect(r.advisoryIds).toContain('INTEL-SA-01111');
  });

  it('module ISVSVN below its latest level makes the module OutOfDate and adds its advisories', () => {
    const r = evaluateTdxTcb(v5, pck([3, 3, 2, 2, 4, 1, 0, 5], 13), body([4, 1, 3]), 5);
    expect(r.module).toMatchObject({ identity: 'TDX_01', level: { status: 'OutOfDate', tcbDate: '2024-03-13T00:00:00Z' } });
    expect(r.status).toBe('OutOfDate');
    expect(r.advisoryIds).toEqual(['INTEL-SA-01036', 'INTEL-SA-01099']);
    expect(r.tcbDate).toBe('2024-03-13T00:00:00Z');
  });

  it('TD relaunch is advised when the module was updated in place to the current level (TEE_TCB_SVN2)', () => {
    const running = body([4, 1, 3], [6, 1, 3]);
    const r = evaluateTdxTcb(v5, pck([3, 3, 2, 2, 4, 1, 0, 5], 13), running, 5, { isvSvn: 4, status: 'UpToDate', tcbDate: '2024-03-13T00:00:00Z', advisoryIds: [] });
    expect(r.status).toBe('OutOfDate');
    expect(r.relaunchAdvised).toBe(true);
    const notYet = evaluateTdxTcb(v5, pck([3, 3, 2, 2, 4, 1, 0, 5], 13), body([4, 1, 3], [4, 1, 3]), 5);
    expect(notYet.relaunchAdvised).toBe(false);
  });

  it('no level for the PCK certificate, or for TEE_TCB_SVN, is ERR_TCB_NO_MATCH', () => {
    expect(() => evaluateTdxTcb(v5, pck([1, 1, 2, 2, 3, 1, 0, 3], 13), body([5, 1, 2]), 5)).toThrow(expect.objectContaining({ code: 'ERR_TCB_NO_MATCH' }));
    expect(() => evaluateTdxTcb(v5, pck([3, 3, 2, 2, 4, 1, 0, 5], 13), body([5, 1, 1]), 5)).toThrow(expect.objectContaining({ code: 'ERR_TCB_NO_MATCH' }));
    // module TDX_01 has no level below ISVSVN 2
    expect(() => evaluateTdxTcb(v5, pck([3, 3, 2, 2, 4, 1, 0, 5], 13), body([1, 1, 3]), 5)).toThrow(expect.objectContaining({ code: 'ERR_TCB_NO_MATCH' }));
  });
});

describe('QE Identity MISCSELECT', () => {
  // A uint32: little-endian in the QE report, a big-endian hex number in the QE Identity JSON.
  const identity = (miscSelect: number[], miscSelectMask: number[]): QeIdentity => ({
    id: 'TD_QE',
    version: 2,
    issueDate: new Date(0),
    nextUpdate: new Date(0),
    tcbEvaluationDataNumber: 1,
    miscSelect: Uint8Array.from(miscSelect),
    miscSelectMask: Uint8Array.from(miscSelectMask),
    attributes: z(16),
    attributesMask: z(16),
    mrSigner: z(32),
    isvProdId: 2,
    tcbLevels: [{ isvSvn: 0, tcbDate: '2024-01-01T00:00:00Z', tcbStatus: 'UpToDate', advisoryIds: [] }],
  });
  const report = (miscSelect: number[]): SgxEnclaveReport => ({ raw: z(384), cpuSvn: z(16), miscSelect: Uint8Array.from(miscSelect), attributes: z(16), mrEnclave: z(32), mrSigner: z(32), isvProdId: 2, isvSvn: 1, reportData: z(64) });
  it('is compared as an integer: report bytes 01 00 00 00 (= 1) match identity 00000001 under mask 000000FF; 00 00 00 01 (= 0x01000000) does not', () => {
    const id = identity([0, 0, 0, 1], [0, 0, 0, 0xff]);
    expect(evaluateQeIdentity(id, report([1, 0, 0, 0])).status).toBe('UpToDate');
    expect(() => evaluateQeIdentity(id, report([0, 0, 0, 1]))).toThrowError(expect.objectContaining({ code: 'ERR_TDX_QE_IDENTITY' }) as Error);
    // The real values (0 under FFFFFFFF) read the same either way.
    expect(evaluateQeIdentity(identity([0, 0, 0, 0], [0xff, 0xff, 0xff, 0xff]), report([0, 0, 0, 0])).status).toBe('UpToDate');
  });
});
