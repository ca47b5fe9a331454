import { join } from 'node:path';
import Database from 'better-sqlite3';
import { CustodyError } from '@custody/core';

/** The lock file in a log's tile directory (an empty SQLite database; nothing is stored in it). */
export const WRITER_LOCK_FILE = '.writer.lock';

/**
 * One writer per tile directory, whatever database it sequences with: a second log opening the
 * same directory (through a symlink, or with another `--db`) would publish over the first one's
 * tiles and checkpoint. An exclusive SQLite lock on a file in the directory stands for flock,
 * which Node lacks: it is held from `acquire` until `release`, and the operating system drops it
 * when the process dies, so a crash leaves no stale lock.
 */
export class WriterLock {
  private constructor(private readonly db: Database.Database) {}

  static acquire(dir: string): WriterLock {
    const path = join(dir, WRITER_LOCK_FILE);
    let db: Database.Database;
    try {
      db = new Database(path);
    } catch (e) {
      throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'cannot open the log directory lock', { cause: e, detail: { path } });
    }
    try {
      db.pragma('busy_timeout = 0');
      db.pragma('locking_mode = EXCLUSIVE');
      db.exec('BEGIN EXCLUSIVE; COMMIT');
    } catch (e) {
      db.close();
      const code = (e as { code?: unknown }).code;
      if (typeof code === 'string' && code.startsWith('SQLITE_BUSY')) {
        throw new CustodyError('ERR_TLOG_LOCKED', 'another log writes this tile directory', { detail: { dir } });
      }
      throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'cannot lock the log directory', { cause: e, detail: { path } });
    }
    return new WriterLock(db);
  }

  release(): void {
    if (this.db.open) this.db.close();
  }
}
