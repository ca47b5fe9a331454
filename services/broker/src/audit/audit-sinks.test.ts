import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canonicalize, CustodyError } from '@custody/core';
import { SqliteMetadataStore } from '../metadata/sqlite/sqlite-metadata-store.js';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { FallbackAuditSink, InterimLocalAuditSink } from './interim-local-audit-sink.js';
import type { AuditEvent } from './types.js';

const event = (i: number): AuditEvent => ({
  v: 1,
  action: 'key.rotate',
  time: `2025-06-01T00:00:0${i}.000Z`,
  actor: { tenant: 'acme', subject: 'apikey:0011223344556677', role: 'admin' },
  tenant: 'acme',
  key: { id: 'key_' + '0'.repeat(32), name: 'dk', type: 'aes-256', version: i + 1 },
  verdict: 'allow',
});

describe('audit sinks', () => {
  let dir: string;
  let store: SqliteMetadataStore;
  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'custody-audit-'));
    store = await SqliteMetadataStore.open(join(dir, 'm.db'));
  });
  afterEach(async () => {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('InterimLocalAuditSink appends canonical JSON with consecutive indices', async () => {
    const sink = new InterimLocalAuditSink(store);
    expect(await sink.append(event(0))).toEqual({ index: 0 });
    expect(await sink.append(event(1))).toEqual({ index: 1 });
    const rows = await store.readAudit('acme', -1, 10);
    expect(rows.map((r) => r.event)).toEqual([canonicalize(event(0)), canonicalize(event(1))]);
    expect(rows[1]!.at).toBe(Date.parse(event(1).time));
    await store.close();
    await expect(sink.append(event(2))).rejects.toMatchObject({ code: 'ERR_STORE_AUDIT_UNAVAILABLE', detail: { applied: false } });
  });

  it('FallbackAuditSink uses the ledger, keeps what the ledger refuses locally (said so in its answer), and fails only when both fail', async () => {
    const ledger = new InMemoryAuditSinkTestDouble();
    const failures: unknown[] = [];
    const sink = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { onFallback: (e) => failures.push(e) });
    try {
      expect(await sink.append(event(0))).toEqual({ index: 0 });
      expect(ledger.events).toHaveLength(1);
      ledger.failing = true;
      expect(await sink.append(event(1))).toEqual({ index: 0, interim: true });
      expect(failures).toHaveLength(1);
      expect((failures[0] as CustodyError).code).toBe('ERR_TLOG_UNAVAILABLE');
      const kept = await store.readAudit(null, -1, 10);
      expect(JSON.parse(kept[0]!.event)).toMatchObject({ key: { version: 2 }, detail: { auditFallback: true } });
      await sink.close();
      await store.close();
      await expect(sink.append(event(2))).rejects.toMatchObject({ code: 'ERR_STORE_AUDIT_UNAVAILABLE' });
    } finally {
      await sink.close();
    }
  });

  it('FallbackAuditSink stops trying a failing ledger for retryAfterMs, then forwards what it kept, in order, each once, and records it', async () => {
    let t = 0;
    const ledger = new InMemoryAuditSinkTestDouble();
    let tried = 0;
    ledger.beforeAppend = () => {
      tried++;
      return Promise.resolve();
    };
    const forwarded: number[] = [];
    const sink = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 1000, now: () => t, onForwarded: (n) => forwarded.push(n) });
    try {
      ledger.failing = true;
      expect(await sink.append(event(0))).toEqual({ index: 0, interim: true });
      // While it is down, the ledger is not tried again: a hung ledger costs one caller its wait.
      expect(await sink.append(event(1))).toEqual({ index: 1, interim: true });
      expect(await sink.append(event(2))).toEqual({ index: 2, interim: true });
      expect(tried).toBe(1);
      expect(sink.pending).toBe(3);
      // Back, and its time is up: the next append goes to the ledger and the kept ones follow it.
      ledger.failing = false;
      t = 1000;
      expect(await sink.append(event(3))).toEqual({ index: 0 });
      await sink.forward();
      expect(sink.pending).toBe(0);
      expect(forwarded).toEqual([3]);
      expect(ledger.events.map((e) => [e.key!.version, e.detail?.interimIndex])).toEqual([
        [4, undefined],
        [1, 0],
        [2, 1],
        [3, 2],
      ]);
      expect(ledger.events.slice(1).every((e) => e.detail?.auditFallback === true)).toBe(true);
      // The interim table records where each went: rows 3, 4, 5 are audit.forwarded.
      const rows = (await store.readAudit(null, -1, 20)).map((r) => JSON.parse(r.event) as AuditEvent);
      expect(rows.slice(3).map((r) => [r.action, r.detail?.interimIndex, r.detail?.ledgerIndex])).toEqual([
        ['audit.forwarded', 0, 1],
        ['audit.forwarded', 1, 2],
        ['audit.forwarded', 2, 3],
      ]);
      // Nothing is forwarded twice.
      await sink.forward();
      expect(ledger.events).toHaveLength(4);
    } finally {
      await sink.close();
    }
  });

  it('a new FallbackAuditSink forwards what an earlier one kept and did not forward (a restart), and only that', async () => {
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const first = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 60_000 });
    await first.append(event(0));
    await first.append(event(1));
    await first.close();
    ledger.failing = false;
    const second = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 60_000 });
    try {
      await second.forward();
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0, 1]);
      await second.close();
      const third = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 60_000 });
      await third.forward();
      await third.close();
      expect(ledger.events).toHaveLength(2);
    } finally {
      await second.close();
    }
  });

  it('a forwarding pass that the ledger fails stops there and leaves the rest for later', async () => {
    let t = 0;
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const sink = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 1000, now: () => t });
    try {
      for (let i = 0; i < 3; i++) await sink.append(event(i));
      ledger.failing = false;
      t = 1000;
      let n = 0;
      ledger.beforeAppend = () => {
        if (++n === 2) ledger.failing = true;
        return Promise.resolve();
      };
      await sink.forward();
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0]);
      expect(sink.pending).toBe(2);
      // Still within its wait: a pass does not try.
      ledger.failing = false;
      ledger.beforeAppend = undefined;
      await sink.forward();
      expect(sink.pending).toBe(2);
      t = 2000;
      await sink.forward();
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0, 1, 2]);
    } finally {
      await sink.close();
    }
  });

  it('a kept event the ledger refuses for its content is recorded as refused and passed over; the rest still goes, and the ledger is not taken for down', async () => {
    let t = 0;
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const refused: number[] = [];
    const sink = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 1000, now: () => t, onRefused: (i) => refused.push(i) });
    try {
      for (let i = 0; i < 3; i++) await sink.append(event(i));
      ledger.failing = false;
      // The ledger's own rules refuse the event of version 2 (say, a name it takes for a secret).
      ledger.beforeAppend = (e) => (e.key?.version === 2 ? Promise.reject(new CustodyError('ERR_TLOG_EVENT_SECRET', 'looks like a secret')) : Promise.resolve());
      t = 1000;
      await sink.forward();
      expect(refused).toEqual([1]);
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0, 2]);
      expect(sink.pending).toBe(0);
      const rows = (await store.readAudit(null, 2, 20)).map((r) => JSON.parse(r.event) as AuditEvent);
      expect(rows.map((r) => [r.action, r.detail?.interimIndex, r.detail?.code])).toEqual([
        ['audit.forwarded', 0, undefined],
        ['audit.forward_refused', 1, 'ERR_TLOG_EVENT_SECRET'],
        ['audit.forwarded', 2, undefined],
      ]);
      // A live event refused as such is kept, but the ledger stays in use for the next one.
      expect(await sink.append({ ...event(1), key: { ...event(1).key!, version: 2 } })).toMatchObject({ interim: true });
      expect(await sink.append(event(5))).toEqual({ index: 2 });
    } finally {
      await sink.close();
    }
  });

  it('forwards what an earlier run kept even when its first read of the table fails', async () => {
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const first = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 60_000 });
    await first.append(event(0));
    await first.close();
    ledger.failing = false;
    let reads = 0;
    const flaky = new InterimLocalAuditSink(store);
    const read = flaky.read.bind(flaky);
    flaky.read = (after, limit) => (++reads === 1 ? Promise.reject(new Error('the database blinked')) : read(after, limit));
    const second = new FallbackAuditSink(ledger, flaky, { retryAfterMs: 50 });
    try {
      await expect.poll(() => ledger.events.map((e) => e.detail?.interimIndex), { timeout: 3000 }).toEqual([0]);
      expect(reads).toBeGreaterThan(1);
    } finally {
      await second.close();
    }
  });

  it('forwards nothing from an interim table whose hash chain does not verify', async () => {
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const first = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 60_000 });
    await first.append(event(0));
    await first.close();
    // A row written past the broker, hash and all made up: an event it never recorded.
    const forged = new InterimLocalAuditSink(store);
    const read = forged.read.bind(forged);
    forged.read = async (after, limit) => (await read(after, limit)).map((r) => (r.index === 0 ? { ...r, event: r.event.replace('"version":1', '"version":9') } : r));
    ledger.failing = false;
    const tampered: number[] = [];
    const second = new FallbackAuditSink(ledger, forged, { retryAfterMs: 60_000, onTampered: (i) => tampered.push(i) });
    try {
      await second.forward();
      expect(tampered).toEqual([0]);
      expect(ledger.events).toEqual([]);
      expect(second.pending).toBe(0);
    } finally {
      await second.close();
    }
  });

  it('replicas sharing the interim table forward each kept event once: one holds the forwarding lease, the other waits for its records', async () => {
    let t = 0;
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const other = await SqliteMetadataStore.open(join(dir, 'm.db'));
    const a = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 1000, now: () => t });
    const b = new FallbackAuditSink(ledger, new InterimLocalAuditSink(other), { retryAfterMs: 1000, now: () => t });
    // The first pass each runs at start, on an empty table, ends before the test goes on.
    await new Promise((r) => setTimeout(r, 10));
    await Promise.all([a.forward(), b.forward()]);
    try {
      for (let i = 0; i < 6; i++) await (i % 2 ? b : a).append(event(i));
      ledger.failing = false;
      t = 1000;
      // Each append in flight yields, so the two passes interleave.
      ledger.beforeAppend = () => new Promise((r) => setTimeout(r, 2));
      await Promise.all([a.forward(), b.forward()]);
      await a.forward();
      await b.forward();
      expect(ledger.events.map((e) => e.detail?.interimIndex).sort()).toEqual([0, 1, 2, 3, 4, 5]);
      expect(a.pending + b.pending).toBe(0);
      const markers = (await store.readAudit(null, 5, 50)).map((r) => JSON.parse(r.event) as AuditEvent);
      expect(markers.map((m) => m.detail?.interimIndex).sort()).toEqual([0, 1, 2, 3, 4, 5]);
    } finally {
      await a.close();
      await b.close();
      await other.close();
    }
  });

  it('a forwarding record the table did not take is written again before anything else, and the lease is kept until then', async () => {
    let t = 0;
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const other = await SqliteMetadataStore.open(join(dir, 'm.db'));
    const flaky = new InterimLocalAuditSink(store);
    const append = flaky.append.bind(flaky);
    let blink = false;
    flaky.append = (e) => (blink && e.action === 'audit.forwarded' ? ((blink = false), Promise.reject(new Error('the database blinked'))) : append(e));
    const a = new FallbackAuditSink(ledger, flaky, { retryAfterMs: 1000, now: () => t });
    const b = new FallbackAuditSink(ledger, new InterimLocalAuditSink(other), { retryAfterMs: 1000, now: () => t });
    // The first pass each runs at start, on an empty table, ends before the test goes on.
    await new Promise((r) => setTimeout(r, 10));
    await Promise.all([a.forward(), b.forward()]);
    try {
      await a.append(event(0));
      await a.append(event(1));
      await b.append(event(2));
      ledger.failing = false;
      t = 1000;
      blink = true;
      await a.forward();
      // The ledger took row 0, but its record is missing: b must not send it again.
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0]);
      await b.forward();
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0]);
      expect(b.pending).toBe(3);
      // a takes the ledger for down (an append it failed): the record needs only the table, and goes in at a's next pass.
      ledger.failing = true;
      await a.append(event(3));
      ledger.failing = false;
      await a.forward();
      const recorded = (await store.readAudit(null, 3, 50)).map((r) => JSON.parse(r.event) as AuditEvent).filter((m) => m.action === 'audit.forwarded');
      expect(recorded.map((m) => [m.detail?.interimIndex, m.detail?.ledgerIndex])).toEqual([[0, 0]]);
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0]);
      t = 2000;
      await a.forward();
      expect(ledger.events.map((e) => e.detail?.interimIndex)).toEqual([0, 1, 2, 3]);
      await b.forward();
      expect(b.pending).toBe(0);
      expect(ledger.events).toHaveLength(4);
      const markers = (await store.readAudit(null, 2, 50)).map((r) => JSON.parse(r.event) as AuditEvent).filter((m) => m.action === 'audit.forwarded');
      expect(markers.map((m) => [m.detail?.interimIndex, m.detail?.ledgerIndex])).toEqual([
        [0, 0],
        [1, 1],
        [2, 2],
        [3, 3],
      ]);
    } finally {
      await a.close();
      await b.close();
      await other.close();
    }
  });

  it('a lease its holder stopped renewing (a crashed replica) lets another forward once it runs out', async () => {
    const ledger = new InMemoryAuditSinkTestDouble();
    ledger.failing = true;
    const first = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 60_000 });
    await first.append(event(0));
    await first.close();
    expect(await store.leaseAuditForwarding('crashed-replica', 300)).toBe(true);
    ledger.failing = false;
    const second = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 50 });
    try {
      await second.forward();
      expect(ledger.events).toEqual([]);
      await expect.poll(() => ledger.events.map((e) => e.detail?.interimIndex), { timeout: 5000, interval: 50 }).toEqual([0]);
      // Released after the pass: the next holder may take it at once.
      expect(await store.leaseAuditForwarding('next-replica', 60_000)).toBe(true);
    } finally {
      await second.close();
    }
  });

  it('forwards what another replica kept and left (it stopped), though this one kept nothing', async () => {
    const ledger = new InMemoryAuditSinkTestDouble();
    const other = await SqliteMetadataStore.open(join(dir, 'm.db'));
    const survivor = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), { retryAfterMs: 50 });
    try {
      await survivor.forward();
      ledger.failing = true;
      const stopped = new FallbackAuditSink(ledger, new InterimLocalAuditSink(other), { retryAfterMs: 60_000 });
      await stopped.append(event(0));
      await stopped.append(event(1));
      await stopped.close();
      ledger.failing = false;
      await expect.poll(() => ledger.events.map((e) => e.detail?.interimIndex), { timeout: 5000, interval: 50 }).toEqual([0, 1]);
    } finally {
      await survivor.close();
      await other.close();
    }
  });

  it('refuses a retry interval under 10 ms or not a number', () => {
    for (const retryAfterMs of [0, 5, Number.NaN, -1]) {
      expect(() => new FallbackAuditSink(new InMemoryAuditSinkTestDouble(), new InterimLocalAuditSink(store), { retryAfterMs })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    }
  });
});
