import { ByteReader, ParseError, assertMaxSize, type Bytes } from '@custody/core';
import { TILE_WIDTH } from './paths.js';

/** Entries are length-prefixed with a big-endian uint16, so one entry is at most 65535 bytes. */
export const MAX_ENTRY_SIZE = 0xffff;
/** A bundle of 256 maximal entries. */
export const MAX_BUNDLE_SIZE = TILE_WIDTH * (2 + MAX_ENTRY_SIZE);

/** Encodes a C2SP tlog-tiles entry bundle: each entry as uint16 big-endian length || bytes. */
export function encodeEntryBundle(entries: readonly Uint8Array[]): Bytes {
  if (entries.length > TILE_WIDTH) throw new ParseError('ERR_TLOG_ENTRY', 'an entry bundle holds at most 256 entries');
  let n = 0;
  for (const e of entries) {
    if (e.length > MAX_ENTRY_SIZE) throw new ParseError('ERR_TLOG_ENTRY', 'entry is larger than 65535 bytes', { detail: { size: e.length } });
    n += 2 + e.length;
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const e of entries) {
    out[o] = e.length >>> 8;
    out[o + 1] = e.length & 0xff;
    out.set(e, o + 2);
    o += 2 + e.length;
  }
  return out;
}

/** Parses an entry bundle. With `width`, the bundle must hold exactly that many entries. */
export function parseEntryBundle(bundle: Uint8Array, width?: number): Bytes[] {
  assertMaxSize(bundle, MAX_BUNDLE_SIZE, 'entry bundle');
  const r = new ByteReader(bundle, 'entry bundle');
  const out: Bytes[] = [];
  try {
    while (r.remaining > 0) {
      if (out.length === TILE_WIDTH) throw new ParseError('ERR_TLOG_ENTRY', 'entry bundle has more than 256 entries');
      const len = r.u16be();
      out.push(r.take(len));
    }
  } catch (e) {
    if (e instanceof ParseError && e.code === 'ERR_INPUT_TRUNCATED') throw new ParseError('ERR_TLOG_ENTRY', 'entry bundle is truncated', { cause: e });
    throw e;
  }
  if (width !== undefined && out.length !== width) {
    throw new ParseError('ERR_TLOG_ENTRY', 'entry bundle does not hold the expected number of entries', { detail: { expected: width, got: out.length } });
  }
  return out;
}
