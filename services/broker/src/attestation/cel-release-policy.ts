import { compileCondition, isTrustTier, overallStatus, type TrustTier } from '@custody/policy';
import type { ReleasePolicyDecision, ReleasePolicyEvaluator, ReleasePolicyInput } from '../keys/release-policy.js';

/**
 * Key release policies in CEL (compileCondition from @custody/policy: planned once per
 * expression, fail closed: errors and non-bool results deny). Variables:
 *
 * | variable | value |
 * |---|---|
 * | `ear` | the verified EAR claims (draft-ietf-rats-ear): `ear.submods.cpu0['ear.status']`, ... |
 * | `status` | the overall EAR status: `affirming`, `warning`, `contraindicated`, `none` |
 * | `claims` | the appraised evidence of the submodule holding the TEE key (cpu0): `claims.platform`, `claims.measurements.measurement`, `claims.debug`, `claims.tcb`, ... |
 * | `platform` | `claims.platform` |
 * | `key` | `{tenant, name, type, version}` of the key asked for |
 * | `session` | `{id}` |
 *
 * Example: `status == 'affirming' && platform == 'sev-snp' && claims.measurements.measurement == '<96 hex>'`.
 */
export class CelReleasePolicyEvaluator implements ReleasePolicyEvaluator {
  async validate(expression: string): Promise<void> {
    await Promise.resolve();
    compileCondition(expression, 'release policy');
  }

  async evaluate(expression: string, input: ReleasePolicyInput): Promise<ReleasePolicyDecision> {
    await Promise.resolve();
    const condition = compileCondition(expression, 'release policy');
    const out = condition.evaluate(releasePolicyVariables(input));
    // The evaluator's message can quote claim values; the decision reports only which way it failed.
    if (out.ok) return { allow: true };
    return { allow: false, reason: out.error !== undefined ? 'the release policy could not be evaluated (fail closed)' : 'the release policy returned false' };
  }
}

/** The variables a release policy sees (see CelReleasePolicyEvaluator). */
export function releasePolicyVariables(input: ReleasePolicyInput): Record<string, unknown> {
  const submods = (typeof input.ear.submods === 'object' && input.ear.submods !== null ? input.ear.submods : {}) as Record<string, Record<string, unknown>>;
  const names = Object.keys(submods);
  const holder = names.find((n) => submods[n]?.['ear.veraison.key-attestation'] !== undefined) ?? (names.includes('cpu0') ? 'cpu0' : names[0]);
  const claims = (holder !== undefined ? submods[holder]?.['ear.veraison.annotated-evidence'] : undefined) as Record<string, unknown> | undefined;
  const status = overallStatus(names.map((n): TrustTier => {
    const s = submods[n]?.['ear.status'];
    return typeof s === 'string' && isTrustTier(s) ? s : 'none';
  }));
  return {
    ear: input.ear,
    status,
    claims: claims ?? {},
    platform: typeof claims?.platform === 'string' ? claims.platform : '',
    key: input.key,
    session: input.session,
  };
}
