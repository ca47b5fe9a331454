// Test fixture: a broker with the handshake mounted, served on loopback, with a movable clock,
// a ledger test double behind the interim fallback, and every log line captured. Not built.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fromBase64Url, type Clock } from '@custody/core';
import type { AttestationPlugin } from '../broker.js';
import { BrokerAdminClient } from '../http/client.js';
import { startBroker, type StartBrokerOptions, type StartedBroker } from '../start.js';
import { BrokerWorkloadClient, generateTeeKeyPair, openReleasedKey, type TeeKeyPair, type WorkloadAttester } from '../attestation/workload-client.js';
import type { AttestResponse, ChallengeResponse, ReleaseResponse } from '../attestation/handshake.js';
import { buildRuntimeData, runtimeDigest } from '../attestation/runtime-data.js';
import { InMemoryAuditSinkTestDouble } from './doubles.js';
import { bufferLogger } from './harness.js';

export interface MovableClock {
  clock: Clock;
  advance(ms: number): void;
}

/** Real time plus an offset the test moves forward. */
export function movableClock(): MovableClock {
  let offset = 0;
  return { clock: () => new Date(Date.now() + offset), advance: (ms) => void (offset += ms) };
}

export interface HandshakeBroker {
  started: StartedBroker;
  url: string;
  admin: BrokerAdminClient;
  workload: BrokerWorkloadClient;
  /** The ledger stand-in: every event the broker produced, as canonical JSON lines. */
  ledger: InMemoryAuditSinkTestDouble;
  logLines: string[];
  time: MovableClock;
  dataDir: string;
  close(): Promise<void>;
}

export interface HandshakeBrokerOptions {
  /** Appraisal policy YAML for every tenant; none: the default deny policy. */
  policy?: string;
  tenantPolicies?: Record<string, string>;
  keystore?: 'embedded' | { kind: 'pkcs11'; library: string; tokenLabel: string; pin: string };
  postgres?: string;
  attestation?: Omit<AttestationPlugin, 'policies' | 'signer'>;
  /** Passed to startBroker as they are. */
  start?: Pick<StartBrokerOptions, 'arrivingBodies' | 'metrics' | 'maxConnections' | 'maxConnectionsPerClient' | 'drainMs'>;
}

export async function startHandshakeBroker(options: HandshakeBrokerOptions = {}): Promise<HandshakeBroker> {
  const dataDir = mkdtempSync(join(tmpdir(), 'custody-handshake-'));
  const ledger = new InMemoryAuditSinkTestDouble();
  const { logger, lines } = bufferLogger();
  const time = movableClock();
  const started = await startBroker({
    dataDir,
    tenant: 'acme',
    ...(options.policy !== undefined ? { policy: { text: options.policy } } : {}),
    ...(options.tenantPolicies ? { tenantPolicies: Object.fromEntries(Object.entries(options.tenantPolicies).map(([t, text]) => [t, { text }])) } : {}),
    ...(options.keystore ? { keystore: options.keystore } : {}),
    ...(options.postgres ? { postgres: options.postgres } : {}),
    ...(options.attestation ? { attestation: options.attestation } : {}),
    ...options.start,
    audit: ledger,
    logger,
    clock: time.clock,
  });
  return {
    started,
    url: started.url,
    admin: new BrokerAdminClient({ baseUrl: started.url, apiKey: started.adminKey! }),
    workload: new BrokerWorkloadClient({ baseUrl: started.url }),
    ledger,
    logLines: lines,
    time,
    dataDir,
    async close() {
      await started.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** One workload's view of a handshake in progress. */
export interface Attested {
  challenge: ChallengeResponse;
  tee: TeeKeyPair;
  runtimeData: string;
  evidence: Uint8Array;
  attested: AttestResponse;
}

/** Challenge, fresh TEE key, evidence over the runtime data, attest. */
export async function attestWith(client: BrokerWorkloadClient, tenant: string, attester: WorkloadAttester): Promise<Attested> {
  const challenge = await client.challenge(tenant);
  const tee = generateTeeKeyPair(challenge.teeKeyCurves[0]);
  const runtimeData = buildRuntimeData(fromBase64Url(challenge.nonce), tee.recipient);
  const evidence = await attester.collect(await runtimeDigest(attester.platform, runtimeData));
  const attested = await client.attest({ session: challenge.session, evidence, runtimeData, platform: attester.platform });
  return { challenge, tee, runtimeData, evidence, attested };
}

/** Releases `name` in an attested session and opens it. */
export async function releaseWith(client: BrokerWorkloadClient, tenant: string, a: Attested, name: string): Promise<{ released: ReleaseResponse; material: Uint8Array }> {
  const released = await client.release(name, { session: a.challenge.session, ear: a.attested.ear });
  const material = await openReleasedKey(a.tee, released, { tenant, name, session: a.challenge.session, ear: a.attested.ear });
  return { released, material };
}

/** The code of a rejected promise (or 'resolved'). */
export async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

/** The HTTP status the workload client saw for a rejected promise. */
export async function statusOf(p: Promise<unknown>): Promise<number | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as { detail?: { status?: number } }).detail?.status;
  }
}

export function simPolicy(measurements: string[], extra = ''): string {
  return `apiVersion: custody.dev/policy/v1
id: sim-workload
version: 1
allowSimulated: true
platforms:
  sim:
    measurement: [${measurements.join(', ')}]
${extra}`;
}
