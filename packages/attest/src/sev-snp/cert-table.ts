import { ByteReader, ParseError, assertMaxSize, concatBytes, isAllZero, toHex, type Bytes } from '@custody/core';

/**
 * The GUID-keyed certificate table an extended guest request returns (GHCB specification 56421,
 * "cert_table"), which Linux configfs-tsm exposes as `auxblob`: entries of a 16-byte GUID, a u32
 * offset and a u32 length (little-endian), ended by an all-zero entry, followed by the data the
 * offsets point into (offsets count from the start of the table).
 *
 * GUIDs are stored in the byte order of their canonical string (as the hosts that fill the table,
 * go-sev-guest and virtee/snphost, write them).
 */
export const SNP_CERT_GUIDS = {
  vcek: '63da758d-e664-4564-adc5-f4b93be8accd',
  vlek: 'a8074bc2-a25a-483e-aae6-39c045a0b8a1',
  /** The ASK, or the ASVK when the table carries a VLEK. */
  ask: '4ab7b379-bbac-4fe4-a02f-05aef327c782',
  ark: 'c0b406a4-a803-4952-9743-3fb6014cd0ae',
  /** A CRL from AMD KDS (virtee/sev `CertType::CRL`). */
  crl: '92f81bc3-5811-4d3d-97ff-d19f88dc67ea',
} as const;

export type SnpCertKind = keyof typeof SNP_CERT_GUIDS | 'other';

export interface SnpCertTableEntry {
  guid: string;
  kind: SnpCertKind;
  data: Bytes;
}

const ENTRY_SIZE = 24;
/** Bounds for untrusted tables: a real one holds 3 or 4 certificates of under 2 KiB each. */
export const MAX_CERT_TABLE_SIZE = 512 * 1024;
export const MAX_CERT_TABLE_ENTRIES = 64;

const KIND_BY_GUID = new Map<string, SnpCertKind>(Object.entries(SNP_CERT_GUIDS).map(([k, g]) => [g, k as SnpCertKind]));

export function guidToString(b: Uint8Array): string {
  const h = toHex(b);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20, 32)}`;
}

export function guidToBytes(guid: string): Bytes {
  const h = guid.replace(/-/g, '');
  if (!/^[0-9a-fA-F]{32}$/.test(h)) throw new ParseError('ERR_INPUT_MALFORMED', 'not a GUID');
  const out = new Uint8Array(16);
  for (let i = 0; i < 16; i++) out[i] = parseInt(h.slice(i * 2, i * 2 + 2), 16);
  return out;
}

/** Parses an SNP certificate table (configfs-tsm `auxblob`). An empty blob is an empty table. */
export function parseSnpCertTable(blob: Uint8Array): SnpCertTableEntry[] {
  assertMaxSize(blob, MAX_CERT_TABLE_SIZE, 'SNP certificate table');
  if (blob.length === 0) return [];
  const r = new ByteReader(blob, 'SNP certificate table');
  const headers: { guid: string; offset: number; length: number }[] = [];
  for (;;) {
    const guidBytes = r.bytesView(16);
    const offset = r.u32le();
    const length = r.u32le();
    if (isAllZero(guidBytes)) {
      if (offset !== 0 || length !== 0) {
        throw new ParseError('ERR_INPUT_MALFORMED', 'SNP certificate table terminator is not all zero', { detail: { entry: headers.length } });
      }
      break;
    }
    if (headers.length >= MAX_CERT_TABLE_ENTRIES) {
      throw new ParseError('ERR_INPUT_TOO_LARGE', `SNP certificate table has more than ${MAX_CERT_TABLE_ENTRIES} entries`);
    }
    headers.push({ guid: guidToString(guidBytes), offset, length });
  }
  const headerEnd = r.offset;
  const seen = new Set<string>();
  const entries = headers.map((h, i) => {
    if (seen.has(h.guid)) throw new ParseError('ERR_INPUT_MALFORMED', `SNP certificate table lists ${h.guid} twice`, { detail: { entry: i } });
    seen.add(h.guid);
    if (h.length === 0 || h.offset < headerEnd || h.offset + h.length > blob.length) {
      throw new ParseError('ERR_INPUT_MALFORMED', 'SNP certificate table entry points outside the data area', {
        detail: { entry: i, offset: h.offset, length: h.length, size: blob.length },
      });
    }
    return { guid: h.guid, kind: KIND_BY_GUID.get(h.guid) ?? 'other', data: blob.slice(h.offset, h.offset + h.length) };
  });
  // Each entry owns its bytes: two GUIDs pointing at the same or overlapping bytes (a VCEK that
  // is also the ASK) is malformed, not two certificates.
  const spans = headers.map((h, i) => ({ i, start: h.offset, end: h.offset + h.length })).sort((a, b) => a.start - b.start);
  for (let k = 1; k < spans.length; k++) {
    if (spans[k]!.start < spans[k - 1]!.end) throw new ParseError('ERR_INPUT_MALFORMED', 'SNP certificate table entries overlap', { detail: { entry: spans[k]!.i, other: spans[k - 1]!.i } });
  }
  return entries;
}

/** Builds an SNP certificate table (the layout a host writes and configfs-tsm returns). */
export function encodeSnpCertTable(entries: { guid: string; data: Uint8Array }[]): Bytes {
  if (entries.length === 0) return new Uint8Array(0);
  const headerSize = (entries.length + 1) * ENTRY_SIZE;
  const header = new Uint8Array(headerSize);
  const view = new DataView(header.buffer);
  let offset = headerSize;
  entries.forEach((e, i) => {
    header.set(guidToBytes(e.guid), i * ENTRY_SIZE);
    view.setUint32(i * ENTRY_SIZE + 16, offset, true);
    view.setUint32(i * ENTRY_SIZE + 20, e.data.length, true);
    offset += e.data.length;
  });
  return concatBytes(header, ...entries.map((e) => e.data));
}
