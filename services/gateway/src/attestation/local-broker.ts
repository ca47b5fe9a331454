/**
 * In-process appraisal in the shape of the key broker's handshake (docs/key-release-protocol.md
 * sections 1 to 3): single-use expiring nonces, runtime data checks, evidence verification with
 * the expected digest (and of each GPU's evidence with the nonce SHA-256 of the runtime data),
 * appraisal of the composite with a policy (submodules cpu0, gpu0, ...; any failing device
 * fails it, and so does a GPU presented twice), and a real signed EAR carrying the TEE key on cpu0;
 * every verdict goes to the ledger sink. For development (`custody gateway serve --demo`) and
 * tests until the gateway talks to the broker service; it holds its own EAR signing key, so a
 * client must pin this instance's JWKS.
 */
import type { JSONWebKeySet } from 'jose';
import { CustodyError, canonicalize, fromBase64Url, secureRandom, sha256, systemClock, toBase64Url, toHex, utf8, wrapKey, type Clock, type RandomSource } from '@custody/core';
import { gpuAttestationKey, nvidiaVerifier, type EvidenceVerifier, type VerificationResult } from '@custody/attest';
import { createEar, appraise, appraisalReasons, publishJwks, teeKeyFromEar, verifyEar, type CompiledPolicy, type DeviceInput, type EarSigningKey } from '@custody/policy';
import { MAX_BUNDLE_DEVICES, defaultVerifiers, parseRuntimeData, runtimeDigest, type EvidenceVerifierSet } from '@custody/sdk';
import type { AuditSink } from '@custody/ledger';
import type { BrokerAttestRequest, BrokerAttestResult, BrokerChallenge, BrokerClient, ReleasedKeyEnvelope } from './broker-client.js';

export interface LocalAppraisalBrokerOptions {
  policy: CompiledPolicy;
  signingKey: EarSigningKey;
  verifiers?: EvidenceVerifierSet;
  /** Trust anchors for the evidence verifier (e.g. the TPM AK or a private sim key). */
  roots?: Uint8Array[];
  /** Trust anchors for GPU evidence (private PKI, tests); default the pinned NVIDIA Device Identity CA. */
  deviceRoots?: Uint8Array[];
  /** Verifier of GPU evidence; default the NVIDIA verifier. */
  deviceVerifier?: EvidenceVerifier;
  ledger?: AuditSink;
  clock?: Clock;
  random?: RandomSource;
  earTtlSeconds?: number;
  sessionTtlMs?: number;
  /** Secrets this broker releases by name, as version 1 (development: a model decryption key, a replicas' identity key). */
  keys?: Record<string, Uint8Array>;
  issuer?: string;
}

interface Session {
  nonce: Uint8Array;
  expiresAt: number;
}

interface HeldKey {
  material: Uint8Array;
  version: number;
  revoked: boolean;
}

/**
 * The nonce and TEE key of runtime data: the gateway's full form (with its OHTTP and receipt
 * keys), or the key-release protocol's `{nonce, tee-pubkey}` a gateway binds when it attests
 * only to have a key released (its shared identity key).
 */
function readRuntimeData(text: string): { nonce?: Uint8Array; teeX: string } {
  let v: unknown;
  try {
    v = text.length <= 4096 ? JSON.parse(text) : undefined;
  } catch {
    v = undefined;
  }
  const o = typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  if (o && Object.keys(o).sort().join(',') === 'nonce,tee-pubkey') {
    const tee = o['tee-pubkey'] as Record<string, unknown> | null;
    if (canonicalize(o) !== text || typeof o.nonce !== 'string' || typeof tee !== 'object' || tee === null || Object.keys(tee).sort().join(',') !== 'crv,kty,x' || tee.kty !== 'OKP' || tee.crv !== 'X25519' || typeof tee.x !== 'string') {
      throw new CustodyError('ERR_RUNTIME_DATA', 'runtime data is not the canonical {nonce, tee-pubkey} of the key release handshake');
    }
    if (fromBase64Url(tee.x).length !== 32) throw new CustodyError('ERR_RUNTIME_DATA', 'tee-pubkey is not a 32-byte X25519 key');
    return { nonce: fromBase64Url(o.nonce), teeX: tee.x };
  }
  const rd = parseRuntimeData(text);
  return { ...(rd.nonce ? { nonce: rd.nonce } : {}), teeX: rd.value['tee-pubkey'].x };
}

const MAX_SESSIONS = 1024;

export class LocalAppraisalBroker implements BrokerClient {
  private readonly sessions = new Map<string, Session>();
  private policy: CompiledPolicy;
  private readonly clock: Clock;
  private readonly random: RandomSource;
  private readonly held = new Map<string, HeldKey>();

  constructor(private readonly options: LocalAppraisalBrokerOptions) {
    this.policy = options.policy;
    this.clock = options.clock ?? systemClock;
    this.random = options.random ?? secureRandom;
    for (const [name, material] of Object.entries(options.keys ?? {})) this.held.set(name, { material: material.slice(), version: 1, revoked: false });
  }

  /** Gives a held key a new version with this material (version 1 when the name is new); returns the version. */
  rotateKey(name: string, material: Uint8Array): number {
    const k = this.held.get(name);
    if (k?.revoked) throw new CustodyError('ERR_KEY_REVOKED');
    const version = (k?.version ?? 0) + 1;
    k?.material.fill(0);
    this.held.set(name, { material: material.slice(), version, revoked: false });
    return version;
  }

  /** Revokes a held key for good: nothing more is released under its name. */
  revokeKey(name: string): void {
    const k = this.held.get(name);
    if (!k) throw new CustodyError('ERR_KEY_NOT_FOUND');
    k.revoked = true;
    k.material.fill(0);
  }

  /** Replaces the appraisal policy (e.g. a measurement is no longer accepted: the next re-attestation fails). */
  setPolicy(policy: CompiledPolicy): void {
    this.policy = policy;
  }

  get policyId(): string {
    return this.policy.policyId;
  }

  challenge(): Promise<BrokerChallenge> {
    const now = this.clock().getTime();
    for (const [id, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(id);
    if (this.sessions.size >= MAX_SESSIONS) return Promise.reject(new CustodyError('ERR_GATEWAY_OVERLOADED', 'too many open attestation sessions'));
    const session = toBase64Url(this.random(16));
    const nonce = this.random(32);
    const expiresAt = now + (this.options.sessionTtlMs ?? 120_000);
    this.sessions.set(session, { nonce, expiresAt });
    return Promise.resolve({ session, nonce, expiresAt: new Date(expiresAt) });
  }

  async attest(req: BrokerAttestRequest): Promise<BrokerAttestResult> {
    const now = this.clock();
    const s = this.sessions.get(req.session);
    // Single use: the nonce is consumed before anything else can fail.
    this.sessions.delete(req.session);
    if (!s) throw new CustodyError('ERR_SESSION_NOT_FOUND');
    if (s.expiresAt <= now.getTime()) throw new CustodyError('ERR_SESSION_EXPIRED');
    const rd = readRuntimeData(req.runtimeData);
    if (!rd.nonce || toBase64Url(rd.nonce) !== toBase64Url(s.nonce)) throw new CustodyError('ERR_EVIDENCE_NONCE', 'runtime data does not carry the session nonce');
    const devices = req.devices ?? [];
    if (devices.length > MAX_BUNDLE_DEVICES) throw new CustodyError('ERR_INPUT_TOO_LARGE', `at most ${MAX_BUNDLE_DEVICES} devices per attestation`);
    const expected = await runtimeDigest(req.platform, req.runtimeData);
    const verifiers = this.options.verifiers ?? defaultVerifiers;
    const result = await verifiers.verify({ evidence: req.evidence, platform: req.platform, now, nonce: expected, ...(this.options.roots ? { roots: this.options.roots } : {}) });
    bindTo(result, expected);
    // The composite: the CPU is cpu0 (it carries the TEE key), GPU i is gpu<i>, each verified
    // with the nonce SHA-256(runtime data); one failed device makes the whole appraisal fail.
    const composite: Record<string, DeviceInput> = { cpu0: result };
    if (devices.length > 0) {
      const gpuNonce = await runtimeDigest('nvidia', req.runtimeData);
      const verifier = this.options.deviceVerifier ?? nvidiaVerifier;
      const roots = this.options.deviceRoots;
      // GPU attestation key (the GPU's identity) -> the first submodule that presented it.
      const seen = new Map<string, string>();
      for (const [i, d] of devices.entries()) {
        if (d.platform !== 'nvidia') throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'device evidence is NVIDIA GPU evidence only', { detail: { device: `gpu${i}` } });
        const r = await verifier.verify({ evidence: d.evidence, now, nonce: gpuNonce, ...(roots && roots.length > 0 ? { roots } : {}) });
        if (r.ok && r.claims?.platform !== 'nvidia') {
          r.ok = false;
          r.errors.push({ code: 'ERR_INPUT_UNSUPPORTED', message: 'device evidence is not NVIDIA GPU evidence' });
        }
        composite[`gpu${i}`] = onceEach(bindTo(r, gpuNonce), `gpu${i}`, seen);
      }
    }
    const appraisal = appraise(this.policy, composite, { now });
    const evidenceDigest = 'sha256:' + toHex(await sha256(req.evidence));
    if (appraisal.status !== 'affirming') {
      const reasons = appraisalReasons(appraisal);
      await this.options.ledger?.append({
        v: 1,
        type: 'attestation.appraised',
        time: now.toISOString(),
        actor: 'custody-local-broker',
        evidenceFormat: req.platform as 'sim',
        evidenceDigest,
        verdict: appraisal.status,
        policyId: `custody:policy:${this.policy.document.id}:${this.policy.document.version}`,
        policyDigest: 'sha256:' + this.policy.digest,
        workload: 'custody-gateway',
        reasons: [...new Set(reasons.map((r) => r.code))].slice(0, 16),
      });
      // The decisive reason (a contraindication rather than a warning of another submodule).
      const first = reasons.find((r) => r.tier === 'contraindicated') ?? reasons[0];
      throw new CustodyError(first?.code ?? 'ERR_POLICY_DENIED', `appraisal is ${appraisal.status}${first ? `: ${first.submod}: ${first.reason}` : ''}`, { detail: { status: appraisal.status, ...(first ? { submod: first.submod } : {}) } });
    }
    const { token } = await createEar(appraisal, this.options.signingKey, {
      now,
      verifierId: { developer: 'https://custody.dev', build: 'custody-gateway local appraisal' },
      nonce: s.nonce,
      teePublicKey: { kty: 'OKP', crv: 'X25519', x: rd.teeX },
      ttlSeconds: this.options.earTtlSeconds ?? 300,
      random: this.random,
      ...(this.options.issuer ? { issuer: this.options.issuer } : {}),
    });
    const logged = await this.options.ledger?.append({
      v: 1,
      type: 'attestation.appraised',
      time: now.toISOString(),
      actor: 'custody-local-broker',
      evidenceFormat: req.platform as 'sim',
      evidenceDigest,
      verdict: 'affirming',
      policyId: `custody:policy:${this.policy.document.id}:${this.policy.document.version}`,
      policyDigest: 'sha256:' + this.policy.digest,
      resultDigest: 'sha256:' + toHex(await sha256(utf8(token))),
      workload: 'custody-gateway',
    });
    return logged ? { ear: token, ledgerIndex: logged.index } : { ear: token };
  }

  /**
   * Releases a named secret given at construction, wrapped to the TEE key of a valid EAR this
   * broker issued for the session; the envelope's AAD names the key (key-release protocol §4).
   */
  async releaseKey(name: string, req: { session: string; ear: string }): Promise<ReleasedKeyEnvelope> {
    const held = this.held.get(name);
    if (!held) throw new CustodyError('ERR_KEY_NOT_FOUND');
    if (held.revoked) throw new CustodyError('ERR_KEY_REVOKED');
    const v = await verifyEar(req.ear, { jwks: await this.jwks(), now: this.clock() });
    if (v.status !== 'affirming') throw new CustodyError('ERR_POLICY_DENIED', 'the EAR is not affirming');
    const tee = await teeKeyFromEar(v.ear);
    if (tee.kty !== 'OKP' || tee.crv !== 'X25519' || typeof tee.x !== 'string') throw new CustodyError('ERR_KEY_RECIPIENT');
    const context = { tenant: 'local', key: name, version: held.version };
    return { wrappedKey: await wrapKey(held.material, { recipientPublicKey: fromBase64Url(tee.x), context }), context };
  }

  jwks(): Promise<JSONWebKeySet> {
    return Promise.resolve(publishJwks([this.options.signingKey]));
  }
}

/** Fails a verification whose report data is not the expected runtime data digest. */
function bindTo(result: VerificationResult, expected: Uint8Array): VerificationResult {
  if (result.ok && result.claims && result.claims.reportData !== toHex(expected)) {
    result.ok = false;
    result.errors.push({ code: 'ERR_EVIDENCE_BINDING', message: 'report data is not the runtime data digest' });
  }
  return result;
}

/**
 * Fails a verified GPU whose attestation key (`platformClaims.attestationKeySha256`, its
 * identity) an earlier submodule already presented: one GPU sent twice is not appraised as two
 * (ERR_EVIDENCE_DEVICE_REPEATED on the later one). Verified evidence that names no key cannot
 * be told apart from another GPU and fails too.
 */
function onceEach(result: VerificationResult, name: string, seen: Map<string, string>): VerificationResult {
  if (!result.ok || !result.claims) return result;
  const identity = gpuAttestationKey(result.claims.platformClaims);
  if (identity === undefined) {
    result.ok = false;
    result.errors.push({ code: 'ERR_INPUT_UNSUPPORTED', message: 'the device evidence names no GPU attestation key' });
    return result;
  }
  const first = seen.get(identity);
  if (first !== undefined) {
    result.ok = false;
    result.errors.push({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', message: `the same GPU (attestation key) as ${first}` });
    return result;
  }
  seen.set(identity, name);
  return result;
}

/** Canonical JSON of a challenge response, as the broker's HTTP endpoint returns it. */
export function challengeJson(c: BrokerChallenge): string {
  return canonicalize({ session: c.session, nonce: toBase64Url(c.nonce), expiresAt: c.expiresAt.toISOString() });
}
