import pg from 'pg';
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

/** Arbitrary constants naming the advisory locks (migration and interim audit chain). */
const LOCK_MIGRATE = 0x637573_01;
const LOCK_AUDIT = 0x637573_02;

const SCHEMA = [
  `CREATE TABLE IF NOT EXISTS custody_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    type TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'revoked', 'destroyed')),
    exportable BOOLEAN NOT NULL,
    current_version INTEGER NOT NULL,
    release_policy TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    revoked_at BIGINT,
    destroyed_at BIGINT,
    CONSTRAINT custody_keys_tenant_name UNIQUE (tenant, name)
  )`,
  `CREATE TABLE IF NOT EXISTS custody_key_versions (
    key_id TEXT NOT NULL REFERENCES custody_keys(id),
    version INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('enabled', 'destroyed')),
    origin TEXT NOT NULL,
    material_id TEXT NOT NULL UNIQUE,
    material_length INTEGER NOT NULL,
    public_key BYTEA,
    created_at BIGINT NOT NULL,
    destroyed_at BIGINT,
    PRIMARY KEY (key_id, version)
  )`,
  `CREATE TABLE IF NOT EXISTS custody_key_material (
    material_id TEXT PRIMARY KEY,
    key_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    blob BYTEA NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS custody_store_meta (name TEXT PRIMARY KEY, value BYTEA NOT NULL)`,
  `CREATE TABLE IF NOT EXISTS custody_sessions (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    nonce TEXT NOT NULL UNIQUE,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    nonce_consumed_at BIGINT,
    binding TEXT
  )`,
  `CREATE INDEX IF NOT EXISTS custody_sessions_expires ON custody_sessions (expires_at)`,
  `CREATE TABLE IF NOT EXISTS custody_api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('admin', 'auditor', 'workload')),
    secret_hash BYTEA NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    revoked_at BIGINT
  )`,
  `CREATE TABLE IF NOT EXISTS custody_audit_interim (
    idx BIGINT PRIMARY KEY,
    tenant TEXT NOT NULL,
    at BIGINT NOT NULL,
    event TEXT NOT NULL,
    hash BYTEA NOT NULL
  )`,
  `CREATE INDEX IF NOT EXISTS custody_audit_interim_tenant ON custody_audit_interim (tenant, idx)`,
  `CREATE OR REPLACE FUNCTION custody_audit_interim_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
   BEGIN RAISE EXCEPTION 'custody_audit_interim is append-only'; END $$`,
  `DROP TRIGGER IF EXISTS custody_audit_interim_append_only ON custody_audit_interim`,
  `CREATE TRIGGER custody_audit_interim_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON custody_audit_interim
   FOR EACH STATEMENT EXECUTE FUNCTION custody_audit_interim_append_only()`,
  `CREATE TABLE IF NOT EXISTS custody_audit_forwarder (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    until_ms BIGINT NOT NULL
  )`,
  `CREATE TABLE IF NOT EXISTS custody_tenant_policies (
    tenant TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    policy_id TEXT NOT NULL,
    policy_version BIGINT NOT NULL,
    digest TEXT NOT NULL,
    revision BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
  )`,
];

export interface PostgresMetadataStoreOptions {
  /** postgres://user@host:port/db */
  connectionString: string;
  /** Pool size per broker process. */
  maxConnections?: number;
  /** How long to wait for a connection before failing closed with ERR_STORE_UNAVAILABLE. */
  connectTimeoutMs?: number;
  /** Longest wait for a query's answer (default 10 s): past it the call fails with ERR_STORE_UNAVAILABLE and its connection is dropped. */
  queryTimeoutMs?: number;
}

type Client = pg.PoolClient;

/**
 * Metadata in PostgreSQL, for several broker replicas sharing state. Every multi-step change
 * is one transaction whose WHERE clause carries the precondition (optimistic concurrency), so
 * replicas never overwrite each other; nonces are consumed by one conditional UPDATE, which
 * PostgreSQL row locking makes single-winner under READ COMMITTED.
 */
export class PostgresMetadataStore implements MetadataStore {
  readonly backend = 'postgres' as const;
  private closed = false;

  private constructor(private readonly pool: pg.Pool) {}

  static async open(options: PostgresMetadataStoreOptions): Promise<PostgresMetadataStore> {
    // A malformed setting is the operator's to fix (exit 2), not an outage to retry; the text is
    // not quoted back, as it may hold a password.
    const cs = options.connectionString;
    if (!/^postgres(ql)?:\/\//i.test(cs) || !URL.canParse(cs)) {
      throw new CustodyError('ERR_STORE_CONFIG', 'the PostgreSQL connection string must be a postgres:// or postgresql:// URL');
    }
    const pool = new pg.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 10,
      connectionTimeoutMillis: options.connectTimeoutMs ?? 3000,
      // A server that stops answering fails calls (ERR_STORE_UNAVAILABLE) instead of holding them.
      query_timeout: options.queryTimeoutMs ?? 10_000,
      keepAlive: true,
      idleTimeoutMillis: 30_000,
    });
    // An idle client losing its server must not crash the process; the next query fails closed.
    pool.on('error', () => undefined);
    const store = new PostgresMetadataStore(pool);
    try {
      await store.migrate();
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  async migrate(): Promise<void> {
    await this.tx(async (c) => {
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_MIGRATE]);
      for (const sql of SCHEMA) await c.query(sql);
    });
  }

  async ping(): Promise<void> {
    const at = Buffer.alloc(8);
    at.writeDoubleBE(Date.now());
    await this.q(`INSERT INTO custody_store_meta (name, value) VALUES ('${PING_ROW}', $1) ON CONFLICT (name) DO UPDATE SET value = excluded.value`, [at]);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.pool.end();
  }

  // keys

  async insertKey(key: KeyRecord, first: KeyVersionRecord): Promise<void> {
    await this.tx(async (c) => {
      await c.query(
        `INSERT INTO custody_keys (id, tenant, name, type, state, exportable, current_version, release_policy, created_at, updated_at, revoked_at, destroyed_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)`,
        [key.id, key.tenant, key.name, key.type, key.state, key.exportable, key.currentVersion, key.releasePolicy, key.createdAt, key.updatedAt, key.revokedAt, key.destroyedAt],
      );
      await insertVersion(c, first);
    });
  }

  async getKey(tenant: string, name: string): Promise<KeyRecord | null> {
    const rows = await this.q<KeyRow>('SELECT * FROM custody_keys WHERE tenant = $1 AND name = $2', [tenant, name]);
    return rows[0] ? toKey(rows[0]) : null;
  }

  async getKeyById(id: string): Promise<KeyRecord | null> {
    const rows = await this.q<KeyRow>('SELECT * FROM custody_keys WHERE id = $1', [id]);
    return rows[0] ? toKey(rows[0]) : null;
  }

  async listKeys(tenant: string): Promise<KeyRecord[]> {
    return (await this.q<KeyRow>('SELECT * FROM custody_keys WHERE tenant = $1 ORDER BY name COLLATE "C"', [tenant])).map(toKey);
  }

  async listVersions(keyId: string): Promise<KeyVersionRecord[]> {
    return (await this.q<VersionRow>('SELECT * FROM custody_key_versions WHERE key_id = $1 ORDER BY version', [keyId])).map(toVersion);
  }

  async getVersion(keyId: string, version: number): Promise<KeyVersionRecord | null> {
    const rows = await this.q<VersionRow>('SELECT * FROM custody_key_versions WHERE key_id = $1 AND version = $2', [keyId, version]);
    return rows[0] ? toVersion(rows[0]) : null;
  }

  async addVersion(keyId: string, expectedCurrent: number, next: KeyVersionRecord, at: number): Promise<KeyRecord> {
    return this.tx(async (c) => {
      const moved = await c.query<KeyRow>(
        `UPDATE custody_keys SET current_version = $1, updated_at = $2 WHERE id = $3 AND current_version = $4 AND state = 'active' RETURNING *`,
        [next.version, at, keyId, expectedCurrent],
      );
      if (moved.rowCount !== 1) throw await conflictOrState(c, keyId);
      await insertVersion(c, next);
      return toKey(moved.rows[0]!);
    });
  }

  async transitionKey(keyId: string, from: readonly KeyState[], to: KeyState, at: number): Promise<KeyRecord> {
    return this.tx(async (c) => {
      const stamp = to === 'revoked' ? ', revoked_at = $2' : to === 'destroyed' ? ', destroyed_at = $2' : '';
      const moved = await c.query<KeyRow>(`UPDATE custody_keys SET state = $1, updated_at = $2${stamp} WHERE id = $3 AND state = ANY($4::text[]) RETURNING *`, [to, at, keyId, [...from]]);
      if (moved.rowCount === 1) return toKey(moved.rows[0]!);
      const row = (await c.query<KeyRow>('SELECT * FROM custody_keys WHERE id = $1', [keyId])).rows[0];
      if (!row) throw new CustodyError('ERR_KEY_NOT_FOUND', undefined, { detail: { keyId } });
      throw new CustodyError('ERR_KEY_STATE', `key is ${row.state}`, { detail: { keyId, state: row.state, wanted: to } });
    });
  }

  async markVersionsDestroyed(keyId: string, at: number): Promise<void> {
    await this.q(`UPDATE custody_key_versions SET state = 'destroyed', destroyed_at = $1 WHERE key_id = $2 AND state <> 'destroyed'`, [at, keyId]);
  }

  async setReleasePolicy(keyId: string, policy: string | null, at: number): Promise<KeyRecord> {
    return this.tx(async (c) => {
      const moved = await c.query<KeyRow>(`UPDATE custody_keys SET release_policy = $1, updated_at = $2 WHERE id = $3 AND state = 'active' RETURNING *`, [policy, at, keyId]);
      if (moved.rowCount !== 1) throw await conflictOrState(c, keyId);
      return toKey(moved.rows[0]!);
    });
  }

  async checkRelease(keyId: string, version: number, releasePolicy?: string | null): Promise<ReleaseCheck> {
    const rows = await this.q<{ state: string; current_version: number; version_state: string | null; release_policy: string | null }>(
      `SELECT k.state, k.current_version, k.release_policy, v.state AS version_state
       FROM custody_keys k LEFT JOIN custody_key_versions v ON v.key_id = k.id AND v.version = $1
       WHERE k.id = $2`,
      [version, keyId],
    );
    return classifyRelease(rows[0], version, releasePolicy);
  }

  // sealed material

  async putSealed(materialId: string, keyId: string, version: number, blob: Uint8Array): Promise<void> {
    await this.q('INSERT INTO custody_key_material (material_id, key_id, version, blob) VALUES ($1, $2, $3, $4)', [materialId, keyId, version, Buffer.from(blob)]);
  }

  async getSealed(materialId: string): Promise<Bytes | null> {
    const rows = await this.q<{ blob: Buffer }>('SELECT blob FROM custody_key_material WHERE material_id = $1', [materialId]);
    return rows[0] ? copyBytes(rows[0].blob) : null;
  }

  /**
   * Deletes the sealed blobs. PostgreSQL keeps dead tuples until VACUUM reclaims them; they
   * hold only ciphertext under the master key, but operators who want them gone from disk
   * should run VACUUM on custody_key_material after a destroy.
   */
  async eraseSealed(materialIds: readonly string[]): Promise<void> {
    await this.q('DELETE FROM custody_key_material WHERE material_id = ANY($1::text[])', [[...materialIds]]);
  }

  async getStoreMeta(name: string): Promise<Bytes | null> {
    const rows = await this.q<{ value: Buffer }>('SELECT value FROM custody_store_meta WHERE name = $1', [name]);
    return rows[0] ? copyBytes(rows[0].value) : null;
  }

  async putStoreMetaIfAbsent(name: string, value: Uint8Array): Promise<Bytes> {
    return this.tx(async (c) => {
      await c.query('INSERT INTO custody_store_meta (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, Buffer.from(value)]);
      const rows = await c.query<{ value: Buffer }>('SELECT value FROM custody_store_meta WHERE name = $1', [name]);
      return copyBytes(rows.rows[0]!.value);
    });
  }

  // sessions and nonces

  async createSession(s: SessionRecord): Promise<void> {
    await this.q('INSERT INTO custody_sessions (id, tenant, nonce, state, created_at, expires_at, nonce_consumed_at, binding) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
      s.id,
      s.tenant,
      s.nonce,
      s.state,
      s.createdAt,
      s.expiresAt,
      s.nonceConsumedAt,
      s.binding ? JSON.stringify(s.binding) : null,
    ]);
  }

  async getSession(id: string): Promise<SessionRecord | null> {
    const rows = await this.q<SessionRow>('SELECT * FROM custody_sessions WHERE id = $1', [id]);
    return rows[0] ? toSession(rows[0]) : null;
  }

  async consumeNonce(nonce: string, now: number): Promise<SessionRecord> {
    // A concurrent second UPDATE waits for the first's row lock, then re-checks the WHERE
    // clause against the committed row and matches nothing: exactly one consumer wins.
    const rows = await this.q<SessionRow>('UPDATE custody_sessions SET nonce_consumed_at = $1 WHERE nonce = $2 AND nonce_consumed_at IS NULL AND expires_at > $1 RETURNING *', [now, nonce]);
    if (rows[0]) return toSession(rows[0]);
    const existing = (await this.q<SessionRow>('SELECT * FROM custody_sessions WHERE nonce = $1', [nonce]))[0];
    throw new CustodyError(classifyNonce(existing, now));
  }

  async bindSession(id: string, binding: Record<string, string>, expiresAt: number, now: number): Promise<SessionRecord> {
    const rows = await this.q<SessionRow>(
      `UPDATE custody_sessions SET state = 'attested', binding = $1, expires_at = LEAST(expires_at, $2)
       WHERE id = $3 AND state = 'challenged' AND nonce_consumed_at IS NOT NULL AND expires_at > $4 RETURNING *`,
      [JSON.stringify(binding), expiresAt, id, now],
    );
    if (rows[0]) return toSession(rows[0]);
    const existing = (await this.q<SessionRow>('SELECT * FROM custody_sessions WHERE id = $1', [id]))[0];
    if (!existing) throw new CustodyError('ERR_SESSION_NOT_FOUND');
    if (Number(existing.expires_at) <= now) throw new CustodyError('ERR_SESSION_EXPIRED');
    throw new CustodyError('ERR_SESSION_MISMATCH', 'session is not awaiting an attestation result', { detail: { state: existing.state } });
  }

  async closeSession(id: string, at: number): Promise<void> {
    await this.q(`UPDATE custody_sessions SET state = 'closed', expires_at = LEAST(expires_at, $1) WHERE id = $2`, [at, id]);
  }

  async purgeExpiredSessions(now: number): Promise<number> {
    const r = await this.raw('DELETE FROM custody_sessions WHERE expires_at <= $1', [now]);
    return r.rowCount ?? 0;
  }

  // API keys

  async insertApiKey(k: ApiKeyRecord): Promise<void> {
    await this.q('INSERT INTO custody_api_keys (id, tenant, role, secret_hash, label, created_at, created_by, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)', [
      k.id,
      k.tenant,
      k.role,
      Buffer.from(k.secretHash),
      k.label,
      k.createdAt,
      k.createdBy,
      k.revokedAt,
    ]);
  }

  async getApiKey(id: string): Promise<ApiKeyRecord | null> {
    const rows = await this.q<ApiKeyRow>('SELECT * FROM custody_api_keys WHERE id = $1', [id]);
    return rows[0] ? toApiKey(rows[0]) : null;
  }

  async listApiKeys(tenant: string): Promise<ApiKeyRecord[]> {
    return (await this.q<ApiKeyRow>('SELECT * FROM custody_api_keys WHERE tenant = $1 ORDER BY created_at, id', [tenant])).map(toApiKey);
  }

  async revokeApiKey(tenant: string, id: string, at: number): Promise<boolean> {
    const r = await this.raw('UPDATE custody_api_keys SET revoked_at = $1 WHERE tenant = $2 AND id = $3 AND revoked_at IS NULL', [at, tenant, id]);
    return r.rowCount === 1;
  }

  // interim audit

  async appendAudit(tenant: string, at: number, canonicalEvent: string): Promise<{ index: number }> {
    return this.tx(async (c) => {
      // Serialises appends across replicas so the hash chain has one order.
      await c.query('SELECT pg_advisory_xact_lock($1)', [LOCK_AUDIT]);
      const last = (await c.query<{ idx: string; hash: Buffer }>('SELECT idx, hash FROM custody_audit_interim ORDER BY idx DESC LIMIT 1')).rows[0];
      const index = last ? Number(last.idx) + 1 : 0;
      const hash = chainHash(last ? last.hash : null, canonicalEvent);
      await c.query('INSERT INTO custody_audit_interim (idx, tenant, at, event, hash) VALUES ($1, $2, $3, $4, $5)', [index, tenant, at, canonicalEvent, Buffer.from(hash)]);
      return { index };
    });
  }

  async readAudit(tenant: string | null, afterIndex: number, limit: number): Promise<StoredAuditEvent[]> {
    const rows =
      tenant === null
        ? await this.q<AuditRow>('SELECT * FROM custody_audit_interim WHERE idx > $1 ORDER BY idx LIMIT $2', [afterIndex, limit])
        : await this.q<AuditRow>('SELECT * FROM custody_audit_interim WHERE tenant = $1 AND idx > $2 ORDER BY idx LIMIT $3', [tenant, afterIndex, limit]);
    return rows.map(toAudit);
  }

  async leaseAuditForwarding(holder: string, ttlMs: number): Promise<boolean> {
    // The server's clock, so that replicas' clocks do not decide who holds the lease.
    const r = await this.raw(
      `INSERT INTO custody_audit_forwarder AS f (id, holder, until_ms)
       VALUES (1, $1, (extract(epoch FROM clock_timestamp()) * 1000)::bigint + $2)
       ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms
       WHERE f.holder = excluded.holder OR f.until_ms <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint`,
      [holder, Math.trunc(ttlMs)],
    );
    return r.rowCount === 1;
  }

  async releaseAuditForwarding(holder: string): Promise<void> {
    await this.raw('UPDATE custody_audit_forwarder SET until_ms = 0 WHERE holder = $1', [holder]);
  }

  // tenant appraisal policies

  async putTenantPolicy(r: Omit<TenantPolicyRecord, 'revision'>): Promise<TenantPolicyRecord> {
    // One statement: concurrent writers from several replicas serialise on the row and each gets its own revision.
    const rows = await this.q<TenantPolicyRow>(
      `INSERT INTO custody_tenant_policies (tenant, text, policy_id, policy_version, digest, revision, updated_at, updated_by)
       VALUES ($1, $2, $3, $4, $5, 1, $6, $7)
       ON CONFLICT (tenant) DO UPDATE SET text = EXCLUDED.text, policy_id = EXCLUDED.policy_id, policy_version = EXCLUDED.policy_version,
         digest = EXCLUDED.digest, revision = custody_tenant_policies.revision + 1, updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by
       RETURNING *`,
      [r.tenant, r.text, r.policyId, r.policyVersion, r.digest, r.updatedAt, r.updatedBy],
    );
    return toTenantPolicy(rows[0]!);
  }

  async getTenantPolicy(tenant: string): Promise<TenantPolicyRecord | null> {
    const rows = await this.q<TenantPolicyRow>('SELECT * FROM custody_tenant_policies WHERE tenant = $1', [tenant]);
    return rows[0] ? toTenantPolicy(rows[0]) : null;
  }

  async getTenantPolicyStamp(tenant: string): Promise<TenantPolicyStamp | null> {
    const rows = await this.q<{ revision: string; digest: string }>('SELECT revision, digest FROM custody_tenant_policies WHERE tenant = $1', [tenant]);
    return rows[0] ? { revision: Number(rows[0].revision), digest: rows[0].digest } : null;
  }

  async deleteTenantPolicy(tenant: string, expectedRevision: number): Promise<TenantPolicyRecord | null> {
    // One statement: a concurrent write from another replica either commits first (the revision
    // no longer matches: nothing is deleted) or waits for this delete and then inserts anew.
    const rows = await this.q<TenantPolicyRow>('DELETE FROM custody_tenant_policies WHERE tenant = $1 AND revision = $2 RETURNING *', [tenant, expectedRevision]);
    return rows[0] ? toTenantPolicy(rows[0]) : null;
  }

  private async q<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<R[]> {
    return (await this.raw<R>(sql, params)).rows;
  }

  private async raw<R extends pg.QueryResultRow = pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<pg.QueryResult<R>> {
    if (this.closed) throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store is closed');
    try {
      return await this.pool.query<R>(sql, params);
    } catch (e) {
      throw mapPgError(e);
    }
  }

  private async tx<T>(fn: (c: Client) => Promise<T>): Promise<T> {
    if (this.closed) throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store is closed');
    let c: Client;
    try {
      c = await this.pool.connect();
    } catch (e) {
      throw mapPgError(e);
    }
    let broken = false;
    // An 'error' the client emits while held (its server went away between two queries) fails
    // this call instead of crashing the process; the client is then dropped, not pooled again.
    const onError = () => {
      broken = true;
    };
    c.on('error', onError);
    try {
      await c.query('BEGIN');
      const out = await fn(c);
      await c.query('COMMIT');
      return out;
    } catch (e) {
      const mapped = mapPgError(e);
      broken ||= mapped.code === 'ERR_STORE_UNAVAILABLE';
      if (!broken)
        await c.query('ROLLBACK').catch(() => {
          broken = true;
        });
      throw mapped;
    } finally {
      c.off('error', onError);
      c.release(broken);
    }
  }
}

async function insertVersion(c: Client, v: KeyVersionRecord): Promise<void> {
  await c.query(
    `INSERT INTO custody_key_versions (key_id, version, state, origin, material_id, material_length, public_key, created_at, destroyed_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [v.keyId, v.version, v.state, v.origin, v.materialId, v.materialLength, v.publicKey ? Buffer.from(v.publicKey) : null, v.createdAt, v.destroyedAt],
  );
}

async function conflictOrState(c: Client, keyId: string): Promise<CustodyError> {
  const row = (await c.query<{ state: string }>('SELECT state FROM custody_keys WHERE id = $1', [keyId])).rows[0];
  if (!row) return new CustodyError('ERR_KEY_NOT_FOUND', undefined, { detail: { keyId } });
  if (row.state !== 'active') return new CustodyError(row.state === 'revoked' ? 'ERR_KEY_REVOKED' : 'ERR_KEY_DESTROYED', undefined, { detail: { keyId } });
  return new CustodyError('ERR_KEY_CONFLICT', undefined, { detail: { keyId } });
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** PostgreSQL and network failures as stable codes. SQLSTATE class 08 and 57P0x mean unavailable. */
export function mapPgError(e: unknown): CustodyError {
  if (e instanceof CustodyError) return e;
  const code = typeof (e as { code?: unknown })?.code === 'string' ? (e as { code: string }).code : '';
  const message = e instanceof Error ? e.message : '';
  const constraint = typeof (e as { constraint?: unknown })?.constraint === 'string' ? (e as { constraint: string }).constraint : '';
  if (code === '23505') {
    if (constraint === 'custody_keys_tenant_name') return new CustodyError('ERR_KEY_EXISTS');
    return new CustodyError('ERR_KEY_CONFLICT', 'a record with this id already exists', { detail: { sqlstate: code } });
  }
  // 25006: a read-only transaction (a standby, default_transaction_read_only); 53100: disk full;
  // 58030: I/O error. The store cannot take writes now, and may again later.
  if (NETWORK_CODES.has(code) || code.startsWith('08') || /^57P0[1-3]$/.test(code) || code === '53300' || code === '25006' || code === '53100' || code === '58030' || /Connection terminated|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Cannot use a pool after calling end/i.test(message)) {
    return new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store is unavailable', { detail: { sqlstate: code || 'connection' } });
  }
  if (/^[0-9A-Z]{5}$/.test(code)) return new CustodyError('ERR_STORE_BACKEND', 'the metadata store refused the operation', { detail: { sqlstate: code } });
  return new CustodyError('ERR_INTERNAL', undefined, { cause: e });
}
