import { CustodyError } from '@custody/core';
import type { Role } from '../metadata/types.js';

/** An authenticated caller. `subject` is `apikey:<id>` (or `session:<id>` for workloads in a handshake). */
export interface Principal {
  tenant: string;
  role: Role;
  subject: string;
}

export type Permission =
  /** List and read key metadata, versions, public keys, policies. */
  | 'key.read'
  /** Create, import, rotate, revoke, destroy, set policy. */
  | 'key.write'
  /** Envelope helpers and signing with a stored key. */
  | 'key.use'
  /** Receive a key wrapped to an attested TEE key (the handshake's last step). */
  | 'key.release'
  | 'apikey.read'
  | 'apikey.write'
  | 'audit.read'
  /** Read the tenant's appraisal policy in force. */
  | 'policy.read'
  /** Replace the tenant's appraisal policy. */
  | 'policy.write';

/**
 * The one table of who may do what. A workload can only take part in a release; it can never
 * read or change administrative state. An auditor reads; only an admin writes.
 */
const GRANTS: Record<Permission, readonly Role[]> = {
  'key.read': ['admin', 'auditor'],
  'key.write': ['admin'],
  'key.use': ['admin'],
  'key.release': ['workload'],
  'apikey.read': ['admin', 'auditor'],
  'apikey.write': ['admin'],
  'audit.read': ['admin', 'auditor'],
  'policy.read': ['admin', 'auditor'],
  'policy.write': ['admin'],
};

export function isAllowed(role: Role, permission: Permission): boolean {
  return GRANTS[permission].includes(role);
}

/** Throws ERR_AUTH_TENANT when `tenant` is not the caller's, ERR_AUTH_ROLE when the role lacks `permission`. */
export function authorize(principal: Principal, permission: Permission, tenant: string): void {
  if (principal.tenant !== tenant) throw new CustodyError('ERR_AUTH_TENANT', undefined, { detail: { permission } });
  if (!isAllowed(principal.role, permission)) throw new CustodyError('ERR_AUTH_ROLE', undefined, { detail: { role: principal.role, permission } });
}
