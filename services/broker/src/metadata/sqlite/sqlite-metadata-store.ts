import { closeSync, existsSync, openSync } from 'node:fs';
import Database from 'better-sqlite3';
import { CustodyError, copyBytes, type Bytes } from '@custody/core';
import type { KeyRecord, KeyState, KeyVersionRecord } from '../../keys/types.js';
import {
  chainHash,
  classifyNonce,
  classifyRelease,
  toApiKey,
  toAudit,
  toKey,
  toSession,
  toTenantPolicy,
  toVersion,
  type ApiKeyRow,
  type AuditRow,
  type KeyRow,
  type SessionRow,
  type TenantPolicyRow,
  type VersionRow,
} from '../rows.js';
import { PING_ROW, type ApiKeyRecord, type MetadataStore, type ReleaseCheck, type SessionRecord, type StoredAuditEvent, type TenantPolicyRecord, type TenantPolicyStamp } from '../types.js';
import { WalSync } from './wal-sync.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS custody_keys (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  name TEXT NOT NULL,
  type TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('active', 'revoked', 'destroyed')),
  exportable INTEGER NOT NULL,
  current_version INTEGER NOT NULL,
  release_policy TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  revoked_at INTEGER,
  destroyed_at INTEGER,
  UNIQUE (tenant, name)
);
CREATE TABLE IF NOT EXISTS custody_key_versions (
  key_id TEXT NOT NULL REFERENCES custody_keys(id),
  version INTEGER NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('enabled', 'destroyed')),
  origin TEXT NOT NULL,
  material_id TEXT NOT NULL UNIQUE,
  material_length INTEGER NOT NULL,
  public_key BLOB,
  created_at INTEGER NOT NULL,
  destroyed_at INTEGER,
  PRIMARY KEY (key_id, version)
);
CREATE TABLE IF NOT EXISTS custody_key_material (
  material_id TEXT PRIMARY KEY,
  key_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  blob BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS custody_store_meta (
  name TEXT PRIMARY KEY,
  value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS custody_sessions (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  nonce TEXT NOT NULL UNIQUE,
  state TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  nonce_consumed_at INTEGER,
  binding TEXT
);
CREATE INDEX IF NOT EXISTS custody_sessions_expires ON custody_sessions (expires_at);
CREATE TABLE IF NOT EXISTS custody_api_keys (
  id TEXT PRIMARY KEY,
  tenant TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'workload')),
  secret_hash BLOB NOT NULL,
  label TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  created_by TEXT NOT NULL,
  revoked_at INTEGER
);
CREATE TABLE IF NOT EXISTS custody_audit_interim (
  idx INTEGER PRIMARY KEY,
  tenant TEXT NOT NULL,
  at INTEGER NOT NULL,
  event TEXT NOT NULL,
  hash BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS custody_audit_interim_tenant ON custody_audit_interim (tenant, idx);
CREATE TRIGGER IF NOT EXISTS custody_audit_interim_no_update BEFORE UPDATE ON custody_audit_interim
  BEGIN SELECT RAISE(ABORT, 'custody_audit_interim is append-only'); END;
CREATE TRIGGER IF NOT EXISTS custody_audit_interim_no_delete BEFORE DELETE ON custody_audit_interim
  BEGIN SELECT RAISE(ABORT, 'custody_audit_interim is append-only'); END;
CREATE TABLE IF NOT EXISTS custody_audit_forwarder (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  holder TEXT NOT NULL,
  until_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS custody_tenant_policies (
  tenant TEXT PRIMARY KEY,
  text TEXT NOT NULL,
  policy_id TEXT NOT NULL,
  policy_version INTEGER NOT NULL,
  digest TEXT NOT NULL,
  revision INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  updated_by TEXT NOT NULL
);
`;

/**
 * Metadata in one SQLite file (better-sqlite3): WAL journal with group commit (WalSync: every
 * acknowledged write waits for an fdatasync of the WAL that covers it, shared by concurrent
 * writes and run off the event loop, so an acknowledged key version, nonce consumption or
 * audit event survives power loss as with synchronous=FULL), secure_delete (erased material
 * pages are zeroed), foreign keys on. Safe for several processes on one host; replicas on
 * several hosts use PostgreSQL.
 */
export class SqliteMetadataStore implements MetadataStore {
  readonly backend = 'sqlite' as const;

  private constructor(
    private readonly db: Database.Database,
    /** Absent for ':memory:'. */
    private readonly wal: WalSync | undefined,
  ) {}

  /** Opens (creating if needed) and migrates. `path` may be ':memory:' for tests. */
  static async open(path: string): Promise<SqliteMetadataStore> {
    let db: Database.Database;
    try {
      // Created owner-only: it holds API key hashes, policies and (sealed) key material.
      if (path !== ':memory:' && !existsSync(path)) closeSync(openSync(path, 'a', 0o600));
      db = new Database(path, { timeout: 5000 });
      db.pragma('journal_mode = WAL');
      // Commits do not sync; WalSync makes each acknowledged write durable (see the class comment).
      db.pragma('synchronous = NORMAL');
      db.pragma('foreign_keys = ON');
      db.pragma('secure_delete = ON');
    } catch (e) {
      if (db! !== undefined && db.open) db.close();
      throw mapSqliteError(e);
    }
    const store = new SqliteMetadataStore(db, path === ':memory:' ? undefined : new WalSync(`${path}-wal`));
    try {
      await store.migrate();
    } catch (e) {
      // A store that cannot start (a full or read-only disk) lets go of its file.
      await store.close().catch(() => undefined);
      throw e;
    }
    return store;
  }

  async migrate(): Promise<void> {
    await this.write(() => this.db.exec(SCHEMA));
  }

  async ping(): Promise<void> {
    const at = Buffer.alloc(8);
    at.writeDoubleBE(Date.now());
    await this.write(() => this.stmt(`INSERT INTO custody_store_meta (name, value) VALUES ('${PING_ROW}', ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value`).run(at));
  }

  async close(): Promise<void> {
    await this.wal?.close();
    if (this.db.open) this.db.close();
  }

  // keys

  async insertKey(key: KeyRecord, first: KeyVersionRecord): Promise<void> {
    await this.write(() =>
      this.db.transaction(() => {
        this
          .stmt(
            `INSERT INTO custody_keys (id, tenant, name, type, state, exportable, current_version, release_policy, created_at, updated_at, revoked_at, destroyed_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(key.id, key.tenant, key.name, key.type, key.state, key.exportable ? 1 : 0, key.currentVersion, key.releasePolicy, key.createdAt, key.updatedAt, key.revokedAt, key.destroyedAt);
        this.insertVersion(first);
      })(),
    );
  }

  async getKey(tenant: string, name: string): Promise<KeyRecord | null> {
    const row = await this.run(() => this.stmt('SELECT * FROM custody_keys WHERE tenant = ? AND name = ?').get(tenant, name) as KeyRow | undefined);
    return row ? toKey(row) : null;
  }

  async getKeyById(id: string): Promise<KeyRecord | null> {
    const row = await this.run(() => this.stmt('SELECT * FROM custody_keys WHERE id = ?').get(id) as KeyRow | undefined);
    return row ? toKey(row) : null;
  }

  async listKeys(tenant: string): Promise<KeyRecord[]> {
    const rows = await this.run(() => this.stmt('SELECT * FROM custody_keys WHERE tenant = ? ORDER BY name').all(tenant) as KeyRow[]);
    return rows.map(toKey);
  }

  async listVersions(keyId: string): Promise<KeyVersionRecord[]> {
    const rows = await this.run(() => this.stmt('SELECT * FROM custody_key_versions WHERE key_id = ? ORDER BY version').all(keyId) as VersionRow[]);
    return rows.map(toVersion);
  }

  async getVersion(keyId: string, version: number): Promise<KeyVersionRecord | null> {
    const row = await this.run(() => this.stmt('SELECT * FROM custody_key_versions WHERE key_id = ? AND version = ?').get(keyId, version) as VersionRow | undefined);
    return row ? toVersion(row) : null;
  }

  async addVersion(keyId: string, expectedCurrent: number, next: KeyVersionRecord, at: number): Promise<KeyRecord> {
    return this.write(() =>
      this.db.transaction(() => {
        const moved = this
          .stmt(`UPDATE custody_keys SET current_version = ?, updated_at = ? WHERE id = ? AND current_version = ? AND state = 'active'`)
          .run(next.version, at, keyId, expectedCurrent);
        if (moved.changes !== 1) throw this.conflictOrState(keyId);
        this.insertVersion(next);
        return toKey(this.stmt('SELECT * FROM custody_keys WHERE id = ?').get(keyId) as KeyRow);
      })(),
    );
  }

  async transitionKey(keyId: string, from: readonly KeyState[], to: KeyState, at: number): Promise<KeyRecord> {
    return this.write(() =>
      this.db.transaction(() => {
        const marks = from.map(() => '?').join(', ');
        const stamp = to === 'revoked' ? ', revoked_at = ?' : to === 'destroyed' ? ', destroyed_at = ?' : '';
        const args: unknown[] = [to, at, ...(stamp ? [at] : []), keyId, ...from];
        const moved = this.stmt(`UPDATE custody_keys SET state = ?, updated_at = ?${stamp} WHERE id = ? AND state IN (${marks})`).run(...args);
        const row = this.stmt('SELECT * FROM custody_keys WHERE id = ?').get(keyId) as KeyRow | undefined;
        if (!row) throw new CustodyError('ERR_KEY_NOT_FOUND', undefined, { detail: { keyId } });
        if (moved.changes !== 1) throw new CustodyError('ERR_KEY_STATE', `key is ${row.state}`, { detail: { keyId, state: row.state, wanted: to } });
        return toKey(row);
      })(),
    );
  }

  async markVersionsDestroyed(keyId: string, at: number): Promise<void> {
    await this.write(() => this.stmt(`UPDATE custody_key_versions SET state = 'destroyed', destroyed_at = ? WHERE key_id = ? AND state <> 'destroyed'`).run(at, keyId));
  }

  async setReleasePolicy(keyId: string, policy: string | null, at: number): Promise<KeyRecord> {
    return this.write(() =>
      this.db.transaction(() => {
        const moved = this.stmt(`UPDATE custody_keys SET release_policy = ?, updated_at = ? WHERE id = ? AND state = 'active'`).run(policy, at, keyId);
        if (moved.changes !== 1) throw this.conflictOrState(keyId);
        return toKey(this.stmt('SELECT * FROM custody_keys WHERE id = ?').get(keyId) as KeyRow);
      })(),
    );
  }

  async checkRelease(keyId: string, version: number, releasePolicy?: string | null): Promise<ReleaseCheck> {
    const row = await this.run(
      () =>
        this
          .stmt(
            `SELECT k.state, k.current_version, k.release_policy, v.state AS version_state
             FROM custody_keys k LEFT JOIN custody_key_versions v ON v.key_id = k.id AND v.version = ?
             WHERE k.id = ?`,
          )
          .get(version, keyId) as { state: string; current_version: number; version_state: string | null; release_policy: string | null } | undefined,
    );
    return classifyRelease(row, version, releasePolicy);
  }

  // sealed material

  async putSealed(materialId: string, keyId: string, version: number, blob: Uint8Array): Promise<void> {
    await this.write(() => this.stmt('INSERT INTO custody_key_material (material_id, key_id, version, blob) VALUES (?, ?, ?, ?)').run(materialId, keyId, version, Buffer.from(blob)));
  }

  async getSealed(materialId: string): Promise<Bytes | null> {
    const row = await this.run(() => this.stmt('SELECT blob FROM custody_key_material WHERE material_id = ?').get(materialId) as { blob: Buffer } | undefined);
    return row ? copyBytes(row.blob) : null;
  }

  async eraseSealed(materialIds: readonly string[]): Promise<void> {
    await this.write(() => {
      this.db.transaction(() => {
        const del = this.stmt('DELETE FROM custody_key_material WHERE material_id = ?');
        for (const id of materialIds) del.run(id);
      })();
      // secure_delete zeroes the freed pages in the database file; the WAL still holds the old
      // page images until a checkpoint rewrites them, so checkpoint and truncate it now.
      this.db.pragma('wal_checkpoint(TRUNCATE)');
    });
  }

  async getStoreMeta(name: string): Promise<Bytes | null> {
    const row = await this.run(() => this.stmt('SELECT value FROM custody_store_meta WHERE name = ?').get(name) as { value: Buffer } | undefined);
    return row ? copyBytes(row.value) : null;
  }

  async putStoreMetaIfAbsent(name: string, value: Uint8Array): Promise<Bytes> {
    return this.write(() =>
      this.db.transaction(() => {
        this.stmt('INSERT OR IGNORE INTO custody_store_meta (name, value) VALUES (?, ?)').run(name, Buffer.from(value));
        return copyBytes((this.stmt('SELECT value FROM custody_store_meta WHERE name = ?').get(name) as { value: Buffer }).value);
      })(),
    );
  }

  // sessions and nonces
  //
  // Session rows are committed without waiting for the disk: the next synced write (the audit
  // event every handshake step writes before it hands out a result) makes them durable, the WAL
  // being sequential. A crash can only lose sessions nobody was told about yet, or a nonce
  // consumption whose EAR never reached the workload: the workload redoes its handshake. No key
  // state or audit event depends on them being durable.

  async createSession(s: SessionRecord): Promise<void> {
    await this.run(() =>
      this
        .stmt('INSERT INTO custody_sessions (id, tenant, nonce, state, created_at, expires_at, nonce_consumed_at, binding) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(s.id, s.tenant, s.nonce, s.state, s.createdAt, s.expiresAt, s.nonceConsumedAt, s.binding ? JSON.stringify(s.binding) : null),
    );
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    const row = await this.run(() => this.stmt('SELECT * FROM custody_sessions WHERE id = ?').get(id) as SessionRow | undefined);
    return row ? toSession(row) : null;
  }

  async consumeNonce(nonce: string, now: number): Promise<SessionRecord> {
    return this.run(() => {
      // One statement: the WHERE clause and the write are atomic, so a nonce is consumed once.
      const row = this
        .stmt('UPDATE custody_sessions SET nonce_consumed_at = ? WHERE nonce = ? AND nonce_consumed_at IS NULL AND expires_at > ? RETURNING *')
        .get(now, nonce, now) as SessionRow | undefined;
      if (row) return toSession(row);
      const existing = this.stmt('SELECT * FROM custody_sessions WHERE nonce = ?').get(nonce) as SessionRow | undefined;
      throw new CustodyError(classifyNonce(existing, now));
    });
  }

  async bindSession(id: string, binding: Record<string, string>, expiresAt: number, now: number): Promise<SessionRecord> {
    return this.run(() => {
      const row = this
        .stmt(
          `UPDATE custody_sessions SET state = 'attested', binding = ?, expires_at = MIN(expires_at, ?)
           WHERE id = ? AND state = 'challenged' AND nonce_consumed_at IS NOT NULL AND expires_at > ? RETURNING *`,
        )
        .get(JSON.stringify(binding), expiresAt, id, now) as SessionRow | undefined;
      if (row) return toSession(row);
      const existing = this.stmt('SELECT * FROM custody_sessions WHERE id = ?').get(id) as SessionRow | undefined;
      if (!existing) throw new CustodyError('ERR_SESSION_NOT_FOUND');
      if (Number(existing.expires_at) <= now) throw new CustodyError('ERR_SESSION_EXPIRED');
      throw new CustodyError('ERR_SESSION_MISMATCH', 'session is not awaiting an attestation result', { detail: { state: existing.state } });
    });
  }

  async closeSession(id: string, at: number): Promise<void> {
    await this.run(() => this.stmt(`UPDATE custody_sessions SET state = 'closed', expires_at = MIN(expires_at, ?) WHERE id = ?`).run(at, id));
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    return this.run(() => this.stmt('DELETE FROM custody_sessions WHERE expires_at <= ?').run(now).changes);
  }

  // API keys

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    await this.write(() =>
      this
        .stmt('INSERT INTO custody_api_keys (id, tenant, role, secret_hash, label, created_at, created_by, revoked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        .run(k.id, k.tenant, k.role, Buffer.from(k.secretHash), k.label, k.createdAt, k.createdBy, k.revokedAt),
    );
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    const row = await this.run(() => this.stmt('SELECT * FROM custody_api_keys WHERE id = ?').get(id) as ApiKeyRow | undefined);
    return row ? toApiKey(row) : null;
  }

  async listApiKeys(tenant: string): Promise<ApiKeyRecord[]> {
    const rows = await this.run(() => this.stmt('SELECT * FROM custody_api_keys WHERE tenant = ? ORDER BY created_at, id').all(tenant) as ApiKeyRow[]);
    return rows.map(toApiKey);
  }

  async revokeApiKey(tenant: string, id: string, at: number): Promise<boolean> {
    return this.write(() => this.stmt('UPDATE custody_api_keys SET revoked_at = ? WHERE tenant = ? AND id = ? AND revoked_at IS NULL').run(at, tenant, id).changes === 1);
  }

  // interim audit

  async appendAudit(tenant: string, at: number, canonicalEvent: string): Promise<{ index: number }> {
    return this.write(() =>
      this.db
        .transaction(() => {
          const last = this.stmt('SELECT idx, hash FROM custody_audit_interim ORDER BY idx DESC LIMIT 1').get() as { idx: number; hash: Buffer } | undefined;
          const index = last ? last.idx + 1 : 0;
          const hash = chainHash(last ? last.hash : null, canonicalEvent);
          this.stmt('INSERT INTO custody_audit_interim (idx, tenant, at, event, hash) VALUES (?, ?, ?, ?, ?)').run(index, tenant, at, canonicalEvent, Buffer.from(hash));
          return { index };
        })
        .immediate(),
    );
  }

  async readAudit(tenant: string | null, afterIndex: number, limit: number): Promise<StoredAuditEvent[]> {
    const rows = await this.run(
      () =>
        (tenant === null
          ? this.stmt('SELECT * FROM custody_audit_interim WHERE idx > ? ORDER BY idx LIMIT ?').all(afterIndex, limit)
          : this.stmt('SELECT * FROM custody_audit_interim WHERE tenant = ? AND idx > ? ORDER BY idx LIMIT ?').all(tenant, afterIndex, limit)) as AuditRow[],
    );
    return rows.map(toAudit);
  }

  async leaseAuditForwarding(holder: string, ttlMs: number): Promise<boolean> {
    const now = Date.now();
    return this.write(
      () =>
        this.stmt(
          `INSERT INTO custody_audit_forwarder (id, holder, until_ms) VALUES (1, ?, ?)
           ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
           WHERE custody_audit_forwarder.holder = excluded.holder OR custody_audit_forwarder.until_ms <= ?`,
        ).run(holder, now + ttlMs, now).changes === 1,
    );
  }

  async releaseAuditForwarding(holder: string): Promise<void> {
    await this.write(() => this.stmt('UPDATE custody_audit_forwarder SET until_ms = 0 WHERE holder = ?').run(holder));
  }

  // tenant appraisal policies

  async putTenantPolicy(r: Omit<TenantPolicyRecord, 'revision'>): Promise<TenantPolicyRecord> {
    return this.write(() =>
      toTenantPolicy(
        this
          .stmt(
            `INSERT INTO custody_tenant_policies (tenant, text, policy_id, policy_version, digest, revision, updated_at, updated_by)
             VALUES (?, ?, ?, ?, ?, 1, ?, ?)
             ON CONFLICT (tenant) DO UPDATE SET text = excluded.text, policy_id = excluded.policy_id, policy_version = excluded.policy_version,
               digest = excluded.digest, revision = custody_tenant_policies.revision + 1, updated_at = excluded.updated_at, updated_by = excluded.updated_by
             RETURNING *`,
          )
          .get(r.tenant, r.text, r.policyId, r.policyVersion, r.digest, r.updatedAt, r.updatedBy) as TenantPolicyRow,
      ),
    );
  }

  async getTenantPolicy(tenant: string): Promise<TenantPolicyRecord | null> {
    const row = await this.run(() => this.stmt('SELECT * FROM custody_tenant_policies WHERE tenant = ?').get(tenant) as TenantPolicyRow | undefined);
    return row ? toTenantPolicy(row) : null;
  }

  async getTenantPolicyStamp(tenant: string): Promise<TenantPolicyStamp | null> {
    const row = await this.run(() => this.stmt('SELECT revision, digest FROM custody_tenant_policies WHERE tenant = ?').get(tenant) as { revision: number; digest: string } | undefined);
    return row ? { revision: Number(row.revision), digest: row.digest } : null;
  }

  async deleteTenantPolicy(tenant: string, expectedRevision: number): Promise<TenantPolicyRecord | null> {
    return this.write(() => {
      // One statement: the revision check and the delete are atomic against writers in other processes.
      const row = this.stmt('DELETE FROM custody_tenant_policies WHERE tenant = ? AND revision = ? RETURNING *').get(tenant, expectedRevision) as TenantPolicyRow | undefined;
      return row ? toTenantPolicy(row) : null;
    });
  }

  private insertVersion(v: KeyVersionRecord): void {
    this
      .stmt(
        `INSERT INTO custody_key_versions (key_id, version, state, origin, material_id, material_length, public_key, created_at, destroyed_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(v.keyId, v.version, v.state, v.origin, v.materialId, v.materialLength, v.publicKey ? Buffer.from(v.publicKey) : null, v.createdAt, v.destroyedAt);
  }

  private conflictOrState(keyId: string): CustodyError {
    const row = this.stmt('SELECT state FROM custody_keys WHERE id = ?').get(keyId) as { state: string } | undefined;
    if (!row) return new CustodyError('ERR_KEY_NOT_FOUND', undefined, { detail: { keyId } });
    if (row.state !== 'active') return new CustodyError(row.state === 'revoked' ? 'ERR_KEY_REVOKED' : 'ERR_KEY_DESTROYED', undefined, { detail: { keyId } });
    return new CustodyError('ERR_KEY_CONFLICT', undefined, { detail: { keyId } });
  }

  /** Prepared statements by SQL text (better-sqlite3 statements are reusable). */
  private readonly statements = new Map<string, Database.Statement>();

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  /** A write: run, then wait until the WAL holding it is on disk (group commit). */
  private async write<T>(fn: () => T): Promise<T> {
    const out = await this.run(fn);
    await this.wal?.sync();
    return out;
  }

  private async run<T>(fn: () => T): Promise<T> {
    await Promise.resolve();
    if (!this.db.open) throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store is closed');
    try {
      return fn();
    } catch (e) {
      throw mapSqliteError(e);
    }
  }
}

/** SQLite failures as stable codes; constraint violations on (tenant, name) mean "exists". */
export function mapSqliteError(e: unknown): CustodyError {
  if (e instanceof CustodyError) return e;
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : '';
  const message = e instanceof Error ? e.message : '';
  if (code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
    if (message.includes('custody_keys.tenant')) return new CustodyError('ERR_KEY_EXISTS');
    return new CustodyError('ERR_KEY_CONFLICT', 'a record with this id already exists', { detail: { sqlite: code } });
  }
  if (code.startsWith('SQLITE_CORRUPT') || code === 'SQLITE_NOTADB') return new CustodyError('ERR_STORE_CORRUPT', 'the metadata database is corrupt', { detail: { sqlite: code } });
  if (code.startsWith('SQLITE_CONSTRAINT')) return new CustodyError('ERR_STORE_BACKEND', 'the metadata store refused the change', { detail: { sqlite: code } });
  if (code.startsWith('SQLITE_') || /not open/.test(message)) return new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store is unavailable', { detail: { sqlite: code || 'closed' } });
  return new CustodyError('ERR_INTERNAL', undefined, { cause: e });
}
