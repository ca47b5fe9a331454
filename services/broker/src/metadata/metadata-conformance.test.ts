// One conformance suite for the metadata stores: SQLite and PostgreSQL (throwaway cluster).
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { authenticateApiKey, issueApiKey } from '../auth/api-keys.js';
import type { KeyRecord, KeyVersionRecord } from '../keys/types.js';
import { startPostgres, type PostgresFixture } from '../testing/postgres.js';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { AppraisalPolicies } from '../attestation/appraisal-policies.js';
import { TenantPolicies } from '../attestation/tenant-policies.js';
import { PostgresMetadataStore } from './postgres/postgres-metadata-store.js';
import { SqliteMetadataStore } from './sqlite/sqlite-metadata-store.js';
import type { MetadataStore, SessionRecord } from './types.js';

interface Opened {
  store: MetadataStore;
  /** A second, independent store on the same database (another replica or process). */
  second(): Promise<MetadataStore>;
  /** Runs raw SQL on the database, bypassing the store. */
  raw(sql: string): Promise<void>;
  /**
   * Makes the database take no writes from the store, and back: SQLite's query_only on the
   * store's connection (writes fail with SQLITE_READONLY, as on a read-only file); for
   * PostgreSQL, default_transaction_read_only on the database with the store's connections
   * ended, as after a failover to a standby.
   */
  readOnly(on: boolean): Promise<void>;
  close(): Promise<void>;
}

interface Factory {
  name: string;
  setup(): Promise<void>;
  open(): Promise<Opened>;
  teardown(): void;
}

const sqlite: Factory = {
  name: 'sqlite',
  async setup() {},
  async open() {
    const dir = mkdtempSync(join(tmpdir(), 'custody-meta-'));
    const path = join(dir, 'm.db');
    const store = await SqliteMetadataStore.open(path);
    const extra: MetadataStore[] = [];
    return {
      store,
      async second() {
        const s = await SqliteMetadataStore.open(path);
        extra.push(s);
        return s;
      },
      raw(sql) {
        const db = new Database(path);
        try {
          db.exec(sql);
          return Promise.resolve();
        } catch (e) {
          return Promise.reject(e instanceof Error ? e : new Error(String(e)));
        } finally {
          db.close();
        }
      },
      readOnly(on) {
        (store as unknown as { db: Database.Database }).db.pragma(`query_only = ${on ? 'ON' : 'OFF'}`);
        return Promise.resolve();
      },
      async close() {
        for (const s of extra) await s.close();
        await store.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
  teardown() {},
};

let fixture: PostgresFixture | undefined;
let dbCounter = 0;
const postgres: Factory = {
  name: 'postgres',
  async setup() {
    fixture = await startPostgres();
  },
  async open() {
    const url = await fixture!.createDatabase(`meta_${process.pid}_${++dbCounter}`);
    const store = await PostgresMetadataStore.open({ connectionString: url, maxConnections: 4 });
    const extra: MetadataStore[] = [];
    return {
      store,
      async second() {
        const s = await PostgresMetadataStore.open({ connectionString: url, maxConnections: 4 });
        extra.push(s);
        return s;
      },
      async raw(sql) {
        const c = new pg.Client({ connectionString: url });
        await c.connect();
        try {
          await c.query(sql);
        } finally {
          await c.end();
        }
      },
      async readOnly(on) {
        // From the cluster's maintenance database: a session on this one is read-only too.
        const admin = new URL(url);
        const name = admin.pathname.slice(1);
        admin.pathname = '/postgres';
        const c = new pg.Client({ connectionString: admin.toString() });
        await c.connect();
        try {
          await c.query(`ALTER DATABASE ${name} ${on ? 'SET default_transaction_read_only = on' : 'RESET default_transaction_read_only'}`);
          await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1', [name]);
        } finally {
          await c.end();
        }
      },
      async close() {
        for (const s of extra) await s.close();
        await store.close();
      },
    };
  },
  teardown() {
    fixture?.destroy();
  },
};

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected a CustodyError, but the call succeeded');
}

const T0 = 1_750_000_000_000;

function key(id: string, name: string, over: Partial<KeyRecord> = {}): KeyRecord {
  return { id, tenant: 'acme', name, type: 'aes-256', state: 'active', exportable: true, currentVersion: 1, releasePolicy: 'true', createdAt: T0, updatedAt: T0, revokedAt: null, destroyedAt: null, ...over };
}

function version(keyId: string, v: number, over: Partial<KeyVersionRecord> = {}): KeyVersionRecord {
  return { keyId, version: v, state: 'enabled', origin: 'generated', materialId: `mat_${keyId}_${v}`, materialLength: 32, publicKey: null, createdAt: T0 + v, destroyedAt: null, ...over };
}

function session(id: string, nonce: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return { id, tenant: 'acme', nonce, state: 'challenged', createdAt: T0, expiresAt: T0 + 60_000, nonceConsumedAt: null, binding: null, ...over };
}

describe.each([sqlite, postgres])('metadata store conformance: $name', (factory) => {
  let o: Opened;
  let m: MetadataStore;
  beforeAll(async () => factory.setup(), 120_000);
  afterAll(() => factory.teardown());
  beforeEach(async () => {
    o = await factory.open();
    m = o.store;
  });
  afterEach(async () => o.close());

  it('stores keys and versions; (tenant, name) is unique; lists are per tenant and sorted', async () => {
    await m.insertKey(key('key_b', 'beta'), version('key_b', 1, { publicKey: new Uint8Array([1, 2, 3]) }));
    await m.insertKey(key('key_a', 'alpha'), version('key_a', 1));
    await m.insertKey(key('key_c', 'alpha', { tenant: 'globex' }), version('key_c', 1));
    expect(await codeOf(m.insertKey(key('key_d', 'alpha'), version('key_d', 1)))).toBe('ERR_KEY_EXISTS');
    expect((await m.listKeys('acme')).map((k) => k.name)).toEqual(['alpha', 'beta']);
    expect((await m.listKeys('globex')).map((k) => k.id)).toEqual(['key_c']);
    expect(await m.getKey('acme', 'alpha')).toEqual(key('key_a', 'alpha'));
    expect(await m.getKey('acme', 'nope')).toBeNull();
    expect(await m.getKeyById('key_b')).toMatchObject({ name: 'beta', exportable: true, currentVersion: 1 });
    expect(await m.getVersion('key_b', 1)).toEqual(version('key_b', 1, { publicKey: new Uint8Array([1, 2, 3]) }));
  });

  it('adds versions with optimistic concurrency and moves states only from allowed states', async () => {
    await m.insertKey(key('key_a', 'a'), version('key_a', 1));
    const k2 = await m.addVersion('key_a', 1, version('key_a', 2), T0 + 10);
    expect(k2).toMatchObject({ currentVersion: 2, updatedAt: T0 + 10 });
    expect(await codeOf(m.addVersion('key_a', 1, version('key_a', 3), T0 + 11))).toBe('ERR_KEY_CONFLICT');
    expect((await m.listVersions('key_a')).map((v) => v.version)).toEqual([1, 2]);
    const revoked = await m.transitionKey('key_a', ['active'], 'revoked', T0 + 20);
    expect(revoked).toMatchObject({ state: 'revoked', revokedAt: T0 + 20 });
    expect(await codeOf(m.transitionKey('key_a', ['active'], 'revoked', T0 + 21))).toBe('ERR_KEY_STATE');
    expect(await codeOf(m.addVersion('key_a', 2, version('key_a', 3), T0 + 22))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(m.setReleasePolicy('key_a', null, T0 + 23))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(m.transitionKey('key_x', ['active'], 'revoked', T0))).toBe('ERR_KEY_NOT_FOUND');
    const destroyed = await m.transitionKey('key_a', ['active', 'revoked'], 'destroyed', T0 + 30);
    expect(destroyed).toMatchObject({ state: 'destroyed', destroyedAt: T0 + 30, revokedAt: T0 + 20 });
    await m.markVersionsDestroyed('key_a', T0 + 30);
    expect((await m.listVersions('key_a')).map((v) => [v.state, v.destroyedAt])).toEqual([
      ['destroyed', T0 + 30],
      ['destroyed', T0 + 30],
    ]);
  });

  it('classifies the release-time re-check', async () => {
    await m.insertKey(key('key_a', 'a'), version('key_a', 1));
    expect(await m.checkRelease('key_a', 1)).toBe('ok');
    // Under the policy the release evaluated: the same passes; a changed or removed one does not.
    expect(await m.checkRelease('key_a', 1, 'true')).toBe('ok');
    await m.setReleasePolicy('key_a', "platform == 'tdx'", T0);
    expect(await m.checkRelease('key_a', 1, 'true')).toBe('policy-changed');
    expect(await m.checkRelease('key_a', 1, "platform == 'tdx'")).toBe('ok');
    await m.setReleasePolicy('key_a', null, T0);
    expect(await m.checkRelease('key_a', 1, "platform == 'tdx'")).toBe('policy-changed');
    expect(await m.checkRelease('key_a', 1, null)).toBe('ok');
    await m.addVersion('key_a', 1, version('key_a', 2), T0);
    expect(await m.checkRelease('key_a', 1)).toBe('rotated');
    expect(await m.checkRelease('key_a', 2)).toBe('ok');
    expect(await m.checkRelease('key_a', 3)).toBe('missing');
    expect(await m.checkRelease('key_zz', 1)).toBe('missing');
    await m.transitionKey('key_a', ['active'], 'revoked', T0);
    expect(await m.checkRelease('key_a', 2)).toBe('revoked');
    await m.transitionKey('key_a', ['revoked'], 'destroyed', T0);
    expect(await m.checkRelease('key_a', 2)).toBe('destroyed');
  });

  it('consumes a nonce exactly once, and not after it expires', async () => {
    await m.createSession(session('s1', 'n1'));
    await m.createSession(session('s2', 'n2', { expiresAt: T0 + 5 }));
    expect(await codeOf(m.createSession(session('s3', 'n1')))).toBe('ERR_KEY_CONFLICT');
    const consumed = await m.consumeNonce('n1', T0 + 1);
    expect(consumed).toMatchObject({ id: 's1', tenant: 'acme', nonceConsumedAt: T0 + 1 });
    expect(await codeOf(m.consumeNonce('n1', T0 + 2))).toBe('ERR_SESSION_NONCE_USED');
    expect(await codeOf(m.consumeNonce('n2', T0 + 5))).toBe('ERR_SESSION_EXPIRED');
    expect(await codeOf(m.consumeNonce('nope', T0))).toBe('ERR_SESSION_NOT_FOUND');
  });

  it('a nonce raced by many consumers on two independent stores is consumed exactly once', async () => {
    const other = await o.second();
    for (let round = 0; round < 5; round++) {
      await m.createSession(session(`race${round}`, `nonce-${round}`));
      const attempts = Array.from({ length: 16 }, (_, i) => (i % 2 === 0 ? m : other).consumeNonce(`nonce-${round}`, T0 + 1).then(
        () => 'won',
        (e: unknown) => (e as CustodyError).code,
      ));
      const results = await Promise.all(attempts);
      expect(results.filter((r) => r === 'won')).toHaveLength(1);
      expect(results.filter((r) => r === 'ERR_SESSION_NONCE_USED')).toHaveLength(15);
    }
  });

  it('binds an attestation only to a challenged session whose nonce was consumed, and purges expired ones', async () => {
    await m.createSession(session('s1', 'n1'));
    expect(await codeOf(m.bindSession('s1', { ear: 'aa' }, T0 + 30_000, T0 + 1))).toBe('ERR_SESSION_MISMATCH');
    await m.consumeNonce('n1', T0 + 1);
    const bound = await m.bindSession('s1', { ear: 'aa', tee: 'bb' }, T0 + 30_000, T0 + 2);
    expect(bound).toMatchObject({ state: 'attested', binding: { ear: 'aa', tee: 'bb' }, expiresAt: T0 + 30_000 });
    expect(await codeOf(m.bindSession('s1', { ear: 'cc' }, T0 + 30_000, T0 + 3))).toBe('ERR_SESSION_MISMATCH');
    expect(await codeOf(m.bindSession('nope', {}, T0, T0))).toBe('ERR_SESSION_NOT_FOUND');
    await m.createSession(session('s2', 'n2', { expiresAt: T0 + 10 }));
    await m.consumeNonce('n2', T0 + 1);
    expect(await codeOf(m.bindSession('s2', {}, T0 + 100, T0 + 10))).toBe('ERR_SESSION_EXPIRED');
    await m.closeSession('s1', T0 + 4);
    expect(await m.getSession('s1')).toMatchObject({ state: 'closed', expiresAt: T0 + 4 });
    expect(await m.purgeExpiredSessions(T0 + 11)).toBe(2);
    expect(await m.getSession('s1')).toBeNull();
  });

  it('stores API keys hashed and authenticates in constant time; revoked and wrong tokens fail', async () => {
    const { token, record } = await issueApiKey(m, { tenant: 'acme', role: 'auditor', label: 'ci', createdBy: 'system', now: T0 });
    expect(token).toMatch(/^cst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
    const stored = (await m.getApiKey(record.id))!;
    const secret = Buffer.from(token.slice(21), 'base64url');
    expect(Buffer.from(stored.secretHash).equals(createHash('sha256').update(secret).digest())).toBe(true);
    expect(await authenticateApiKey(m, token)).toEqual({ tenant: 'acme', role: 'auditor', subject: `apikey:${record.id}` });
    const wrong = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
    expect(await codeOf(authenticateApiKey(m, wrong))).toBe('ERR_AUTH_INVALID');
    expect(await codeOf(authenticateApiKey(m, 'cst_0000000000000000_' + 'A'.repeat(43)))).toBe('ERR_AUTH_INVALID');
    expect(await codeOf(authenticateApiKey(m, 'Bearer nonsense'))).toBe('ERR_AUTH_INVALID');
    expect((await m.listApiKeys('acme')).map((k) => k.id)).toEqual([record.id]);
    expect(await m.revokeApiKey('globex', record.id, T0 + 1)).toBe(false);
    expect(await m.revokeApiKey('acme', record.id, T0 + 1)).toBe(true);
    expect(await m.revokeApiKey('acme', record.id, T0 + 2)).toBe(false);
    expect(await codeOf(authenticateApiKey(m, token))).toBe('ERR_AUTH_INVALID');
  });

  it('keeps the interim audit table append-only and hash-chained across replicas', async () => {
    const other = await o.second();
    const events = Array.from({ length: 12 }, (_, i) => JSON.stringify({ i }));
    const indices = await Promise.all(events.map((e, i) => (i % 2 ? m : other).appendAudit(i % 3 ? 'acme' : 'globex', T0 + i, e)));
    expect(indices.map((x) => x.index).sort((a, b) => a - b)).toEqual([...Array(12).keys()]);
    const all = await m.readAudit(null, -1, 100);
    expect(all.map((e) => e.index)).toEqual([...Array(12).keys()]);
    let prev = Buffer.alloc(32);
    for (const e of all) {
      const h = createHash('sha256').update(prev).update(e.event, 'utf8').digest();
      expect(e.hash).toBe(h.toString('hex'));
      prev = h;
    }
    expect((await m.readAudit('globex', -1, 100)).every((e) => e.tenant === 'globex')).toBe(true);
    const acme = all.filter((e) => e.tenant === 'acme').map((e) => e.index);
    expect((await m.readAudit('acme', 5, 2)).map((e) => e.index)).toEqual(acme.filter((i) => i > 5).slice(0, 2));
    await expect(o.raw(`UPDATE custody_audit_interim SET event = '{}' WHERE idx = 0`)).rejects.toThrow(/append-only/);
    await expect(o.raw('DELETE FROM custody_audit_interim')).rejects.toThrow(/append-only/);
    expect(await m.readAudit(null, -1, 100)).toHaveLength(12);
  });

  it('grants one forwarding lease across replicas: taken when free or run out, renewed by its holder, given back', async () => {
    const other = await o.second();
    // Two replicas asking at once: exactly one gets it.
    const first = await Promise.all([m.leaseAuditForwarding('replica-a', 60_000), other.leaseAuditForwarding('replica-b', 60_000)]);
    expect(first.filter(Boolean)).toHaveLength(1);
    const [holder, holderStore, waiter, waiterStore] = first[0] ? (['replica-a', m, 'replica-b', other] as const) : (['replica-b', other, 'replica-a', m] as const);
    expect(await holderStore.leaseAuditForwarding(holder, 60_000)).toBe(true);
    expect(await waiterStore.leaseAuditForwarding(waiter, 60_000)).toBe(false);
    // Releasing someone else's lease does nothing.
    await waiterStore.releaseAuditForwarding(waiter);
    expect(await waiterStore.leaseAuditForwarding(waiter, 60_000)).toBe(false);
    await holderStore.releaseAuditForwarding(holder);
    expect(await waiterStore.leaseAuditForwarding(waiter, 200)).toBe(true);
    expect(await holderStore.leaseAuditForwarding(holder, 60_000)).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(await holderStore.leaseAuditForwarding(holder, 60_000)).toBe(true);
  });

  it('stores sealed blobs and store metadata', async () => {
    const blob = randomBytes(100);
    await m.putSealed('mat_1', 'key_a', 1, blob);
    expect(Buffer.from((await m.getSealed('mat_1'))!).equals(blob)).toBe(true);
    expect(await codeOf(m.putSealed('mat_1', 'key_a', 1, blob))).toBe('ERR_KEY_CONFLICT');
    await m.eraseSealed(['mat_1', 'mat_unknown']);
    expect(await m.getSealed('mat_1')).toBeNull();
    expect(await m.getStoreMeta('check')).toBeNull();
    const first = await m.putStoreMetaIfAbsent('check', new Uint8Array([1]));
    const second = await m.putStoreMetaIfAbsent('check', new Uint8Array([2]));
    expect([...first, ...second]).toEqual([1, 1]);
  });

  it('stores one appraisal policy per tenant with a revision bumped by every write, seen by other replicas', async () => {
    const other = await o.second();
    expect(await m.getTenantPolicy('acme')).toBeNull();
    expect(await m.getTenantPolicyStamp('acme')).toBeNull();
    const row = { tenant: 'acme', text: 'id: p\n', policyId: 'p', policyVersion: 1, digest: 'ab'.repeat(32), updatedAt: T0, updatedBy: 'apikey:1' };
    expect(await m.putTenantPolicy(row)).toEqual({ ...row, revision: 1 });
    expect(await other.getTenantPolicy('acme')).toEqual({ ...row, revision: 1 });
    expect(await other.getTenantPolicyStamp('globex')).toBeNull();
    // Concurrent writers on two replicas: each write gets its own revision.
    const writes = await Promise.all([2, 3, 4, 5].map((v, i) => (i % 2 ? m : other).putTenantPolicy({ ...row, policyVersion: v, updatedAt: T0 + v })));
    expect(writes.map((w) => w.revision).sort()).toEqual([2, 3, 4, 5]);
    const last = writes.find((w) => w.revision === 5)!;
    expect(await m.getTenantPolicy('acme')).toEqual(last);
    expect(await other.getTenantPolicyStamp('acme')).toEqual({ revision: 5, digest: row.digest });
    await other.putTenantPolicy({ ...row, tenant: 'globex' });
    expect((await m.getTenantPolicy('globex'))!.revision).toBe(1);
    expect((await m.getTenantPolicy('acme'))!.revision).toBe(5);
  });

  it('a policy set through one replica is in force on another at its next resolve', async () => {
    const files = await AppraisalPolicies.load();
    const audit = new InMemoryAuditSinkTestDouble();
    const a = new TenantPolicies({ files, store: m, audit });
    const b = new TenantPolicies({ files, store: await o.second(), audit });
    expect((await b.resolve('acme')).document.id).toBe('default-deny');
    const admin = { tenant: 'acme', role: 'admin' as const, subject: 'apikey:0000000000000001' };
    const policy = (v: number) => `apiVersion: custody.dev/policy/v1\nid: replicated\nversion: ${v}\nallowSimulated: true\nplatforms:\n  sim:\n    measurement: "aa"\n`;
    await a.set(admin, 'acme', policy(1));
    expect((await b.resolve('acme')).document).toMatchObject({ id: 'replicated', version: 1 });
    const cached = await b.resolve('acme');
    expect(await b.resolve('acme')).toBe(cached);
    await a.set(admin, 'acme', policy(2));
    expect((await b.resolve('acme')).document.version).toBe(2);
    expect((await b.resolve('globex')).document.id).toBe('default-deny');
    expect(audit.events.map((e) => [e.action, e.detail?.policyVersion])).toEqual([
      ['policy.changed', 1],
      ['policy.changed', 2],
    ]);
  });

  it('deletes a tenant policy only at the expected revision; exactly one of two racing replicas wins', async () => {
    const other = await o.second();
    const row = { tenant: 'acme', text: 'id: p\n', policyId: 'p', policyVersion: 1, digest: 'cd'.repeat(32), updatedAt: T0, updatedBy: 'apikey:1' };
    expect(await m.deleteTenantPolicy('acme', 1)).toBeNull();
    await m.putTenantPolicy(row);
    await m.putTenantPolicy({ ...row, policyVersion: 2 });
    await other.putTenantPolicy({ ...row, tenant: 'globex' });
    // A stale revision deletes nothing.
    expect(await other.deleteTenantPolicy('acme', 1)).toBeNull();
    expect((await m.getTenantPolicy('acme'))!.revision).toBe(2);
    const results = await Promise.all([m.deleteTenantPolicy('acme', 2), other.deleteTenantPolicy('acme', 2)]);
    expect(results.filter((r) => r !== null)).toEqual([{ ...row, policyVersion: 2, revision: 2 }]);
    expect(await m.getTenantPolicy('acme')).toBeNull();
    expect(await other.getTenantPolicyStamp('acme')).toBeNull();
    // Other tenants keep theirs; a new write after a delete starts again at revision 1.
    expect((await m.getTenantPolicy('globex'))!.revision).toBe(1);
    expect(await other.putTenantPolicy({ ...row, digest: 'ef'.repeat(32) })).toMatchObject({ revision: 1 });
    expect(await m.getTenantPolicyStamp('acme')).toEqual({ revision: 1, digest: 'ef'.repeat(32) });
  });

  it('a policy deleted through one replica leaves the file policy in force on another at its next resolve', async () => {
    const files = await AppraisalPolicies.load();
    const audit = new InMemoryAuditSinkTestDouble();
    const a = new TenantPolicies({ files, store: m, audit });
    const b = new TenantPolicies({ files, store: await o.second(), audit });
    const admin = { tenant: 'acme', role: 'admin' as const, subject: 'apikey:0000000000000001' };
    const policy = (id: string) => `apiVersion: custody.dev/policy/v1\nid: ${id}\nversion: 1\nallowSimulated: true\nplatforms:\n  sim:\n    measurement: "aa"\n`;
    expect(await codeOf(a.delete(admin, 'acme'))).toBe('ERR_POLICY_NOT_STORED');
    const set = await a.set(admin, 'acme', policy('first'));
    expect((await b.resolve('acme')).document.id).toBe('first');
    const deleted = await a.delete(admin, 'acme');
    expect(deleted).toMatchObject({ tenant: 'acme', deleted: { id: 'first', version: 1, revision: 1, digest: set.digest, policyId: set.policyId }, inForce: { source: 'file', id: 'default-deny' } });
    expect((await b.resolve('acme')).document.id).toBe('default-deny');
    expect((await a.resolve('acme')).document.id).toBe('default-deny');
    // A replica that cached revision 1 of one policy must not serve it for revision 1 of another.
    await a.set(admin, 'acme', policy('second'));
    expect((await b.resolve('acme')).document.id).toBe('second');
    await a.delete(admin, 'acme');
    await a.set(admin, 'acme', policy('third'));
    expect((await b.resolve('acme')).document.id).toBe('third');
    expect(await codeOf(b.delete({ ...admin, role: 'auditor' }, 'acme'))).toBe('ERR_AUTH_ROLE');
    expect(await codeOf(b.delete({ ...admin, tenant: 'globex' }, 'acme'))).toBe('ERR_AUTH_TENANT');
    expect((await a.resolve('acme')).document.id).toBe('third');
    expect(audit.events.map((e) => [e.action, e.detail?.operation ?? 'set', e.detail?.policyId])).toEqual([
      ['policy.changed', 'set', 'first'],
      ['policy.changed', 'delete', 'first'],
      ['policy.changed', 'set', 'second'],
      ['policy.changed', 'delete', 'second'],
      ['policy.changed', 'set', 'third'],
    ]);
    expect(audit.events[1]!.detail).toEqual({
      operation: 'delete',
      policyId: 'first',
      policyVersion: 1,
      policyDigest: `sha256:${set.digest}`,
      revision: 1,
      fallbackPolicyId: 'default-deny',
      fallbackPolicyVersion: 1,
      fallbackPolicyDigest: `sha256:${files.forTenant('acme').digest}`,
    });
  });

  it('a delete racing a write on another replica deletes nothing (ERR_POLICY_CONFLICT); audit down changes nothing', async () => {
    const files = await AppraisalPolicies.load();
    const audit = new InMemoryAuditSinkTestDouble();
    const a = new TenantPolicies({ files, store: m, audit });
    const b = new TenantPolicies({ files, store: await o.second(), audit });
    const admin = { tenant: 'acme', role: 'admin' as const, subject: 'apikey:0000000000000001' };
    const policy = (v: number) => `apiVersion: custody.dev/policy/v1\nid: raced\nversion: ${v}\nallowSimulated: true\nplatforms:\n  sim:\n    measurement: "aa"\n`;
    await a.set(admin, 'acme', policy(1));
    // b's write lands while a's delete is writing its audit event.
    audit.beforeAppend = async (e) => {
      audit.beforeAppend = undefined;
      if (e.detail?.operation === 'delete') await b.set(admin, 'acme', policy(2));
    };
    expect(await codeOf(a.delete(admin, 'acme'))).toBe('ERR_POLICY_CONFLICT');
    expect((await b.resolve('acme')).document.version).toBe(2);
    expect((await a.resolve('acme')).document.version).toBe(2);
    audit.failing = true;
    expect(await codeOf(a.delete(admin, 'acme'))).toBe('ERR_STORE_AUDIT_UNAVAILABLE');
    audit.failing = false;
    expect((await b.resolve('acme')).document.version).toBe(2);
    // Two deletes at once: one wins, the other learns nothing is stored any more.
    const outcomes = await Promise.allSettled([a.delete(admin, 'acme'), b.delete(admin, 'acme')]);
    expect(outcomes.map((r) => (r.status === 'fulfilled' ? 'deleted' : (r.reason as CustodyError).code)).sort()).toEqual(['ERR_POLICY_NOT_STORED', 'deleted']);
    expect((await b.resolve('acme')).document.id).toBe('default-deny');
  });

  it('ping fails with ERR_STORE_UNAVAILABLE while the store answers reads but takes no writes, and succeeds again after', async () => {
    await m.insertKey(key('k_ro', 'ro'), version('k_ro', 1));
    await m.ping();
    await o.readOnly(true);
    // (PostgreSQL: the first call after the store's connections were ended may fail on its dead connection.)
    await expect.poll(async () => (await m.getKey('acme', 'ro').then(() => 'read', (e: CustodyError) => e.code)), { timeout: 10_000 }).toBe('read');
    const failed = await m.ping().then(
      () => undefined,
      (e: unknown) => e as CustodyError,
    );
    expect(failed).toBeInstanceOf(CustodyError);
    expect(failed!.code).toBe('ERR_STORE_UNAVAILABLE');
    expect(failed!.detail).toMatchObject(factory.name === 'sqlite' ? { sqlite: 'SQLITE_READONLY' } : { sqlstate: '25006' });
    await o.readOnly(false);
    await expect.poll(async () => m.ping().then(() => 'ok', (e: CustodyError) => e.code), { timeout: 10_000 }).toBe('ok');
  });

  it('fails closed with ERR_STORE_UNAVAILABLE once closed', async () => {
    await m.close();
    expect(await codeOf(m.getTenantPolicyStamp('acme'))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await codeOf(m.deleteTenantPolicy('acme', 1))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await codeOf(m.getKey('acme', 'a'))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await codeOf(m.consumeNonce('n', T0))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await codeOf(m.ping())).toBe('ERR_STORE_UNAVAILABLE');
  });
});

describe('PostgreSQL connection settings', () => {
  it('a connection string that is not a postgres:// URL is a configuration error (exit 2), not an outage, and is not quoted back', async () => {
    for (const bad of ['garbage', 'mysql://u:s3cret@h/db', 'postgres://u:s3cret@[bad', '']) {
      const e = await PostgresMetadataStore.open({ connectionString: bad }).then(
        () => undefined,
        (x: unknown) => x as CustodyError,
      );
      expect(e).toMatchObject({ code: 'ERR_STORE_CONFIG' });
      expect(e!.message).not.toContain('s3cret');
    }
  });
});
