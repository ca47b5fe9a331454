import { afterAll, describe, expect, it } from 'vitest';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fromUtf8, utf8 } from '@custody/core';
import {
  LogMonitor,
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
  type CustodyEvent,
  type FetchLike,
} from '@custody/ledger';
import { createLogApp } from './http/log-app.js';
import { HttpAuditSink, openLog } from './open.js';
import { SqliteWitnessStore, createWitnessApp, witnessLogs } from './witness/witness-service.js';
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
    const { log, store } = await openLog({ dir: join(t.dir, 'public'), skey: key.skey, witnessPolicy: policy, fetch: witnessFetch, integrateIntervalMs: 60_000 });
    const app = createLogApp(log, store);
    const logFetch: FetchLike = (url, init) => Promise.resolve(app.request(new URL(url).pathname + new URL(url).search, init));
    const monitor = new LogMonitor({ source: httpLogSource(logFetch, 'http://log.test/'), policy, verifyEntries: true, verifyEvents: true, fetch: witnessFetch });

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
    expect((await verifyTlogProof(body.proof, { entry }, policy)).witnesses.sort()).toEqual(['A', 'B']);

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
    const { log, store } = await openLog({ dir: join(t.dir, 'public'), skey: key.skey, witnessPolicy: policy, fetch: witnessFetch, integrateIntervalMs: 60_000 });
    await log.addEntry(utf8('after restart'));
    await log.integrateNow();
    expect(log.publishedSize).toBe(5);
    await log.close();
    // A forked log with the same key (a different history at size 4) gets no cosignature.
    const refusals: string[] = [];
    const fork = await openLog({ dir: join(t.dir, 'fork'), skey: key.skey, witnessPolicy: policy, fetch: witnessFetch, integrateIntervalMs: 60_000, onError: (e) => refusals.push(e.code) });
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
