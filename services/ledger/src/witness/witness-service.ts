import Database from 'better-sqlite3';
import { Hono } from 'hono';
import { CustodyError, type Bytes } from '@custody/core';
import {
  MAX_ADD_CHECKPOINT_BODY,
  Witness,
  createEd25519Verifier,
  originHash,
  type NoteSigner,
  type NoteVerifier,
  type VerifierKey,
  type WitnessRecord,
  type WitnessStore,
} from '@custody/ledger';
import { problem, readBodyLimited } from '../http/problem.js';

/** Witness state in SQLite; compare-and-set is one IMMEDIATE transaction, so it is atomic across processes too. */
export class SqliteWitnessStore implements WitnessStore {
  private readonly db: Database.Database;
  private readonly cas: (origin: string, expected: number, next: WitnessRecord) => boolean;

  constructor(path: string) {
    let db: Database.Database | undefined;
    try {
      db = new Database(path);
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      db.pragma('busy_timeout = 5000');
      db.exec('CREATE TABLE IF NOT EXISTS witness_latest (origin TEXT PRIMARY KEY, size INTEGER NOT NULL, root BLOB NOT NULL, checkpoint TEXT NOT NULL)');
      this.db = db;
    } catch (e) {
      // A file that is not a database (or a damaged one) fails here, at its first read, not at open.
      db?.close();
      const sqlite = (e as { code?: unknown }).code;
      const why = sqlite === 'SQLITE_NOTADB' || (typeof sqlite === 'string' && sqlite.startsWith('SQLITE_CORRUPT')) ? 'it is not a SQLite database, or it is damaged' : typeof sqlite === 'string' ? sqlite : 'error';
      throw new CustodyError('ERR_WITNESS_UNAVAILABLE', `cannot open the witness database ${path} (${why})`, { cause: e, detail: { path, ...(typeof sqlite === 'string' ? { sqlite } : {}) } });
    }
    const get = this.db.prepare('SELECT size FROM witness_latest WHERE origin = ?').pluck();
    const put = this.db.prepare(
      'INSERT INTO witness_latest (origin, size, root, checkpoint) VALUES (?, ?, ?, ?) ON CONFLICT(origin) DO UPDATE SET size = excluded.size, root = excluded.root, checkpoint = excluded.checkpoint',
    );
    const tx = this.db.transaction((origin: string, expected: number, next: WitnessRecord) => {
      const cur = (get.get(origin) as number | undefined) ?? 0;
      if (cur !== expected) return false;
      put.run(origin, next.size, Buffer.from(next.rootHash), next.checkpoint);
      return true;
    });
    this.cas = (o, e, n) => tx.immediate(o, e, n);
  }

  get(origin: string): Promise<WitnessRecord | undefined> {
    const row = this.db.prepare('SELECT size, root, checkpoint FROM witness_latest WHERE origin = ?').get(origin) as
      | { size: number; root: Buffer; checkpoint: string }
      | undefined;
    if (!row) return Promise.resolve(undefined);
    const rootHash: Bytes = new Uint8Array(row.root);
    return Promise.resolve({ size: row.size, rootHash, checkpoint: row.checkpoint });
  }

  compareAndSet(origin: string, expectedSize: number, next: WitnessRecord): Promise<boolean> {
    try {
      return Promise.resolve(this.cas(origin, expectedSize, next));
    } catch (e) {
      return Promise.reject(new CustodyError('ERR_WITNESS_UNAVAILABLE', 'witness state could not be saved', { cause: e }));
    }
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}

/** Builds the trusted-log map a witness needs from log verifier keys (origin = key name). */
export async function witnessLogs(keys: readonly VerifierKey[]): Promise<Map<string, NoteVerifier[]>> {
  const logs = new Map<string, NoteVerifier[]>();
  for (const k of keys) {
    const list = logs.get(k.name) ?? [];
    list.push(await createEd25519Verifier(k));
    logs.set(k.name, list);
  }
  return logs;
}

/**
 * C2SP tlog-witness over HTTP: `POST /add-checkpoint` and the monitoring endpoint
 * `GET /<sha256(origin) hex>/checkpoint`.
 */
export function createWitnessApp(opts: { cosigners: NoteSigner[]; logs: Map<string, NoteVerifier[]>; store: WitnessStore }): Hono {
  const witness = new Witness(opts);
  const byHash = new Map([...opts.logs.keys()].map((o) => [originHash(o), o]));
  const app = new Hono();
  app.onError((e) => problem(e));
  app.post('/add-checkpoint', async (c) => {
    const body = await readBodyLimited(c.req.raw, MAX_ADD_CHECKPOINT_BODY);
    const r = await witness.addCheckpoint(body);
    return c.body(r.body, r.status, { 'content-type': r.contentType });
  });
  app.get('/:hash/checkpoint', async (c) => {
    const origin = byHash.get(c.req.param('hash'));
    const latest = origin === undefined ? undefined : await witness.latest(origin);
    if (latest === undefined) return c.body('not found\n', 404, { 'content-type': 'text/plain; charset=utf-8' });
    return c.body(latest, 200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache, max-age=0' });
  });
  app.get('/healthz', (c) => c.json({ ok: true, logs: opts.logs.size }));
  return app;
}
