import { closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import type { Clock } from '@custody/core';
import { checkWindow, replayKey, replayRefused, replayStoreUnavailable, type ReplayStore, replayExpiry } from './replay-store.js';

export interface SqliteReplayStoreOptions {
  /** Database file shared by the replicas on this host (created 0600 when missing). */
  path: string;
  clock: Clock;
  /** The accepted Date window; keys are remembered for twice this. */
  windowMs: number;
  /**
   * How long a commit waits for another replica's write lock before failing closed. better-sqlite3
   * is synchronous, so the wait blocks this process's event loop: keep it short. Default 200 ms.
   */
  busyTimeoutMs?: number;
  /**
   * 'normal' (default): a commit survives the crash of any replica process, not a power loss of
   * the host. 'full': an fsync per commit, survives a power loss too.
   */
  synchronous?: 'normal' | 'full';
  /**
   * Bound on the database size (SQLite max_page_count): beyond it commits fail closed with
   * ERR_GATEWAY_REPLAY_STORE rather than fill the disk. Default: no bound but the disk.
   */
  maxSizeBytes?: number;
  /** At most this often a commit also deletes expired rows. Default 1000 ms. */
  sweepIntervalMs?: number;
  /** At most this many expired rows deleted per sweep; a full batch sweeps again on the next commit. Default 1000. */
  sweepBatch?: number;
}

const TABLE = 'custody_gateway_replay';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS ${TABLE} (
  key BLOB PRIMARY KEY,
  expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ${TABLE}_expires ON ${TABLE} (expires_at);
`;

/**
 * The replay memory in a SQLite file (WAL) that the gateway replicas of one host share. The
 * check-and-record is one INSERT keyed by SHA-256(enc): a conflicting live row means replay.
 * A conflicting row already past its expiry (not yet swept) is taken over by the same
 * statement, so what is refused never depends on when the sweep last ran. Every failure of
 * the database (locked beyond the busy timeout, disk full, I/O error, closed) refuses the
 * request with ERR_GATEWAY_REPLAY_STORE.
 */
export class SqliteReplayStore implements ReplayStore {
  readonly kind = 'sqlite';
  private readonly insert: Database.Statement<[Buffer, number, number]>;
  private readonly deleteExpired: Database.Statement<[number, number]>;
  private readonly sweepIntervalMs: number;
  private readonly sweepBatch: number;
  private lastSweep = -Infinity;
  private sweepDue = false;

  private constructor(
    private readonly db: Database.Database,
    private readonly clock: Clock,
    private readonly windowMs: number,
    options: SqliteReplayStoreOptions,
  ) {
    this.sweepIntervalMs = options.sweepIntervalMs ?? 1000;
    this.sweepBatch = options.sweepBatch ?? 1000;
    this.insert = db.prepare(
      `INSERT INTO ${TABLE} (key, expires_at) VALUES (?, ?)
       ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at WHERE ${TABLE}.expires_at <= ?`,
    );
    this.deleteExpired = db.prepare(`DELETE FROM ${TABLE} WHERE key IN (SELECT key FROM ${TABLE} WHERE expires_at <= ? ORDER BY expires_at LIMIT ?)`);
  }

  static open(options: SqliteReplayStoreOptions): SqliteReplayStore {
    checkWindow(options.windowMs);
    let db: Database.Database | undefined;
    try {
      if (options.path !== ':memory:' && !existsSync(options.path)) closeSync(openSync(options.path, 'a', 0o600));
      db = new Database(options.path);
      // First, so that creating the schema waits for a replica opening the file at the same time.
      db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 200))}`);
      db.pragma('journal_mode = WAL');
      db.pragma(`synchronous = ${options.synchronous === 'full' ? 'FULL' : 'NORMAL'}`);
      db.exec(SCHEMA);
      if (options.maxSizeBytes !== undefined) {
        const pageSize = db.pragma('page_size', { simple: true }) as number;
        db.pragma(`max_page_count = ${Math.max(1, Math.floor(options.maxSizeBytes / pageSize))}`);
      }
      return new SqliteReplayStore(db, options.clock, options.windowMs, options);
    } catch (e) {
      db?.close();
      throw replayStoreUnavailable('sqlite', e);
    }
  }

  commit(enc: Uint8Array): void {
    const now = this.clock().getTime();
    let changes: number;
    try {
      changes = this.insert.run(replayKey(enc), replayExpiry(now, this.windowMs), now).changes;
    } catch (e) {
      throw replayStoreUnavailable('sqlite', e);
    }
    if (changes !== 1) throw replayRefused();
    if (this.sweepDue || now - this.lastSweep >= this.sweepIntervalMs) {
      try {
        this.sweep(now);
      } catch {
        // Maintenance only: the next commit reports a store that is really down.
      }
    }
  }

  /** Deletes at most one batch of expired rows; returns how many. */
  sweep(now = this.clock().getTime()): number {
    this.lastSweep = now;
    const deleted = this.deleteExpired.run(now, this.sweepBatch).changes;
    this.sweepDue = deleted >= this.sweepBatch;
    return deleted;
  }

  /** Rows currently stored, expired or not (tests and operators). */
  count(): number {
    return (this.db.prepare(`SELECT count(*) AS n FROM ${TABLE}`).get() as { n: number }).n;
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
