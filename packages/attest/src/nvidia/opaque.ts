import { ByteReader, ParseError, toHex, type Bytes } from '@custody/core';

/**
 * NVIDIA's OpaqueData in a GPU's SPDM MEASUREMENTS response: a run of
 * `DataType (u16 LE) | DataSize (u16 LE) | Data` fields. Type numbers as NVIDIA's GPU verifiers
 * (nvtrust) define them; the ones a policy would read are decoded, the rest kept as hex.
 */
export const NVIDIA_OPAQUE_FIELD = {
  certIssuerName: 1,
  certAuthorityKeyIdentifier: 2,
  driverVersion: 3,
  gpuInfo: 4,
  sku: 5,
  vbiosVersion: 6,
  manufacturerId: 7,
  tamperDetection: 8,
  smc: 9,
  vpr: 10,
  nvdec0Status: 11,
  measurementCount: 12,
  cprInfo: 13,
  boardId: 14,
  chipSku: 15,
  chipSkuMod: 16,
  project: 17,
  projectSku: 18,
  projectSkuMod: 19,
  fwid: 20,
  protectedPcieStatus: 21,
  switchPdi: 22,
  floorsweptPorts: 23,
  positionId: 24,
  lockSwitchStatus: 25,
  gpuLinkConn: 32,
  sysEnableStatus: 33,
  opaqueDataVersion: 34,
  chipInfo: 35,
  featureFlag: 36,
} as const;

export type NvidiaOpaqueFieldName = keyof typeof NVIDIA_OPAQUE_FIELD;

const NAME_BY_TYPE = new Map<number, NvidiaOpaqueFieldName>(Object.entries(NVIDIA_OPAQUE_FIELD).map(([k, v]) => [v, k as NvidiaOpaqueFieldName]));

/** Fields NVIDIA writes as NUL-padded ASCII text. */
const TEXT_FIELDS = new Set<NvidiaOpaqueFieldName>(['driverVersion', 'chipSku', 'chipSkuMod', 'nvdec0Status', 'project', 'projectSku', 'protectedPcieStatus']);

/** SPDM caps OpaqueData at 1024 bytes (DSP0274). */
export const MAX_SPDM_OPAQUE_DATA = 1024;

export interface NvidiaOpaqueData {
  /** Decoded values by field name (`field<N>` for type numbers not in the table); JSON-safe. */
  fields: Record<string, string | number[]>;
  /** Raw bytes by type number. */
  raw: Map<number, Bytes>;
}

/** Decodes the opaque TLVs; every length is checked, and a type may appear only once. */
export function parseNvidiaOpaqueData(bytes: Uint8Array): NvidiaOpaqueData {
  if (bytes.length > MAX_SPDM_OPAQUE_DATA) throw new ParseError('ERR_INPUT_TOO_LARGE', `SPDM opaque data is over ${MAX_SPDM_OPAQUE_DATA} bytes`);
  const r = new ByteReader(bytes, 'NVIDIA opaque data');
  const fields: Record<string, string | number[]> = {};
  const raw = new Map<number, Bytes>();
  while (r.remaining > 0) {
    const type = r.u16le();
    const value = r.take(r.u16le());
    if (raw.has(type)) throw new ParseError('ERR_INPUT_MALFORMED', `NVIDIA opaque data field ${type} appears twice`, { detail: { type } });
    raw.set(type, value);
    const name = NAME_BY_TYPE.get(type);
    fields[name ?? `field${type}`] = decodeField(name, value);
  }
  return { fields, raw };
}

function decodeField(name: NvidiaOpaqueFieldName | undefined, v: Bytes): string | number[] {
  if (name === 'measurementCount') {
    if (v.length % 4 !== 0) throw new ParseError('ERR_INPUT_MALFORMED', 'NVIDIA measurement-count field is not a list of u32', { detail: { size: v.length } });
    const dv = new DataView(v.buffer, v.byteOffset, v.byteLength);
    return Array.from({ length: v.length / 4 }, (_, i) => dv.getUint32(i * 4, true));
  }
  if (name === 'vbiosVersion' && v.length === 8) {
    // A little-endian u64 0x000000MMaabbccdd printed as aa.bb.cc.dd.MM (as nvidia-smi shows it).
    return [v[3]!, v[2]!, v[1]!, v[0]!, v[4]!].map((b) => b.toString(16).padStart(2, '0')).join('.');
  }
  if (name && TEXT_FIELDS.has(name)) {
    let end = v.length;
    while (end > 0 && v[end - 1] === 0) end--;
    const text = v.subarray(0, end);
    if (text.every((b) => b >= 0x20 && b <= 0x7e)) return String.fromCharCode(...text);
  }
  return toHex(v);
}
