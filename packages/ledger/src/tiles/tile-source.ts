import { VerificationError, type Bytes } from '@custody/core';
import { HASH_SIZE, rfc6962, type TreeHasher } from '../merkle/hasher.js';
import type { HashSource, NodeId } from '../merkle/tree.js';
import { TILE_HEIGHT, TILE_WIDTH, tilePath, tileWidthAt, type TileId } from './paths.js';

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

/** Bounded LRU of tile trees keyed by tile path (tile contents at a path never change). */
export class TileCache {
  private readonly map = new Map<string, TileTree>();
  constructor(private readonly maxTiles = 1024) {}

  get(path: string): TileTree | undefined {
    const t = this.map.get(path);
    if (t) {
      this.map.delete(path);
      this.map.set(path, t);
    }
    return t;
  }

  set(path: string, tree: TileTree): void {
    this.map.delete(path);
    this.map.set(path, tree);
    while (this.map.size > this.maxTiles) this.map.delete(this.map.keys().next().value!);
  }

  clear(): void {
    this.map.clear();
  }
}

/**
 * Proof hashes from C2SP tiles for a tree of `size` leaves. Reads only the tiles that tree
 * needs (partial tiles of that size), each once per call. Tiles are not trusted here: callers
 * verify the resulting proof or root against a signed checkpoint.
 */
export class TileHashSource implements HashSource {
  constructor(
    private readonly readTile: TileReader,
    readonly size: number,
    private readonly hasher: TreeHasher = rfc6962,
    private readonly cache?: TileCache,
  ) {}

  async readNodes(ids: readonly NodeId[]): Promise<Bytes[]> {
    const wanted = new Map<string, { tile: TileId; trees?: TileTree }>();
    const plans = ids.map(({ level, index }) => {
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
      const path = tilePath(tile);
      if (!wanted.has(path)) wanted.set(path, { tile });
      return { path, h, j: offset >> h };
    });
    await Promise.all(
      [...wanted.entries()].map(async ([path, w]) => {
        const cached = this.cache?.get(path);
        if (cached) {
          w.trees = cached;
          return;
        }
        const data = await this.readTile(w.tile);
        w.trees = buildTileTree(data, w.tile.width, this.hasher);
        this.cache?.set(path, w.trees);
      }),
    );
    return plans.map(({ path, h, j }) => wanted.get(path)!.trees![h]![j]!);
  }
}
