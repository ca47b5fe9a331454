/**
 * A confidential inference gateway: keys created inside the TEE, attestation with those keys
 * bound into the evidence, the OHTTP surface, the pipeline and the backend, composed once.
 *
 *   const gw = await Gateway.create({ backend, attester, broker, ledger, policy });
 *   await gw.start();                 // attests; serves confidential routes only once attested
 *   const server = await listen(gw.app, { port: 8443, intercept: gw.intercept });
 */
import type { Hono } from 'hono';
import type { Logger } from 'pino';
import { CustodyError, setHpkeProvider, setSignatureProvider, systemClock, webCryptoHpkePrimitives, type Clock } from '@custody/core';
import type { Attester, DeviceAttester } from '@custody/attester-service';
import { nodeHpkePrimitives, nodeSignaturePrimitives } from '@custody/crypto-node';
import type { EvidenceVerifierSet } from '@custody/sdk';
import { AttestationManager, type AttestationManagerOptions } from './attestation/attestation-manager.js';
import type { BrokerClient } from './attestation/broker-client.js';
import type { ModelBackend } from './backends/types.js';
import { createGatewayApp, createOhttpNodeHandler } from './http/app.js';
import type { NodeIntercept } from './http/serve.js';
import { GatewayKeys } from './keys/gateway-keys.js';
import type { LedgerSink } from './ledger/ledger-sink.js';
import { createGatewayLogger } from './observability/logger.js';
import { GatewayMetrics } from './observability/metrics.js';
import { InferencePipeline } from './pipeline/inference.js';
import { MemoryReplayStore, type ReplayStore } from './pipeline/replay-guard.js';
import { TenantDirectory, type GatewayPolicyDocument } from './pipeline/tenants.js';

export interface GatewayOptions {
  backend: ModelBackend;
  attester: Attester;
  /** The key broker; without one the gateway publishes evidence only (clients appraise it themselves). */
  broker?: BrokerClient;
  /**
   * NVIDIA GPUs in confidential-computing mode attached to the TEE (at most 8): their evidence,
   * bound to the same runtime data as the CPU's, goes to the broker (composite EAR) and into
   * the published bundle. A GPU that fails to attest stops the gateway from attesting.
   */
  devices?: readonly DeviceAttester[];
  /** Trust anchors for the GPUs' evidence (private PKI, tests); default the pinned NVIDIA root. */
  deviceRoots?: Uint8Array[];
  ledger: LedgerSink;
  /** Tenants and their input policies (document, YAML/JSON text, or a built directory). */
  policy: GatewayPolicyDocument | string | TenantDirectory;
  clock?: Clock;
  logger?: Logger;
  metrics?: GatewayMetrics;
  verifiers?: EvidenceVerifierSet;
  reattestIntervalMs?: number;
  /** First delay of the early round after one whose bundle lacks its ledger proof (default 5 s). */
  ledgerProofRetryMs?: number;
  maxEvidenceAgeMs?: number;
  /** How long a retired OHTTP key stays published and decapsulates (it stops once an attestation without it is published). Default 10 minutes. */
  keyGraceMs?: number;
  /** Rotate the OHTTP key this often (and re-attest). Default: never on a timer. */
  keyRotationMs?: number;
  /** Accepted distance between a request's Date and the gateway clock. Default 60 s. */
  requestDateWindowMs?: number;
  /**
   * Monotonic milliseconds for the per-tenant limits (default `performance.now()`): the token
   * buckets do not follow `clock`, which is the wall clock and may step. For tests.
   */
  limitsClock?: () => number;
  /**
   * Anti-replay store (built with the same Date window). Default: this process's memory, which
   * replicas behind a load balancer do not share; give them a SqliteReplayStore (one host) or a
   * PostgresReplayStore (several hosts). The caller closes it.
   */
  replay?: ReplayStore;
  modelKey?: AttestationManagerOptions['modelKey'];
  /**
   * Replicas behind one address: the name of a broker-held secret (a `secret` key of the
   * gateway's tenant, with a release policy naming the gateway's measurements) from which every
   * replica derives the same OHTTP key (id from the key's version) and receipt key, after
   * attesting with its TEE key. Needs `broker`. The gateway serves only once the secret is
   * released; a revoked or refused key closes the confidential routes at the next attestation;
   * a new version at the broker is picked up at the next attestation (or `rotateKeys()`), the
   * previous OHTTP key staying in grace. Default: this process's own keys.
   */
  identityKey?: { name: string };
  cors?: boolean;
  /** Longest a streamed answer waits for a client that stopped reading before it is cut off (default 60 s). */
  writeStallMs?: number;
  /** Most bytes of sealed request bodies held at once while they arrive, all clients together (default 64 MiB). */
  maxArrivingBodyBytes?: number;
  /**
   * The HPKE and signature primitives this process uses (OHTTP, key unwrap, Ed25519
   * verification), installed process-wide before the keys are created: node:crypto (default;
   * synchronous, no WebCrypto round trips) or the WebCrypto default of @custody/core (for
   * comparisons).
   */
  hpkeProvider?: 'node:crypto' | 'webcrypto';
}

export class Gateway {
  readonly app: Hono;
  /** The node:http fast path for `POST /ohttp`, both media types (same exchanges as the app's route): `listen(gw.app, { intercept: gw.intercept })`. */
  readonly intercept: NodeIntercept;
  private rotation: ReturnType<typeof setInterval> | undefined;

  private constructor(
    readonly options: GatewayOptions,
    readonly keys: GatewayKeys,
    readonly tenants: TenantDirectory,
    readonly attestation: AttestationManager,
    readonly metrics: GatewayMetrics,
    readonly logger: Logger,
    readonly replay: ReplayStore,
  ) {
    const clock = options.clock ?? systemClock;
    const pipeline = new InferencePipeline({
      backend: options.backend,
      tenants,
      ledger: options.ledger,
      // Read at each response: a shared identity's receipt key changes with its version. (The
      // HTTP surface passes the signer of the key a request was sealed to.)
      signReceipt: (message) => keys.receipt.sign(message),
      clock,
      logger,
      metrics,
      ...(options.requestDateWindowMs !== undefined ? { dateWindowMs: options.requestDateWindowMs } : {}),
      ...(options.limitsClock ? { limitsClock: options.limitsClock } : {}),
    });
    const deps = { attestation, keys, pipeline, replay, ledger: options.ledger, metrics, logger, clock, ...(options.cors !== undefined ? { cors: options.cors } : {}), ...(options.writeStallMs !== undefined ? { writeStallMs: options.writeStallMs } : {}), ...(options.maxArrivingBodyBytes !== undefined ? { maxArrivingBodyBytes: options.maxArrivingBodyBytes } : {}) };
    this.app = createGatewayApp(deps);
    this.intercept = createOhttpNodeHandler(deps);
  }

  static async create(options: GatewayOptions): Promise<Gateway> {
    setHpkeProvider(options.hpkeProvider === 'webcrypto' ? webCryptoHpkePrimitives : nodeHpkePrimitives);
    setSignatureProvider(options.hpkeProvider === 'webcrypto' ? undefined : nodeSignaturePrimitives);
    const clock = options.clock ?? systemClock;
    const logger = options.logger ?? createGatewayLogger();
    const metrics = options.metrics ?? new GatewayMetrics();
    if (options.identityKey) {
      if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(options.identityKey.name)) throw new CustodyError('ERR_GATEWAY_CONFIG', 'the identity key name must be 1-128 of [A-Za-z0-9._-], starting with a letter or digit');
      if (!options.broker?.releaseKey) throw new CustodyError('ERR_GATEWAY_CONFIG', 'a shared identity key is released by a key broker: configure one that releases keys');
    }
    const keys = await GatewayKeys.create(clock, { ...(options.keyGraceMs !== undefined ? { graceMs: options.keyGraceMs } : {}), ...(options.identityKey ? { shared: true } : {}) });
    const tenants = options.policy instanceof TenantDirectory ? options.policy : await TenantDirectory.create(options.policy);
    const model = options.backend.models()[0];
    const attestation = new AttestationManager({
      attester: options.attester,
      keys,
      ...(options.broker ? { broker: options.broker } : {}),
      ledger: options.ledger,
      clock,
      logger,
      ...(model ? { model: { id: model.id, ...(model.digest ? { digest: model.digest } : {}), ...(model.label ? { label: model.label } : {}), backend: options.backend.kind } } : {}),
      policyVersion: tenants.policyVersion,
      ...(options.verifiers ? { verifiers: options.verifiers } : {}),
      ...(options.reattestIntervalMs !== undefined ? { reattestIntervalMs: options.reattestIntervalMs } : {}),
      ...(options.ledgerProofRetryMs !== undefined ? { ledgerProofRetryMs: options.ledgerProofRetryMs } : {}),
      ...(options.maxEvidenceAgeMs !== undefined ? { maxEvidenceAgeMs: options.maxEvidenceAgeMs } : {}),
      ...(options.modelKey ? { modelKey: options.modelKey } : {}),
      ...(options.identityKey ? { identityKey: options.identityKey } : {}),
      ...(options.devices && options.devices.length > 0 ? { devices: options.devices } : {}),
      ...(options.deviceRoots ? { deviceRoots: options.deviceRoots } : {}),
    });
    const replay = options.replay ?? new MemoryReplayStore(clock, options.requestDateWindowMs ?? 60_000);
    return new Gateway(options, keys, tenants, attestation, metrics, logger, replay);
  }

  /** Attests (once, then on schedule). Confidential routes open only when attestation succeeds. */
  async start(): Promise<void> {
    await this.attestation.start();
    if (this.options.keyRotationMs) {
      this.rotation = setInterval(() => {
        this.attestation.rotateKeys().catch(() => undefined);
      }, this.options.keyRotationMs);
      this.rotation.unref();
    }
  }

  fetch = (request: Request): Response | Promise<Response> => this.app.fetch(request);

  async close(): Promise<void> {
    this.attestation.stop();
    if (this.rotation) clearInterval(this.rotation);
    await this.options.backend.close?.();
  }
}
