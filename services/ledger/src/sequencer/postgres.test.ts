import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import pgDriver from 'pg';
import { fromUtf8, utf8 } from '@custody/core';
import {
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
  createEd25519Verifier,
  generateSignerKey,
  openCheckpoint,
  parseTlogPolicy,
  readEntry,
  rfc6962,
  verifyInclusion,
  type FetchLike,
} from '@custody/ledger';
import { openLog } from '../open.js';
import { postgresUnavailableReason, startPostgres, type TestPostgres } from '../testing/postgres.js';
import { tempDir } from '../testing/tmp.js';
import { FsTileStore } from '../storage/tile-store.js';
import { PostgresSequencer } from './postgres.js';

const skip = postgresUnavailableReason();
if (skip) console.warn(`SKIPPED PostgreSQL sequencer tests: ${skip}`);

describe.skipIf(skip !== undefined)('PostgreSQL sequencing: several writers share one log', () => {
  let pg: TestPostgres;
  const t = tempDir();
  beforeAll(() => {
    pg = startPostgres();
  });
  afterAll(() => {
    pg?.stop();
    t.cleanup();
  });

  it('gives gap-free unique indexes across writers, one integrator at a time, and one consistent tree', async () => {
    const key = await generateSignerKey('log.test/pg', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(7));
    const dir = join(t.dir, 'public');
    const writers = await Promise.all([0, 1, 2].map(() => openLog({ dir, skey: key.skey, postgres: pg.url, integrateIntervalMs: 60_000 })));
    const sent: { writer: number; i: number; index: number }[] = [];
    await Promise.all(
      writers.map(async ({ log }, w) => {
        const acks = await Promise.all(Array.from({ length: 400 }, (_, i) => log.addEntry(utf8(`w${w}-${i}`)).then((r) => ({ writer: w, i, index: r.index }))));
        sent.push(...acks);
        // Writers integrate concurrently; the advisory lock lets one through at a time.
        await Promise.all(writers.map((x) => x.log.integrateNow()));
      }),
    );
    await Promise.all(writers.map((x) => x.log.integrateNow()));
    expect(sent.map((s) => s.index).sort((a, b) => a - b)).toEqual(Array.from({ length: 1200 }, (_, i) => i));
    const store = new FsTileStore(dir);
    const cp = (await openCheckpoint(await store.readCheckpoint(), [await createEd25519Verifier(key.vkey)])).checkpoint;
    expect(cp.size).toBe(1200);
    for (const s of sent.filter((_, k) => k % 97 === 0)) {
      const entry = await readEntry(store, s.index, cp.size);
      expect(fromUtf8(entry)).toBe(`w${s.writer}-${s.i}`);
      // Every writer knows the latest checkpoint, whoever published it.
      const p = await writers[s.writer]!.log.proof(s.index);
      expect(p.checkpoint).toBe(fromUtf8(await store.readCheckpoint()));
      verifyInclusion(s.index, cp.size, rfc6962.leaf(entry), p.proof, cp.rootHash);
    }
    await Promise.all(writers.map((x) => x.log.close()));
    // State survives in PostgreSQL: a fresh writer continues at 1200.
    const again = await openLog({ dir, skey: key.skey, postgres: pg.url, integrateIntervalMs: 60_000 });
    expect((await again.log.addEntry(utf8('next'))).index).toBe(1200);
    await again.log.close();
  });

  it('never publishes over a larger checkpoint file, even when the database row lags behind it', async () => {
    const key = await generateSignerKey('log.test/pgmono', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(8));
    const wkey = await generateSignerKey('witness.test/pgmono', SIG_TYPE_COSIGNATURE_V1, (n) => new Uint8Array(n).fill(9));
    const dir = join(t.dir, 'mono');
    const verifier = await createEd25519Verifier(key.vkey);
    const b = await openLog({ dir, skey: key.skey, postgres: pg.url, integrateIntervalMs: 60_000 });
    // While writer A waits for its witness, writer B publishes a larger tree, and then the
    // database row loses that publication (as if B's COMMIT had failed after the rename).
    let raced = false;
    const slowWitness: FetchLike = async (_url, init) => {
      if (!raced && String(init?.body).includes('log.test/pgmono\n1\n')) {
        raced = true;
        for (let i = 0; i < 4; i++) await b.log.addEntry(utf8(`b${i}`));
        await b.log.integrateNow();
        const c = new pgDriver.Client({ connectionString: pg.url });
        await c.connect();
        await c.query('UPDATE tlog_published SET size = 0 WHERE origin = $1', ['log.test/pgmono']);
        await c.end();
      }
      return new Response('busy', { status: 503 });
    };
    const policy = parseTlogPolicy(`witness w ${wkey.vkey} http://w.test\nquorum none\n`);
    // (The witness is optional under quorum none: A waits for its answer, however slow, so that B publishes meanwhile.)
    const a = await openLog({ dir, skey: key.skey, postgres: pg.url, witnessPolicy: policy, fetch: slowWitness, witnessGraceMs: 60_000, integrateIntervalMs: 60_000 });
    await a.log.addEntry(utf8('a0'));
    await a.log.integrateNow();
    expect(raced).toBe(true);
    const store = new FsTileStore(dir);
    expect((await openCheckpoint(await store.readCheckpoint(), [verifier])).checkpoint.size).toBe(5);
    expect(a.log.publishedSize).toBe(5);
    await Promise.all([a.log.close({ integrate: false }), b.log.close({ integrate: false })]);
  });

  it('publishes a size once, again only with sameSize (fresh cosignatures of the same tree), never a smaller one', async () => {
    const seq = await PostgresSequencer.open(pg.url, 'log.test/same-size');
    try {
      let writes = 0;
      const write = () => Promise.resolve(++writes > 0);
      expect(await seq.publish(3, write)).toBe(true);
      expect(await seq.publish(3, write)).toBe(false);
      expect(await seq.publish(3, write, { sameSize: true })).toBe(true);
      expect(await seq.publish(2, write, { sameSize: true })).toBe(false);
      expect(writes).toBe(2);
    } finally {
      await seq.close();
    }
  });

  it('reports an unreachable database as ERR_TLOG_UNAVAILABLE', async () => {
    await expect(PostgresSequencer.open('postgresql://nobody@/postgres?host=/nonexistent-socket-dir', 'log.test/none')).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
  });

  it('a connection the server ends while held (between two queries) fails that call, not the process; the next call works', async () => {
    const seq = await PostgresSequencer.open(pg.url, 'log.test/terminated');
    try {
      // publish() holds its client across `write`: end that backend from another connection meanwhile.
      const publishing = seq.publish(1, async () => {
        const admin = new pgDriver.Client({ connectionString: pg.url });
        await admin.connect();
        await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'UPDATE tlog_published%'");
        await admin.end();
        // Give the held client time to see its connection end (its 'error' event) before COMMIT.
        await new Promise((r) => setTimeout(r, 200));
        return true;
      });
      await expect(publishing).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
      expect(await seq.sequence([utf8('after')])).toBe(0);
    } finally {
      await seq.close();
    }
  });
});
