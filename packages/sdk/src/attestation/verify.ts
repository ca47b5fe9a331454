/**
 * Verification of a gateway before any prompt leaves the client: a pipeline of small steps
 * under a thin orchestrator. Each step reports what it checked; the first failure stops the
 * pipeline (fail closed), and the result is a verification document a developer can print or
 * show in a UI.
 *
 * Two trust paths, usable together:
 * - broker: the EAR's signature against the broker's JWKS (pinned or fetched by the caller),
 *   its status, expiry, nonce and the runtime data it appraised;
 * - no broker: the raw evidence with the attestation verifiers, appraised with the caller's
 *   policy; freshness then comes from a caller nonce (the gateway re-attests on challenge).
 * Both bind the OHTTP key configurations and the receipt key to the evidence through the
 * runtime data digest in the report data.
 *
 * GPUs attached to the TEE (NVIDIA, confidential-computing mode) are checked the same two ways
 * in step `devices`: each published GPU's SPDM request nonce must be SHA-256 of the runtime data
 * (raw evidence), and the broker's composite EAR must cover each as an accepted `gpuN` submodule
 * bound to the runtime data it appraised. Published GPU evidence that fails any check fails the
 * verification whatever `minGpus` says; `minGpus` only sets how many attested GPUs are required.
 */
import type { JSONWebKeySet } from 'jose';
import { canonicalBytes, CustodyError, fromBase64Url, equalBytes, sha256, toCustodyError, toHex, type Bytes } from '@custody/core';
import { gpuAttestationKey, nvidiaVerifier, simVerifier, tpmVerifier, type EvidenceVerifier, type NormalizedClaims, type Platform, type VerificationResult, type VerifyInput } from '@custody/attest';
import { appraise, appraisalReasons, parseAuthenticatedEar, teeKeyFromEar, verifyEar, type CompiledPolicy, type Ear } from '@custody/policy';
import { encodeEvent, verifyTlogProof, type TlogPolicy } from '@custody/ledger';
import type { KeyConfig } from '../ohttp/key-config.js';
import { importReceiptKey } from '../receipt/receipt.js';
import { bundleEvidence, type AttestationBundle, type BundleDevice } from './bundle.js';
import { parseRuntimeData, runtimeDigest, runtimeDigestAlgorithm, sameRuntimeKeys, type OkpPublicJwk, type ParsedRuntimeData } from './runtime-data.js';

/** Anything that verifies evidence for a platform (the attest package's registry fits). */
export interface EvidenceVerifierSet {
  verify(input: VerifyInput & { platform?: string }): Promise<VerificationResult>;
}

/** The verifiers the SDK carries by default (sim and TPM); pass a registry for the others. */
export function verifierSet(verifiers: readonly EvidenceVerifier[]): EvidenceVerifierSet {
  return {
    verify(input) {
      const v = verifiers.find((x) => x.platform === input.platform) ?? verifiers.find((x) => x.detect(input.evidence));
      if (!v) return Promise.reject(new CustodyError('ERR_FORMAT_UNKNOWN', 'no verifier for this evidence in the client', { detail: { platform: input.platform ?? '' } }));
      return v.verify(input);
    },
  };
}

export const defaultVerifiers: EvidenceVerifierSet = verifierSet([simVerifier, tpmVerifier]);

/**
 * The verifiers GPU evidence is checked with when the caller gives none (`verifiers` is used for
 * both when given). Kept apart from `defaultVerifiers` so that GPU evidence alone never stands in
 * for the CPU TEE that holds the keys.
 */
export const defaultDeviceVerifiers: EvidenceVerifierSet = verifierSet([nvidiaVerifier]);

/** What the caller trusts and requires. At least `jwks` or `policy` must be given. */
export interface GatewayTrustOptions {
  /** The broker's EAR signing keys (pinned, or fetched by the caller from a URL it trusts). */
  jwks?: JSONWebKeySet;
  earIssuer?: string;
  earAudience?: string;
  /** Appraisal policy for the raw evidence (the no-broker path, or in addition to the EAR). */
  policy?: CompiledPolicy;
  /** Evidence verifiers; default sim and TPM. */
  verifiers?: EvidenceVerifierSet;
  /** Trust anchors handed to the evidence verifier (`roots`), e.g. a pinned sim key or TPM AK. */
  evidenceRoots?: Uint8Array[];
  /** Named measurements (lowercase hex) the gateway must report; a list accepts any of its values. */
  expectedMeasurements?: Record<string, string | readonly string[]>;
  /** Platforms accepted; default every hardware platform. */
  allowedPlatforms?: readonly Platform[];
  /** Accept `sim` evidence (no hardware stands behind it). Default false. */
  allowSimulated?: boolean;
  /** Accept a debug-mode TEE. Default false. */
  allowDebug?: boolean;
  /** Accept an AR4SI `warning` verdict. Default false. */
  acceptWarning?: boolean;
  /** Longest time a verification is relied on, and oldest EAR accepted. Default 300 s. */
  maxAgeSeconds?: number;
  /**
   * How far this client's clock may be from the broker's when the EAR is checked (issued "in
   * the future", or just expired, by at most this). Default 60 s, the gateway's own window for a
   * request's date; 0 to 300.
   */
  clockToleranceSeconds?: number;
  /** Strict mode: the broker's appraisal must be in the transparency log under this policy. */
  strict?: { tlogPolicy: TlogPolicy };
  /**
   * At least this many GPUs must be attested and bound to the runtime data (default 0): fewer
   * fails step `devices` with ERR_SDK_DEVICE_MISSING, before any prompt is sent. A non-negative
   * integer (else ERR_USAGE). Published GPU evidence is checked whatever this says.
   */
  minGpus?: number;
  /** Trust anchors for GPU evidence checked by the client (tests, private PKI); default the pinned NVIDIA Device Identity CA. */
  gpuRoots?: Uint8Array[];
}

export interface VerifyBundleOptions extends GatewayTrustOptions {
  now: Date;
  /** The nonce the caller sent to the challenge endpoint; the evidence must bind it. */
  nonce?: Uint8Array;
  /** Where the bundle came from, for the document. */
  gateway?: string;
  /**
   * Checking the bundle a past answer was given under (verifyReceiptOffline), not deciding
   * whether to send a prompt now: without a broker EAR no caller nonce can exist, and the
   * evidence's binding of the keys is what matters, so none is required.
   */
  pastAnswer?: boolean;
}

export type VerificationStepName =
  | 'trust'
  | 'runtime-data'
  | 'nonce'
  | 'evidence'
  | 'binding'
  | 'ear'
  | 'devices'
  | 'appraisal'
  | 'platform'
  | 'debug'
  | 'measurements'
  | 'freshness'
  | 'ledger';

export interface VerificationStep {
  name: VerificationStepName;
  ok: boolean;
  /** False when the step did not apply (it then passed trivially). */
  ran: boolean;
  detail: string;
  code?: string;
}

export const VERIFICATION_DOCUMENT_FORMAT = 'custody.dev/gateway-verification/v1';

/** The step-by-step account of one verification (JSON-safe; `renderVerificationText` prints it). */
export interface VerificationDocument {
  format: typeof VERIFICATION_DOCUMENT_FORMAT;
  ok: boolean;
  gateway?: string;
  verifiedAt: string;
  validUntil?: string;
  platform?: string;
  simulated?: boolean;
  debug?: boolean;
  measurements?: Record<string, string>;
  /** The attested GPUs (EAR submodule names), with a digest of their measurements and, when appraised, the verdict. */
  devices?: VerifiedDevice[];
  earId?: string;
  earExpiresAt?: string;
  appraisalPolicyId?: string;
  ohttpKeyIds?: number[];
  receiptKey?: string;
  nonce?: string;
  /** The model the bundle says the gateway serves: NOT covered by the evidence (each receipt names the model that answered, under the attested key). */
  model?: AttestationBundle['model'];
  ledgerIndex?: number;
  steps: VerificationStep[];
  error?: { code: string; message: string; step: VerificationStepName };
}

/** One attested GPU of a verification document. */
export interface VerifiedDevice {
  /** Its EAR submodule name: `gpu0`, `gpu1`, ... (the bundle's device i is `gpu<i>`). */
  name: string;
  platform: 'nvidia';
  /** `sha256:<hex>` of the RFC 8785 form of its measurements (name -> hex). */
  measurementsDigest: string;
  /** The broker's or the client policy's verdict on it. */
  status?: string;
}

/** A verified gateway: what the client encrypts to and checks receipts with. */
export interface VerifiedGateway {
  readonly document: VerificationDocument;
  readonly keyConfigs: readonly KeyConfig[];
  readonly receiptKey: CryptoKey;
  readonly receiptKeyJwk: OkpPublicJwk;
  readonly validUntil: Date;
  readonly platform: string;
  readonly measurements: Record<string, string>;
  readonly earId?: string;
  /** When the broker issued the EAR (its signed `iat`), when the bundle carries one. */
  readonly earIssuedAt?: Date;
  /** True when the evidence was bound to this verification's own nonce (a challenge): it is fresh, not replayed. */
  readonly nonceBound: boolean;
  /** How many GPUs were attested and bound to the runtime data (0 when none was published or required). */
  readonly gpus: number;
}

interface Claimed {
  platform: string;
  simulated: boolean;
  debug: boolean;
  measurements: Record<string, string>;
}

/** Default distance accepted between the client's clock and the broker's for an EAR. */
const DEFAULT_CLOCK_TOLERANCE_SECONDS = 60;

class Stop extends Error {}

/** Runs steps in order; the first failure stops the rest, which are listed as not run. */
class StepRunner {
  readonly steps: VerificationStep[] = [];
  error: VerificationDocument['error'];

  async step(name: VerificationStepName, fn: () => Promise<string | { skipped: string }> | string | { skipped: string }): Promise<void> {
    try {
      const r = await fn();
      if (typeof r === 'string') this.steps.push({ name, ok: true, ran: true, detail: r });
      else this.steps.push({ name, ok: true, ran: false, detail: r.skipped });
    } catch (e) {
      const err = toCustodyError(e);
      this.steps.push({ name, ok: false, ran: true, detail: err.message, code: err.code });
      this.error = { code: err.code, message: err.message, step: name };
      throw new Stop();
    }
  }
}

/**
 * The appraisal an EAR-issuing broker logged, in either of its two ledger forms: the
 * `attestation.appraised` event (the in-process development broker) or the key broker
 * service's audit record of its handshake (`audit.recorded`, action `attest.appraise`, verdict
 * `allow`, with the appraisal status and the EAR's SHA-256 among its facts). Undefined for any
 * other entry. `earDigest` is lowercase hex.
 */
export function loggedAppraisal(ev: Record<string, unknown>): { status: unknown; earDigest: unknown } | undefined {
  if (ev.type === 'attestation.appraised') {
    const d = ev.resultDigest;
    return { status: ev.verdict, earDigest: typeof d === 'string' && d.startsWith('sha256:') ? d.slice(7) : undefined };
  }
  if (ev.type === 'audit.recorded' && ev.action === 'attest.appraise' && ev.verdict === 'allow') {
    const facts = typeof ev.detail === 'object' && ev.detail !== null ? (ev.detail as Record<string, unknown>) : {};
    return { status: facts.status, earDigest: facts.earDigest };
  }
  return undefined;
}

const ALL_STEPS: readonly VerificationStepName[] = ['trust', 'runtime-data', 'nonce', 'evidence', 'binding', 'ear', 'devices', 'appraisal', 'platform', 'debug', 'measurements', 'freshness', 'ledger'];
/** CPU TEEs a gateway may run in by default. A GPU holds no gateway keys: its evidence only rides along (`devices`). */
const HARDWARE: readonly Platform[] = ['sev-snp', 'tdx', 'nitro', 'tpm', 'azure-vtpm'];

function short(hex: string): string {
  return hex.length > 24 ? `${hex.slice(0, 16)}…${hex.slice(-8)}` : hex;
}

function fail(code: string, message: string, detail?: Record<string, string | number | boolean>): never {
  throw new CustodyError(code, message, detail ? { detail } : {});
}

function statusAccepted(status: string, acceptWarning: boolean): boolean {
  return status === 'affirming' || (acceptWarning && status === 'warning');
}

/** The appraised device of an EAR that carries the TEE key (else cpu0, else the first). */
function earDevice(ear: Ear): { name: string; evidence: Record<string, unknown> | undefined; status: string } {
  const names = Object.keys(ear.submods);
  const name = names.find((n) => ear.submods[n]?.['ear.veraison.key-attestation'] !== undefined) ?? (names.includes('cpu0') ? 'cpu0' : names[0]!);
  const sub = ear.submods[name]!;
  return { name, evidence: sub['ear.veraison.annotated-evidence'], status: sub['ear.status'] };
}

function claimedFromAnnotated(a: Record<string, unknown> | undefined): Claimed | undefined {
  if (!a) return undefined;
  const m = a.measurements;
  if (typeof a.platform !== 'string' || typeof a.simulated !== 'boolean' || typeof a.debug !== 'boolean' || typeof m !== 'object' || m === null) return undefined;
  const measurements: Record<string, string> = {};
  for (const [k, v] of Object.entries(m as Record<string, unknown>)) if (typeof v === 'string') measurements[k] = v;
  return { platform: a.platform, simulated: a.simulated, debug: a.debug, measurements };
}

function sameMeasurements(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/** Who the EAR is in messages: a broker's verified EAR, a receipt's (offline, unverified), or the ledger's (strict mode). */
function earName(code: string | undefined): string {
  return code === 'ERR_TLOG_INCLUSION' ? 'strict mode: the logged appraisal' : code ? "the receipt's EAR" : 'the EAR';
}

/**
 * The firmware levels (TCB components) the evidence reports, against those of the evidence the
 * EAR appraised, component by component as the EAR names them (a newer verifier may report
 * more). The evidence the EAR appraised itself must report the same levels. Fresh evidence of a
 * challenge may report higher numeric levels (the host can update firmware under a running guest:
 * an SEV-SNP firmware hot-load, a TDX quoting enclave or module update), never lower ones, and the
 * same text levels. The TCB status is not compared: it depends on when collateral was read.
 */
function tcbLevelsBound(fresh: Record<string, number | string> | undefined, appraised: unknown, challenge: boolean): boolean {
  if (appraised === undefined || appraised === null) return true;
  if (typeof appraised !== 'object' || Array.isArray(appraised)) return false;
  for (const [k, v] of Object.entries(appraised as Record<string, unknown>)) {
    // The EAR names the component: own members only, so `constructor` is not Object.prototype's.
    const f = fresh !== undefined && Object.hasOwn(fresh, k) ? fresh[k] : undefined;
    if (f === undefined) return false;
    if (typeof v === 'number' && typeof f === 'number') {
      if (challenge ? f < v : f !== v) return false;
    } else if (String(f) !== String(v)) return false;
  }
  return true;
}

/**
 * Checks that an EAR appraised exactly the published keys (and, given fresh evidence, the same
 * platform, mode, measurements and firmware levels); returns its device and claims. `code` replaces the binding
 * codes when the EAR came from the ledger (strict mode without a JWKS).
 */
async function bindEar(ear: Ear, bundle: AttestationBundle, rd: ParsedRuntimeData, evidenceClaims: NormalizedClaims | undefined, code?: string): Promise<{ dev: ReturnType<typeof earDevice>; claims: Claimed }> {
  const earRd = bundle.earRuntimeData !== undefined ? parseRuntimeData(bundle.earRuntimeData) : rd;
  const what = earName(code);
  if (!sameRuntimeKeys(earRd.value, rd.value)) fail(code ?? 'ERR_EVIDENCE_BINDING', `${what} appraised other keys than the ones published`);
  if (earRd.nonce && ear.eat_nonce !== undefined && ear.eat_nonce !== earRd.value.nonce) fail(code ?? 'ERR_EAR_NONCE', `${what}'s nonce is not the runtime data nonce`);
  const dev = earDevice(ear);
  const claims = claimedFromAnnotated(dev.evidence);
  if (!claims) fail(code ?? 'ERR_EAR_CLAIMS', `${what} carries no annotated evidence to bind the keys to`);
  const expected = toHex(await runtimeDigest(claims.platform, earRd.text));
  if (dev.evidence?.reportData !== expected) fail(code ?? 'ERR_EVIDENCE_BINDING', `the evidence ${what} covers does not bind the published keys`);
  const tee = await teeKeyFromEar(ear, dev.name);
  if (tee.x !== earRd.value['tee-pubkey'].x) fail(code ?? 'ERR_EVIDENCE_BINDING', `${what} carries another TEE key`);
  if (evidenceClaims && (evidenceClaims.platform !== claims.platform || evidenceClaims.simulated !== claims.simulated || evidenceClaims.debug !== claims.debug || !sameMeasurements(evidenceClaims.measurements, claims.measurements))) {
    fail(code ?? 'ERR_EVIDENCE_MEASUREMENT', `the fresh evidence reports another platform, mode or measurements than the evidence ${what} covers`);
  }
  if (evidenceClaims && !tcbLevelsBound(evidenceClaims.tcb?.components, (dev.evidence?.tcb as { components?: unknown } | undefined)?.components, bundle.earRuntimeData !== undefined)) {
    fail(code ?? 'ERR_EVIDENCE_MEASUREMENT', `the evidence reports other firmware levels (TCB) than the evidence ${what} covers`);
  }
  return { dev, claims };
}

/**
 * Throws ERR_USAGE for GPU options no verification could honour (a `minGpus` that is not a
 * non-negative integer, `gpuRoots` that are not byte arrays). `createConfidentialFetch` calls it
 * up front; `verifyGatewayBundle` reports it at step `trust`.
 */
export function assertDeviceOptions(options: Pick<GatewayTrustOptions, 'minGpus' | 'gpuRoots'>): void {
  const m = options.minGpus;
  if (m !== undefined && !(typeof m === 'number' && Number.isSafeInteger(m) && m >= 0)) throw new CustodyError('ERR_USAGE', 'minGpus must be a non-negative integer');
  const r = options.gpuRoots as unknown;
  if (r !== undefined && !(Array.isArray(r) && r.every((x) => x instanceof Uint8Array))) throw new CustodyError('ERR_USAGE', 'gpuRoots must be a list of certificates (DER or PEM bytes)');
}

/** EAR submodules that appraised GPUs: packages/policy names NVIDIA devices gpu0, gpu1, ... */
const GPU_SUBMOD = /^gpu(0|[1-9][0-9]?)$/;

interface AttestedDevice {
  name: string;
  measurements: Record<string, string>;
  status?: string;
}

/** `sha256:<hex>` of the RFC 8785 form of a device's measurements. */
async function measurementsDigest(m: Record<string, string>): Promise<string> {
  return `sha256:${toHex(await sha256(canonicalBytes(m)))}`;
}

/**
 * Verifies one published device's evidence at `now`, bound to the runtime data: its SPDM request
 * nonce must be `nonce` (SHA-256 of the runtime data text). The verifier checks the nonce; the
 * claims are checked again, so a verifier that ignored it still cannot bind other evidence.
 */
async function verifyDevice(verifiers: EvidenceVerifierSet, device: BundleDevice, name: string, nonce: Bytes, now: Date, roots: Uint8Array[] | undefined): Promise<NormalizedClaims> {
  let result: VerificationResult;
  try {
    result = await verifiers.verify({ evidence: fromBase64Url(device.evidence), platform: device.platform, now, nonce, ...(roots && roots.length > 0 ? { roots } : {}) });
  } catch (e) {
    const err = toCustodyError(e);
    fail(err.code, `${name} (${device.platform}) evidence cannot be verified: ${err.message}`, { device: name });
  }
  if (!result.ok || !result.claims) {
    const first = result.errors[0];
    fail(first?.code ?? 'ERR_EVIDENCE_SIGNATURE', `${name} (${device.platform}) evidence does not verify: ${first?.message ?? 'unknown failure'}`, { device: name });
  }
  if (result.claims.platform !== 'nvidia') fail('ERR_EVIDENCE_BINDING', `${name} evidence is not NVIDIA GPU evidence`, { device: name });
  if (result.claims.reportData !== toHex(nonce)) fail('ERR_EVIDENCE_BINDING', `${name}'s request nonce is not SHA-256 of the runtime data (the GPU is not bound to these keys)`, { device: name });
  if (gpuAttestationKey(result.claims.platformClaims) === undefined) fail('ERR_EVIDENCE_BINDING', `${name}'s evidence does not name its attestation key (the GPU's identity)`, { device: name });
  return result.claims;
}


/** Refuses a GPU counted twice: two devices with one attestation key are one GPU (ECDSA signs each report afresh). */
function assertDistinctGpus(identities: readonly (readonly [name: string, id: string])[], code?: string): void {
  const seen = new Map<string, string>();
  for (const [name, id] of identities) {
    const first = seen.get(id);
    if (first !== undefined) fail(code ?? 'ERR_EVIDENCE_DEVICE_REPEATED', `${name} is the same GPU as ${first} (one attestation key)`, { device: name });
    seen.set(id, name);
  }
}

/**
 * Checks that an EAR covers exactly the gateway's published GPUs, one to one: published device i
 * is submodule `gpu<i>` and there is no other `gpuN`. Each is an accepted appraisal of NVIDIA
 * evidence whose request nonce is SHA-256 of the runtime data the EAR appraised, by the same GPU
 * (attestation key) as the published evidence the client verified, with the same measurements.
 * (A challenge bundle's fresh evidence is over other runtime data than the EAR's; the key and the
 * measurements say it is the same GPU.) So every GPU counted was verified by the client too, and a
 * client policy appraises each. `code` replaces the codes when the EAR came from the ledger
 * (strict mode without a JWKS).
 */
async function bindEarDevices(ear: Ear, bundle: AttestationBundle, rd: ParsedRuntimeData, raw: Readonly<Record<string, NormalizedClaims>>, acceptWarning: boolean, code?: string): Promise<AttestedDevice[]> {
  const earRd = bundle.earRuntimeData !== undefined ? parseRuntimeData(bundle.earRuntimeData) : rd;
  const what = earName(code);
  const expected = toHex(await runtimeDigest('nvidia', earRd.text));
  const published = bundle.devices ?? [];
  published.forEach((_, i) => {
    if (!ear.submods[`gpu${i}`]) fail(code ?? 'ERR_EAR_CLAIMS', `${what} does not cover the published GPU gpu${i}`, { device: `gpu${i}` });
  });
  const names = Object.keys(ear.submods)
    .filter((n) => GPU_SUBMOD.test(n))
    .sort((a, b) => Number(a.slice(3)) - Number(b.slice(3)));
  // A GPU the client cannot verify itself is not counted: the bundle publishes every GPU the EAR appraised.
  const unpublished = names.find((n) => Number(n.slice(3)) >= published.length);
  if (unpublished !== undefined) fail(code ?? 'ERR_EAR_CLAIMS', `${what} appraised a GPU (${unpublished}) whose evidence the gateway does not publish`, { device: unpublished });
  const out: AttestedDevice[] = [];
  for (const name of names) {
    const sub = ear.submods[name]!;
    const status = sub['ear.status'];
    if (!statusAccepted(status, acceptWarning)) fail(code ?? 'ERR_POLICY_DENIED', `the broker's verdict on ${name} is ${status}`, { device: name, status });
    const annotated = sub['ear.veraison.annotated-evidence'];
    const claims = claimedFromAnnotated(annotated);
    if (!claims || claims.platform !== 'nvidia') fail(code ?? 'ERR_EAR_CLAIMS', `${what}'s ${name} is not an appraisal of NVIDIA GPU evidence`, { device: name });
    if (annotated?.reportData !== expected) fail(code ?? 'ERR_EVIDENCE_BINDING', `the GPU evidence ${what} covers as ${name} is not bound to the runtime data it appraised`, { device: name });
    const fresh = raw[name];
    if (!fresh) fail(code ?? 'ERR_EAR_CLAIMS', `${name}'s published evidence was not verified`, { device: name });
    if (gpuAttestationKey(annotated?.platformClaims) !== gpuAttestationKey(fresh.platformClaims)) fail(code ?? 'ERR_EVIDENCE_BINDING', `the GPU ${what} appraised as ${name} is not the GPU whose evidence is published (another attestation key)`, { device: name });
    if (!sameMeasurements(fresh.measurements, claims.measurements)) fail(code ?? 'ERR_EVIDENCE_MEASUREMENT', `the GPU evidence ${name} reports other measurements than the evidence ${what} covers`, { device: name });
    // Driver and VBIOS versions (from the signed report), as for a CPU's firmware levels.
    if (!tcbLevelsBound(fresh.tcb?.components, (annotated?.tcb as { components?: unknown } | undefined)?.components, bundle.earRuntimeData !== undefined)) {
      fail(code ?? 'ERR_EVIDENCE_MEASUREMENT', `the GPU evidence ${name} reports other firmware levels (driver, VBIOS) than the evidence ${what} covers`, { device: name });
    }
    out.push({ name, measurements: claims.measurements, status });
  }
  return out;
}

/**
 * Verifies an attestation bundle. Never throws: the document says what passed and what failed;
 * `verified` is present only when every step passed.
 */
export async function verifyGatewayBundle(bundle: AttestationBundle, options: VerifyBundleOptions): Promise<{ document: VerificationDocument; verified?: VerifiedGateway }> {
  const now = options.now;
  const maxAge = options.maxAgeSeconds ?? 300;
  const run = new StepRunner();
  const doc: VerificationDocument = {
    format: VERIFICATION_DOCUMENT_FORMAT,
    ok: false,
    verifiedAt: now.toISOString(),
    steps: run.steps,
    ...(options.gateway !== undefined ? { gateway: options.gateway } : {}),
    ...(bundle.model ? { model: bundle.model } : {}),
  };
  let rd!: ParsedRuntimeData;
  let receiptKey!: CryptoKey;
  let evidenceClaims: NormalizedClaims | undefined;
  let earClaims: Claimed | undefined;
  let ear: Ear | undefined;
  const rawDevices: Record<string, NormalizedClaims> = {};
  let gpus = 0;
  /** A past answer's EAR checked without the broker's JWKS: bound to the raw evidence, not trusted. */
  let pastEar: Ear | undefined;
  let validUntil = new Date(now.getTime() + maxAge * 1000);
  const useEvidence = options.jwks === undefined || options.nonce !== undefined || options.policy !== undefined || options.verifiers !== undefined;

  try {
    await run.step('trust', () => {
      assertDeviceOptions(options);
      const tolerance = options.clockToleranceSeconds;
      if (tolerance !== undefined && !(Number.isFinite(tolerance) && tolerance >= 0 && tolerance <= 300)) fail('ERR_USAGE', 'clockToleranceSeconds is a number of seconds from 0 to 300');
      if (!options.jwks && !options.policy) fail('ERR_SDK_TRUST_CONFIG', 'neither a broker JWKS nor an appraisal policy is configured: nothing to trust the gateway by');
      if (!options.jwks && !options.nonce && !options.pastAnswer) fail('ERR_SDK_STALE', 'without a broker EAR, freshness needs a caller nonce (use the challenge endpoint)');
      const how = [options.jwks ? `broker EAR against a pinned JWKS (${options.jwks.keys.length} key(s))` : '', options.policy ? `raw evidence appraised with policy ${options.policy.policyId}` : ''].filter(Boolean);
      const gpuNeed = options.minGpus ? `; at least ${options.minGpus} attested GPU(s) required` : '';
      return `trusting ${how.join(' and ')}${gpuNeed}`;
    });

    await run.step('runtime-data', async () => {
      rd = parseRuntimeData(bundle.runtimeData);
      if (!equalBytes(fromBase64Url(bundle.ohttpKeys), rd.keyConfigBytes)) fail('ERR_EVIDENCE_BINDING', 'the published OHTTP key configuration is not the one the evidence binds');
      if (bundle.receiptKey.x !== rd.value['receipt-key'].x) fail('ERR_EVIDENCE_BINDING', 'the published receipt key is not the one the evidence binds');
      receiptKey = await importReceiptKey(rd.value['receipt-key']);
      doc.ohttpKeyIds = rd.keyConfigs.map((k) => k.keyId);
      doc.receiptKey = rd.value['receipt-key'].x;
      return `canonical runtime data binds OHTTP key id(s) ${doc.ohttpKeyIds.join(', ')}, receipt key ${short(toHex(fromBase64Url(rd.value['receipt-key'].x)))} and TEE key ${short(toHex(fromBase64Url(rd.value['tee-pubkey'].x)))}`;
    });

    await run.step('nonce', () => {
      if (!options.nonce) return { skipped: 'no caller nonce (freshness from the EAR)' };
      if (!rd.nonce || !equalBytes(rd.nonce, options.nonce)) fail('ERR_EVIDENCE_NONCE', 'the evidence does not bind the caller nonce');
      doc.nonce = toHex(options.nonce);
      return `runtime data carries the caller's ${options.nonce.length}-byte nonce`;
    });

    await run.step('evidence', async () => {
      if (!useEvidence) return { skipped: 'raw evidence not checked (the broker EAR vouches for it)' };
      const verifiers = options.verifiers ?? defaultVerifiers;
      const result = await verifiers.verify({ evidence: bundleEvidence(bundle), platform: bundle.platform, now, ...(options.evidenceRoots ? { roots: options.evidenceRoots } : {}) });
      if (!result.ok || !result.claims) {
        const first = result.errors[0];
        fail(first?.code ?? 'ERR_EVIDENCE_SIGNATURE', `${bundle.platform} evidence does not verify: ${first?.message ?? 'unknown failure'}`);
      }
      evidenceClaims = result.claims;
      const passed = result.steps.filter((s) => s.ok && s.checked !== false).map((s) => s.name);
      const skipped = result.steps.filter((s) => s.checked === false).map((s) => s.name);
      return `${result.platform} evidence verifies (${passed.join(', ')})${skipped.length > 0 ? `; not checked: ${skipped.join(', ')}` : ''}${result.claims.simulated ? ' — SIMULATED, no hardware TEE' : ''}`;
    });

    await run.step('binding', async () => {
      if (!evidenceClaims) return { skipped: 'checked against the EAR in the next step' };
      if (evidenceClaims.platform !== bundle.platform) fail('ERR_EVIDENCE_BINDING', 'the evidence is not from the platform the bundle names');
      const expected = toHex(await runtimeDigest(bundle.platform, rd.text));
      if (evidenceClaims.reportData !== expected) fail('ERR_EVIDENCE_BINDING', 'the evidence report data is not the digest of the runtime data (keys not bound)');
      return `report data = ${runtimeDigestAlgorithm(bundle.platform)}(runtime data) = ${short(expected)}`;
    });

    await run.step('ear', async () => {
      if (!options.jwks) {
        if (!options.pastAnswer || bundle.ear === undefined) return { skipped: 'no broker JWKS pinned' };
        // A receipt names the EAR (its digest), not the evidence published beside it. An auditor
        // who appraises that evidence without the broker's JWKS checks that it is what the EAR
        // appraised (platform, mode, measurements, firmware levels; the GPUs in step devices), so
        // other evidence over the same public runtime data cannot be shown beside the same EAR.
        try {
          pastEar = parseAuthenticatedEar(bundle.ear);
        } catch (e) {
          fail('ERR_RECEIPT_MISMATCH', `the bundle's EAR cannot be read (${toCustodyError(e).code})`);
        }
        if (!evidenceClaims) fail('ERR_SDK_TRUST_CONFIG', 'without a broker JWKS the raw evidence must be checked');
        await bindEar(pastEar, bundle, rd, evidenceClaims, 'ERR_RECEIPT_MISMATCH');
        return { skipped: 'no broker JWKS pinned; the raw evidence is what the EAR appraised (its signature not checked)' };
      }
      if (!bundle.ear) fail('ERR_EAR_MALFORMED', 'the gateway published no EAR');
      const v = await verifyEar(bundle.ear, { jwks: options.jwks, now, clockToleranceSeconds: options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS, ...(options.earIssuer ? { issuer: options.earIssuer } : {}), ...(options.earAudience ? { audience: options.earAudience } : {}) });
      ear = v.ear;
      const bound = await bindEar(ear, bundle, rd, evidenceClaims);
      if (!statusAccepted(v.status, options.acceptWarning ?? false)) fail('ERR_POLICY_DENIED', `the broker's verdict is ${v.status}`, { status: v.status });
      earClaims = bound.claims;
      const dev = bound.dev;
      doc.earId = ear.jti;
      doc.earExpiresAt = new Date(ear.exp * 1000).toISOString();
      doc.appraisalPolicyId = ear.submods[dev.name]?.['ear.appraisal-policy-id'];
      return `EAR ${ear.jti ?? '(no jti)'} signed by ${v.kid ?? 'a pinned key'} (${v.alg}), ${v.status}, expires ${doc.earExpiresAt}; it appraised the runtime data that binds these keys`;
    });

    await run.step('devices', async () => {
      const published = bundle.devices ?? [];
      const minGpus = options.minGpus ?? 0;
      const earGpus = [ear, pastEar].some((e) => e !== undefined && Object.keys(e.submods).some((n) => GPU_SUBMOD.test(n)));
      if (published.length === 0 && minGpus === 0 && !earGpus) return { skipped: 'no GPU evidence published' };
      const parts: string[] = [];
      // Published GPU evidence is always verified here, EAR or not: nothing published passes unchecked.
      if (published.length > 0) {
        const verifiers = options.verifiers ?? defaultDeviceVerifiers;
        const nonce = await runtimeDigest('nvidia', rd.text);
        for (const [i, d] of published.entries()) rawDevices[`gpu${i}`] = await verifyDevice(verifiers, d, `gpu${i}`, nonce, now, options.gpuRoots);
        assertDistinctGpus(Object.entries(rawDevices).map(([n, c]) => [n, gpuAttestationKey(c.platformClaims)!] as const));
        parts.push(`${published.length} GPU evidence file(s) verify, each with request nonce SHA-256(runtime data) = ${short(toHex(nonce))}, from ${published.length} distinct GPU(s)`);
      }
      let attested: AttestedDevice[];
      if (pastEar) await bindEarDevices(pastEar, bundle, rd, rawDevices, true, 'ERR_RECEIPT_MISMATCH');
      if (ear) {
        attested = await bindEarDevices(ear, bundle, rd, rawDevices, options.acceptWarning ?? false);
        parts.push(`the EAR covers ${attested.length} GPU(s) (${attested.map((d) => `${d.name} ${d.status ?? ''}`.trim()).join(', ') || 'none'}), bound to the runtime data it appraised`);
      } else {
        attested = Object.entries(rawDevices).map(([name, c]) => ({ name, measurements: c.measurements }));
      }
      gpus = attested.length;
      doc.devices = await Promise.all(
        attested.map(async (d) => ({ name: d.name, platform: 'nvidia' as const, measurementsDigest: await measurementsDigest(d.measurements), ...(d.status !== undefined ? { status: d.status } : {}) })),
      );
      if (gpus < minGpus) fail('ERR_SDK_DEVICE_MISSING', `${gpus} attested GPU(s), the client requires ${minGpus}`, { attested: gpus, required: minGpus });
      if (parts.length === 0) parts.push('no GPU evidence published');
      return `${parts.join('; ')}${minGpus > 0 ? `; ${gpus} >= ${minGpus} required` : ''}`;
    });

    const claims: Claimed = evidenceClaims ?? earClaims!;
    doc.platform = claims.platform;
    doc.simulated = claims.simulated;
    doc.debug = claims.debug;
    doc.measurements = { ...claims.measurements };

    await run.step('appraisal', () => {
      if (!options.policy) return { skipped: options.jwks ? `appraised by the broker (${doc.appraisalPolicyId ?? 'policy id not stated'})` : 'no policy' };
      if (!evidenceClaims) fail('ERR_SDK_TRUST_CONFIG', 'a policy needs the raw evidence');
      // With GPUs, the composite the broker would appraise: the CPU as cpu0, GPU i as gpu<i>.
      const composite = Object.keys(rawDevices).length > 0;
      const a = appraise(options.policy, composite ? { cpu0: evidenceClaims, ...rawDevices } : evidenceClaims, { now });
      for (const d of doc.devices ?? []) {
        const s = a.submods[d.name];
        if (s && d.status === undefined) d.status = s.status;
      }
      if (!statusAccepted(a.status, options.acceptWarning ?? false)) {
        const r = appraisalReasons(a)[0];
        fail(r?.code ?? 'ERR_POLICY_DENIED', `policy ${options.policy.policyId} says ${a.status}${r ? `: ${composite ? `${r.submod}: ` : ''}${r.reason}` : ''}`, composite && r ? { submod: r.submod } : undefined);
      }
      doc.appraisalPolicyId ??= a.policyId;
      return composite ? `policy ${a.policyId} says ${a.status} (${Object.entries(a.submods).map(([n, s]) => `${n} ${s.status}`).join(', ')})` : `policy ${a.policyId} says ${a.status}`;
    });

    await run.step('platform', () => {
      const allowed = options.allowedPlatforms ?? HARDWARE;
      if (claims.simulated || claims.platform === 'sim') {
        if (!options.allowSimulated) fail('ERR_EVIDENCE_SIMULATED', 'the gateway runs on SIMULATED evidence, which this client does not accept');
        return 'SIMULATED platform accepted because allowSimulated is set (no hardware TEE protects the prompts)';
      }
      if (claims.platform === 'nvidia') fail('ERR_SDK_PLATFORM', "a GPU's evidence cannot stand for the gateway's TEE (GPUs ride along a CPU TEE's evidence)");
      if (!allowed.includes(claims.platform as Platform)) fail('ERR_SDK_PLATFORM', `platform ${claims.platform} is not in ${allowed.join(', ')}`);
      return `${claims.platform} is an accepted platform`;
    });

    await run.step('debug', () => {
      if (claims.debug && !options.allowDebug) fail('ERR_EVIDENCE_DEBUG', 'the gateway TEE is in debug mode (its memory can be read by the host)');
      return claims.debug ? 'debug-mode TEE accepted because allowDebug is set' : 'not a debug-mode TEE';
    });

    await run.step('measurements', () => {
      const pins = options.expectedMeasurements;
      if (!pins || Object.keys(pins).length === 0) return { skipped: `no measurements pinned by the client; relying on ${doc.appraisalPolicyId ?? 'the appraisal'}` };
      for (const [name, accepted] of Object.entries(pins)) {
        const list = (typeof accepted === 'string' ? [accepted] : accepted).map((x) => x.toLowerCase());
        const got = Object.hasOwn(claims.measurements, name) ? claims.measurements[name] : undefined;
        if (got === undefined || !list.includes(got.toLowerCase())) fail('ERR_EVIDENCE_MEASUREMENT', `measurement ${name} is ${got === undefined ? 'missing' : short(got)}, not a pinned value`, { name });
      }
      return `pinned ${Object.keys(pins).join(', ')} match`;
    });

    await run.step('freshness', () => {
      const parts: string[] = [];
      if (ear) {
        const age = now.getTime() / 1000 - ear.iat;
        if (age > maxAge) fail('ERR_SDK_STALE', `the EAR is ${Math.round(age)} s old (limit ${maxAge} s)`);
        validUntil = new Date(Math.min(ear.exp * 1000, now.getTime() + maxAge * 1000));
        parts.push(`EAR issued ${Math.round(age)} s ago`);
      }
      if (options.nonce) parts.push('evidence bound to the caller nonce');
      doc.validUntil = validUntil.toISOString();
      return `${parts.join('; ')}; relied on until ${doc.validUntil}`;
    });

    await run.step('ledger', async () => {
      if (bundle.ledger) doc.ledgerIndex = bundle.ledger.index;
      if (!options.strict) return { skipped: bundle.ledger ? `appraisal recorded at ledger index ${bundle.ledger.index} (not checked: strict mode off)` : 'strict mode off' };
      const entry = bundle.ledger;
      if (!entry?.proof) fail('ERR_TLOG_INCLUSION', 'strict mode: the bundle has no ledger inclusion proof');
      if (!bundle.ear) fail('ERR_TLOG_INCLUSION', 'strict mode: the appraisal is logged by the broker, and there is no EAR');
      const ev = entry.event;
      const logged = loggedAppraisal(ev);
      if (!logged) fail('ERR_TLOG_INCLUSION', 'strict mode: the ledger entry is not an appraisal');
      if (logged.status !== 'affirming') fail('ERR_TLOG_INCLUSION', 'strict mode: the logged verdict is not affirming');
      const earDigest = toHex(await sha256(new TextEncoder().encode(bundle.ear)));
      if (logged.earDigest !== earDigest) fail('ERR_TLOG_INCLUSION', 'strict mode: the logged appraisal is for another EAR');
      const v = await verifyTlogProof(entry.proof, { entry: encodeEvent(ev) }, options.strict.tlogPolicy, { now });
      if (v.index !== entry.index) fail('ERR_TLOG_INCLUSION', 'strict mode: the proof is for another index');
      // Without a broker JWKS the EAR step did not run: the log now vouches for the EAR's bytes,
      // and they must be an appraisal of exactly these keys and this evidence, not of another gateway.
      if (!ear) {
        let logged: Ear;
        try {
          logged = parseAuthenticatedEar(bundle.ear);
        } catch (e) {
          fail('ERR_TLOG_INCLUSION', `strict mode: the logged EAR cannot be read (${toCustodyError(e).code})`);
        }
        await bindEar(logged, bundle, rd, evidenceClaims, 'ERR_TLOG_INCLUSION');
        if ((bundle.devices?.length ?? 0) > 0) await bindEarDevices(logged, bundle, rd, rawDevices, options.acceptWarning ?? false, 'ERR_TLOG_INCLUSION');
      }
      return `the broker's appraisal is entry ${v.index} of ${v.checkpoint.origin} (tree size ${v.checkpoint.size}, ${v.witnesses.length} witness(es))`;
    });
  } catch (e) {
    if (!(e instanceof Stop)) throw e;
  }

  for (const name of ALL_STEPS) {
    if (!run.steps.some((s) => s.name === name)) run.steps.push({ name, ok: false, ran: false, detail: 'not run (an earlier step failed)' });
  }
  if (run.error) {
    doc.error = run.error;
    return { document: doc };
  }
  doc.ok = true;
  const verified: VerifiedGateway = {
    document: doc,
    keyConfigs: rd.keyConfigs,
    receiptKey,
    receiptKeyJwk: rd.value['receipt-key'],
    validUntil,
    platform: doc.platform!,
    measurements: doc.measurements ?? {},
    ...(doc.earId !== undefined ? { earId: doc.earId } : {}),
    ...(ear ? { earIssuedAt: new Date(ear.iat * 1000) } : {}),
    nonceBound: options.nonce !== undefined,
    gpus,
  };
  return { document: doc, verified };
}

/** Throws the failure of a verification document as a typed error (ERR_SDK_NOT_VERIFIED with the cause's code in detail). */
export function assertVerified(result: { document: VerificationDocument; verified?: VerifiedGateway }): VerifiedGateway {
  if (result.verified) return result.verified;
  const e = result.document.error;
  throw new CustodyError(e?.code ?? 'ERR_SDK_NOT_VERIFIED', e ? `gateway not verified at step ${e.step}: ${e.message}` : undefined, {
    detail: { step: e?.step ?? 'unknown' },
  });
}

/** Plain-text rendering of a verification document, one line per step. */
/**
 * One line of rendered text, with control, line-separator and bidirectional-control characters written as `\u{..}`:
 * step details quote what the evidence says (a certificate subject, say), and a line break in
 * it must not forge a line such as "VERIFIED" or "PASS".
 */
export function printableLine(text: string): string {
  // Bidirectional controls too (U+200E/F, U+202A-202E, U+2066-2069): they reorder what a terminal shows.
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f-\u009f\u200e\u200f\u2028-\u202e\u2066-\u2069]/g, (c) => `\\u{${c.charCodeAt(0).toString(16)}}`);
}

export function renderVerificationText(doc: VerificationDocument): string {
  const lines: string[] = [];
  lines.push(`Custody gateway verification: ${doc.ok ? 'VERIFIED' : `NOT VERIFIED (${doc.error?.code ?? 'unknown'})`}`);
  if (doc.gateway) lines.push(`  gateway       ${doc.gateway}`);
  lines.push(`  verified at   ${doc.verifiedAt}${doc.validUntil ? `, relied on until ${doc.validUntil}` : ''}`);
  if (doc.platform) lines.push(`  platform      ${doc.platform}${doc.simulated ? '  (SIMULATED: no hardware TEE stands behind this gateway)' : ''}${doc.debug ? '  (DEBUG mode)' : ''}`);
  for (const [k, v] of Object.entries(doc.measurements ?? {})) lines.push(`  measurement   ${k} = ${v}`);
  for (const d of doc.devices ?? []) lines.push(`  GPU           ${d.name} ${d.platform}, measurements ${d.measurementsDigest}${d.status ? ` (${d.status})` : ''}`);
  if (doc.earId) lines.push(`  EAR           ${doc.earId}, expires ${doc.earExpiresAt ?? '?'}`);
  if (doc.appraisalPolicyId) lines.push(`  policy        ${doc.appraisalPolicyId}`);
  if (doc.ohttpKeyIds) lines.push(`  OHTTP keys    id ${doc.ohttpKeyIds.join(', ')}`);
  if (doc.receiptKey) lines.push(`  receipt key   Ed25519 ${doc.receiptKey}`);
  // The bundle's model is what the gateway says it serves: no evidence covers it (each receipt, signed by the attested key, names the model that answered).
  if (doc.model) lines.push(`  model         ${doc.model.label ?? doc.model.id}${doc.model.digest ? ` (${doc.model.digest})` : ''}  (as the bundle states, not attested; each receipt names the model that answered)`);
  if (doc.ledgerIndex !== undefined) lines.push(`  ledger        appraisal at index ${doc.ledgerIndex}`);
  lines.push('');
  doc.steps.forEach((s, i) => {
    const mark = !s.ran ? (s.ok ? 'SKIP' : '----') : s.ok ? 'PASS' : 'FAIL';
    lines.push(`  ${String(i + 1).padStart(2)}. ${mark} ${s.name.padEnd(13)} ${s.detail}${s.code ? ` [${s.code}]` : ''}`);
  });
  return lines.map(printableLine).join('\n') + '\n';
}


