import { lookup } from 'node:dns/promises';
import { writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import type { Command } from 'commander';
import { checkServiceUrl, CustodyError, fromUtf8 } from '@custody/core';
import { createGatewayLogger, gatewayLogDestination, launchGateway, launchRelay, MAX_CONNECTIONS, type LaunchGatewayConfig } from '@custody/gateway-service';
import { readInputFile, readSecretFile } from '../files.js';
import { MAX_CONNECTIONS_BOUND, parseCount, parsePort, parseSeconds } from '../numbers.js';
import { GPU_EVIDENCE_CMD_HELP, gpuCommands, gpuRoots as readGpuRoots } from '../gpu.js';
import { failWith, printJson } from '../output.js';
import { HttpAuditSink, writerKeyFrom } from '@custody/ledger-service';
import { takeWriterKey } from './broker.js';
import type { Register } from './index.js';

interface ServeOptions {
  demo?: boolean;
  model?: string;
  modelPlainDir?: string;
  upstream?: string;
  modelDigest?: string[];
  port: string;
  maxConnections: string;
  drain: string;
  host: string;
  attester: string;
  tpmTcti?: string;
  measurement?: string;
  appraisalPolicy?: string;
  broker?: string;
  brokerKeyEnv: string;
  brokerKeyFile?: string;
  brokerTenant: string;
  tenants?: string;
  apiKey?: string;
  jwksOut?: string;
  rotateKeys?: string;
  replayStore: string;
  identityKey?: string;
  ledger?: string;
  ledgerKeyEnv: string;
  ledgerKeyFile?: string;
  gpuEvidenceCmd?: string[];
  gpuRoot?: string[];
  json?: boolean;
}

const repeat = (value: string, previous: string[] = []): string[] => [...previous, value];

/** A key from a file (`--broker-key-file`, `--ledger-key-file`): its text, trimmed; empty is a usage error. */
function keyFile(path: string, what: string): string {
  const text = fromUtf8(readSecretFile(path, `${what} file`)).trim();
  if (!text) throw new CustodyError('ERR_USAGE', `the ${what} file is empty`);
  return text;
}

/**
 * The workload API key for --broker, read once and removed from the environment (as the ledger
 * writer key is): nothing started later (a GPU evidence program, a TPM tool) inherits it.
 */
export function takeBrokerKey(name: string): string | undefined {
  const value = process.env[name];
  delete process.env[name];
  return value === undefined || value === '' ? undefined : value;
}

/** The addresses a host name or literal stands for (none when it does not resolve now). */
async function addressesOf(host: string): Promise<string[]> {
  const name = host.replace(/^\[|\]$/g, '');
  const norm = (a: string) => a.toLowerCase().replace(/^::ffff:/, '');
  if (isIP(name)) return [norm(name)];
  try {
    return (await lookup(name, { all: true })).map((a) => norm(a.address));
  } catch {
    return [];
  }
}

/**
 * Whether an http `gateway` URL names the relay's own listening address (`host`, `port`): the
 * relay would forward each request to itself, hop after hop, until its connections to "the
 * gateway" are all taken and every request waits out the 10-minute deadline. An easy slip: the
 * gateway listens on 8443 by default, the relay on 8444.
 */
async function isOwnAddress(gateway: string, host: string, port: number): Promise<boolean> {
  const u = new URL(gateway);
  if (u.protocol !== 'http:' || Number(u.port || 80) !== port) return false;
  const targets = await addressesOf(u.hostname);
  const listening = await addressesOf(host);
  const unspecified = (a: string) => a === '0.0.0.0' || a === '::';
  if (!listening.some(unspecified)) return targets.some((a) => listening.includes(a));
  // Listening on every address: any address of this machine reaches it.
  const local = new Set(Object.values(networkInterfaces()).flatMap((list) => (list ?? []).map((i) => i.address.toLowerCase())));
  return targets.some((a) => unspecified(a) || local.has(a) || a.startsWith('127.') || a === '::1');
}

/** On SIGTERM or SIGINT, how long requests in progress may finish before their connections are cut. */
const DRAIN_MS = 10_000;

function untilSignal(close: () => Promise<void>): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      void close().finally(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

/**
 * `custody gateway serve` (the confidential inference gateway) and `custody relay serve`
 * (an OHTTP relay in front of one gateway). Both serve until interrupted.
 */
export const register: Register = (program: Command) => {
  const gateway = program.command('gateway').description('Confidential inference gateway: OpenAI-compatible routes reachable only through Oblivious HTTP, with attestation and signed receipts');
  gateway
    .command('serve')
    .description('attest, then serve the demo model, an OpenAI-compatible upstream, or a GGUF model until interrupted')
    .option('--demo', 'serve custody-demo (not a real LLM); the default when no --model or --upstream is given')
    .option('--model <file>', 'serve a GGUF model in process (node-llama-cpp, CPU prebuilt binary), or a sealed model (`custody model seal`), decrypted inside the TEE with the key --broker releases to this attested gateway')
    .option('--model-plain-dir <dir>', 'where a sealed model is decrypted for loading, then unlinked: tmpfs or ramfs only (default /dev/shm)')
    .option('--upstream <url>', 'forward to an OpenAI-compatible server in the same TEE (vLLM, llama.cpp server, Ollama)')
    .option('--model-digest <id=sha256:hex...>', 'weights digest of an upstream model, for receipts (repeatable)')
    .option('--port <n>', 'listen port (0: any free port)', '8443')
    .option('--max-connections <n>', 'connections open at once (past it a new one is closed as it is accepted; no bound per client address: clients often come through one relay or load balancer)', String(MAX_CONNECTIONS))
    .option('--drain <seconds>', 'on SIGTERM or SIGINT, how long requests in progress may finish before their connections are cut (0: at once; a second signal cuts too)', String(DRAIN_MS / 1000))
    .option('--host <addr>', 'listen address', '127.0.0.1')
    .option('--attester <sim|tpm>', 'evidence source (sim is SIMULATED, for development)', 'sim')
    .option('--tpm-tcti <tcti>', 'TPM TCTI, e.g. swtpm:host=127.0.0.1,port=2321 (default device:/dev/tpmrm0)')
    .option('--measurement <hex>', 'sim measurement (default 48 zero bytes)')
    .option('--appraisal-policy <file>', 'appraisal policy of the in-process development broker (default: accept this sim measurement)')
    .option('--broker <url>', 'key broker URL (docs/key-release-protocol.md); default an in-process development broker')
    .option('--broker-key-env <name>', 'environment variable holding the workload API key for --broker', 'CUSTODY_BROKER_API_KEY')
    .option('--broker-key-file <path>', 'or: a file holding it (better: a process of the same user can read the starting environment, /proc/<pid>/environ; a file can be readable by the gateway alone)')
    .option('--broker-tenant <name>', 'tenant at the broker', 'default')
    .option('--tenants <file>', 'tenants and input policies (YAML/JSON); default one demo tenant')
    .option('--api-key <key>', 'API key of the default demo tenant (default: generated and printed)')
    .option('--jwks-out <file>', 'write the JWKS clients must pin (the broker\'s EAR signing keys)')
    .option('--rotate-keys <seconds>', 'rotate the OHTTP key (and re-attest) this often')
    .option('--replay-store <sqlite:PATH|postgres://...>', 'anti-replay store; memory protects one process only, so replicas behind a load balancer need a shared one: sqlite:PATH (same host) or postgres://... (several hosts)', 'memory')
    .option('--identity-key <name>', 'replicas behind one address: derive the OHTTP and receipt keys from this broker-held secret, released only to attested replicas (needs --broker; use with a shared --replay-store)')
    .option('--ledger <url>', 'transparency ledger (`custody log serve`) for receipts and policy decisions; default an in-memory development log that nothing outside this process sees')
    .option('--ledger-key-env <name>', 'environment variable holding this gateway\'s writer key for --ledger (`custody log writer-key`), when the log admits its writers only', 'CUSTODY_LEDGER_KEY')
    .option('--ledger-key-file <path>', 'or: a file holding it')
    .option(
      '--gpu-evidence-cmd <command>',
      GPU_EVIDENCE_CMD_HELP,
      repeat,
    )
    .option('--gpu-root <file>', 'trust anchor (PEM/DER) for GPU evidence instead of the pinned NVIDIA Device Identity CA (private PKI, tests), for this gateway\'s own check and the development broker (repeatable)', repeat)
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: ServeOptions) => {
      const json = opts.json ?? false;
      try {
        if ([opts.demo, opts.model, opts.upstream].filter(Boolean).length > 1) throw new CustodyError('ERR_USAGE', 'choose one of --demo, --model and --upstream');
        if (opts.attester !== 'sim' && opts.attester !== 'tpm') throw new CustodyError('ERR_USAGE', '--attester must be sim or tpm');
        if (opts.identityKey !== undefined && !opts.broker) throw new CustodyError('ERR_USAGE', '--identity-key needs --broker: the identity key is held by the key broker');
        if (!/^(memory|sqlite:.+|postgres(ql)?:\/\/.+)$/.test(opts.replayStore)) throw new CustodyError('ERR_USAGE', '--replay-store must be memory, sqlite:PATH or postgres://...');
        // Before anything starts: a URL with credentials or a query, or not http(s), would show as an unreachable service.
        for (const [flag, url] of [['--upstream', opts.upstream], ['--broker', opts.broker], ['--ledger', opts.ledger]] as const) if (url !== undefined) checkServiceUrl(url, flag);
        const maxConnections = parseCount(opts.maxConnections, '--max-connections', 1, MAX_CONNECTIONS_BOUND);
        const drainMs = parseSeconds(opts.drain, '--drain', 0);
        const digests: Record<string, string> = {};
        for (const d of opts.modelDigest ?? []) {
          const m = /^([^=]+)=(sha256:[0-9a-f]{64})$/.exec(d);
          if (!m) throw new CustodyError('ERR_USAGE', '--model-digest must be <model-id>=sha256:<64 hex>');
          digests[m[1]!] = m[2]!;
        }
        const gpus = gpuCommands(opts.gpuEvidenceCmd ?? []);
        const gpuRoots = readGpuRoots(opts.gpuRoot ?? []);
        if (gpuRoots.length > 0 && gpus.length === 0) throw new CustodyError('ERR_USAGE', '--gpu-root applies to GPU evidence: give --gpu-evidence-cmd too');
        let writerKey: ReturnType<typeof takeWriterKey>;
        if (opts.ledger !== undefined && opts.ledgerKeyFile) {
          delete process.env[opts.ledgerKeyEnv];
          writerKey = writerKeyFrom(keyFile(opts.ledgerKeyFile, 'ledger writer key'));
        } else if (opts.ledger !== undefined) writerKey = takeWriterKey(opts.ledgerKeyEnv);
        if (opts.brokerKeyFile && !opts.broker) throw new CustodyError('ERR_USAGE', '--broker-key-file is the key for --broker: give --broker too');
        if (opts.ledgerKeyFile && opts.ledger === undefined) throw new CustodyError('ERR_USAGE', '--ledger-key-file is the key for --ledger: give --ledger too');
        let broker: LaunchGatewayConfig['broker'];
        if (opts.broker) {
          // With a key file, a key also left in the environment is taken out of it all the same (child processes never see it).
          const fromEnv = takeBrokerKey(opts.brokerKeyEnv);
          const key = opts.brokerKeyFile ? keyFile(opts.brokerKeyFile, 'broker API key') : fromEnv;
          if (!key) throw new CustodyError('ERR_USAGE', `--broker needs a workload API key in $${opts.brokerKeyEnv}`);
          broker = { url: opts.broker, apiKey: key, tenant: opts.brokerTenant };
        }
        const launched = await launchGateway({
          port: parsePort(opts.port),
          host: opts.host,
          attester: opts.attester,
          ...(opts.tpmTcti ? { tpmTcti: opts.tpmTcti } : {}),
          ...(opts.measurement ? { simMeasurement: opts.measurement } : {}),
          ...(opts.upstream ? { upstream: opts.upstream, upstreamDigests: digests } : {}),
          ...(opts.model ? { modelPath: opts.model } : {}),
          ...(opts.modelPlainDir !== undefined ? { modelPlainDir: opts.modelPlainDir } : {}),
          ...(opts.appraisalPolicy ? { appraisalPolicy: fromUtf8(readInputFile(opts.appraisalPolicy, 'appraisal policy')) } : {}),
          ...(opts.tenants ? { tenants: fromUtf8(readInputFile(opts.tenants, 'tenants policy')) } : {}),
          ...(opts.apiKey ? { apiKey: opts.apiKey } : {}),
          ...(broker ? { broker } : {}),
          ...(opts.rotateKeys !== undefined ? { keyRotationMs: parseSeconds(opts.rotateKeys, '--rotate-keys', 10) } : {}),
          replayStore: opts.replayStore,
          maxConnections,
          ...(opts.identityKey !== undefined ? { identityKey: opts.identityKey } : {}),
          ...(opts.ledger !== undefined ? { ledger: opts.ledger } : {}),
          ...(writerKey ? { ledgerWriterKey: writerKey } : {}),
          ...(gpus.length > 0 ? { gpus } : {}),
          ...(gpuRoots.length > 0 ? { gpuRoots } : {}),
        });
        if (opts.jwksOut) writeFileSync(opts.jwksOut, JSON.stringify(launched.jwks, null, 2) + '\n');
        if (json) printJson({ ok: true, url: launched.url, simulated: launched.simulated, gpus: launched.gpus, jwks: launched.jwks, ledger: launched.ledger instanceof HttpAuditSink ? launched.ledger.location : null, ...(launched.apiKey ? { apiKey: launched.apiKey } : {}) });
        else {
          process.stderr.write(launched.summary.join('\n') + '\n');
          if (opts.jwksOut) process.stderr.write(`  JWKS         written to ${opts.jwksOut} (clients pin it)\n`);
          process.stderr.write('  stop         Ctrl-C\n');
        }
        await untilSignal(() => launched.close({ drainMs }));
      } catch (e) {
        failWith(e, json);
      }
    });

  const relay = program.command('relay').description('Oblivious HTTP relay: forwards encapsulated requests so the gateway never sees client addresses');
  relay
    .command('serve')
    .description('relay POST /ohttp and attestation discovery to one gateway until interrupted')
    .requiredOption('--gateway <url>', 'the gateway base URL')
    .option('--port <n>', 'listen port (0: any free port)', '8444')
    .option('--max-connections <n>', 'connections open at once (past it a new one is closed as it is accepted)', String(MAX_CONNECTIONS))
    .option('--drain <seconds>', 'on SIGTERM or SIGINT, how long requests in progress may finish before their connections are cut (0: at once)', String(DRAIN_MS / 1000))
    .option('--host <addr>', 'listen address', '127.0.0.1')
    .option('--json', 'print the startup summary as JSON')
    .action(async (opts: { gateway: string; port: string; host: string; maxConnections: string; drain: string; json?: boolean }) => {
      const json = opts.json ?? false;
      try {
        checkServiceUrl(opts.gateway, '--gateway');
        const maxConnections = parseCount(opts.maxConnections, '--max-connections', 1, MAX_CONNECTIONS_BOUND);
        const drainMs = parseSeconds(opts.drain, '--drain', 0);
        // Its events (gateway unreachable, late, an answer cut off) as JSON lines on stderr, as the gateway's.
        const server = await launchRelay({ gateway: opts.gateway, port: parsePort(opts.port), host: opts.host, maxConnections, logger: createGatewayLogger({ destination: gatewayLogDestination(2) }) });
        if (await isOwnAddress(opts.gateway, opts.host, server.port)) {
          await server.close();
          throw new CustodyError('ERR_USAGE', `--gateway is this relay's own address (port ${server.port}): it would forward every request to itself; give the gateway's URL (gateway serve listens on 8443 by default)`);
        }
        if (json) printJson({ ok: true, url: server.url, gateway: opts.gateway });
        else process.stderr.write(`custody relay listening on ${server.url}, forwarding to ${opts.gateway} (no client addresses are passed on)\n`);
        await untilSignal(() => server.close({ drainMs }));
      } catch (e) {
        failWith(e, json);
      }
    });
};
