import { VerificationError, concatBytes, type Bytes } from '@custody/core';
import { HASH_SIZE, rfc6962, type TreeHasher } from '../merkle/hasher.js';
import { treeRoot } from '../merkle/tree.js';
import { encodeEntryBundle, parseEntryBundle } from './bundle.js';
import { TILE_WIDTH, tilePath, type TileId } from './paths.js';
import { TileHashSource, buildTileTree, tileHashes, type TileReader } from './tile-source.js';

export interface TileWrite {
  tile: TileId;
  data: Bytes;
}

export interface IntegrateInput {
  /** Size of the tree whose tiles `readTile` serves. */
  oldSize: number;
  /** Reads the old tree's tiles (only its partial tiles and entry bundle are needed). */
  readTile: TileReader;
  /** New entries in sequence order; they become leaves oldSize, oldSize + 1, ... */
  entries: readonly Uint8Array[];
  /** Precomputed leaf hashes of `entries`, if the caller already has them. */
  leafHashes?: readonly Uint8Array[];
  hasher?: TreeHasher;
}

export interface IntegrateResult {
  size: number;
  root: Bytes;
  /** New or grown tiles and entry bundles, lowest level first. Writing them is idempotent. */
  tiles: TileWrite[];
}

/**
 * Extends a tiled tree with new entries: grows the right-edge partial tiles, emits full tiles
 * and their parents at the level above, and computes the new root. Pure and deterministic, so
 * a writer that crashes mid-way can redo it and produce byte-identical tiles.
 */
export async function integrate(input: IntegrateInput): Promise<IntegrateResult> {
  const hasher = input.hasher ?? rfc6962;
  const { oldSize, entries } = input;
  const leafHashes = input.leafHashes ?? entries.map((e) => hasher.leaf(e));
  if (leafHashes.length !== entries.length) throw new VerificationError('ERR_INPUT_MALFORMED', 'leaf hashes do not match entries');
  const newSize = oldSize + entries.length;
  if (!Number.isSafeInteger(newSize)) throw new VerificationError('ERR_INPUT_MALFORMED', 'tree size overflows');
  const writes: TileWrite[] = [];
  if (entries.length === 0) {
    return { size: oldSize, root: await treeRoot(new TileHashSource(input.readTile, oldSize, hasher), oldSize, hasher), tiles: writes };
  }

  // Entry bundles (level 0 only).
  {
    const first = Math.floor(oldSize / TILE_WIDTH);
    const have = oldSize % TILE_WIDTH;
    let pending: Uint8Array[] = have > 0 ? parseEntryBundle(await input.readTile({ level: 'entries', index: first, width: have }), have) : [];
    pending = pending.concat(entries);
    for (let i = 0, index = first; i < pending.length; i += TILE_WIDTH, index++) {
      const chunk = pending.slice(i, i + TILE_WIDTH);
      writes.push({ tile: { level: 'entries', index, width: chunk.length }, data: encodeEntryBundle(chunk) });
    }
  }

  // Hash tiles, level by level, while a level gains hashes.
  let newHashes: Uint8Array[] = leafHashes as Uint8Array[];
  for (let level = 0; newHashes.length > 0; level++) {
    const scale = TILE_WIDTH ** level;
    const oldAtLevel = Math.floor(oldSize / scale);
    const first = Math.floor(oldAtLevel / TILE_WIDTH);
    const have = oldAtLevel % TILE_WIDTH;
    const existing = have > 0 ? tileHashes(await input.readTile({ level, index: first, width: have }), have) : [];
    const pending = existing.length > 0 ? [...existing, ...newHashes] : newHashes;
    const parents: Bytes[] = [];
    for (let i = 0, index = first; i < pending.length; i += TILE_WIDTH, index++) {
      const chunk = pending.slice(i, i + TILE_WIDTH);
      const data = concatBytes(...chunk);
      writes.push({ tile: { level, index, width: chunk.length }, data });
      if (chunk.length === TILE_WIDTH) parents.push(buildTileTree(data, TILE_WIDTH, hasher)[8]![0]!);
    }
    newHashes = parents;
  }

  const written = new Map(writes.map((w) => [tilePath(w.tile), w.data]));
  const reader: TileReader = (tile) => {
    const w = written.get(tilePath(tile));
    return w ? Promise.resolve(w) : input.readTile(tile);
  };
  const root = await treeRoot(new TileHashSource(reader, newSize, hasher), newSize, hasher);
  return { size: newSize, root, tiles: writes };
}

/** Sanity bound used by readers: a hash tile is at most 256 hashes. */
export const MAX_TILE_BYTES = TILE_WIDTH * HASH_SIZE;
