import { describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import { encodeEntryBundle, parseEntryBundle } from './bundle.js';
import { formatTileIndex, parseTilePath, tilePath, tilesForSize, tileWidthAt } from './paths.js';
import { integrate } from './integrate.js';
import { TileCache, TileHashSource, type TileReader } from './tile-source.js';
import { MemoryTree } from '../merkle/tree.js';
import { proveConsistency, proveInclusion } from '../merkle/proof.js';
import { toHex } from '@custody/core';

describe('tile paths (C2SP tlog-tiles)', () => {
  it('encodes indexes as x-prefixed 3-digit elements', () => {
    expect(formatTileIndex(0)).toBe('000');
    expect(formatTileIndex(999)).toBe('999');
    expect(formatTileIndex(1000)).toBe('x001/000');
    expect(formatTileIndex(1234067)).toBe('x001/x234/067');
    expect(tilePath({ level: 0, index: 1234067, width: 256 })).toBe('tile/0/x001/x234/067');
    expect(tilePath({ level: 2, index: 3, width: 17 })).toBe('tile/2/003.p/17');
    expect(tilePath({ level: 'entries', index: 1000, width: 1 })).toBe('tile/entries/x001/000.p/1');
  });

  it('parses exactly one spelling per tile', () => {
    expect(parseTilePath('tile/0/x001/x234/067')).toEqual({ level: 0, index: 1234067, width: 256 });
    expect(parseTilePath('tile/entries/x001/000.p/1')).toEqual({ level: 'entries', index: 1000, width: 1 });
    const bad = ['tile/0/1', 'tile/0/001/002', 'tile/0/x000/001', 'tile/00/001', 'tile/64/000', 'tile/0/000.p/0', 'tile/0/000.p/256', 'tile/0/000.p/01', 'tiles/0/000', 'tile/0/x1/000', 'tile/-1/000', 'tile/0/000.p'];
    for (const b of bad) expect(() => parseTilePath(b), b).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_TILE' }) as Error);
  });

  it('gives the spec example of a 70,000-entry tree', () => {
    const hashTiles = tilesForSize(70000).filter((t) => t.level !== 'entries');
    expect(hashTiles.filter((t) => t.level === 0 && t.width === 256)).toHaveLength(273);
    expect(hashTiles.find((t) => t.level === 0 && t.width < 256)?.width).toBe(112);
    expect(hashTiles.filter((t) => t.level === 1).map((t) => t.width)).toEqual([256, 17]);
    expect(hashTiles.filter((t) => t.level === 2).map((t) => t.width)).toEqual([1]);
    expect(tilesForSize(256).filter((t) => t.level !== 'entries')).toEqual([
      { level: 0, index: 0, width: 256 },
      { level: 1, index: 0, width: 1 },
    ]);
    expect(tileWidthAt(0, 5, 1000)).toBe(0);
  });
});

describe('entry bundles', () => {
  it('round-trips uint16 length-prefixed entries', () => {
    const entries = [utf8(''), utf8('a'), new Uint8Array(65535).fill(7)];
    const b = encodeEntryBundle(entries);
    expect(b[0]).toBe(0);
    expect(b[1]).toBe(0);
    expect(parseEntryBundle(b, 3)).toEqual(entries);
  });

  it('rejects oversized entries, truncation and wrong counts', () => {
    expect(() => encodeEntryBundle([new Uint8Array(65536)])).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_ENTRY' }) as Error);
    expect(() => parseEntryBundle(new Uint8Array([0, 5, 1, 2]))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_ENTRY' }) as Error);
    expect(() => parseEntryBundle(new Uint8Array([0]))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_ENTRY' }) as Error);
    expect(() => parseEntryBundle(encodeEntryBundle([utf8('x')]), 2)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_ENTRY' }) as Error);
    expect(() => parseEntryBundle(new Uint8Array(257 * 2))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_ENTRY' }) as Error);
  });
});

describe('tile integration and tile-based proofs', () => {
  it('matches an in-memory tree across tile boundaries at levels 0, 1 and 2', async () => {
    const n = 256 * 256 + 300;
    const entries = Array.from({ length: n }, (_, i) => utf8(`e${i}`));
    const mem = new MemoryTree();
    for (const e of entries) mem.appendEntry(e);
    const files = new Map<string, Uint8Array>();
    const reader: TileReader = (t) => {
      const b = files.get(tilePath(t));
      return b ? Promise.resolve(b) : Promise.reject(new Error('missing ' + tilePath(t)));
    };
    let size = 0;
    for (const batch of [255, 2, 65000, 279, 1, 300]) {
      const r = await integrate({ oldSize: size, readTile: reader, entries: entries.slice(size, size + batch) });
      for (const w of r.tiles) files.set(tilePath(w.tile), w.data);
      size = r.size;
      expect(toHex(r.root), `root at ${size}`).toBe(toHex(await mem.root(size)));
    }
    expect(size).toBe(n);
    const cache = new TileCache(8);
    for (const [index, sz] of [
      [0, n],
      [65535, n],
      [65536, n],
      [n - 1, n],
      [12345, 65536],
      [200, 257],
    ] as const) {
      const src = new TileHashSource(reader, sz, undefined, cache);
      expect((await proveInclusion(src, index, sz)).map(toHex)).toEqual((await proveInclusion(mem, index, sz)).map(toHex));
    }
    for (const [a, b] of [
      [1, n],
      [256, n],
      [65536, n],
      [257, 65537],
      [65535, 65536],
    ] as const) {
      const src = new TileHashSource(reader, b);
      expect((await proveConsistency(src, a, b)).map(toHex)).toEqual((await proveConsistency(mem, a, b)).map(toHex));
    }
    // A tile of the wrong length is a typed error.
    const short: TileReader = async (t) => (await reader(t)).slice(1);
    await expect(proveInclusion(new TileHashSource(short, n), 5, n)).rejects.toMatchObject({ code: 'ERR_TLOG_TILE' });
  });
});
