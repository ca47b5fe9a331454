/**
 * Test fixture: a gateway on loopback with SIMULATED evidence, an in-process appraisal broker
 * issuing real EARs, the in-memory ledger test double, one tenant, and a captured log.
 */
import type { JSONWebKeySet } from 'jose';
import { systemClock, type Clock } from '@custody/core';
import { SimAttester, type Attester } from '@custody/attester-service';
import { generateEarSigningKey, loadPolicy, type CompiledPolicy } from '@custody/policy';
import { LocalAppraisalBroker } from '../attestation/local-broker.js';
import { DemoBackend } from '../backends/demo.js';
import type { ModelBackend } from '../backends/types.js';
import { UpstreamBackend } from '../backends/upstream.js';
import { Gateway, type GatewayOptions } from '../gateway.js';
import { listen, type RunningServer } from '../http/serve.js';
import { InMemoryLedgerSink } from '../ledger/ledger-sink.js';
import { createGatewayLogger } from '../observability/logger.js';
import { apiKeyDigest, type TenantConfig } from '../pipeline/tenants.js';
import { startFakeUpstream, type FakeUpstream, type FakeUpstreamOptions } from './fake-upstream.js';

export const TEST_API_KEY = 'sk-custody-test-tenant-0001';
export const TEST_MEASUREMENT = 'a1'.repeat(48);

export function simPolicyYaml(measurements: readonly string[], options: { allowDebug?: boolean; version?: number } = {}): string {
  return [
    'apiVersion: custody.dev/policy/v1',
    'id: gateway-test',
    `version: ${options.version ?? 1}`,
    'allowSimulated: true',
    `allowDebug: ${options.allowDebug ?? false}`,
    'platforms:',
    '  sim:',
    `    measurement: [${measurements.join(', ')}]`,
    '',
  ].join('\n');
}

export interface TestGatewayOptions {
  backend?: 'demo' | 'upstream' | ModelBackend;
  upstream?: FakeUpstreamOptions;
  measurement?: string;
  debug?: boolean;
  /** Default true: an in-process appraisal broker issues the EAR. */
  broker?: boolean;
  brokerMeasurements?: string[];
  brokerAllowsDebug?: boolean;
  /** The in-process broker's appraisal policy (YAML) instead of the sim policy of `brokerMeasurements`. */
  brokerPolicyYaml?: string;
  /** Trust anchors of the in-process broker for GPU evidence (the FixtureGpuAttester test root). */
  brokerDeviceRoots?: Uint8Array[];
  earTtlSeconds?: number;
  /** Secrets the in-process broker releases by name. */
  brokerKeys?: Record<string, Uint8Array>;
  tenant?: Partial<TenantConfig>;
  clock?: Clock;
  attester?: Attester;
  gateway?: Partial<GatewayOptions>;
  logLevel?: string;
}

export interface TestGateway {
  readonly gateway: Gateway;
  readonly server: RunningServer;
  readonly url: string;
  readonly ledger: InMemoryLedgerSink;
  readonly broker?: LocalAppraisalBroker;
  readonly jwks?: JSONWebKeySet;
  readonly upstream?: FakeUpstream;
  readonly backend: ModelBackend;
  /** Every log line the gateway wrote (JSON text). */
  readonly logs: string[];
  readonly apiKey: string;
  readonly measurement: string;
  brokerPolicy(measurements: string[], version: number): Promise<CompiledPolicy>;
  close(): Promise<void>;
}

export async function startTestGateway(o: TestGatewayOptions = {}): Promise<TestGateway> {
  const clock = o.clock ?? systemClock;
  const measurement = o.measurement ?? TEST_MEASUREMENT;
  const logs: string[] = [];
  const logger = createGatewayLogger({ level: o.logLevel ?? 'info', destination: { write: (s: string) => void logs.push(s) } });
  const ledger = await InMemoryLedgerSink.create();
  let upstream: FakeUpstream | undefined;
  let backend: ModelBackend;
  if (o.backend === 'upstream') {
    upstream = await startFakeUpstream(o.upstream);
    backend = await UpstreamBackend.create({ url: upstream.url, digests: { 'fake-model': 'sha256:' + '0f'.repeat(32) } });
  } else if (o.backend === undefined || o.backend === 'demo') {
    backend = await DemoBackend.create(clock);
  } else {
    backend = o.backend;
  }
  const brokerPolicy = (measurements: string[], version: number) => loadPolicy(simPolicyYaml(measurements, { allowDebug: o.brokerAllowsDebug ?? false, version }));
  let broker: LocalAppraisalBroker | undefined;
  let jwks: JSONWebKeySet | undefined;
  if (o.broker ?? true) {
    broker = new LocalAppraisalBroker({
      policy: o.brokerPolicyYaml !== undefined ? await loadPolicy(o.brokerPolicyYaml) : await brokerPolicy(o.brokerMeasurements ?? [measurement], 1),
      ...(o.brokerDeviceRoots ? { deviceRoots: o.brokerDeviceRoots } : {}),
      signingKey: await generateEarSigningKey({ alg: 'EdDSA' }),
      ledger,
      clock,
      earTtlSeconds: o.earTtlSeconds ?? 300,
      ...(o.brokerKeys ? { keys: o.brokerKeys } : {}),
    });
    jwks = await broker.jwks();
  }
  const tenant: TenantConfig = {
    id: 'acme',
    apiKeySha256: apiKeyDigest(TEST_API_KEY),
    pii: { defaultAction: 'redact', actions: { email: 'mask', person_name: 'mask', payment_card: 'block' } },
    ...o.tenant,
  };
  const gateway = await Gateway.create({
    backend,
    attester: o.attester ?? new SimAttester({ measurements: { measurement }, debug: o.debug ?? false, clock }),
    ...(broker ? { broker } : {}),
    ledger,
    policy: { id: 'gateway-test', version: 1, tenants: [tenant] },
    clock,
    logger,
    ...o.gateway,
  });
  await gateway.start();
  const server = await listen(gateway.app, { intercept: gateway.intercept });
  return {
    gateway,
    server,
    url: server.url,
    ledger,
    backend,
    logs,
    apiKey: TEST_API_KEY,
    measurement,
    brokerPolicy,
    ...(broker ? { broker } : {}),
    ...(jwks ? { jwks } : {}),
    ...(upstream ? { upstream } : {}),
    async close() {
      await gateway.close();
      await server.close();
      await upstream?.close();
    },
  };
}
