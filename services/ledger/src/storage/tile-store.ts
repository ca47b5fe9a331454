import { mkdir, open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CustodyError, type Bytes } from '@custody/core';
import { MAX_BUNDLE_SIZE, TILE_WIDTH, tilePath, type LogSource, type TileId, type TileWrite } from '@custody/ledger';

const MAX_CHECKPOINT = 1 << 20;

function toBytes(b: Buffer): Bytes {
  return new Uint8Array(b);
}

/**
 * The log's public files in a directory, laid out per C2SP tlog-tiles so any static HTTP
 * server or CDN can serve it: `checkpoint`, `tile/<L>/<N>[.p/<W>]`, `tile/entries/<N>[.p/<W>]`.
 * Every write is atomic (temp file, fdatasync, rename, directory fsync; a newly created tile
 * directory is made durable by an fsync of its parent), so a reader never sees a torn file and
 * a file that exists after a crash has its full contents.
 */
export class FsTileStore implements LogSource {
  private seq = 0;

  constructor(readonly dir: string) {}

  async init(): Promise<void> {
    const dirs = new Set<string>();
    await this.makeDir(join(this.dir, 'tile'), dirs);
    await this.syncDirs(dirs);
  }

  /**
   * Creates `dir` (and missing parents) and adds to `sync` the parent of each directory created
   * here: fsyncing a file's own directory makes the file's name durable, not the directory's.
   */
  private async makeDir(dir: string, sync: Set<string>): Promise<void> {
    const first = await mkdir(dir, { recursive: true });
    if (first === undefined) return;
    for (let d = dir; ; d = dirname(d)) {
      sync.add(dirname(d));
      if (d === first || dirname(d) === d) break;
    }
  }

  private async writeAtomic(rel: string, data: Uint8Array, dirs: Set<string>): Promise<void> {
    const path = join(this.dir, rel);
    const dir = dirname(path);
    if (!dirs.has(dir)) {
      await this.makeDir(dir, dirs);
      dirs.add(dir);
    }
    const tmp = `${path}.tmp-${process.pid}-${++this.seq}`;
    try {
      // flush: one thread-pool job writes and fsyncs (fewer event-loop round trips than open/write/sync/close).
      await writeFile(tmp, data, { mode: 0o644, flush: true });
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
    await rename(tmp, path);
  }

  /** fsyncs directories so renames and new entries in them survive a crash. */
  protected async syncDirs(dirs: Iterable<string>): Promise<void> {
    await Promise.all(
      [...dirs].map(async (d) => {
        const fh = await open(d, 'r');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }),
    );
  }

  /** Writes tiles durably (all of them in parallel, then their directories). */
  async writeTiles(tiles: readonly TileWrite[]): Promise<void> {
    const dirs = new Set<string>();
    await Promise.all(tiles.map((t) => this.writeAtomic(tilePath(t.tile), t.data, dirs)));
    await this.syncDirs(dirs);
  }

  async writeCheckpoint(note: string): Promise<void> {
    const dirs = new Set<string>([this.dir]);
    await this.writeAtomic('checkpoint', Buffer.from(note, 'utf8'), dirs);
    await this.syncDirs([this.dir]);
  }

  async readCheckpoint(): Promise<Bytes> {
    const b = await this.readFileOrUndefined('checkpoint', MAX_CHECKPOINT);
    if (!b) throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'log has no checkpoint yet');
    return b;
  }

  async readCheckpointOrUndefined(): Promise<Bytes | undefined> {
    return this.readFileOrUndefined('checkpoint', MAX_CHECKPOINT);
  }

  readTile = async (tile: TileId): Promise<Bytes> => {
    const max = tile.level === 'entries' ? MAX_BUNDLE_SIZE : TILE_WIDTH * 32;
    const b = await this.readFileOrUndefined(tilePath(tile), max);
    if (!b) throw new CustodyError('ERR_TLOG_TILE', 'tile not found', { detail: { path: tilePath(tile) } });
    return b;
  };

  /** Reads a file under the log directory by its (already validated) relative path. */
  async readFileOrUndefined(rel: string, max: number): Promise<Bytes | undefined> {
    try {
      const b = await readFile(join(this.dir, rel));
      if (b.length > max) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'log file is larger than allowed', { detail: { path: rel } });
      return toBytes(b);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }
}
