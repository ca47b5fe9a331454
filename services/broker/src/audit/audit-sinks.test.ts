import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { canonicalize, type CustodyError } from '@custody/core';
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

  it('FallbackAuditSink uses the ledger, keeps what the ledger refuses locally, and fails only when both fail', async () => {
    const ledger = new InMemoryAuditSinkTestDouble();
    const failures: unknown[] = [];
    const sink = new FallbackAuditSink(ledger, new InterimLocalAuditSink(store), (e) => failures.push(e));
    expect(await sink.append(event(0))).toEqual({ index: 0 });
    expect(ledger.events).toHaveLength(1);
    ledger.failing = true;
    expect(await sink.append(event(1))).toEqual({ index: 0 });
    expect(failures).toHaveLength(1);
    expect((failures[0] as CustodyError).code).toBe('ERR_TLOG_UNAVAILABLE');
    const kept = await store.readAudit(null, -1, 10);
    expect(JSON.parse(kept[0]!.event)).toMatchObject({ key: { version: 2 }, detail: { auditFallback: true } });
    await store.close();
    await expect(sink.append(event(2))).rejects.toMatchObject({ code: 'ERR_STORE_AUDIT_UNAVAILABLE' });
  });
});
