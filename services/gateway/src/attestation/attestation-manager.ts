/**
 * The gateway's attestation lifecycle: bind its keys into evidence, obtain an EAR from the
 * broker, publish the bundle, re-attest on a schedule, answer client challenges with fresh
 * evidence, and fail closed: no EAR yet, an expired EAR that could not be renewed, or a broker
 * refusal stops every confidential route with a typed error.
 *
 * With a shared identity key (replicas behind one address), each attestation round first makes
 * sure the gateway holds the broker's current identity secret: at start a key-release handshake
 * bound to the TEE key alone releases it, the shared OHTTP and receipt keys are derived from it
 * (keys/gateway-keys.ts) and only then bound into the evidence that is published; at each
 * re-attestation the key is released again in the same session, so a new version is picked up
 * (and bound in a second round) and a revoked or refused key closes the confidential routes.
 */
import type { JSONWebKeySet } from 'jose';
import type { Logger } from 'pino';
import { canonicalize, CustodyError, equalBytes, fromBase64Url, sha256, toBase64Url, toCustodyError, toHex, unwrapKey, utf8, type Clock } from '@custody/core';
import { decodeEvent, formatTlogProof } from '@custody/ledger';
import { verifyEar, type Ear } from '@custody/policy';
import { gpuAttestationKey, nvidiaVerifier, type EvidenceVerifier } from '@custody/attest';
import { ATTESTATION_BUNDLE_FORMAT, MAX_BUNDLE_DEVICE_EVIDENCE, MAX_BUNDLE_DEVICES, bundleAttestationDigest, buildRuntimeData, defaultVerifiers, encodeKeyConfigs, loggedAppraisal, runtimeDigest, type AttestationBundle, type BundleDevice, type EvidenceVerifierSet, type KeyConfig } from '@custody/sdk';
import type { Attester, DeviceAttester } from '@custody/attester-service';
import { deriveGatewayIdentity, type GatewayKeys } from '../keys/gateway-keys.js';
import type { LedgerSink } from '../ledger/ledger-sink.js';
import { isIdentityRefusal, isRefusal, releasedKeyName, releasedKeyVersion, type BrokerClient } from './broker-client.js';

/** Longest the gateway keeps the broker's JWKS between rounds (the broker serves it with max-age=300). */
const JWKS_MAX_AGE_MS = 300_000;

/** Longest an attestation round waits for the ledger to publish the broker's appraisal record. */
const LEDGER_PROOF_WAIT_MS = 3000;

/**
 * After a round whose bundle lacks the ledger proof it should carry (the broker kept its
 * appraisal record in its interim table while the ledger was down), the next round comes this
 * soon, then twice as late each time, up to the regular interval: strict clients refuse a
 * bundle without the proof, so the gateway does not wait a whole interval to publish one.
 */
const LEDGER_PROOF_RETRY_FIRST_MS = 5000;

export type AttestationState = 'starting' | 'attested' | 'lapsed' | 'revoked';

/** What the gateway currently proves about itself. */
/** Most past snapshots kept for requests sealed to keys still in their grace period. */
const MAX_REMEMBERED = 64;
/**
 * Published bundles kept by attestation digest, so that a receipt's bundle can be fetched after
 * later rounds (two hours of rounds at the 60 s default), within a byte budget (GPU bundles are
 * larger).
 */
const MAX_PUBLISHED_KEPT = 128;
const PUBLISHED_KEPT_BYTES = 16 * 1024 * 1024;

export interface AttestationSnapshot {
  readonly bundle: AttestationBundle;
  readonly runtimeData: string;
  readonly keyConfigs: readonly KeyConfig[];
  readonly platform: string;
  readonly simulated: boolean;
  readonly debug: boolean;
  readonly measurements: Record<string, string>;
  readonly earId?: string;
  /** ms since the epoch. */
  readonly earExpiresAt?: number;
  readonly attestedAt: number;
  /**
   * What receipts name (`bundleAttestationDigest`): `sha256:` of the EAR token; without a broker,
   * of the evidence, or with GPUs of the canonical JSON of the bundle's own `devices` and
   * `evidence`.
   */
  readonly attestationDigest: string;
  /** The GPUs attested with the CPU, as EAR submodules name them (gpu0, gpu1, ...). */
  readonly devices?: readonly AttestedDevice[];
  /**
   * True when the gateway's ledger should have proved the broker's appraisal record and the
   * bundle carries no such proof (strict clients refuse it): the next round comes sooner.
   */
  readonly ledgerProofMissing?: boolean;
}

export interface AttestedDevice {
  readonly name: string;
  readonly platform: 'nvidia';
  readonly measurements: Record<string, string>;
}

/** Evidence of the CPU TEE and its GPUs over one runtime data text. */
interface CollectedEvidence {
  runtimeData: string;
  evidence: Uint8Array;
  devices: { platform: 'nvidia'; evidence: Uint8Array }[];
  attested: AttestedDevice[];
}

export interface ModelInfoForBundle {
  id: string;
  digest?: string;
  label?: string;
  backend?: string;
}

export interface AttestationManagerOptions {
  attester: Attester;
  keys: GatewayKeys;
  broker?: BrokerClient;
  ledger?: LedgerSink;
  clock: Clock;
  logger: Logger;
  model?: ModelInfoForBundle;
  policyVersion?: string;
  /** Verifies the gateway's own evidence to read its claims (default sim and TPM). */
  verifiers?: EvidenceVerifierSet;
  /** Re-attestation period; default half the EAR lifetime, at most 60 s. */
  reattestIntervalMs?: number;
  /**
   * First delay before an early round after one whose bundle lacks its ledger proof (default
   * 5 s; doubled each time, never past the re-attestation period).
   */
  ledgerProofRetryMs?: number;
  /** Without a broker: evidence older than this stops serving (default 3 periods). */
  maxEvidenceAgeMs?: number;
  /** A key the broker releases to the attested gateway (model decryption key). */
  modelKey?: { name: string; onKey(key: Uint8Array, version: number | undefined): Promise<void> | void };
  /**
   * A broker-held secret (e.g. a `secret` key of the broker's tenant) from which the gateway
   * derives its OHTTP and receipt keys, so that replicas share them; `keys` must have been
   * created with `shared: true`. Without it the keys are this process's own.
   */
  identityKey?: { name: string };
  /** Concurrent client challenges (each collects fresh evidence). Default 4. */
  maxConcurrentChallenges?: number;
  /**
   * GPUs attached to the TEE (at most 8). Each round, each challenge and the identity handshake
   * collect every GPU's evidence for SHA-256 of the same runtime data as the CPU evidence,
   * verify it here, send it to the broker (composite EAR: cpu0, gpu0, ...) and publish it in
   * the bundle. Fail closed: a GPU that fails to answer or whose evidence does not verify fails
   * the round; a gateway configured with GPUs never publishes a CPU-only attestation.
   */
  devices?: readonly DeviceAttester[];
  /** Trust anchors for the GPUs' evidence (private PKI, tests); default the pinned NVIDIA Device Identity CA. */
  deviceRoots?: Uint8Array[];
  /**
   * Verifier of the GPUs' evidence; default the NVIDIA verifier. Its claims must name each GPU's
   * attestation key (`platformClaims.attestationKeySha256`), which tells GPUs apart.
   */
  deviceVerifier?: EvidenceVerifier;
}

const DEFAULT_INTERVAL = 60_000;
/** Delay of the round for a key whose grace ended while a round already under way still listed it. */
const RETIRED_AGAIN_MS = 1000;
/** Longest delay setTimeout takes (a longer one fires at once). */
const MAX_TIMER_MS = 2 ** 31 - 1;

export class AttestationManager {
  private stateValue: AttestationState = 'starting';
  private snap: AttestationSnapshot | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  /** An early round after one whose bundle lacks its ledger proof, and the delay it used. */
  private proofRetry: { timer: ReturnType<typeof setTimeout> | undefined; delayMs: number } = { timer: undefined, delayMs: 0 };
  /** A round at the end of the next retired OHTTP key's grace period (it then stops being published). */
  private retireTimer: ReturnType<typeof setTimeout> | undefined;
  private inflight: Promise<AttestationSnapshot> | undefined;
  private challenges = 0;
  private revokedBy: string | undefined;
  private sticky = false;
  private jwksCache: { jwks: JSONWebKeySet; at: number } | undefined;
  /**
   * The newest identity key version this process has installed. It outlives dropIdentity, so a
   * broker that releases an older version is refused at every round, not only while the newer
   * keys are still held.
   */
  private newestIdentityVersion = 0;

  /** The latest attestations, newest first (bounded): receipts for keys in grace name theirs. */
  private readonly recent: AttestationSnapshot[] = [];
  /** Bundles published, by the attestation digest receipts name, oldest first (bounded). */
  private readonly published = new Map<string, { bundle: AttestationBundle; bytes: number }>();
  private publishedBytes = 0;

  constructor(private readonly o: AttestationManagerOptions) {
    const devices = o.devices ?? [];
    if (devices.length > MAX_BUNDLE_DEVICES) throw new CustodyError('ERR_GATEWAY_CONFIG', `at most ${MAX_BUNDLE_DEVICES} GPUs per gateway`, { detail: { devices: devices.length } });
    if (devices.some((d) => d.platform !== 'nvidia')) throw new CustodyError('ERR_GATEWAY_CONFIG', 'device evidence is NVIDIA GPU evidence only');
  }

  get state(): AttestationState {
    this.checkLapse();
    return this.stateValue;
  }

  get snapshot(): AttestationSnapshot | undefined {
    return this.snap;
  }

  get intervalMs(): number {
    if (this.o.reattestIntervalMs !== undefined) return this.o.reattestIntervalMs;
    const s = this.snap;
    if (s?.earExpiresAt !== undefined) return Math.max(1000, Math.min(DEFAULT_INTERVAL, (s.earExpiresAt - s.attestedAt) / 2));
    return DEFAULT_INTERVAL;
  }

  private checkLapse(): void {
    const s = this.snap;
    if (this.stateValue !== 'attested' || !s) return;
    const now = this.o.clock().getTime();
    const lapsed = s.earExpiresAt !== undefined ? now >= s.earExpiresAt : now - s.attestedAt > (this.o.maxEvidenceAgeMs ?? 3 * this.intervalMs);
    if (lapsed) {
      this.stateValue = 'lapsed';
      this.o.logger.warn({ event: 'attestation.lapsed', earId: s.earId }, 'attestation lapsed: confidential routes closed');
    }
  }

  /** Throws the typed reason why confidential routes are closed, if they are. */
  assertServing(): AttestationSnapshot {
    const state = this.state;
    if (state === 'revoked') throw new CustodyError('ERR_GATEWAY_ATTESTATION_REVOKED', undefined, this.revokedBy ? { detail: { reason: this.revokedBy } } : {});
    if (state === 'lapsed') throw new CustodyError('ERR_GATEWAY_ATTESTATION_LAPSED');
    if (state !== 'attested' || !this.snap) throw new CustodyError('ERR_GATEWAY_NOT_ATTESTED');
    return this.snap;
  }

  /** Attests now; concurrent callers share one attestation. */
  reattest(): Promise<AttestationSnapshot> {
    this.inflight ??= this.attestAndRecord().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /** Attests once, then re-attests on the schedule. Resolves after the first attempt, successful or not. */
  async start(): Promise<void> {
    await this.reattest().catch(() => undefined);
    this.schedule();
    // The first round ran before the schedule existed: its missing ledger proof is retried now.
    if (this.snap?.ledgerProofMissing) this.retryLedgerProof(this.snap);
    this.scheduleRetirement();
  }

  private schedule(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => {
      this.reattest().catch(() => undefined);
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.proofRetry.timer) clearTimeout(this.proofRetry.timer);
    this.proofRetry = { timer: undefined, delayMs: 0 };
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = undefined;
  }

  /**
   * On a scheduled gateway: one round just after the next retired OHTTP key's grace period ends,
   * so that the key stops being published then, and stops decapsulating once that round has
   * published (not up to a whole interval later, while clients still see it listed).
   */
  private scheduleRetirement(): void {
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = undefined;
    const at = this.o.keys.ohttp.nextRetirement();
    if (!this.timer || at === undefined) return;
    // A key already past its grace (the round that ran then had listed it) gets a round soon, not at once: no tight loop.
    const delayMs = Math.min(MAX_TIMER_MS, Math.max(RETIRED_AGAIN_MS, at - this.o.clock().getTime() + 1));
    this.retireTimer = setTimeout(() => {
      this.retireTimer = undefined;
      if (this.timer) this.reattest().catch(() => undefined);
    }, delayMs);
    this.retireTimer.unref();
  }

  /**
   * After a scheduled gateway's round: when its bundle lacks the ledger proof it should carry,
   * one early round (LEDGER_PROOF_RETRY_FIRST_MS, doubled after each round still without it, as
   * long as that is sooner than the regular interval); a round with the proof ends the retries.
   */
  private retryLedgerProof(s: AttestationSnapshot): void {
    if (this.proofRetry.timer) clearTimeout(this.proofRetry.timer);
    this.proofRetry.timer = undefined;
    if (!s.ledgerProofMissing) {
      this.proofRetry.delayMs = 0;
      return;
    }
    if (!this.timer) return;
    const delayMs = this.proofRetry.delayMs === 0 ? (this.o.ledgerProofRetryMs ?? LEDGER_PROOF_RETRY_FIRST_MS) : this.proofRetry.delayMs * 2;
    this.proofRetry.delayMs = delayMs;
    if (delayMs >= this.intervalMs) return;
    this.o.logger.info({ event: 'attestation.ledger_retry', inMs: delayMs }, 'the bundle carries no ledger proof of the appraisal (strict clients refuse it): attesting again sooner');
    this.proofRetry.timer = setTimeout(() => {
      this.proofRetry.timer = undefined;
      if (this.timer) this.reattest().catch(() => undefined);
    }, delayMs);
    this.proofRetry.timer.unref();
  }

  /** Closes confidential routes at once and for good (an operator's or broker's revocation). */
  revoke(reason: string): void {
    this.sticky = true;
    this.revokedBy = reason;
    this.stateValue = 'revoked';
    if (this.o.identityKey) this.o.keys.dropIdentity();
    this.o.logger.warn({ event: 'attestation.revoked', reason }, 'attestation revoked: confidential routes closed');
  }

  /**
   * Rotates the OHTTP key and re-attests so the new key is bound and published. With a shared
   * identity key a replica cannot rotate on its own (the others would not follow): the broker
   * rotates the identity key, and this re-attests, which picks up its current version.
   */
  async rotateKeys(): Promise<AttestationSnapshot> {
    if (!this.o.identityKey) await this.o.keys.ohttp.rotate();
    return this.reattest();
  }

  private async attestAndRecord(): Promise<AttestationSnapshot> {
    // Revoked for good: no more evidence, EARs or key releases (the identity secret would be
    // released and derived again only to be dropped at the end of the round).
    if (this.sticky) throw new CustodyError('ERR_GATEWAY_ATTESTATION_REVOKED', undefined, this.revokedBy ? { detail: { reason: this.revokedBy } } : {});
    try {
      const s = await this.attestOnce();
      if (this.sticky) throw new CustodyError('ERR_GATEWAY_ATTESTATION_REVOKED');
      const before = this.stateValue;
      this.snap = s;
      this.remember(s);
      this.keepPublished(s);
      this.stateValue = 'attested';
      this.revokedBy = undefined;
      // Published without the retired keys whose grace ended: now they stop decapsulating.
      const dropped = this.o.keys.ohttp.dropUnpublished(s.keyConfigs);
      if (dropped.length > 0) this.o.logger.info({ event: 'ohttp.key_dropped', keyIds: dropped }, 'retired OHTTP keys are no longer published and no longer decapsulate');
      this.scheduleRetirement();
      if (this.timer && before !== 'attested') this.schedule();
      this.o.logger.info({ event: 'attestation.ok', platform: s.platform, simulated: s.simulated, earId: s.earId, keyIds: s.keyConfigs.map((k) => k.keyId), ...(s.ledgerProofMissing ? { ledgerProof: false } : {}) }, s.simulated ? 'attested (SIMULATED evidence)' : 'attested');
      this.retryLedgerProof(s);
      return s;
    } catch (e) {
      const err = toCustodyError(e);
      // A key the broker refuses (revoked, destroyed, deleted, no release policy) or that cannot open the model: for good.
      const keyRefused = (err.code === 'ERR_GATEWAY_IDENTITY_KEY' || err.code === 'ERR_GATEWAY_MODEL_KEY') && (isIdentityRefusal(String(err.detail?.code ?? '')) || String(err.detail?.code ?? '').startsWith('ERR_MODEL_'));
      if (isRefusal(err.code) || err.code === 'ERR_GATEWAY_ATTESTATION_REVOKED' || keyRefused) {
        this.stateValue = 'revoked';
        this.revokedBy = this.revokedBy ?? err.code;
        // The broker no longer vouches for this replica: it stops holding the shared keys too
        // (a later successful attestation releases them again).
        if (this.o.identityKey) this.o.keys.dropIdentity();
        this.o.logger.error({ event: 'attestation.refused', code: err.code, ...(typeof err.detail?.code === 'string' ? { cause: err.detail.code } : {}) }, 'attestation refused: confidential routes closed');
      } else {
        this.o.logger.warn({ event: 'attestation.failed', code: err.code, ...(typeof err.detail?.code === 'string' ? { cause: err.detail.code } : {}) }, 'attestation attempt failed; serving until the current result lapses');
        this.checkLapse();
      }
      throw err;
    }
  }

  /**
   * The broker's EAR, verified against its JWKS. The JWKS is kept between rounds for at most
   * JWKS_MAX_AGE_MS (the broker serves it with max-age=300: a key it dropped as compromised
   * leaves it within that); an EAR signed with a key the kept copy does not hold (the broker
   * rotated its signing key) has it fetched again, once, before the EAR is refused.
   */
  private async verifyBrokerEar(token: string, nonce: Uint8Array | undefined): Promise<Awaited<ReturnType<typeof verifyEar>>> {
    const verify = (jwks: JSONWebKeySet) => verifyEar(token, { jwks, now: this.o.clock(), clockToleranceSeconds: 5, ...(nonce ? { nonce } : {}) });
    const kept = this.jwksCache && this.o.clock().getTime() - this.jwksCache.at < JWKS_MAX_AGE_MS ? this.jwksCache.jwks : undefined;
    if (kept) {
      try {
        return await verify(kept);
      } catch (e) {
        if (toCustodyError(e).code !== 'ERR_EAR_KEY_UNKNOWN') throw e;
      }
    }
    const fresh = await this.o.broker!.jwks();
    this.jwksCache = { jwks: fresh, at: this.o.clock().getTime() };
    if (kept) this.o.logger.info({ event: 'attestation.jwks_refreshed', kids: fresh.keys.map((k) => k.kid).filter((k) => typeof k === 'string') }, "the broker's EAR is signed with a key not seen before; its JWKS was fetched again");
    return verify(fresh);
  }

  private async collect(nonce: Uint8Array | undefined, keyConfigs: readonly KeyConfig[], receiptKey: Uint8Array): Promise<CollectedEvidence> {
    const runtimeData = buildRuntimeData({
      ...(nonce ? { nonce } : {}),
      keyConfigs,
      receiptKey,
      teePublicKey: this.o.keys.tee.publicKey.bytes,
    });
    return this.collectFor(runtimeData);
  }

  /** CPU evidence over the runtime data's digest and every GPU's over SHA-256 of the same text, together. */
  private async collectFor(runtimeData: string): Promise<CollectedEvidence> {
    const [evidence, gpus] = await Promise.all([this.o.attester.collect(await runtimeDigest(this.o.attester.platform, runtimeData)), this.collectDevices(runtimeData)]);
    return { runtimeData, evidence, ...gpus };
  }

  /**
   * Each GPU's evidence for nonce SHA-256(runtimeData), verified here like the CPU evidence is:
   * the chain (to `deviceRoots`, or the pinned NVIDIA root), the signature and the nonce. Any
   * GPU that fails to answer or does not verify fails the whole collection, and so do two
   * devices with one attestation key (`claims.platformClaims.attestationKeySha256`): one GPU
   * is never published as two (ERR_EVIDENCE_DEVICE_REPEATED, `detail.device` the later one).
   */
  private async collectDevices(runtimeData: string): Promise<Pick<CollectedEvidence, 'devices' | 'attested'>> {
    const attesters = this.o.devices ?? [];
    if (attesters.length === 0) return { devices: [], attested: [] };
    const nonce = await runtimeDigest('nvidia', runtimeData);
    const verifier = this.o.deviceVerifier ?? nvidiaVerifier;
    const roots = this.o.deviceRoots;
    const now = this.o.clock();
    const results = await Promise.all(
      attesters.map(async (a, i) => {
        const name = `gpu${i}`;
        let evidence: Uint8Array;
        try {
          evidence = await a.collect(nonce);
        } catch (e) {
          const err = toCustodyError(e);
          throw new CustodyError(err.code, `${name} evidence could not be collected`, { cause: err, detail: { device: name } });
        }
        // Clients refuse a bundle with larger device evidence: it is not published.
        if (evidence.length > MAX_BUNDLE_DEVICE_EVIDENCE) throw new CustodyError('ERR_ATTESTER_FAILED', `${name} evidence is over ${MAX_BUNDLE_DEVICE_EVIDENCE} bytes`, { detail: { device: name, size: evidence.length } });
        const r = await verifier.verify({ evidence, now, nonce, ...(roots && roots.length > 0 ? { roots } : {}) });
        if (!r.ok || !r.claims || r.claims.platform !== 'nvidia') {
          throw new CustodyError(r.errors[0]?.code ?? 'ERR_ATTESTER_FAILED', `the gateway could not verify the evidence of ${name}`, { detail: { device: name } });
        }
        if (r.claims.reportData !== toHex(nonce)) throw new CustodyError('ERR_EVIDENCE_BINDING', `the evidence of ${name} is not bound to the runtime data`, { detail: { device: name } });
        const identity = gpuAttestationKey(r.claims.platformClaims);
        if (identity === undefined) throw new CustodyError('ERR_INPUT_UNSUPPORTED', `the verified evidence of ${name} names no GPU attestation key: it cannot be told apart from another GPU`, { detail: { device: name } });
        return { identity, device: { platform: 'nvidia' as const, evidence }, attested: { name, platform: 'nvidia' as const, measurements: { ...r.claims.measurements } } };
      }),
    );
    // One GPU configured twice (the same attester, or two programs asking the same GPU) would be
    // published as two: a client requiring N attested GPUs would be served by fewer. Its
    // attestation key is the GPU's identity; the later of two with one key fails the round.
    const seen = new Map<string, string>();
    for (const r of results) {
      const first = seen.get(r.identity);
      if (first !== undefined) throw new CustodyError('ERR_EVIDENCE_DEVICE_REPEATED', `${r.attested.name} is the same GPU as ${first} (one attestation key)`, { detail: { device: r.attested.name, same: first } });
      seen.set(r.identity, r.attested.name);
    }
    return { devices: results.map((r) => r.device), attested: results.map((r) => r.attested) };
  }

  private async attestOnce(): Promise<AttestationSnapshot> {
    const o = this.o;
    let justReleased = false;
    if (o.identityKey && !o.keys.identity) {
      await this.releaseIdentityKey();
      justReleased = true;
    }
    const s = await this.attestBound(o.identityKey !== undefined && !justReleased);
    // A new identity key version was installed during the round: bind and publish its keys.
    return s ?? (await this.attestBound(false))!;
  }

  /**
   * Key-release handshake for the identity secret alone: challenge, evidence over the protocol's
   * runtime data `{nonce, tee-pubkey}` (the gateway has no OHTTP or receipt key to bind yet),
   * EAR, release wrapped to the TEE key, derivation. Nothing of it is published.
   */
  private async releaseIdentityKey(): Promise<void> {
    const o = this.o;
    const broker = o.broker;
    if (!broker?.releaseKey) throw new CustodyError('ERR_GATEWAY_CONFIG', 'a shared identity key needs a key broker that releases keys');
    const ch = await broker.challenge();
    const runtimeData = canonicalize({ nonce: toBase64Url(ch.nonce), 'tee-pubkey': { crv: 'X25519', kty: 'OKP', x: toBase64Url(o.keys.tee.publicKey.bytes) } });
    // The broker's composite policy applies to this release too: the GPUs attest over the same
    // runtime data as the CPU.
    const { evidence, devices } = await this.collectFor(runtimeData);
    const r = await broker.attest({ session: ch.session, evidence, runtimeData, platform: o.attester.platform, ...(devices.length > 0 ? { devices } : {}) });
    await this.installIdentity(ch.session, r.ear);
  }

  /**
   * Releases the identity key in an attested session and, when its version is new, derives and
   * installs the shared keys (the previous OHTTP key stays in grace). True when keys changed.
   * Any failure is ERR_GATEWAY_IDENTITY_KEY with the broker's code in `detail.code`. The secret
   * is wiped before this returns; no key material is logged.
   */
  /**
   * A key the broker releases to this round's session, unwrapped with the TEE key, after checking
   * that the envelope's authenticated context names this key, a version and (broker service) this
   * session and EAR: an envelope replayed from an earlier round, after the key was revoked, is
   * refused. The caller wipes the key.
   */
  private async releaseChecked(name: string, session: string, ear: string): Promise<{ key: Uint8Array; version: number }> {
    const o = this.o;
    if (!o.broker?.releaseKey) throw new CustodyError('ERR_GATEWAY_CONFIG', 'releasing a key needs a key broker that releases keys');
    const released = await o.broker.releaseKey(name, { session, ear });
    const version = releasedKeyVersion(released.context);
    if (releasedKeyName(released.context) !== name) throw new CustodyError('ERR_KEY_UNWRAP', 'the broker released another key than the one asked for');
    if (version === undefined) throw new CustodyError('ERR_KEY_UNWRAP', 'the release context names no key version');
    if (released.context.session !== undefined && released.context.session !== session) throw new CustodyError('ERR_KEY_UNWRAP', 'the release context names another session');
    if (released.context.earDigest !== undefined && released.context.earDigest !== toHex(await sha256(utf8(ear)))) throw new CustodyError('ERR_KEY_UNWRAP', 'the release context names another EAR');
    return { key: await unwrapKey(released.wrappedKey, { recipientKeyPair: o.keys.tee, context: released.context }), version };
  }

  /**
   * The model key, released again every round: any failure (a refused, revoked, destroyed or
   * replayed release, or a key that does not open the model) fails the round as
   * ERR_GATEWAY_MODEL_KEY with the cause in `detail.code`; refusals close the routes for good.
   */
  private async releaseModelKey(modelKey: NonNullable<AttestationManagerOptions['modelKey']>, session: string, ear: string): Promise<void> {
    let key: Uint8Array | undefined;
    try {
      const released = await this.releaseChecked(modelKey.name, session, ear);
      key = released.key;
      await modelKey.onKey(key, released.version);
    } catch (e) {
      const err = toCustodyError(e);
      throw new CustodyError('ERR_GATEWAY_MODEL_KEY', `the model key was not released or did not open the model (${err.code})`, { cause: err, detail: { code: err.code, key: modelKey.name } });
    } finally {
      key?.fill(0);
    }
  }

  private async installIdentity(session: string, ear: string): Promise<boolean> {
    const o = this.o;
    const name = o.identityKey!.name;
    const current = o.keys.identity;
    let secret: Uint8Array | undefined;
    try {
      const released = await this.releaseChecked(name, session, ear);
      secret = released.key;
      const version = released.version;
      if (current && version === current.version) return false;
      if (version < this.newestIdentityVersion) throw new CustodyError('ERR_KEY_VERSION', 'the broker released an older identity key version than one already in use', { detail: { version, newest: this.newestIdentityVersion } });
      const derived = await deriveGatewayIdentity(secret, { name, version });
      o.keys.installIdentity(derived);
      this.newestIdentityVersion = Math.max(this.newestIdentityVersion, version);
      o.logger.info({ event: 'identity.installed', key: name, version, keyId: derived.ohttp.config.keyId, ...(current ? { previousVersion: current.version } : {}) }, 'shared gateway keys derived from the identity key');
      return true;
    } catch (e) {
      const err = toCustodyError(e);
      throw new CustodyError('ERR_GATEWAY_IDENTITY_KEY', `the identity key was not released (${err.code})`, { cause: err, detail: { code: err.code, key: name } });
    } finally {
      secret?.fill(0);
    }
  }

  /**
   * One attestation round with the keys held now bound into the evidence. With `checkIdentity`,
   * the identity key is released again in the round's session; undefined when that installed a
   * new version (the keys just attested are no longer current).
   */
  private async attestBound(checkIdentity: boolean): Promise<AttestationSnapshot | undefined> {
    const o = this.o;
    const keyConfigs = o.keys.ohttp.configs;
    const receiptKey = o.keys.receipt.publicKey;
    const platform = o.attester.platform;
    let session: string | undefined;
    let nonce: Uint8Array | undefined;
    if (o.broker) {
      const ch = await o.broker.challenge();
      session = ch.session;
      nonce = ch.nonce;
    }
    const { runtimeData, evidence, devices, attested } = await this.collect(nonce, keyConfigs, receiptKey);
    const now = o.clock();
    const self = await (o.verifiers ?? defaultVerifiers).verify({ evidence, platform, now });
    if (!self.ok || !self.claims) throw new CustodyError(self.errors[0]?.code ?? 'ERR_ATTESTER_FAILED', 'the gateway could not verify its own evidence');
    const claims = self.claims;
    let ear: Ear | undefined;
    let token: string | undefined;
    let ledger: AttestationBundle['ledger'];
    if (o.broker && session) {
      const r = await o.broker.attest({ session, evidence, runtimeData, platform, ...(devices.length > 0 ? { devices } : {}) });
      token = r.ear;
      const v = await this.verifyBrokerEar(token, nonce);
      if (v.status !== 'affirming') throw new CustodyError('ERR_POLICY_DENIED', `the broker's verdict is ${v.status}`);
      // A broker that ignored the GPUs (one that predates composite appraisal) would vouch for
      // the CPU alone while the bundle carries GPU evidence: clients would refuse it, and the
      // gateway does not publish it.
      const unappraised = attested.find((d) => v.ear.submods[d.name] === undefined);
      if (unappraised) throw new CustodyError('ERR_EAR_CLAIMS', `the broker's EAR does not appraise ${unappraised.name}`, { detail: { device: unappraised.name } });
      ear = v.ear;
      if (checkIdentity && (await this.installIdentity(session, token))) return undefined;
      if (o.modelKey) await this.releaseModelKey(o.modelKey, session, token);
      // Last: the releases above use the session while it is fresh; this waits for the ledger.
      if (r.ledgerIndex !== undefined) ledger = await this.ledgerProof(r.ledgerIndex, token);
      else if (this.provesFromLedger()) this.o.logger.warn({ event: 'attestation.ledger' }, "the broker named no ledger entry for its appraisal (it keeps its record in its interim table while its ledger is down); the bundle carries no ledger proof");
    }
    const bundleDevices = publishedDevices(devices);
    const bundle: AttestationBundle = {
      format: ATTESTATION_BUNDLE_FORMAT,
      platform: platform,
      simulated: claims.simulated,
      evidence: toBase64Url(evidence),
      runtimeData,
      ...(token ? { ear: token } : {}),
      ohttpKeys: toBase64Url(encodeKeyConfigs(keyConfigs)),
      receiptKey: { kty: 'OKP', crv: 'Ed25519', x: toBase64Url(receiptKey) },
      ...(bundleDevices ? { devices: bundleDevices } : {}),
      ...(o.model ? { model: o.model } : {}),
      ...(o.policyVersion ? { policyVersion: o.policyVersion } : {}),
      issuedAt: now.toISOString(),
      ...(ledger ? { ledger } : {}),
    };
    return {
      bundle,
      runtimeData,
      keyConfigs,
      platform,
      simulated: claims.simulated,
      debug: claims.debug,
      measurements: { ...claims.measurements },
      ...(ear ? { earId: ear.jti, earExpiresAt: ear.exp * 1000 } : {}),
      attestedAt: now.getTime(),
      attestationDigest: await bundleAttestationDigest(bundle),
      ...(attested.length > 0 ? { devices: attested } : {}),
      ...(o.broker && !ledger && this.provesFromLedger() ? { ledgerProofMissing: true } : {}),
    };
  }

  /** Whether the gateway's ledger can prove the broker's appraisal record (it publishes proofs). */
  private provesFromLedger(): boolean {
    const l = this.o.ledger;
    return l?.proof !== undefined && l.entry !== undefined;
  }

  /**
   * The broker's appraisal record at `index` of this gateway's ledger, with an inclusion proof,
   * when that ledger is the one the broker logs to: the entry must be the broker's record that
   * it affirmed this EAR (the SDK's strict mode checks the same). The broker's audit index says
   * nothing about another log (a development in-memory ledger next to the broker service, or
   * the broker's interim table while the ledger failed), so a missing or unrelated entry is
   * left out of the bundle rather than published or failing the attestation. The wait for the
   * ledger to publish the entry is bounded by LEDGER_PROOF_WAIT_MS.
   */
  private async ledgerProof(index: number, token: string): Promise<AttestationBundle['ledger']> {
    const l = this.o.ledger;
    if (!l?.proof || !l.entry) return undefined;
    try {
      const event = decodeEvent(await l.entry(index, LEDGER_PROOF_WAIT_MS)) as unknown as Record<string, unknown>;
      if (loggedAppraisal(event)?.earDigest !== toHex(await sha256(utf8(token)))) {
        this.o.logger.warn({ event: 'attestation.ledger', index }, "the broker's audit index is not this EAR's appraisal in the gateway's ledger; the bundle carries no ledger proof");
        return undefined;
      }
      return { index, event, proof: formatTlogProof(await l.proof(index)) };
    } catch (e) {
      this.o.logger.warn({ event: 'attestation.ledger', index, code: toCustodyError(e).code }, "the broker's audit index is not in the gateway's ledger (the broker logs elsewhere: give both the same --ledger); the bundle carries no ledger proof");
      return undefined;
    }
  }

  /**
   * Keeps, for every (OHTTP key id, receipt key) an attestation bound, the newest snapshot that
   * bound it: a request sealed to a key still in its grace period is answered under the
   * attestation that bound that key, however many re-attestations came since (a count of recent
   * snapshots lost it after a few intervals). Snapshots that bind nothing newer ones do not are
   * dropped, so the list stays short; at most MAX_REMEMBERED.
   */
  private remember(s: AttestationSnapshot): void {
    const covered = new Set<string>();
    const kept: AttestationSnapshot[] = [];
    for (const x of [s, ...this.recent]) {
      const pairs = x.keyConfigs.map((k) => `${k.keyId}:${x.bundle.receiptKey.x}`);
      if (pairs.some((p) => !covered.has(p))) kept.push(x);
      for (const p of pairs) covered.add(p);
    }
    this.recent.splice(0, this.recent.length, ...kept.slice(0, MAX_REMEMBERED));
  }

  private keepPublished(s: AttestationSnapshot): void {
    if (this.published.has(s.attestationDigest)) return;
    const bytes = JSON.stringify(s.bundle).length;
    while (this.published.size > 0 && (this.published.size >= MAX_PUBLISHED_KEPT || this.publishedBytes + bytes > PUBLISHED_KEPT_BYTES)) {
      const [oldest, e] = this.published.entries().next().value!;
      this.published.delete(oldest);
      this.publishedBytes -= e.bytes;
    }
    this.published.set(s.attestationDigest, { bundle: s.bundle, bytes });
    this.publishedBytes += bytes;
  }

  /**
   * A bundle this gateway published, by the attestation digest a receipt names (the last
   * MAX_PUBLISHED_KEPT rounds): what an auditor needs beside a receipt answered in an earlier
   * round. Bundles are public; a revoked or lapsed gateway still answers for its past ones.
   */
  publishedBundle(digest: string): AttestationBundle | undefined {
    return this.published.get(digest)?.bundle;
  }

  /** The receipt key the snapshot bound (the keys may have moved on since). */
  private boundReceiptKey(s: AttestationSnapshot): Uint8Array {
    return fromBase64Url(s.bundle.receiptKey.x);
  }

  /**
   * The attestation a request sealed to OHTTP key `keyId` is answered under: the newest one that
   * bound both that key and `receiptKey` (the key that will sign its receipt), so a receipt names
   * the attestation its signing key was bound in (during an identity rotation, the previous
   * version's). The current one when none did; throws when not serving.
   */
  snapshotFor(keyId: number, receiptKey: Uint8Array): AttestationSnapshot {
    const current = this.assertServing();
    for (const s of [current, ...this.recent]) {
      if (s.keyConfigs.some((k) => k.keyId === keyId) && equalBytes(this.boundReceiptKey(s), receiptKey)) return s;
    }
    return current;
  }

  /**
   * Fresh evidence bound to a client nonce, for the same keys as the current bundle. The EAR
   * stays the broker's (it appraised `earRuntimeData`); the client checks both.
   */
  async challenge(nonce: Uint8Array): Promise<AttestationBundle> {
    const s = this.assertServing();
    if (nonce.length < 8 || nonce.length > 64) throw new CustodyError('ERR_INPUT_MALFORMED', 'challenge nonce must be 8 to 64 bytes', { detail: { length: nonce.length } });
    if (this.challenges >= (this.o.maxConcurrentChallenges ?? 4)) throw new CustodyError('ERR_GATEWAY_OVERLOADED', 'too many concurrent attestation challenges');
    this.challenges++;
    try {
      // Fresh GPU evidence too: the GPUs' nonce is the digest of this fresh runtime data.
      const { runtimeData, evidence, devices } = await this.collect(nonce, s.keyConfigs, this.boundReceiptKey(s));
      const bundleDevices = publishedDevices(devices);
      return {
        ...s.bundle,
        evidence: toBase64Url(evidence),
        runtimeData,
        ...(bundleDevices ? { devices: bundleDevices } : {}),
        ...(s.bundle.ear ? { earRuntimeData: s.runtimeData } : {}),
        issuedAt: this.o.clock().toISOString(),
      };
    } finally {
      this.challenges--;
    }
  }
}

function publishedDevices(devices: readonly { platform: 'nvidia'; evidence: Uint8Array }[]): BundleDevice[] | undefined {
  return devices.length > 0 ? devices.map((d) => ({ platform: d.platform, evidence: toBase64Url(d.evidence) })) : undefined;
}

