import { Worker } from 'node:worker_threads';
import { createRequire } from 'node:module';
import { CustodyError, equalBytes, type Bytes } from '@custody/core';
import { rfc6962 } from '@custody/ledger';
import type { Sequencer, TreeState } from './types.js';

/**
 * Runs inside the worker thread (serialized with Function#toString, so it may only use what it
 * requires itself). Owns the one SQLite connection: WAL, synchronous=FULL, so a committed batch
 * is on disk. Keeping the fsync'ing connection off the main thread lets the event loop keep
 * accepting appends and integrating while a commit waits for the disk.
 */
function workerMain(): void {
  /* eslint-disable */
  const { parentPort, workerData } = require('node:worker_threads');
  const Database = require(workerData.driver);
  let db: any;
  // Statements prepared once per connection: preparing parses the SQL again each time, which was
  // a sixth of the log's CPU per append at a low append rate.
  // (A method, not a named function: this source runs as the worker's eval text, where the
  // name-keeping helper a transpiler may wrap named functions in does not exist.)
  const statements = new Map<string, any>();
  const cache = {
    st(sql: string): any {
      let s = statements.get(sql);
      if (!s) statements.set(sql, (s = db.prepare(sql)));
      return s;
    },
  };
  const ops: Record<string, (a: any) => any> = {
    open({ path, origin, emptyRoot }: { path: string; origin: string; emptyRoot: Uint8Array }) {
      db = new Database(path);
      // One writer process per log: the exclusive locking mode (set before WAL is entered, so
      // no shared-memory index is used) keeps the file lock from the first transaction until
      // close, and the OS drops it if the process dies. A second process gets SQLITE_BUSY.
      db.pragma('busy_timeout = 1000');
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.exec('BEGIN EXCLUSIVE; COMMIT');
      db.pragma('busy_timeout = 5000');
      db.exec(`
        CREATE TABLE IF NOT EXISTS log_meta (id INTEGER PRIMARY KEY CHECK (id = 0), origin TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS log_state (id INTEGER PRIMARY KEY CHECK (id = 0), next_index INTEGER NOT NULL, integrated_size INTEGER NOT NULL, root BLOB NOT NULL);
        CREATE TABLE IF NOT EXISTS log_pending (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL);`);
      const meta = db.prepare('SELECT origin FROM log_meta WHERE id = 0').get();
      if (!meta) {
        db.transaction(() => {
          db.prepare('INSERT INTO log_meta (id, origin) VALUES (0, ?)').run(origin);
          db.prepare('INSERT INTO log_state (id, next_index, integrated_size, root) VALUES (0, 0, 0, ?)').run(Buffer.from(emptyRoot));
        })();
        return { origin };
      }
      return { origin: meta.origin };
    },
    sequence({ buf, lengths }: { buf: ArrayBuffer; lengths: number[] }) {
      const bytes = Buffer.from(buf);
      const ins = cache.st('INSERT INTO log_pending (idx, entry) VALUES (?, ?)');
      return db.transaction(() => {
        const first = cache.st('SELECT next_index FROM log_state WHERE id = 0').pluck().get();
        let o = 0;
        lengths.forEach((n, i) => {
          ins.run(first + i, bytes.subarray(o, o + n));
          o += n;
        });
        cache.st('UPDATE log_state SET next_index = next_index + ? WHERE id = 0').run(lengths.length);
        return first;
      })();
    },
    state() {
      const r = cache.st('SELECT next_index, integrated_size, root FROM log_state WHERE id = 0').get();
      return { size: r.integrated_size, root: new Uint8Array(r.root), sequenced: r.next_index };
    },
    pending({ from, max }: { from: number; max: number }) {
      const rows = cache.st('SELECT idx, entry FROM log_pending WHERE idx >= ? ORDER BY idx LIMIT ?').all(from, max);
      const lengths: number[] = [];
      let total = 0;
      for (const r of rows) {
        if (r.idx !== from + lengths.length) break;
        lengths.push(r.entry.length);
        total += r.entry.length;
      }
      const out = new Uint8Array(total);
      let o = 0;
      lengths.forEach((n, i) => {
        out.set(rows[i].entry, o);
        o += n;
      });
      return { buf: out.buffer, lengths, transfer: [out.buffer] };
    },
    commit({ oldSize, oldRoot, size, root }: { oldSize: number; oldRoot: Uint8Array; size: number; root: Uint8Array }) {
      return db.transaction(() => {
        const r = cache.st('SELECT integrated_size, root FROM log_state WHERE id = 0').get();
        if (r.integrated_size !== oldSize || !Buffer.from(oldRoot).equals(r.root)) return false;
        cache.st('UPDATE log_state SET integrated_size = ?, root = ? WHERE id = 0').run(size, Buffer.from(root));
        return true;
      })();
    },
    prune() {
      // Integrated entries live in the tiles now; rows below the integrated size are never read.
      cache.st('DELETE FROM log_pending WHERE idx < (SELECT integrated_size FROM log_state WHERE id = 0)').run();
      return true;
    },
    close() {
      statements.clear();
      if (db && db.open) db.close();
      return true;
    },
  };
  parentPort.on('message', (m: { id: number; op: string; args: any }) => {
    try {
      const result = ops[m.op]!(m.args);
      const transfer = result && result.transfer;
      if (transfer) delete result.transfer;
      parentPort.postMessage({ id: m.id, ok: true, result }, transfer || []);
    } catch (e: any) {
      parentPort.postMessage({ id: m.id, ok: false, error: String((e && e.message) || e), code: e && typeof e.code === 'string' ? e.code : undefined });
    }
  });
  /* eslint-enable */
}

/** Bound on entries kept in memory for integration (beyond it, integration reads them back). */
const MAX_RECENT_BYTES = 256 * 1024 * 1024;

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
  /** SQLite's result code name (SQLITE_BUSY, ...), when the driver gave one. */
  code?: string;
}

function pack(entries: readonly Uint8Array[]): { buf: ArrayBuffer; lengths: number[] } {
  let n = 0;
  for (const e of entries) n += e.length;
  const out = new Uint8Array(n);
  let o = 0;
  const lengths = entries.map((e) => {
    out.set(e, o);
    o += e.length;
    return e.length;
  });
  return { buf: out.buffer, lengths };
}

/**
 * The embedded sequencer: SQLite (better-sqlite3) in WAL mode with synchronous=FULL, driven from
 * a worker thread. Callers batch entries (group commit), so one fsync covers many appends. The
 * database is locked exclusively while open: a second process opening the same log fails with
 * ERR_TLOG_LOCKED (several writers share a log through PostgreSQL instead).
 */
export class SqliteSequencer implements Sequencer {
  /** Entries this process sequenced and has not integrated yet, so integration need not read them back. */
  private readonly recent = new Map<number, Uint8Array>();
  private recentBytes = 0;
  private nextId = 0;
  private publishedSize: number | undefined;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: unknown) => void }>();
  private closed = false;

  private constructor(private readonly worker: Worker) {
    worker.on('message', (m: Reply) => {
      const w = this.waiting.get(m.id);
      if (!w) return;
      this.waiting.delete(m.id);
      if (m.ok) w.resolve(m.result);
      else w.reject(new CustodyError('ERR_TLOG_UNAVAILABLE', 'log database operation failed', { detail: { error: (m.error ?? '').slice(0, 200), ...(m.code ? { sqlite: m.code } : {}) } }));
    });
    worker.on('error', (e) => this.failAll(e));
    worker.on('exit', () => this.failAll(new Error('database worker exited')));
    worker.unref();
  }

  static async open(path: string, origin: string): Promise<SqliteSequencer> {
    const driver = createRequire(import.meta.url).resolve('better-sqlite3');
    // execArgv: [] so loader flags of the parent (--import tsx, --input-type=module) do not apply to this plain script.
    const worker = new Worker(`(${workerMain.toString()})()`, { eval: true, workerData: { driver }, execArgv: [] });
    const s = new SqliteSequencer(worker);
    let got: { origin: string };
    try {
      got = await s.call<{ origin: string }>('open', { path, origin, emptyRoot: rfc6962.emptyRoot() });
    } catch (e) {
      await s.close();
      const sqlite = e instanceof CustodyError ? e.detail?.sqlite : undefined;
      if (typeof sqlite === 'string' && sqlite.startsWith('SQLITE_BUSY')) {
        throw new CustodyError('ERR_TLOG_LOCKED', 'the log database is open in another process', { cause: e, detail: { path } });
      }
      throw new CustodyError('ERR_TLOG_UNAVAILABLE', 'cannot open the log database', { cause: e, detail: { path } });
    }
    if (got.origin !== origin) {
      await s.close();
      throw new CustodyError('ERR_TLOG_ORIGIN', 'the database belongs to another log', { detail: { origin: got.origin.slice(0, 200) } });
    }
    return s;
  }

  private failAll(e: unknown): void {
    for (const w of this.waiting.values()) w.reject(new CustodyError('ERR_TLOG_UNAVAILABLE', 'log database worker failed', { cause: e }));
    this.waiting.clear();
  }

  private call<T>(op: string, args: unknown, transfer: ArrayBuffer[] = []): Promise<T> {
    if (this.closed) return Promise.reject(new CustodyError('ERR_TLOG_UNAVAILABLE', 'log database is closed'));
    const id = ++this.nextId;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
      // While requests are outstanding the worker keeps the process alive; otherwise it does not.
      this.worker.ref();
      this.worker.postMessage({ id, op, args }, transfer);
    }).finally(() => {
      if (this.waiting.size === 0) this.worker.unref();
    });
  }

  async sequence(entries: readonly Uint8Array[]): Promise<number> {
    const copies = entries.map((e) => e.slice());
    const p = pack(entries);
    const first = await this.call<number>('sequence', p, [p.buf]);
    if (this.recentBytes < MAX_RECENT_BYTES) {
      copies.forEach((e, i) => this.recent.set(first + i, e));
      for (const e of copies) this.recentBytes += e.length;
    }
    return first;
  }

  /** Entries [from, from + max) from memory if this process has all of them contiguously. */
  private fromRecent(from: number, max: number): Bytes[] | undefined {
    const out: Bytes[] = [];
    for (let i = from; out.length < max; i++) {
      const e = this.recent.get(i);
      if (!e) break;
      out.push(e as Bytes);
    }
    return out.length > 0 ? out : undefined;
  }

  private forgetBelow(size: number): void {
    for (const [i, e] of this.recent) {
      if (i < size) {
        this.recent.delete(i);
        this.recentBytes -= e.length;
      }
    }
  }

  state(): Promise<TreeState & { sequenced: number }> {
    return this.call<TreeState & { sequenced: number }>('state', {});
  }

  async integrate(maxEntries: number, work: (state: TreeState, entries: Bytes[]) => Promise<TreeState>): Promise<{ state: TreeState; advanced: boolean }> {
    const st = await this.state();
    let entries = st.sequenced > st.size ? this.fromRecent(st.size, Math.min(maxEntries, st.sequenced - st.size)) : undefined;
    if (!entries) {
      const { buf, lengths } = await this.call<{ buf: ArrayBuffer; lengths: number[] }>('pending', { from: st.size, max: maxEntries });
      if (lengths.length === 0) return { state: { size: st.size, root: st.root }, advanced: false };
      const all = new Uint8Array(buf);
      entries = [];
      let o = 0;
      for (const n of lengths) {
        entries.push(all.subarray(o, o + n));
        o += n;
      }
    }
    const next = await work({ size: st.size, root: st.root }, entries);
    const committed = await this.call<boolean>('commit', { oldSize: st.size, oldRoot: st.root, size: next.size, root: next.root });
    this.forgetBelow(next.size);
    if (committed) {
      this.call('prune', {}).catch(() => undefined);
      return { state: next, advanced: true };
    }
    // Another process integrated meanwhile; its tiles are byte-identical, keep its state.
    const now = await this.state();
    return { state: { size: now.size, root: now.root }, advanced: !equalBytes(now.root, st.root) };
  }

  // One process owns an SQLite log (the database is locked exclusively at open) and its
  // integrator serializes publication, so the guard can live in memory (no round trip through
  // the worker queue, behind fsync'ing commits). `write` re-reads the published checkpoint file
  // itself, which is also what a restart starts from.
  async publish(size: number, write: () => Promise<boolean>, options: { sameSize?: boolean } = {}): Promise<boolean> {
    if (this.publishedSize !== undefined && (this.publishedSize > size || (this.publishedSize === size && size !== 0 && !options.sameSize))) return false;
    if (!(await write())) return false;
    this.publishedSize = size;
    return true;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.call('close', {}).catch(() => undefined);
    this.closed = true;
    await this.worker.terminate();
  }
}
