import type { KeyType } from './types.js';

/** What a release policy sees: the verified attestation result and the key asked for. */
export interface ReleasePolicyInput {
  /** Claims of the verified EAR (draft-ietf-rats-ear), exactly as the appraisal produced them. */
  ear: Record<string, unknown>;
  key: { tenant: string; name: string; type: KeyType; version: number };
  session: { id: string };
}

export interface ReleasePolicyDecision {
  allow: boolean;
  /** Why, in public terms (which rule failed); never claims values that could be secret. */
  reason?: string;
}

/**
 * Evaluates a key's release policy, a CEL expression stored with the key. Implemented by
 * packages/policy; the broker only stores the expression and passes it through. Any throw is a
 * denial (fail closed).
 */
export interface ReleasePolicyEvaluator {
  /** Throws ERR_POLICY_INVALID when the expression does not compile. Called when a policy is set. */
  validate(expression: string): Promise<void>;
  evaluate(expression: string, input: ReleasePolicyInput): Promise<ReleasePolicyDecision>;
}
