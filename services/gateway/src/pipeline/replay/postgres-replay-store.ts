import pg from 'pg';
import type { Clock } from '@custody/core';
import { checkWindow, replayKey, replayRefused, replayStoreUnavailable, type ReplayStore, replayExpiry } from './replay-store.js';

export interface PostgresReplayStoreOptions {
  /** postgres://user@host:port/db, shared by every gateway replica. */
  connectionString: string;
  clock: Clock;
  /** The accepted Date window; keys are remembered for twice this. */
  windowMs: number;
  /** Pool size of this replica. Default 10. */
  maxConnections?: number;
  /** How long to wait for a connection before refusing the request. Default 2000 ms. */
  connectTimeoutMs?: number;
  /** How long to wait for a commit's answer before refusing the request. Default 2000 ms. */
  queryTimeoutMs?: number;
  /** At most this often a commit starts a background sweep of expired rows. Default 1000 ms. */
  sweepIntervalMs?: number;
  /** At most this many expired rows deleted per statement; a full batch is followed by another. Default 1000. */
  sweepBatch?: number;
}

const TABLE = 'custody_gateway_replay';
/** Arbitrary constant naming the advisory lock held while the schema is created. */
const LOCK_MIGRATE = 0x637573_10;

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS ${TABLE} (key BYTEA PRIMARY KEY, expires_at BIGINT NOT NULL)`,
  `CREATE INDEX IF NOT EXISTS ${TABLE}_expires ON ${TABLE} (expires_at)`,
];

const COMMIT_SQL = `INSERT INTO ${TABLE} (key, expires_at) VALUES ($1, $2)
  ON CONFLICT (key) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE ${TABLE}.expires_at <= $3`;

// SKIP LOCKED: replicas sweeping at the same time take different rows instead of waiting.
const SWEEP_SQL = `DELETE FROM ${TABLE} WHERE key IN (SELECT key FROM ${TABLE} WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED)`;

/**
 * The replay memory in PostgreSQL, shared by gateway replicas on several hosts. The
 * check-and-record is one INSERT ... ON CONFLICT keyed by SHA-256(enc); it records the key
 * (rowCount 1) unless a live row exists (rowCount 0: replay). The unique index makes this
 * single-winner across connections: a concurrent INSERT of the same key waits for the first
 * to commit, then sees its row. A row already past its expiry is taken over by the same
 * statement, so what is refused never depends on when the sweep last ran. Any database or
 * network failure refuses the request with ERR_GATEWAY_REPLAY_STORE.
 */
export class PostgresReplayStore implements ReplayStore {
  readonly kind = 'postgres';
  private closed = false;
  private lastSweep = -Infinity;
  private sweeping: Promise<void> | undefined;
  private readonly sweepIntervalMs: number;
  private readonly sweepBatch: number;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly clock: Clock,
    private readonly windowMs: number,
    options: PostgresReplayStoreOptions,
  ) {
    this.sweepIntervalMs = options.sweepIntervalMs ?? 1000;
    this.sweepBatch = options.sweepBatch ?? 1000;
  }

  /** Connects and creates the table when missing; a database that cannot be reached refuses to open. */
  static async open(options: PostgresReplayStoreOptions): Promise<PostgresReplayStore> {
    checkWindow(options.windowMs);
    const pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 2000,
      query_timeout: options.queryTimeoutMs ?? 2000,
      keepAlive: true,
      idleTimeoutMillis: 30_000,
    });
    // An idle client losing its server must not crash the process; the next commit fails closed.
    pool.on('error', () => undefined);
    const store = new PostgresReplayStore(pool, options.clock, options.windowMs, options);
    try {
      await store.migrate();
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw replayStoreUnavailable('postgres', e);
    }
    return store;
  }

  private async migrate(): Promise<void> {
    const c = await this.pool.connect();
    let broken = false;
    // The server going away while the client is held fails the migration, not the process.
    const onError = () => {
      broken = true;
    };
    c.on('error', onError);
    try {
      await c.query('BEGIN');
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_MIGRATE]);
      for (const sql of SCHEMA) await c.query(sql);
      await c.query('COMMIT');
    } catch (e) {
      broken = true;
      throw e;
    } finally {
      c.off('error', onError);
      c.release(broken);
    }
  }

  async commit(enc: Uint8Array): Promise<void> {
    if (this.closed) throw replayStoreUnavailable('postgres');
    const now = this.clock().getTime();
    let inserted: number | null;
    try {
      // Named: prepared once per connection.
      inserted = (await this.pool.query({ name: 'custody-replay-commit', text: COMMIT_SQL, values: [replayKey(enc), replayExpiry(now, this.windowMs), now] })).rowCount;
    } catch (e) {
      throw replayStoreUnavailable('postgres', e);
    }
    if (inserted !== 1) throw replayRefused();
    if (!this.sweeping && now - this.lastSweep >= this.sweepIntervalMs) {
      this.lastSweep = now;
      // Maintenance in the background: the request does not wait for it, and a failure here is
      // reported by the next commit if the database is really down.
      this.sweeping = this.sweep(now)
        .then(() => undefined, () => undefined)
        .finally(() => (this.sweeping = undefined));
    }
  }

  /** Deletes expired rows in bounded batches (at most 16 per call); returns how many. */
  async sweep(now = this.clock().getTime()): Promise<number> {
    let total = 0;
    for (let i = 0; i < 16 && !this.closed; i++) {
      const n = (await this.pool.query(SWEEP_SQL, [now, this.sweepBatch])).rowCount ?? 0;
      total += n;
      if (n < this.sweepBatch) break;
    }
    return total;
  }

  /** Rows currently stored, expired or not (tests and operators). */
  async count(): Promise<number> {
    const { rows } = await this.pool.query<{ n: string }>(`SELECT count(*) AS n FROM ${TABLE}`);
    return Number(rows[0]?.n ?? 0);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.sweeping;
    await this.pool.end();
  }
}
