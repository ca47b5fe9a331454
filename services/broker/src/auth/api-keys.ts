import { createHash } from 'node:crypto';
import { CustodyError, copyBytes, fromBase64Url, secureRandom, timingSafeEqual, toBase64Url, toHex, wipe, type Bytes } from '@custody/core';
import { assertTenant } from '../keys/types.js';
import type { ApiKeyRecord, ApiKeyRepository, Role } from '../metadata/types.js';
import { ROLES } from '../metadata/types.js';
import type { Principal } from './roles.js';

/**
 * Tenant-scoped API keys. Token: `cst_<id>_<secret>`, where id is 8 random bytes as hex (public,
 * used to find the record) and secret is 32 random bytes as base64url (43 chars). Only
 * SHA-256(secret bytes) is stored; a presented token is hashed and compared in constant time.
 */
const TOKEN_RE = /^cst_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$/;
const SECRET_BYTES = 32;

/**
 * Control (C0, DEL, C1), format (bidirectional overrides, zero-width) and line/paragraph
 * separator characters: a label is printed in listings, and such characters would move the
 * terminal, forge rows or reorder what is shown. As sealed-model labels.
 */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]/u;

export interface IssuedApiKey {
  /** The bearer token. Shown once; never stored, logged or put in an event. */
  token: string;
  record: ApiKeyRecord;
}

export interface IssueApiKeyInput {
  tenant: string;
  role: Role;
  label: string;
  createdBy: string;
  now: number;
  /** Given the token before the key is stored (to put it in a file first); a throw stores nothing. */
  beforeInsert?: (token: string) => void;
}

export async function issueApiKey(repo: ApiKeyRepository, input: IssueApiKeyInput): Promise<IssuedApiKey> {
  assertTenant(input.tenant);
  if (!ROLES.includes(input.role)) throw new CustodyError('ERR_INPUT_MALFORMED', 'role must be admin, auditor or workload');
  if (input.label.length > 200) throw new CustodyError('ERR_INPUT_MALFORMED', 'label must be at most 200 characters');
  if (UNPRINTABLE.test(input.label)) throw new CustodyError('ERR_INPUT_MALFORMED', 'label must be printable text: no control, line-separator or bidirectional-control characters');
  const id = toHex(secureRandom(8));
  const secret = secureRandom(SECRET_BYTES);
  try {
    const record: ApiKeyRecord = {
      id,
      tenant: input.tenant,
      role: input.role,
      secretHash: sha256(secret),
      label: input.label,
      createdAt: input.now,
      createdBy: input.createdBy,
      revokedAt: null,
    };
    const token = `cst_${id}_${toBase64Url(secret)}`;
    input.beforeInsert?.(token);
    await repo.insertApiKey(record);
    return { token, record };
  } finally {
    wipe(secret);
  }
}

/** Placeholder hash compared against when the id is unknown, so timing does not reveal which ids exist. */
const NO_KEY_HASH = new Uint8Array(32);

/** Resolves a bearer token to its principal, or throws ERR_AUTH_INVALID. */
export async function authenticateApiKey(repo: ApiKeyRepository, token: string): Promise<Principal> {
  const m = TOKEN_RE.exec(token);
  if (!m) throw new CustodyError('ERR_AUTH_INVALID', 'API key is malformed');
  const id = m[1]!;
  let secret: Bytes;
  try {
    secret = fromBase64Url(m[2]!);
  } catch {
    // Not the canonical base64url of 32 bytes: no token this broker issued.
    throw new CustodyError('ERR_AUTH_INVALID', 'API key is malformed');
  }
  try {
    const record = await repo.getApiKey(id);
    const presented = sha256(secret);
    const matches = timingSafeEqual(presented, record ? record.secretHash : NO_KEY_HASH);
    if (!record || !matches || record.revokedAt !== null) throw new CustodyError('ERR_AUTH_INVALID', undefined, { detail: { apiKeyId: id } });
    return { tenant: record.tenant, role: record.role, subject: `apikey:${record.id}` };
  } finally {
    wipe(secret);
  }
}

function sha256(b: Uint8Array): Bytes {
  return copyBytes(createHash('sha256').update(b).digest());
}
