import type { Role } from '../metadata/types.js';

/** Who did it: an API key (admin, auditor, workload) or the broker itself. */
export interface AuditActor {
  tenant: string;
  /** `apikey:<id>`, `session:<id>` or `system`. */
  subject: string;
  role: Role | 'system';
}

export type AuditVerdict = 'allow' | 'deny' | 'error';

export type AuditAction =
  | 'key.create'
  | 'key.import'
  | 'key.rotate'
  | 'key.revoke'
  | 'key.destroy'
  | 'key.policy.set'
  | 'key.release'
  | 'key.datakey.generate'
  | 'key.datakey.unwrap'
  | 'key.sign'
  | 'apikey.create'
  | 'apikey.revoke'
  | 'auth.denied'
  /** The handshake's appraisal of a workload's evidence (allow: an EAR was issued; deny: why not). */
  | 'attest.appraise'
  /** A tenant's appraisal policy replaced through the API (id, version, digest; never the text). */
  | 'policy.changed'
  /** An event kept in the interim table during a ledger outage reached the ledger (interim table only). */
  | 'audit.forwarded'
  /** The ledger refused such a kept event for its content (interim table only; `detail.code`). */
  | 'audit.forward_refused';

/**
 * One audit event. Serialized as canonical JSON (RFC 8785) by the sink. Fields hold only public
 * facts: ids, names, versions, digests, codes. Never key material, plaintext or tokens.
 */
export interface AuditEvent {
  /** Schema version of this event shape. */
  v: 1;
  action: AuditAction;
  /** RFC 3339 time the broker decided. */
  time: string;
  actor: AuditActor;
  /** The namespace acted on (may differ from actor.tenant only on denied cross-tenant attempts). */
  tenant: string;
  key?: { id: string; name: string; type: string; version?: number };
  verdict: AuditVerdict;
  /** Stable error code for deny/error verdicts. */
  reason?: string;
  /** Other public facts: policy digest, EAR digest, session id, measurement, recipient key digest. */
  detail?: Record<string, string | number | boolean>;
}

/**
 * Where audit events go. The transparency ledger (services/ledger) implements this; until it
 * is wired in, InterimLocalAuditSink keeps them in an append-only, hash-chained local table.
 * `append` resolves only once the event is durably recorded; it rejects with
 * ERR_STORE_AUDIT_UNAVAILABLE (or any error) when it cannot, and callers then fail closed.
 */
export interface AuditSink {
  append(event: AuditEvent): Promise<AuditRecord>;
}

/** Where an event was recorded: its index, in the interim table instead of the ledger when `interim`. */
export interface AuditRecord {
  index: number;
  /** Kept in the interim table while the ledger could not take it (FallbackAuditSink); forwarded later. */
  interim?: boolean;
}
