import { readFileSync } from 'node:fs';
import { CustodyError } from '@custody/core';
import { loadPolicy, MAX_POLICY_BYTES, type CompiledPolicy } from '@custody/policy';
import { assertTenant } from '../keys/types.js';

/**
 * The appraisal policy used when a tenant has none. Its only platform section is `sim`, with
 * simulated evidence forbidden (ERR_EVIDENCE_SIMULATED); every other platform has no reference
 * values (ERR_POLICY_PLATFORM); and a last rule fails every workload (ERR_POLICY_DENIED). A
 * broker started without a policy releases nothing.
 */
export const DEFAULT_DENY_POLICY_YAML = `apiVersion: custody.dev/policy/v1
id: default-deny
version: 1
description: no reference values are configured; every workload is refused (simulated evidence included)
allowSimulated: false
allowDebug: false
platforms:
  sim:
    measurement: "00"
rules:
  - id: no-policy-configured
    claim: executables
    expr: "false"
    fail: contraindicated
    code: ERR_POLICY_DENIED
    reason: this broker has no appraisal policy for the tenant; configure one (custody broker serve --policy FILE)
`;

export type PolicySource = CompiledPolicy | { file: string } | { text: string };

/**
 * Appraisal policies (reference values and CEL rules, packages/policy) per tenant, with a default,
 * loaded from files at start. A policy installed through the API (`PUT /v1/policy`, `custody
 * policy set`) overrides these for its tenant: see TenantPolicies for the precedence.
 */
export class AppraisalPolicies {
  private constructor(
    private readonly fallback: CompiledPolicy,
    private readonly tenants: ReadonlyMap<string, CompiledPolicy>,
  ) {}

  /**
   * `defaultPolicy` applies to tenants without their own; when absent, DEFAULT_DENY_POLICY_YAML.
   * Errors: ERR_POLICY_INVALID (bad file), ERR_FILE_NOT_FOUND.
   */
  static async load(options: { defaultPolicy?: PolicySource; tenants?: Record<string, PolicySource> } = {}): Promise<AppraisalPolicies> {
    const fallback = await compile(options.defaultPolicy ?? { text: DEFAULT_DENY_POLICY_YAML });
    const tenants = new Map<string, CompiledPolicy>();
    for (const [tenant, source] of Object.entries(options.tenants ?? {})) {
      assertTenant(tenant);
      tenants.set(tenant, await compile(source));
    }
    return new AppraisalPolicies(fallback, tenants);
  }

  forTenant(tenant: string): CompiledPolicy {
    return this.tenants.get(tenant) ?? this.fallback;
  }

  /** The file policy for `tenant` (AppraisalPolicyResolver); the broker layers stored policies on top (TenantPolicies). */
  resolve(tenant: string): Promise<CompiledPolicy> {
    return Promise.resolve(this.forTenant(tenant));
  }

  /** Policy ids in force: the default and each tenant's. */
  describe(): { default: string; tenants: Record<string, string> } {
    return { default: this.fallback.policyId, tenants: Object.fromEntries([...this.tenants].map(([t, p]) => [t, p.policyId])) };
  }
}

async function compile(source: PolicySource): Promise<CompiledPolicy> {
  if ('policyId' in source) return source;
  if ('text' in source) return loadPolicy(source.text);
  let bytes: Buffer;
  try {
    bytes = readFileSync(source.file);
  } catch (e) {
    throw new CustodyError('ERR_FILE_NOT_FOUND', `policy file not found: ${source.file}`, { cause: e });
  }
  if (bytes.length > MAX_POLICY_BYTES) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'policy file is too large', { detail: { size: bytes.length } });
  return loadPolicy(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength));
}
