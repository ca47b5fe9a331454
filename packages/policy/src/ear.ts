import { SignJWT, createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors as joseErrors, jwtVerify, type JSONWebKeySet, type JWTPayload } from 'jose';
import { z } from 'zod';
import { CustodyError, fromBase64Url, secureRandom, toBase64Url, type RandomSource } from '@custody/core';
import type { NormalizedClaims } from '@custody/attest';
import { TRUST_CLAIMS, TRUST_TIERS, isTrustClaimValue, overallStatus, type TrustTier, type TrustVector } from './ar4si.js';
import type { Appraisal, SubmodAppraisal } from './appraise.js';
import { EAR_ALGORITHMS, type EarSigningKey } from './keys.js';
import { jwkFromSpki, spkiFromJwk } from './tee-key.js';

/**
 * EAT Attestation Results (draft-ietf-rats-ear), JSON claims in a JWT signed with jose.
 *
 * ```json
 * {
 *   "eat_profile": "tag:github.com,2023:veraison/ear",
 *   "iat": 1700000000, "exp": 1700000300, "jti": "...", "iss": "...",
 *   "ear.verifier-id": { "developer": "https://custody.dev", "build": "custody 0.1.0" },
 *   "eat_nonce": "<base64url of the challenge nonce>",
 *   "submods": {
 *     "cpu0": {
 *       "ear.status": "affirming",
 *       "ear.trustworthiness-vector": { "instance-identity": 2, "hardware": 2, "executables": 2, ... },
 *       "ear.appraisal-policy-id": "custody:policy:trainer:3:sha256:...",
 *       "ear.veraison.annotated-evidence": { "platform": "sev-snp", "measurements": {...}, ... },
 *       "ear.veraison.policy-claims": { "reasons": [ { "rule": ..., "code": ..., "reason": ... } ] },
 *       "ear.veraison.key-attestation": { "akpub": "<base64url SubjectPublicKeyInfo>" }
 *     },
 *     "gpu0": { ... }
 *   }
 * }
 * ```
 *
 * `ear.veraison.key-attestation` carries the TEE public key that the evidence bound (the key
 * a broker wraps secrets to). `exp` is short (5 minutes by default): an EAR is a ticket, not
 * a certificate.
 */

export const EAR_PROFILE = 'tag:github.com,2023:veraison/ear';
export const DEFAULT_EAR_TTL_SECONDS = 300;
/** Upper bound on an EAR's lifetime accepted by `verifyEar` unless the caller says otherwise. */
export const DEFAULT_MAX_EAR_TTL_SECONDS = 3600;
export const MAX_EAR_BYTES = 256 * 1024;

export interface VerifierId {
  developer: string;
  build: string;
}

export interface EarAppraisal {
  'ear.status': TrustTier;
  'ear.trustworthiness-vector'?: TrustVector;
  'ear.appraisal-policy-id'?: string;
  'ear.veraison.annotated-evidence'?: Record<string, unknown>;
  'ear.veraison.policy-claims'?: Record<string, unknown>;
  'ear.veraison.key-attestation'?: { akpub: string };
}

export interface Ear {
  eat_profile: string;
  iat: number;
  exp: number;
  jti?: string;
  iss?: string;
  aud?: string | string[];
  'ear.verifier-id': VerifierId;
  'ear.raw-evidence'?: string;
  eat_nonce?: string;
  submods: Record<string, EarAppraisal>;
}

export interface BuildEarOptions {
  now: Date;
  verifierId: VerifierId;
  /** The challenge nonce; carried as `eat_nonce` (base64url). 8 to 55 bytes. */
  nonce?: Uint8Array;
  /** The TEE public key bound into the evidence (public JWK or SPKI DER). */
  teePublicKey?: JsonWebKey | Uint8Array;
  /** Which submodule the TEE key belongs to (default `cpu0`, else the first). */
  teeKeySubmod?: string;
  /** Lifetime in seconds; default 300. */
  ttlSeconds?: number;
  issuer?: string;
  audience?: string;
  /** Include the appraised claims as `ear.veraison.annotated-evidence` (default true). */
  annotate?: boolean;
  /** The raw evidence, as `ear.raw-evidence` (default: omitted). */
  rawEvidence?: Uint8Array;
  /** For `jti`; default WebCrypto. */
  random?: RandomSource;
}

/** Builds the EAR claims set for an appraisal (unsigned). */
export async function buildEar(appraisal: Appraisal, options: BuildEarOptions): Promise<Ear> {
  const now = options.now;
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new CustodyError('ERR_USAGE', 'buildEar needs a valid `now`');
  const ttl = options.ttlSeconds ?? DEFAULT_EAR_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > 86400) throw new CustodyError('ERR_USAGE', 'EAR lifetime must be 1 to 86400 seconds');
  const iat = Math.floor(now.getTime() / 1000);
  const submods: Record<string, EarAppraisal> = {};
  for (const [name, s] of Object.entries(appraisal.submods)) submods[name] = earAppraisal(s, appraisal.policyId, options.annotate ?? true);
  const names = Object.keys(submods);
  if (options.teePublicKey !== undefined) {
    const target = options.teeKeySubmod ?? (names.includes('cpu0') ? 'cpu0' : names[0]!);
    const sub = submods[target];
    if (!sub) throw new CustodyError('ERR_USAGE', `no submodule ${target} for the TEE key`);
    const spki = options.teePublicKey instanceof Uint8Array ? options.teePublicKey : await spkiFromJwk(options.teePublicKey);
    sub['ear.veraison.key-attestation'] = { akpub: toBase64Url(spki) };
  }
  const ear: Ear = {
    eat_profile: EAR_PROFILE,
    iat,
    exp: iat + ttl,
    jti: toBase64Url((options.random ?? secureRandom)(16)),
    'ear.verifier-id': { developer: options.verifierId.developer, build: options.verifierId.build },
    submods,
  };
  if (options.issuer !== undefined) ear.iss = options.issuer;
  if (options.audience !== undefined) ear.aud = options.audience;
  if (options.nonce !== undefined) ear.eat_nonce = encodeNonce(options.nonce);
  if (options.rawEvidence !== undefined) ear['ear.raw-evidence'] = toBase64Url(options.rawEvidence);
  return ear;
}

/** Signs EAR claims as a compact JWS (JWT) with the key's algorithm and `kid`. */
export async function signEar(ear: Ear, key: EarSigningKey): Promise<string> {
  return new SignJWT(ear as unknown as JWTPayload).setProtectedHeader({ alg: key.alg, kid: key.kid, typ: 'JWT' }).sign(key.privateKey);
}

/** Builds and signs in one step. */
export async function createEar(appraisal: Appraisal, key: EarSigningKey, options: BuildEarOptions): Promise<{ token: string; ear: Ear }> {
  const ear = await buildEar(appraisal, options);
  return { token: await signEar(ear, key), ear };
}

function earAppraisal(s: SubmodAppraisal, policyId: string, annotate: boolean): EarAppraisal {
  const out: EarAppraisal = {
    'ear.status': s.status,
    'ear.trustworthiness-vector': { ...s.trustVector },
    'ear.appraisal-policy-id': policyId,
  };
  if (annotate && s.claims) out['ear.veraison.annotated-evidence'] = annotatedEvidence(s.claims);
  const reasons = s.findings
    .filter((f) => !f.passed)
    .map((f) => {
      const r: Record<string, unknown> = { rule: f.rule, claim: f.claim, value: f.value, code: f.code ?? 'ERR_POLICY_DENIED', reason: f.reason ?? f.rule };
      if (f.device !== undefined) r.device = f.device;
      return r;
    });
  if (reasons.length > 0) out['ear.veraison.policy-claims'] = { reasons };
  return out;
}

/** The appraised claims as the EAR carries them: everything but the certificate chain. */
function annotatedEvidence(c: NormalizedClaims): Record<string, unknown> {
  const out: Record<string, unknown> = {
    platform: c.platform,
    simulated: c.simulated,
    debug: c.debug,
    measurements: { ...c.measurements },
    reportData: c.reportData,
    signer: { ...(c.signer.rootSha256 !== undefined ? { rootSha256: c.signer.rootSha256 } : {}), ...(c.signer.kind !== undefined ? { kind: c.signer.kind } : {}) },
    platformClaims: c.platformClaims,
  };
  if (c.tcb) out.tcb = c.tcb;
  if (c.nonce !== undefined) out.nonce = c.nonce;
  if (c.devices) {
    const devices: Record<string, unknown> = {};
    for (const [k, d] of Object.entries(c.devices)) devices[k] = annotatedEvidence(d);
    out.devices = devices;
  }
  return JSON.parse(JSON.stringify(out)) as Record<string, unknown>;
}

function encodeNonce(nonce: Uint8Array): string {
  // EAT (RFC 9711) JSON nonces are text of 10 to 74 characters: 8 to 55 bytes in base64url.
  if (nonce.length < 8 || nonce.length > 55) throw new CustodyError('ERR_USAGE', 'EAR nonces are 8 to 55 bytes', { detail: { length: nonce.length } });
  return toBase64Url(nonce);
}

// ---------------------------------------------------------------------------------------------
// Verification

const vectorSchema = z.partialRecord(z.enum(TRUST_CLAIMS), z.number().refine(isTrustClaimValue));
const appraisalSchema = z.looseObject({
  'ear.status': z.enum(TRUST_TIERS as [TrustTier, ...TrustTier[]]),
  'ear.trustworthiness-vector': vectorSchema.optional(),
  'ear.appraisal-policy-id': z.string().max(1024).optional(),
  'ear.veraison.annotated-evidence': z.record(z.string(), z.unknown()).optional(),
  'ear.veraison.policy-claims': z.record(z.string(), z.unknown()).optional(),
  'ear.veraison.key-attestation': z.looseObject({ akpub: z.string().max(4096) }).optional(),
});
const earSchema = z.looseObject({
  eat_profile: z.string(),
  iat: z.number().int(),
  exp: z.number().int(),
  jti: z.string().max(256).optional(),
  iss: z.string().optional(),
  aud: z.union([z.string(), z.array(z.string())]).optional(),
  'ear.verifier-id': z.looseObject({ developer: z.string(), build: z.string() }),
  'ear.raw-evidence': z.string().optional(),
  eat_nonce: z.string().optional(),
  submods: z.record(z.string().max(64), appraisalSchema).refine((r) => Object.keys(r).length >= 1 && Object.keys(r).length <= 16, 'one to sixteen submodules'),
});

export interface VerifyEarOptions {
  /** The verifier's published keys. */
  jwks: JSONWebKeySet;
  /** The verification time. */
  now: Date;
  /** Expected challenge nonce: `eat_nonce` must carry exactly it. */
  nonce?: Uint8Array;
  issuer?: string;
  audience?: string;
  /** Allowed clock skew in seconds (default 0). */
  clockToleranceSeconds?: number;
  /** Longest `exp - iat` accepted (default 3600). */
  maxTtlSeconds?: number;
}

export interface VerifiedEar {
  ear: Ear;
  kid: string | undefined;
  alg: string;
  /** Overall status over all submodules (`overallStatus`). */
  status: TrustTier;
}

// Key sets by their JSON text, so a JWKS edited in place (rotation) is never served stale.
const keySets = new Map<string, ReturnType<typeof createLocalJWKSet>>();
const MAX_KEY_SETS = 32;

/**
 * Verifies an EAR JWT against a JWKS at `now`: signature by a listed key, profile, `iat` not in
 * the future, `exp` not past, lifetime bounded, nonce (when expected), issuer and audience
 * (when given), and the claims' shape. Errors: ERR_EAR_* codes.
 */
export async function verifyEar(token: string, options: VerifyEarOptions): Promise<VerifiedEar> {
  const now = options.now;
  if (!(now instanceof Date) || Number.isNaN(now.getTime())) throw new CustodyError('ERR_USAGE', 'verifyEar needs a valid `now`');
  if (typeof token !== 'string' || token.length > MAX_EAR_BYTES) throw new CustodyError('ERR_EAR_MALFORMED', 'EAR token is not a string of acceptable size');
  let jwksText: string;
  try {
    jwksText = JSON.stringify(options.jwks);
  } catch (e) {
    throw new CustodyError('ERR_EAR_KEY', 'the JWKS is malformed', { cause: e });
  }
  let keys = keySets.get(jwksText);
  if (!keys) {
    try {
      keys = createLocalJWKSet(JSON.parse(jwksText) as JSONWebKeySet);
    } catch (e) {
      throw new CustodyError('ERR_EAR_KEY', 'the JWKS is malformed', { cause: e });
    }
    if (keySets.size >= MAX_KEY_SETS) keySets.delete(keySets.keys().next().value!);
    keySets.set(jwksText, keys);
  }
  const tolerance = options.clockToleranceSeconds ?? 0;
  let payload: JWTPayload;
  let header: { alg: string; kid?: string };
  try {
    const r = await jwtVerify(token, keys, {
      algorithms: [...EAR_ALGORITHMS],
      currentDate: now,
      clockTolerance: tolerance,
      requiredClaims: ['iat', 'exp'],
      ...(options.issuer !== undefined ? { issuer: options.issuer } : {}),
      ...(options.audience !== undefined ? { audience: options.audience } : {}),
    });
    payload = r.payload;
    header = r.protectedHeader;
  } catch (e) {
    throw mapJoseError(e);
  }
  const parsed = earSchema.safeParse(payload);
  if (!parsed.success) throw new CustodyError('ERR_EAR_MALFORMED', `EAR claims are malformed at ${parsed.error.issues[0]?.path.map(String).join('.') ?? ''}`);
  const ear = parsed.data as Ear;
  if (ear.eat_profile !== EAR_PROFILE) throw new CustodyError('ERR_EAR_CLAIMS', 'EAR has an unknown eat_profile', { detail: { profile: ear.eat_profile.slice(0, 128) } });
  const nowSeconds = Math.floor(now.getTime() / 1000);
  if (ear.iat > nowSeconds + tolerance) throw new CustodyError('ERR_EAR_NOT_YET_VALID', 'EAR was issued after the verification time');
  if (ear.exp - ear.iat > (options.maxTtlSeconds ?? DEFAULT_MAX_EAR_TTL_SECONDS)) throw new CustodyError('ERR_EAR_CLAIMS', 'EAR lifetime exceeds the accepted maximum');
  if (options.nonce !== undefined) {
    if (ear.eat_nonce === undefined) throw new CustodyError('ERR_EAR_NONCE', 'EAR carries no nonce');
    if (ear.eat_nonce !== toBase64Url(options.nonce)) throw new CustodyError('ERR_EAR_NONCE');
  }
  return {
    ear,
    kid: header.kid,
    alg: header.alg,
    status: overallStatus(Object.values(ear.submods).map((s) => s['ear.status'])),
  };
}

function mapJoseError(e: unknown): CustodyError {
  if (e instanceof joseErrors.JWTExpired) return new CustodyError('ERR_EAR_EXPIRED', undefined, { cause: e });
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) return new CustodyError('ERR_EAR_SIGNATURE', undefined, { cause: e });
  if (e instanceof joseErrors.JWKSNoMatchingKey || e instanceof joseErrors.JWKSMultipleMatchingKeys) return new CustodyError('ERR_EAR_KEY_UNKNOWN', undefined, { cause: e });
  if (e instanceof joseErrors.JOSEAlgNotAllowed) return new CustodyError('ERR_EAR_SIGNATURE', 'EAR uses an algorithm that is not accepted', { cause: e });
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    if (e.claim === 'nbf' || e.claim === 'iat') return new CustodyError('ERR_EAR_NOT_YET_VALID', undefined, { cause: e });
    return new CustodyError('ERR_EAR_CLAIMS', `EAR claim ${e.claim} failed validation`, { cause: e, detail: { claim: e.claim } });
  }
  return new CustodyError('ERR_EAR_MALFORMED', undefined, { cause: e });
}

/**
 * Reads an EAR whose exact bytes are authenticated another way, without a JWKS: the claims'
 * shape and profile are checked, the signature is NOT. The one use is an EAR whose SHA-256 is in
 * a verified transparency-log entry recording the broker's appraisal (the log vouches for the
 * bytes); never call it on bytes nothing else authenticates.
 */
export function parseAuthenticatedEar(token: string): Ear {
  const { ear } = decodeEarUnverified(token);
  const parsed = earSchema.safeParse(ear);
  if (!parsed.success) throw new CustodyError('ERR_EAR_MALFORMED', `EAR claims are malformed at ${parsed.error.issues[0]?.path.map(String).join('.') ?? ''}`);
  if (parsed.data.eat_profile !== EAR_PROFILE) throw new CustodyError('ERR_EAR_CLAIMS', 'EAR has an unknown eat_profile', { detail: { profile: parsed.data.eat_profile.slice(0, 128) } });
  return parsed.data;
}

/** Reads an EAR without verifying it (for display only; never for a decision). */
export function decodeEarUnverified(token: string): { header: Record<string, unknown>; ear: Record<string, unknown> } {
  try {
    if (token.length > MAX_EAR_BYTES) throw new Error('too large');
    return { header: decodeProtectedHeader(token), ear: decodeJwt(token) };
  } catch (e) {
    throw new CustodyError('ERR_EAR_MALFORMED', undefined, { cause: e });
  }
}

/** The TEE public key an EAR submodule carries, as a public JWK. */
export async function teeKeyFromEar(ear: Ear, submod?: string): Promise<JsonWebKey> {
  const name = submod ?? Object.keys(ear.submods).find((k) => ear.submods[k]?.['ear.veraison.key-attestation'] !== undefined);
  const ka = name === undefined ? undefined : ear.submods[name]?.['ear.veraison.key-attestation'];
  if (!ka) throw new CustodyError('ERR_EAR_CLAIMS', 'EAR carries no TEE key');
  let spki: Uint8Array;
  try {
    spki = fromBase64Url(ka.akpub);
  } catch (e) {
    throw new CustodyError('ERR_EAR_MALFORMED', 'EAR TEE key is not base64url', { cause: e });
  }
  try {
    return await jwkFromSpki(spki);
  } catch (e) {
    throw new CustodyError('ERR_EAR_MALFORMED', 'EAR TEE key is not a usable public key', { cause: e });
  }
}

/** The nonce an EAR carries, as bytes. */
export function earNonce(ear: Ear): Uint8Array | undefined {
  return ear.eat_nonce === undefined ? undefined : fromBase64Url(ear.eat_nonce);
}
