import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Hono } from 'hono';
import type { Clock } from '@custody/core';
import { nodeHpkePrimitives } from '@custody/crypto-node';
import { FallbackAuditSink, InterimLocalAuditSink } from './audit/interim-local-audit-sink.js';
import type { AuditSink } from './audit/types.js';
import { AppraisalPolicies } from './attestation/appraisal-policies.js';
import { CelReleasePolicyEvaluator } from './attestation/cel-release-policy.js';
import { EarSigner } from './attestation/ear-signer.js';
import { AttestationService, earLifetimeBound, type AttestationServiceOptions } from './attestation/handshake.js';
import { TenantPolicies } from './attestation/tenant-policies.js';
import { ChallengeLimiter } from './attestation/challenge-limits.js';
import { parseChallengeRateLimit, type BrokerStorageConfig, type ChallengeRateLimitInput } from './config.js';
import { createBrokerApp, type BrokerEnv } from './http/app.js';
import type { ArrivingBodyLimits } from './http/request-body.js';
import { KeyService } from './keys/key-service.js';
import type { ReleasePolicyEvaluator } from './keys/release-policy.js';
import { EmbeddedKeyStore } from './keystore/embedded/embedded-key-store.js';
import { masterKeyProviderFor } from './keystore/embedded/master-key-source.js';
import { HpkeKeyWrapper } from './keystore/hpke-key-wrapper.js';
import { Pkcs11KeyStore } from './keystore/pkcs11/pkcs11-key-store.js';
import type { KeyStore, KeyWrapper } from './keystore/types.js';
import { PostgresMetadataStore } from './metadata/postgres/postgres-metadata-store.js';
import { SqliteMetadataStore } from './metadata/sqlite/sqlite-metadata-store.js';
import type { MetadataStore } from './metadata/types.js';

/** What other packages plug into the broker. */
export interface BrokerPlugins {
  /** Wrapping to the TEE key; default HpkeKeyWrapper (@custody/core HPKE) on the node:crypto primitives. */
  wrapper?: KeyWrapper;
  /** Release policy evaluator; default CelReleasePolicyEvaluator (CEL via packages/policy). */
  policy?: ReleasePolicyEvaluator;
  /** The key release handshake; when given, its routes are mounted (see AttestationPlugin). */
  attestation?: AttestationPlugin;
  /** The transparency ledger's sink. Events fall back to the interim local table when it fails; without it they go there directly. */
  audit?: AuditSink;
  /** After the ledger fails, how long events go straight to the interim table, and how often kept ones are offered again (default 30 s). */
  auditRetryMs?: number;
  /** Bounds on the request bodies held while they arrive, all clients together and per client address (createBrokerApp). */
  arrivingBodies?: ArrivingBodyLimits;
  logger?: Logger;
  clock?: Clock;
  metrics?: Registry;
  env?: Record<string, string | undefined>;
}

/** Handshake settings: appraisal policies, the EAR signer, verifier and lifetimes. */
export interface AttestationPlugin extends Pick<AttestationServiceOptions, 'verifier' | 'roots' | 'deviceRoots' | 'nonceTtlSeconds' | 'sessionTtlSeconds' | 'earTtlSeconds' | 'requireWorkloadApiKey'> {
  /** Default: every tenant gets DEFAULT_DENY_POLICY_YAML (nothing is released). */
  policies?: AppraisalPolicies;
  /** Default: a key kept in memory (EARs die with the process). Its maxEarLifetimeSeconds must cover earLifetimeBound of these settings. */
  signer?: EarSigner;
  /** See TenantPoliciesOptions.recheckMs. Default 0: stored policies are re-checked at every attestation. */
  policyRecheckMs?: number;
  /**
   * Limits on `POST /v1/attest/challenge` over DEFAULT_CHALLENGE_RATE_LIMIT (per client address,
   * per workload API key, live sessions per replica; trustProxy for X-Forwarded-For); see
   * ChallengeRateLimitConfig. `{ enabled: false }` turns them off.
   */
  challengeRateLimit?: ChallengeRateLimitInput;
}

export interface Broker {
  service: KeyService;
  /** Present when the handshake is mounted. */
  attestation?: AttestationService;
  /** The challenge route's limits; present when the handshake is mounted with them enabled. */
  challengeLimiter?: ChallengeLimiter;
  /** Appraisal policies in force: the file policies with API-set (`PUT /v1/policy`) overrides per tenant. */
  policies: TenantPolicies;
  /** Where every event goes (the ledger through the interim fallback, or the interim table). */
  audit: AuditSink;
  app: Hono<BrokerEnv>;
  metadata: MetadataStore;
  keystore: KeyStore;
  close(): Promise<void>;
}

export async function openMetadataStore(config: BrokerStorageConfig['metadata']): Promise<MetadataStore> {
  return config.kind === 'sqlite' ? SqliteMetadataStore.open(config.path) : PostgresMetadataStore.open({ connectionString: config.url, maxConnections: config.maxConnections });
}

export async function openKeyStore(config: BrokerStorageConfig['keystore'], metadata: MetadataStore, env: Record<string, string | undefined> = process.env): Promise<KeyStore> {
  if (config.kind === 'pkcs11') return Pkcs11KeyStore.open({ library: config.library, tokenLabel: config.tokenLabel, pin: config.pin });
  return EmbeddedKeyStore.open(masterKeyProviderFor(config.masterKey, env), metadata);
}

/** Opens the stores, wires the key service and the HTTP app. Close it to release pools and the HSM. */
export async function openBroker(config: BrokerStorageConfig, plugins: BrokerPlugins): Promise<Broker> {
  const logger = plugins.logger ?? pino({ level: 'silent' });
  const metadata = await openMetadataStore(config.metadata);
  let keystore: KeyStore;
  try {
    keystore = await openKeyStore(config.keystore, metadata, plugins.env);
  } catch (e) {
    await metadata.close();
    throw e;
  }
  const interim = new InterimLocalAuditSink(metadata);
  const fallback = plugins.audit
    ? new FallbackAuditSink(plugins.audit, interim, {
        ...(plugins.auditRetryMs !== undefined ? { retryAfterMs: plugins.auditRetryMs } : {}),
        onFallback: (e) => logger.error({ op: 'audit.fallback', code: (e as { code?: string }).code ?? 'unknown' }, 'audit sink failed; events are kept in the interim table and forwarded when it takes them again'),
        onForwarded: (count) => logger.info({ op: 'audit.forwarded', count }, 'events kept in the interim table reached the audit sink'),
        onRefused: (interimIndex, e) => logger.error({ op: 'audit.forward_refused', interimIndex, code: (e as { code?: string }).code ?? 'unknown' }, 'the audit sink refuses an event kept in the interim table; it stays there only'),
        onTampered: (atIndex) => logger.error({ op: 'audit.interim_tampered', atIndex }, 'the interim audit table does not verify (hash chain); nothing more is forwarded from it'),
      })
    : undefined;
  const audit = fallback ?? interim;
  const service = new KeyService({ metadata, keystore, audit, wrapper: plugins.wrapper ?? new HpkeKeyWrapper(nodeHpkePrimitives), policy: plugins.policy ?? new CelReleasePolicyEvaluator(), logger, ...(plugins.clock ? { clock: plugins.clock } : {}) });
  let attestation: AttestationService | undefined;
  let policies: TenantPolicies;
  try {
    policies = new TenantPolicies({
      files: plugins.attestation?.policies ?? (await AppraisalPolicies.load()),
      store: metadata,
      audit,
      onDenied: (principal, tenant, attempted, code) => service.recordDenial(principal, tenant, attempted, code),
      logger,
      ...(plugins.attestation?.policyRecheckMs !== undefined ? { recheckMs: plugins.attestation.policyRecheckMs } : {}),
      ...(plugins.clock ? { clock: plugins.clock } : {}),
    });
  } catch (e) {
    await fallback?.close();
    await keystore.close();
    await metadata.close();
    throw e;
  }
  let challengeLimiter: ChallengeLimiter | undefined;
  // Where client addresses come from; also when the challenge limits are off.
  let trustProxy: boolean | number = false;
  if (plugins.attestation) {
    const { policies: _files, policyRecheckMs: _recheck, challengeRateLimit, signer, ...rest } = plugins.attestation;
    try {
      const limits = parseChallengeRateLimit(challengeRateLimit);
      trustProxy = limits.trustProxy;
      if (limits.enabled) challengeLimiter = new ChallengeLimiter(limits, { ...(plugins.clock ? { clock: plugins.clock } : {}), ...(plugins.metrics ? { metrics: plugins.metrics } : {}) });
      attestation = new AttestationService({
        ...rest,
        keys: service,
        sessions: metadata,
        recipientCurves: keystore.capabilities.recipientCurves,
        policies,
        signer: signer ?? (await EarSigner.inMemory({ maxEarLifetimeSeconds: earLifetimeBound(rest), ...(plugins.clock ? { clock: plugins.clock } : {}) })),
        audit,
        logger,
        ...(plugins.clock ? { clock: plugins.clock } : {}),
        ...(plugins.metrics ? { metrics: plugins.metrics } : {}),
      });
    } catch (e) {
      await fallback?.close();
      await keystore.close();
      await metadata.close();
      throw e;
    }
  }
  let app: Hono<BrokerEnv>;
  try {
    app = createBrokerApp({
      service,
      policies,
      apiKeys: metadata,
      logger,
      challengeLimiter: challengeLimiter ?? false,
      trustProxy,
      ...plugins.arrivingBodies,
      ...(plugins.metrics ? { metrics: plugins.metrics } : {}),
      ...(attestation ? { attestation } : {}),
    });
  } catch (e) {
    // Bad limits (ERR_USAGE).
    await fallback?.close();
    await keystore.close();
    await metadata.close();
    throw e;
  }
  logger.info({ metadata: config.metadata.kind, keystore: config.keystore.kind, handshake: attestation !== undefined }, 'broker storage open');
  return {
    service,
    ...(attestation ? { attestation } : {}),
    ...(challengeLimiter ? { challengeLimiter } : {}),
    policies,
    audit,
    app,
    metadata,
    keystore,
    async close() {
      await fallback?.close();
      await keystore.close();
      await metadata.close();
    },
  };
}
