import { createHash } from 'node:crypto';
import { copyBytes, type Bytes } from '@custody/core';
import type { KeyOrigin, KeyRecord, KeyState, KeyType, KeyVersionRecord, KeyVersionState } from '../keys/types.js';
import type { ApiKeyRecord, ReleaseCheck, Role, SessionRecord, SessionState, StoredAuditEvent, TenantPolicyRecord } from './types.js';

/** Row shapes shared by the SQLite and PostgreSQL stores (PostgreSQL BIGINTs arrive as strings). */
type Num = number | string | bigint;
type Blob = Uint8Array;

export interface KeyRow {
  id: string;
  tenant: string;
  name: string;
  type: string;
  state: string;
  exportable: number | boolean;
  current_version: Num;
  release_policy: string | null;
  created_at: Num;
  updated_at: Num;
  revoked_at: Num | null;
  destroyed_at: Num | null;
}

export interface VersionRow {
  key_id: string;
  version: Num;
  state: string;
  origin: string;
  material_id: string;
  material_length: Num;
  public_key: Blob | null;
  created_at: Num;
  destroyed_at: Num | null;
}

export interface SessionRow {
  id: string;
  tenant: string;
  nonce: string;
  state: string;
  created_at: Num;
  expires_at: Num;
  nonce_consumed_at: Num | null;
  binding: string | null;
}

export interface ApiKeyRow {
  id: string;
  tenant: string;
  role: string;
  secret_hash: Blob;
  label: string;
  created_at: Num;
  created_by: string;
  revoked_at: Num | null;
}

export interface AuditRow {
  idx: Num;
  tenant: string;
  at: Num;
  event: string;
  hash: Blob;
}

const n = (v: Num): number => Number(v);
const nn = (v: Num | null): number | null => (v === null ? null : Number(v));

export function toKey(r: KeyRow): KeyRecord {
  return {
    id: r.id,
    tenant: r.tenant,
    name: r.name,
    type: r.type as KeyType,
    state: r.state as KeyState,
    exportable: r.exportable === true || r.exportable === 1,
    currentVersion: n(r.current_version),
    releasePolicy: r.release_policy,
    createdAt: n(r.created_at),
    updatedAt: n(r.updated_at),
    revokedAt: nn(r.revoked_at),
    destroyedAt: nn(r.destroyed_at),
  };
}

export function toVersion(r: VersionRow): KeyVersionRecord {
  return {
    keyId: r.key_id,
    version: n(r.version),
    state: r.state as KeyVersionState,
    origin: r.origin as KeyOrigin,
    materialId: r.material_id,
    materialLength: n(r.material_length),
    publicKey: r.public_key ? copyBytes(r.public_key) : null,
    createdAt: n(r.created_at),
    destroyedAt: nn(r.destroyed_at),
  };
}

export function toSession(r: SessionRow): SessionRecord {
  return {
    id: r.id,
    tenant: r.tenant,
    nonce: r.nonce,
    state: r.state as SessionState,
    createdAt: n(r.created_at),
    expiresAt: n(r.expires_at),
    nonceConsumedAt: nn(r.nonce_consumed_at),
    binding: r.binding === null ? null : (JSON.parse(r.binding) as Record<string, string>),
  };
}

export function toApiKey(r: ApiKeyRow): ApiKeyRecord {
  return {
    id: r.id,
    tenant: r.tenant,
    role: r.role as Role,
    secretHash: copyBytes(r.secret_hash),
    label: r.label,
    createdAt: n(r.created_at),
    createdBy: r.created_by,
    revokedAt: nn(r.revoked_at),
  };
}

export function toAudit(r: AuditRow): StoredAuditEvent {
  return { index: n(r.idx), tenant: r.tenant, at: n(r.at), event: r.event, hash: Buffer.from(r.hash).toString('hex') };
}

/** Link of the interim audit hash chain: SHA-256(previous hash || canonical event). */
export function chainHash(previous: Uint8Array | null, event: string): Bytes {
  const h = createHash('sha256');
  h.update(previous ?? new Uint8Array(32));
  h.update(event, 'utf8');
  return copyBytes(h.digest());
}

/** Classifies the release-time re-check from one joined row. */
export function classifyRelease(row: { state: string; current_version: Num; version_state: string | null; release_policy?: string | null } | undefined, version: number, releasePolicy?: string | null): ReleaseCheck {
  if (!row) return 'missing';
  if (row.state === 'revoked') return 'revoked';
  if (row.state === 'destroyed' || row.version_state === 'destroyed') return 'destroyed';
  if (row.version_state === null) return 'missing';
  if (n(row.current_version) !== version) return 'rotated';
  if (releasePolicy !== undefined && (row.release_policy ?? null) !== releasePolicy) return 'policy-changed';
  return row.state === 'active' ? 'ok' : 'missing';
}

export function classifyNonce(row: SessionRow | undefined, now: number): 'ERR_SESSION_NOT_FOUND' | 'ERR_SESSION_NONCE_USED' | 'ERR_SESSION_EXPIRED' {
  if (!row) return 'ERR_SESSION_NOT_FOUND';
  if (row.nonce_consumed_at !== null) return 'ERR_SESSION_NONCE_USED';
  if (n(row.expires_at) <= now) return 'ERR_SESSION_EXPIRED';
  return 'ERR_SESSION_NONCE_USED';
}

export interface TenantPolicyRow {
  tenant: string;
  text: string;
  policy_id: string;
  policy_version: number | string;
  digest: string;
  revision: number | string;
  updated_at: number | string;
  updated_by: string;
}

export function toTenantPolicy(r: TenantPolicyRow): TenantPolicyRecord {
  return {
    tenant: r.tenant,
    text: r.text,
    policyId: r.policy_id,
    policyVersion: Number(r.policy_version),
    digest: r.digest,
    revision: Number(r.revision),
    updatedAt: Number(r.updated_at),
    updatedBy: r.updated_by,
  };
}
