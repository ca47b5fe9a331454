import { describe, expect, it } from 'vitest';
import { CustodyError, fixedClock, fromBase64, toBase64, utf8 } from '@custody/core';
import { LogMonitor } from './monitor.js';
import { parseTlogPolicy } from '../policy/policy.js';
import { MemoryTiledLog } from '../testing/memory-log.js';
import { testLogKey, testWitnessKey } from '../testing/keys.js';
import { signatureLine } from '../note/note.js';
import { encodeEvent } from '../events/events.js';
import { originHash } from '../witness/origin-hash.js';
import { mapLogSource } from '../testing/fs-source.js';

// Test witnesses sign at 2025-06-01T00:00:00Z; the monitor checks a little later.
const clock = fixedClock('2025-06-01T00:05:00Z');
const ev = (i: number) => encodeEvent({ v: 1, type: 'operator.event', time: '2025-05-01T12:00:00Z', action: 'test', subject: `s${i}` });

describe('log monitor', async () => {
  const key = await testLogKey('log.example/m', 31);
  const wit = await testWitnessKey('witness.example/m', 32);
  const policy = parseTlogPolicy(`log ${key.vkey}\nwitness W ${wit.vkey} https://w.example/\nquorum W\n`);
  const cosign = async (text: Uint8Array) => signatureLine(wit.signer.name, wit.signer.keyId, await wit.signer.sign(text)).line + '\n';

  it('follows growth, verifying signatures, quorum, tiles, entries and consistency', async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(Array.from({ length: 300 }, (_, i) => ev(i)));
    await log.publish(cosign);
    const m = new LogMonitor({ clock, source: log.source(), policy, verifyEntries: true, verifyEvents: true });
    expect(await m.poll()).toEqual([expect.objectContaining({ kind: 'checkpoint', size: 300, witnesses: ['W'], newEntries: 300 })]);
    expect(await m.poll()).toEqual([{ kind: 'unchanged', size: 300 }]);
    await log.append(Array.from({ length: 20 }, (_, i) => ev(300 + i)));
    await log.publish(cosign);
    expect(await m.poll()).toEqual([expect.objectContaining({ kind: 'checkpoint', size: 320, newEntries: 20 })]);
    expect(m.current!.size).toBe(320);
  });

  it('reports an unwitnessed checkpoint, a rollback and a split view', async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(['a', 'b', 'c'].map((s) => utf8(s)));
    await log.publish(cosign);
    const m = new LogMonitor({ clock, source: log.source(), policy });
    await m.poll();
    await log.append(['d']);
    await log.publish();
    expect(await m.poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_QUORUM' })]);

    // Rollback: the log now serves a smaller tree.
    const small = new MemoryTiledLog('log.example/m', key.signer);
    await small.append(['a', 'b']);
    await small.publish(cosign);
    const m2 = new LogMonitor({ clock, source: small.source(), policy, state: m.current! });
    expect(await m2.poll()).toEqual([expect.objectContaining({ kind: 'rollback', code: 'ERR_TLOG_ROLLBACK', seenSize: 3, size: 2 })]);

    // Split view: same signer, different history of the same size, then of a larger size.
    const fork = new MemoryTiledLog('log.example/m', key.signer);
    await fork.append(['a', 'b', 'X']);
    await fork.publish(cosign);
    const m3 = new LogMonitor({ clock, source: fork.source(), policy, state: m.current! });
    expect(await m3.poll()).toEqual([expect.objectContaining({ kind: 'split-view', code: 'ERR_TLOG_SPLIT_VIEW' })]);
    await fork.append(['Y', 'Z']);
    await fork.publish(cosign);
    expect(await m3.poll()).toEqual([expect.objectContaining({ kind: 'split-view', code: 'ERR_TLOG_SPLIT_VIEW' })]);
  });

  it('reports tiles that do not match the signed root and entries that do not match tiles', async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(Array.from({ length: 10 }, (_, i) => ev(i)));
    await log.publish(cosign);
    const good = new Map(log.files);
    log.files.set('tile/0/000.p/10', new Uint8Array(320));
    expect(await new LogMonitor({ clock, source: log.source(), policy }).poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_TILE' })]);
    for (const [k, v] of good) log.files.set(k, v);
    const bundle = log.files.get('tile/entries/000.p/10')!.slice();
    bundle[5]! ^= 1;
    log.files.set('tile/entries/000.p/10', bundle);
    expect(await new LogMonitor({ clock, source: log.source(), policy, verifyEntries: true }).poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_ENTRY' })]);
  });

  it('without verifyEntries still finds a full level-0 tile damaged away from the right edge (its entries could not be proved)', async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(Array.from({ length: 300 }, (_, i) => ev(i)));
    await log.publish(cosign);
    expect(await new LogMonitor({ clock, source: log.source(), policy }).poll()).toEqual([expect.objectContaining({ kind: 'checkpoint', size: 300 })]);
    const good = log.files.get('tile/0/000')!;
    // One flipped byte: the right edge (tile 1 and the level-1 tile) still hashes to the root.
    const flipped = good.slice();
    flipped[100]! ^= 1;
    log.files.set('tile/0/000', flipped);
    expect(await new LogMonitor({ clock, source: log.source(), policy }).poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: expect.stringMatching(/^ERR_TLOG_(INCLUSION|TILE)$/) })]);
    // Truncated.
    log.files.set('tile/0/000', good.slice(0, 100));
    expect(await new LogMonitor({ clock, source: log.source(), policy }).poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_TILE' })]);
    log.files.set('tile/0/000', good);
    expect(await new LogMonitor({ clock, source: log.source(), policy }).poll()).toEqual([expect.objectContaining({ kind: 'checkpoint', size: 300 })]);
  });

  it("compares with witnesses' latest checkpoints and flags a split view shown to them", async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(['a', 'b', 'c', 'd']);
    await log.publish(cosign);
    const fork = new MemoryTiledLog('log.example/m', key.signer);
    await fork.append(['a', 'b', 'c', 'Q', 'R']);
    const forkNote = await fork.publish(cosign);
    let served = '';
    const fetchFn = (url: string) =>
      Promise.resolve(url === `https://w.example/${originHash('log.example/m')}/checkpoint` ? new Response(served, { status: 200 }) : new Response('', { status: 404 }));
    served = forkNote;
    // Without the tiles of the witness's (larger) tree the views cannot be compared yet...
    const m0 = new LogMonitor({ clock, source: log.source(), policy, fetch: fetchFn });
    expect(await m0.poll()).toContainEqual(expect.objectContaining({ kind: 'unavailable', code: 'ERR_TLOG_TILE', source: 'witness W' }));
    // ...and once the log serves them (it signed that tree), the proof fails: a split view.
    log.files.set('tile/0/000.p/5', fork.files.get('tile/0/000.p/5')!);
    const m = new LogMonitor({ clock, source: log.source(), policy, fetch: fetchFn });
    const findings = await m.poll();
    expect(findings).toContainEqual(expect.objectContaining({ kind: 'split-view', code: 'ERR_TLOG_SPLIT_VIEW', source: 'witness W' }));
    // An honest witness view (an older size of the same log) is fine.
    const older = new MemoryTiledLog('log.example/m', key.signer);
    await older.append(['a', 'b']);
    served = await older.publish(cosign);
    await log.publish(cosign);
    const m2 = new LogMonitor({ clock, source: log.source(), policy, fetch: fetchFn });
    expect((await m2.poll()).map((f) => f.kind)).toEqual(['checkpoint']);
  });

  it('does not count a future-dated cosignature, and with maxAgeSeconds flags a frozen log', async () => {
    expect(() => new LogMonitor({ source: new MemoryTiledLog('log.example/m', key.signer).source(), policy } as unknown as ConstructorParameters<typeof LogMonitor>[0])).toThrowError(
      expect.objectContaining({ code: 'ERR_USAGE' }) as Error,
    );
    const late = await testWitnessKey('witness.example/m', 32, fixedClock('2099-01-01T00:00:00Z'));
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(['a', 'b']);
    await log.publish(async (text) => signatureLine(late.signer.name, late.signer.keyId, await late.signer.sign(text)).line + '\n');
    expect(await new LogMonitor({ clock, source: log.source(), policy }).poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_QUORUM' })]);
    await log.publish(cosign);
    const m = new LogMonitor({ clock, source: log.source(), policy, maxAgeSeconds: 3600 });
    expect((await m.poll()).map((f) => f.kind)).toEqual(['checkpoint']);
    // The log stops publishing: a day later its only cosignature is too old.
    const dayLater = new LogMonitor({ clock: fixedClock('2025-06-02T00:05:00Z'), source: log.source(), policy, maxAgeSeconds: 3600, state: m.current! });
    expect(await dayLater.poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_QUORUM' })]);
  });

  it("reports the log's tiles being unavailable during a witness comparison as unavailable, not a split view", async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(Array.from({ length: 300 }, (_, i) => `e${i}`));
    const logNote = await log.publish(cosign);
    await log.append(Array.from({ length: 50 }, (_, i) => `f${i}`));
    const witnessNote = await log.publish(cosign);
    // The witness saw the newer, consistent checkpoint; the log's CDN still serves the older one.
    log.files.set('checkpoint', utf8(logNote));
    const src = log.source();
    let down = true;
    const source = { readCheckpoint: () => src.readCheckpoint(), readTile: (t: { level: number | 'entries'; index: number; width: number }) => (down && t.width === 94 ? Promise.reject(new CustodyError('ERR_TLOG_UNAVAILABLE', 'timeout')) : src.readTile(t)) };
    const fetchFn = () => Promise.resolve(new Response(witnessNote, { status: 200 }));
    const m = new LogMonitor({ clock, source, policy, fetch: fetchFn });
    expect(await m.poll()).toEqual([
      expect.objectContaining({ kind: 'checkpoint', size: 300 }),
      expect.objectContaining({ kind: 'unavailable', code: 'ERR_TLOG_UNAVAILABLE', source: 'witness W' }),
    ]);
    // A missing tile is also "cannot compare".
    const m404 = new LogMonitor({ clock, source: { readCheckpoint: () => src.readCheckpoint(), readTile: (t) => (t.width === 94 ? Promise.reject(new CustodyError('ERR_TLOG_TILE', 'tile not found')) : src.readTile(t)) }, policy, fetch: fetchFn });
    expect((await m404.poll()).map((f) => f.kind)).toEqual(['checkpoint', 'unavailable']);
    // Once the tiles are served the views compare as consistent.
    down = false;
    expect((await m.poll()).map((f) => f.kind)).toEqual(['unchanged']);
    // A tile that is served but proves nothing consistent is still an alarm.
    const bad = new Map(log.files);
    bad.set('tile/0/001.p/94', new Uint8Array(94 * 32));
    const forged = mapLogSource(bad);
    const m3 = new LogMonitor({ clock, source: forged, policy, fetch: fetchFn });
    expect(await m3.poll()).toEqual([expect.objectContaining({ kind: 'checkpoint' }), expect.objectContaining({ kind: 'split-view', code: 'ERR_TLOG_SPLIT_VIEW', source: 'witness W' })]);
  });

  it('a witness answer that is not a checkpoint the log signed for this origin is invalid whatever its code; only not getting an answer is unavailable', async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(['a', 'b', 'c']);
    const note = await log.publish(cosign);
    const other = new MemoryTiledLog('other.example/m', (await testLogKey('other.example/m', 33)).signer);
    await other.append(['a']);
    const otherNote = await other.publish();
    const answers: [string, string | Uint8Array<ArrayBuffer>, string][] = [
      ['a malformed note', 'garbage', 'ERR_NOTE_MALFORMED'],
      ['a malformed checkpoint body', note.replace('\n3\n', '\n03\n'), 'ERR_TLOG_CHECKPOINT'],
      ['not UTF-8', new Uint8Array([0xff, 0xfe, 0x0a, 0x0a]), 'ERR_INPUT_MALFORMED'],
      ["another log's checkpoint", otherNote, 'ERR_TLOG_ORIGIN'],
      ['a bad log signature', note.replace(/^— log\.example\/m (\S+)$/m, (_l, sig: string) => `— log.example/m ${toBase64(fromBase64(sig).map((x, i) => (i === 10 ? x ^ 1 : x)))}`), 'ERR_NOTE_SIGNATURE'],
    ];
    for (const [name, served, code] of answers) {
      const fetchFn = () => Promise.resolve(new Response(served, { status: 200 }));
      const findings = await new LogMonitor({ clock, source: log.source(), policy, fetch: fetchFn }).poll();
      expect(findings, name).toEqual([expect.objectContaining({ kind: 'checkpoint' }), expect.objectContaining({ kind: 'invalid', code, source: 'witness W' })]);
    }
    for (const fetchFn of [() => Promise.resolve(new Response('', { status: 500 })), () => Promise.reject(new TypeError('fetch failed'))]) {
      const findings = await new LogMonitor({ clock, source: log.source(), policy, fetch: fetchFn }).poll();
      expect(findings).toEqual([expect.objectContaining({ kind: 'checkpoint' }), expect.objectContaining({ kind: 'unavailable', code: 'ERR_WITNESS_UNAVAILABLE', source: 'witness W' })]);
    }
  });

  it("reads at most a note's size from a witness, however much it sends", async () => {
    const log = new MemoryTiledLog('log.example/m', key.signer);
    await log.append(['a']);
    await log.publish(cosign);
    let pulled = 0;
    const endless = () =>
      Promise.resolve(
        new Response(
          new ReadableStream<Uint8Array>({
            pull(c) {
              pulled += 1 << 16;
              c.enqueue(new Uint8Array(1 << 16).fill(0x41));
            },
          }),
          { status: 200 },
        ),
      );
    const findings = await new LogMonitor({ clock, source: log.source(), policy, fetch: endless }).poll();
    expect(findings).toEqual([expect.objectContaining({ kind: 'checkpoint' }), expect.objectContaining({ kind: 'unavailable', code: 'ERR_INPUT_TOO_LARGE', source: 'witness W' })]);
    expect(pulled).toBeLessThanOrEqual((1 << 20) + 3 * (1 << 16));
  });
});
