// Confidential inference overhead, in one run: the same OpenAI-style requests (4 KiB prompt;
// short answer, and a 16-token streamed answer) sent directly to the model server and through
// SDK + OHTTP + gateway (attested with sim evidence, tenant auth, PII input policy, receipt
// signed and logged, response encapsulated), at 1 and 8 concurrent clients.
//
// Three parts:
// 1. Floors (one process, sequential, no HTTP): raw X25519 + AES-GCM, one OHTTP exchange and
//    one receipt signature, each on both HPKE providers (WebCrypto, node:crypto).
// 2. In process, no sockets: CPU per request of SDK + gateway + model server against the model
//    server alone. CPU time does not depend on what else runs on the machine.
// 3. Loopback: model server and gateway are child processes of this script (re-spawned with
//    CUSTODY_BENCH_ROLE), clients run here. Latency, throughput and CPU per request of every
//    process (from /proc/<pid>/task/*/schedstat). Two backend profiles: "instant" (the server
//    answers at once: the pure overhead, a worst case) and "model-like" (10 ms per short answer,
//    1 ms per streamed token: still far faster than a real LLM). The instant profile also runs
//    with the gateway on WebCrypto (before node:crypto) and with the client on node:crypto.
//    Beside direct, two baselines in the same run: a plain reverse proxy (the cost of any extra
//    hop) and the floor path (bench/_floor.ts: the raw crypto of the exchange around the same
//    hop, nothing else; what no implementation of this design avoids on this machine).
//    BENCH_QUICK=1 runs only the default providers on both profiles and writes nothing.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, sign as nodeSign, createCipheriv, createDecipheriv, diffieHellman } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { setHpkeProvider, setSignatureProvider, subtle, webCryptoHpkePrimitives, type HpkePrimitives } from '@custody/core';
import { nodeGatewayFetch, nodeHpkePrimitives, nodeSignaturePrimitives } from '@custody/crypto-node';
import {
  createConfidentialFetch,
  createOhttpServerKey,
  decapsulateChunkedRequest,
  decapsulateRequest,
  encapsulateChunkedRequest,
  encapsulateRequest,
  encodeBhttpRequest,
  readAll,
  streamOf,
} from '@custody/sdk';
import { floorClient, startFloorServer } from './_floor.js';
import { machine, percentile, writeSection } from './_machine.js';

const ROLE = process.env.CUSTODY_BENCH_ROLE;
const RUN_MS = Number(process.env.BENCH_MS ?? 3000);
/** Interleaved rounds per row (measureRow). */
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const INPROC_N = Number(process.env.BENCH_INPROC_N ?? 1000);
/** Requests each process path gets before it is measured: V8 optimises a hot function only after many calls. */
const WARM_REQUESTS = Number(process.env.BENCH_WARM_REQUESTS ?? 3000);
const WORDS = 'the quarterly report lists revenue costs margins and forecasts for each region together with notes on supply contracts staffing plans and open risks that the board asked to review before the next planning cycle begins'.split(' ');
const PROMPT = (() => {
  let s = '';
  for (let i = 0; s.length < 4096; i++) s += WORDS[i % WORDS.length]! + ' ';
  return s.slice(0, 4096);
})();
const API_KEY = 'sk-bench-tenant-0000000001';
type ProviderName = 'webcrypto' | 'node:crypto';
const PROVIDERS: Record<ProviderName, HpkePrimitives> = { webcrypto: webCryptoHpkePrimitives, 'node:crypto': nodeHpkePrimitives };

// ------------------------------------------------------------------ child processes

if (ROLE === 'upstream') {
  const { startFakeUpstream } = await import('@custody/gateway-service/testing');
  const serviceMs = Number(process.env.SERVICE_MS ?? 0);
  const tokenMs = Number(process.env.TOKEN_MS ?? 0);
  // Nothing recorded: the model server's heap stays flat over the whole run.
  const up = await startFakeUpstream({ words: 16, serviceMs, tokenMs, echo: false, record: false });
  process.stdout.write(JSON.stringify({ url: up.url }) + '\n');
  await new Promise(() => undefined);
} else if (ROLE === 'gateway') {
  const { launchGateway, createGatewayLogger, gatewayLogDestination } = await import('@custody/gateway-service');
  const g = await launchGateway({
    ...(process.env.LEDGER ? { ledger: process.env.LEDGER } : {}),
    upstream: process.env.UPSTREAM!,
    port: 0,
    apiKey: API_KEY,
    hpkeProvider: (process.env.GATEWAY_HPKE as ProviderName | undefined) ?? 'node:crypto',
    // Logged as in production (one line per receipt, the gateway's buffered destination), to /dev/null.
    logger: createGatewayLogger({ level: 'info', destination: gatewayLogDestination('/dev/null') }),
  });
  process.stdout.write(JSON.stringify({ url: g.url, jwks: g.jwks }) + '\n');
  // A clean exit on SIGTERM, so `--cpu-prof` profiles of this process get written.
  process.once('SIGTERM', () => process.exit(0));
  await new Promise(() => undefined);
}

if (ROLE === 'ledger') {
  // The transparency ledger as its own service (what `custody log serve` runs): SQLite
  // sequencing with synchronous=FULL (every acknowledged append is on disk), tiles on disk.
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const path = await import('node:path');
  const join = (...p: string[]) => path.join(...p);
  const { SIG_TYPE_ED25519, generateSignerKey } = await import('@custody/ledger');
  const { secureRandom } = await import('@custody/core');
  const { createEventsNodeHandler, createLogApp, listen, openLog } = await import('@custody/ledger-service');
  const dir = mkdtempSync(join(tmpdir(), 'custody-bench-ledger-'));
  const key = await generateSignerKey('bench.local/ledger', SIG_TYPE_ED25519, secureRandom);
  const { log, store } = await openLog({ dir: join(dir, 'log'), skey: key.skey });
  const server = await listen(createLogApp(log, store), '127.0.0.1', 0, { intercept: createEventsNodeHandler(log) });
  process.stdout.write(JSON.stringify({ url: server.url }) + '\n');
  process.once('SIGTERM', () => {
    void log.close({ integrate: false }).finally(() => {
      rmSync(dir, { recursive: true, force: true });
      process.exit(0);
    });
  });
  await new Promise(() => undefined);
}

if (ROLE === 'proxy') {
  // The baseline hop: a plain reverse proxy (node:http, keep-alive to the model server, bodies
  // piped both ways), what any extra process in front of the model costs without Custody.
  const { createServer, request, Agent } = await import('node:http');
  const target = new URL(process.env.UPSTREAM!);
  const agent = new Agent({ keepAlive: true });
  const server = createServer((req, res) => {
    const out = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    out.on('error', () => res.destroy());
    req.pipe(out);
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1', () => {
    const a = server.address();
    process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}` }) + '\n');
  });
  await new Promise(() => undefined);
}

if (ROLE === 'floor') {
  // The floor path (bench/_floor.ts): the raw crypto of a confidential exchange around the same hop.
  process.stdout.write(JSON.stringify(await startFloorServer(process.env.UPSTREAM!)) + '\n');
  process.once('SIGTERM', () => process.exit(0));
  await new Promise(() => undefined);
}

/**
 * Where processes may run. `shared`: anywhere (both cores, as the OS schedules them). `pinned`:
 * the clients (this process) on core 0, every server (model server, proxy, floor server,
 * gateway) on core 1, as in a deployment where the clients are other machines and the gateway
 * shares the TEE with the model server.
 */
type Placement = 'shared' | 'pinned';
let placement: Placement = 'shared';

/** Sets the CPU affinity of every thread of a process (util-linux taskset). */
function pin(pid: number, cpus: string): void {
  execFileSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' });
}

function place(p: Placement): void {
  placement = p;
  pin(process.pid, p === 'pinned' ? '0' : '0-1');
}

function child(role: string, env: Record<string, string>): Promise<{ proc: ChildProcess; info: Record<string, unknown> }> {
  const proc = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], { env: { ...process.env, ...env, CUSTODY_BENCH_ROLE: role }, stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((res, rej) => {
    let out = '';
    let settled = false;
    proc.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n')[0]!;
      if (out.includes('\n') && !settled) {
        settled = true;
        // Once it is listening, so every thread it starts with is placed.
        if (placement === 'pinned') pin(proc.pid!, '1');
        res({ proc, info: JSON.parse(line) as Record<string, unknown> });
      }
    });
    proc.on('exit', (code) => rej(new Error(`${role} exited ${code}`)));
  });
}

/** CPU time (µs) of every thread of a process so far, from the scheduler's nanosecond counters. */
function cpuOfPid(pid: number): number {
  let ns = 0;
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // a thread that ended meanwhile
    }
  }
  return ns / 1000;
}

function cpuSelf(): number {
  const u = process.cpuUsage();
  return u.user + u.system;
}

// ------------------------------------------------------------------ measurement

interface Stat {
  n: number;
  rps: number;
  p50: number;
  p99: number;
  /** CPU µs per request: this process (clients), the gateway, the model server, and the ledger service when there is one. */
  cpu: { client: number; gateway: number; upstream: number; ledger?: number };
  /** Requests per second in each interleaved round (measureRow). */
  rounds: number[];
  /** Gateway path: the mean of the gateway's own custody_gateway_overhead_seconds over the same windows, µs. */
  overhead?: number;
}

/** Processes to measure; `metrics`: the gateway's /metrics URL, for its own count of the time it adds. */
type Pids = { gateway?: number; upstream: number; ledger?: number; metrics?: string };

/** Sum (seconds) and count of custody_gateway_overhead_seconds over all its series, from the gateway's /metrics. */
async function overheadTotals(url: string): Promise<{ sum: number; count: number }> {
  const text = await (await fetch(url)).text();
  const total = (suffix: string) =>
    text
      .split('\n')
      .filter((l) => l.startsWith(`custody_gateway_overhead_seconds_${suffix}{`))
      .reduce((a, l) => a + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
  return { sum: total('sum'), count: total('count') };
}

/** One measured window of one path: latencies, elapsed time and CPU by process. */
interface Window {
  lat: number[];
  elapsed: number;
  cpu: { client: number; gateway: number; upstream: number; ledger: number };
  /** What the gateway's overhead histogram gained over the window (read outside the measured time). */
  overhead?: { sum: number; count: number };
}

async function window(concurrency: number, one: () => Promise<void>, pids: Pids, ms: number, warmMs: number): Promise<Window> {
  const warmEnd = performance.now() + warmMs;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < warmEnd) await one();
    }),
  );
  const lat: number[] = [];
  const o0 = pids.metrics ? await overheadTotals(pids.metrics) : undefined;
  const c0 = { client: cpuSelf(), gateway: pids.gateway ? cpuOfPid(pids.gateway) : 0, upstream: cpuOfPid(pids.upstream), ledger: pids.ledger ? cpuOfPid(pids.ledger) : 0 };
  const start = performance.now();
  const end = start + ms;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        await one();
        lat.push(performance.now() - t);
      }
    }),
  );
  const elapsed = performance.now() - start;
  const cpu = {
    client: cpuSelf() - c0.client,
    gateway: pids.gateway ? cpuOfPid(pids.gateway) - c0.gateway : 0,
    upstream: cpuOfPid(pids.upstream) - c0.upstream,
    ledger: pids.ledger ? cpuOfPid(pids.ledger) - c0.ledger : 0,
  };
  const o1 = pids.metrics ? await overheadTotals(pids.metrics) : undefined;
  return { lat, elapsed, cpu, ...(o0 && o1 ? { overhead: { sum: o1.sum - o0.sum, count: o1.count - o0.count } } : {}) };
}

/** Windows of one path pooled: rps over their summed time, percentiles over all their latencies, CPU over all their requests. */
function pooled(ws: readonly Window[], withLedger: boolean): Stat {
  const lat = ws.flatMap((w) => w.lat).sort((a, b) => a - b);
  const n = lat.length;
  const sum = (f: (w: Window) => number) => ws.reduce((a, w) => a + f(w), 0);
  return {
    n,
    rps: (n * 1000) / sum((w) => w.elapsed),
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    cpu: {
      client: sum((w) => w.cpu.client) / n,
      gateway: sum((w) => w.cpu.gateway) / n,
      upstream: sum((w) => w.cpu.upstream) / n,
      ...(withLedger ? { ledger: sum((w) => w.cpu.ledger) / n } : {}),
    },
    rounds: ws.map((w) => (w.lat.length * 1000) / w.elapsed),
    ...(ws.every((w) => w.overhead) && sum((w) => w.overhead!.count) > 0 ? { overhead: (sum((w) => w.overhead!.sum) / sum((w) => w.overhead!.count)) * 1e6 } : {}),
  };
}

/**
 * The paths of one row measured in ROUNDS interleaved rounds (each round takes every path once,
 * in an order that rotates), RUN_MS per path in all: a machine that slows down or speeds up
 * during the row (these 2 cores are shared) moves every path alike, not only the one measured
 * at that moment. The first window of each path warms it for a second, later ones briefly.
 */
async function measureRow<K extends string>(concurrency: number, paths: readonly { key: K; one: () => Promise<void>; pids: Pids }[]): Promise<Record<K, Stat>> {
  const ws = new Map<K, Window[]>(paths.map((p) => [p.key, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (let i = 0; i < paths.length; i++) {
      const p = paths[(i + r) % paths.length]!;
      ws.get(p.key)!.push(await window(concurrency, p.one, p.pids, RUN_MS / ROUNDS, r === 0 ? 1000 : 200));
    }
  }
  return Object.fromEntries(paths.map((p) => [p.key, pooled(ws.get(p.key)!, p.pids.ledger !== undefined)])) as Record<K, Stat>;
}

/** WARM_REQUESTS requests of one kind from 8 clients, unmeasured. */
async function warm(one: () => Promise<void>): Promise<void> {
  let left = WARM_REQUESTS;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left-- > 0) await one();
    }),
  );
}

/** The floor path runs beside the default Node setup (node:crypto on both sides, node:http client transport, in-memory log). */
function withFloor(cfg: LoopConfig): boolean {
  return cfg.client === 'node:crypto' && cfg.gateway === 'node:crypto' && cfg.transport === 'node:http' && !cfg.ledger;
}

function chatBody(stream: boolean): string {
  return JSON.stringify({ model: 'fake-model', stream, max_tokens: 16, messages: [{ role: 'user', content: PROMPT }] });
}

async function drain(res: Response): Promise<void> {
  if (res.status !== 200) throw new Error(`status ${res.status}: ${await res.text()}`);
  const reader = res.body!.getReader();
  for (;;) if ((await reader.read()).done) break;
}

// ------------------------------------------------------------------ 1. floors

interface FloorRow {
  name: string;
  us: Record<ProviderName, number>;
}

async function timeUs(fn: () => unknown, n = 2000): Promise<number> {
  for (let i = 0; i < 200; i++) await fn();
  const t = performance.now();
  for (let i = 0; i < n; i++) await fn();
  return ((performance.now() - t) * 1000) / n;
}

async function floors(): Promise<{ raw: { name: string; us: number }[]; rows: FloorRow[] }> {
  const body = new TextEncoder().encode(chatBody(false));
  const req = encodeBhttpRequest({ method: 'POST', scheme: 'https', authority: 'gw', path: '/v1/chat/completions', headers: [['content-type', 'application/json']], content: body });
  const res = new Uint8Array(600).fill(7);
  // The crypto an exchange cannot avoid: an ephemeral X25519 key, a DH on each side, AES-128-GCM
  // over the request and the response in both directions.
  const peer = generateKeyPairSync('x25519');
  const aesKey = new Uint8Array(16).fill(1);
  const iv = new Uint8Array(12);
  const gcm = (data: Uint8Array) => {
    const c = createCipheriv('aes-128-gcm', aesKey, iv);
    const ct = Buffer.concat([c.update(data), c.final()]);
    const d = createDecipheriv('aes-128-gcm', aesKey, iv);
    d.setAuthTag(c.getAuthTag());
    return Buffer.concat([d.update(ct), d.final()]);
  };
  const raw = [
    {
      name: 'X25519 keygen + 2 DH + AES-128-GCM seal and open of 4 KiB and 600 B (node:crypto, synchronous)',
      us: await timeUs(() => {
        const e = generateKeyPairSync('x25519');
        diffieHellman({ privateKey: e.privateKey, publicKey: peer.publicKey });
        diffieHellman({ privateKey: peer.privateKey, publicKey: e.publicKey });
        gcm(req);
        gcm(res);
      }),
    },
  ];
  const webPeer = (await subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']));
  const webAes = await subtle.importKey('raw', aesKey, 'AES-GCM', false, ['encrypt', 'decrypt']);
  raw.push({
    name: 'the same on WebCrypto (async)',
    us: await timeUs(async () => {
      const e = (await subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']));
      await subtle.deriveBits({ name: 'X25519', public: webPeer.publicKey }, e.privateKey, 256);
      await subtle.deriveBits({ name: 'X25519', public: e.publicKey }, webPeer.privateKey, 256);
      for (const data of [req, res]) await subtle.decrypt({ name: 'AES-GCM', iv }, webAes, await subtle.encrypt({ name: 'AES-GCM', iv }, webAes, data));
    }),
  });
  const rows: FloorRow[] = [];
  const both = async (name: string, make: () => Promise<() => Promise<unknown>>) => {
    const us = {} as Record<ProviderName, number>;
    for (const p of ['webcrypto', 'node:crypto'] as const) {
      setHpkeProvider(PROVIDERS[p]);
      us[p] = await timeUs(await make());
    }
    setHpkeProvider();
    rows.push({ name, us });
  };
  await both('OHTTP exchange, 4 KiB request + 600 B response (client encap, gateway decap, gateway encap, client decap)', async () => {
    const key = await createOhttpServerKey({ keyId: 1 });
    return async () => {
      const { encapsulatedRequest, context } = await encapsulateRequest(key.config, req);
      const d = await decapsulateRequest([key], encapsulatedRequest);
      await context.decapsulateResponse(await d.context.encapsulateResponse(res));
    };
  });
  await both('gateway side only: decapsulate the request, encapsulate the response', async () => {
    const key = await createOhttpServerKey({ keyId: 1 });
    const { encapsulatedRequest } = await encapsulateRequest(key.config, req);
    return async () => {
      const d = await decapsulateRequest([key], encapsulatedRequest);
      await d.context.encapsulateResponse(res);
    };
  });
  await both('chunked OHTTP exchange, same sizes, response in 16 chunks', async () => {
    const key = await createOhttpServerKey({ keyId: 1 });
    return async () => {
      const { body: sealed, context } = await encapsulateChunkedRequest(key.config, req);
      const d = await decapsulateChunkedRequest([key], streamOf(await readAll(sealed)));
      await readAll(d.request);
      const out = await d.context.encapsulateResponse(streamOf(...Array.from({ length: 16 }, () => res.subarray(0, 40))));
      await readAll(context.decapsulateResponse(streamOf(await readAll(out))));
    };
  });
  const receiptBytes = new Uint8Array(900).fill(1);
  const ed = generateKeyPairSync('ed25519');
  const webEd = (await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']));
  raw.push({ name: 'receipt signature, Ed25519 over ~900 B: gateway signs (node:crypto)', us: await timeUs(() => nodeSign(null, receiptBytes, ed.privateKey)) });
  const sig = await subtle.sign({ name: 'Ed25519' }, webEd.privateKey, receiptBytes);
  raw.push({ name: 'receipt verification, Ed25519 over ~900 B: the SDK verifies (WebCrypto)', us: await timeUs(() => subtle.verify({ name: 'Ed25519' }, webEd.publicKey, sig, receiptBytes)) });
  const rawPub = new Uint8Array(await subtle.exportKey('raw', webEd.publicKey));
  const sigBytes = new Uint8Array(sig);
  raw.push({ name: 'receipt verification, Ed25519 over ~900 B: the SDK verifies (node:crypto signature provider)', us: await timeUs(() => nodeSignaturePrimitives.verifyEd25519(rawPub, sigBytes, receiptBytes)) });
  return { raw, rows };
}

// ------------------------------------------------------------------ 2. in process

interface InProcessRow {
  providers: ProviderName;
  shape: string;
  direct: number;
  gateway: number;
}

async function inProcess(): Promise<InProcessRow[]> {
  const { destination } = await import('pino');
  const { SimAttester } = await import('@custody/attester-service');
  const { generateEarSigningKey, loadPolicy } = await import('@custody/policy');
  const { apiKeyDigest, createGatewayLogger, Gateway, InMemoryLedgerSink, LocalAppraisalBroker, UpstreamBackend } = await import('@custody/gateway-service');
  const { createFakeUpstreamApp } = await import('@custody/gateway-service/testing');
  const M = '00'.repeat(48);
  // Nothing recorded: the model server's heap stays flat (it would keep every 4 KiB prompt).
  const up = createFakeUpstreamApp({ words: 16, echo: false, record: false });
  const upFetch = ((input: RequestInfo | URL, init?: RequestInit) => up.fetch(new Request(input, init))) as typeof fetch;
  const rows: InProcessRow[] = [];
  for (const providers of ['webcrypto', 'node:crypto'] as const) {
    const ledger = await InMemoryLedgerSink.create();
    const policy = await loadPolicy(['apiVersion: custody.dev/policy/v1', 'id: bench', 'version: 1', 'allowSimulated: true', 'platforms:', '  sim:', `    measurement: ${M}`, ''].join('\n'));
    const broker = new LocalAppraisalBroker({ policy, signingKey: await generateEarSigningKey({ alg: 'EdDSA' }), ledger });
    const gw = await Gateway.create({
      backend: await UpstreamBackend.create({ url: 'http://upstream.invalid', fetch: upFetch }),
      attester: new SimAttester({ measurements: { measurement: M } }),
      broker,
      ledger,
      policy: { id: 'bench', version: 1, tenants: [{ id: 'demo', apiKeySha256: apiKeyDigest(API_KEY), pii: { defaultAction: 'redact', actions: { email: 'mask', person_name: 'mask', phone: 'mask', payment_card: 'block' } } }] },
      logger: createGatewayLogger({ level: 'info', destination: destination('/dev/null') }),
      hpkeProvider: providers,
    });
    await gw.start();
    const cfetch = createConfidentialFetch({ gateway: 'http://gateway.invalid', jwks: await broker.jwks(), allowSimulated: true, fetch: (input, init) => Promise.resolve(gw.fetch(new Request(input, init))) });
    await cfetch.verify();
    const cpuPer = async (f: () => Promise<void>, n = INPROC_N): Promise<number> => {
      for (let i = 0; i < 150; i++) await f();
      const c = cpuSelf();
      for (let i = 0; i < n; i++) await f();
      return (cpuSelf() - c) / n;
    };
    for (const stream of [false, true]) {
      const direct = await cpuPer(async () => drain(await upFetch('http://upstream.invalid/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(stream) })));
      const gateway = await cpuPer(async () =>
        drain(await cfetch('http://gateway.invalid/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` }, body: chatBody(stream) })),
      );
      const shape = stream ? 'streamed (16 tokens)' : 'short answer';
      console.log(`in process, ${providers}, ${shape}: direct ${direct.toFixed(0)} µs CPU, through SDK + gateway ${gateway.toFixed(0)} µs CPU`);
      rows.push({ providers, shape, direct, gateway });
    }
    await gw.close();
  }
  setHpkeProvider();
  return rows;
}

// ------------------------------------------------------------------ 3. loopback

interface LoopRow {
  profile: string;
  config: string;
  shape: string;
  c: number;
  direct: Stat;
  /** The same requests through a plain reverse proxy (the baseline extra hop). */
  proxy: Stat;
  /** The same requests through the floor path (bench/_floor.ts), for the default providers. */
  floor?: Stat;
  gateway: Stat;
}

/**
 * HPKE providers of a loopback run; `transport`: the clients' HTTP transport on every path of
 * the run (direct, proxy, floor and under the SDK), undici's fetch or nodeGatewayFetch; `ledger`:
 * the gateway logs to a ledger service over HTTP instead of its in-memory log.
 */
interface LoopConfig {
  gateway: ProviderName;
  client: ProviderName;
  transport: 'fetch' | 'node:http';
  ledger?: boolean;
}

const LEDGER_LABEL = ', ledger service over HTTP';
const configLabel = (cfg: LoopConfig) => `gateway ${cfg.gateway}, client ${cfg.client} over ${cfg.transport === 'fetch' ? 'fetch (undici)' : 'node:http'}${cfg.ledger ? LEDGER_LABEL : ''}`;

async function loopback(name: string, serviceMs: number, tokenMs: number, configs: readonly LoopConfig[], shapes: readonly boolean[] = [false, true]): Promise<LoopRow[]> {
  const rows: LoopRow[] = [];
  const up = await child('upstream', { SERVICE_MS: String(serviceMs), TOKEN_MS: String(tokenMs) });
  const upstream = up.info.url as string;
  const px = await child('proxy', { UPSTREAM: upstream });
  const proxyUrl = px.info.url as string;
  const fl = await child('floor', { UPSTREAM: upstream });
  // One node:http transport for the runs that use it; streamed answers handed over as they come.
  const nodeFetch = nodeGatewayFetch({ maxSockets: 64, peer: 'the server' });
  const viaFloor = floorClient(fl.info as { url: string; kem: string; sig: string }, nodeFetch);
  const floorWarm = new Set<boolean>();
  try {
    for (const cfg of configs) {
      const ledger = cfg.ledger ? await child('ledger', {}) : undefined;
      const gw = await child('gateway', { UPSTREAM: upstream, GATEWAY_HPKE: cfg.gateway, ...(ledger ? { LEDGER: ledger.info.url as string } : {}) });
      const gateway = gw.info.url as string;
      const config = configLabel(cfg);
      const clientFetch: typeof fetch = cfg.transport === 'fetch' ? fetch : nodeFetch;
      const gwPids = { gateway: gw.proc.pid!, upstream: up.proc.pid!, metrics: `${gateway}/metrics`, ...(ledger ? { ledger: ledger.proc.pid! } : {}) };
      try {
        setHpkeProvider(PROVIDERS[cfg.client]);
        setSignatureProvider(cfg.client === 'node:crypto' ? nodeSignaturePrimitives : undefined);
        const cfetch = createConfidentialFetch({ gateway, jwks: gw.info.jwks as never, allowSimulated: true, fetch: clientFetch });
        await cfetch.verify();
        const direct = (stream: boolean, base = upstream) => async () => drain(await clientFetch(`${base}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: chatBody(stream) }));
        const viaGateway = (stream: boolean) => async () =>
          drain(await cfetch(`${gateway}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}` }, body: chatBody(stream) }));
        // A fresh process compiles its hot paths first: the gateway (and the floor server, the
        // first time) get WARM_REQUESTS of every shape before anything is measured. At 10 ms per
        // answer a time-boxed warm-up of a second or two left the gateway partly unoptimised.
        for (const stream of shapes) {
          await warm(viaGateway(stream));
          if (withFloor(cfg) && !floorWarm.has(stream)) {
            await warm(() => viaFloor('/v1/chat/completions', chatBody(stream), stream));
            floorWarm.add(stream);
          }
        }
        for (const stream of shapes) {
          for (const c of [1, 8]) {
            const row = await measureRow(c, [
              { key: 'direct', one: direct(stream), pids: { upstream: up.proc.pid! } },
              { key: 'proxy', one: direct(stream, proxyUrl), pids: { gateway: px.proc.pid!, upstream: up.proc.pid! } },
              ...(withFloor(cfg) ? [{ key: 'floor' as const, one: () => viaFloor('/v1/chat/completions', chatBody(stream), stream), pids: { gateway: fl.proc.pid!, upstream: up.proc.pid! } }] : []),
              { key: 'gateway', one: viaGateway(stream), pids: gwPids },
            ]);
            const { direct: d, proxy: p, gateway: g } = row;
            const f = withFloor(cfg) ? row.floor : undefined;
            const shape = stream ? 'streamed (16 tokens)' : 'short answer';
            console.log(`${name} [${config}] ${shape} c=${c}: direct ${d.rps.toFixed(0)} rps p50 ${d.p50.toFixed(2)} ms | proxy ${p.rps.toFixed(0)} rps p50 ${p.p50.toFixed(2)} ms |${f ? ` floor ${f.rps.toFixed(0)} rps p50 ${f.p50.toFixed(2)} ms CPU µs/req client ${f.cpu.client.toFixed(0)} floor ${f.cpu.gateway.toFixed(0)} server ${f.cpu.upstream.toFixed(0)} |` : ''} gateway ${g.rps.toFixed(0)} rps p50 ${g.p50.toFixed(2)} ms p99 ${g.p99.toFixed(2)} ms${g.overhead !== undefined ? ` (own added time ${(g.overhead / 1000).toFixed(2)} ms)` : ''} | CPU µs/req client ${g.cpu.client.toFixed(0)} gateway ${g.cpu.gateway.toFixed(0)} server ${g.cpu.upstream.toFixed(0)}${g.cpu.ledger !== undefined ? ` ledger ${g.cpu.ledger.toFixed(0)}` : ''}`);
            rows.push({ profile: name, config, shape, c, direct: d, proxy: p, ...(f ? { floor: f } : {}), gateway: g });
          }
        }
      } finally {
        gw.proc.kill('SIGTERM');
        ledger?.proc.kill('SIGTERM');
      }
    }
  } finally {
    up.proc.kill('SIGTERM');
    px.proc.kill('SIGTERM');
    fl.proc.kill('SIGTERM');
    nodeFetch.close();
    setHpkeProvider();
    setSignatureProvider();
  }
  return rows;
}

// ------------------------------------------------------------------ report

if (!ROLE) {
  const uptime0 = execFileSync('uptime', { encoding: 'utf8' }).trim();
  const load0 = loadavg();
  const fl = await floors();
  for (const r of fl.raw) console.log(`${r.name}: ${r.us.toFixed(0)} µs`);
  for (const r of fl.rows) console.log(`${r.name}: WebCrypto ${r.us.webcrypto.toFixed(0)} µs, node:crypto ${r.us['node:crypto'].toFixed(0)} µs`);
  // A Node client installs the node:crypto providers (installNodeCrypto) and gives the SDK
  // nodeGatewayFetch; a browser has WebCrypto and fetch only.
  const defaults: LoopConfig = { gateway: 'node:crypto', client: 'node:crypto', transport: 'node:http' };
  const browserLike: LoopConfig = { gateway: 'node:crypto', client: 'webcrypto', transport: 'fetch' };
  const nodeOnFetch: LoopConfig = { ...defaults, transport: 'fetch' };
  /** The model-like rows again with the clients on one core and the servers on the other. */
  const pinnedRun = async () => {
    place('pinned');
    try {
      return await loopback('model-like', 10, 1, [defaults]);
    } finally {
      place('shared');
    }
  };
  if (process.env.BENCH_QUICK === '1') {
    // For trying a change: the default providers on both profiles, printed, nothing written.
    await loopback('instant', 0, 0, [defaults]);
    await loopback('model-like', 10, 1, [defaults]);
    if (process.env.BENCH_PINNED === '1') await pinnedRun();
    process.exit(0);
  }
  const inproc = await inProcess();
  const loop = [
    ...(await loopback('instant', 0, 0, [{ gateway: 'webcrypto', client: 'webcrypto', transport: 'fetch' }, browserLike, nodeOnFetch, defaults])),
    ...(await loopback('model-like', 10, 1, [defaults, browserLike, { ...defaults, ledger: true }])),
  ];
  const pinned = await pinnedRun();
  const load1 = loadavg();
  const uptime1 = execFileSync('uptime', { encoding: 'utf8' }).trim();
  const ms = (x: number) => x.toFixed(2);
  const us = (x: number) => x.toFixed(0);
  /** One path's throughput as a share of another's. */
  const pct = (a: Stat, b: Stat) => `${((a.rps / b.rps) * 100).toFixed(0)}%`;
  /** The ratio of two paths' throughput in each interleaved round, as a range: how much the rounds agree. */
  const byRound = (a: Stat, b: Stat) => {
    const r = a.rounds.map((x, i) => (x / b.rounds[i]!) * 100);
    return `${Math.min(...r).toFixed(0)}–${Math.max(...r).toFixed(0)}%`;
  };
  /** The gateway's own metric of the time it adds (mean over the row's windows), or n/a. */
  const ownOverhead = (g: Stat) => (g.overhead === undefined ? 'n/a' : ms(g.overhead / 1000));
  const lines: string[] = [];
  lines.push('## Confidential inference gateway (bench/gateway.ts)');
  lines.push('');
  lines.push(`Machine: ${machine()}; load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end (\`uptime\`: "${uptime0}" / "${uptime1}"). The 2 cores are shared with other jobs: latency moves with them; CPU per request moves much less.`);
  lines.push('');
  lines.push('Same requests, directly to the model server and through SDK + OHTTP + gateway. Prompt: 4 KiB of plain text in one chat message; short answer: 16 words in one JSON body; streamed: 16 SSE token events (chunked OHTTP). Through the gateway every request is verified-once (cached), encapsulated, decapsulated, date-checked, replay-checked, tenant-authenticated, PII-scanned (no findings in this text, so the original bytes are forwarded), logged as a policy decision and a receipt in the in-memory ledger, forwarded to the same server, and its receipt is signed (Ed25519) and verified by the client. The gateway uses sim evidence. HPKE runs on a pluggable provider: WebCrypto (the SDK default, browsers) or node:crypto (synchronous; what the gateway installs at start).');
  lines.push('');
  lines.push('### Floors (one process, sequential, no HTTP)');
  lines.push('');
  lines.push('| operation | µs per op |');
  lines.push('|---|---:|');
  for (const r of fl.raw) lines.push(`| ${r.name} | ${us(r.us)} |`);
  lines.push('');
  lines.push('| operation | WebCrypto provider µs | node:crypto provider µs |');
  lines.push('|---|---:|---:|');
  for (const r of fl.rows) lines.push(`| ${r.name} | ${us(r.us.webcrypto)} | ${us(r.us['node:crypto'])} |`);
  lines.push('');
  lines.push('### In process, no sockets: CPU per request');
  lines.push('');
  lines.push('Client (SDK), gateway and model server in one process, requests one at a time through injected `fetch` functions; the difference is what Custody costs in CPU, both sides together.');
  lines.push('');
  lines.push('| HPKE provider (client and gateway) | request | direct µs CPU | SDK + gateway µs CPU | added µs CPU |');
  lines.push('|---|---|---:|---:|---:|');
  for (const r of inproc) lines.push(`| ${r.providers} | ${r.shape} | ${us(r.direct)} | ${us(r.gateway)} | ${us(r.gateway - r.direct)} |`);
  lines.push('');
  lines.push('### Loopback: three processes on 2 cores');
  lines.push('');
  lines.push(`Model server, plain proxy, floor server and gateway are child processes; the clients run in the bench process. Three paths with the same requests: direct to the model server; through a plain reverse proxy (node:http, keep-alive, bodies piped: the cost of any extra process hop, the baseline); and through SDK + OHTTP + gateway. Every path of a row uses the same client HTTP transport, named in its configuration: undici's \`fetch\` (Node's built-in, and what a browser's fetch stands for) or \`nodeGatewayFetch\` from @custody/crypto-node (nodeHttpFetch: node:http with keep-alive, what a Node client gives the SDK). The paths of a row (and the floor path below) are measured interleaved, in ${ROUNDS} rounds of ${RUN_MS / ROUNDS / 1000} s each (each round takes every path once, in a rotating order), so that the machine slowing down or speeding up during a row moves every path alike; rps is over the pooled windows, p50 and p99 over their pooled latencies. CPU per request is measured for each process (all threads) over the same windows. Before any measurement the gateway (and the floor server) get ${WARM_REQUESTS} requests of each shape from 8 clients, so that V8 has optimised their hot paths, as in a server that has been running; in a row, every path warms for a second before its first window and for 0.2 s before each later one.`);
  lines.push('');
  lines.push('| backend | HPKE providers | request | clients | direct rps | proxy rps | gateway rps | gateway / direct | gateway / proxy | p50 ms direct / proxy / gateway | p99 ms direct / proxy / gateway | added p50 ms vs direct / vs proxy | CPU µs/req direct: client + server | CPU µs/req proxy path: client + proxy + server | CPU µs/req gateway path: client + gateway + server |');
  lines.push('|---|---|---|---:|---:|---:|---:|---:|---:|---|---|---|---|---|---|');
  for (const r of loop) {
    const d = r.direct;
    const p = r.proxy;
    const g = r.gateway;
    lines.push(
      `| ${r.profile} | ${r.config} | ${r.shape} | ${r.c} | ${d.rps.toFixed(0)} | ${p.rps.toFixed(0)} | ${g.rps.toFixed(0)} | ${pct(g, d)} | ${pct(g, p)} | ${ms(d.p50)} / ${ms(p.p50)} / ${ms(g.p50)} | ${ms(d.p99)} / ${ms(p.p99)} / ${ms(g.p99)} | ${ms(g.p50 - d.p50)} / ${ms(g.p50 - p.p50)} | ${us(d.cpu.client)} + ${us(d.cpu.upstream)} | ${us(p.cpu.client)} + ${us(p.cpu.gateway)} + ${us(p.cpu.upstream)} | ${us(g.cpu.client)} + ${us(g.cpu.gateway)} + ${us(g.cpu.upstream)}${g.cpu.ledger !== undefined ? ` + ledger ${us(g.cpu.ledger)}` : ''} |`,
    );
  }
  lines.push('');
  lines.push('### The floor path: the least this exchange costs here');
  lines.push('');
  lines.push('The same requests through a minimal confidential hop (bench/_floor.ts, a bench-only exchange, not a Custody format): the client seals the request to the server\'s X25519 key (ephemeral key, one DH, HKDF, AES-128-GCM), the server opens it and forwards the plaintext exactly as the plain proxy does, seals the response (each streamed chunk on its own) and signs a 900-byte receipt-sized record with Ed25519, and the client opens the response and checks the signature, all on node:crypto with nothing else. The gateway row is the same requests through SDK + gateway (the default providers) in the same run; what the gateway costs over the floor is everything Custody does beyond the raw crypto: Binary HTTP and OHTTP framing, date, replay and tenant checks, the PII scan, the policy decision and the receipt in the ledger, logging and metrics. The column "gateway\'s own added time" is the mean of the gateway\'s metric `custody_gateway_overhead_seconds` over the same windows (read from its `/metrics` outside the measured time): from the sealed request reaching the gateway to its sealed answer, less the model server\'s time, as an operator sees it in production. The rest of the added p50 is the client (the SDK\'s sealing, opening and receipt check), the extra hop, and the writes to and from the gateway.');
  lines.push('');
  lines.push('| backend | request | clients | direct rps | floor rps | gateway rps | floor / direct | gateway / direct | gateway / direct by round | gateway / floor | p50 ms direct / floor / gateway | added p50 ms floor / gateway | gateway\'s own added time, mean ms (custody_gateway_overhead_seconds) | CPU µs/req floor path: client + floor server + model server | CPU µs/req gateway path: client + gateway + model server |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|');
  const floorRows = loop.filter((r): r is LoopRow & { floor: Stat } => r.floor !== undefined);
  for (const r of floorRows) {
    const d = r.direct;
    const f = r.floor;
    const g = r.gateway;
    lines.push(
      `| ${r.profile} | ${r.shape} | ${r.c} | ${d.rps.toFixed(0)} | ${f.rps.toFixed(0)} | ${g.rps.toFixed(0)} | ${pct(f, d)} | ${pct(g, d)} | ${byRound(g, d)} | ${pct(g, f)} | ${ms(d.p50)} / ${ms(f.p50)} / ${ms(g.p50)} | ${ms(f.p50 - d.p50)} / ${ms(g.p50 - d.p50)} | ${ownOverhead(g)} | ${us(f.cpu.client)} + ${us(f.cpu.gateway)} + ${us(f.cpu.upstream)} | ${us(g.cpu.client)} + ${us(g.cpu.gateway)} + ${us(g.cpu.upstream)} |`,
    );
  }
  lines.push('');
  lines.push('### Placed as deployed: the clients on one core, the servers on the other');
  lines.push('');
  lines.push('Above, the clients share both cores with the servers, so every microsecond the SDK spends is taken from the gateway and the model server, and the other way round. In a deployment the clients are other machines, and the gateway shares its TEE with the model server. The same model-like rows, run again with the bench process (all clients) pinned to core 0 and every server process (model server, plain proxy, floor server, gateway; all their threads) pinned to core 1 (`taskset`). Default providers (node:crypto on both sides), in-memory log. Against direct, the gateway path now has only the server core to share with the model server, as it would in its TEE.');
  lines.push('');
  lines.push('| backend | request | clients | direct rps | proxy rps | floor rps | gateway rps | proxy / direct | floor / direct | gateway / direct | gateway / direct by round | gateway / floor | p50 ms direct / floor / gateway | added p50 ms floor / gateway | gateway\'s own added time, mean ms | CPU µs/req on the server core: proxy + model server / floor + model server / gateway + model server | client CPU µs/req: direct / floor / gateway |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---|---|');
  for (const r of pinned) {
    const d = r.direct;
    const p = r.proxy;
    const f = r.floor!;
    const g = r.gateway;
    lines.push(
      `| ${r.profile} | ${r.shape} | ${r.c} | ${d.rps.toFixed(0)} | ${p.rps.toFixed(0)} | ${f.rps.toFixed(0)} | ${g.rps.toFixed(0)} | ${pct(p, d)} | ${pct(f, d)} | ${pct(g, d)} | ${byRound(g, d)} | ${pct(g, f)} | ${ms(d.p50)} / ${ms(f.p50)} / ${ms(g.p50)} | ${ms(f.p50 - d.p50)} / ${ms(g.p50 - d.p50)} | ${ownOverhead(g)} | ${us(p.cpu.gateway)} + ${us(p.cpu.upstream)} / ${us(f.cpu.gateway)} + ${us(f.cpu.upstream)} / ${us(g.cpu.gateway)} + ${us(g.cpu.upstream)} | ${us(d.cpu.client)} / ${us(f.cpu.client)} / ${us(g.cpu.client)} |`,
    );
  }
  lines.push('');
  const rowsOf = (cfg: LoopConfig) => loop.filter((r) => r.config === configLabel(cfg));
  /** The default Node setup's row of the same profile, shape and clients. */
  const twin = (r: LoopRow) => rowsOf(defaults).find((x) => x.profile === r.profile && x.shape === r.shape && x.c === r.c)!;
  const summary = (cfg: LoopConfig, label: string) => {
    const rows = rowsOf(cfg);
    const one = rows.filter((r) => r.c === 1).map((r) => `${r.profile} ${r.shape} ${ms(r.gateway.p50 - r.direct.p50)} ms (${ms(r.gateway.p50 - r.proxy.p50)} ms over the plain proxy)`);
    const eight = rows.filter((r) => r.c === 8).map((r) => `${r.profile} ${r.shape} ${pct(r.gateway, r.direct)} (${pct(r.gateway, r.proxy)} of the plain proxy)`);
    return `${label}: added p50 at 1 client: ${one.join('; ')}. Throughput at 8 clients: ${eight.join('; ')}.`;
  };
  lines.push('Goals (issue 5, section 6): at most 1 ms added at p50 and at least 90% of direct throughput at 8 clients.');
  lines.push('');
  lines.push(`- ${summary(defaults, 'Node client (SDK with node:crypto providers, `installNodeCrypto()`, and the node:http transport, `nodeGatewayFetch`; every path of these rows uses that transport)')}`);
  lines.push(`- ${summary(browserLike, 'WebCrypto client on fetch (what a browser runs)')}`);
  const onFetch = rowsOf(nodeOnFetch);
  lines.push(
    `- The client's HTTP transport (instant profile, Node client, every path on the same transport): ${onFetch
      .map((r) => `${r.shape}, ${r.c} client(s): client CPU per request through SDK + gateway ${us(r.gateway.cpu.client)} µs on undici's fetch, ${us(twin(r).gateway.cpu.client)} µs on node:http (direct: ${us(r.direct.cpu.client)} / ${us(twin(r).direct.cpu.client)} µs); gateway p50 ${ms(r.gateway.p50)} / ${ms(twin(r).gateway.p50)} ms, added p50 ${ms(r.gateway.p50 - r.direct.p50)} / ${ms(twin(r).gateway.p50 - twin(r).direct.p50)} ms`)
      .join('; ')}.`,
  );
  lines.push(
    `- The floor path (the raw crypto of the exchange around the same hop, nothing else): added p50 at 1 client: ${floorRows
      .filter((r) => r.c === 1)
      .map((r) => `${r.profile} ${r.shape} ${ms(r.floor.p50 - r.direct.p50)} ms`)
      .join('; ')}. Throughput at 8 clients: ${floorRows
      .filter((r) => r.c === 8)
      .map((r) => `${r.profile} ${r.shape} ${pct(r.floor, r.direct)}`)
      .join('; ')}. Where the floor itself misses a goal, no implementation of this exchange meets it on this machine; the gateway's distance to the floor is the part Custody can still cut.`,
  );
  lines.push(
    `- Placed as deployed (clients on core 0, servers on core 1), Node client: added p50 at 1 client: ${pinned
      .filter((r) => r.c === 1)
      .map((r) => `${r.profile} ${r.shape} ${ms(r.gateway.p50 - r.direct.p50)} ms (floor ${ms(r.floor!.p50 - r.direct.p50)} ms)`)
      .join('; ')}. Throughput at 8 clients: ${pinned
      .filter((r) => r.c === 8)
      .map((r) => `${r.profile} ${r.shape} ${pct(r.gateway, r.direct)} (floor ${pct(r.floor!, r.direct)})`)
      .join('; ')}.`,
  );
  const withLedger = loop.filter((r) => r.config.endsWith(LEDGER_LABEL));
  lines.push(
    `- Node client, the gateway logging to the ledger as a separate service (what \`custody gateway serve --ledger URL\` does; SQLite with synchronous=FULL, so each of the two appends per request waits for its commit to reach the disk): ${withLedger
      .map((r) => `${r.profile} ${r.shape}, ${r.c} client(s): p50 ${ms(r.gateway.p50)} ms against ${ms(twin(r).gateway.p50)} ms with the in-memory log, ${r.gateway.rps.toFixed(0)} rps (${pct(r.gateway, r.direct)} of direct), ledger CPU ${us(r.gateway.cpu.ledger ?? 0)} µs per request`)
      .join('; ')}. The rows above use the gateway's in-memory development log, which measures the gateway alone.`,
  );
  lines.push('');
  const gwCpu = rowsOf(defaults).filter((r) => r.profile === 'instant' && r.c === 1).map((r) => `${r.shape} ${us(r.gateway.cpu.gateway)} µs`);
  const ip = (p: ProviderName, shape: string) => inproc.find((r) => r.providers === p && r.shape === shape)!;
  const ex = (p: ProviderName) => fl.rows[0]!.us[p];
  lines.push(
    `Where the time goes. The gateway process spends ${gwCpu.join(' and ')} of CPU per request (instant profile, 1 client). In process (no sockets), SDK + gateway add ${us(ip('node:crypto', 'short answer').gateway - ip('node:crypto', 'short answer').direct)} µs of CPU to a short request on node:crypto and ${us(ip('webcrypto', 'short answer').gateway - ip('webcrypto', 'short answer').direct)} µs on WebCrypto. Of that, the OHTTP exchange is ${us(ex('node:crypto'))} µs on node:crypto (${us(ex('webcrypto'))} µs on WebCrypto) and the receipt signature and check ${us(fl.raw[2]!.us)} + ${us(fl.raw[4]!.us)} µs (${us(fl.raw[3]!.us)} µs to check on WebCrypto); the rest is the request pipeline (Binary HTTP, PII scan of the 4 KiB prompt, two ledger appends, receipt canonicalisation, Web streams and Request/Response objects). On loopback the gateway path also pays an extra process hop, which the plain-proxy column prices on its own.`,
  );
  lines.push(
    'Reading: the "instant" profile puts the gateway against a server that does no work, so every microsecond of the extra process shows; the "model-like" profile (10 ms per short answer, 1 ms per streamed token) is closer to the intended use, and a real model spends milliseconds to seconds per answer (the CC hardware itself costs about 7% of tokens per second on an H100 for an 8B model). Throughput at 8 clients is bounded by CPU: in all but the placed-as-deployed table, client, gateway and model server share the 2 cores, so every path spends the CPU of its rightmost column per request.',
  );
  writeSection('gateway', lines.join('\n'));
  process.exit(0);
}
