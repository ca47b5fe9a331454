/**
 * The gateway's attestation lifecycle: bind its keys into evidence, obtain an EAR from the
 * broker, publish the bundle, re-attest on a schedule, answer client challenges with fresh
 * evidence, and fail closed: no EAR yet, an expired EAR that could not be renewed, or a broker
 * refusal stops every confidential route with a typed error.
 */
import type { JSONWebKeySet } from 'jose';
import type { Logger } from 'pino';
import { CustodyError, sha256, toBase64Url, toCustodyError, toHex, unwrapKey, utf8, type Clock } from '@custody/core';
import { decodeEvent, formatTlogProof } from '@custody/ledger';
import { verifyEar, type Ear } from '@custody/policy';
import { ATTESTATION_BUNDLE_FORMAT, buildRuntimeData, defaultVerifiers, encodeKeyConfigs, runtimeDigest, type AttestationBundle, type EvidenceVerifierSet, type KeyConfig } from '@custody/sdk';
import type { Attester } from '@custody/attester-service';
import type { GatewayKeys } from '../keys/gateway-keys.js';
import type { LedgerSink } from '../ledger/ledger-sink.js';
import { isRefusal, type BrokerClient } from './broker-client.js';

export type AttestationState = 'starting' | 'attested' | 'lapsed' | 'revoked';

/** What the gateway currently proves about itself. */
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
  /** `sha256:` of the EAR token, or of the evidence when there is no broker. */
  readonly attestationDigest: string;
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
  /** Without a broker: evidence older than this stops serving (default 3 periods). */
  maxEvidenceAgeMs?: number;
  /** A key the broker releases to the attested gateway (model decryption key). */
  modelKey?: { name: string; onKey(key: Uint8Array): Promise<void> | void };
  /** Concurrent client challenges (each collects fresh evidence). Default 4. */
  maxConcurrentChallenges?: number;
}

const DEFAULT_INTERVAL = 60_000;

export class AttestationManager {
  private stateValue: AttestationState = 'starting';
  private snap: AttestationSnapshot | undefined;
  private timer: ReturnType<typeof setInterval> | undefined;
  private inflight: Promise<AttestationSnapshot> | undefined;
  private challenges = 0;
  private revokedBy: string | undefined;
  private sticky = false;
  private jwksCache: JSONWebKeySet | undefined;

  constructor(private readonly o: AttestationManagerOptions) {}

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
  }

  private schedule(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = setInterval(() => {
      this.o.keys.ohttp.prune();
      this.reattest().catch(() => undefined);
    }, this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Closes confidential routes at once and for good (an operator's or broker's revocation). */
  revoke(reason: string): void {
    this.sticky = true;
    this.revokedBy = reason;
    this.stateValue = 'revoked';
    this.o.logger.warn({ event: 'attestation.revoked', reason }, 'attestation revoked: confidential routes closed');
  }

  /** Rotates the OHTTP key and re-attests so the new key is bound and published. */
  async rotateKeys(): Promise<AttestationSnapshot> {
    await this.o.keys.ohttp.rotate();
    return this.reattest();
  }

  private async attestAndRecord(): Promise<AttestationSnapshot> {
    try {
      const s = await this.attestOnce();
      if (this.sticky) throw new CustodyError('ERR_GATEWAY_ATTESTATION_REVOKED');
      const before = this.stateValue;
      this.snap = s;
      this.stateValue = 'attested';
      this.revokedBy = undefined;
      if (this.timer && before !== 'attested') this.schedule();
      this.o.logger.info({ event: 'attestation.ok', platform: s.platform, simulated: s.simulated, earId: s.earId, keyIds: s.keyConfigs.map((k) => k.keyId) }, s.simulated ? 'attested (SIMULATED evidence)' : 'attested');
      return s;
    } catch (e) {
      const err = toCustodyError(e);
      if (isRefusal(err.code) || err.code === 'ERR_GATEWAY_ATTESTATION_REVOKED') {
        this.stateValue = 'revoked';
        this.revokedBy = this.revokedBy ?? err.code;
        this.o.logger.error({ event: 'attestation.refused', code: err.code }, 'attestation refused: confidential routes closed');
      } else {
        this.o.logger.warn({ event: 'attestation.failed', code: err.code }, 'attestation attempt failed; serving until the current result lapses');
        this.checkLapse();
      }
      throw err;
    }
  }

  private async brokerJwks(): Promise<JSONWebKeySet> {
    this.jwksCache ??= await this.o.broker!.jwks();
    return this.jwksCache;
  }

  private async collect(nonce: Uint8Array | undefined, keyConfigs: readonly KeyConfig[]): Promise<{ runtimeData: string; evidence: Uint8Array }> {
    const runtimeData = buildRuntimeData({
      ...(nonce ? { nonce } : {}),
      keyConfigs,
      receiptKey: this.o.keys.receipt.publicKey,
      teePublicKey: this.o.keys.tee.publicKey.bytes,
    });
    const evidence = await this.o.attester.collect(await runtimeDigest(this.o.attester.platform, runtimeData));
    return { runtimeData, evidence };
  }

  private async attestOnce(): Promise<AttestationSnapshot> {
    const o = this.o;
    const keyConfigs = o.keys.ohttp.configs;
    const platform = o.attester.platform;
    let session: string | undefined;
    let nonce: Uint8Array | undefined;
    if (o.broker) {
      const ch = await o.broker.challenge();
      session = ch.session;
      nonce = ch.nonce;
    }
    const { runtimeData, evidence } = await this.collect(nonce, keyConfigs);
    const now = o.clock();
    const self = await (o.verifiers ?? defaultVerifiers).verify({ evidence, platform, now });
    if (!self.ok || !self.claims) throw new CustodyError(self.errors[0]?.code ?? 'ERR_ATTESTER_FAILED', 'the gateway could not verify its own evidence');
    const claims = self.claims;
    let ear: Ear | undefined;
    let token: string | undefined;
    let ledger: AttestationBundle['ledger'];
    if (o.broker && session) {
      const r = await o.broker.attest({ session, evidence, runtimeData, platform });
      token = r.ear;
      const v = await verifyEar(token, { jwks: await this.brokerJwks(), now: o.clock(), clockToleranceSeconds: 5, ...(nonce ? { nonce } : {}) });
      if (v.status !== 'affirming') throw new CustodyError('ERR_POLICY_DENIED', `the broker's verdict is ${v.status}`);
      ear = v.ear;
      if (r.ledgerIndex !== undefined && o.ledger?.proof && o.ledger.entry) {
        const entry = await o.ledger.entry(r.ledgerIndex);
        const proof = await o.ledger.proof(r.ledgerIndex);
        ledger = { index: r.ledgerIndex, event: decodeEvent(entry) as unknown as Record<string, unknown>, proof: formatTlogProof(proof) };
      }
      if (o.modelKey && o.broker.releaseKey) {
        const released = await o.broker.releaseKey(o.modelKey.name, { session, ear: token });
        // The envelope's AAD names the key: a broker cannot hand over another key as this one.
        if (released.context.key !== o.modelKey.name) throw new CustodyError('ERR_KEY_UNWRAP', 'the broker released another key than the one asked for');
        const key = await unwrapKey(released.wrappedKey, { recipientKeyPair: o.keys.tee, context: released.context });
        try {
          await o.modelKey.onKey(key);
        } finally {
          key.fill(0);
        }
      }
    }
    const bundle: AttestationBundle = {
      format: ATTESTATION_BUNDLE_FORMAT,
      platform: platform,
      simulated: claims.simulated,
      evidence: toBase64Url(evidence),
      runtimeData,
      ...(token ? { ear: token } : {}),
      ohttpKeys: toBase64Url(encodeKeyConfigs(keyConfigs)),
      receiptKey: { kty: 'OKP', crv: 'Ed25519', x: toBase64Url(o.keys.receipt.publicKey) },
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
      attestationDigest: 'sha256:' + toHex(await sha256(token ? utf8(token) : evidence)),
    };
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
      const { runtimeData, evidence } = await this.collect(nonce, s.keyConfigs);
      return {
        ...s.bundle,
        evidence: toBase64Url(evidence),
        runtimeData,
        ...(s.bundle.ear ? { earRuntimeData: s.runtimeData } : {}),
        issuedAt: this.o.clock().toISOString(),
      };
    } finally {
      this.challenges--;
    }
  }
}
