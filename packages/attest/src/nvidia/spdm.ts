import { ByteReader, ParseError, assertMaxSize, type Bytes } from '@custody/core';
import { MAX_SPDM_OPAQUE_DATA } from './opaque.js';

/**
 * SPDM 1.1 GET_MEASUREMENTS request and MEASUREMENTS response (DMTF DSP0274 1.1), as an NVIDIA
 * Hopper GPU's attestation report concatenates them:
 *
 * request:  SPDMVersion 0x11 | 0xE0 | Param1 (bit 0: signature requested) | Param2 (index, 0xFF all)
 *           | Nonce (32) | SlotIDParam (1)            (nonce and slot only when a signature is requested)
 * response: SPDMVersion 0x11 | 0x60 | Param1 | Param2 | NumberOfBlocks (1)
 *           | MeasurementRecordLength (3, LE) | MeasurementRecord | Nonce (32)
 *           | OpaqueDataLength (2, LE) | OpaqueData | Signature
 * MeasurementRecord: blocks of Index (1) | MeasurementSpecification (1) | MeasurementSize (2, LE)
 *           | Measurement, where a DMTF measurement is ValueType (1) | ValueSize (2, LE) | Value.
 * The signature (raw r||s) covers request || response up to the signature; Hopper signs with
 * ECDSA P-384 and SHA-384, so it is 96 bytes.
 */
export const SPDM_VERSION_1_1 = 0x11;
export const SPDM_GET_MEASUREMENTS = 0xe0;
export const SPDM_MEASUREMENTS = 0x60;
export const SPDM_NONCE_SIZE = 32;
/** MeasurementSpecification bit 0: the DMTF measurement format. */
export const SPDM_MEASUREMENT_SPEC_DMTF = 0x01;
/** ECDSA P-384 raw r||s, the only signature Hopper GPUs produce. */
export const HOPPER_SIGNATURE_SIZE = 96;
/** Largest report parsed: 255 blocks of 64-byte digests with headers, 1 KiB opaque data and change. */
export const MAX_SPDM_REPORT_SIZE = 64 * 1024;

/** DMTFSpecMeasurementValueType (bits 6:0) names, DSP0274 1.1 Table "DMTF measurement specification". */
export const DMTF_MEASUREMENT_TYPES: Record<number, string> = {
  0: 'immutable ROM',
  1: 'mutable firmware',
  2: 'hardware configuration',
  3: 'firmware configuration',
  4: 'measurement manifest',
};

export interface SpdmGetMeasurementsRequest {
  version: number;
  param1: number;
  /** MeasurementOperation: 0xFF all measurements, 1..0xFE one index. */
  param2: number;
  signatureRequested: boolean;
  /** The requester's (verifier's) nonce. */
  nonce: Bytes;
  slotId: number;
  raw: Bytes;
}

export interface SpdmMeasurementBlock {
  index: number;
  specification: number;
  /** DMTFSpecMeasurementValueType bits 6:0. */
  valueType: number;
  /** Bit 7: the value is a raw bit stream rather than a digest. */
  rawBitStream: boolean;
  value: Bytes;
}

export interface SpdmMeasurementsResponse {
  version: number;
  param1: number;
  param2: number;
  numberOfBlocks: number;
  blocks: SpdmMeasurementBlock[];
  /** The responder's (GPU's) nonce. */
  nonce: Bytes;
  opaqueData: Bytes;
  signature: Bytes;
  raw: Bytes;
}

export interface SpdmMeasurementReport {
  request: SpdmGetMeasurementsRequest;
  response: SpdmMeasurementsResponse;
  /** request || response without the signature: what the signature covers. */
  signedBytes: Bytes;
}

/** Parses request || response with every length checked; no signature check. */
export function parseSpdmMeasurementReport(bytes: Uint8Array, signatureSize = HOPPER_SIGNATURE_SIZE): SpdmMeasurementReport {
  assertMaxSize(bytes, MAX_SPDM_REPORT_SIZE, 'SPDM measurement report');
  const r = new ByteReader(bytes, 'SPDM measurement report');

  const reqVersion = r.u8();
  if (r.u8() !== SPDM_GET_MEASUREMENTS) throw malformed('the report does not start with a GET_MEASUREMENTS request', 1);
  if (reqVersion !== SPDM_VERSION_1_1) throw unsupported(`SPDM version ${reqVersion >> 4}.${reqVersion & 15} is not 1.1`);
  const reqParam1 = r.u8();
  const reqParam2 = r.u8();
  const signatureRequested = (reqParam1 & 1) === 1;
  if (!signatureRequested) throw unsupported('the GET_MEASUREMENTS request did not ask for a signature');
  if (reqParam2 === 0) throw unsupported('the request only queried the number of measurements');
  const reqNonce = r.take(SPDM_NONCE_SIZE);
  const slotParam = r.u8();
  const request: SpdmGetMeasurementsRequest = {
    version: reqVersion,
    param1: reqParam1,
    param2: reqParam2,
    signatureRequested,
    nonce: reqNonce,
    slotId: slotParam & 0x0f,
    raw: bytes.slice(0, r.offset),
  };

  const respStart = r.offset;
  const version = r.u8();
  if (r.u8() !== SPDM_MEASUREMENTS) throw malformed('the request is not followed by a MEASUREMENTS response', respStart + 1);
  if (version !== reqVersion) throw malformed('the response SPDM version differs from the request', respStart);
  const param1 = r.u8();
  const param2 = r.u8();
  const numberOfBlocks = r.u8();
  const recordLength = r.u8() | (r.u8() << 8) | (r.u8() << 16);
  if (numberOfBlocks === 0) throw malformed('the response holds no measurement blocks', respStart + 4);
  if (reqParam2 !== 0xff && numberOfBlocks !== 1) throw malformed('one measurement was requested but several were returned', respStart + 4);
  const record = new ByteReader(r.bytesView(recordLength), 'SPDM measurement record');
  const blocks: SpdmMeasurementBlock[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < numberOfBlocks; i++) {
    const at = respStart + 8 + record.offset;
    const index = record.u8();
    const specification = record.u8();
    const size = record.u16le();
    if (index === 0 || index === 0xff) throw malformed(`measurement block index ${index} is reserved`, at);
    if (seen.has(index)) throw malformed(`measurement block index ${index} appears twice`, at);
    if (reqParam2 !== 0xff && index !== reqParam2) throw malformed(`measurement block ${index} was not the one requested (${reqParam2})`, at);
    seen.add(index);
    if (specification !== SPDM_MEASUREMENT_SPEC_DMTF) throw unsupported(`measurement block ${index} is not in the DMTF measurement format`);
    const m = new ByteReader(record.bytesView(size), 'DMTF measurement');
    const valueType = m.u8();
    const value = m.take(m.u16le());
    m.end();
    blocks.push({ index, specification, valueType: valueType & 0x7f, rawBitStream: (valueType & 0x80) !== 0, value });
  }
  record.end();
  const nonce = r.take(SPDM_NONCE_SIZE);
  const opaqueLength = r.u16le();
  if (opaqueLength > MAX_SPDM_OPAQUE_DATA) throw new ParseError('ERR_INPUT_TOO_LARGE', `SPDM opaque data is over ${MAX_SPDM_OPAQUE_DATA} bytes`, { detail: { size: opaqueLength } });
  const opaqueData = r.take(opaqueLength);
  if (r.remaining !== signatureSize) {
    throw malformed(`${r.remaining} bytes follow the opaque data where a ${signatureSize}-byte signature belongs`, r.offset);
  }
  const signedEnd = r.offset;
  const signature = r.take(signatureSize);
  return {
    request,
    response: { version, param1, param2, numberOfBlocks, blocks, nonce, opaqueData, signature, raw: bytes.slice(respStart) },
    signedBytes: bytes.slice(0, signedEnd),
  };
}

function malformed(what: string, offset: number): ParseError {
  return new ParseError('ERR_INPUT_MALFORMED', `SPDM: ${what}`, { detail: { offset } });
}

function unsupported(what: string): ParseError {
  return new ParseError('ERR_INPUT_UNSUPPORTED', `SPDM: ${what}`);
}
