import { VerificationError, type Bytes } from '@custody/core';
import { HASH_SIZE, rfc6962, type TreeHasher } from '../merkle/hasher.js';
import type { HashSource, NodeId, RangeHashMemo } from '../merkle/tree.js';
import { TILE_HEIGHT, TILE_WIDTH, tileWidthAt, type TileId } from './paths.js';

/**
 * Reads one tile's bytes (exactly width * 32 bytes for hash tiles). Over HTTP this is a GET of
 * `<prefix>/<tilePath(tile)>`; on disk a file read. A reader MAY serve a partial tile from the
 * full tile's prefix (the spec lets clients fall back to the full tile).
 */
export type TileReader = (tile: TileId) => Promise<Uint8Array>;

/** Every perfect subtree inside one tile: levels[h][j] is the hash of tile hashes [j*2^h, (j+1)*2^h). */
export type TileTree = Bytes[][];

export function tileHashes(data: Uint8Array, width: number): Bytes[] {
  if (data.length !== width * HASH_SIZE) {
    throw new VerificationError('ERR_TLOG_TILE', 'tile has the wrong length for its width', { detail: { length: data.length, width } });
  }
  const out: Bytes[] = new Array<Bytes>(width);
  for (let i = 0; i < width; i++) out[i] = data.slice(i * HASH_SIZE, (i + 1) * HASH_SIZE);
  return out;
}

export function buildTileTree(data: Uint8Array, width: number, hasher: TreeHasher = rfc6962): TileTree {
  const levels: TileTree = [tileHashes(data, width)];
  for (let h = 0; levels[h]!.length >= 2; h++) {
    const below = levels[h]!;
    const up: Bytes[] = new Array<Bytes>(below.length >> 1);
    for (let j = 0; j < up.length; j++) up[j] = hasher.node(below[2 * j]!, below[2 * j + 1]!);
    levels.push(up);
  }
  return levels;
}

/** Height of the tallest subtree a proof reads inside one tile (8 would be the tile root, stored one level up). */
const MAX_HEIGHT_IN_TILE = TILE_HEIGHT - 1;
/** Bytes charged per cached tile on top of its hash buffers (objects, map entry, key string). */
const TILE_OVERHEAD_BYTES = 512;

/**
 * One hash tile, decoded once: the tile's stored hashes plus the perfect subtrees inside it,
 * computed on first use and kept. A tile at (level, index, width) never changes once written
 * (a grown tile is a different width), so its subtree hashes can be kept for as long as the
 * tile is. Only subtrees that lie wholly inside the first `width` hashes exist.
 */
export class HashTile {
  readonly tile: TileId;
  readonly hasher: TreeHasher;
  private readonly data: Uint8Array;
  /** Subtrees of heights 1..7, height by height: slot offsets[h] + j holds node (h, j). */
  private readonly interior: Uint8Array;
  private readonly computed: Uint8Array;
  private readonly offsets: number[];
  /** Memory charged to this tile in a TileCache. */
  readonly bytes: number;

  /** `data` is copied: later changes to the caller's buffer cannot reach the cache. */
  constructor(tile: TileId, data: Uint8Array, hasher: TreeHasher = rfc6962) {
    const width = tile.width;
    if (tile.level === 'entries' || !Number.isInteger(width) || width < 1 || width > TILE_WIDTH) {
      throw new VerificationError('ERR_TLOG_TILE', 'not a hash tile', { detail: { level: String(tile.level), width } });
    }
    if (data.length !== width * HASH_SIZE) {
      throw new VerificationError('ERR_TLOG_TILE', 'tile has the wrong length for its width', { detail: { length: data.length, width } });
    }
    this.tile = { level: tile.level, index: tile.index, width };
    this.hasher = hasher;
    this.data = data.slice();
    const offsets = [0, 0];
    let slots = 0;
    for (let h = 1; h <= MAX_HEIGHT_IN_TILE; h++) {
      offsets[h] = slots;
      slots += width >> h;
    }
    this.offsets = offsets;
    this.interior = new Uint8Array(slots * HASH_SIZE);
    this.computed = new Uint8Array(slots);
    this.bytes = this.data.byteLength + this.interior.byteLength + this.computed.byteLength + TILE_OVERHEAD_BYTES;
  }

  get width(): number {
    return this.tile.width;
  }

  /** A copy of the hash of tile hashes [j * 2^h, (j + 1) * 2^h), 0 <= h <= 7. */
  node(h: number, j: number): Bytes {
    if (!Number.isInteger(h) || h < 0 || h > MAX_HEIGHT_IN_TILE || !Number.isInteger(j) || j < 0 || (j + 1) * 2 ** h > this.tile.width) {
      throw new VerificationError('ERR_TLOG_TILE', 'node is outside the tile', { detail: { h, j, width: this.tile.width } });
    }
    return this.view(h, j).slice();
  }

  /** A view of node (h, j) inside this tile's buffers (never handed out: callers get copies). */
  private view(h: number, j: number): Uint8Array {
    if (h === 0) return this.data.subarray(j * HASH_SIZE, (j + 1) * HASH_SIZE);
    const slot = this.offsets[h]! + j;
    const at = slot * HASH_SIZE;
    if (this.computed[slot] === 0) {
      const hash = this.hasher.node(this.view(h - 1, 2 * j), this.view(h - 1, 2 * j + 1));
      if (hash.length !== HASH_SIZE) throw new VerificationError('ERR_TLOG_TILE', 'tree hasher returned a hash of the wrong length');
      this.interior.set(hash, at);
      this.computed[slot] = 1;
    }
    return this.interior.subarray(at, at + HASH_SIZE);
  }
}

export interface TileCacheOptions {
  /** Most memory the cached tiles may take (hash buffers plus a fixed overhead per tile). Default 64 MiB. */
  maxBytes?: number;
  /** Most tiles kept. Default: no limit beyond maxBytes. */
  maxTiles?: number;
}

function tileKey(level: number, index: number, width: number): string {
  return `${level}/${index}/${width}`;
}

/**
 * Bounded LRU of decoded hash tiles, keyed by (level, index, width). A full tile never changes;
 * a partial tile of width W is immutable too (growth writes a new, wider tile), so an entry is
 * only ever served to a tree whose tile at that position has exactly that width: the width is
 * part of the key, and a source asks for the width its own tree size implies. Entries are
 * bound to the hasher that computes their subtrees. Loads in flight are shared, so concurrent
 * proofs that miss the same tile read it once.
 */
export class TileCache {
  readonly maxBytes: number;
  readonly maxTiles: number;
  readonly stats = { hits: 0, misses: 0, evictions: 0 };
  private readonly map = new Map<string, HashTile>();
  private readonly loading = new Map<string, { hasher: TreeHasher; promise: Promise<HashTile> }>();
  /** Right-edge range hashes per tree size (`size/lo/hi`); a fixed number of entries of ~150 bytes each. */
  private readonly ranges = new Map<string, { hasher: TreeHasher; hash: Bytes }>();
  private used = 0;

  /** A number is the tile limit (kept for older callers); the byte limit then stays at its default. */
  constructor(limit: number | TileCacheOptions = {}) {
    const o: TileCacheOptions = typeof limit === 'number' ? { maxTiles: limit } : limit;
    this.maxBytes = o.maxBytes ?? 64 * 2 ** 20;
    this.maxTiles = o.maxTiles ?? Number.MAX_SAFE_INTEGER;
    if (!(this.maxBytes >= 0) || !(this.maxTiles >= 0)) throw new VerificationError('ERR_INPUT_MALFORMED', 'tile cache limits must be non-negative');
  }

  /** Tiles held. */
  get size(): number {
    return this.map.size;
  }

  /** Memory charged for the tiles held (always at most maxBytes). */
  get bytes(): number {
    return this.used;
  }

  /** The cached tile at exactly (level, index, width) computed with `hasher`, marking it recently used. Counted in `stats`. */
  get(tile: TileId, hasher: TreeHasher = rfc6962): HashTile | undefined {
    const t = this.lookup(tile, hasher);
    if (t) this.stats.hits++;
    else this.stats.misses++;
    return t;
  }

  private lookup(tile: TileId, hasher: TreeHasher): HashTile | undefined {
    if (tile.level === 'entries') return undefined;
    const key = tileKey(tile.level, tile.index, tile.width);
    const t = this.map.get(key);
    if (!t || t.hasher !== hasher) return undefined;
    this.map.delete(key);
    this.map.set(key, t);
    return t;
  }

  /** Adds a decoded tile (replacing one at the same key), then evicts least recently used tiles to the limits. */
  add(t: HashTile): void {
    const { level, index, width } = t.tile;
    const key = tileKey(level as number, index, width);
    const old = this.map.get(key);
    if (old) {
      this.map.delete(key);
      this.used -= old.bytes;
    }
    if (t.bytes > this.maxBytes || this.maxTiles === 0) return;
    this.map.set(key, t);
    this.used += t.bytes;
    while (this.used > this.maxBytes || this.map.size > this.maxTiles) {
      const [k, victim] = this.map.entries().next().value!;
      this.map.delete(k);
      this.used -= victim.bytes;
      this.stats.evictions++;
    }
  }

  /**
   * Adds tile bytes the caller knows are the stored contents at that path (the log's writer
   * after writing them), so the next proofs need not read them back.
   */
  prime(tile: TileId, data: Uint8Array, hasher: TreeHasher = rfc6962): void {
    if (tile.level === 'entries') return;
    this.add(new HashTile(tile, data, hasher));
  }

  /** The cached tile, or the result of `read` (shared by concurrent callers), which is then cached. Not counted in `stats`. */
  async load(tile: TileId, hasher: TreeHasher, read: TileReader): Promise<HashTile> {
    const hit = this.lookup(tile, hasher);
    if (hit) return hit;
    const key = tileKey(tile.level as number, tile.index, tile.width);
    const inflight = this.loading.get(key);
    if (inflight && inflight.hasher === hasher) return inflight.promise;
    const promise = read(tile).then((data) => {
      const t = new HashTile(tile, data, hasher);
      this.add(t);
      return t;
    });
    const entry = { hasher, promise };
    this.loading.set(key, entry);
    try {
      return await promise;
    } finally {
      if (this.loading.get(key) === entry) this.loading.delete(key);
    }
  }

  /** Most composite range hashes kept (each under 200 bytes with its key). */
  static readonly MAX_RANGES = 4096;

  /** The hash of leaves [lo, hi) as computed for the tree of `size` leaves with `hasher`. */
  rangeHash(size: number, lo: number, hi: number, hasher: TreeHasher): Bytes | undefined {
    const key = `${size}/${lo}/${hi}`;
    const r = this.ranges.get(key);
    if (!r || r.hasher !== hasher) return undefined;
    this.ranges.delete(key);
    this.ranges.set(key, r);
    return r.hash;
  }

  setRangeHash(size: number, lo: number, hi: number, hasher: TreeHasher, hash: Bytes): void {
    if (hash.length !== HASH_SIZE || this.maxTiles === 0 || this.maxBytes === 0) return;
    const key = `${size}/${lo}/${hi}`;
    this.ranges.delete(key);
    this.ranges.set(key, { hasher, hash: hash.slice() });
    if (this.ranges.size > TileCache.MAX_RANGES) this.ranges.delete(this.ranges.keys().next().value!);
  }

  clear(): void {
    this.map.clear();
    this.ranges.clear();
    this.used = 0;
  }
}

interface NodePlan {
  tile: TileId;
  key: string;
  h: number;
  j: number;
}

/**
 * Proof hashes from C2SP tiles for a tree of `size` leaves. Reads only the tiles that tree
 * needs (partial tiles of that size), each once per call, all of a call's misses in parallel;
 * with a TileCache, tiles and the subtree hashes computed from them are kept across calls.
 * Tiles are not trusted here: callers verify the resulting proof or root against a signed
 * checkpoint.
 */
export class TileHashSource implements HashSource {
  readonly rangeMemo?: RangeHashMemo;

  constructor(
    private readonly readTile: TileReader,
    readonly size: number,
    private readonly hasher: TreeHasher = rfc6962,
    private readonly cache?: TileCache,
  ) {
    // Range hashes are kept per tree size: a size's right edge comes from its own partial tiles.
    if (cache) {
      this.rangeMemo = {
        get: (lo, hi, h) => cache.rangeHash(size, lo, hi, h),
        set: (lo, hi, h, hash) => cache.setRangeHash(size, lo, hi, h, hash),
      };
    }
  }

  async readNodes(ids: readonly NodeId[]): Promise<Bytes[]> {
    const plans: NodePlan[] = new Array<NodePlan>(ids.length);
    const tiles = new Map<string, HashTile | TileId>();
    let missing = 0;
    for (let i = 0; i < ids.length; i++) {
      const { level, index } = ids[i]!;
      const tileLevel = Math.floor(level / TILE_HEIGHT);
      const h = level % TILE_HEIGHT;
      const start = index * 2 ** h;
      const tileIndex = Math.floor(start / TILE_WIDTH);
      const width = tileWidthAt(tileLevel, tileIndex, this.size);
      const offset = start % TILE_WIDTH;
      if (width === 0 || offset + 2 ** h > width) {
        throw new VerificationError('ERR_TLOG_TILE', 'node is outside the tree', { detail: { level, index, size: this.size } });
      }
      const tile: TileId = { level: tileLevel, index: tileIndex, width };
      const key = tileKey(tileLevel, tileIndex, width);
      if (!tiles.has(key)) {
        const hit = this.cache?.get(tile, this.hasher);
        tiles.set(key, hit ?? tile);
        if (!hit) missing++;
      }
      plans[i] = { tile, key, h, j: offset >> h };
    }
    if (missing > 0) {
      const loads: Promise<void>[] = [];
      for (const [key, t] of tiles) {
        if (t instanceof HashTile) continue;
        const cache = this.cache;
        const p = cache
          ? cache.load(t, this.hasher, this.readTile)
          : this.readTile(t).then((data) => new HashTile(t, data, this.hasher));
        loads.push(p.then((got) => void tiles.set(key, got)));
      }
      await Promise.all(loads);
    }
    return plans.map(({ key, h, j }) => (tiles.get(key) as HashTile).node(h, j));
  }
}
