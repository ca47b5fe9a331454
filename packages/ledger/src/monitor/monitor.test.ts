import { describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import { LogMonitor } from './monitor.js';
import { parseTlogPolicy } from '../policy/policy.js';
import { MemoryTiledLog } from '../testing/memory-log.js';
import { testLogKey, testWitnessKey } from '../testing/keys.js';
import { signatureLine } from '../note/note.js';
import { encodeEvent } from '../events/events.js';
import { originHash } from '../witness/origin-hash.js';

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
    const m = new LogMonitor({ source: log.source(), policy, verifyEntries: true, verifyEvents: true });
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
    const m = new LogMonitor({ source: log.source(), policy });
    await m.poll();
    await log.append(['d']);
    await log.publish();
    expect(await m.poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_QUORUM' })]);

    // Rollback: the log now serves a smaller tree.
    const small = new MemoryTiledLog('log.example/m', key.signer);
    await small.append(['a', 'b']);
    await small.publish(cosign);
    const m2 = new LogMonitor({ source: small.source(), policy, state: m.current! });
    expect(await m2.poll()).toEqual([expect.objectContaining({ kind: 'rollback', code: 'ERR_TLOG_ROLLBACK', seenSize: 3, size: 2 })]);

    // Split view: same signer, different history of the same size, then of a larger size.
    const fork = new MemoryTiledLog('log.example/m', key.signer);
    await fork.append(['a', 'b', 'X']);
    await fork.publish(cosign);
    const m3 = new LogMonitor({ source: fork.source(), policy, state: m.current! });
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
    expect(await new LogMonitor({ source: log.source(), policy }).poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_TILE' })]);
    for (const [k, v] of good) log.files.set(k, v);
    const bundle = log.files.get('tile/entries/000.p/10')!.slice();
    bundle[5]! ^= 1;
    log.files.set('tile/entries/000.p/10', bundle);
    expect(await new LogMonitor({ source: log.source(), policy, verifyEntries: true }).poll()).toEqual([expect.objectContaining({ kind: 'invalid', code: 'ERR_TLOG_ENTRY' })]);
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
    const m = new LogMonitor({ source: log.source(), policy, fetch: fetchFn });
    const findings = await m.poll();
    expect(findings).toContainEqual(expect.objectContaining({ kind: 'split-view', source: 'witness W' }));
    // An honest witness view (an older size of the same log) is fine.
    const older = new MemoryTiledLog('log.example/m', key.signer);
    await older.append(['a', 'b']);
    served = await older.publish(cosign);
    await log.publish(cosign);
    const m2 = new LogMonitor({ source: log.source(), policy, fetch: fetchFn });
    expect((await m2.poll()).map((f) => f.kind)).toEqual(['checkpoint']);
  });
});
