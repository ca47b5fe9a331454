import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';
import { CustodyError, secureRandom, systemClock, timingSafeEqual, toBase64, toHex, toCustodyError, utf8, wipe, type Bytes, type Clock } from '@custody/core';
import { AUDIT_BOUNDS, boundAuditEvent, clipAudited } from '../audit/bound-event.js';
import type { AuditAction, AuditEvent, AuditRecord, AuditSink, AuditVerdict } from '../audit/types.js';
import { issueApiKey } from '../auth/api-keys.js';
import { authorize, type Permission, type Principal } from '../auth/roles.js';
import type { KeyStore, KeyWrapper, RecipientKey, ReleaseContext, WrappedKey } from '../keystore/types.js';
import type { ApiKeyRecord, MetadataStore, Role, StoredAuditEvent } from '../metadata/types.js';
import { decodeWrappedDataKey, encodeWrappedDataKey, envelopeAad, type EncryptionContext } from './envelope.js';
import type { ReleasePolicyEvaluator } from './release-policy.js';
import {
  assertKeyName,
  assertKeyType,
  assertTenant,
  defaultExportable,
  isSigningType,
  MAX_POLICY_CHARS,
  type KeyOrigin,
  type KeyRecord,
  type KeyType,
  type KeyVersionRecord,
  type MaterialRef,
} from './types.js';

export interface KeyServiceOptions {
  metadata: MetadataStore;
  keystore: KeyStore;
  /** Every administrative change, release and denial goes here (the ledger, or the interim table). */
  audit: AuditSink;
  /** Wraps released material to the TEE key (HPKE) for stores without `wrapsInside`. */
  wrapper: KeyWrapper;
  /** Evaluates release policies (CEL, packages/policy). */
  policy: ReleasePolicyEvaluator;
  clock?: Clock;
  logger?: Logger;
}

/** Public metadata of one key version. */
export interface KeyVersionView {
  version: number;
  state: 'enabled' | 'destroyed';
  origin: KeyOrigin;
  /** `current`: used for new releases, wraps and signatures; `decrypt-only`: an older version that still unwraps. */
  usage: 'current' | 'decrypt-only' | 'none';
  materialLength: number;
  /** SubjectPublicKeyInfo DER, base64, for signing keys. */
  publicKey?: string;
  createdAt: string;
  destroyedAt?: string;
}

/** Public metadata of a key: everything but its material. */
export interface KeyView {
  id: string;
  tenant: string;
  name: string;
  type: KeyType;
  state: KeyRecord['state'];
  exportable: boolean;
  currentVersion: number;
  releasePolicy: string | null;
  createdAt: string;
  updatedAt: string;
  revokedAt?: string;
  destroyedAt?: string;
  versions: KeyVersionView[];
}

export interface CreateKeyInput {
  tenant: string;
  name: string;
  type: KeyType;
  /** Default: true for aes-256 and secret, false for signing keys. */
  exportable?: boolean;
  /** CEL release policy; absent means the key is never released. */
  releasePolicy?: string | null;
  /** Generated secret length in bytes (secret keys only; default 32, at most 64 KiB). */
  length?: number;
}

export interface ImportKeyInput extends Omit<CreateKeyInput, 'length'> {
  /** Raw bytes (aes-256: 32; secret: 1..65536) or PKCS#8 DER for signing keys. */
  material: Uint8Array;
}

export interface RotateKeyInput {
  tenant: string;
  name: string;
  /** Imported material for the new version; generated when absent. */
  material?: Uint8Array;
  length?: number;
}

/** The verified attestation a release is decided on (produced by the handshake and appraisal). */
export interface ReleaseAttestation {
  /** A session the handshake created, consumed the nonce of, and bound with `releaseBinding`. */
  sessionId: string;
  /** Claims of the verified EAR token. */
  ear: Record<string, unknown>;
  /** SHA-256 of the EAR token as received, hex: identifies it in audit events. */
  earDigest: string;
  /** Main measurement of the workload, hex, for the audit event. */
  measurement?: string;
}

export interface ReleaseRequest {
  principal: Principal;
  tenant: string;
  name: string;
  attestation: ReleaseAttestation;
  /** The TEE's ephemeral public key bound into the evidence. */
  recipient: RecipientKey;
  /**
   * Asked once per refusal: whether it is appended to the audit log (else it is only logged).
   * The handshake passes its per-session bound (the first three refusals of a session), so one
   * session cannot grow the ledger without bound. Default: every refusal is appended.
   */
  auditsDenial?: () => boolean;
}

export interface ReleasedKey {
  key: { id: string; name: string; type: KeyType; version: number };
  wrapped: WrappedKey;
  /** The release context the wrapping authenticates (as canonical JSON); the TEE needs it to unwrap. */
  context: ReleaseContext;
  /** Index of the audit event that recorded this release: in the ledger, or in the interim table when `auditInterim`. */
  auditIndex: number;
  /** The event waits in the interim table (the ledger could not take it); it is forwarded later. */
  auditInterim?: boolean;
}

export interface GeneratedDataKey {
  /** The data key in plaintext, for the caller to encrypt with and then wipe. */
  plaintext: Bytes;
  /** The data key wrapped by the KEK (`cdk1....`), to store next to the data. */
  wrapped: string;
  version: number;
}

const RELEASE_ATTEMPTS = 3;
const SYSTEM: Principal = { tenant: 'system', role: 'admin', subject: 'system' };

/**
 * The broker's key management: lifecycle, envelope helpers, signing and attested release, all
 * authorised, audited and logged without key material. State is never cached: every decision
 * reads the metadata store, and a release re-reads the key's state after the material was
 * wrapped and again after the audit event was written, immediately before returning it. A
 * revoke committed at any point before that final read stops the release.
 */
export class KeyService {
  private readonly metadata: MetadataStore;
  private readonly keystore: KeyStore;
  private readonly auditSink: AuditSink;
  private readonly wrapper: KeyWrapper;
  private readonly policy: ReleasePolicyEvaluator;
  private readonly clock: Clock;
  private readonly log: Logger;
  /**
   * A change that stops or narrows releases (revoke, destroy, a new release policy) failed because
   * the metadata store took no write: releases wait until a write succeeds again (see release).
   */
  private stopFailed = false;

  constructor(options: KeyServiceOptions) {
    this.metadata = options.metadata;
    this.keystore = options.keystore;
    this.auditSink = options.audit;
    this.wrapper = options.wrapper;
    this.policy = options.policy;
    this.clock = options.clock ?? systemClock;
    this.log = options.logger ?? pino({ level: 'silent' });
  }

  // lifecycle

  async create(principal: Principal, input: CreateKeyInput): Promise<KeyView> {
    return this.createOrImport(principal, 'key.create', input, undefined);
  }

  async import(principal: Principal, input: ImportKeyInput): Promise<KeyView> {
    return this.createOrImport(principal, 'key.import', input, input.material);
  }

  async rotate(principal: Principal, input: RotateKeyInput): Promise<KeyView> {
    await this.authorize(principal, 'key.write', input.tenant, 'key.rotate');
    const key = await this.requireKey(input.tenant, input.name);
    assertUsable(key);
    const current = await this.metadata.getVersion(key.id, key.currentVersion);
    const next = key.currentVersion + 1;
    const ref: MaterialRef = { keyId: key.id, version: next, materialId: newId('mat'), type: key.type };
    const spec = { type: key.type, exportable: key.exportable, length: input.length ?? (key.type === 'secret' ? current?.materialLength : undefined) };
    const info = input.material ? await this.keystore.import(ref, spec, input.material) : await this.keystore.generate(ref, spec);
    const version = this.versionRecord(ref, input.material ? 'imported' : 'generated', info.length, info.publicKey);
    const subject = { id: key.id, name: key.name, type: key.type, version: next };
    await this.auditBeforeChange(principal, 'key.rotate', key.tenant, subject, { origin: version.origin }, [ref]);
    try {
      const updated = await this.metadata.addVersion(key.id, key.currentVersion, version, version.createdAt);
      this.log.info({ op: 'key.rotate', tenant: key.tenant, key: key.name, keyId: key.id, version: next }, 'key rotated');
      return this.view(updated);
    } catch (e) {
      await this.undoUnlessRecorded(e, () => this.metadata.getVersion(key.id, next).then((v) => v?.materialId === ref.materialId), principal, 'key.rotate', key.tenant, subject, [ref]);
      throw e;
    }
  }

  async revoke(principal: Principal, input: { tenant: string; name: string; reason?: string }): Promise<KeyView> {
    await this.authorize(principal, 'key.write', input.tenant, 'key.revoke');
    const key = await this.requireKey(input.tenant, input.name);
    // The state change is the revocation: from this commit on, checkRelease denies.
    const revoked = await this.stopping(() => this.metadata.transitionKey(key.id, ['active'], 'revoked', this.now()));
    await this.auditAfterChange(principal, 'key.revoke', key.tenant, { id: key.id, name: key.name, type: key.type, version: key.currentVersion }, input.reason ? { reason: input.reason.slice(0, 200) } : undefined);
    this.log.info({ op: 'key.revoke', tenant: key.tenant, key: key.name, keyId: key.id }, 'key revoked');
    return this.view(revoked);
  }

  /**
   * Marks the key destroyed (no use from this commit on), erases the material of every version
   * in the key store, then marks the versions destroyed. Metadata stays. If erasing fails the
   * key is already unusable; calling destroy again finishes the erasure.
   */
  async destroy(principal: Principal, input: { tenant: string; name: string }): Promise<KeyView> {
    await this.authorize(principal, 'key.write', input.tenant, 'key.destroy');
    const key = await this.requireKey(input.tenant, input.name);
    const versions = await this.metadata.listVersions(key.id);
    const remaining = versions.filter((v) => v.state !== 'destroyed');
    if (key.state === 'destroyed' && remaining.length === 0) throw new CustodyError('ERR_KEY_DESTROYED', undefined, { detail: { keyId: key.id } });
    const at = this.now();
    const destroyed = key.state === 'destroyed' ? key : await this.stopping(() => this.metadata.transitionKey(key.id, ['active', 'revoked'], 'destroyed', at));
    await this.keystore.erase(remaining.map((v) => ({ keyId: key.id, version: v.version, materialId: v.materialId, type: key.type })));
    await this.metadata.markVersionsDestroyed(key.id, at);
    await this.auditAfterChange(principal, 'key.destroy', key.tenant, { id: key.id, name: key.name, type: key.type, version: key.currentVersion }, { versionsErased: remaining.length });
    this.log.info({ op: 'key.destroy', tenant: key.tenant, key: key.name, keyId: key.id, versionsErased: remaining.length }, 'key destroyed');
    return this.view(destroyed);
  }

  async setReleasePolicy(principal: Principal, input: { tenant: string; name: string; policy: string | null }): Promise<KeyView> {
    await this.authorize(principal, 'key.write', input.tenant, 'key.policy.set');
    const key = await this.requireKey(input.tenant, input.name);
    assertUsable(key);
    await this.validatePolicy(input.policy);
    await this.auditBeforeChange(principal, 'key.policy.set', key.tenant, { id: key.id, name: key.name, type: key.type }, policyDetail(input.policy), []);
    const updated = await this.stopping(() => this.metadata.setReleasePolicy(key.id, input.policy, this.now()));
    this.log.info({ op: 'key.policy.set', tenant: key.tenant, key: key.name, keyId: key.id }, 'release policy set');
    return this.view(updated);
  }

  async get(principal: Principal, tenant: string, name: string): Promise<KeyView> {
    await this.authorize(principal, 'key.read', tenant);
    return this.view(await this.requireKey(tenant, name));
  }

  async list(principal: Principal, tenant: string): Promise<KeyView[]> {
    await this.authorize(principal, 'key.read', tenant);
    const keys = await this.metadata.listKeys(tenant);
    return Promise.all(keys.map((k) => this.view(k)));
  }

  // envelope helpers

  /** Generates a 32-byte data key and wraps it with the current version of the `kek` key. */
  async generateDataKey(principal: Principal, input: { tenant: string; kek: string; context?: EncryptionContext }): Promise<GeneratedDataKey> {
    await this.authorize(principal, 'key.use', input.tenant, 'key.datakey.generate');
    await this.confirmWrites();
    const key = await this.requireKey(input.tenant, input.kek);
    assertUsable(key);
    if (key.type !== 'aes-256') throw new CustodyError('ERR_KEY_TYPE', 'a key-encryption key must be aes-256', { detail: { type: key.type } });
    const { ref } = await this.current(key);
    const plaintext = secureRandom(32);
    try {
      const sealed = await this.keystore.encrypt(ref, plaintext, envelopeAad(key.tenant, key.id, ref.version, input.context));
      await this.auditUse(principal, 'key.datakey.generate', key, ref.version);
      return { plaintext, wrapped: encodeWrappedDataKey({ keyId: key.id, version: ref.version, sealed }), version: ref.version };
    } catch (e) {
      wipe(plaintext);
      throw e;
    }
  }

  /** Unwraps a data key with the KEK version it names; older versions still unwrap. */
  async unwrapDataKey(principal: Principal, input: { tenant: string; wrapped: string; context?: EncryptionContext }): Promise<Bytes> {
    await this.authorize(principal, 'key.use', input.tenant, 'key.datakey.unwrap');
    await this.confirmWrites();
    const w = decodeWrappedDataKey(input.wrapped);
    const key = await this.metadata.getKeyById(w.keyId);
    // Another tenant's key id is reported exactly like an unknown one.
    if (!key || key.tenant !== input.tenant) throw new CustodyError('ERR_KEY_NOT_FOUND');
    assertUsable(key);
    const version = await this.metadata.getVersion(key.id, w.version);
    if (!version) throw new CustodyError('ERR_KEY_VERSION', undefined, { detail: { version: w.version } });
    if (version.state === 'destroyed') throw new CustodyError('ERR_KEY_DESTROYED');
    const ref: MaterialRef = { keyId: key.id, version: version.version, materialId: version.materialId, type: key.type };
    const plaintext = await this.keystore.decrypt(ref, w.sealed, envelopeAad(key.tenant, key.id, w.version, input.context));
    try {
      await this.auditUse(principal, 'key.datakey.unwrap', key, w.version);
      return plaintext;
    } catch (e) {
      wipe(plaintext);
      throw e;
    }
  }

  /** Signs with the current version of a signing key, inside the key store. */
  async sign(principal: Principal, input: { tenant: string; name: string; data: Uint8Array }): Promise<{ signature: Bytes; version: number }> {
    await this.authorize(principal, 'key.use', input.tenant, 'key.sign');
    await this.confirmWrites();
    const key = await this.requireKey(input.tenant, input.name);
    assertUsable(key);
    if (!isSigningType(key.type)) throw new CustodyError('ERR_KEY_TYPE', 'only signing keys sign', { detail: { type: key.type } });
    const { ref } = await this.current(key);
    const signature = await this.keystore.sign(ref, input.data);
    await this.auditUse(principal, 'key.sign', key, ref.version, { dataDigest: `sha256:${sha256Hex(input.data)}` });
    return { signature, version: ref.version };
  }

  // release

  /**
   * Releases the current version of a key to an attested TEE, wrapped to its public key.
   * Called by the handshake after it verified the evidence, the EAR and the session. Denies
   * (throws, and audits the denial) unless: the caller is a workload of the key's tenant, the
   * key is active and exportable, it has a release policy and the policy allows this EAR. The
   * key's state is re-read after wrapping and after auditing; a rotation in between restarts
   * the release with the new version, a revocation or destruction denies it.
   */
  async release(req: ReleaseRequest): Promise<ReleasedKey> {
    const { principal, tenant, name, attestation } = req;
    // Audit facts in the ledger's form: digests as `sha256:<hex>` or bare hex under a `...Digest` name.
    const base = {
      session: attestation.sessionId,
      earDigest: attestation.earDigest,
      recipientDigest: `sha256:${sha256Hex(req.recipient.publicKey)}`,
      recipientCurve: req.recipient.curve,
      ...(attestation.measurement ? { measurement: attestation.measurement } : {}),
    };
    await this.authorize(principal, 'key.release', tenant, 'key.release');
    let subject: AuditEvent['key'] | undefined;
    let denialAudited = false;
    try {
      await this.confirmWrites();
      await this.checkSession(tenant, attestation, req.recipient);
      for (let attempt = 1; ; attempt++) {
        const key = await this.requireKey(tenant, name);
        subject = { id: key.id, name: key.name, type: key.type, version: key.currentVersion };
        assertUsable(key);
        if (!key.exportable) throw new CustodyError('ERR_KEY_NOT_EXPORTABLE');
        if (key.releasePolicy === null) throw new CustodyError('ERR_KEY_NO_RELEASE_POLICY');
        const { ref, record: version } = await this.current(key);
        const decision = await this.evaluatePolicy(key, ref.version, attestation);
        if (!decision.allow) throw new CustodyError('ERR_POLICY_DENIED', undefined, { detail: { rule: decision.reason ?? 'policy returned false' } });
        const context: ReleaseContext = {
          v: 1,
          purpose: 'custody/key-release',
          tenant: key.tenant,
          keyId: key.id,
          name: key.name,
          type: key.type,
          version: ref.version,
          length: version.materialLength,
          session: attestation.sessionId,
          earDigest: attestation.earDigest,
        };
        const wrapped = await this.keystore.wrapForRelease(ref, req.recipient, context, this.wrapper);
        // A rotation or a new release policy since the key was read restarts the release (the
        // next round evaluates the new version or policy); a revocation or destruction denies it.
        const before = await this.metadata.checkRelease(key.id, ref.version, key.releasePolicy);
        if ((before === 'rotated' || before === 'policy-changed') && attempt < RELEASE_ATTEMPTS) continue;
        throwUnlessOk(before);
        let recorded: AuditRecord;
        try {
          recorded = await this.appendAudit(principal, 'key.release', tenant, subject, 'allow', undefined, { ...base, policyDigest: `sha256:${sha256Hex(key.releasePolicy)}` });
        } catch (e) {
          throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', undefined, { cause: e, detail: { applied: false } });
        }
        // The final re-check: nothing is awaited between it and handing the result back.
        const after = await this.metadata.checkRelease(key.id, ref.version, key.releasePolicy);
        if (after !== 'ok') {
          await this.appendAudit(principal, 'key.release', tenant, subject, 'deny', releaseCheckCode(after), { ...base, supersedes: recorded.index }).catch(() => undefined);
          if ((after === 'rotated' || after === 'policy-changed') && attempt < RELEASE_ATTEMPTS) continue;
          denialAudited = true;
          throwUnlessOk(after);
        }
        this.log.info({ op: 'key.release', tenant, key: name, keyId: key.id, version: ref.version, session: attestation.sessionId, auditIndex: recorded.index, ...(recorded.interim ? { auditInterim: true } : {}) }, 'key released');
        return { key: { id: key.id, name: key.name, type: key.type, version: ref.version }, wrapped, context, auditIndex: recorded.index, ...(recorded.interim ? { auditInterim: true } : {}) };
      }
    } catch (e) {
      const err = toCustodyError(e);
      if (err.code !== 'ERR_STORE_AUDIT_UNAVAILABLE' && !denialAudited && (req.auditsDenial?.() ?? true)) {
        await this.appendAudit(principal, 'key.release', tenant, subject, err.code === 'ERR_INTERNAL' ? 'error' : 'deny', err.code, { ...base, name: clipAudited(name, AUDIT_BOUNDS.name) }).catch(() => undefined);
      }
      // The name is the caller's (up to a URL long when it is not a key name): logged clipped too.
      this.log.warn({ op: 'key.release', tenant, key: clipAudited(name, AUDIT_BOUNDS.name), session: attestation.sessionId, code: err.code }, 'key release denied');
      throw err;
    }
  }

  /**
   * The release must belong to a live, attested session of this tenant whose binding (written by
   * the handshake with `releaseBinding`) names this EAR and this recipient key.
   */
  private async checkSession(tenant: string, attestation: ReleaseAttestation, recipient: RecipientKey): Promise<void> {
    const session = await this.metadata.getSession(attestation.sessionId);
    if (!session) throw new CustodyError('ERR_SESSION_NOT_FOUND');
    if (session.tenant !== tenant) throw new CustodyError('ERR_SESSION_MISMATCH', 'the session belongs to another tenant');
    if (session.expiresAt <= this.now()) throw new CustodyError('ERR_SESSION_EXPIRED');
    if (session.state !== 'attested' || !session.binding) throw new CustodyError('ERR_SESSION_MISMATCH', 'the session has no attestation result', { detail: { state: session.state } });
    const expected = releaseBinding(attestation.earDigest, recipient);
    if (!timingSafeEqual(utf8(session.binding.earDigest ?? ''), utf8(expected.earDigest))) throw new CustodyError('ERR_SESSION_MISMATCH', 'the attestation result is not the one bound to this session');
    if (!timingSafeEqual(utf8(session.binding.recipientSha256 ?? ''), utf8(expected.recipientSha256))) throw new CustodyError('ERR_SESSION_MISMATCH', 'the recipient key is not the one bound to this session');
  }

  // API keys and the interim audit table

  async createApiKey(principal: Principal, input: { tenant: string; role: Role; label: string }): Promise<{ token: string; apiKey: ApiKeyView }> {
    await this.authorize(principal, 'apikey.write', input.tenant, 'apikey.create');
    const issued = await issueApiKey(this.metadata, { ...input, createdBy: principal.subject, now: this.now() });
    await this.auditAfterChange(principal, 'apikey.create', input.tenant, undefined, { apiKeyId: issued.record.id, role: input.role });
    this.log.info({ op: 'apikey.create', tenant: input.tenant, apiKeyId: issued.record.id, role: input.role }, 'API key created');
    return { token: issued.token, apiKey: apiKeyView(issued.record) };
  }

  /** Issues an admin key for a tenant without a caller (first start, `custody up`). */
  /** `beforeInsert`: given the token before the key is stored (a key file written first is never left without its key, nor a key without its file). */
  async bootstrapAdminKey(tenant: string, label = 'bootstrap', beforeInsert?: (token: string) => void): Promise<{ token: string; apiKey: ApiKeyView }> {
    assertTenant(tenant);
    const issued = await issueApiKey(this.metadata, { tenant, role: 'admin', label, createdBy: 'system', now: this.now(), ...(beforeInsert ? { beforeInsert } : {}) });
    await this.auditAfterChange({ ...SYSTEM, tenant }, 'apikey.create', tenant, undefined, { apiKeyId: issued.record.id, role: 'admin', bootstrap: true });
    return { token: issued.token, apiKey: apiKeyView(issued.record) };
  }

  async listApiKeys(principal: Principal, tenant: string): Promise<ApiKeyView[]> {
    await this.authorize(principal, 'apikey.read', tenant);
    return (await this.metadata.listApiKeys(tenant)).map(apiKeyView);
  }

  async revokeApiKey(principal: Principal, input: { tenant: string; id: string }): Promise<void> {
    await this.authorize(principal, 'apikey.write', input.tenant, 'apikey.revoke');
    if (!(await this.metadata.revokeApiKey(input.tenant, input.id, this.now()))) throw new CustodyError('ERR_AUTH_INVALID', 'no active API key with this id in this tenant');
    await this.auditAfterChange(principal, 'apikey.revoke', input.tenant, undefined, { apiKeyId: input.id });
  }

  async readInterimAudit(principal: Principal, tenant: string, after: number, limit: number): Promise<StoredAuditEvent[]> {
    await this.authorize(principal, 'audit.read', tenant);
    return this.metadata.readAudit(tenant, after, Math.min(Math.max(limit, 1), 1000));
  }

  /** Records a denial decided outside the service (the HTTP layer refusing a route). */
  async recordDenial(principal: Principal, tenant: string, attempted: string, code: string): Promise<void> {
    this.log.warn({ op: attempted, tenant, subject: principal.subject, role: principal.role, code }, 'request denied');
    await this.appendAudit(principal, 'auth.denied', tenant, undefined, 'deny', code, { attempted }).catch(() => undefined);
  }

  /** Readiness: both stores answer. */
  async ping(): Promise<void> {
    await this.metadata.ping();
    await this.keystore.ping();
  }

  // internals

  /**
   * Runs a metadata write that stops or narrows releases. When the store cannot take it
   * (ERR_STORE_UNAVAILABLE: a read-only or full disk, a standby), an operator's revocation did
   * not happen while every read still works, so releases would go on: from then on each release
   * first checks that the store takes writes again (`confirmWrites`), and is refused until it does.
   */
  private async stopping<T>(write: () => Promise<T>): Promise<T> {
    try {
      return await write();
    } catch (e) {
      if (toCustodyError(e).code === 'ERR_STORE_UNAVAILABLE' && !this.stopFailed) {
        this.stopFailed = true;
        this.log.error({ op: 'store.write_failed' }, 'the metadata store took no write of a revocation, destruction or release policy: releases are refused until it takes writes again');
      }
      throw e;
    }
  }

  /** After a failed stopping write: a write to the store (its ping) must succeed before any use. */
  private async confirmWrites(): Promise<void> {
    if (!this.stopFailed) return;
    try {
      await this.metadata.ping();
    } catch (e) {
      throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store takes no writes, and a revocation, destruction or release policy may not have been recorded: no release until it does', { cause: e });
    }
    if (this.stopFailed) {
      this.stopFailed = false;
      this.log.info({ op: 'store.writes_back' }, 'the metadata store takes writes again: releases resume');
    }
  }

  private async createOrImport(principal: Principal, action: 'key.create' | 'key.import', input: CreateKeyInput, material: Uint8Array | undefined): Promise<KeyView> {
    await this.authorize(principal, 'key.write', input.tenant, action);
    assertTenant(input.tenant);
    assertKeyName(input.name);
    assertKeyType(input.type);
    const exportable = input.exportable ?? defaultExportable(input.type);
    if (exportable && !this.keystore.capabilities.exportableTypes.includes(input.type)) {
      throw new CustodyError('ERR_KEY_UNSUPPORTED', `the ${this.keystore.kind} key store cannot export ${input.type} keys; create it non-exportable`, { detail: { type: input.type } });
    }
    if (input.length !== undefined && input.type !== 'secret') throw new CustodyError('ERR_KEY_TYPE', 'length applies to secrets only');
    const policy = input.releasePolicy ?? null;
    await this.validatePolicy(policy);
    if (await this.metadata.getKey(input.tenant, input.name)) throw new CustodyError('ERR_KEY_EXISTS', undefined, { detail: { name: input.name } });
    const now = this.now();
    const keyId = newId('key');
    const ref: MaterialRef = { keyId, version: 1, materialId: newId('mat'), type: input.type };
    const spec = { type: input.type, exportable, length: input.length };
    const info = material ? await this.keystore.import(ref, spec, material) : await this.keystore.generate(ref, spec);
    const key: KeyRecord = {
      id: keyId,
      tenant: input.tenant,
      name: input.name,
      type: input.type,
      state: 'active',
      exportable,
      currentVersion: 1,
      releasePolicy: policy,
      createdAt: now,
      updatedAt: now,
      revokedAt: null,
      destroyedAt: null,
    };
    const subject = { id: keyId, name: input.name, type: input.type, version: 1 };
    await this.auditBeforeChange(principal, action, input.tenant, subject, { exportable, ...policyDetail(policy) }, [ref]);
    try {
      await this.metadata.insertKey(key, this.versionRecord(ref, material ? 'imported' : 'generated', info.length, info.publicKey, now));
    } catch (e) {
      await this.undoUnlessRecorded(e, () => this.metadata.getKey(input.tenant, input.name).then((k) => k?.id === keyId), principal, action, input.tenant, subject, [ref]);
      throw e;
    }
    this.log.info({ op: action, tenant: key.tenant, key: key.name, keyId, type: key.type, exportable }, action === 'key.create' ? 'key created' : 'key imported');
    return this.view(key);
  }

  private versionRecord(ref: MaterialRef, origin: KeyOrigin, length: number, publicKey: Bytes | null, at = this.now()): KeyVersionRecord {
    return { keyId: ref.keyId, version: ref.version, state: 'enabled', origin, materialId: ref.materialId, materialLength: length, publicKey, createdAt: at, destroyedAt: null };
  }

  private async current(key: KeyRecord): Promise<{ ref: MaterialRef; record: KeyVersionRecord }> {
    const v = await this.metadata.getVersion(key.id, key.currentVersion);
    if (!v) throw new CustodyError('ERR_KEY_VERSION', undefined, { detail: { version: key.currentVersion } });
    if (v.state === 'destroyed') throw new CustodyError('ERR_KEY_DESTROYED');
    return { ref: { keyId: key.id, version: v.version, materialId: v.materialId, type: key.type }, record: v };
  }

  private async requireKey(tenant: string, name: string): Promise<KeyRecord> {
    assertTenant(tenant);
    assertKeyName(name);
    const key = await this.metadata.getKey(tenant, name);
    if (!key) throw new CustodyError('ERR_KEY_NOT_FOUND', undefined, { detail: { name } });
    return key;
  }

  private async validatePolicy(policy: string | null): Promise<void> {
    if (policy === null) return;
    if (policy.length === 0 || policy.length > MAX_POLICY_CHARS) throw new CustodyError('ERR_POLICY_INVALID', `release policy must be 1..${MAX_POLICY_CHARS} characters`);
    await this.policy.validate(policy);
  }

  private async evaluatePolicy(key: KeyRecord, version: number, attestation: ReleaseAttestation): Promise<{ allow: boolean; reason?: string }> {
    try {
      return await this.policy.evaluate(key.releasePolicy!, {
        ear: attestation.ear,
        key: { tenant: key.tenant, name: key.name, type: key.type, version },
        session: { id: attestation.sessionId },
      });
    } catch (e) {
      // An evaluator failure is a denial, never an implicit allow.
      if (e instanceof CustodyError) throw e;
      throw new CustodyError('ERR_POLICY_RULE', undefined, { cause: e });
    }
  }

  private async authorize(principal: Principal, permission: Permission, tenant: string, action?: AuditAction): Promise<void> {
    try {
      authorize(principal, permission, tenant);
    } catch (e) {
      const code = (e as CustodyError).code;
      this.log.warn({ op: action ?? permission, tenant: clipAudited(tenant, AUDIT_BOUNDS.id), actorTenant: principal.tenant, subject: principal.subject, role: principal.role, code }, 'request denied');
      if (action) await this.appendAudit(principal, 'auth.denied', tenant, undefined, 'deny', code, { attempted: action }).catch(() => undefined);
      throw e;
    }
  }

  /**
   * For changes that add material or widen release (create, import, rotate, policy): the event
   * is written first; if it cannot be, the change is not made and new material is erased.
   */
  private async auditBeforeChange(principal: Principal, action: AuditAction, tenant: string, key: AuditEvent['key'], detail: AuditEvent['detail'], refs: MaterialRef[]): Promise<void> {
    try {
      await this.appendAudit(principal, action, tenant, key, 'allow', undefined, detail);
    } catch (e) {
      await this.keystore.erase(refs).catch(() => undefined);
      this.log.error({ op: action, tenant, code: 'ERR_STORE_AUDIT_UNAVAILABLE' }, 'audit unavailable; change not made');
      throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', undefined, { cause: e, detail: { applied: false } });
    }
  }

  /**
   * For changes that narrow exposure (revoke, destroy) the change is made first, because
   * refusing a revocation for want of an audit log would keep a key releasable. If the event
   * then cannot be written, the caller gets ERR_STORE_AUDIT_UNAVAILABLE with applied: true.
   */
  private async auditAfterChange(principal: Principal, action: AuditAction, tenant: string, key: AuditEvent['key'], detail?: AuditEvent['detail']): Promise<void> {
    try {
      await this.appendAudit(principal, action, tenant, key, 'allow', undefined, detail);
    } catch (e) {
      this.log.error({ op: action, tenant, code: 'ERR_STORE_AUDIT_UNAVAILABLE' }, 'audit unavailable; change was made');
      throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', undefined, { cause: e, detail: { applied: true } });
    }
  }

  /**
   * Envelope and signing uses are audited before their result is returned, then the key is
   * re-checked: revoked or destroyed meanwhile denies; a newer version does not (older
   * versions keep unwrapping, and a wrap or signature by the just-superseded one is valid).
   */
  private async auditUse(principal: Principal, action: AuditAction, key: KeyRecord, version: number, detail?: AuditEvent['detail']): Promise<void> {
    try {
      await this.appendAudit(principal, action, key.tenant, { id: key.id, name: key.name, type: key.type, version }, 'allow', undefined, detail);
    } catch (e) {
      throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', undefined, { cause: e, detail: { applied: false } });
    }
    const check = await this.metadata.checkRelease(key.id, version);
    if (check !== 'rotated') throwUnlessOk(check);
  }

  /**
   * After a failed metadata write, erases the new material, unless the write may have been
   * recorded: a store that failed after its commit (the flush to disk, ERR_STORE_UNAVAILABLE) can
   * have applied it, and erasing the material then would leave a key whose version has none. So
   * the material is kept when `recorded` finds the record, or cannot tell; unused material names
   * nothing and is harmless.
   */
  private async undoUnlessRecorded(cause: unknown, recorded: () => Promise<boolean>, principal: Principal, action: AuditAction, tenant: string, key: AuditEvent['key'], refs: MaterialRef[]): Promise<void> {
    if (toCustodyError(cause).code === 'ERR_STORE_UNAVAILABLE') {
      const found = await recorded().catch(() => undefined);
      if (found !== false) {
        this.log.warn({ op: action, tenant, key: key?.name, code: 'ERR_STORE_UNAVAILABLE', recorded: found ?? 'unknown' }, 'the store failed after the write may have been recorded; the new key material is kept');
        return;
      }
    }
    await this.undoMaterial(principal, action, tenant, key, refs, cause);
  }

  private async undoMaterial(principal: Principal, action: AuditAction, tenant: string, key: AuditEvent['key'], refs: MaterialRef[], cause: unknown): Promise<void> {
    await this.keystore.erase(refs).catch(() => undefined);
    await this.appendAudit(principal, action, tenant, key, 'error', toCustodyError(cause).code).catch(() => undefined);
  }

  private async appendAudit(
    principal: Principal,
    action: AuditAction,
    tenant: string,
    key: AuditEvent['key'] | undefined,
    verdict: AuditVerdict,
    reason?: string,
    detail?: AuditEvent['detail'],
  ): Promise<AuditRecord> {
    const event: AuditEvent = {
      v: 1,
      action,
      time: new Date(this.now()).toISOString(),
      actor: { tenant: principal.tenant, subject: principal.subject, role: principal.subject === 'system' ? 'system' : principal.role },
      tenant,
      verdict,
      ...(key ? { key } : {}),
      ...(reason ? { reason } : {}),
      ...(detail && Object.keys(detail).length > 0 ? { detail } : {}),
    };
    return this.auditSink.append(boundAuditEvent(event));
  }

  private async view(key: KeyRecord): Promise<KeyView> {
    const versions = await this.metadata.listVersions(key.id);
    return {
      id: key.id,
      tenant: key.tenant,
      name: key.name,
      type: key.type,
      state: key.state,
      exportable: key.exportable,
      currentVersion: key.currentVersion,
      releasePolicy: key.releasePolicy,
      createdAt: iso(key.createdAt),
      updatedAt: iso(key.updatedAt),
      ...(key.revokedAt !== null ? { revokedAt: iso(key.revokedAt) } : {}),
      ...(key.destroyedAt !== null ? { destroyedAt: iso(key.destroyedAt) } : {}),
      versions: versions.map((v) => ({
        version: v.version,
        state: v.state,
        origin: v.origin,
        usage: v.state === 'destroyed' || key.state !== 'active' ? 'none' : v.version === key.currentVersion ? 'current' : 'decrypt-only',
        materialLength: v.materialLength,
        ...(v.publicKey ? { publicKey: toBase64(v.publicKey) } : {}),
        createdAt: iso(v.createdAt),
        ...(v.destroyedAt !== null ? { destroyedAt: iso(v.destroyedAt) } : {}),
      })),
    };
  }

  private now(): number {
    return this.clock().getTime();
  }
}

export interface ApiKeyView {
  id: string;
  tenant: string;
  role: Role;
  label: string;
  createdAt: string;
  createdBy: string;
  revokedAt?: string;
}

function apiKeyView(r: ApiKeyRecord): ApiKeyView {
  return { id: r.id, tenant: r.tenant, role: r.role, label: r.label, createdAt: iso(r.createdAt), createdBy: r.createdBy, ...(r.revokedAt !== null ? { revokedAt: iso(r.revokedAt) } : {}) };
}

/**
 * What the handshake binds to a session (SessionRepository.bindSession) once it has verified
 * the EAR: the EAR's digest and the digest of the TEE public key bound into the evidence.
 * `release` refuses unless the request matches both.
 */
export function releaseBinding(earDigest: string, recipient: RecipientKey): { earDigest: string; recipientSha256: string } {
  return { earDigest: earDigest.toLowerCase(), recipientSha256: `${recipient.curve}:${sha256Hex(recipient.publicKey)}` };
}

function assertUsable(key: KeyRecord): void {
  if (key.state === 'revoked') throw new CustodyError('ERR_KEY_REVOKED', undefined, { detail: { keyId: key.id } });
  if (key.state === 'destroyed') throw new CustodyError('ERR_KEY_DESTROYED', undefined, { detail: { keyId: key.id } });
}

function releaseCheckCode(check: string): string {
  switch (check) {
    case 'revoked':
      return 'ERR_KEY_REVOKED';
    case 'destroyed':
      return 'ERR_KEY_DESTROYED';
    case 'rotated':
    case 'policy-changed':
      return 'ERR_KEY_CONFLICT';
    default:
      return 'ERR_KEY_NOT_FOUND';
  }
}

function throwUnlessOk(check: string): void {
  if (check !== 'ok') throw new CustodyError(releaseCheckCode(check), 'the key changed while the request was in flight');
}

function policyDetail(policy: string | null): Record<string, string | boolean> {
  return policy === null ? { releasePolicy: false } : { releasePolicy: true, policyDigest: `sha256:${sha256Hex(policy)}` };
}

function sha256Hex(data: Uint8Array | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function newId(prefix: 'key' | 'mat'): string {
  return `${prefix}_${toHex(secureRandom(16))}`;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
