import type { CelInput } from '@bufbuild/cel';
import { CustodyError, toCustodyError } from '@custody/core';
import { PLATFORMS, type NormalizedClaims, type Platform, type VerificationResult } from '@custody/attest';
import { Ar4si, mergeClaimValue, overallStatus, statusOf, tierOf, type TrustClaimName, type TrustTier, type TrustVector } from './ar4si.js';
import { CelEvaluationError, celToText, compileCel, MAX_CEL_STEPS, toCelInput, type CelProgram } from './cel.js';
import { DEFAULT_RULES } from './default-rules.js';
import {
  parsePolicyDocument,
  policyDigest,
  type AppraisalRule,
  type PlatformReference,
  type PolicyDocument,
  type PolicyFormat,
} from './reference-values.js';

/** A policy ready to appraise: rules parsed and planned once, reference values pre-converted. */
export interface CompiledPolicy {
  readonly document: PolicyDocument;
  /** SHA-256 (hex) of the canonical JSON of the document. */
  readonly digest: string;
  /** The `ear.appraisal-policy-id`: `custody:policy:<id>:<version>:sha256:<digest>`. */
  readonly policyId: string;
  /** Default rules followed by the document's custom rules. */
  readonly rules: readonly AppraisalRule[];
  /** @internal */
  readonly compiled: readonly CompiledRule[];
  /** @internal */
  readonly refs: ReadonlyMap<Platform, CelInput>;
  /** @internal */
  readonly unknownRef: CelInput;
}

interface CompiledRule {
  rule: AppraisalRule;
  expr: CelProgram;
  when?: CelProgram;
  explain?: CelProgram;
}

export interface CompileOptions {
  /** Replaces the default rules (tests, or an operator who reviewed and rewrote them). */
  defaultRules?: readonly AppraisalRule[];
}

/** One rule's outcome on one device. */
export interface Finding {
  rule: string;
  claim: TrustClaimName;
  /** The AR4SI value the rule produced. */
  value: number;
  tier: TrustTier;
  passed: boolean;
  /** Stable code, on failures. */
  code?: string;
  /** Human reason, on failures: the rule's reason plus its explanation. */
  reason?: string;
  /** Path of the nested device (e.g. `sev-snp` behind an Azure vTPM); absent for the device itself. */
  device?: string;
}

/** The appraisal of one attester (one EAR submodule). */
export interface SubmodAppraisal {
  status: TrustTier;
  trustVector: TrustVector;
  /** Every applicable rule's outcome, in rule order. */
  findings: Finding[];
  platform: Platform;
  /** The verified claims appraised; absent when verification failed before claims were known. */
  claims?: NormalizedClaims;
}

export interface Appraisal {
  /** Worst status over all submodules (none if any says nothing). */
  status: TrustTier;
  policyId: string;
  submods: Record<string, SubmodAppraisal>;
  /** The appraisal time, RFC 3339. */
  appraisedAt: string;
}

export interface AppraiseOptions {
  now: Date;
}

export type DeviceInput = NormalizedClaims | VerificationResult;

const SUBMOD_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;
const MAX_SUBMODS = 16;
const MAX_DEVICE_DEPTH = 3;
/** The most evaluation steps all of a policy's rules may take together by their static bound (about 0.2 s per device). */
const MAX_POLICY_STEPS = 10 * MAX_CEL_STEPS;

/** Compiles a validated document: parses and plans every rule's CEL (ERR_POLICY_INVALID on syntax). */
export async function compilePolicy(document: PolicyDocument, options: CompileOptions = {}): Promise<CompiledPolicy> {
  const rules = [...(options.defaultRules ?? DEFAULT_RULES), ...document.rules];
  const ids = new Set<string>();
  const compiled: CompiledRule[] = [];
  let steps = 0;
  for (const rule of rules) {
    if (ids.has(rule.id)) throw new CustodyError('ERR_POLICY_INVALID', `rule id ${rule.id} is used twice (custom rules may not reuse a default rule id)`, { detail: { rule: rule.id } });
    ids.add(rule.id);
    const c: CompiledRule = { rule, expr: compileCel(rule.expr, `rules.${rule.id}.expr`) };
    if (rule.when !== undefined) c.when = compileCel(rule.when, `rules.${rule.id}.when`);
    if (rule.explain !== undefined) c.explain = compileCel(rule.explain, `rules.${rule.id}.explain`);
    steps += c.expr.steps + (c.when?.steps ?? 0) + (c.explain?.steps ?? 0);
    compiled.push(c);
  }
  // Every rule runs for every device of an appraisal: the whole policy is bounded too.
  if (steps > MAX_POLICY_STEPS) throw new CustodyError('ERR_POLICY_INVALID', `the policy's rules could take up to ${steps} evaluation steps together, more than ${MAX_POLICY_STEPS}`, { detail: { maxSteps: MAX_POLICY_STEPS } });
  const digest = await policyDigest(document);
  const policyId = `custody:policy:${document.id}:${document.version}:sha256:${digest}`;
  const refs = new Map<Platform, CelInput>();
  for (const p of PLATFORMS) {
    const section = document.platforms[p];
    if (section) refs.set(p, refInput(document, policyId, section, true));
  }
  const unknownRef = refInput(document, policyId, emptyReference(), false);
  return { document, digest, policyId, rules, compiled, refs, unknownRef };
}

/** Parses, validates and compiles a policy file in one step. Errors: ERR_POLICY_INVALID. */
export async function loadPolicy(input: string | Uint8Array, format: PolicyFormat = 'auto', options: CompileOptions = {}): Promise<CompiledPolicy> {
  return compilePolicy(parsePolicyDocument(input, format), options);
}

function emptyReference(): PlatformReference {
  return {
    executables: {},
    configuration: {},
    signerRoots: [],
    requireSignerRoots: false,
    tcb: { allowedStatuses: ['UpToDate'], warnStatuses: [], minSvn: {}, allowedAdvisories: [], unlistedAdvisory: 'contraindicated', requireStatus: false },
    values: {},
  };
}

function refInput(doc: PolicyDocument, policyId: string, section: PlatformReference, known: boolean): CelInput {
  return toCelInput({
    ...section,
    platformKnown: known,
    allowSimulated: doc.allowSimulated,
    allowDebug: doc.allowDebug,
    policyId,
    policyVersion: doc.version,
  });
}

/**
 * Names devices for EAR submodules when the caller gives a list: NVIDIA GPUs are `gpu0`,
 * `gpu1`, ..., everything else `cpu0`, `cpu1`, ...
 */
export function submodNames(devices: readonly DeviceInput[]): Record<string, DeviceInput> {
  const out: Record<string, DeviceInput> = {};
  let cpu = 0;
  let gpu = 0;
  for (const d of devices) {
    if ((d as { platform?: unknown } | null)?.platform === 'nvidia') out[`gpu${gpu++}`] = d;
    else out[`cpu${cpu++}`] = d;
  }
  return out;
}

function isVerificationResult(d: DeviceInput): d is VerificationResult {
  return Array.isArray((d as VerificationResult).steps) && typeof (d as VerificationResult).ok === 'boolean';
}

/**
 * Appraises verified evidence against a policy. `input` is one device, a list (named cpu0,
 * gpu0, ... by `submodNames`) or a record of submodule name -> device. A VerificationResult
 * that is not ok is contraindicated (AR4SI 99, cryptographic validation failed). Never throws
 * for bad claims: a rule that cannot be evaluated is a failed rule.
 */
export function appraise(policy: CompiledPolicy, input: DeviceInput | readonly DeviceInput[] | Record<string, DeviceInput>, options: AppraiseOptions): Appraisal {
  const now = options.now;
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new CustodyError('ERR_USAGE', 'appraise needs a valid `now`');
  const named: Record<string, DeviceInput> = Array.isArray(input)
    ? submodNames(input as readonly DeviceInput[])
    : isDevice(input)
      ? submodNames([input])
      : (input as Record<string, DeviceInput>);
  const names = Object.keys(named);
  if (names.length === 0) throw new CustodyError('ERR_USAGE', 'nothing to appraise');
  if (names.length > MAX_SUBMODS) throw new CustodyError('ERR_USAGE', `at most ${MAX_SUBMODS} devices per appraisal`);
  const nowSeconds = BigInt(Math.floor(now.getTime() / 1000));
  const submods: Record<string, SubmodAppraisal> = {};
  for (const name of names) {
    if (!SUBMOD_NAME.test(name)) throw new CustodyError('ERR_USAGE', 'submodule names are 1-64 letters, digits, _ . -', { detail: { name: name.slice(0, 64) } });
    const device: unknown = named[name];
    // Not claims at all (null, a number): the input is malformed, which no rule could appraise.
    if (typeof device !== 'object' || device === null || Array.isArray(device)) throw new CustodyError('ERR_INPUT_MALFORMED', `device ${name} is not an object of claims`, { detail: { name } });
    submods[name] = appraiseDevice(policy, device as DeviceInput, nowSeconds);
  }
  return {
    status: overallStatus(Object.values(submods).map((s) => s.status)),
    policyId: policy.policyId,
    submods,
    appraisedAt: now.toISOString(),
  };
}

function isDevice(x: unknown): x is DeviceInput {
  if (typeof x !== 'object' || x === null) return false;
  const p = (x as { platform?: unknown }).platform;
  return typeof p === 'string' && (PLATFORMS as readonly string[]).includes(p) && ('measurements' in x || 'steps' in x);
}

function appraiseDevice(policy: CompiledPolicy, device: DeviceInput, nowSeconds: bigint): SubmodAppraisal {
  if (isVerificationResult(device)) {
    if (!device.ok || !device.claims) {
      const errors = device.errors.length > 0 ? device.errors : [{ code: 'ERR_EVIDENCE_SIGNATURE', message: 'verification did not succeed' }];
      const findings: Finding[] = errors.map((e) => ({
        rule: 'verification',
        claim: 'instance-identity',
        value: Ar4si.CRYPTO_VALIDATION_FAILED,
        tier: 'contraindicated',
        passed: false,
        code: e.code,
        reason: `evidence verification failed: ${e.message}`,
      }));
      const out: SubmodAppraisal = {
        status: 'contraindicated',
        trustVector: { 'instance-identity': Ar4si.CRYPTO_VALIDATION_FAILED },
        findings,
        platform: device.platform,
      };
      if (device.claims) out.claims = device.claims;
      return out;
    }
    return appraiseClaims(policy, device.claims, nowSeconds);
  }
  return appraiseClaims(policy, device, nowSeconds);
}

function appraiseClaims(policy: CompiledPolicy, claims: NormalizedClaims, nowSeconds: bigint): SubmodAppraisal {
  const vector: TrustVector = {};
  const findings: Finding[] = [];
  evaluateDevice(policy, claims, nowSeconds, vector, findings, undefined, 0);
  return { status: statusOf(vector), trustVector: vector, findings, platform: claims.platform, claims };
}

function evaluateDevice(
  policy: CompiledPolicy,
  claims: NormalizedClaims,
  nowSeconds: bigint,
  vector: TrustVector,
  findings: Finding[],
  devicePath: string | undefined,
  depth: number,
): void {
  let claimsInput: CelInput;
  try {
    if (!isClaimsShaped(claims)) throw new CustodyError('ERR_INPUT_MALFORMED', 'claims are not NormalizedClaims');
    claimsInput = toCelInput(claims);
  } catch (e) {
    const err = toCustodyError(e);
    record(vector, findings, { rule: 'claims', claim: 'instance-identity', value: Ar4si.instanceIdentity.UNRECOGNIZED, passed: false, code: err.code, reason: 'claims could not be read', device: devicePath });
    return;
  }
  const ref = policy.refs.get(claims.platform) ?? policy.unknownRef;
  const bindings = { claims: claimsInput, ref, now: nowSeconds };
  for (const c of policy.compiled) {
    const { rule } = c;
    let applies = true;
    let passed: boolean;
    let evalError: string | undefined;
    try {
      if (c.when) applies = asBool(c.when(bindings), `${rule.id}.when`);
      if (!applies) continue;
      passed = asBool(c.expr(bindings), `${rule.id}.expr`);
    } catch (e) {
      // Fail closed: a rule that cannot be evaluated (missing field, wrong type) has failed.
      passed = false;
      evalError = e instanceof CelEvaluationError ? e.message : 'evaluation failed';
    }
    if (passed) {
      if (rule.affirm !== undefined) record(vector, findings, { rule: rule.id, claim: rule.claim, value: rule.affirm, passed: true, device: devicePath });
      continue;
    }
    let reason = rule.reason;
    if (evalError !== undefined) {
      reason = `${rule.reason} (the rule could not be evaluated: ${evalError})`;
    } else if (c.explain) {
      try {
        const text = celToText(c.explain(bindings));
        if (text) reason = `${rule.reason}: ${text}`;
      } catch {
        // The explanation is a courtesy; the finding stands without it.
      }
    }
    record(vector, findings, {
      rule: rule.id,
      claim: rule.claim,
      value: evalError !== undefined ? failValueOnError(rule.fail) : rule.fail,
      passed: false,
      code: evalError !== undefined ? 'ERR_POLICY_RULE' : rule.code,
      reason,
      device: devicePath,
    });
  }
  if (claims.devices && depth < MAX_DEVICE_DEPTH) {
    for (const [name, sub] of Object.entries(claims.devices)) {
      evaluateDevice(policy, sub, nowSeconds, vector, findings, devicePath ? `${devicePath}/${name}` : name, depth + 1);
    }
  } else if (claims.devices) {
    record(vector, findings, { rule: 'devices', claim: 'instance-identity', value: Ar4si.instanceIdentity.UNRECOGNIZED, passed: false, code: 'ERR_INPUT_UNSUPPORTED', reason: 'composite evidence nests too deeply', device: devicePath });
  }
}

/** The minimum shape the rules rely on; anything else is unrecognised evidence. */
function isClaimsShaped(c: unknown): c is NormalizedClaims {
  if (typeof c !== 'object' || c === null || Array.isArray(c)) return false;
  const o = c as Record<string, unknown>;
  return (
    typeof o.platform === 'string' &&
    typeof o.simulated === 'boolean' &&
    typeof o.debug === 'boolean' &&
    typeof o.measurements === 'object' &&
    o.measurements !== null &&
    typeof o.signer === 'object' &&
    o.signer !== null &&
    (o.devices === undefined || (typeof o.devices === 'object' && o.devices !== null && !Array.isArray(o.devices)))
  );
}

/** A rule that errors must never come out better than contraindicated-or-warning it was meant to give. */
function failValueOnError(fail: number): number {
  const t = tierOf(fail);
  return t === 'contraindicated' || t === 'warning' ? fail : Ar4si.VERIFIER_MALFUNCTION;
}

function asBool(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw new CelEvaluationError(`${what} gave ${typeof v}, not a bool`, undefined);
  return v;
}

function record(vector: TrustVector, findings: Finding[], f: Omit<Finding, 'tier' | 'device'> & { device: string | undefined }): void {
  const finding: Finding = { rule: f.rule, claim: f.claim, value: f.value, tier: tierOf(f.value), passed: f.passed };
  if (f.code !== undefined) finding.code = f.code;
  if (f.reason !== undefined) finding.reason = f.reason;
  if (f.device !== undefined) finding.device = f.device;
  findings.push(finding);
  vector[f.claim] = mergeClaimValue(vector[f.claim], f.value);
}

/** The failures that decide the verdict: every finding in the warning or contraindicated tier. */
export function appraisalReasons(appraisal: Appraisal): { submod: string; rule: string; code: string; tier: TrustTier; reason: string; device?: string }[] {
  const out: { submod: string; rule: string; code: string; tier: TrustTier; reason: string; device?: string }[] = [];
  for (const [submod, s] of Object.entries(appraisal.submods)) {
    for (const f of s.findings) {
      if (f.passed || (f.tier !== 'warning' && f.tier !== 'contraindicated')) continue;
      const r: { submod: string; rule: string; code: string; tier: TrustTier; reason: string; device?: string } = {
        submod,
        rule: f.rule,
        code: f.code ?? 'ERR_POLICY_DENIED',
        tier: f.tier,
        reason: f.reason ?? f.rule,
      };
      if (f.device !== undefined) r.device = f.device;
      out.push(r);
    }
  }
  return out;
}
