import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { toHex, utf8 } from '@custody/core';
import { rfc6962, type TreeHasher } from '../merkle/hasher.js';
import { proveConsistency, proveInclusion } from '../merkle/proof.js';
import { MemoryTree, treeRoot } from '../merkle/tree.js';
import { integrate } from './integrate.js';
import { TILE_WIDTH, tilePath, type TileId } from './paths.js';
import { HashTile, TileCache, TileHashSource, buildTileTree, type TileReader } from './tile-source.js';

const hex = (hs: readonly Uint8Array[]) => hs.map(toHex);

/** A log grown by integrate() in uneven batches, keeping every tile ever written (old partial tiles too). */
interface Fixture {
  mem: MemoryTree;
  files: Map<string, Uint8Array>;
  sizes: number[];
  reads: Map<string, number>;
  reader: TileReader;
}

async function growLog(batches: readonly number[]): Promise<Fixture> {
  const mem = new MemoryTree();
  const files = new Map<string, Uint8Array>();
  const reads = new Map<string, number>();
  const reader: TileReader = (t) => {
    const p = tilePath(t);
    reads.set(p, (reads.get(p) ?? 0) + 1);
    const b = files.get(p);
    return b ? Promise.resolve(b) : Promise.reject(new Error('missing ' + p));
  };
  const sizes: number[] = [];
  let size = 0;
  for (const n of batches) {
    const entries = Array.from({ length: n }, (_, i) => utf8(`entry ${size + i}`));
    for (const e of entries) mem.appendEntry(e);
    const r = await integrate({ oldSize: size, readTile: reader, entries });
    for (const w of r.tiles) files.set(tilePath(w.tile), w.data);
    size = r.size;
    sizes.push(size);
  }
  reads.clear();
  return { mem, files, sizes, reads, reader };
}

describe('HashTile', () => {
  it('computes every in-tile subtree like buildTileTree, for every width', () => {
    const data = new Uint8Array(TILE_WIDTH * 32).map((_, i) => (i * 131 + 7) & 0xff);
    for (const width of [1, 2, 3, 17, 128, 200, 255, 256]) {
      const tile = new HashTile({ level: 0, index: 4, width }, data.subarray(0, width * 32));
      const tree = buildTileTree(data.subarray(0, width * 32), width);
      for (let h = 0; h < 8; h++) {
        for (let j = 0; (j + 1) << h <= width; j++) expect(toHex(tile.node(h, j)), `${width} ${h} ${j}`).toBe(toHex(tree[h]![j]!));
        // A subtree that reaches past the tile's width is not in this tree.
        expect(() => tile.node(h, width >> h)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_TILE' }) as Error);
      }
    }
  });

  it('copies its input and hands out copies', () => {
    const data = new Uint8Array(4 * 32).fill(9);
    const tile = new HashTile({ level: 1, index: 0, width: 4 }, data);
    const before = toHex(tile.node(2, 0));
    data.fill(1);
    tile.node(0, 0).fill(2);
    tile.node(1, 0).fill(3);
    expect(toHex(tile.node(2, 0))).toBe(before);
    expect(toHex(tile.node(0, 3))).toBe('09'.repeat(32));
  });

  it('rejects tiles of the wrong length and entry bundles', () => {
    expect(() => new HashTile({ level: 0, index: 0, width: 3 }, new Uint8Array(95))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_TILE' }) as Error);
    expect(() => new HashTile({ level: 'entries', index: 0, width: 1 }, new Uint8Array(32))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_TILE' }) as Error);
    expect(() => new HashTile({ level: 0, index: 0, width: 257 }, new Uint8Array(257 * 32))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_TILE' }) as Error);
  });
});

describe('TileCache: proofs equal uncached proofs', () => {
  let f: Fixture;
  // Past 65,536 leaves, so level-2 tiles exist; uneven batches leave many partial tiles behind.
  beforeAll(async () => {
    f = await growLog([1, 4, 250, 3, 700, 1, 4000, 60000, 300, 17, 511, 512, 1]);
  }, 60_000);

  it('for random published sizes and indexes, with a cache small enough to evict', async () => {
    const cache = new TileCache({ maxBytes: 12 * 17_000 });
    await fc.assert(
      fc.asyncProperty(fc.nat(f.sizes.length - 1), fc.nat(), async (si, n) => {
        const size = f.sizes[si]!;
        const index = n % size;
        const cached = await proveInclusion(new TileHashSource(f.reader, size, rfc6962, cache), index, size);
        const uncached = await proveInclusion(new TileHashSource(f.reader, size), index, size);
        expect(hex(cached)).toEqual(hex(uncached));
        expect(hex(cached)).toEqual(hex(await proveInclusion(f.mem, index, size)));
        expect(cache.bytes).toBeLessThanOrEqual(cache.maxBytes);
      }),
      { numRuns: 300 },
    );
    expect(cache.stats.hits).toBeGreaterThan(0);
    expect(cache.stats.evictions).toBeGreaterThan(0);
  });

  it('for random consistency proofs between any old size and a published size', async () => {
    const cache = new TileCache({ maxTiles: 16 });
    await fc.assert(
      fc.asyncProperty(fc.nat(f.sizes.length - 1), fc.nat(), async (si, n) => {
        const size = f.sizes[si]!;
        const old = n % (size + 1);
        const cached = await proveConsistency(new TileHashSource(f.reader, size, rfc6962, cache), old, size);
        expect(hex(cached)).toEqual(hex(await proveConsistency(new TileHashSource(f.reader, size), old, size)));
        expect(hex(cached)).toEqual(hex(await proveConsistency(f.mem, old, size)));
        expect(cache.size).toBeLessThanOrEqual(16);
      }),
      { numRuns: 300 },
    );
  });

  it('gives every published root from one shared cache, in any order', async () => {
    const cache = new TileCache();
    for (const size of [...f.sizes].reverse().concat(f.sizes)) {
      expect(toHex(await treeRoot(new TileHashSource(f.reader, size, rfc6962, cache), size))).toBe(toHex(await f.mem.root(size)));
    }
  });
});

describe('TileCache: partial tiles', () => {
  it('never serves a narrower or wider partial tile to a tree of another size', async () => {
    const f = await growLog([5, 4, 300]);
    const [s5, s9, s309] = f.sizes as [number, number, number];
    const cache = new TileCache();
    // Size 5 caches tile 0/0 at width 5; size 9 needs width 9 and must read it, not reuse width 5.
    expect(hex(await proveInclusion(new TileHashSource(f.reader, s5, rfc6962, cache), 4, s5))).toEqual(hex(await proveInclusion(f.mem, 4, s5)));
    expect(f.reads.get('tile/0/000.p/5')).toBe(1);
    expect(hex(await proveInclusion(new TileHashSource(f.reader, s9, rfc6962, cache), 4, s9))).toEqual(hex(await proveInclusion(f.mem, 4, s9)));
    expect(f.reads.get('tile/0/000.p/9')).toBe(1);
    expect(hex(await proveInclusion(new TileHashSource(f.reader, s309, rfc6962, cache), 4, s309))).toEqual(hex(await proveInclusion(f.mem, 4, s309)));
    expect(f.reads.get('tile/0/000')).toBe(1);
    // Going back to the smaller trees serves their own (cached) widths, not the full tile.
    for (const s of [s9, s5]) expect(hex(await proveInclusion(new TileHashSource(f.reader, s, rfc6962, cache), 3, s))).toEqual(hex(await proveInclusion(f.mem, 3, s)));
    expect(f.reads.get('tile/0/000.p/5')).toBe(1);
    expect(f.reads.get('tile/0/000.p/9')).toBe(1);
    expect(cache.get({ level: 0, index: 0, width: 6 })).toBeUndefined();
    expect(cache.get({ level: 0, index: 0, width: 9 })?.width).toBe(9);
  });

  it('keeps serving the old size exactly while the log grows one entry at a time', async () => {
    const f = await growLog(Array.from({ length: 40 }, () => 7));
    const cache = new TileCache({ maxTiles: 3 });
    for (let k = 0; k < f.sizes.length; k++) {
      const size = f.sizes[k]!;
      for (const s of [size, f.sizes[Math.max(0, k - 1)]!, f.sizes[Math.floor(k / 2)]!]) {
        const src = new TileHashSource(f.reader, s, rfc6962, cache);
        expect(toHex(await treeRoot(src, s))).toBe(toHex(await f.mem.root(s)));
        expect(hex(await proveInclusion(src, s - 1, s))).toEqual(hex(await proveInclusion(f.mem, s - 1, s)));
      }
    }
  });

  it('primed tiles are served only at their own width', async () => {
    const f = await growLog([300]);
    const cache = new TileCache();
    cache.prime({ level: 0, index: 1, width: 44 }, f.files.get('tile/0/001.p/44')!);
    cache.prime({ level: 'entries', index: 1, width: 44 }, new Uint8Array(10));
    expect(cache.size).toBe(1);
    expect(hex(await proveInclusion(new TileHashSource(f.reader, 300, rfc6962, cache), 299, 300))).toEqual(hex(await proveInclusion(f.mem, 299, 300)));
    expect(f.reads.get('tile/0/001.p/44')).toBeUndefined();
    // The other hashes come from the level-1 tile, which was not primed.
    expect(f.reads.get('tile/1/000.p/1')).toBe(1);
  });
});

describe('TileCache: bounds and sharing', () => {
  const tile = (index: number, width = TILE_WIDTH): HashTile => new HashTile({ level: 0, index, width }, new Uint8Array(width * 32).fill(index & 0xff));

  it('keeps its charged memory under maxBytes, evicting the least recently used', () => {
    const one = tile(0).bytes;
    expect(one).toBeGreaterThan(TILE_WIDTH * 32 * 2 - 1);
    const cache = new TileCache({ maxBytes: one * 10 + 100 });
    for (let i = 0; i < 10; i++) cache.add(tile(i));
    expect(cache.size).toBe(10);
    expect(cache.get({ level: 0, index: 0, width: TILE_WIDTH })).toBeDefined(); // now most recent
    for (let i = 10; i < 100; i++) {
      cache.add(tile(i));
      expect(cache.bytes).toBeLessThanOrEqual(cache.maxBytes);
    }
    expect(cache.size).toBe(10);
    expect(cache.get({ level: 0, index: 1, width: TILE_WIDTH })).toBeUndefined();
    expect(cache.get({ level: 0, index: 99, width: TILE_WIDTH })).toBeDefined();
    expect(cache.stats.evictions).toBe(90);
    // Many small partial tiles fit where few full ones do; the bound is bytes, not entries.
    for (let i = 0; i < 200; i++) cache.add(tile(1000 + i, 1));
    expect(cache.bytes).toBeLessThanOrEqual(cache.maxBytes);
    expect(cache.size).toBeGreaterThan(10);
    // Replacing an entry does not double-charge it; clear() releases everything.
    const before = cache.bytes;
    cache.add(tile(1199, 1));
    expect(cache.bytes).toBe(before);
    cache.clear();
    expect(cache.bytes).toBe(0);
    expect(cache.size).toBe(0);
  });

  it('honours a tile-count limit and refuses tiles larger than the whole budget', () => {
    const counted = new TileCache(3);
    for (let i = 0; i < 8; i++) counted.add(tile(i));
    expect(counted.size).toBe(3);
    const tiny = new TileCache({ maxBytes: 1000 });
    tiny.add(tile(0));
    expect(tiny.size).toBe(0);
    expect(tiny.bytes).toBe(0);
    expect(() => new TileCache({ maxBytes: -1 })).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
  });

  it('bounds memory while proving across a large log', async () => {
    const f = await growLog([256 * 64 + 5]);
    const cache = new TileCache({ maxBytes: 8 * tile(0).bytes });
    for (let i = 0; i < f.mem.size; i += 97) {
      await proveInclusion(new TileHashSource(f.reader, f.mem.size, rfc6962, cache), i, f.mem.size);
      expect(cache.bytes).toBeLessThanOrEqual(cache.maxBytes);
    }
    expect(cache.stats.evictions).toBeGreaterThan(40);
  });

  it('does not serve subtrees computed by another hasher', async () => {
    const f = await growLog([600]);
    const counting: TreeHasher = { ...rfc6962, node: (l, r) => rfc6962.node(l, r) };
    const cache = new TileCache();
    await proveInclusion(new TileHashSource(f.reader, 600, counting, cache), 10, 600, counting);
    const reads = f.reads.get('tile/0/000');
    await proveInclusion(new TileHashSource(f.reader, 600, rfc6962, cache), 10, 600);
    expect(f.reads.get('tile/0/000')).toBe(reads! + 1);
    expect(cache.get({ level: 0, index: 0, width: TILE_WIDTH }, rfc6962)).toBeDefined();
  });

  it('reads a tile once for concurrent proofs that miss it, and not at all once cached', async () => {
    const f = await growLog([1000]);
    let gate!: () => void;
    const opened = new Promise<void>((r) => (gate = r));
    const slow: TileReader = async (t) => {
      await opened;
      return f.reader(t);
    };
    const cache = new TileCache();
    const proofs = Promise.all(Array.from({ length: 5 }, (_, i) => proveInclusion(new TileHashSource(slow, 1000, rfc6962, cache), 100 + i, 1000)));
    gate();
    const got = await proofs;
    for (let i = 0; i < 5; i++) expect(hex(got[i]!)).toEqual(hex(await proveInclusion(f.mem, 100 + i, 1000)));
    expect(f.reads.get('tile/0/000')).toBe(1);
    const throwing: TileReader = () => Promise.reject(new Error('must not read'));
    expect(hex(await proveInclusion(new TileHashSource(throwing, 1000, rfc6962, cache), 101, 1000))).toEqual(hex(got[1]!));
  });

  it('does not cache a failed read, and retries it next time', async () => {
    const f = await growLog([300]);
    let fail = true;
    const flaky: TileReader = (t: TileId): Promise<Uint8Array> => (fail ? Promise.reject(new Error('disk')) : f.reader(t));
    const cache = new TileCache();
    await expect(proveInclusion(new TileHashSource(flaky, 300, rfc6962, cache), 1, 300)).rejects.toThrow('disk');
    fail = false;
    expect(hex(await proveInclusion(new TileHashSource(flaky, 300, rfc6962, cache), 1, 300))).toEqual(hex(await proveInclusion(f.mem, 1, 300)));
  });

  it('rejects a tile of the wrong length with a typed error and caches nothing', async () => {
    const f = await growLog([300]);
    const cache = new TileCache();
    const short: TileReader = async (t) => (await f.reader(t)).slice(1);
    await expect(proveInclusion(new TileHashSource(short, 300, rfc6962, cache), 5, 300)).rejects.toMatchObject({ code: 'ERR_TLOG_TILE' });
    expect(cache.size).toBe(0);
  });

  it('remembers right-edge range hashes per tree size and hasher, a bounded number of them', async () => {
    const f = await growLog([700, 5]);
    const cache = new TileCache();
    const src = new TileHashSource(f.reader, 705, rfc6962, cache);
    // Leaf 0's top sibling is [512, 705), not a perfect subtree: computed once, then remembered.
    const first = await proveInclusion(src, 0, 705);
    const edge = cache.rangeHash(705, 512, 705, rfc6962);
    expect(edge && toHex(edge)).toBe(toHex(first[first.length - 1]!));
    expect(cache.rangeHash(700, 512, 705, rfc6962)).toBeUndefined();
    expect(cache.rangeHash(705, 512, 705, { ...rfc6962 })).toBeUndefined();
    // A proof at the older size computes its own edge [512, 700) from its own tiles.
    expect(hex(await proveInclusion(new TileHashSource(f.reader, 700, rfc6962, cache), 0, 700))).toEqual(hex(await proveInclusion(f.mem, 0, 700)));
    expect(toHex(cache.rangeHash(700, 512, 700, rfc6962)!)).toBe(toHex((await proveInclusion(f.mem, 0, 700)).at(-1)!));
    // Served copies cannot change the remembered hash.
    (await proveInclusion(src, 1, 705)).at(-1)!.fill(0);
    expect(hex(await proveInclusion(src, 0, 705))).toEqual(hex(first));
    for (let i = 0; i < TileCache.MAX_RANGES + 10; i++) cache.setRangeHash(10_000 + i, 0, 3, rfc6962, new Uint8Array(32));
    expect(cache.rangeHash(705, 512, 705, rfc6962)).toBeUndefined();
    expect(cache.rangeHash(10_000 + TileCache.MAX_RANGES + 9, 0, 3, rfc6962)).toBeDefined();
  });
});
