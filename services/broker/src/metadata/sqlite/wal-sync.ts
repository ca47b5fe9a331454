import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CustodyError } from '@custody/core';

/**
 * Group commit for a SQLite database in WAL mode with `synchronous = NORMAL`: commits write
 * their frames to the -wal file without syncing, and every write the store acknowledges then
 * awaits `sync()`, an fdatasync of the -wal file on the libuv thread pool. One fdatasync covers
 * every frame written before it started, so concurrent writes share it, and the event loop
 * keeps serving while the disk flushes (better-sqlite3 would block it for each synchronous=FULL
 * commit). Durability is that of synchronous=FULL: nothing is acknowledged before its frames
 * (and, the WAL being sequential, every earlier frame) are on disk. Checkpoints sync the WAL
 * and the database themselves.
 *
 * A write that starts while a sync is in flight may have committed after that sync began, so
 * it waits for the next one; at most one sync runs and one is queued at any time.
 */
export class WalSync {
  private handle: Promise<FileHandle> | undefined;
  private inflight: Promise<void> | undefined;
  private queued: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly walPath: string) {}

  sync(): Promise<void> {
    if (this.closed) return Promise.reject(new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store is closed'));
    if (!this.inflight) return this.start();
    this.queued ??= this.inflight
      .catch(() => undefined)
      .then(() => {
        this.queued = undefined;
        return this.start();
      });
    return this.queued;
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.inflight?.catch(() => undefined);
    const h = this.handle;
    this.handle = undefined;
    if (h) await (await h.catch(() => undefined))?.close();
  }

  private start(): Promise<void> {
    const run = this.flush().finally(() => {
      if (this.inflight === run) this.inflight = undefined;
    });
    this.inflight = run;
    return run;
  }

  private async flush(): Promise<void> {
    try {
      this.handle ??= this.openWal();
      await (await this.handle).datasync();
    } catch (e) {
      this.handle = undefined;
      throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store could not be flushed to disk', { cause: e });
    }
  }

  private async openWal(): Promise<FileHandle> {
    const h = await open(this.walPath, 'r');
    // The -wal file's directory entry must be durable too (it is created once, with the database).
    const dir = await open(dirname(this.walPath), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
    return h;
  }
}
