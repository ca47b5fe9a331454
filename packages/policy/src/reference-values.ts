import { z } from 'zod';
import { isScalar, parseDocument, visit, YAMLParseError, type Document } from 'yaml';
import { CustodyError, canonicalBytes, fromUtf8, parseJsonUnique, sha256, toHex } from '@custody/core';
import type { Platform } from '@custody/attest';
import { isTrustClaimName, isTrustClaimValue, isTrustTier, TIER_VALUE, type TrustClaimName } from './ar4si.js';

/**
 * Reference values and appraisal settings for one workload, loaded from YAML or JSON.
 *
 * ```yaml
 * apiVersion: custody.dev/policy/v1    # schema version of this file
 * id: trainer                           # workload / policy id
 * version: 3                            # policy revision, increases with every change
 * allowSimulated: false                 # default false: `sim` evidence is contraindicated
 * allowDebug: false                     # default false: debug TEEs are contraindicated
 * platforms:
 *   sev-snp:
 *     measurement: [<96 hex>, ...]      # any of these launch digests
 *     hostData: <64 hex>                # configuration, like idKeyDigest, authorKeyDigest, familyId, imageId
 *     signerRoots: [<sha-256 of the ARK DER>]
 *     tcb: { minSvn: { bootloader: 3, tee: 0, snp: 8, microcode: 115 } }
 *   tdx:
 *     mrtd: <96 hex>                    # also rtmr2, rtmr3, mrseam, mrservicetd (code)
 *     rtmr0: <96 hex>                   # rtmr0 (firmware configuration) is a configuration claim,
 *     rtmr1: <96 hex>                   #   as are mrconfigid, mrowner, mrownerconfig, mrsignerseam
 *     tcb: { allowedStatuses: [UpToDate], warnStatuses: [SWHardeningNeeded], allowedAdvisories: [INTEL-SA-00837] }
 *                                       # also: unlistedAdvisory: warning, requireStatus: true (TDX default)
 *   nitro:  { pcrs: { 0: <96 hex>, 1: <96 hex>, 2: <96 hex> } }     # PCR3, PCR4: configuration
 *   tpm:                                # PCR1, 3, 5, 6, 7: configuration; others code
 *     pcrs: { sha256: { 0: <64 hex>, 7: <64 hex> } }
 *     signerRoots: [<sha-256 of the AK SPKI>]     # required for a plain TPM
 *   nvidia: { indices: { 2: <96 hex> } }          # SPDM measurement block index -> value
 *   sim:    { measurement: <hex> }
 * rules:                                 # custom CEL rules, appended to the default rules
 *   - id: snp-vmpl0
 *     when: claims.platform == 'sev-snp'
 *     expr: claims.platformClaims.vmpl == 0
 *     claim: configuration
 *     fail: contraindicated
 *     reason: the workload must run at VMPL 0
 * ```
 *
 * Every platform section may also carry `measurements` and `configuration` (claim name ->
 * hex value or list of accepted values) for measurements without a named field, and `values`
 * (free-form reference data that custom rules read as `ref.values`).
 *
 * A measurement listed as a list accepts any of its values. Every platform section must name
 * at least one measurement: a section with none would affirm any code. A platform without a
 * section is contraindicated.
 */

export const POLICY_API_VERSION = 'custody.dev/policy/v1';

/** Largest policy file accepted, before parsing. */
export const MAX_POLICY_BYTES = 1024 * 1024;
/** Largest number of custom rules. */
export const MAX_CUSTOM_RULES = 256;
const MAX_DEPTH = 32;
const MAX_ALIASES = 64;

export type TcbStatusName =
  | 'UpToDate'
  | 'SWHardeningNeeded'
  | 'ConfigurationNeeded'
  | 'ConfigurationAndSWHardeningNeeded'
  | 'OutOfDate'
  | 'OutOfDateConfigurationNeeded'
  | 'Revoked';

/** TCB expectations for one platform. */
export interface TcbReference {
  /** Statuses that affirm (default: UpToDate only). */
  allowedStatuses: TcbStatusName[];
  /** Statuses accepted with a warning. Any other status is contraindicated; Revoked always is. */
  warnStatuses: TcbStatusName[];
  /** Minimum security version per TCB component, by the component names in `claims.tcb.components`. */
  minSvn: Record<string, number>;
  /** Advisory ids (e.g. INTEL-SA-00837) the workload owner has accepted. */
  allowedAdvisories: string[];
  /** What an advisory outside `allowedAdvisories` means. */
  unlistedAdvisory: 'warning' | 'contraindicated';
  /** Evidence without a TCB status is contraindicated (default: true for TDX, whose collateral always yields one). */
  requireStatus: boolean;
}

/** Reference values for one platform, in the generic shape the CEL rules read as `ref`. */
export interface PlatformReference {
  /** Claim name in `claims.measurements` -> accepted lowercase hex values (AR4SI executables). */
  executables: Record<string, string[]>;
  /** Same, for measurements of configuration (AR4SI configuration): SNP host data, TDX RTMR0, ... */
  configuration: Record<string, string[]>;
  /** SHA-256 (hex) of the trust anchors accepted for this platform; empty: the verifier's pinned roots. */
  signerRoots: string[];
  /**
   * Evidence must chain to one of `signerRoots` (default: true for a plain TPM, whose verifier
   * reports the SHA-256 of the attestation key itself, which only a policy can vouch for).
   */
  requireSignerRoots: boolean;
  tcb: TcbReference;
  /** Free-form reference data for custom rules. */
  values: Record<string, unknown>;
}

/** One rule as written in a policy file or in the default rule set. */
export interface AppraisalRule {
  /** Stable id, reported with every finding. */
  id: string;
  /** The AR4SI claim this rule speaks for. */
  claim: TrustClaimName;
  /** CEL over `claims` and `ref`; true passes. */
  expr: string;
  /** CEL; the rule applies only when true (default: always). */
  when?: string;
  /** Claim value when the rule passes; omitted: a pass says nothing. */
  affirm?: number;
  /** Claim value when the rule fails (or cannot be evaluated). */
  fail: number;
  /** Stable error code reported when the rule fails. */
  code: string;
  /** Human explanation of a failure. */
  reason: string;
  /** CEL giving the particulars of a failure (string or list), appended to the reason. */
  explain?: string;
}

export interface PolicyDocument {
  apiVersion: typeof POLICY_API_VERSION;
  id: string;
  version: number;
  description?: string;
  allowSimulated: boolean;
  allowDebug: boolean;
  platforms: Partial<Record<Platform, PlatformReference>>;
  /** Custom rules, evaluated after the default rules. */
  rules: AppraisalRule[];
}

// ---------------------------------------------------------------------------------------------
// Schema of the file (what a person writes)

const hexOf = (bytes?: number) =>
  z
    .string()
    .max(1024)
    .transform((s) => (s.startsWith('0x') || s.startsWith('0X') ? s.slice(2) : s).toLowerCase())
    .refine((s) => /^[0-9a-f]*$/.test(s) && s.length % 2 === 0 && s.length > 0, { message: 'expected a hex string' })
    .refine((s) => bytes === undefined || s.length === bytes * 2, { message: `expected ${bytes} bytes of hex` });

const oneOrMany = (bytes?: number) =>
  z.union([hexOf(bytes), z.array(hexOf(bytes)).min(1).max(64)]).transform((v) => (Array.isArray(v) ? [...new Set(v)] : [v]));

const claimNameSchema = z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/, 'measurement names are 1-64 letters, digits, _ . : -');
const namedMeasurements = z.record(claimNameSchema, oneOrMany()).refine((r) => Object.keys(r).length <= 64, 'at most 64 names');

const TCB_STATUSES = [
  'UpToDate',
  'SWHardeningNeeded',
  'ConfigurationNeeded',
  'ConfigurationAndSWHardeningNeeded',
  'OutOfDate',
  'OutOfDateConfigurationNeeded',
  'Revoked',
] as const;

const acceptableStatus = z.enum(TCB_STATUSES).refine((s) => s !== 'Revoked', 'a Revoked TCB can never be accepted');

const tcbSchema = z.strictObject({
  allowedStatuses: z.array(acceptableStatus).max(8).default(['UpToDate']),
  warnStatuses: z.array(acceptableStatus).max(8).default([]),
  minSvn: z.record(claimNameSchema, z.number().int().min(0).max(2 ** 32)).default({}),
  allowedAdvisories: z.array(z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/)).max(512).default([]),
  unlistedAdvisory: z.enum(['warning', 'contraindicated']).default('contraindicated'),
  requireStatus: z.boolean().optional(),
});

const commonFields = {
  measurements: namedMeasurements.optional(),
  configuration: namedMeasurements.optional(),
  signerRoots: z.array(hexOf(32)).max(64).optional(),
  requireSignerRoots: z.boolean().optional(),
  tcb: tcbSchema.optional(),
  values: z.record(z.string().max(64), z.unknown()).optional(),
};

const pcrIndex = z.string().regex(/^([0-9]|[12][0-9]|3[01])$/, 'PCR index 0-31');
const snpSchema = z.strictObject({
  ...commonFields,
  measurement: oneOrMany(48).optional(),
  hostData: oneOrMany(32).optional(),
  idKeyDigest: oneOrMany(48).optional(),
  authorKeyDigest: oneOrMany(48).optional(),
  familyId: oneOrMany(16).optional(),
  imageId: oneOrMany(16).optional(),
});
const tdxSchema = z.strictObject({
  ...commonFields,
  mrtd: oneOrMany(48).optional(),
  rtmr0: oneOrMany(48).optional(),
  rtmr1: oneOrMany(48).optional(),
  rtmr2: oneOrMany(48).optional(),
  rtmr3: oneOrMany(48).optional(),
  mrconfigid: oneOrMany(48).optional(),
  mrowner: oneOrMany(48).optional(),
  mrownerconfig: oneOrMany(48).optional(),
  mrseam: oneOrMany(48).optional(),
  mrsignerseam: oneOrMany(48).optional(),
  mrservicetd: oneOrMany(48).optional(),
});
const nitroSchema = z.strictObject({ ...commonFields, pcrs: z.record(pcrIndex, oneOrMany(48)).optional() });
const TPM_BANK_BYTES = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 } as const;
const tpmSchema = z.strictObject({
  ...commonFields,
  pcrs: z
    .strictObject({
      sha1: z.record(pcrIndex, oneOrMany(TPM_BANK_BYTES.sha1)).optional(),
      sha256: z.record(pcrIndex, oneOrMany(TPM_BANK_BYTES.sha256)).optional(),
      sha384: z.record(pcrIndex, oneOrMany(TPM_BANK_BYTES.sha384)).optional(),
      sha512: z.record(pcrIndex, oneOrMany(TPM_BANK_BYTES.sha512)).optional(),
    })
    .optional(),
});
const spdmIndex = z.string().regex(/^([1-9][0-9]?|1[0-9][0-9]|2[0-4][0-9]|25[0-4])$/, 'SPDM measurement index 1-254');
const nvidiaSchema = z.strictObject({ ...commonFields, indices: z.record(spdmIndex, oneOrMany()).optional() });
const simSchema = z.strictObject({ ...commonFields, measurement: oneOrMany().optional() });

const trustValue = z
  .union([z.string(), z.number()])
  .transform((v, ctx) => {
    if (typeof v === 'string') {
      if (isTrustTier(v)) return TIER_VALUE[v];
      ctx.addIssue({ code: 'custom', message: 'expected affirming, warning, contraindicated, none or an AR4SI integer' });
      return z.NEVER;
    }
    if (!isTrustClaimValue(v)) {
      ctx.addIssue({ code: 'custom', message: 'AR4SI claim values are integers from -128 to 127' });
      return z.NEVER;
    }
    return v;
  });

const celText = z.string().min(1).max(4096);
const ruleSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,63}$/, 'rule ids are lowercase kebab-case, 1-64 characters'),
  claim: z.string().refine(isTrustClaimName, 'unknown AR4SI claim'),
  expr: celText,
  when: celText.optional(),
  affirm: trustValue.optional(),
  fail: trustValue.default(TIER_VALUE.contraindicated),
  code: z
    .string()
    .regex(/^ERR_[A-Z0-9_]{1,60}$/)
    .default('ERR_POLICY_DENIED'),
  reason: z.string().min(1).max(512),
  explain: celText.optional(),
});

const documentSchema = z.strictObject({
  apiVersion: z.literal(POLICY_API_VERSION),
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'ids are 1-128 letters, digits, . _ -'),
  version: z.number().int().min(1).max(Number.MAX_SAFE_INTEGER),
  description: z.string().max(4096).optional(),
  allowSimulated: z.boolean().default(false),
  allowDebug: z.boolean().default(false),
  platforms: z.strictObject({
    'sev-snp': snpSchema.optional(),
    tdx: tdxSchema.optional(),
    nitro: nitroSchema.optional(),
    tpm: tpmSchema.optional(),
    'azure-vtpm': tpmSchema.optional(),
    nvidia: nvidiaSchema.optional(),
    sim: simSchema.optional(),
  }),
  rules: z.array(ruleSchema).max(MAX_CUSTOM_RULES).default([]),
});

type CommonInput = {
  measurements?: Record<string, string[]> | undefined;
  configuration?: Record<string, string[]> | undefined;
  signerRoots?: string[] | undefined;
  requireSignerRoots?: boolean | undefined;
  tcb?: (Omit<TcbReference, 'requireStatus'> & { requireStatus?: boolean | undefined }) | undefined;
  values?: Record<string, unknown> | undefined;
};

// ---------------------------------------------------------------------------------------------
// Platform field -> claim name, in one place. The claim names are those the verifiers put in
// `NormalizedClaims.measurements`.

/** TPM PCRs (TCG PC Client PFP) that measure configuration rather than code. */
const TPM_CONFIGURATION_PCRS = new Set([1, 3, 5, 6, 7]);
/** Nitro PCRs that describe the instance and role rather than the enclave image. */
const NITRO_CONFIGURATION_PCRS = new Set([3, 4]);

function toPlatformReference(platform: Platform, section: CommonInput & Record<string, unknown>): PlatformReference {
  // Maps: a claim name is the author's, and `toString` must not find Object.prototype's.
  const executables = new Map<string, string[]>();
  const configuration = new Map<string, string[]>();
  const add = (into: Map<string, string[]>, name: string, values: string[] | undefined) => {
    if (!values) return;
    into.set(name, [...new Set([...(into.get(name) ?? []), ...values])]);
  };
  const field = (name: string) => section[name] as string[] | undefined;
  for (const [k, v] of Object.entries(section.measurements ?? {})) add(executables, k, v);
  for (const [k, v] of Object.entries(section.configuration ?? {})) add(configuration, k, v);
  switch (platform) {
    case 'sev-snp':
      add(executables, 'measurement', field('measurement'));
      for (const n of ['hostData', 'idKeyDigest', 'authorKeyDigest', 'familyId', 'imageId']) add(configuration, n, field(n));
      break;
    case 'tdx':
      for (const n of ['mrtd', 'rtmr1', 'rtmr2', 'rtmr3', 'mrseam', 'mrservicetd']) add(executables, n, field(n));
      for (const n of ['rtmr0', 'mrconfigid', 'mrowner', 'mrownerconfig', 'mrsignerseam']) add(configuration, n, field(n));
      break;
    case 'nitro':
      for (const [i, v] of Object.entries((section.pcrs ?? {}) as Record<string, string[]>)) {
        add(NITRO_CONFIGURATION_PCRS.has(Number(i)) ? configuration : executables, `pcr${Number(i)}`, v);
      }
      break;
    case 'tpm':
    case 'azure-vtpm':
      // Banks are merged: a value from another bank has another length and can never match,
      // so listing the same PCR in two banks accepts whichever bank the quote used.
      for (const bank of Object.values((section.pcrs ?? {}) as Record<string, Record<string, string[]>>)) {
        for (const [i, v] of Object.entries(bank)) {
          add(TPM_CONFIGURATION_PCRS.has(Number(i)) ? configuration : executables, `pcr${Number(i)}`, v);
        }
      }
      break;
    case 'sim':
      add(executables, 'measurement', field('measurement'));
      break;
    case 'nvidia':
      for (const [i, v] of Object.entries((section.indices ?? {}) as Record<string, string[]>)) add(executables, `measurement${Number(i)}`, v);
      break;
  }
  const t = section.tcb;
  const tcb: TcbReference = {
    allowedStatuses: t?.allowedStatuses ?? ['UpToDate'],
    warnStatuses: t?.warnStatuses ?? [],
    minSvn: t?.minSvn ?? {},
    allowedAdvisories: t?.allowedAdvisories ?? [],
    unlistedAdvisory: t?.unlistedAdvisory ?? 'contraindicated',
    requireStatus: t?.requireStatus ?? platform === 'tdx',
  };
  return {
    executables: Object.fromEntries(executables),
    configuration: Object.fromEntries(configuration),
    signerRoots: section.signerRoots ?? [],
    requireSignerRoots: section.requireSignerRoots ?? platform === 'tpm',
    tcb,
    values: section.values ?? {},
  };
}

// ---------------------------------------------------------------------------------------------
// Loading

export type PolicyFormat = 'yaml' | 'json' | 'auto';

function invalid(message: string, detail?: Record<string, string | number | boolean>, cause?: unknown): CustodyError {
  return new CustodyError('ERR_POLICY_INVALID', message, { ...(detail ? { detail } : {}), ...(cause === undefined ? {} : { cause }) });
}

/**
 * Rejects deep nesting and prototype-polluting keys before the schema sees the value. `built`: an
 * object built in code, whose optional members may be undefined (text never holds undefined).
 */
function checkShape(v: unknown, depth: number, built = false): void {
  if (depth > MAX_DEPTH) throw invalid('policy nests too deeply', { maxDepth: MAX_DEPTH });
  if (v === null || typeof v !== 'object') {
    if (built && v === undefined) return;
    if (typeof v === 'number' && !Number.isFinite(v)) throw invalid('policy holds a non-finite number');
    if (typeof v === 'bigint' || typeof v === 'symbol' || typeof v === 'function' || typeof v === 'undefined') {
      throw invalid('policy holds a value JSON cannot represent');
    }
    return;
  }
  if (Array.isArray(v)) {
    for (const x of v) checkShape(x, depth + 1, built);
    return;
  }
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto !== Object.prototype && proto !== null) throw invalid('policy holds a value JSON cannot represent');
  for (const k of Object.keys(v)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') throw invalid('policy uses a reserved key', { key: k });
    checkShape((v as Record<string, unknown>)[k], depth + 1, built);
  }
}

/**
 * Reads policy text (YAML or JSON) into a plain object without validating it. Hex stays text
 * in YAML (see below). Errors: ERR_POLICY_INVALID.
 */
export function readPolicyText(text: string, format: PolicyFormat = 'auto'): unknown {
  const raw = parseText(text, format);
  checkShape(raw, 0);
  return raw;
}

function parseText(text: string, format: PolicyFormat): unknown {
  const fmt = format === 'auto' ? (/^\s*[{[]/.test(text) ? 'json' : 'yaml') : format;
  try {
    // Repeated members are refused, as YAML refuses repeated keys.
    if (fmt === 'json') return parseJsonUnique(text);
    return parseYamlText(text);
  } catch (e) {
    throw invalid(`policy is not valid ${fmt.toUpperCase()}`, { format: fmt }, e);
  }
}

/**
 * YAML with one twist: a plain scalar is a number only when written the way the number prints
 * (`12`, `-1`, `0.5`). Hex such as `000000...`, `1e5...` or `0123...` stays the string it
 * looks like, so unquoted measurements never turn into (lossy) numbers.
 */
function parseYamlText(text: string): unknown {
  // The parser's own uniqueKeys check compares each key with every earlier key of its map
  // (quadratic: 60 000 keys took 52 s): the keys are checked after, in linear time.
  const doc = parseDocument(text, { uniqueKeys: false, strict: true, prettyErrors: false });
  if (doc.errors.length > 0) throw doc.errors[0]!;
  refuseRepeatedKeys(doc);
  visit(doc, {
    Scalar(_, node) {
      if (node.type === 'PLAIN' && typeof node.value === 'number' && node.source !== undefined && String(node.value) !== node.source) {
        node.value = node.source;
      }
    },
  });
  return doc.toJS({ maxAliasCount: MAX_ALIASES }) as unknown;
}

/**
 * Refuses a map with a key twice, exactly as the parser's `uniqueKeys: true` does (the same
 * DUPLICATE_KEY error): scalar keys are the same when their values are, other keys (collections,
 * aliases) only when they are the same node. One Set per map, so linear in the keys.
 */
function refuseRepeatedKeys(doc: Document): void {
  visit(doc, {
    Map(_, map) {
      const seen = new Set<unknown>();
      for (const pair of map.items) {
        const key: unknown = isScalar(pair.key) ? pair.key.value : pair.key;
        if (seen.has(key)) {
          const range = (isScalar(pair.key) ? pair.key.range : undefined) ?? map.range ?? [0, 0];
          throw new YAMLParseError([range[0], range[1]], 'DUPLICATE_KEY', 'Map keys must be unique');
        }
        seen.add(key);
      }
    },
  });
}

/**
 * Parses and validates a policy document (YAML or JSON, as text or UTF-8 bytes). Throws a
 * CustodyError with code ERR_POLICY_INVALID for anything malformed, never another exception.
 * Custom rule CEL is checked for syntax by `compilePolicy`, which `loadPolicy` also runs.
 */
export function parsePolicyDocument(input: string | Uint8Array, format: PolicyFormat = 'auto'): PolicyDocument {
  try {
    const size = typeof input === 'string' ? input.length : input.byteLength;
    if (size > MAX_POLICY_BYTES) throw invalid('policy file is too large', { size, max: MAX_POLICY_BYTES });
    const text = typeof input === 'string' ? input : fromUtf8(input);
    return validatePolicyObject(parseText(text, format));
  } catch (e) {
    if (e instanceof CustodyError && e.code === 'ERR_POLICY_INVALID') throw e;
    throw invalid('policy could not be read', undefined, e);
  }
}

/** Validates an already-parsed object (e.g. from a database row) as a policy document. */
export function validatePolicyObject(raw: unknown): PolicyDocument {
  // As for text: the schema's records would drop a `__proto__` member without a word.
  checkShape(raw, 0, true);
  const r = documentSchema.safeParse(raw);
  if (!r.success) {
    const issue = r.error.issues[0];
    const path = issue ? issue.path.map(String).join('.') : '';
    throw invalid(`policy is invalid${path ? ` at ${path}` : ''}: ${issue?.message ?? 'schema mismatch'}`, { path, issues: r.error.issues.length });
  }
  const d = r.data;
  const platforms: Partial<Record<Platform, PlatformReference>> = {};
  for (const [name, section] of Object.entries(d.platforms) as [Platform, (CommonInput & Record<string, unknown>) | undefined][]) {
    if (!section) continue;
    const ref = toPlatformReference(name, section);
    if (Object.keys(ref.executables).length + Object.keys(ref.configuration).length === 0) {
      throw invalid(`policy is invalid at platforms.${name}: a platform section must name at least one measurement`, { path: `platforms.${name}` });
    }
    for (const s of ref.tcb.warnStatuses) {
      if (ref.tcb.allowedStatuses.includes(s)) throw invalid(`policy is invalid at platforms.${name}.tcb: ${s} is both allowed and a warning`, { path: `platforms.${name}.tcb` });
    }
    platforms[name] = ref;
  }
  for (const [name, ref] of Object.entries(platforms)) {
    if (ref.requireSignerRoots && ref.signerRoots.length === 0) {
      throw invalid(`policy is invalid at platforms.${name}: signerRoots must list the accepted roots (for a TPM: the SHA-256 of each attestation key's SPKI)`, { path: `platforms.${name}.signerRoots` });
    }
  }
  if (Object.keys(platforms).length === 0) throw invalid('policy is invalid at platforms: no platform has reference values', { path: 'platforms' });
  const ids = new Set<string>();
  for (const rule of d.rules) {
    if (ids.has(rule.id)) throw invalid(`policy is invalid: duplicate rule id ${rule.id}`, { path: 'rules' });
    ids.add(rule.id);
  }
  const doc: PolicyDocument = {
    apiVersion: d.apiVersion,
    id: d.id,
    version: d.version,
    allowSimulated: d.allowSimulated,
    allowDebug: d.allowDebug,
    platforms,
    rules: d.rules.map((r) => {
      const rule: AppraisalRule = { id: r.id, claim: r.claim, expr: r.expr, fail: r.fail, code: r.code, reason: r.reason };
      if (r.when !== undefined) rule.when = r.when;
      if (r.affirm !== undefined) rule.affirm = r.affirm;
      if (r.explain !== undefined) rule.explain = r.explain;
      return rule;
    }),
  };
  if (d.description !== undefined) doc.description = d.description;
  return doc;
}

/**
 * SHA-256 (hex) of the RFC 8785 canonical JSON of the normalised document: the identity of
 * exactly these reference values and rules, independent of YAML layout or comments.
 */
export async function policyDigest(doc: PolicyDocument): Promise<string> {
  return toHex(await sha256(canonicalBytes(doc)));
}
