import pg from 'pg';
import { CustodyError, equalBytes, type Bytes } from '@custody/core';
import { rfc6962 } from '@custody/ledger';
import type { Sequencer, TreeState } from './types.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS tlog_sequence (origin TEXT PRIMARY KEY, next_index BIGINT NOT NULL);
CREATE TABLE IF NOT EXISTS tlog_integrated (origin TEXT PRIMARY KEY, size BIGINT NOT NULL, root BYTEA NOT NULL);
CREATE TABLE IF NOT EXISTS tlog_pending (origin TEXT NOT NULL, idx BIGINT NOT NULL, entry BYTEA NOT NULL, PRIMARY KEY (origin, idx));
CREATE TABLE IF NOT EXISTS tlog_published (origin TEXT PRIMARY KEY, size BIGINT NOT NULL);
`;

function bytes(b: Buffer): Bytes {
  return new Uint8Array(b);
}

function unavailable(e: unknown, what: string): CustodyError {
  return e instanceof CustodyError ? e : new CustodyError('ERR_TLOG_UNAVAILABLE', what, { cause: e });
}

/**
 * Sequencing in PostgreSQL so several front-end writers share one log. Sequencing takes the
 * row lock on the origin's counter, so indexes are gap-free and ordered across writers, and
 * returns after COMMIT (durable with the default synchronous_commit). Integration runs under a
 * transaction-scoped advisory lock: one integrator at a time; the others skip their turn.
 * Integration state sits in its own row so it never blocks sequencing.
 */
export class PostgresSequencer implements Sequencer {
  private constructor(
    private readonly pool: pg.Pool,
    private readonly origin: string,
    private readonly lockKey: number,
  ) {}

  static async open(config: pg.PoolConfig | string, origin: string): Promise<PostgresSequencer> {
    // Bounded waits: a server that stops answering (a partition, a frozen host) fails calls
    // instead of holding every append behind one that never ends.
    const defaults: pg.PoolConfig = { max: 4, connectionTimeoutMillis: 5000, query_timeout: 10_000, keepAlive: true };
    const pool = new pg.Pool(typeof config === 'string' ? { ...defaults, connectionString: config } : { ...defaults, ...config });
    // An idle client's network error must not crash the process; queries surface it instead.
    pool.on('error', () => undefined);
    try {
      await withClient(pool, 'cannot prepare the PostgreSQL sequencer', async (c) => {
        await c.query('SELECT pg_advisory_lock(727001)');
        await c.query(SCHEMA);
        await c.query('INSERT INTO tlog_sequence (origin, next_index) VALUES ($1, 0) ON CONFLICT DO NOTHING', [origin]);
        await c.query('INSERT INTO tlog_integrated (origin, size, root) VALUES ($1, 0, $2) ON CONFLICT DO NOTHING', [origin, Buffer.from(rfc6962.emptyRoot())]);
        await c.query('INSERT INTO tlog_published (origin, size) VALUES ($1, 0) ON CONFLICT DO NOTHING', [origin]);
        await c.query('SELECT pg_advisory_unlock(727001)');
      });
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw unavailable(e, 'cannot prepare the PostgreSQL sequencer');
    }
    // Integration lock key: stable per origin, inside the signed 32-bit range pg accepts.
    let h = 0;
    for (const ch of origin) h = (Math.imul(h, 31) + ch.charCodeAt(0)) | 0;
    return new PostgresSequencer(pool, origin, h);
  }

  async sequence(entries: readonly Uint8Array[]): Promise<number> {
    return withClient(this.pool, 'sequencing failed', async (c) => {
      await c.query('BEGIN');
      const r = await c.query<{ first: string }>('UPDATE tlog_sequence SET next_index = next_index + $2 WHERE origin = $1 RETURNING next_index - $2 AS first', [
        this.origin,
        entries.length,
      ]);
      const first = Number(r.rows[0]!.first);
      await c.query('INSERT INTO tlog_pending (origin, idx, entry) SELECT $1, $2::bigint + n - 1, e FROM unnest($3::bytea[]) WITH ORDINALITY AS t(e, n)', [
        this.origin,
        first,
        entries.map((e) => Buffer.from(e.buffer, e.byteOffset, e.byteLength)),
      ]);
      await c.query('COMMIT');
      return first;
    });
  }

  async state(): Promise<TreeState & { sequenced: number }> {
    try {
      const r = await this.pool.query<{ size: string; root: Buffer; next_index: string }>(
        'SELECT i.size, i.root, s.next_index FROM tlog_integrated i JOIN tlog_sequence s USING (origin) WHERE origin = $1',
        [this.origin],
      );
      const row = r.rows[0]!;
      return { size: Number(row.size), root: bytes(row.root), sequenced: Number(row.next_index) };
    } catch (e) {
      throw unavailable(e, 'cannot read the log state');
    }
  }

  async integrate(maxEntries: number, work: (state: TreeState, entries: Bytes[]) => Promise<TreeState>): Promise<{ state: TreeState; advanced: boolean }> {
    return withClient(this.pool, 'integration failed', async (c) => {
      await c.query('BEGIN');
      const lock = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1) AS ok', [this.lockKey]);
      const cur = await c.query<{ size: string; root: Buffer }>('SELECT size, root FROM tlog_integrated WHERE origin = $1', [this.origin]);
      const st: TreeState = { size: Number(cur.rows[0]!.size), root: bytes(cur.rows[0]!.root) };
      if (!lock.rows[0]!.ok) {
        await c.query('ROLLBACK');
        return { state: st, advanced: false };
      }
      const rows = await c.query<{ idx: string; entry: Buffer }>('SELECT idx, entry FROM tlog_pending WHERE origin = $1 AND idx >= $2 ORDER BY idx LIMIT $3', [
        this.origin,
        st.size,
        maxEntries,
      ]);
      // Entries are visible only once committed; a writer whose COMMIT is still in flight can
      // leave a gap, so integrate only the contiguous prefix.
      const entries: Bytes[] = [];
      for (const r of rows.rows) {
        if (Number(r.idx) !== st.size + entries.length) break;
        entries.push(bytes(r.entry));
      }
      if (entries.length === 0) {
        await c.query('ROLLBACK');
        return { state: st, advanced: false };
      }
      const next = await work(st, entries);
      const upd = await c.query('UPDATE tlog_integrated SET size = $2, root = $3 WHERE origin = $1 AND size = $4 AND root = $5', [
        this.origin,
        next.size,
        Buffer.from(next.root),
        st.size,
        Buffer.from(st.root),
      ]);
      if (upd.rowCount !== 1) throw new CustodyError('ERR_INTERNAL', 'integrated state changed under the integration lock');
      await c.query('DELETE FROM tlog_pending WHERE origin = $1 AND idx < $2', [this.origin, next.size]);
      await c.query('COMMIT');
      return { state: next, advanced: !equalBytes(next.root, st.root) || next.size !== st.size };
    });
  }

  async publish(size: number, write: () => Promise<boolean>, options: { sameSize?: boolean } = {}): Promise<boolean> {
    return withClient(this.pool, 'publication failed', async (c) => {
      await c.query('BEGIN');
      // The row lock serializes publishers across writers; the size check keeps publication monotonic.
      const r = await c.query<{ size: string }>('SELECT size FROM tlog_published WHERE origin = $1 FOR UPDATE', [this.origin]);
      const cur = Number(r.rows[0]!.size);
      if (cur > size || (cur === size && size !== 0 && !options.sameSize)) {
        await c.query('ROLLBACK');
        return false;
      }
      // Record first, so the only step after the file rename is COMMIT. Should COMMIT fail after
      // the rename anyway, the file is ahead of this row; `write` re-reads the file under this
      // lock, so no later publisher can put a smaller checkpoint over it.
      await c.query('UPDATE tlog_published SET size = $2 WHERE origin = $1', [this.origin, size]);
      if (!(await write())) {
        await c.query('ROLLBACK');
        return false;
      }
      await c.query('COMMIT');
      return true;
    });
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}

/**
 * Runs `fn` (a transaction) on a pooled client. An 'error' the client emits while it is held (its
 * server went away between two queries) fails the call instead of crashing the process, and a
 * client whose call failed is dropped (its transaction, if open, ends with it), not pooled again.
 */
async function withClient<T>(pool: pg.Pool, what: string, fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect().catch((e: unknown) => {
    throw unavailable(e, 'cannot reach PostgreSQL');
  });
  let lost = false;
  const onError = () => {
    lost = true;
  };
  c.on('error', onError);
  let failed = false;
  try {
    return await fn(c);
  } catch (e) {
    // No ROLLBACK: after a timeout it would wait behind the stuck query. Dropping the connection
    // ends its transaction on the server all the same.
    failed = true;
    throw unavailable(e, what);
  } finally {
    c.off('error', onError);
    c.release(failed || lost);
  }
}
