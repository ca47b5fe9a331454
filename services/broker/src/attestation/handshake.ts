import { createHash, randomUUID } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { canonicalize, CustodyError, fromBase64Url, fromHex, secureRandom, systemClock, timingSafeEqual, toBase64Url, toCustodyError, toHex, utf8, type Clock } from '@custody/core';
import { defaultRegistry, gpuAttestationKey, type NormalizedClaims, type Platform, type VerificationResult, type VerifyInput } from '@custody/attest';
import { appraisalReasons, appraise, buildEar, DEFAULT_EAR_TTL_SECONDS, verifyEar, type Appraisal, type Ear, type VerifiedEar } from '@custody/policy';
import { boundAuditEvent } from '../audit/bound-event.js';
import type { AuditEvent, AuditRecord, AuditSink, AuditVerdict } from '../audit/types.js';
import type { Principal } from '../auth/roles.js';
import { releaseBinding, type KeyService } from '../keys/key-service.js';
import { assertTenant, type KeyType } from '../keys/types.js';
import { assertContributoryX25519 } from '../keystore/recipient.js';
import type { RecipientCurve, RecipientKey, ReleaseContext } from '../keystore/types.js';
import type { SessionRecord, SessionRepository } from '../metadata/types.js';
import type { AppraisalPolicyResolver } from './tenant-policies.js';
import { MAX_EAR_LIFETIME_SECONDS } from './ear-key-set.js';
import type { EarKeyRefreshTrigger, EarSigner } from './ear-signer.js';
import { parseRuntimeData, runtimeDigest, teeKeyFromSpki, teeKeySpki, type RuntimeData } from './runtime-data.js';

/** Evidence formats a workload can attest with in the handshake (NVIDIA GPU evidence only rides along a CPU TEE). */
export const HANDSHAKE_PLATFORMS: readonly Platform[] = ['sev-snp', 'tdx', 'nitro', 'tpm', 'azure-vtpm', 'sim'];

export const DEFAULT_NONCE_TTL_SECONDS = 120;
export const DEFAULT_SESSION_TTL_SECONDS = 300;
export const EAR_ISSUER = 'urn:custody:broker';
const VERIFIER_ID = { developer: 'https://custody.dev', build: 'custody-broker 0.1.0' };
const PURGE_EVERY_MS = 60_000;
/** Verified EARs remembered (by token digest) so that reusing one in its session skips the signature check. */
const VERIFIED_EARS = 4096;
/**
 * ...and at most this many bytes of their tokens: an EAR covering GPUs carries their annotated
 * measurements (about 12 KiB each, some 100 KiB for eight), and 4096 of those would hold hundreds
 * of MiB. A parsed EAR takes about as much heap as its token.
 */
export const VERIFIED_EAR_BYTES = 32 * 1024 * 1024;

/** The verifier registry as the handshake uses it (defaultRegistry, or a test double). */
export interface EvidenceVerification {
  detect(evidence: Uint8Array): Platform;
  verify(input: VerifyInput & { platform?: string }): Promise<VerificationResult>;
}

export interface AttestationServiceOptions {
  keys: KeyService;
  sessions: SessionRepository;
  /** Curves the key store wraps to (KeyStore.capabilities.recipientCurves). */
  recipientCurves: readonly RecipientCurve[];
  /** The appraisal policy in force per tenant, asked at every attestation (AppraisalPolicies, or TenantPolicies with API-set overrides). */
  policies: AppraisalPolicyResolver;
  signer: EarSigner;
  /** The same sink the KeyService writes to. */
  audit: AuditSink;
  verifier?: EvidenceVerification;
  /** Trust anchors handed to the verifiers (replace their pinned vendor roots; tests, private PKI, pinned sim keys). */
  roots?: Uint8Array[];
  /**
   * Trust anchors for device (GPU) evidence, kept apart from `roots`: when absent, the device
   * verifiers use their pinned vendor roots (the NVIDIA Device Identity CA). Tests, private PKI.
   */
  deviceRoots?: Uint8Array[];
  /** Bytes of EAR tokens the verified-EAR cache may hold (default VERIFIED_EAR_BYTES; tests). */
  verifiedEarCacheBytes?: number;
  clock?: Clock;
  logger?: Logger;
  metrics?: Registry;
  /** How long a challenge nonce may wait for evidence. Default 120 s. */
  nonceTtlSeconds?: number;
  /** How long a session lives from its challenge; an attested session (and its EAR) until then at most. Default 300 s. */
  sessionTtlSeconds?: number;
  /** EAR lifetime, capped by the session's remaining life. Default 300 s. */
  earTtlSeconds?: number;
  /** Require a workload API key of the tenant on the challenge (default: the attestation is the credential). */
  requireWorkloadApiKey?: boolean;
}

export interface ChallengeResponse {
  session: string;
  /** 32 random bytes, base64url: the runtime data's `nonce`. */
  nonce: string;
  /** The nonce must be presented (POST /v1/attest) before this time. */
  expiresAt: string;
  /** The session, and any EAR issued in it, ends at this time. */
  sessionExpiresAt: string;
  /** TEE key curves this broker's key store wraps to, preferred first. */
  teeKeyCurves: RecipientCurve[];
  platforms: Platform[];
  /** Platforms whose device evidence may ride along the TEE's (`devices` of POST /v1/attest). */
  devicePlatforms: DevicePlatform[];
}

export interface AttestRequest {
  session: string;
  evidence: Uint8Array;
  /** The runtime data text exactly as bound (its digest is in the evidence). */
  runtimeData: string;
  platform?: string;
  /** Extra certificates (e.g. a VCEK) and collateral (e.g. TDX tcbInfo) for the verifier. */
  certs?: Uint8Array[];
  collateral?: Record<string, Uint8Array>;
  /**
   * Evidence of devices attached to the TEE (NVIDIA GPUs in confidential-computing mode), each
   * bound to the same runtime data: its nonce is SHA-256(runtime data) (`runtimeDigest('nvidia', …)`).
   * Appraised with the CPU evidence as one composite: EAR submodules cpu0, gpu0, gpu1, ...
   */
  devices?: DeviceEvidenceInput[];
}

/**
 * An attestation as the HTTP route hands it over: the session id, and the rest still to be
 * decoded (base64), which `decode` does only once the session is found. Its errors
 * (ERR_INPUT_MALFORMED) come before the nonce is spent.
 */
export interface EncodedAttestRequest {
  session: string;
  decode(): Omit<AttestRequest, 'session'>;
}

/**
 * Most collateral entries one attestation may carry. TDX takes at most 8 (TDX_COLLATERAL_KEYS);
 * four times that leaves room for other verifiers, and the bound keeps a body of a few hundred
 * thousand one-byte entries from costing seconds.
 */
export const MAX_COLLATERAL_ENTRIES = 32;

/** Platforms a device's evidence may come from (riding along a CPU TEE's evidence). */
export const DEVICE_PLATFORMS = ['nvidia'] as const;
export type DevicePlatform = (typeof DEVICE_PLATFORMS)[number];
/** Most devices one attestation may carry (an HGX board holds 8 GPUs). */
export const MAX_DEVICES = 8;

export interface DeviceEvidenceInput {
  platform: DevicePlatform;
  evidence: Uint8Array;
  /** The device's certificate chain when its evidence does not carry it (PEM or DER). */
  certs?: Uint8Array[];
}

export interface AttestResponse {
  session: string;
  /** The signed EAR (JWT). Present it as `Authorization: Bearer` to release keys in this session. */
  ear: string;
  status: 'affirming' | 'warning';
  platform: Platform;
  policyId: string;
  /** When the EAR and the session expire. */
  expiresAt: string;
  /** The appraisal's audit event: its ledger index (or its index in the interim table when the broker has no ledger). */
  auditIndex?: number;
  /** Instead of `auditIndex` while the ledger cannot take entries: the event waits in the interim table, and is forwarded later. */
  auditInterimIndex?: number;
}

export interface ReleaseRequest {
  name: string;
  session: string;
  /** The EAR token exactly as the broker issued it. */
  ear: string;
  /** Defaults to the session's tenant; naming another is refused (ERR_AUTH_TENANT). */
  tenant?: string;
}

export interface ReleaseResponse {
  session: string;
  key: { id: string; name: string; type: KeyType; version: number };
  /** `custody-hpke-key-wrap-v1` or `custody-pkcs11-ecdh-p256-a256kwp-v1`. */
  scheme: string;
  /** The wrapped key, base64url. */
  wrappedKey: string;
  /** The release context the wrapping authenticates (its RFC 8785 form is the HPKE aad). */
  context: ReleaseContext;
  /** As in AttestResponse. */
  auditIndex?: number;
  auditInterimIndex?: number;
}

/**
 * The attestation-gated key release handshake (docs/key-release-protocol.md): challenge,
 * attestation (nonce consumed atomically, runtime data checked, evidence verified with the
 * digest it must carry, appraised with the tenant's policy, EAR signed and bound to the
 * session), and release (EAR verified against the broker's own key for this session, then
 * KeyService.release re-checks state, binding and the key's CEL policy, and wraps to the TEE
 * key). Every verdict is audited; anything that fails or is unavailable denies.
 */
/** Refusals per session that are appended to the audit log; later ones are logged only. */
const MAX_AUDITED_DENIALS_PER_SESSION = 3;
/** Sessions whose refusals are counted at once (the oldest is forgotten first). */
const MAX_TRACKED_SESSIONS = 65_536;

export class AttestationService {
  private readonly keys: KeyService;
  private readonly sessions: SessionRepository;
  private readonly curves: readonly RecipientCurve[];
  private readonly policies: AppraisalPolicyResolver;
  private readonly signer: EarSigner;
  private readonly auditSink: AuditSink;
  private readonly verifier: EvidenceVerification;
  private readonly roots: Uint8Array[] | undefined;
  private readonly deviceRoots: Uint8Array[] | undefined;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly nonceTtlMs: number;
  private readonly sessionTtlMs: number;
  private readonly earTtlSeconds: number;
  private readonly requireApiKey: boolean;
  private readonly counters: { attest: Counter<'platform' | 'outcome'>; release: Counter<'outcome'> } | undefined;
  private lastPurge = 0;
  private readonly verifiedEars = new Map<string, VerifiedEar & { readonly tokenBytes: number }>();
  private verifiedEarBytes = 0;
  private readonly verifiedEarBudget: number;
  /** Refusals audited per session (bounded): a session's repeated refusals are logged, not appended again. */
  private readonly deniedBySession = new Map<string, number>();

  constructor(options: AttestationServiceOptions) {
    this.keys = options.keys;
    this.sessions = options.sessions;
    // X25519 first: the protocol's default TEE key; P-256 where the store (PKCS#11) needs it.
    this.curves = [...options.recipientCurves].sort((a, b) => (a === 'X25519' ? -1 : b === 'X25519' ? 1 : 0));
    this.policies = options.policies;
    this.signer = options.signer;
    this.auditSink = options.audit;
    this.verifier = options.verifier ?? defaultRegistry;
    this.roots = options.roots;
    this.deviceRoots = options.deviceRoots;
    this.verifiedEarBudget = options.verifiedEarCacheBytes ?? VERIFIED_EAR_BYTES;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? pino({ level: 'silent' });
    this.nonceTtlMs = seconds(options.nonceTtlSeconds ?? DEFAULT_NONCE_TTL_SECONDS, 'nonceTtlSeconds') * 1000;
    this.sessionTtlMs = seconds(options.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS, 'sessionTtlSeconds') * 1000;
    this.earTtlSeconds = seconds(options.earTtlSeconds ?? DEFAULT_EAR_TTL_SECONDS, 'earTtlSeconds');
    this.requireApiKey = options.requireWorkloadApiKey ?? false;
    if (this.nonceTtlMs > this.sessionTtlMs) throw new CustodyError('ERR_USAGE', 'the nonce cannot outlive its session');
    // A retired EAR key stays published for the signer's maximum EAR lifetime: no EAR may live longer.
    const longest = Math.min(this.earTtlSeconds, this.sessionTtlMs / 1000);
    if (longest > this.signer.maxEarLifetimeSeconds) {
      throw new CustodyError('ERR_USAGE', `EARs may live ${longest} s here but the EAR signer signs at most ${this.signer.maxEarLifetimeSeconds} s (EarSignerOptions.maxEarLifetimeSeconds; see earLifetimeBound)`);
    }
    if (options.metrics) {
      this.counters = {
        attest: new Counter({ name: 'custody_broker_attestations_total', help: 'Attestations by evidence platform and outcome (allow or the denial code)', labelNames: ['platform', 'outcome'], registers: [options.metrics] }),
        release: new Counter({ name: 'custody_broker_releases_total', help: 'Key releases by outcome (allow or the denial code)', labelNames: ['outcome'], registers: [options.metrics] }),
      };
    }
  }

  /** The broker's EAR verification keys as last read (empty while the key file is unusable). */
  get jwks(): EarSigner['jwks'] {
    return this.signer.jwks;
  }

  /**
   * The JWKS served at /.well-known/jwks.json: the key file is looked at first (at most once a
   * second; a stat when unchanged), so a rotation (a key dropped with `--no-overlap` above all)
   * reaches external verifiers at once, whatever the reload interval. `usable` is false while the
   * key file has changed and cannot be used: the set is then empty and must not be cached.
   */
  async publishedJwks(): Promise<{ jwks: EarSigner['jwks']; usable: boolean }> {
    await this.refreshEarKeys('jwks');
    return { jwks: this.signer.jwks, usable: this.signer.unusable() === undefined };
  }

  /** Step 1: a session with a single-use nonce. `caller` is a workload API key when one was presented. */
  async challenge(tenant: string, caller?: Principal): Promise<ChallengeResponse> {
    assertTenant(tenant);
    if (caller) checkCaller(caller, tenant);
    else if (this.requireApiKey) throw new CustodyError('ERR_AUTH_REQUIRED', 'this broker requires a workload API key for challenges');
    const now = this.now();
    this.purgeExpired(now);
    const nonce = secureRandom(32);
    const session: SessionRecord = {
      id: `ses_${randomUUID()}`,
      tenant,
      nonce: toHex(nonce),
      state: 'challenged',
      createdAt: now,
      expiresAt: now + this.sessionTtlMs,
      nonceConsumedAt: null,
      binding: null,
    };
    await this.sessions.createSession(session);
    return {
      session: session.id,
      nonce: toBase64Url(nonce),
      expiresAt: iso(now + this.nonceTtlMs),
      sessionExpiresAt: iso(session.expiresAt),
      teeKeyCurves: [...this.curves],
      platforms: [...HANDSHAKE_PLATFORMS],
      devicePlatforms: [...DEVICE_PLATFORMS],
    };
  }

  /**
   * Steps 2-3: verifies and appraises evidence bound to the session's nonce and a TEE key; returns
   * a signed EAR. The session is looked up before anything else, and an EncodedAttestRequest is
   * decoded only then.
   */
  async attest(input: AttestRequest | EncodedAttestRequest, caller?: Principal): Promise<AttestResponse> {
    const now = this.now();
    const session = await this.requireSession(input.session);
    const request: AttestRequest = 'decode' in input ? { ...input.decode(), session: session.id } : input;
    if (request.collateral) checkCollateral(request.collateral);
    const actor: Principal = { tenant: session.tenant, role: 'workload', subject: `session:${session.id}` };
    const facts: Record<string, string | number | boolean> = { session: session.id };
    let platform: Platform | undefined;
    try {
      if (caller) checkCaller(caller, session.tenant);
      // Single use: from here on this nonce is spent, whatever the outcome.
      await this.sessions.consumeNonce(session.nonce, now);
      if (now - session.createdAt > this.nonceTtlMs) throw new CustodyError('ERR_SESSION_EXPIRED', 'the challenge nonce expired before evidence was presented');
      const runtime = parseRuntimeData(request.runtimeData);
      const nonce = fromHex(session.nonce);
      if (!timingSafeEqual(utf8(runtime.nonce), utf8(toBase64Url(nonce)))) throw new CustodyError('ERR_EVIDENCE_NONCE', "the runtime data does not carry this session's nonce");
      if (!this.curves.includes(runtime.teeKey.curve)) {
        throw new CustodyError('ERR_KEY_RECIPIENT', `this broker wraps keys only to ${this.curves.join(', ')} TEE keys`, { detail: { curve: runtime.teeKey.curve } });
      }
      // A small-order X25519 key would make every wrap to it readable by anyone: refused before the session is bound to it.
      if (runtime.teeKey.curve === 'X25519') assertContributoryX25519(runtime.teeKey.publicKey);
      platform = this.platformOf(request);
      facts.platform = platform;
      facts.evidenceDigest = `sha256:${sha256Hex(request.evidence)}`;
      const devices = request.devices !== undefined ? checkDevices(request.devices) : undefined;
      if (devices) {
        facts.devices = devices.length;
        facts.devicesEvidenceDigest = devicesEvidenceDigest(devices);
      }
      const expected = await runtimeDigest(platform, runtime.text);
      const result = await this.verify(request, platform, platform === 'nitro' ? nonce : expected, now);
      checkBinding(platform, result.claims!, expected, runtime, nonce);
      const policy = await this.policies.resolve(session.tenant);
      facts.policy = `${policy.document.id}:${policy.document.version}`;
      facts.policyDigest = `sha256:${policy.digest}`;
      facts.measurement = primaryMeasurement(result.claims!);
      // The TEE alone first (the EAR names it cpu0): each submodule is appraised on its own and
      // the composite is the worst of them, so a TEE the policy refuses is refused with devices
      // too, and none of the devices' evidence is verified for it.
      let appraisal = appraise(policy, result, { now: new Date(now) });
      if (!acceptable(appraisal)) {
        facts.status = appraisal.status;
        throw appraisalDenial(appraisal);
      }
      if (devices) {
        const deviceResults = await this.verifyDevices(devices, runtime.text, now);
        appraisal = appraise(policy, { cpu0: result, ...deviceResults }, { now: new Date(now) });
      }
      facts.status = appraisal.status;
      if (!acceptable(appraisal)) throw appraisalDenial(appraisal);
      const ttl = Math.min(this.earTtlSeconds, Math.floor((session.expiresAt - now) / 1000));
      if (ttl < 1) throw new CustodyError('ERR_SESSION_EXPIRED');
      // Sign with the key file's current key: a rotation is seen within a second here.
      await this.refreshEarKeys('request');
      const ear = await buildEar(appraisal, {
        now: new Date(now),
        verifierId: VERIFIER_ID,
        issuer: EAR_ISSUER,
        nonce,
        teePublicKey: teeKeySpki(runtime.teeKey),
        ttlSeconds: ttl,
      });
      const { token, kid } = this.signer.signWithKid(ear);
      const earDigest = sha256Hex(token);
      // This broker just signed these bytes with the key its JWKS publishes (EarSigner checks at
      // start and at every reload that its tokens verify): remember them as verified for the
      // session's releases, under the kid that signed them.
      this.remember(earDigest, { ear, kid, alg: 'ES256', status: appraisal.status }, token.length);
      facts.earDigest = earDigest;
      facts.recipientDigest = `sha256:${sha256Hex(runtime.teeKey.publicKey)}`;
      await this.sessions.bindSession(session.id, releaseBinding(earDigest, runtime.teeKey), ear.exp * 1000, now);
      let recorded: AuditRecord;
      try {
        recorded = await this.appendAudit(actor, 'attest.appraise', session.tenant, 'allow', undefined, facts, now);
      } catch (e) {
        // No record, no EAR: the session is closed so the unsent EAR could not be used either.
        await this.sessions.closeSession(session.id, now).catch(() => undefined);
        throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', undefined, { cause: e, detail: { applied: false } });
      }
      this.counters?.attest.inc({ platform, outcome: 'allow' });
      const where = auditWhere(recorded);
      this.log.info({ op: 'attest', tenant: session.tenant, session: session.id, platform, ...(devices ? { devices: devices.length } : {}), status: appraisal.status, policy: facts.policy, ...where }, 'attestation affirmed');
      return { session: session.id, ear: token, status: appraisal.status, platform, policyId: policy.policyId, expiresAt: iso(ear.exp * 1000), ...where };
    } catch (e) {
      const err = toCustodyError(e);
      // In a composite, the refusal names the device (submodule) it is about.
      if (facts.devices !== undefined && typeof err.detail?.submod === 'string') facts.submod = err.detail.submod;
      if (err.code !== 'ERR_STORE_AUDIT_UNAVAILABLE' && this.auditsDenial(session.id)) await this.appendAudit(actor, 'attest.appraise', session.tenant, err.code === 'ERR_INTERNAL' ? 'error' : 'deny', err.code, facts, now).catch(() => undefined);
      this.counters?.attest.inc({ platform: platform ?? 'unknown', outcome: err.code });
      this.log.warn({ op: 'attest', tenant: session.tenant, session: session.id, platform, ...(facts.submod !== undefined ? { submod: facts.submod } : {}), code: err.code }, 'attestation denied');
      throw err;
    }
  }

  /** Step 4: the named key, wrapped to the TEE key of the session's EAR. */
  async release(request: ReleaseRequest): Promise<ReleaseResponse> {
    const now = this.now();
    const session = await this.requireSession(request.session);
    const principal: Principal = { tenant: session.tenant, role: 'workload', subject: `session:${session.id}` };
    // A session belongs to one tenant: its releases, and the refusals of their evidence, are that
    // tenant's (a caller cannot file refusals in another tenant's trail).
    const tenant = session.tenant;
    const earDigest = sha256Hex(request.ear);
    let verified: VerifiedEar;
    let recipient: RecipientKey;
    // A rotation (a dropped, compromised key above all) takes effect here within a second,
    // whatever the reload interval.
    await this.refreshEarKeys('request');
    try {
      // Fail closed: a key file that changed and cannot be used no longer vouches for the keys
      // read before (a --no-overlap rotation may have dropped them as compromised).
      const refused = this.signer.unusable();
      if (refused) throw refused;
      verified = await this.verifyEarCached(request.ear, earDigest, now);
      if (verified.ear.eat_nonce === undefined || !timingSafeEqual(utf8(verified.ear.eat_nonce), utf8(toBase64Url(fromHex(session.nonce))))) {
        throw new CustodyError('ERR_SESSION_MISMATCH', 'the attestation result was issued for another session');
      }
      // The broker never issues such an EAR; refusing it here keeps a permissive key policy from ever seeing one.
      if (verified.status !== 'affirming' && verified.status !== 'warning') throw new CustodyError('ERR_POLICY_DENIED', 'the attestation result is not affirming', { detail: { rule: 'ear.status', appraisal: verified.status } });
      recipient = teeKeyOfEar(verified.ear);
    } catch (e) {
      const err = toCustodyError(e);
      if (this.auditsDenial(session.id)) await this.appendAudit(principal, 'key.release', tenant, 'deny', err.code, { session: session.id, name: request.name.slice(0, 128), earDigest }, now).catch(() => undefined);
      this.counters?.release.inc({ outcome: err.code });
      this.log.warn({ op: 'key.release', tenant, session: session.id, code: err.code }, 'key release denied');
      throw err;
    }
    // An attested workload naming another tenant: an authorisation refusal, recorded (within the
    // session's bound) in that tenant's trail with the session's tenant as the actor.
    if (request.tenant !== undefined && request.tenant !== session.tenant) {
      if (this.auditsDenial(session.id)) await this.appendAudit(principal, 'auth.denied', request.tenant.slice(0, 128), 'deny', 'ERR_AUTH_TENANT', { attempted: 'key.release' }, now).catch(() => undefined);
      this.counters?.release.inc({ outcome: 'ERR_AUTH_TENANT' });
      this.log.warn({ op: 'key.release', tenant: session.tenant, session: session.id, code: 'ERR_AUTH_TENANT' }, 'key release for another tenant denied');
      throw new CustodyError('ERR_AUTH_TENANT', 'a session releases keys of its own tenant only');
    }
    try {
      const measurement = earMeasurement(verified.ear);
      const released = await this.keys.release({
        principal,
        tenant,
        name: request.name,
        attestation: { sessionId: session.id, ear: verified.ear as unknown as Record<string, unknown>, earDigest, ...(measurement ? { measurement } : {}) },
        recipient,
        // The key's refusals (no such key, a bad name, the policy's no) count against the session's bound too.
        auditsDenial: () => this.auditsDenial(session.id),
      });
      this.counters?.release.inc({ outcome: 'allow' });
      return {
        session: session.id,
        key: released.key,
        scheme: released.wrapped.scheme,
        wrappedKey: toBase64Url(released.wrapped.payload),
        context: released.context,
        ...auditWhere({ index: released.auditIndex, ...(released.auditInterim ? { interim: true } : {}) }),
      };
    } catch (e) {
      this.counters?.release.inc({ outcome: toCustodyError(e).code });
      throw e;
    }
  }

  /**
   * Whether a refusal on this session is appended to the audit log: the first
   * MAX_AUDITED_DENIALS_PER_SESSION are; later ones are only logged and counted. A session costs
   * a rate-limited challenge, and without this bound each one would buy unlimited permanent
   * ledger entries (junk EARs, a spent nonce presented again).
   */
  private auditsDenial(sessionId: string): boolean {
    const n = (this.deniedBySession.get(sessionId) ?? 0) + 1;
    if (!this.deniedBySession.has(sessionId) && this.deniedBySession.size >= MAX_TRACKED_SESSIONS) this.deniedBySession.delete(this.deniedBySession.keys().next().value!);
    this.deniedBySession.set(sessionId, n);
    if (n <= MAX_AUDITED_DENIALS_PER_SESSION) return true;
    this.log.warn({ op: 'audit', session: sessionId, refusals: n }, 'repeated refusal on one session: logged here, not appended to the audit log again');
    return false;
  }

  /**
   * verifyEar against the broker's JWKS, remembered by the token's SHA-256: a token with the
   * same digest is the same bytes, whose signature, profile and shape verify the same way
   * again, so only the time checks are repeated (a session's EAR is presented once per key),
   * as long as the JWKS still lists the key that signed it. Once a rotation has dropped that
   * key the remembered result is forgotten and the token verified afresh, which fails as any
   * token of an unknown key does (ERR_EAR_KEY_UNKNOWN).
   */
  private async verifyEarCached(token: string, digest: string, now: number): Promise<VerifiedEar> {
    const hit = this.verifiedEars.get(digest);
    if (hit) {
      if (this.signer.publishes(hit.kid, now)) {
        const nowSeconds = Math.floor(now / 1000);
        if (hit.ear.exp <= nowSeconds) throw new CustodyError('ERR_EAR_EXPIRED');
        if (hit.ear.iat > nowSeconds) throw new CustodyError('ERR_EAR_NOT_YET_VALID');
        return hit;
      }
      this.forget(digest);
    }
    // Any broker sharing the key file may have signed it, with an EAR lifetime of up to a day:
    // the bound is that of the key file (which publishes retired keys as long), not this replica's.
    const options = { now: new Date(now), issuer: EAR_ISSUER, maxTtlSeconds: MAX_EAR_LIFETIME_SECONDS };
    let verified: VerifiedEar;
    try {
      verified = await verifyEar(token, { ...options, jwks: this.signer.jwksAt(now) });
    } catch (e) {
      // Signed by a key this replica does not know: another replica may already sign with a key
      // rotated in since this one last read the key file. Look again (a stat when unchanged; at
      // most once a second, whatever kids callers make up) and verify once more if it changed;
      // an unusable file keeps the keys in use.
      if (!(e instanceof CustodyError && e.code === 'ERR_EAR_KEY_UNKNOWN')) throw e;
      if (!(await this.refreshEarKeys('unknown-kid'))) throw e;
      verified = await verifyEar(token, { ...options, jwks: this.signer.jwksAt(now) });
    }
    this.remember(digest, verified, token.length);
    return verified;
  }

  /** EarSigner.refresh, logging each bad version of the key file once (its code and a fixed reason; never its contents). */
  private async refreshEarKeys(trigger: EarKeyRefreshTrigger): Promise<boolean> {
    const r = await this.signer.refresh(trigger);
    if (r.error) this.log.error({ op: 'ear-key.reload', trigger, code: r.error.code, reason: r.error.message }, 'the EAR signing key file changed and cannot be used: no EAR is signed, verified or released on until a usable file is in place');
    return r.changed;
  }

  /** Oldest first out, within VERIFIED_EARS entries and VERIFIED_EAR_BYTES of tokens. */
  private remember(digest: string, verified: VerifiedEar, tokenBytes: number): void {
    this.forget(digest);
    while (this.verifiedEars.size > 0 && (this.verifiedEars.size >= VERIFIED_EARS || this.verifiedEarBytes + tokenBytes > this.verifiedEarBudget)) this.forget(this.verifiedEars.keys().next().value!);
    this.verifiedEars.set(digest, { ...verified, tokenBytes });
    this.verifiedEarBytes += tokenBytes;
  }

  private forget(digest: string): void {
    const e = this.verifiedEars.get(digest);
    if (!e) return;
    this.verifiedEars.delete(digest);
    this.verifiedEarBytes -= e.tokenBytes;
  }

  /** The remembered verified EARs (tests): how many, and how many bytes of tokens. */
  get verifiedEarCache(): { entries: number; bytes: number } {
    return { entries: this.verifiedEars.size, bytes: this.verifiedEarBytes };
  }

  private async requireSession(id: unknown): Promise<SessionRecord> {
    if (typeof id !== 'string' || !/^ses_[0-9a-f-]{36}$/.test(id)) throw new CustodyError('ERR_SESSION_NOT_FOUND');
    const session = await this.sessions.getSession(id);
    if (!session) throw new CustodyError('ERR_SESSION_NOT_FOUND');
    return session;
  }

  private platformOf(request: AttestRequest): Platform {
    let platform: string;
    if (request.platform !== undefined) platform = request.platform;
    else {
      try {
        platform = this.verifier.detect(request.evidence);
      } catch (e) {
        throw toCustodyError(e, 'ERR_FORMAT_UNKNOWN');
      }
    }
    if (!(HANDSHAKE_PLATFORMS as readonly string[]).includes(platform)) {
      throw new CustodyError('ERR_INPUT_UNSUPPORTED', `the handshake accepts ${HANDSHAKE_PLATFORMS.join(', ')} evidence`, { detail: { platform: platform.slice(0, 32) } });
    }
    return platform as Platform;
  }

  /** Verification of the TEE's evidence at the broker's clock. */
  private verify(request: AttestRequest, platform: Platform, nonce: Uint8Array, now: number): Promise<VerificationResult> {
    return this.runVerifier({
      evidence: request.evidence,
      platform,
      now: new Date(now),
      nonce,
      ...(request.certs ? { certs: request.certs } : {}),
      ...(request.collateral ? { collateral: request.collateral } : {}),
      ...(this.roots ? { roots: this.roots } : {}),
    });
  }

  /**
   * Verifies the devices' evidence one at a time, in request order (gpu0, gpu1, ...), with the
   * digest of the runtime data as its nonce (an NVIDIA GPU's SPDM request nonce) and the device
   * trust anchors (never the TEE's `roots`), and checks that binding again on its claims. A
   * device whose identity (its attestation key) is that of an earlier one is the same device
   * counted twice: ERR_EVIDENCE_DEVICE_REPEATED. The first device that fails denies the
   * attestation, naming its submodule, and the devices after it are not looked at.
   */
  private async verifyDevices(devices: readonly DeviceEvidenceInput[], runtimeText: string, now: number): Promise<Record<string, VerificationResult>> {
    const out: Record<string, VerificationResult> = {};
    /** Device identity -> the submodule that presented it first. */
    const seen = new Map<string, string>();
    for (const [i, device] of devices.entries()) {
      const submod = deviceSubmod(device.platform, i);
      try {
        const digest = await runtimeDigest(device.platform, runtimeText);
        const result = await this.runVerifier({
          evidence: device.evidence,
          platform: device.platform,
          now: new Date(now),
          nonce: digest,
          ...(device.certs ? { certs: device.certs } : {}),
          ...(this.deviceRoots ? { roots: this.deviceRoots } : {}),
        });
        checkDeviceBinding(device.platform, result, digest);
        const identity = deviceIdentity(device.platform, result);
        const first = seen.get(identity);
        if (first !== undefined) throw new CustodyError('ERR_EVIDENCE_DEVICE_REPEATED', `the same device as ${first} (one attestation key)`, { detail: { sameAs: first } });
        seen.set(identity, submod);
        out[submod] = result;
      } catch (e) {
        const err = toCustodyError(e);
        throw new CustodyError(err.code, `${submod}: ${err.message}`, { cause: err, detail: { ...err.detail, submod } });
      }
    }
    return out;
  }

  /** Verification at the broker's clock; a verifier that throws instead of answering is unavailable (deny). */
  private async runVerifier(input: VerifyInput & { platform: string }): Promise<VerificationResult> {
    let result: VerificationResult;
    try {
      result = await this.verifier.verify(input);
    } catch (e) {
      if (e instanceof CustodyError && e.code !== 'ERR_INTERNAL') throw e;
      throw new CustodyError('ERR_VERIFIER_UNAVAILABLE', undefined, { cause: e });
    }
    if (!result.ok || !result.claims) {
      const first = result.errors[0];
      throw new CustodyError(first?.code ?? 'ERR_EVIDENCE_SIGNATURE', first ? `evidence did not verify: ${first.message}` : 'evidence did not verify', { detail: { step: first?.step ?? 'unknown' } });
    }
    return result;
  }

  private async appendAudit(actor: Principal, action: AuditEvent['action'], tenant: string, verdict: AuditVerdict, reason: string | undefined, detail: Record<string, string | number | boolean>, now: number): Promise<AuditRecord> {
    const event: AuditEvent = {
      v: 1,
      action,
      time: iso(now),
      actor: { tenant: actor.tenant, subject: actor.subject, role: actor.role },
      tenant,
      verdict,
      ...(reason ? { reason } : {}),
      detail: { ...detail },
    };
    return this.auditSink.append(boundAuditEvent(event));
  }

  private purgeExpired(now: number): void {
    if (now - this.lastPurge < PURGE_EVERY_MS) return;
    this.lastPurge = now;
    void this.sessions.purgeExpiredSessions(now).catch((e: unknown) => this.log.warn({ op: 'session.purge', code: toCustodyError(e).code }, 'expired sessions could not be purged'));
  }

  private now(): number {
    return this.clock().getTime();
  }
}

/** A workload API key presented with the handshake must be a workload key of the session's tenant. */
function checkCaller(caller: Principal, tenant: string): void {
  if (caller.tenant !== tenant) throw new CustodyError('ERR_AUTH_TENANT', undefined, { detail: { permission: 'key.release' } });
  if (caller.role !== 'workload') throw new CustodyError('ERR_AUTH_ROLE', 'the handshake takes workload API keys only', { detail: { role: caller.role } });
}

/**
 * The verifier checked the nonce it was given; this checks the binding again on the claims, per
 * platform, so no verifier nuance (a sim `nonce` member, a shorter nonce) can stand in for it.
 */
function checkBinding(platform: Platform, claims: NormalizedClaims, digest: Uint8Array, runtime: RuntimeData, nonce: Uint8Array): void {
  const hex = toHex(digest);
  const reportData = claims.reportData.toLowerCase();
  if (platform === 'nitro') {
    if (reportData !== hex) throw new CustodyError('ERR_EVIDENCE_BINDING', 'the Nitro user_data is not SHA-512 of the runtime data');
    if (claims.nonce?.toLowerCase() !== toHex(nonce)) throw new CustodyError('ERR_EVIDENCE_NONCE', 'the Nitro nonce is not the challenge nonce');
    if (runtime.teeKey.curve !== 'X25519' || claims.publicKey?.toLowerCase() !== toHex(runtime.teeKey.publicKey)) {
      throw new CustodyError('ERR_EVIDENCE_BINDING', 'the Nitro public_key is not the runtime data X25519 key');
    }
    return;
  }
  const padded = hex.padEnd(128, '0');
  if (reportData !== hex && reportData !== padded) throw new CustodyError('ERR_EVIDENCE_BINDING', `the evidence report data is not the ${hex.length === 64 ? 'SHA-256' : 'SHA-512'} digest of the runtime data`);
}

/**
 * The devices of a request, checked before any of them is verified: 1 to MAX_DEVICES, each of a
 * device platform (the route's schema says the same; this holds for callers in process too).
 */
function checkDevices(devices: readonly DeviceEvidenceInput[]): readonly DeviceEvidenceInput[] {
  if (devices.length === 0) throw new CustodyError('ERR_INPUT_MALFORMED', 'devices, when given, lists at least one device');
  if (devices.length > MAX_DEVICES) throw new CustodyError('ERR_INPUT_TOO_LARGE', `at most ${MAX_DEVICES} devices per attestation`, { detail: { devices: devices.length } });
  for (const d of devices) {
    const platform: unknown = (d as { platform?: unknown } | null)?.platform;
    if (typeof platform !== 'string' || !(DEVICE_PLATFORMS as readonly string[]).includes(platform)) {
      throw new CustodyError('ERR_INPUT_UNSUPPORTED', `device evidence may come from ${DEVICE_PLATFORMS.join(', ')} only`, { detail: { platform: String(platform).slice(0, 32) } });
    }
    if (!(d.evidence instanceof Uint8Array) || d.evidence.length === 0) throw new CustodyError('ERR_INPUT_MALFORMED', 'device evidence is empty');
  }
  return devices;
}

/** At most MAX_COLLATERAL_ENTRIES entries (the route's schema says the same; this holds for callers in process too). */
function checkCollateral(collateral: Record<string, Uint8Array>): void {
  const n = Object.keys(collateral).length;
  if (n > MAX_COLLATERAL_ENTRIES) throw new CustodyError('ERR_INPUT_TOO_LARGE', `at most ${MAX_COLLATERAL_ENTRIES} collateral entries per attestation`, { detail: { collateral: n, max: MAX_COLLATERAL_ENTRIES } });
}

/** The EAR submodule of the i-th device: every device platform (NVIDIA) is a GPU. */
function deviceSubmod(_platform: DevicePlatform, index: number): string {
  return `gpu${index}`;
}

/**
 * The audit fact pinning every device's evidence in one value (an audit record holds at most 16
 * facts, too few for one digest per device of eight): SHA-256 over the SHA-256 digests of the
 * devices' evidence bytes, concatenated in request (gpu0, gpu1, ...) order.
 */
function devicesEvidenceDigest(devices: readonly DeviceEvidenceInput[]): string {
  const h = createHash('sha256');
  for (const d of devices) h.update(createHash('sha256').update(d.evidence).digest());
  return `sha256:${h.digest('hex')}`;
}

/**
 * The device verifier checked the nonce it was given; this checks the binding again on the
 * claims: a device's request nonce (claims.nonce and claims.reportData) is the digest.
 */
function checkDeviceBinding(platform: DevicePlatform, result: VerificationResult, digest: Uint8Array): void {
  const claims = result.claims!;
  const hex = toHex(digest);
  if (result.platform !== platform || claims.platform !== platform) throw new CustodyError('ERR_EVIDENCE_BINDING', `the device evidence is not ${platform} evidence`);
  if (claims.reportData.toLowerCase() !== hex || claims.nonce?.toLowerCase() !== hex) {
    throw new CustodyError('ERR_EVIDENCE_BINDING', 'the device request nonce is not the SHA-256 digest of the runtime data');
  }
}

/**
 * A device's identity: for an NVIDIA GPU the SHA-256 of its attestation key (the verifier's
 * `platformClaims.attestationKeySha256`); two reports with one key are one GPU, whatever their
 * bytes. Claims without it cannot be told apart from another device's: refused.
 */
function deviceIdentity(platform: DevicePlatform, result: VerificationResult): string {
  const key = gpuAttestationKey(result.claims!.platformClaims);
  if (key === undefined) throw new CustodyError('ERR_EVIDENCE_BINDING', `the ${platform} device claims carry no attestation key identity`);
  return `${platform}:${key}`;
}

/** Whether an appraisal lets an EAR be issued: affirming or warning. */
function acceptable(appraisal: Appraisal): appraisal is Appraisal & { status: 'affirming' | 'warning' } {
  return appraisal.status === 'affirming' || appraisal.status === 'warning';
}

/** The denial for an appraisal that is neither affirming nor warning: its first contraindicating finding. */
function appraisalDenial(appraisal: Appraisal): CustodyError {
  const reasons = appraisalReasons(appraisal);
  // The most fundamental reason first: no hardware at all, then a debuggable TEE, then the rest in rule order.
  const first =
    reasons.find((r) => r.tier === 'contraindicated' && r.code === 'ERR_EVIDENCE_SIMULATED') ??
    reasons.find((r) => r.tier === 'contraindicated' && r.code === 'ERR_EVIDENCE_DEBUG') ??
    reasons.find((r) => r.tier === 'contraindicated') ??
    reasons[0];
  if (!first) return new CustodyError('ERR_POLICY_DENIED', `the appraisal is ${appraisal.status}`, { detail: { appraisal: appraisal.status } });
  return new CustodyError(first.code, `appraisal ${appraisal.status}: ${first.reason}`, { detail: { appraisal: appraisal.status, rule: first.rule, submod: first.submod, findings: reasons.length } });
}

function teeKeyOfEar(ear: Ear): RecipientKey {
  const holder = Object.values(ear.submods).find((s) => s['ear.veraison.key-attestation'] !== undefined);
  const akpub = holder?.['ear.veraison.key-attestation']?.akpub;
  if (akpub === undefined) throw new CustodyError('ERR_EAR_CLAIMS', 'the EAR carries no TEE key');
  let spki: Uint8Array;
  try {
    spki = fromBase64Url(akpub);
  } catch (e) {
    throw new CustodyError('ERR_EAR_MALFORMED', 'the EAR TEE key is not base64url', { cause: e });
  }
  return teeKeyFromSpki(spki);
}

const PRIMARY: Partial<Record<Platform, string>> = { 'sev-snp': 'measurement', tdx: 'mrtd', nitro: 'pcr0', sim: 'measurement' };
const HASH_HEX = /^(?:[0-9a-f]{40}|[0-9a-f]{64}|[0-9a-f]{96}|[0-9a-f]{128})$/;

/**
 * The workload's measurement for audit events: the platform's launch measurement when it has
 * one of a hash's length, else the SHA-256 of the canonical JSON of all its measurements.
 */
export function primaryMeasurement(claims: Pick<NormalizedClaims, 'platform' | 'measurements'>): string {
  const name = PRIMARY[claims.platform];
  const value = name !== undefined ? claims.measurements[name] : undefined;
  if (value !== undefined && HASH_HEX.test(value)) return value;
  return `sha256:${sha256Hex(canonicalize(claims.measurements))}`;
}

function earMeasurement(ear: Ear): string | undefined {
  // The TEE's own measurement (the submodule holding the TEE key), not a device's.
  const subs = Object.values(ear.submods).sort((a, b) => Number(b['ear.veraison.key-attestation'] !== undefined) - Number(a['ear.veraison.key-attestation'] !== undefined));
  for (const s of subs) {
    const a = s['ear.veraison.annotated-evidence'];
    if (a && typeof a.platform === 'string' && typeof a.measurements === 'object' && a.measurements !== null) {
      return primaryMeasurement({ platform: a.platform as Platform, measurements: a.measurements as Record<string, string> });
    }
  }
  return undefined;
}

function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/**
 * The longest EAR an AttestationService with these settings issues (its EAR TTL, capped by the
 * session's): the `maxEarLifetimeSeconds` its EarSigner needs.
 */
export function earLifetimeBound(options: { earTtlSeconds?: number; sessionTtlSeconds?: number } = {}): number {
  return Math.min(options.earTtlSeconds ?? DEFAULT_EAR_TTL_SECONDS, options.sessionTtlSeconds ?? DEFAULT_SESSION_TTL_SECONDS);
}

function seconds(v: number, what: string): number {
  if (!Number.isInteger(v) || v < 1 || v > 86_400) throw new CustodyError('ERR_USAGE', `${what} must be 1 to 86400 seconds`);
  return v;
}

/** Where an answer says its audit event is: `auditIndex`, or `auditInterimIndex` while it waits for the ledger. */
function auditWhere(r: AuditRecord): { auditIndex: number } | { auditInterimIndex: number } {
  return r.interim ? { auditInterimIndex: r.index } : { auditIndex: r.index };
}
