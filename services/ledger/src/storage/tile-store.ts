import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { mkdir, open, rename, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { CustodyError, type Bytes } from '@custody/core';
import { MAX_BUNDLE_SIZE, TILE_WIDTH, tilePath, type LogSource, type TileId, type TileWrite } from '@custody/ledger';

const MAX_CHECKPOINT = 1 << 20;

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
    try {
      await rename(tmp, path);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
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
    await storageStep('tiles', async () => {
      await Promise.all(tiles.map((t) => this.writeAtomic(tilePath(t.tile), t.data, dirs)));
      await this.syncDirs(dirs);
    });
  }

  async writeCheckpoint(note: string): Promise<void> {
    const dirs = new Set<string>([this.dir]);
    await storageStep('checkpoint', async () => {
      await this.writeAtomic('checkpoint', Buffer.from(note, 'utf8'), dirs);
      await this.syncDirs([this.dir]);
    });
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
    if (tile.level !== 'entries') return this.readHashTileSync(tile);
    const b = await this.readFileOrUndefined(tilePath(tile), MAX_BUNDLE_SIZE);
    if (!b) throw new CustodyError('ERR_TLOG_TILE', 'tile not found', { detail: { path: tilePath(tile) } });
    return b;
  };

  /**
   * Reads a hash tile (at most 8 KiB) synchronously. Tiles are small and usually in the page
   * cache, where one blocking read costs ~10 µs against ~200 µs of thread-pool round trips for
   * an async readFile; proof generation only reads on a TileCache miss. Entry bundles (up to
   * 16 MiB) and HTTP responses stay asynchronous.
   */
  readHashTileSync(tile: TileId): Bytes {
    const max = TILE_WIDTH * 32;
    const path = tilePath(tile);
    let fd: number;
    try {
      fd = openSync(join(this.dir, path), constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new CustodyError('ERR_TLOG_TILE', 'tile not found', { detail: { path } });
      throw e;
    }
    try {
      if (!fstatSync(fd).isFile()) throw notRegular(path);
      // One byte more than allowed, so an oversized file is detected without reading it all.
      const buf = new Uint8Array(max + 1);
      let n = 0;
      for (let r = -1; r !== 0 && n < buf.length; n += r) r = readSync(fd, buf, n, buf.length - n, n);
      if (n > max) throw tooLarge(path);
      return buf.slice(0, n);
    } finally {
      closeSync(fd);
    }
  }

  /**
   * Reads a file under the log directory by its (already validated) relative path: at most `max`
   * bytes (one more is read to tell an oversized file, never the whole of it), and only a regular
   * file (a FIFO or device, in a directory someone handed over, would block or never end).
   */
  async readFileOrUndefined(rel: string, max: number): Promise<Bytes | undefined> {
    let handle: FileHandle;
    try {
      handle = await open(join(this.dir, rel), constants.O_RDONLY | constants.O_NONBLOCK);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw notRegular(rel);
      if (st.size > max) throw tooLarge(rel);
      const buf = new Uint8Array(st.size + 1);
      let n = 0;
      for (;;) {
        if (n === buf.length) throw tooLarge(rel);
        const { bytesRead } = await handle.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
      }
      return buf.subarray(0, n);
    } finally {
      await handle.close();
    }
  }
}

function tooLarge(path: string): CustodyError {
  return new CustodyError('ERR_INPUT_TOO_LARGE', 'log file is larger than allowed', { detail: { path } });
}

function notRegular(path: string): CustodyError {
  return new CustodyError('ERR_INPUT_MALFORMED', 'log file is not a regular file', { detail: { path } });
}

/**
 * A write of the public directory, its file-system failure (a full or read-only disk) made an
 * ERR_TLOG_UNAVAILABLE that names the step and the system's code (ENOSPC, EROFS, EACCES...), so an
 * operator reading the log sees the disk, not an internal error.
 */
async function storageStep(what: 'tiles' | 'checkpoint', f: () => Promise<void>): Promise<void> {
  try {
    await f();
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : 'unknown';
    throw new CustodyError('ERR_TLOG_UNAVAILABLE', `the log could not write its ${what} (${code})`, { cause: e, detail: { storage: what, errno: code } });
  }
}
