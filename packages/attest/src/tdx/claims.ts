import { TD_ATTRIBUTE_BITS } from './constants.js';
import type { TdReportBody } from './quote.js';

const HEX_PAIRS: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex via a byte-pair table: claims carry about 1.5 KB of hex per quote, so this is on the hot path. */
export function hex(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += HEX_PAIRS[b[i]!]!;
  return s;
}

/** Named TD measurements as lowercase hex, the vocabulary policies use for TDX. */
export function tdMeasurements(body: TdReportBody): Record<string, string> {
  const m: Record<string, string> = {
    mrtd: hex(body.mrTd),
    rtmr0: hex(body.rtmr[0]),
    rtmr1: hex(body.rtmr[1]),
    rtmr2: hex(body.rtmr[2]),
    rtmr3: hex(body.rtmr[3]),
    mrconfigid: hex(body.mrConfigId),
    mrowner: hex(body.mrOwner),
    mrownerconfig: hex(body.mrOwnerConfig),
    mrseam: hex(body.mrSeam),
    mrsignerseam: hex(body.mrSignerSeam),
  };
  if (body.mrServiceTd) m.mrservicetd = hex(body.mrServiceTd);
  return m;
}

export interface TdAttributes {
  /** The 8 bytes as stored (little-endian u64), hex. */
  raw: string;
  debug: boolean;
  septVeDisable: boolean;
  migratable: boolean;
  pks: boolean;
  keyLocker: boolean;
  perfmon: boolean;
}

/** Decodes TDATTRIBUTES (TD_PARAMS.ATTRIBUTES, a little-endian u64: bit n is bit n%8 of byte n/8). */
export function decodeTdAttributes(b: Uint8Array): TdAttributes {
  const bit = (n: number): boolean => ((b[n >> 3] ?? 0) & (1 << (n & 7))) !== 0;
  return {
    raw: hex(b),
    debug: bit(TD_ATTRIBUTE_BITS.debug),
    septVeDisable: bit(TD_ATTRIBUTE_BITS.septVeDisable),
    migratable: bit(TD_ATTRIBUTE_BITS.migratable),
    pks: bit(TD_ATTRIBUTE_BITS.pks),
    keyLocker: bit(TD_ATTRIBUTE_BITS.keyLocker),
    perfmon: bit(TD_ATTRIBUTE_BITS.perfmon),
  };
}

/** TEE_TCB_SVN as named components: byte 0 TDX module ISVSVN, byte 1 module major version, 2 late microcode. */
export function teeTcbComponents(teeTcbSvn: Uint8Array): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < teeTcbSvn.length && i < 16; i++) out[TDX_COMPONENT_NAMES[i]!] = teeTcbSvn[i]!;
  return out;
}

/** SGX TCB component SVNs from the PCK certificate, named as in the PCK certificate profile. */
export function sgxTcbComponents(svns: readonly number[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (let i = 0; i < svns.length && i < 16; i++) out[SGX_COMPONENT_NAMES[i]!] = svns[i]!;
  return out;
}

const componentNames = (prefix: string): string[] => Array.from({ length: 16 }, (_, i) => `${prefix}${String(i + 1).padStart(2, '0')}Svn`);
const TDX_COMPONENT_NAMES = componentNames('tdxTcbComp');
const SGX_COMPONENT_NAMES = componentNames('sgxTcbComp');
