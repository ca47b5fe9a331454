/**
 * AR4SI (draft-ietf-rats-ar4si) trustworthiness claims and trust tiers, as EAR carries them.
 *
 * A trustworthiness claim is a small signed integer. Its tier follows from its range:
 * -1..1 none, 2..31 affirming, 32..95 warning, 96..127 contraindicated.
 */

export const TRUST_CLAIMS = [
  'instance-identity',
  'configuration',
  'executables',
  'file-system',
  'hardware',
  'runtime-opaque',
  'storage-opaque',
  'sourced-data',
] as const;

export type TrustClaimName = (typeof TRUST_CLAIMS)[number];

export type TrustTier = 'none' | 'affirming' | 'warning' | 'contraindicated';

export const TRUST_TIERS: readonly TrustTier[] = ['none', 'affirming', 'warning', 'contraindicated'];

/** The AR4SI trustworthiness vector: only the claims a verifier made are present. */
export type TrustVector = Partial<Record<TrustClaimName, number>>;

/** The values AR4SI names, by claim (section 2.3 of draft-ietf-rats-ar4si). */
export const Ar4si = {
  /** Any claim. */
  VERIFIER_MALFUNCTION: -1,
  NO_CLAIM: 0,
  UNEXPECTED_EVIDENCE: 1,
  CRYPTO_VALIDATION_FAILED: 99,
  instanceIdentity: { RECOGNIZED: 2, UNTRUSTWORTHY: 96, UNRECOGNIZED: 97 },
  configuration: { APPROVED: 2, NO_KNOWN_VULNERABILITIES: 3, UNSAFE: 32, UNSUPPORTABLE: 96 },
  executables: { APPROVED_RUNTIME: 2, APPROVED_BOOT: 3, UNSAFE: 32, UNRECOGNIZED: 33, CONTRAINDICATED: 96 },
  fileSystem: { APPROVED: 2, UNRECOGNIZED: 32, CONTRAINDICATED: 96 },
  hardware: { GENUINE: 2, UNSAFE: 32, CONTRAINDICATED: 96, UNRECOGNIZED: 97 },
  runtimeOpaque: { ENCRYPTED_MEMORY: 2, ISOLATED_MEMORY: 32, VISIBLE_MEMORY: 96 },
  storageOpaque: { HW_KEYS_ENCRYPTED: 2, SW_KEYS_ENCRYPTED: 32, UNENCRYPTED: 96 },
  sourcedData: { TRUSTED: 2, UNTRUSTED: 32, CONTRAINDICATED: 96 },
} as const;

/** The canonical value of each tier, as EAR's integer form of `ear.status` uses them. */
export const TIER_VALUE: Record<TrustTier, number> = { none: 0, affirming: 2, warning: 32, contraindicated: 96 };

export function isTrustClaimName(s: string): s is TrustClaimName {
  return (TRUST_CLAIMS as readonly string[]).includes(s);
}

export function isTrustTier(s: string): s is TrustTier {
  return (TRUST_TIERS as readonly string[]).includes(s);
}

/** True for integers AR4SI allows in a trustworthiness claim (a signed byte). */
export function isTrustClaimValue(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= -128 && v <= 127;
}

/** The tier of a claim value. Values outside -1..127 are reserved; they count as none. */
export function tierOf(value: number): TrustTier {
  if (value >= 96 && value <= 127) return 'contraindicated';
  if (value >= 32) return value <= 95 ? 'warning' : 'none';
  if (value >= 2) return 'affirming';
  return 'none';
}

/**
 * How bad a tier is when two findings about the same claim meet: contraindicated beats warning
 * beats none beats affirming. "None" beats "affirming" because a rule that could not conclude
 * must not be papered over by another that did.
 */
const CLAIM_SEVERITY: Record<TrustTier, number> = { affirming: 0, none: 1, warning: 2, contraindicated: 3 };

/** Merges a new finding into a claim: the more severe tier wins; on a tie the first finding stays. */
export function mergeClaimValue(current: number | undefined, next: number): number {
  if (current === undefined) return next;
  return CLAIM_SEVERITY[tierOf(next)] > CLAIM_SEVERITY[tierOf(current)] ? next : current;
}

const STATUS_SEVERITY: Record<TrustTier, number> = { none: 0, affirming: 1, warning: 2, contraindicated: 3 };

/**
 * The `ear.status` a vector warrants: the worst tier among the claims that say something.
 * Claims in the none tier are ignored (AR4SI: 0 means no claim); a vector with no affirming,
 * warning or contraindicated claim has status none.
 */
export function statusOf(vector: TrustVector): TrustTier {
  let worst: TrustTier = 'none';
  for (const name of TRUST_CLAIMS) {
    const v = vector[name];
    if (v === undefined) continue;
    const t = tierOf(v);
    if (t !== 'none' && STATUS_SEVERITY[t] > STATUS_SEVERITY[worst]) worst = t;
  }
  return worst;
}

/** The worse of two statuses (for combining submodules into one verdict). */
export function worseStatus(a: TrustTier, b: TrustTier): TrustTier {
  return STATUS_SEVERITY[b] > STATUS_SEVERITY[a] ? b : a;
}

/**
 * The overall verdict over several submodules: contraindicated or warning if any submodule is,
 * none if any submodule is none (nothing could be concluded about it), else affirming.
 */
export function overallStatus(statuses: Iterable<TrustTier>): TrustTier {
  let sawAny = false;
  let sawNone = false;
  let worst: TrustTier = 'affirming';
  for (const s of statuses) {
    sawAny = true;
    if (s === 'none') sawNone = true;
    else worst = worseStatus(worst, s);
  }
  if (!sawAny) return 'none';
  if (worst === 'contraindicated' || worst === 'warning') return worst;
  return sawNone ? 'none' : 'affirming';
}
