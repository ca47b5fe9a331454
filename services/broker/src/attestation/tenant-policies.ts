import { pino, type Logger } from 'pino';
import { CustodyError, systemClock, toCustodyError, type Clock } from '@custody/core';
import { loadPolicy, MAX_POLICY_BYTES, type CompiledPolicy } from '@custody/policy';
import { boundAuditEvent } from '../audit/bound-event.js';
import type { AuditEvent, AuditSink } from '../audit/types.js';
import { authorize, type Permission, type Principal } from '../auth/roles.js';
import { assertTenant } from '../keys/types.js';
import type { TenantPolicyRepository } from '../metadata/types.js';
import type { AppraisalPolicies } from './appraisal-policies.js';

/** What the handshake asks for: the appraisal policy in force for a tenant, now. */
export interface AppraisalPolicyResolver {
  resolve(tenant: string): Promise<CompiledPolicy>;
}

/** `GET /v1/policy`: the policy in force for the caller's tenant and where it comes from. */
export interface TenantPolicyView {
  tenant: string;
  /** `stored`: installed with `PUT /v1/policy`; `file`: the broker's start-up policy (per tenant or default). */
  source: 'stored' | 'file';
  /** The `ear.appraisal-policy-id`: `custody:policy:<id>:<version>:sha256:<digest>`. */
  policyId: string;
  id: string;
  version: number;
  digest: string;
  /** Stored policies only: the text as uploaded, its revision, when and by whom. */
  text?: string;
  revision?: number;
  updatedAt?: string;
  updatedBy?: string;
}

export interface TenantPoliciesOptions {
  /** The policies loaded from files at start (per tenant, then the default, then deny-all). */
  files: AppraisalPolicies;
  store: TenantPolicyRepository;
  /** The sink every other broker event goes to; `policy.changed` is written there before the change. */
  audit: AuditSink;
  /** Called on an authorisation failure, to audit the denial (KeyService.recordDenial). */
  onDenied?: (principal: Principal, tenant: string, attempted: string, code: string) => Promise<void>;
  /**
   * How long a tenant's stored-policy revision is trusted without asking the store again.
   * Default 0: every attestation reads the revision (one primary-key lookup), so a policy set
   * through any replica sharing the database is in force from the next attestation on. The
   * compiled policy is cached per (tenant, revision) either way.
   */
  recheckMs?: number;
  clock?: Clock;
  logger?: Logger;
}

/** `DELETE /v1/policy`: what was removed, and the file policy in force for the tenant from now on. */
export interface TenantPolicyDeletion {
  tenant: string;
  deleted: { policyId: string; id: string; version: number; digest: string; revision: number };
  /** The broker's file policy for the tenant (per tenant, else the default, else deny-all). */
  inForce: TenantPolicyView;
}

interface Cached {
  revision: number;
  digest: string;
  policy: CompiledPolicy;
  checkedAt: number;
}

/**
 * Appraisal policies with API-installed overrides. Precedence for a tenant, first match wins:
 * (1) the policy stored with `PUT /v1/policy` (custody policy set), (2) the tenant's file policy
 * (`tenantPolicies` / --tenant-policy at start), (3) the default file policy (`policy` /
 * --policy), (4) DEFAULT_DENY_POLICY_YAML. Storage failures while resolving fail closed (the
 * attestation is denied with ERR_STORE_UNAVAILABLE), never falling back to a file policy.
 */
export class TenantPolicies implements AppraisalPolicyResolver {
  private readonly files: AppraisalPolicies;
  private readonly store: TenantPolicyRepository;
  private readonly auditSink: AuditSink;
  private readonly onDenied: TenantPoliciesOptions['onDenied'];
  private readonly recheckMs: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly cache = new Map<string, Cached>();

  constructor(options: TenantPoliciesOptions) {
    this.files = options.files;
    this.store = options.store;
    this.auditSink = options.audit;
    this.onDenied = options.onDenied;
    this.recheckMs = options.recheckMs ?? 0;
    if (!Number.isInteger(this.recheckMs) || this.recheckMs < 0 || this.recheckMs > 60_000) throw new CustodyError('ERR_USAGE', 'recheckMs must be an integer from 0 to 60000');
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? pino({ level: 'silent' });
  }

  /** The policy in force for `tenant` (see the class comment for the precedence). */
  async resolve(tenant: string): Promise<CompiledPolicy> {
    const now = this.clock().getTime();
    const cached = this.cache.get(tenant);
    if (cached && this.recheckMs > 0 && now - cached.checkedAt < this.recheckMs) return cached.policy;
    const stamp = await this.store.getTenantPolicyStamp(tenant);
    if (stamp === null) {
      this.cache.delete(tenant);
      return this.files.forTenant(tenant);
    }
    // The digest too: a delete followed by a new write restarts the revision at 1.
    if (cached && cached.revision === stamp.revision && cached.digest === stamp.digest) {
      cached.checkedAt = now;
      return cached.policy;
    }
    const record = await this.store.getTenantPolicy(tenant);
    if (!record) {
      this.cache.delete(tenant);
      return this.files.forTenant(tenant);
    }
    const policy = await loadPolicy(record.text);
    this.cache.set(tenant, { revision: record.revision, digest: record.digest, policy, checkedAt: now });
    return policy;
  }

  /**
   * `PUT /v1/policy`: validates and compiles `text` (ERR_POLICY_INVALID, ERR_INPUT_TOO_LARGE:
   * nothing changes), writes the `policy.changed` audit event (ERR_STORE_AUDIT_UNAVAILABLE:
   * nothing changes), then stores it. Admins of the tenant only.
   */
  async set(principal: Principal, tenant: string, text: string): Promise<TenantPolicyView> {
    await this.authorize(principal, 'policy.write', tenant, 'policy.set');
    if (new TextEncoder().encode(text).length > MAX_POLICY_BYTES) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'the policy is too large', { detail: { max: MAX_POLICY_BYTES } });
    if (text.trim() === '') throw new CustodyError('ERR_POLICY_INVALID', 'the policy is empty');
    const policy = await loadPolicy(text);
    const detail = { policyId: policy.document.id, policyVersion: policy.document.version, policyDigest: `sha256:${policy.digest}` };
    try {
      await this.appendAudit(principal, tenant, detail);
    } catch (e) {
      this.log.error({ op: 'policy.set', tenant, code: 'ERR_STORE_AUDIT_UNAVAILABLE' }, 'audit unavailable; policy not changed');
      throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', undefined, { cause: e, detail: { applied: false } });
    }
    const record = await this.store.putTenantPolicy({
      tenant,
      text,
      policyId: policy.document.id,
      policyVersion: policy.document.version,
      digest: policy.digest,
      updatedAt: this.clock().getTime(),
      updatedBy: principal.subject,
    });
    this.cache.set(tenant, { revision: record.revision, digest: record.digest, policy, checkedAt: this.clock().getTime() });
    this.log.info({ op: 'policy.set', tenant, policy: `${policy.document.id}:${policy.document.version}`, revision: record.revision }, 'appraisal policy set');
    return { ...view(tenant, 'stored', policy), text: record.text, revision: record.revision, updatedAt: new Date(record.updatedAt).toISOString(), updatedBy: record.updatedBy };
  }

  /**
   * `DELETE /v1/policy`: removes the tenant's stored policy, so the broker's file policy (per
   * tenant, else the default, else deny-all) is in force from the next attestation on, on every
   * replica (they find no stored revision). Admins of the tenant only. Audited like `set`, before
   * the change: `policy.changed` with `operation: delete` and the removed policy's id, version
   * and digest (never its text), plus the file policy now in force (ERR_STORE_AUDIT_UNAVAILABLE:
   * nothing changes). Not idempotent on purpose: ERR_POLICY_NOT_STORED (404, nothing audited)
   * when nothing is stored, so a caller learns that its delete changed nothing; ERR_POLICY_CONFLICT
   * (409, nothing deleted) when another write replaced the policy between the read and the delete
   * (a concurrent delete that won gives the loser ERR_POLICY_NOT_STORED).
   */
  async delete(principal: Principal, tenant: string): Promise<TenantPolicyDeletion> {
    await this.authorize(principal, 'policy.write', tenant, 'policy.delete');
    const record = await this.store.getTenantPolicy(tenant);
    if (!record) throw new CustodyError('ERR_POLICY_NOT_STORED', undefined, { detail: { tenant } });
    const fallback = this.files.forTenant(tenant);
    const detail = {
      operation: 'delete',
      policyId: record.policyId,
      policyVersion: record.policyVersion,
      policyDigest: `sha256:${record.digest}`,
      revision: record.revision,
      fallbackPolicyId: fallback.document.id,
      fallbackPolicyVersion: fallback.document.version,
      fallbackPolicyDigest: `sha256:${fallback.digest}`,
    };
    try {
      await this.appendAudit(principal, tenant, detail);
    } catch (e) {
      this.log.error({ op: 'policy.delete', tenant, code: 'ERR_STORE_AUDIT_UNAVAILABLE' }, 'audit unavailable; policy not changed');
      throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', undefined, { cause: e, detail: { applied: false } });
    }
    const deleted = await this.store.deleteTenantPolicy(tenant, record.revision);
    if (!deleted) {
      // Another replica deleted it first (nothing stored now), or replaced it (a new revision).
      if ((await this.store.getTenantPolicyStamp(tenant)) === null) throw new CustodyError('ERR_POLICY_NOT_STORED', undefined, { detail: { tenant } });
      this.log.warn({ op: 'policy.delete', tenant, revision: record.revision, code: 'ERR_POLICY_CONFLICT' }, 'stored policy changed concurrently; not deleted');
      throw new CustodyError('ERR_POLICY_CONFLICT', undefined, { detail: { tenant, revision: record.revision, applied: false } });
    }
    this.cache.delete(tenant);
    this.log.info({ op: 'policy.delete', tenant, policy: `${deleted.policyId}:${deleted.policyVersion}`, revision: deleted.revision, fallback: `${fallback.document.id}:${fallback.document.version}` }, 'appraisal policy deleted');
    return {
      tenant,
      deleted: {
        policyId: `custody:policy:${deleted.policyId}:${deleted.policyVersion}:sha256:${deleted.digest}`,
        id: deleted.policyId,
        version: deleted.policyVersion,
        digest: deleted.digest,
        revision: deleted.revision,
      },
      inForce: view(tenant, 'file', fallback),
    };
  }

  /** `GET /v1/policy`: admins and auditors of the tenant. */
  async get(principal: Principal, tenant: string): Promise<TenantPolicyView> {
    await this.authorize(principal, 'policy.read', tenant, 'policy.get');
    const record = await this.store.getTenantPolicy(tenant);
    if (!record) return view(tenant, 'file', this.files.forTenant(tenant));
    const policy = await loadPolicy(record.text);
    return { ...view(tenant, 'stored', policy), text: record.text, revision: record.revision, updatedAt: new Date(record.updatedAt).toISOString(), updatedBy: record.updatedBy };
  }

  private async authorize(principal: Principal, permission: Permission, tenant: string, attempted: string): Promise<void> {
    assertTenant(tenant);
    try {
      authorize(principal, permission, tenant);
    } catch (e) {
      const code = toCustodyError(e).code;
      if (this.onDenied) await this.onDenied(principal, tenant, attempted, code).catch(() => undefined);
      else this.log.warn({ op: attempted, tenant, actorTenant: principal.tenant, subject: principal.subject, role: principal.role, code }, 'request denied');
      throw e;
    }
  }

  private async appendAudit(principal: Principal, tenant: string, detail: Record<string, string | number>): Promise<void> {
    const event: AuditEvent = {
      v: 1,
      action: 'policy.changed',
      time: this.clock().toISOString(),
      actor: { tenant: principal.tenant, subject: principal.subject, role: principal.role },
      tenant,
      verdict: 'allow',
      detail,
    };
    await this.auditSink.append(boundAuditEvent(event));
  }
}

function view(tenant: string, source: 'stored' | 'file', p: CompiledPolicy): TenantPolicyView {
  return { tenant, source, policyId: p.policyId, id: p.document.id, version: p.document.version, digest: p.digest };
}
