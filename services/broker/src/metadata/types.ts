import type { Bytes } from '@custody/core';
import type { KeyRecord, KeyState, KeyVersionRecord } from '../keys/types.js';

/**
 * Broker state outside key material: keys, versions, release policies, sessions and nonces,
 * API keys, the interim audit table, and the embedded key store's sealed material. SQLite for
 * one broker, PostgreSQL when replicas share state. Both implement every method atomically;
 * they never cache, so a state change committed by one replica is seen by the next read of any.
 *
 * Errors: ERR_STORE_UNAVAILABLE when the database cannot be reached, ERR_KEY_EXISTS,
 * ERR_KEY_CONFLICT, ERR_KEY_STATE as documented per method.
 */
export interface MetadataStore extends KeyRepository, SealedMaterialRepository, SessionRepository, ApiKeyRepository, AuditRepository, TenantPolicyRepository {
  readonly backend: 'sqlite' | 'postgres';
  /** Creates or upgrades the schema; safe to call from several replicas at once. */
  migrate(): Promise<void>;
  /**
   * Succeeds only when the store answers and takes writes (a one-row write to its meta table):
   * a database on a full or read-only disk, or a PostgreSQL standby after a failover, still
   * answers reads but fails every write the broker needs, and readiness says so.
   */
  ping(): Promise<void>;
  close(): Promise<void>;
}

/** Outcome of the release-time re-check. Only `ok` lets material leave. */
/** `policy-changed`: the key's release policy is no longer the one the release evaluated. */
export type ReleaseCheck = 'ok' | 'revoked' | 'destroyed' | 'rotated' | 'policy-changed' | 'missing';

export interface KeyRepository {
  /** Inserts a key with its first version. ERR_KEY_EXISTS when (tenant, name) is taken. */
  insertKey(key: KeyRecord, first: KeyVersionRecord): Promise<void>;
  getKey(tenant: string, name: string): Promise<KeyRecord | null>;
  getKeyById(id: string): Promise<KeyRecord | null>;
  listKeys(tenant: string): Promise<KeyRecord[]>;
  listVersions(keyId: string): Promise<KeyVersionRecord[]>;
  getVersion(keyId: string, version: number): Promise<KeyVersionRecord | null>;
  /**
   * Adds `next` (version = expectedCurrent + 1) and makes it current, only if the key is still
   * active and its current version is still `expectedCurrent`; otherwise ERR_KEY_CONFLICT
   * (or ERR_KEY_STATE when no longer active). Atomic.
   */
  addVersion(keyId: string, expectedCurrent: number, next: KeyVersionRecord, at: number): Promise<KeyRecord>;
  /** Moves a key from one of `from` to `to` atomically; ERR_KEY_STATE otherwise. */
  transitionKey(keyId: string, from: readonly KeyState[], to: KeyState, at: number): Promise<KeyRecord>;
  /** Marks every version destroyed (material already erased by the key store). */
  markVersionsDestroyed(keyId: string, at: number): Promise<void>;
  setReleasePolicy(keyId: string, policy: string | null, at: number): Promise<KeyRecord>;
  /**
   * The release-time re-check: reads the committed state of the key and version in one
   * statement. Called after material was wrapped and immediately before it is returned.
   */
  /** The key's state for a release of `version` under `releasePolicy` (when given: the policy the release evaluated), in one read. */
  checkRelease(keyId: string, version: number, releasePolicy?: string | null): Promise<ReleaseCheck>;
}

export interface SealedMaterialRepository {
  /** Stores an encrypted blob for one material id (insert-only). */
  putSealed(materialId: string, keyId: string, version: number, blob: Uint8Array): Promise<void>;
  getSealed(materialId: string): Promise<Bytes | null>;
  /** Deletes the blobs and, where the engine allows, scrubs freed pages. */
  eraseSealed(materialIds: readonly string[]): Promise<void>;
  getStoreMeta(name: string): Promise<Bytes | null>;
  /** Returns the stored value for `name`, inserting `value` first when absent (atomic). */
  putStoreMetaIfAbsent(name: string, value: Uint8Array): Promise<Bytes>;
}

export type SessionState = 'challenged' | 'attested' | 'closed';

export interface SessionRecord {
  id: string;
  tenant: string;
  /** The challenge nonce, hex. Single-use: consumed exactly once by `consumeNonce`. */
  nonce: string;
  state: SessionState;
  createdAt: number;
  expiresAt: number;
  nonceConsumedAt: number | null;
  /** Public facts bound to the session after attestation (EAR digest, TEE key digest). */
  binding: Record<string, string> | null;
}

export interface SessionRepository {
  createSession(session: SessionRecord): Promise<void>;
  getSession(id: string): Promise<SessionRecord | null>;
  /**
   * Atomically marks the nonce used and returns its session, only if it was unused and not
   * expired at `now`. Throws ERR_SESSION_NONCE_USED, ERR_SESSION_EXPIRED or
   * ERR_SESSION_NOT_FOUND otherwise. Two replicas racing on one nonce: exactly one wins.
   */
  consumeNonce(nonce: string, now: number): Promise<SessionRecord>;
  /** Records the attestation binding; only for a `challenged` session that has not expired. */
  bindSession(id: string, binding: Record<string, string>, expiresAt: number, now: number): Promise<SessionRecord>;
  closeSession(id: string, at: number): Promise<void>;
  /** Deletes sessions that expired before `now`; returns how many. */
  purgeExpiredSessions(now: number): Promise<number>;
}

export type Role = 'admin' | 'auditor' | 'workload';
/** The meta-table row `ping()` writes (the time of the last ping): nothing reads it. */
export const PING_ROW = 'ready-probe';

export const ROLES: readonly Role[] = ['admin', 'auditor', 'workload'];

export interface ApiKeyRecord {
  /** Public id, 16 hex, embedded in the token so the hash can be looked up. */
  id: string;
  tenant: string;
  role: Role;
  /** SHA-256 of the token's 32 random bytes. The token itself is never stored. */
  secretHash: Bytes;
  label: string;
  createdAt: number;
  createdBy: string;
  revokedAt: number | null;
}

export interface ApiKeyRepository {
  insertApiKey(key: ApiKeyRecord): Promise<void>;
  getApiKey(id: string): Promise<ApiKeyRecord | null>;
  listApiKeys(tenant: string): Promise<ApiKeyRecord[]>;
  /** Returns false when no active key with this id exists in the tenant. */
  revokeApiKey(tenant: string, id: string, at: number): Promise<boolean>;
}

export interface StoredAuditEvent {
  /** 0-based position in the local log. */
  index: number;
  tenant: string;
  at: number;
  /** Canonical JSON (RFC 8785) of the event. */
  event: string;
  /** SHA-256(prevHash || event), hex: a hash chain so local edits are detectable. */
  hash: string;
}

export interface AuditRepository {
  /** Appends one canonical event; the table rejects UPDATE and DELETE. */
  appendAudit(tenant: string, at: number, canonicalEvent: string): Promise<{ index: number }>;
  readAudit(tenant: string | null, afterIndex: number, limit: number): Promise<StoredAuditEvent[]>;
  /**
   * Takes or renews, for `holder`, the one lease on forwarding the table's kept events to the
   * ledger: when it is free, expired, or already `holder`'s, it is `holder`'s until `ttlMs` from
   * now on the store's clock (the database server's for PostgreSQL, so replicas' clocks do not
   * matter). True when `holder` holds it afterwards.
   */
  leaseAuditForwarding(holder: string, ttlMs: number): Promise<boolean>;
  /** Ends `holder`'s lease, if it holds it. */
  releaseAuditForwarding(holder: string): Promise<void>;
}

/** A tenant's appraisal policy installed through the API (`PUT /v1/policy`). */
export interface TenantPolicyRecord {
  tenant: string;
  /** The policy text as uploaded (YAML or JSON). Public, but never copied into audit events. */
  text: string;
  /** The document's `id` and `version`, and the SHA-256 (hex) of its canonical JSON. */
  policyId: string;
  policyVersion: number;
  digest: string;
  /**
   * Bumped by every write (1 for the first). After a delete the next write starts again at 1,
   * so replicas compare the revision and the digest (getTenantPolicyStamp) to recompile only on change.
   */
  revision: number;
  updatedAt: number;
  updatedBy: string;
}

export interface TenantPolicyRepository {
  /**
   * Inserts or replaces the tenant's policy atomically; `revision` of the input is ignored and
   * the stored row gets the previous revision + 1. Returns the stored row.
   */
  putTenantPolicy(record: Omit<TenantPolicyRecord, 'revision'>): Promise<TenantPolicyRecord>;
  getTenantPolicy(tenant: string): Promise<TenantPolicyRecord | null>;
  /**
   * Only the revision and digest (a primary-key lookup, for the per-attestation freshness
   * check); null when none. Together they name the stored policy even across a delete and a
   * new write (which restarts the revision at 1).
   */
  getTenantPolicyStamp(tenant: string): Promise<TenantPolicyStamp | null>;
  /**
   * Deletes the tenant's stored policy atomically, only if its revision is still
   * `expectedRevision`, and returns the deleted row. Null when nothing was deleted: no policy is
   * stored, or another write changed the revision first (the caller tells them apart by reading).
   */
  deleteTenantPolicy(tenant: string, expectedRevision: number): Promise<TenantPolicyRecord | null>;
}

export type TenantPolicyStamp = Pick<TenantPolicyRecord, 'revision' | 'digest'>;
