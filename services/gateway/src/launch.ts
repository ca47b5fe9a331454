/**
 * Builds and starts a gateway from simple settings (what `custody gateway serve` and
 * `custody up` take): backend (demo, upstream URL, GGUF file), attester (sim or TPM), broker
 * (HTTP broker, or an in-process appraisal broker for development), ledger sink, tenants.
 */
import { randomBytes } from 'node:crypto';
import type { JSONWebKeySet } from 'jose';
import type { Logger } from 'pino';
import { CustodyError, systemClock, type Clock } from '@custody/core';
import { CommandGpuAttester, SimAttester, TpmAttester, type Attester, type DeviceAttester } from '@custody/attester-service';
import { nodeGatewayFetch } from '@custody/crypto-node';
import type { TlogPolicy } from '@custody/ledger';
import { CLEARTEXT_KEY_WARNING, HttpAuditSink } from '@custody/ledger-service';
import { generateEarSigningKey, loadPolicy, type CompiledPolicy } from '@custody/policy';
import { createConfidentialFetch, renderVerificationText, type AttestationBundle, type Receipt, type VerificationDocument } from '@custody/sdk';
import type { BrokerClient } from './attestation/broker-client.js';
import { HttpBrokerClient } from './attestation/http-broker-client.js';
import { LocalAppraisalBroker } from './attestation/local-broker.js';
import { DemoBackend, DEMO_MODEL_LABEL } from './backends/demo.js';
import { LlamaCppBackend } from './backends/llama-cpp.js';
import { SealedModelBackend } from './backends/sealed-backend.js';
import { isSealedModelFile } from './backends/sealed-model.js';
import type { ModelBackend } from './backends/types.js';
import { UpstreamBackend } from './backends/upstream.js';
import { Gateway } from './gateway.js';
import { listen, type CloseOptions, type RunningServer } from './http/serve.js';
import { InMemoryLedgerSink, type LedgerSink } from './ledger/ledger-sink.js';
import { createGatewayLogger, gatewayLogDestination } from './observability/logger.js';
import { openReplayStore, type ReplayStore } from './pipeline/replay-guard.js';
import { apiKeyDigest, type GatewayPolicyDocument } from './pipeline/tenants.js';
import { createRelayApp } from './relay/relay.js';

export const DEV_SIM_MEASUREMENT = '00'.repeat(48);
/**
 * Entries whose bytes the default in-memory development log keeps. Every entry's hash stays (64
 * bytes each, two entries a request), so any index still proves and the log grows by about 130
 * bytes a request instead of the whole entries and events (about 4.5 KB).
 */
export const DEV_LEDGER_RETAIN = 4096;

export interface LaunchGatewayConfig {
  port?: number;
  host?: string;
  /** Exactly one backend; the demo model when none is given. */
  upstream?: string;
  /**
   * A GGUF file, or a sealed model (`custody model seal`): its weights are decrypted inside the
   * TEE with the key the broker releases to the attested gateway, so a sealed model needs `broker`.
   */
  modelPath?: string;
  /** Where a sealed model is decrypted for loading (tmpfs or ramfs only); default /dev/shm. */
  modelPlainDir?: string;
  upstreamDigests?: Record<string, string>;
  attester?: 'sim' | 'tpm' | Attester;
  tpmTcti?: string;
  /** Sim measurement (hex); default 48 zero bytes. */
  simMeasurement?: string;
  /**
   * NVIDIA GPUs attested with the CPU, one entry per GPU: the argv of a program printing the
   * GPU's evidence for the nonce given as `{nonce}` (CommandGpuAttester), or an attester.
   */
  gpus?: readonly (readonly string[] | DeviceAttester)[];
  /** Trust anchors for GPU evidence instead of the pinned NVIDIA root (private PKI, tests): the gateway's own check and the in-process broker's. */
  gpuRoots?: Uint8Array[];
  /** Connections open at once; default MAX_CONNECTIONS (http/serve.ts). */
  maxConnections?: number;
  /** An HTTP broker (docs/key-release-protocol.md); without it an in-process appraisal broker. */
  broker?: { url: string; apiKey: string; tenant: string; jwksUrl?: string } | BrokerClient;
  /** Appraisal policy of the in-process broker (YAML/JSON text); default: accept this sim measurement. */
  appraisalPolicy?: string;
  /** Tenants policy (YAML/JSON text or document); default one `demo` tenant with `apiKey`. */
  tenants?: string | GatewayPolicyDocument;
  /** API key of the default demo tenant; generated when absent. */
  apiKey?: string;
  /**
   * Where receipts and policy decisions (and, with the development broker, appraisals) are
   * logged: the transparency ledger's URL (`custody log serve`), or a sink. Default an in-memory
   * development log, neither persistent nor shared with anyone, that keeps the bytes of its last
   * `DEV_LEDGER_RETAIN` entries (and every entry's hash, for proofs).
   */
  ledger?: LedgerSink | string;
  /** With a ledger URL: the log's writer key (`custody log writer-key`), sent with every append. */
  ledgerWriterKey?: string;
  logger?: Logger;
  clock?: Clock;
  keyRotationMs?: number;
  /** HPKE primitives of the gateway process; default node:crypto (see GatewayOptions). */
  hpkeProvider?: 'node:crypto' | 'webcrypto';
  /**
   * Anti-replay store: `memory` (default; one process only), `sqlite:PATH` (replicas on one host)
   * or `postgres://...` (replicas on several hosts), or a store. Replicas behind a load balancer
   * need a shared one, or a request replayed to another replica is accepted. A store opened
   * from a location is closed with the gateway.
   */
  replayStore?: string | ReplayStore;
  /**
   * Replicas: the name of the broker-held secret from which this gateway derives the OHTTP and
   * receipt keys every replica shares (GatewayOptions.identityKey). Needs `broker`; pair it with
   * a shared `replayStore`.
   */
  identityKey?: string;
}

export interface LaunchedGateway {
  readonly gateway: Gateway;
  readonly server: RunningServer;
  readonly url: string;
  /** JWKS clients pin: the in-process broker's, or the HTTP broker's. */
  readonly jwks: JSONWebKeySet;
  /** The demo tenant's API key (only when the default tenant was created). */
  readonly apiKey?: string;
  readonly ledger: LedgerSink;
  readonly simulated: boolean;
  /** GPUs attested with the CPU (0 without). */
  readonly gpus: number;
  /** Human summary lines (no secrets but the demo API key the operator asked for). */
  readonly summary: string[];
  /** Stops; with `drainMs`, requests in progress may finish for that long first (the gateway stays attested meanwhile). */
  close(options?: CloseOptions): Promise<void>;
}

function simPolicy(measurement: string): string {
  return ['apiVersion: custody.dev/policy/v1', 'id: custody-dev-gateway', 'version: 1', 'description: development policy that accepts SIMULATED evidence', 'allowSimulated: true', 'platforms:', '  sim:', `    measurement: ${measurement}`, ''].join('\n');
}

async function makeBackend(c: LaunchGatewayConfig, clock: Clock, logger: Logger): Promise<ModelBackend> {
  if (c.upstream && c.modelPath) throw new CustodyError('ERR_USAGE', 'give either --upstream or --model, not both');
  if (c.modelPlainDir !== undefined && !c.modelPath) throw new CustodyError('ERR_USAGE', '--model-plain-dir is for a sealed --model');
  if (c.upstream) return UpstreamBackend.create({ url: c.upstream, ...(c.upstreamDigests ? { digests: c.upstreamDigests } : {}) });
  if (c.modelPath && (await isSealedModelFile(c.modelPath))) {
    // Checked before anything loads: the key of a sealed model is released only by a key broker.
    if (!c.broker) throw new CustodyError('ERR_USAGE', 'a sealed model is decrypted with a key the key broker releases to the attested gateway: give --broker');
    return SealedModelBackend.create({ sealedPath: c.modelPath, clock, logger, ...(c.modelPlainDir !== undefined ? { plainDir: c.modelPlainDir } : {}) });
  }
  if (c.modelPlainDir !== undefined) throw new CustodyError('ERR_USAGE', '--model-plain-dir is for a sealed model; this --model is a GGUF file');
  if (c.modelPath) return LlamaCppBackend.create({ modelPath: c.modelPath, clock });
  return DemoBackend.create(clock);
}

function isArgv(g: readonly string[] | DeviceAttester): g is readonly string[] {
  return Array.isArray(g);
}

export async function launchGateway(c: LaunchGatewayConfig = {}): Promise<LaunchedGateway> {
  const clock = c.clock ?? systemClock;
  // Logs go to stderr, so stdout stays the command's own output.
  const logger = c.logger ?? createGatewayLogger({ destination: gatewayLogDestination(2) });
  const measurement = (c.simMeasurement ?? DEV_SIM_MEASUREMENT).toLowerCase();
  const attester: Attester =
    typeof c.attester === 'object' ? c.attester : c.attester === 'tpm' ? new TpmAttester({ ...(c.tpmTcti ? { tcti: c.tpmTcti } : {}) }) : new SimAttester({ measurements: { measurement }, clock });
  const simulated = attester.platform === 'sim';
  const devices: DeviceAttester[] = (c.gpus ?? []).map((g) => (isArgv(g) ? new CommandGpuAttester({ argv: g }) : g));
  // A ledger this launch connects to (a URL) is also one it closes.
  const remote = typeof c.ledger === 'string' ? await HttpAuditSink.connect(c.ledger, undefined, c.ledgerWriterKey ? { writerKey: c.ledgerWriterKey } : {}) : undefined;
  const ledger = remote ?? (c.ledger as LedgerSink | undefined) ?? (await InMemoryLedgerSink.create(undefined, undefined, { retain: DEV_LEDGER_RETAIN }));
  const backend = await makeBackend(c, clock, logger);
  const sealed = backend instanceof SealedModelBackend ? backend : undefined;
  if (c.identityKey !== undefined && !c.broker) throw new CustodyError('ERR_USAGE', 'a shared identity key is held by the key broker: give --broker with --identity-key');
  let broker: BrokerClient;
  // An HTTP broker this launch connects to (settings, not a client) is also one it closes.
  let ownedBroker: HttpBrokerClient | undefined;
  let policy: CompiledPolicy | undefined;
  // A BrokerClient (HttpBrokerClient has a `url` method too), or the settings of an HTTP one.
  if (c.broker && typeof (c.broker as Partial<BrokerClient>).challenge === 'function') broker = c.broker as BrokerClient;
  else if (c.broker) broker = ownedBroker = new HttpBrokerClient(c.broker as { url: string; apiKey: string; tenant: string; jwksUrl?: string });
  else {
    policy = await loadPolicy(c.appraisalPolicy ?? simPolicy(measurement));
    // The development policy knows no GPU: without reference values for them every round would be refused.
    if (devices.length > 0 && !policy.document.platforms.nvidia) throw new CustodyError('ERR_USAGE', 'GPUs with the development broker need an appraisal policy with an `nvidia` section (--appraisal-policy)');
    broker = new LocalAppraisalBroker({ policy, signingKey: await generateEarSigningKey({ alg: 'EdDSA' }), ledger, clock, ...(c.gpuRoots ? { deviceRoots: c.gpuRoots } : {}) });
  }
  let apiKey: string | undefined;
  let tenants: string | GatewayPolicyDocument;
  if (c.tenants) tenants = c.tenants;
  else {
    apiKey = c.apiKey ?? `sk-custody-demo-${randomBytes(12).toString('hex')}`;
    tenants = { id: 'custody-dev', version: 1, tenants: [{ id: 'demo', apiKeySha256: apiKeyDigest(apiKey), pii: { defaultAction: 'redact', actions: { email: 'mask', person_name: 'mask', phone: 'mask', payment_card: 'block' } } }] };
  }
  const replay = typeof c.replayStore === 'object' ? c.replayStore : await openReplayStore(c.replayStore ?? 'memory', { clock });
  const closeReplay = async () => {
    if (typeof c.replayStore !== 'object') await replay.close?.();
  };
  const gateway = await Gateway.create({
    backend,
    attester,
    broker,
    ledger,
    policy: tenants,
    clock,
    logger,
    replay,
    ...(c.keyRotationMs ? { keyRotationMs: c.keyRotationMs } : {}),
    ...(c.hpkeProvider ? { hpkeProvider: c.hpkeProvider } : {}),
    ...(c.identityKey !== undefined ? { identityKey: { name: c.identityKey } } : {}),
    // A sealed model's key, released with every attestation: the first release unseals and loads it.
    ...(sealed ? { modelKey: { name: sealed.keyName, onKey: (key: Uint8Array, version: number | undefined) => sealed.onKey(key, version) } } : {}),
    ...(devices.length > 0 ? { devices } : {}),
    ...(c.gpuRoots ? { deviceRoots: c.gpuRoots } : {}),
  });
  await gateway.start();
  if (gateway.attestation.state !== 'attested') {
    await gateway.close();
    await closeReplay();
    remote?.close();
    ownedBroker?.close();
    throw new CustodyError('ERR_GATEWAY_NOT_ATTESTED', 'the gateway could not attest at start; see the log for the reason');
  }
  const server = await listen(gateway.app, { intercept: gateway.intercept, ...(c.port !== undefined ? { port: c.port } : {}), ...(c.host ? { host: c.host } : {}), ...(c.maxConnections !== undefined ? { maxConnections: c.maxConnections } : {}) });
  const jwks = await broker.jwks();
  const model = backend.models()[0];
  const snap = gateway.attestation.snapshot!;
  const summary = [
    `custody gateway listening on ${server.url} (confidential routes only through POST ${server.url}/ohttp)`,
    `  platform     ${snap.platform}${simulated ? '  — SIMULATED: no hardware TEE protects prompts; for development only' : ''}`,
    `  measurement  ${Object.entries(snap.measurements).map(([k, v]) => `${k}=${v.length > 32 ? v.slice(0, 32) + '…' : v}`).join(' ')}`,
    ...(snap.devices ? [`  gpus         ${snap.devices.length} NVIDIA GPU(s) attested over the same runtime data (${snap.devices.map((d) => d.name).join(', ')})${c.gpuRoots ? ' — custom GPU trust anchor, not the NVIDIA root' : ''}`] : []),
    `  model        ${model?.label ?? model?.id ?? 'none'}${backend.kind === 'demo' ? '' : ` via ${backend.kind}`}${model?.digest ? ` ${model.digest}` : ''}`,
    ...(sealed ? [`  sealed       weights encrypted under broker key ${sealed.header.key.name} v${sealed.header.key.version}, released to this attested gateway and decrypted inside it (every re-attestation asks again)`] : []),
    `  attestation  ${c.broker ? 'broker EAR' : 'in-process appraisal (development broker)'}${snap.earId ? `, EAR ${snap.earId}` : ''}; OHTTP key id ${snap.keyConfigs.map((k) => k.keyId).join(', ')}`,
    `  ledger       ${remote ? `${remote.location} (transparency log: receipts and policy decisions)` : c.ledger ? 'configured sink' : `in-memory development log (not persistent; keeps the last ${DEV_LEDGER_RETAIN} entries, every hash)`}`,
    ...(remote?.sendsKeyInClear ? [`  WARNING      ${CLEARTEXT_KEY_WARNING}`] : []),
    ...(gateway.keys.identity ? [`  identity     shared keys from broker key ${gateway.keys.identity.name} v${gateway.keys.identity.version} (every replica with it publishes the same OHTTP and receipt keys)`] : []),
    `  anti-replay  ${replay.kind === 'memory' ? 'memory (this process only; replicas need --replay-store sqlite:PATH or postgres://...)' : `shared ${replay.kind} store`}`,
    `  bundle       ${server.url}/.well-known/custody/attestation`,
    ...(apiKey ? [`  demo tenant  API key ${apiKey}`] : []),
  ];
  if (backend.kind === 'demo') summary.push(`  note         ${DEMO_MODEL_LABEL} answers deterministically; use --upstream or --model for a real model`);
  return {
    gateway,
    server,
    url: server.url,
    jwks,
    ...(apiKey ? { apiKey } : {}),
    ledger,
    simulated,
    gpus: snap.devices?.length ?? 0,
    summary,
    async close(options?: CloseOptions) {
      // The server first: while it drains, the gateway is still attested and its backend up.
      await server.close(options);
      await gateway.close();
      await attester.close?.();
      await closeReplay();
      remote?.close();
      ownedBroker?.close();
    },
  };
}

/** Starts an OHTTP relay in front of a gateway. */
export async function launchRelay(c: { gateway: string; port?: number; host?: string; logger?: Logger; maxConnections?: number }): Promise<RunningServer> {
  return listen(createRelayApp({ gateway: c.gateway, ...(c.logger ? { logger: c.logger } : {}) }), { ...(c.port !== undefined ? { port: c.port } : {}), ...(c.host ? { host: c.host } : {}), ...(c.maxConnections !== undefined ? { maxConnections: c.maxConnections } : {}) });
}

/**
 * One confidential chat request end to end with the SDK (what `custody up` shows): verify the
 * gateway, send the prompt through OHTTP, return the answer, the verified receipt and the
 * verification document.
 */
export async function runConfidentialRequest(
  target: { url: string; jwks: JSONWebKeySet; apiKey: string; allowSimulated?: boolean; tlogPolicy?: TlogPolicy },
  prompt: string,
): Promise<{ answer: string; receipt: Receipt; verification: VerificationDocument; verificationText: string; bundle: AttestationBundle; response: Uint8Array }> {
  let receipt: Receipt | undefined;
  // node:http, not undici's fetch: the same calls at a fraction of the CPU (BENCHMARKS.md).
  const transport = nodeGatewayFetch();
  try {
    const cfetch = createConfidentialFetch({
      gateway: target.url,
      fetch: transport,
      jwks: target.jwks,
      allowSimulated: target.allowSimulated ?? false,
      onReceipt: (r) => (receipt = r),
      // Strict: the broker's appraisal of the gateway must be proven included in this log.
      ...(target.tlogPolicy ? { strict: { tlogPolicy: target.tlogPolicy } } : {}),
    });
    const model = ((await (await cfetch(`${target.url}/v1/models`, { headers: { authorization: `Bearer ${target.apiKey}` } })).json()) as { data: { id: string }[] }).data[0]?.id;
    if (!model) throw new CustodyError('ERR_GATEWAY_MODEL', 'the gateway lists no model');
    const res = await cfetch(`${target.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${target.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: prompt }] }),
    });
    // The bytes as received: the receipt signs their digest (`custody receipt verify --response`).
    const response = new Uint8Array(await res.arrayBuffer());
    const body = JSON.parse(new TextDecoder().decode(response)) as { choices?: { message?: { content?: string } }[]; code?: string };
    if (res.status !== 200) throw new CustodyError(body.code ?? 'ERR_GATEWAY_BACKEND', `the gateway answered ${res.status}`);
    await cfetch.receiptOf(res);
    const verification = cfetch.lastVerification!;
    return { answer: body.choices?.[0]?.message?.content ?? '', receipt: receipt!, verification, verificationText: renderVerificationText(verification), bundle: cfetch.lastBundle!, response };
  } finally {
    transport.close();
  }
}
