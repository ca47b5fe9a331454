import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromUtf8, utf8, type CustodyError } from '@custody/core';
import {
  LogMonitor,
  MemoryTree,
  createEd25519Signer,
  integrate,
  signCheckpoint,
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
  createCosigner,
  createEd25519Verifier,
  decodeEvent,
  generateSignerKey,
  httpLogSource,
  openCheckpoint,
  parseTlogPolicy,
  readEntry,
  rfc6962,
  verifyConsistency,
  verifyInclusion,
  verifyTlogProof,
  verifyCheckpointWithPolicy,
  type CustodyEvent,
  type FetchLike,
} from '@custody/ledger';
import { createEventsNodeHandler, createLogApp } from './http/log-app.js';
import { newWriterKey, parseWriters } from './http/writers.js';
import { HttpAuditSink, listen, openLog } from './open.js';
import { SqliteWitnessStore, createWitnessApp, witnessLogs } from './witness/witness-service.js';
import { FsTileStore } from './storage/tile-store.js';
import { tempDir } from './testing/tmp.js';
import { parseVerifierKey } from '@custody/ledger';

const seeded = (s: number) => (n: number) => new Uint8Array(n).fill(s);
const event = (i: number): CustodyEvent => ({ v: 1, type: 'operator.event', time: '2025-05-01T12:00:00Z', action: 'test', subject: `s-${i}` });

describe('TransparencyLog (SQLite)', async () => {
  const t = tempDir();
  afterAll(() => t.cleanup());
  const key = await generateSignerKey('log.test/a', SIG_TYPE_ED25519, seeded(1));
  const verifier = await createEd25519Verifier(key.vkey);
  const dir = join(t.dir, 'public');

  it('acknowledges concurrent appends durably, with contiguous unique indexes', async () => {
    const { log } = await openLog({ dir, skey: key.skey, integrateIntervalMs: 60_000 });
    const results = await Promise.all(Array.from({ length: 1500 }, (_, i) => log.append(event(i))));
    const idx = results.map((r) => r.index).sort((a, b) => a - b);
    expect(idx).toEqual(Array.from({ length: 1500 }, (_, i) => i));
    await log.integrateNow();
    const note = log.latestCheckpoint()!;
    const cp = await openCheckpoint(note, [verifier]);
    expect(cp.checkpoint.size).toBe(1500);
    // Each acknowledged entry is where its index says, and proves into the checkpoint.
    for (const i of [0, 255, 256, 1000, 1499]) {
      const entry = await readEntry(await import('./storage/tile-store.js').then((m) => new m.FsTileStore(dir)), i, 1500);
      const e = decodeEvent(entry) as Extract<CustodyEvent, { type: 'operator.event' }>;
      const p = await log.proof(i);
      verifyInclusion(i, 1500, rfc6962.leaf(entry), p.proof, cp.checkpoint.rootHash);
      expect(results.find((r) => r.index === i)).toBeTruthy();
      expect(e.subject).toBe(`s-${results.findIndex((r) => r.index === i)}`);
    }
    await log.close();
    expect(existsSync(join(dir, 'tile/entries/005.p/220'))).toBe(true);
  });

  it('reopens from disk and extends consistently', async () => {
    const { log } = await openLog({ dir, skey: key.skey, integrateIntervalMs: 60_000 });
    const before = await openCheckpoint(log.latestCheckpoint()!, [verifier]);
    expect(before.checkpoint.size).toBe(1500);
    const { index } = await log.addEntry(utf8('raw entry'));
    expect(index).toBe(1500);
    await log.integrateNow();
    const after = await openCheckpoint(log.latestCheckpoint()!, [verifier]);
    verifyConsistency(1500, 1501, before.checkpoint.rootHash, after.checkpoint.rootHash, await log.consistency(1500, 1501));
    await expect(log.addEntry(new Uint8Array(65536))).rejects.toMatchObject({ code: 'ERR_TLOG_ENTRY' });
    await expect(log.append({ ...event(1), prompt: 'hello' } as unknown as CustodyEvent)).rejects.toMatchObject({ code: 'ERR_TLOG_EVENT_SECRET' });
    await log.close();
    await expect(log.addEntry(utf8('late'))).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
  });

  it('refuses to start when the published checkpoint is ahead of its database (no rollback)', async () => {
    rmSync(`${dir}.sqlite`);
    rmSync(`${dir}.sqlite-wal`, { force: true });
    rmSync(`${dir}.sqlite-shm`, { force: true });
    await expect(openLog({ dir, skey: key.skey })).rejects.toMatchObject({ code: 'ERR_TLOG_ROLLBACK' });
  });

  it("refuses a database whose tree does not extend the directory's published checkpoint (another run's database): it would sign a fork", async () => {
    const small = join(t.dir, 'small');
    const a = await openLog({ dir: small, skey: key.skey, integrateIntervalMs: 60_000 });
    for (let i = 0; i < 3; i++) await a.log.append(event(i));
    await a.log.integrateNow();
    await a.log.close();
    const big = join(t.dir, 'big');
    const b = await openLog({ dir: big, skey: key.skey, integrateIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) await b.log.append(event(100 + i));
    await b.log.integrateNow();
    await b.log.close();
    const published = readFileSync(join(small, 'checkpoint'));
    await expect(openLog({ dir: small, skey: key.skey, sqlitePath: `${big}.sqlite` })).rejects.toMatchObject({ code: 'ERR_TLOG_SPLIT_VIEW', detail: { published: 3, database: 5 } });
    // The same size with another tree is refused too.
    const same = join(t.dir, 'same');
    const c = await openLog({ dir: same, skey: key.skey, integrateIntervalMs: 60_000 });
    for (let i = 0; i < 3; i++) await c.log.append(event(200 + i));
    await c.log.integrateNow();
    await c.log.close();
    await expect(openLog({ dir: small, skey: key.skey, sqlitePath: `${same}.sqlite` })).rejects.toMatchObject({ code: 'ERR_TLOG_SPLIT_VIEW', detail: { published: 3, database: 3 } });
    expect(readFileSync(join(small, 'checkpoint')).equals(published)).toBe(true);
    // Its own database, grown while the directory was not yet published past it, still opens.
    const again = await openLog({ dir: small, skey: key.skey, integrateIntervalMs: 60_000 });
    await again.log.append(event(9));
    await again.log.integrateNow();
    await again.log.close();
    const reopened = await openLog({ dir: small, skey: key.skey, integrateIntervalMs: 60_000 });
    await reopened.log.close();
  });

  it('refuses a second writer on one tile directory, whatever database it names or path it takes; the lock goes with the first', async () => {
    const shared = join(t.dir, 'one-dir');
    const first = await openLog({ dir: shared, skey: key.skey, integrateIntervalMs: 60_000 });
    symlinkSync(shared, `${shared}-link`);
    // Another database, and the same directory through a symlink (a database beside it, too).
    await expect(openLog({ dir: shared, skey: key.skey, sqlitePath: join(t.dir, 'second.sqlite') })).rejects.toMatchObject({ code: 'ERR_TLOG_LOCKED' });
    await expect(openLog({ dir: `${shared}-link`, skey: key.skey })).rejects.toMatchObject({ code: 'ERR_TLOG_LOCKED' });
    await first.log.append(event(1));
    await first.log.close();
    const next = await openLog({ dir: `${shared}-link`, skey: key.skey, sqlitePath: `${shared}.sqlite`, integrateIntervalMs: 60_000 });
    await next.log.close();
  });

  it('refuses a database that belongs to another origin', async () => {
    const other = await generateSignerKey('log.test/b', SIG_TYPE_ED25519, seeded(2));
    const d2 = join(t.dir, 'two');
    const { log } = await openLog({ dir: d2, skey: key.skey, sqlitePath: join(t.dir, 'shared.sqlite') });
    await log.close();
    await expect(openLog({ dir: d2, skey: other.skey, sqlitePath: join(t.dir, 'shared.sqlite') })).rejects.toMatchObject({ code: 'ERR_TLOG_ORIGIN' });
  });
});

describe('log and witness over HTTP (in process)', async () => {
  const t = tempDir();
  afterAll(() => t.cleanup());
  const key = await generateSignerKey('log.test/http', SIG_TYPE_ED25519, seeded(3));
  const wkeys = await Promise.all([4, 5].map((s, i) => generateSignerKey(`witness.test/w${i}`, SIG_TYPE_COSIGNATURE_V1, seeded(s))));
  const clock = () => new Date('2025-06-01T00:00:00Z');
  const witnessNow = () => Math.floor(clock().getTime() / 1000);
  const stores = wkeys.map((_, i) => new SqliteWitnessStore(join(t.dir, `w${i}.sqlite`)));
  afterAll(() => stores.forEach((s) => s.close()));
  const witnessApps = await Promise.all(
    wkeys.map(async (k, i) => createWitnessApp({ cosigners: [await createCosigner(k.skey, clock)], logs: await witnessLogs([parseVerifierKey(key.vkey)]), store: stores[i]! })),
  );
  const policyText = `log ${key.vkey}\nwitness A ${wkeys[0]!.vkey} http://w0.test\nwitness B ${wkeys[1]!.vkey} http://w1.test\ngroup both all A B\nquorum both\n`;
  const policy = parseTlogPolicy(policyText);
  let w1Down = false;
  const witnessFetch: FetchLike = async (url, init) => {
    const u = new URL(url);
    if (u.host === 'w1.test' && w1Down) throw new Error('ECONNREFUSED');
    const app = u.host === 'w0.test' ? witnessApps[0]! : witnessApps[1]!;
    return app.request(u.pathname, init);
  };

  it('publishes only cosigned checkpoints, serves tiles and a write API, and a monitor follows it', async () => {
    const { log, store } = await openLog({ dir: join(t.dir, 'public'), skey: key.skey, witnessPolicy: policy, fetch: witnessFetch, witnessNow, integrateIntervalMs: 60_000 });
    const app = createLogApp(log, store);
    const logFetch: FetchLike = (url, init) => Promise.resolve(app.request(new URL(url).pathname + new URL(url).search, init));
    const monitor = new LogMonitor({ clock, source: httpLogSource(logFetch, 'http://log.test/'), policy, verifyEntries: true, verifyEvents: true, fetch: witnessFetch });

    const res = await app.request('/events', { method: 'POST', body: JSON.stringify(event(1)) });
    expect(res.status).toBe(200);
    const { index } = (await res.json()) as { index: number };
    expect(index).toBe(0);
    await log.integrateNow();
    const cpRes = await app.request('/checkpoint');
    expect(cpRes.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    const note = await cpRes.text();
    expect(note.split('\n').filter((l) => l.startsWith('\u2014'))).toHaveLength(3);
    const first = await monitor.poll();
    expect(first, JSON.stringify(first)).toEqual([expect.objectContaining({ kind: 'checkpoint' })]);

    // Appends with ?wait=1 answer with a tlog-proof that verifies offline against the policy.
    const waited = app.request('/events?wait=1', { method: 'POST', body: JSON.stringify(event(2)) });
    await new Promise((r) => setTimeout(r, 20));
    await log.integrateNow();
    const body = (await (await waited).json()) as { index: number; proof: string };
    const entry = await readEntry(store, body.index, 2);
    expect(decodeEvent(entry)).toEqual(event(2));
    expect((await verifyTlogProof(body.proof, { entry }, policy, { now: clock() })).witnesses.sort()).toEqual(['A', 'B']);

    // Tiles are static files with the right headers; odd paths never reach the filesystem.
    const tile = await app.request('/tile/0/000.p/2');
    expect(tile.status).toBe(200);
    expect(tile.headers.get('content-type')).toBe('application/octet-stream');
    expect(tile.headers.get('cache-control')).toContain('immutable');
    expect((await app.request('/tile/0/../../../etc/passwd')).status).toBe(404);
    expect((await app.request('/tile/0/x000/000')).status).toBe(404);
    const refused = await app.request('/events', { method: 'POST', body: JSON.stringify({ ...event(3), labels: { secret: 'x' } }) });
    expect(refused.status).toBe(400);
    expect(refused.headers.get('content-type')).toBe('application/problem+json');
    expect(((await refused.json()) as { code: string }).code).toBe('ERR_TLOG_EVENT_SECRET');
    expect((await app.request('/add', { method: 'POST', body: new Uint8Array(70000) })).status).toBe(413);
    expect((await app.request('/proof/99')).status).toBe(404);

    // One witness down: the quorum (both) is not met, so the new checkpoint is not published...
    w1Down = true;
    await log.append(event(4));
    await log.integrateNow();
    expect((await openCheckpoint(await (await app.request('/checkpoint')).text(), [await createEd25519Verifier(key.vkey)])).checkpoint.size).toBe(2);
    // Who waits for it is told it is sequenced, and where (so that it is not appended twice).
    await expect(log.waitForCheckpoint(2, 50, true)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { index: 2, sequenced: true }, message: expect.stringContaining('sequenced at index 2') });
    // Another caller's index (not known to be in this log) is not said to be sequenced.
    await expect(log.waitForCheckpoint(99, 50)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { index: 99 }, message: 'no checkpoint including index 99 was published in time' });
    // ...until it is back; the log catches it up with a consistency proof.
    w1Down = false;
    await log.integrateNow();
    expect((await openCheckpoint(await (await app.request('/checkpoint')).text(), [await createEd25519Verifier(key.vkey)])).checkpoint.size).toBe(3);
    // The AuditSink a remote broker uses: POST /events, typed refusals.
    const sink = new HttpAuditSink('http://log.test/', logFetch);
    expect((await sink.append(event(5))).index).toBe(3);
    await expect(sink.append({ ...event(6), labels: { token: 'x' } })).rejects.toMatchObject({ code: 'ERR_TLOG_EVENT_SECRET' });
    await log.integrateNow();
    const later = await monitor.poll();
    expect(later, JSON.stringify(later)).toEqual([expect.objectContaining({ kind: 'checkpoint', size: 4 })]);
    await log.close();
  });

  it('a restarted log learns the witness size from 409 and continues; witnesses refuse a fork', async () => {
    const { log, store } = await openLog({ dir: join(t.dir, 'public'), skey: key.skey, witnessPolicy: policy, fetch: witnessFetch, witnessNow, integrateIntervalMs: 60_000 });
    await log.addEntry(utf8('after restart'));
    await log.integrateNow();
    expect(log.publishedSize).toBe(5);
    await log.close();
    // A forked log with the same key (a different history at size 4) gets no cosignature.
    const refusals: string[] = [];
    const fork = await openLog({ dir: join(t.dir, 'fork'), skey: key.skey, witnessPolicy: policy, fetch: witnessFetch, witnessNow, integrateIntervalMs: 60_000, onError: (e) => refusals.push(e.code) });
    for (const s of ['x', 'y', 'z', 'w', 'v', 'u']) await fork.log.addEntry(utf8(s));
    await fork.log.integrateNow();
    expect(fork.log.publishedSize).toBe(0);
    await fork.log.close();
    expect(existsSync(join(t.dir, 'fork', 'checkpoint'))).toBe(false);
    expect(refusals).toContain('ERR_TLOG_CONSISTENCY');
    expect(refusals).toContain('ERR_TLOG_QUORUM');
    expect(fromUtf8(await store.readCheckpoint())).toContain('log.test/http\n5\n');
  });
});

describe('review regressions: quorum reachability, one writer, monotonic publication, durable directories, bounded answers', async () => {
  const t = tempDir();
  afterAll(() => t.cleanup());
  const key = await generateSignerKey('log.test/r', SIG_TYPE_ED25519, seeded(7));
  const [wa, wb] = await Promise.all([8, 9].map((s, i) => generateSignerKey(`witness.test/r${i}`, SIG_TYPE_COSIGNATURE_V1, seeded(s))));

  it('refuses at open a witness quorum that the witnesses with URLs cannot meet', async () => {
    const dir = join(t.dir, 'nourl');
    const unreachable = [`witness a ${wa!.vkey}\nquorum a\n`, `witness a ${wa!.vkey} http://a.test\nwitness b ${wb!.vkey}\ngroup g 2 a b\nquorum g\n`];
    for (const text of unreachable) {
      await expect(openLog({ dir, skey: key.skey, witnessPolicy: parseTlogPolicy(text) })).rejects.toMatchObject({ code: 'ERR_TLOG_POLICY' });
    }
    expect(existsSync(join(dir, 'checkpoint'))).toBe(false);
    // A quorum of none needs no reachable witness; the refused opens left the database unlocked.
    const { log } = await openLog({ dir, skey: key.skey, witnessPolicy: parseTlogPolicy(`witness a ${wa!.vkey}\nquorum none\n`), integrateIntervalMs: 60_000 });
    await log.addEntry(utf8('x'));
    await log.integrateNow();
    expect(log.publishedSize).toBe(1);
    await log.close();
  });

  it('locks the log database: a second opener, in this process or another, gets ERR_TLOG_LOCKED', async () => {
    const dir = join(t.dir, 'locked');
    const first = await openLog({ dir, skey: key.skey, integrateIntervalMs: 60_000 });
    await expect(openLog({ dir, skey: key.skey, integrateIntervalMs: 60_000 })).rejects.toMatchObject({ code: 'ERR_TLOG_LOCKED' });
    const repoRoot = resolve(fileURLToPath(import.meta.url), '../../../..');
    const script =
      "const { openLog } = await import('./services/ledger/src/open.ts');" +
      'try { const { log } = await openLog({ dir: process.env.LOG_DIR, skey: process.env.LOG_SKEY }); await log.close(); console.log("OPENED"); } catch (e) { console.log(e.code); }';
    const child = spawnSync(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script], {
      cwd: repoRoot,
      encoding: 'utf8',
      env: { ...process.env, LOG_DIR: dir, LOG_SKEY: key.skey },
      timeout: 60_000,
    });
    expect(child.stdout.trim(), child.stderr).toBe('ERR_TLOG_LOCKED');
    await first.log.addEntry(utf8('still the only writer'));
    await first.log.close();
    // Closed (or killed: the OS drops the lock with the process), the log opens again.
    const again = await openLog({ dir, skey: key.skey, integrateIntervalMs: 60_000 });
    expect(again.log.publishedSize).toBe(1);
    await again.log.close();
  });

  it('never writes its checkpoint over a larger one published while it waited for witnesses', async () => {
    const dir = join(t.dir, 'mono');
    const other = new MemoryTree();
    for (let i = 0; i < 10; i++) other.appendEntry(utf8(`other-${i}`));
    const larger = await signCheckpoint({ origin: 'log.test/r', size: 10, rootHash: await other.root(10), extensions: [] }, [await createEd25519Signer(key.skey)]);
    // The witness is slow: while it "answers", a larger checkpoint appears in the directory.
    const witnessFetch: FetchLike = async (_url, init) => {
      if (String(init?.body).includes('log.test/r\n1\n')) await new FsTileStore(dir).writeCheckpoint(larger);
      return new Response('busy', { status: 503 });
    };
    const policy = parseTlogPolicy(`witness a ${wa!.vkey} http://a.test\nquorum none\n`);
    const { log } = await openLog({ dir, skey: key.skey, witnessPolicy: policy, fetch: witnessFetch, witnessGraceMs: 60_000, integrateIntervalMs: 60_000 });
    await log.addEntry(utf8('mine'));
    await log.integrateNow();
    expect(fromUtf8(readFileSync(join(dir, 'checkpoint')))).toBe(larger);
    expect(log.publishedSize).toBe(10);
    await log.close({ integrate: false });
  });

  it('counts no cosignature whose timestamp is over a minute from its clock (ERR_WITNESS_CLOCK): clients would refuse it', async () => {
    const dir = join(t.dir, 'skew');
    let witnessClock = new Date('2025-06-01T01:00:00Z');
    const witness = createWitnessApp({ cosigners: [await createCosigner(wa!.skey, () => witnessClock)], logs: await witnessLogs([parseVerifierKey(key.vkey)]), store: new SqliteWitnessStore(join(t.dir, 'skew-w.sqlite')) });
    const fetchA: FetchLike = async (url, init) => witness.request(new URL(url).pathname, init);
    const policy = parseTlogPolicy(`log ${key.vkey}\nwitness a ${wa!.vkey} http://a.test\nquorum a\n`);
    const errors: CustodyError[] = [];
    const logNow = () => Math.floor(new Date('2025-06-01T00:00:00Z').getTime() / 1000);
    const { log } = await openLog({ dir, skey: key.skey, witnessPolicy: policy, fetch: fetchA, witnessNow: logNow, integrateIntervalMs: 60_000, onError: (e) => errors.push(e) });
    await log.addEntry(utf8('one'));
    // The witness's clock is an hour ahead: it cosigns, but the log publishes nothing.
    await log.integrateNow();
    expect(log.publishedSize).toBe(0);
    expect(existsSync(join(dir, 'checkpoint'))).toBe(false);
    expect(errors.find((e) => e.code === 'ERR_WITNESS_CLOCK')?.detail).toMatchObject({ witness: 'a', offsetSeconds: 3600, maxSkewSeconds: 60 });
    expect(errors.map((e) => e.code)).toContain('ERR_TLOG_QUORUM');
    // An hour behind, the same.
    witnessClock = new Date('2025-05-31T23:00:00Z');
    await log.addEntry(utf8('two'));
    await log.integrateNow();
    expect(log.publishedSize).toBe(0);
    // Within a minute: published, and a client with the same policy verifies it at that time.
    witnessClock = new Date('2025-06-01T00:00:50Z');
    await log.addEntry(utf8('three'));
    await log.integrateNow();
    expect(log.publishedSize).toBe(3);
    const note = fromUtf8(readFileSync(join(dir, 'checkpoint')));
    await expect(verifyCheckpointWithPolicy(note, policy, { now: new Date('2025-06-01T00:00:00Z') })).resolves.toMatchObject({ witnesses: ['a'] });
    await log.close();
  });

  it('an idle log has its unchanged checkpoint cosigned again every refresh period, so clients bounding the cosignature age keep accepting it', async () => {
    const dir = join(t.dir, 'refresh');
    let at = Date.parse('2025-06-01T00:00:00Z');
    const witness = createWitnessApp({ cosigners: [await createCosigner(wa!.skey, () => new Date(at))], logs: await witnessLogs([parseVerifierKey(key.vkey)]), store: new SqliteWitnessStore(join(t.dir, 'refresh-w.sqlite')) });
    let asked = 0;
    const fetchA: FetchLike = async (url, init) => {
      asked++;
      return witness.request(new URL(url).pathname, init);
    };
    const policy = parseTlogPolicy(`log ${key.vkey}\nwitness a ${wa!.vkey} http://a.test\nquorum a\n`);
    const { log } = await openLog({ dir, skey: key.skey, witnessPolicy: policy, fetch: fetchA, witnessNow: () => Math.floor(at / 1000), witnessRefreshSeconds: 300, integrateIntervalMs: 60_000 });
    await log.addEntry(utf8('one'));
    await log.integrateNow();
    const first = fromUtf8(readFileSync(join(dir, 'checkpoint')));
    // (The empty tree at open was cosigned too.)
    const base = asked;
    const fresh = (now: number) => verifyCheckpointWithPolicy(fromUtf8(readFileSync(join(dir, 'checkpoint'))), policy, { now: new Date(now), maxAgeSeconds: 600 });
    await expect(fresh(at)).resolves.toMatchObject({ witnesses: ['a'] });
    // Idle for less than the period: nothing is asked.
    at += 200_000;
    await log.integrateNow();
    expect(asked).toBe(base);
    // Past it: the same tree, cosigned again with the witness's time now.
    at += 200_000;
    await log.integrateNow();
    expect(asked).toBe(base + 1);
    const second = fromUtf8(readFileSync(join(dir, 'checkpoint')));
    expect(second).not.toBe(first);
    expect(second.split('\n\n')[0]).toBe(first.split('\n\n')[0]);
    expect(log.publishedSize).toBe(1);
    expect(log.stats.refreshed).toBe(1);
    // 700 s after the first cosignature: the first is too old for a 600 s bound, the refreshed one is not.
    at += 300_000;
    await expect(verifyCheckpointWithPolicy(first, policy, { now: new Date(at), maxAgeSeconds: 600 })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    await expect(fresh(at)).resolves.toMatchObject({ witnesses: ['a'] });
    // Growth after a refresh publishes as usual.
    await log.addEntry(utf8('two'));
    await log.integrateNow();
    expect(log.publishedSize).toBe(2);
    await log.close();
  });

  it('publishes once its quorum has cosigned, without waiting for a hung witness it does not need, and does not ask that witness again while it hangs', async () => {
    const dir = join(t.dir, 'hung');
    const clock = () => new Date();
    const apps = await Promise.all(
      [wa!, wb!].map(async (k, i) => createWitnessApp({ cosigners: [await createCosigner(k.skey, clock)], logs: await witnessLogs([parseVerifierKey(key.vkey)]), store: new SqliteWitnessStore(join(t.dir, `hung-w${i}.sqlite`)) })),
    );
    let hung = 0;
    let release: () => void = () => undefined;
    const held = new Promise<void>((r) => (release = r));
    const fetchAB: FetchLike = async (url, init) => {
      const u = new URL(url);
      if (u.host === 'b.test') {
        hung++;
        await held;
        throw new Error('ECONNRESET');
      }
      return apps[0]!.request(u.pathname, init);
    };
    const policy = parseTlogPolicy(`log ${key.vkey}\nwitness a ${wa!.vkey} http://a.test\nwitness b ${wb!.vkey} http://b.test\ngroup any 1 a b\nquorum any\n`);
    const { log } = await openLog({ dir, skey: key.skey, witnessPolicy: policy, fetch: fetchAB, integrateIntervalMs: 60_000 });
    await log.addEntry(utf8('one'));
    await log.integrateNow();
    // Published with a's cosignature while b's request is still out.
    expect(log.publishedSize).toBe(1);
    expect(hung).toBe(1);
    await log.addEntry(utf8('two'));
    await log.integrateNow();
    expect(log.publishedSize).toBe(2);
    expect(hung).toBe(1);
    await expect(verifyCheckpointWithPolicy(fromUtf8(readFileSync(join(dir, 'checkpoint'))), policy, { now: new Date() })).resolves.toMatchObject({ witnesses: ['a'] });
    release();
    await new Promise((r) => setTimeout(r, 10));
    await log.addEntry(utf8('three'));
    await log.integrateNow();
    expect(hung).toBe(2);
    await log.close();
  });

  it('fsyncs the parent of every directory it creates', async () => {
    class RecordingStore extends FsTileStore {
      synced: string[] = [];
      protected override async syncDirs(dirs: Iterable<string>): Promise<void> {
        const list = [...dirs];
        this.synced.push(...list);
        await super.syncDirs(list);
      }
    }
    const dir = join(t.dir, 'fsync', 'public');
    const store = new RecordingStore(dir);
    await store.init();
    expect(new Set(store.synced)).toEqual(new Set([t.dir, join(t.dir, 'fsync'), dir]));
    store.synced = [];
    const r = await integrate({ oldSize: 0, readTile: store.readTile, entries: [utf8('a'), utf8('b'), utf8('c')] });
    await store.writeTiles(r.tiles);
    // New: tile/0, tile/0/000.p, tile/entries, tile/entries/000.p. Synced: their parents and the files' directories.
    expect(new Set(store.synced)).toEqual(new Set(['tile', 'tile/0', 'tile/0/000.p', 'tile/entries', 'tile/entries/000.p'].map((p) => join(dir, p))));
    store.synced = [];
    const r2 = await integrate({ oldSize: 3, readTile: store.readTile, entries: [utf8('d')] });
    await store.writeTiles(r2.tiles);
    // Nothing new to create: only the directories the new files went into.
    expect(new Set(store.synced)).toEqual(new Set(['tile/0/000.p', 'tile/entries/000.p'].map((p) => join(dir, p))));
  });

  it('reads a bounded answer from a remote ledger', async () => {
    let pulled = 0;
    const endless: FetchLike = () =>
      Promise.resolve(
        new Response(
          new ReadableStream<Uint8Array>({
            pull(c) {
              pulled += 1 << 16;
              c.enqueue(new Uint8Array(1 << 16).fill(0x20));
            },
          }),
          { status: 200 },
        ),
      );
    await expect(new HttpAuditSink('http://ledger.test/', endless).append(event(1))).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
    expect(pulled).toBeLessThanOrEqual(4 * (1 << 16));
    for (const index of [-1, 1.5, 2 ** 60]) {
      const odd: FetchLike = () => Promise.resolve(new Response(JSON.stringify({ index }), { status: 200 }));
      await expect(new HttpAuditSink('http://ledger.test/', odd).append(event(1))).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
    }
    const notJson: FetchLike = () => Promise.resolve(new Response('<html>bad gateway</html>', { status: 502 }));
    await expect(new HttpAuditSink('http://ledger.test/', notJson).append(event(1))).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
  });
});

describe('reading entries back: TransparencyLog.entry and HttpAuditSink (entry, proof, connect)', async () => {
  const t = tempDir();
  afterAll(() => t.cleanup());
  const key = await generateSignerKey('log.test/read', SIG_TYPE_ED25519, seeded(7));
  const policy = parseTlogPolicy(`log ${key.vkey}\nquorum none\n`);

  it('entry() waits for the integrator, then returns the bytes the tiles hold; an index never sequenced times out typed', async () => {
    const { log } = await openLog({ dir: join(t.dir, 'a'), skey: key.skey, integrateIntervalMs: 60_000 });
    const { index } = await log.append(event(1));
    let got: Uint8Array | undefined;
    const pending = log.entry(index).then((b) => (got = b));
    await new Promise((r) => setTimeout(r, 50));
    // Sequenced, not yet published: entry() is still waiting.
    expect(got).toBeUndefined();
    await log.integrateNow();
    await pending;
    expect(decodeEvent(got!)).toEqual(event(1));
    await expect(log.entry(5, 100)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
    await expect(log.entry(-1)).rejects.toMatchObject({ code: 'ERR_TLOG_ENTRY' });
    await log.close();
  });

  it('the HTTP sink appends, reads the entry back from the tiles and builds a proof that verifies; before publication it waits, then says so (the same code as the in-process wait)', async () => {
    const { log, store } = await openLog({ dir: join(t.dir, 'b'), skey: key.skey, integrateIntervalMs: 60_000 });
    const app = createLogApp(log, store);
    const logFetch: FetchLike = async (input, init) => app.request(String(input).replace('http://ledger.test', ''), init);
    const sink = await HttpAuditSink.connect('http://ledger.test/', logFetch);
    const { index } = await sink.append(event(2));
    // Nothing published includes it, and nobody integrates: a short wait ends typed.
    await expect(new HttpAuditSink('http://ledger.test/', logFetch, { waitMs: 120 }).entry(index)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
    // Published while the sink polls: it picks the checkpoint up.
    const reading = sink.entry(index);
    setTimeout(() => void log.integrateNow(), 80);
    expect(decodeEvent(await reading)).toEqual(event(2));
    const proof = await sink.proof(index);
    // A proof is never waited for: an index the log has not published is refused at once, even
    // by a sink that would wait ten minutes for an entry (a waiting sink would time this test out).
    await expect(new HttpAuditSink('http://ledger.test/', logFetch, { waitMs: 600_000 }).proof(10_000)).rejects.toMatchObject({ code: 'ERR_TLOG_INCLUSION' });
    const v = await verifyTlogProof(proof, { entry: await sink.entry(index) }, policy, { now: new Date() });
    expect(v.index).toBe(index);
    // A tampered twin: another entry's bytes do not verify under this proof.
    const other = await sink.append(event(3));
    await log.integrateNow();
    await expect(verifyTlogProof(proof, { entry: await sink.entry(other.index) }, policy, { now: new Date() })).rejects.toMatchObject({ code: 'ERR_TLOG_INCLUSION' });
    await log.close();
  });

  it('connect() refuses a URL that is not http(s) and a ledger that does not answer, with typed errors; location masks credentials', async () => {
    await expect(HttpAuditSink.connect('ftp://ledger.test/')).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(HttpAuditSink.connect('not a url')).rejects.toMatchObject({ code: 'ERR_USAGE' });
    const down: FetchLike = () => Promise.reject(new TypeError('fetch failed'));
    await expect(HttpAuditSink.connect('http://ledger.test/', down)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
    const empty: FetchLike = () => Promise.resolve(new Response('not found', { status: 404 }));
    await expect(HttpAuditSink.connect('http://ledger.test/', empty)).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
    // What a service prints of the URL never includes its password.
    expect(new HttpAuditSink('https://writer:s3cret-pass@ledger.test/log/').location).toBe('https://***:***@ledger.test/log/');
    expect(new HttpAuditSink('https://tok3n@ledger.test/').location).toBe('https://***@ledger.test/');
    // A writer key over plain http to another host is flagged (services print a warning); https and loopback are not.
    const k = newWriterKey('gateway').key;
    expect(new HttpAuditSink('http://ledger.example:8470/', undefined, { writerKey: k }).sendsKeyInClear).toBe(true);
    expect(new HttpAuditSink('https://ledger.example/', undefined, { writerKey: k }).sendsKeyInClear).toBe(false);
    expect(new HttpAuditSink('http://127.0.0.1:8470/', undefined, { writerKey: k }).sendsKeyInClear).toBe(false);
    expect(new HttpAuditSink('http://[::1]:8470/', undefined, { writerKey: k }).sendsKeyInClear).toBe(false);
    expect(new HttpAuditSink('http://ledger.example:8470/').sendsKeyInClear).toBe(false);
  });
});

describe('the log served on loopback: POST /events straight from node:http, the rest through the app', async () => {
  const t = tempDir();
  afterAll(() => t.cleanup());
  const key = await generateSignerKey('log.test/served', SIG_TYPE_ED25519, seeded(8));

  it('answers appends as the app route does, refuses bad and oversized events with the same problems, and leaves ?wait=1 and reads to the app', async () => {
    const { log, store } = await openLog({ dir: join(t.dir, 'a'), skey: key.skey, integrateIntervalMs: 50 });
    const app = createLogApp(log, store);
    const handler = createEventsNodeHandler(log);
    const claimed: string[] = [];
    const server = await listen(app, '127.0.0.1', 0, {
      intercept: (req, res) => {
        const took = handler(req, res);
        if (took) claimed.push(`${req.method} ${req.url}`);
        return took;
      },
    });
    try {
      const post = (body: string, path = '/events', headers: Record<string, string> = {}) => fetch(`${server.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...headers } });
      // The same event through the node:http path and through the app: the same answer shape, consecutive indexes.
      const fast = await post(JSON.stringify(event(1)));
      expect(fast.status).toBe(200);
      const a = (await fast.json()) as { index: number; leafHash: string };
      const viaApp = (await (await app.request('/events', { method: 'POST', body: JSON.stringify(event(2)) })).json()) as { index: number; leafHash: string };
      expect(viaApp.index).toBe(a.index + 1);
      const sink = new HttpAuditSink(server.url);
      const entry = await sink.entry(a.index);
      expect(decodeEvent(entry)).toEqual(event(1));
      expect(a.leafHash).toBe(Buffer.from(rfc6962.leaf(entry)).toString('base64'));
      // Refusals: the app's problem documents and statuses.
      const notJson = await post('{not json');
      expect([notJson.status, notJson.headers.get('content-type'), ((await notJson.json()) as { code: string }).code]).toEqual([400, 'application/problem+json', 'ERR_TLOG_EVENT']);
      const secret = await post(JSON.stringify({ ...event(3), labels: { token: 'x' } }));
      expect([secret.status, ((await secret.json()) as { code: string }).code]).toEqual([400, 'ERR_TLOG_EVENT_SECRET']);
      const big = await post(JSON.stringify({ ...event(4), subject: 'x'.repeat(70 * 1024) }));
      expect([big.status, ((await big.json()) as { code: string }).code]).toEqual([413, 'ERR_INPUT_TOO_LARGE']);
      // Chunked, no Content-Length: refused by what arrives.
      const chunks = new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < 20; i++) c.enqueue(new Uint8Array(8 * 1024).fill(0x20));
          c.close();
        },
      });
      const streamed = await fetch(`${server.url}/events`, { method: 'POST', body: chunks, duplex: 'half' } as RequestInit);
      expect([streamed.status, ((await streamed.json()) as { code: string }).code]).toEqual([413, 'ERR_INPUT_TOO_LARGE']);
      // ?wait=1 is the app's: it answers with a proof once a checkpoint includes the entry.
      const waited = (await (await post(JSON.stringify(event(5)), '/events?wait=1')).json()) as { index: number; proof?: string };
      expect(waited.proof).toContain(`index ${waited.index}`);
      expect((await fetch(`${server.url}/checkpoint`)).status).toBe(200);
      // The node:http path took every plain append and refusal; the app the rest.
      expect(claimed).toEqual(Array.from({ length: 5 }, () => 'POST /events'));
      // Nothing that was refused reached the log.
      await log.integrateNow();
      const size = (await openCheckpoint(await (await fetch(`${server.url}/checkpoint`)).text(), [await createEd25519Verifier(key.vkey)])).checkpoint.size;
      expect(size).toBe(3);
    } finally {
      await server.close();
      await log.close({ integrate: false });
    }
  });
});

describe('a served log with a writers list: appends need a writer key, reads stay public', async () => {
  const t = tempDir();
  afterAll(() => t.cleanup());
  const key = await generateSignerKey('log.test/writers', SIG_TYPE_ED25519, seeded(10));

  it('refuses appends without a key or with a wrong one on both write paths, admits the writers, and a sink finds out at connect', async () => {
    const { log, store } = await openLog({ dir: join(t.dir, 'a'), skey: key.skey, integrateIntervalMs: 50 });
    const broker = newWriterKey('broker');
    const stranger = newWriterKey('broker');
    const writers = parseWriters(broker.line);
    const server = await listen(createLogApp(log, store, { writers }), '127.0.0.1', 0, { intercept: createEventsNodeHandler(log, { writers }) });
    try {
      const post = (path: string, body: string, token?: string) =>
        fetch(`${server.url}${path}`, { method: 'POST', body, headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) } });
      const codeOf = async (r: Response) => [r.status, ((await r.json()) as { code?: string }).code];
      for (const path of ['/events', '/events?wait=1', '/add']) {
        expect(await codeOf(await post(path, JSON.stringify(event(1))))).toEqual([401, 'ERR_AUTH_REQUIRED']);
        expect(await codeOf(await post(path, JSON.stringify(event(1)), stranger.key))).toEqual([401, 'ERR_AUTH_INVALID']);
      }
      // A 401 names the scheme it wants, on both paths.
      expect((await post('/events', JSON.stringify(event(1)))).headers.get('www-authenticate')).toBe('Bearer realm="custody-log"');
      expect((await post('/add', 'x')).headers.get('www-authenticate')).toBe('Bearer realm="custody-log"');
      // A web page's write is refused even with a writer key: browsers mark theirs (Origin, Sec-Fetch-Site).
      for (const path of ['/events', '/add']) {
        for (const mark of [{ origin: 'http://page.example' }, { 'sec-fetch-site': 'cross-site' }] as Record<string, string>[]) {
          const r = await fetch(`${server.url}${path}`, { method: 'POST', body: JSON.stringify(event(1)), headers: { authorization: `Bearer ${broker.key}`, ...mark } });
          expect(await codeOf(r)).toEqual([400, 'ERR_INPUT_UNSUPPORTED']);
        }
      }
      expect((await post('/events', JSON.stringify(event(1)), broker.key)).status).toBe(200);
      expect((await post('/add', 'raw entry', broker.key)).status).toBe(200);
      // Reads need nothing.
      expect((await fetch(`${server.url}/checkpoint`)).status).toBe(200);
      // A sink learns at connect whether it may write; appends carry its key.
      await expect(HttpAuditSink.connect(server.url)).rejects.toMatchObject({ code: 'ERR_AUTH_REQUIRED' });
      await expect(HttpAuditSink.connect(server.url, undefined, { writerKey: stranger.key })).rejects.toMatchObject({ code: 'ERR_AUTH_INVALID' });
      const sink = await HttpAuditSink.connect(server.url, undefined, { writerKey: broker.key });
      const { index } = await sink.append(event(2));
      expect(decodeEvent(await sink.entry(index))).toEqual(event(2));
      sink.close();
      // Only the three admitted appends are in the log.
      await log.integrateNow();
      expect((await openCheckpoint(await (await fetch(`${server.url}/checkpoint`)).text(), [await createEd25519Verifier(key.vkey)])).checkpoint.size).toBe(3);
    } finally {
      await server.close();
      await log.close({ integrate: false });
    }
  });
});
