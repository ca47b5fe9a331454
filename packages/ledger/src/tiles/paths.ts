import { ParseError } from '@custody/core';

/** C2SP tlog-tiles: every tile is 2^8 hashes wide. */
export const TILE_HEIGHT = 8;
export const TILE_WIDTH = 256;
export const MAX_TILE_LEVEL = 63;

/**
 * A tile: level L, index N, width W (1..256; 256 is a full tile). Level "entries" addresses the
 * entry bundle that matches level-0 tile N.
 */
export interface TileId {
  level: number | 'entries';
  index: number;
  width: number;
}

function bad(what: string, path?: string): ParseError {
  return new ParseError('ERR_TLOG_TILE', what, path === undefined ? undefined : { detail: { path: path.slice(0, 200) } });
}

/** Encodes N as zero-padded 3-digit path elements, all but the last prefixed with x: 1234067 -> x001/x234/067. */
export function formatTileIndex(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw bad('tile index must be a non-negative safe integer');
  const parts: string[] = [];
  do {
    parts.unshift(String(n % 1000).padStart(3, '0'));
    n = Math.floor(n / 1000);
  } while (n > 0);
  return parts.map((p, i) => (i < parts.length - 1 ? 'x' + p : p)).join('/');
}

/** Path of a tile relative to the log prefix, e.g. `tile/0/x001/234.p/17` or `tile/entries/000`. */
export function tilePath(t: TileId): string {
  if (t.level !== 'entries' && (!Number.isInteger(t.level) || t.level < 0 || t.level > MAX_TILE_LEVEL)) throw bad('tile level out of range');
  if (!Number.isInteger(t.width) || t.width < 1 || t.width > TILE_WIDTH) throw bad('tile width out of range');
  const w = t.width === TILE_WIDTH ? '' : `.p/${t.width}`;
  return `tile/${t.level}/${formatTileIndex(t.index)}${w}`;
}

const DEC = /^(0|[1-9][0-9]*)$/;

/** Parses a tile or entry-bundle path (without the log prefix). Strict: exactly one spelling per tile. */
export function parseTilePath(path: string): TileId {
  if (path.length > 200) throw bad('tile path is too long');
  const parts = path.split('/');
  if (parts.length < 3 || parts[0] !== 'tile') throw bad('not a tile path', path);
  const levelStr = parts[1]!;
  let level: number | 'entries';
  if (levelStr === 'entries') level = 'entries';
  else {
    if (!DEC.test(levelStr)) throw bad('tile level is not a decimal', path);
    level = Number(levelStr);
    if (level > MAX_TILE_LEVEL) throw bad('tile level out of range', path);
  }
  let rest = parts.slice(2);
  let width = TILE_WIDTH;
  if (rest.length >= 2 && rest[rest.length - 2]!.endsWith('.p')) {
    const w = rest[rest.length - 1]!;
    if (!DEC.test(w)) throw bad('partial tile width is not a decimal', path);
    width = Number(w);
    if (width < 1 || width >= TILE_WIDTH) throw bad('partial tile width out of range', path);
    rest = [...rest.slice(0, -2), rest[rest.length - 2]!.slice(0, -2)];
  }
  let index = 0;
  for (let i = 0; i < rest.length; i++) {
    const el = rest[i]!;
    const last = i === rest.length - 1;
    const digits = last ? el : el.startsWith('x') ? el.slice(1) : '';
    if (!/^[0-9]{3}$/.test(digits)) throw bad('tile index element must be 3 digits (x-prefixed except the last)', path);
    // Leading zero elements would give two spellings of one index.
    if (i === 0 && !last && digits === '000') throw bad('tile index has a leading zero element', path);
    index = index * 1000 + Number(digits);
    if (!Number.isSafeInteger(index)) throw bad('tile index too large', path);
  }
  return { level, index, width };
}

/** Width of tile (level, index) in the tree of `size` leaves, or 0 if the tree does not reach it. */
export function tileWidthAt(level: number, index: number, size: number): number {
  const hashesAtLevel = Math.floor(size / TILE_WIDTH ** level);
  const w = hashesAtLevel - index * TILE_WIDTH;
  return w <= 0 ? 0 : Math.min(TILE_WIDTH, w);
}

/** The tiles (hash tiles at every level, plus entry bundles) that exist for a tree of `size` leaves. */
export function tilesForSize(size: number): TileId[] {
  const out: TileId[] = [];
  for (let level = 0; level <= MAX_TILE_LEVEL; level++) {
    const n = Math.floor(size / TILE_WIDTH ** level);
    if (n === 0) break;
    for (let index = 0; index * TILE_WIDTH < n; index++) out.push({ level, index, width: tileWidthAt(level, index, size) });
  }
  const leaves = size;
  for (let index = 0; index * TILE_WIDTH < leaves; index++) out.push({ level: 'entries', index, width: tileWidthAt(0, index, size) });
  return out;
}
