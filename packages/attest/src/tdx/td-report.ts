import { ByteReader, ParseError, isAllZero, type Bytes } from '@custody/core';
import { TDREPORT_SIZE } from './constants.js';
import type { TdReportBody } from './quote.js';

/**
 * TDREPORT_STRUCT (1024 bytes), the MAC-protected report the TDX module returns to a TD
 * (TDG.MR.REPORT). It is what the Azure TDX HCL report wraps and what the QE turns into a quote.
 * Layout: REPORTMACSTRUCT (256) | TEE_TCB_INFO (239) | reserved (17) | TDINFO (512).
 */
export interface TdReport {
  raw: Bytes;
  reportType: { type: number; subtype: number; version: number };
  cpuSvn: Bytes;
  teeTcbInfoHash: Bytes;
  teeInfoHash: Bytes;
  /** MAC over REPORTMACSTRUCT; only the CPU can check it (the QE does so before quoting). */
  mac: Bytes;
  /** TEE_TCB_INFO.VALID: which TEE_TCB_INFO fields are populated. */
  teeTcbInfoValid: Bytes;
  /** The same fields a quote body carries, so claims can be built one way. */
  body: TdReportBody;
}

/** Parses a raw TDREPORT. TDX 1.5 fields (TEE_TCB_SVN2, SERVTD_HASH) are read when non-zero. */
export function parseTdReport(input: Uint8Array): TdReport {
  if (input.length !== TDREPORT_SIZE) {
    throw new ParseError(input.length < TDREPORT_SIZE ? 'ERR_INPUT_TRUNCATED' : 'ERR_INPUT_MALFORMED', 'a TDREPORT is exactly 1024 bytes', { detail: { size: input.length } });
  }
  const r = new ByteReader(input, 'TDREPORT');
  // REPORTMACSTRUCT
  const type = r.u8();
  const subtype = r.u8();
  const version = r.u8();
  r.skip(1);
  if (type !== 0x81) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'TDREPORT type is not TDX (0x81)', { detail: { type } });
  r.skip(12);
  const cpuSvn = r.bytesView(16);
  const teeTcbInfoHash = r.bytesView(48);
  const teeInfoHash = r.bytesView(48);
  const reportData = r.bytesView(64);
  r.skip(32);
  const mac = r.bytesView(32);
  // TEE_TCB_INFO
  const teeTcbInfoValid = r.bytesView(8);
  const teeTcbSvn = r.bytesView(16);
  const mrSeam = r.bytesView(48);
  const mrSignerSeam = r.bytesView(48);
  const seamAttributes = r.bytesView(8);
  const teeTcbSvn2 = r.bytesView(16);
  r.skip(95);
  r.skip(17);
  // TDINFO
  const tdAttributes = r.bytesView(8);
  const xfam = r.bytesView(8);
  const mrTd = r.bytesView(48);
  const mrConfigId = r.bytesView(48);
  const mrOwner = r.bytesView(48);
  const mrOwnerConfig = r.bytesView(48);
  const rtmr: [Bytes, Bytes, Bytes, Bytes] = [r.bytesView(48), r.bytesView(48), r.bytesView(48), r.bytesView(48)];
  const servTdHash = r.bytesView(48);
  r.skip(64);
  r.end();
  const tdx15 = !isAllZero(teeTcbSvn2) || !isAllZero(servTdHash);
  const body: TdReportBody = {
    type: tdx15 ? 3 : 2,
    teeTcbSvn,
    mrSeam,
    mrSignerSeam,
    seamAttributes,
    tdAttributes,
    xfam,
    mrTd,
    mrConfigId,
    mrOwner,
    mrOwnerConfig,
    rtmr,
    reportData,
  };
  if (tdx15) {
    body.teeTcbSvn2 = teeTcbSvn2;
    body.mrServiceTd = servTdHash;
  }
  return { raw: input as Bytes, reportType: { type, subtype, version }, cpuSvn, teeTcbInfoHash, teeInfoHash, mac, teeTcbInfoValid, body };
}
