import { CustodyError, isCustodyError, readBodyLimited, toCustodyError, type Bytes } from '@custody/core';
import { parseCheckpointBody } from '../checkpoint/checkpoint.js';
import { rfc6962, type TreeHasher } from '../merkle/hasher.js';
import { proveConsistency, proveInclusion } from '../merkle/proof.js';
import { parseNote } from '../note/note.js';
import type { TlogProof } from '../proof/tlog-proof.js';
import { MAX_BUNDLE_SIZE, parseEntryBundle } from '../tiles/bundle.js';
import { TILE_WIDTH, tilePath, tileWidthAt, type TileId } from '../tiles/paths.js';
import type { TileCache} from '../tiles/tile-source.js';
import { TileHashSource, type TileReader } from '../tiles/tile-source.js';
import { joinUrl, type FetchLike } from '../witness/client.js';

/** A tiled log as a reader sees it: the checkpoint and immutable tiles (HTTP, disk, memory). */
export interface LogSource {
  readCheckpoint(): Promise<Uint8Array>;
  readTile: TileReader;
}

const MAX_CHECKPOINT_BYTES = 1 << 20;

async function readBody(res: Response, max: number, path: string): Promise<Bytes> {
  try {
    return await readBodyLimited(res, max, path);
  } catch (e) {
    if (isCustodyError(e)) throw e;
    throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'log response broke off', { cause: toCustodyError(e), detail: { path } });
  }
}

/**
 * A log served over HTTP per C2SP tlog-tiles at `prefix`. A missing partial tile falls back to
 * the full tile (whose prefix is the same hashes), as the spec allows.
 */
export function httpLogSource(fetchFn: FetchLike, prefix: string): LogSource {
  const get = async (path: string, max: number): Promise<Bytes | undefined> => {
    let res: Response;
    try {
      res = await fetchFn(joinUrl(prefix, path));
    } catch (e) {
      throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'log did not answer', { cause: toCustodyError(e), detail: { path } });
    }
    if (res.status === 404) {
      await res.body?.cancel();
      return undefined;
    }
    if (res.status !== 200) {
      await res.body?.cancel();
      throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'log answered with an error status', { detail: { path, status: res.status } });
    }
    return readBody(res, max, path);
  };
  return {
    async readCheckpoint() {
      const b = await get('checkpoint', MAX_CHECKPOINT_BYTES);
      if (!b) throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'log has no checkpoint');
      return b;
    },
    async readTile(tile: TileId) {
      const max = tile.level === 'entries' ? MAX_BUNDLE_SIZE : TILE_WIDTH * 32;
      let b = await get(tilePath(tile), max);
      if (!b && tile.width < TILE_WIDTH) {
        const full = await get(tilePath({ ...tile, width: TILE_WIDTH }), max);
        if (full) b = tile.level === 'entries' ? sliceBundle(full, tile.width) : full.slice(0, tile.width * 32);
      }
      if (!b) throw new CustodyError('ERR_TLOG_TILE', 'tile not found', { detail: { path: tilePath(tile) } });
      return b;
    },
  };
}

function sliceBundle(full: Uint8Array, width: number): Bytes {
  const entries = parseEntryBundle(full, TILE_WIDTH).slice(0, width);
  let n = 0;
  for (const e of entries) n += 2 + e.length;
  return full.slice(0, n);
}

/** Wraps a reader so each tile is fetched once; proofs built from one reader see one set of bytes. */
export function memoizeTileReader(read: TileReader): TileReader {
  const seen = new Map<string, Promise<Uint8Array>>();
  return (tile) => {
    const p = tilePath(tile);
    let got = seen.get(p);
    if (!got) {
      got = read(tile);
      seen.set(p, got);
    }
    return got;
  };
}

/** Reads the entry at `index` of the tree of `size` leaves from its entry bundle. */
export async function readEntry(source: LogSource, index: number, size: number): Promise<Bytes> {
  if (!Number.isSafeInteger(index) || index < 0 || index >= size) throw new CustodyError('ERR_TLOG_ENTRY', 'index is not in the tree', { detail: { index, size } });
  const n = Math.floor(index / TILE_WIDTH);
  const width = tileWidthAt(0, n, size);
  const entries = parseEntryBundle(await source.readTile({ level: 'entries', index: n, width }), width);
  return entries[index % TILE_WIDTH]!;
}

export async function inclusionProofFromTiles(source: LogSource, index: number, size: number, hasher: TreeHasher = rfc6962, cache?: TileCache): Promise<Bytes[]> {
  return proveInclusion(new TileHashSource(source.readTile, size, hasher, cache), index, size, hasher);
}

export async function consistencyProofFromTiles(
  source: LogSource,
  oldSize: number,
  newSize: number,
  hasher: TreeHasher = rfc6962,
  cache?: TileCache,
): Promise<Bytes[]> {
  return proveConsistency(new TileHashSource(source.readTile, newSize, hasher, cache), oldSize, newSize, hasher);
}

/** Builds a tlog-proof for `index` against a signed checkpoint (the caller verifies it before use). */
export async function buildTlogProof(source: LogSource, index: number, checkpointNote: string, extra?: Uint8Array): Promise<TlogProof> {
  const cp = parseCheckpointBody(parseNote(checkpointNote).text);
  const proof = await inclusionProofFromTiles(source, index, cp.size);
  return extra ? { index, proof, checkpoint: checkpointNote, extra: new Uint8Array(extra) } : { index, proof, checkpoint: checkpointNote };
}
