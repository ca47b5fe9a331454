// Transparency ledger: durable appends per second (group commit), append -> published checkpoint
// latency, and proof generation/verification at 1M and 10M entries, next to the floor (the
// disk's raw fsync rate, SHA-256 and Ed25519 costs) and a baseline (one SQLite commit per append).
import { closeSync, fdatasyncSync, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { utf8, type Bytes } from '@custody/core';
import {
  SIG_TYPE_ED25519,
  TILE_WIDTH,
  TileCache,
  TileHashSource,
  buildTileTree,
  createEd25519Signer,
  createEd25519Verifier,
  encodeEvent,
  generateSignerKey,
  openNote,
  proveConsistency,
  proveInclusion,
  rfc6962,
  signCheckpoint,
  tileWidthAt,
  treeRoot,
  verifyConsistency,
  verifyInclusion,
  type TileId,
} from '@custody/ledger';
import { openLog } from '@custody/ledger-service';
import { machine, percentile, writeSection } from './_machine.js';
import { postgresUnavailableReason, startPostgres } from '../services/ledger/src/testing/postgres.js';

const RUN_MS = Number(process.env.BENCH_MS ?? 8000);
const INTERVAL_MS = Number(process.env.BENCH_INTERVAL_MS ?? 250);
const work = mkdtempSync(join(tmpdir(), 'custody-bench-ledger-'));
const lines: string[] = [];
const row = (cells: (string | number)[]) => lines.push('| ' + cells.join(' | ') + ' |');
const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const log = (s: string) => console.log(s);

// ---------------------------------------------------------------- floor
function fsyncRate(ms = 2000): number {
  const fd = openSync(join(work, 'fsync.bin'), 'w');
  const buf = Buffer.alloc(4096, 7);
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    writeSync(fd, buf, 0, buf.length, (n % 64) * 4096);
    fdatasyncSync(fd);
    n++;
  }
  closeSync(fd);
  return (n * 1000) / (performance.now() - start);
}

function perOp(f: () => unknown, n: number): number {
  for (let i = 0; i < Math.min(n, 20000); i++) f();
  const t = performance.now();
  for (let i = 0; i < n; i++) f();
  return ((performance.now() - t) * 1000) / n;
}

const fsyncs = fsyncRate();
log(`floor: fdatasync ${fmt(fsyncs)}/s`);
const a32 = rfc6962.leaf(utf8('a'));
const b32 = rfc6962.leaf(utf8('b'));
const nodeUs = perOp(() => rfc6962.node(a32, b32), 300_000);
const entry200 = encodeEvent({
  v: 1,
  type: 'key.released',
  time: '2025-05-01T12:00:00Z',
  keyId: 'dataset/claims-2024',
  keyVersion: 3,
  workload: 'spiffe://custody/trainer',
  attestationDigest: 'sha256:' + 'ab'.repeat(32),
  policyId: 'release-v2',
  recipientKeyDigest: 'sha256:' + 'cd'.repeat(32),
});
const leafUs = perOp(() => rfc6962.leaf(entry200), 200_000);
const key = await generateSignerKey('bench.custody/log', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(3));
const signer = await createEd25519Signer(key.skey);
const verifier = await createEd25519Verifier(key.vkey);
const cpBody = { origin: 'bench.custody/log', size: 10_000_019, rootHash: a32, extensions: [] };
let t0 = performance.now();
let note = '';
for (let i = 0; i < 300; i++) note = await signCheckpoint(cpBody, [signer]);
const signUs = ((performance.now() - t0) * 1000) / 300;
t0 = performance.now();
for (let i = 0; i < 300; i++) await openNote(note, [verifier]);
const openUs = ((performance.now() - t0) * 1000) / 300;
log(`floor: node hash ${nodeUs.toFixed(2)} µs, leaf hash (${entry200.length} B) ${leafUs.toFixed(2)} µs, sign checkpoint ${signUs.toFixed(0)} µs, verify ${openUs.toFixed(0)} µs`);

// ---------------------------------------------------------------- baseline: one commit per append
function baselineOneCommitPerAppend(ms = 2000): number {
  const db = new Database(join(work, 'baseline.sqlite'));
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.exec('CREATE TABLE e (idx INTEGER PRIMARY KEY, entry BLOB NOT NULL)');
  const ins = db.prepare('INSERT INTO e (entry) VALUES (?)');
  const buf = Buffer.from(entry200);
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    ins.run(buf);
    n++;
  }
  db.close();
  return (n * 1000) / (performance.now() - start);
}
const baseline = baselineOneCommitPerAppend();
log(`baseline: one SQLite commit per append ${fmt(baseline)}/s`);

// ---------------------------------------------------------------- durable appends + latency
interface AppendRun {
  label: string;
  appendsPerSec: number;
  acked: number;
  checkpoints: number;
  p50: number;
  p99: number;
  max: number;
  ackP50: number;
  ackP99: number;
  perCommit: number;
}

/**
 * Keeps `concurrency` appends in flight (or paces them at `rate`/s) for RUN_MS. Latency is from
 * the append call to the publication of the first checkpoint that includes it.
 */
async function appendRun(label: string, opts: { concurrency: number; rate?: number; postgres?: string; intervalMs: number; ms: number }): Promise<AppendRun> {
  const dir = join(work, `log-${label.replace(/[^a-z0-9]+/gi, '-')}`);
  const started: number[] = [];
  const ackAt: number[] = [];
  const latencies: number[] = [];
  let measuredUpTo = 0;
  let checkpoints = 0;
  const { log: tlog } = await openLog({
    dir,
    skey: key.skey,
    integrateIntervalMs: opts.intervalMs,
    ...(opts.postgres ? { postgres: opts.postgres } : {}),
    onPublish: (_n, size) => {
      const now = performance.now();
      checkpoints++;
      for (let i = measuredUpTo; i < size; i++) if (started[i] !== undefined) latencies.push(now - started[i]!);
      measuredUpTo = Math.max(measuredUpTo, size);
    },
  });
  let acked = 0;
  let stop = false;
  const ackLat: number[] = [];
  const one = async (): Promise<void> => {
    const t = performance.now();
    const { index } = await tlog.addEntry(entry200);
    started[index] = t;
    ackAt[index] = performance.now();
    ackLat.push(ackAt[index] - t);
    acked++;
  };
  const begin = performance.now();
  if (opts.rate) {
    // Paced: a fixed arrival rate, like producers that are not waiting on the ledger.
    const perTick = opts.rate / 1000;
    let due = 0;
    const inflight = new Set<Promise<void>>();
    while (performance.now() - begin < opts.ms) {
      const target = Math.floor((performance.now() - begin) * perTick);
      while (due < target) {
        const p = one().finally(() => inflight.delete(p));
        inflight.add(p);
        due++;
      }
      await new Promise((r) => setTimeout(r, 1));
    }
    await Promise.all(inflight);
  } else {
    const worker = async () => {
      while (!stop) await one();
    };
    const workers = Array.from({ length: opts.concurrency }, worker);
    await new Promise((r) => setTimeout(r, opts.ms));
    stop = true;
    await Promise.all(workers);
  }
  const elapsed = performance.now() - begin;
  // Let the integrator publish everything that was acknowledged, so every latency is measured.
  const deadline = performance.now() + 10_000;
  while (measuredUpTo < acked && performance.now() < deadline) await new Promise((r) => setTimeout(r, 10));
  const perCommit = tlog.stats.entries / Math.max(1, tlog.stats.batches);
  await tlog.close();
  latencies.sort((x, y) => x - y);
  ackLat.sort((x, y) => x - y);
  const r: AppendRun = {
    label,
    appendsPerSec: (acked * 1000) / elapsed,
    acked,
    checkpoints,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    max: latencies[latencies.length - 1] ?? NaN,
    ackP50: percentile(ackLat, 50),
    ackP99: percentile(ackLat, 99),
    perCommit,
  };
  log(`${label}: ${fmt(r.appendsPerSec)} appends/s (${r.acked} acked, ${perCommit.toFixed(0)} per commit, ${checkpoints} checkpoints), publish latency p50 ${r.p50.toFixed(0)} ms p99 ${r.p99.toFixed(0)} ms, ack p50 ${r.ackP50.toFixed(1)} ms p99 ${r.ackP99.toFixed(1)} ms`);
  return r;
}

const runs: AppendRun[] = [];
const skipAppends = process.env.BENCH_PARTS === 'proofs';
if (!skipAppends && !process.env.BENCH_ONLY_PACED) runs.push(await appendRun('SQLite, 4096 in flight (saturated)', { concurrency: 4096, intervalMs: INTERVAL_MS, ms: RUN_MS }));
if (!skipAppends) runs.push(await appendRun('SQLite, paced 10,000/s', { concurrency: 0, rate: 10_000, intervalMs: INTERVAL_MS, ms: RUN_MS }));
if (!skipAppends) runs.push(await appendRun('SQLite, paced 2,000/s', { concurrency: 0, rate: 2_000, intervalMs: INTERVAL_MS, ms: Math.min(RUN_MS, 5000) }));
const pgSkip = postgresUnavailableReason();
if (!pgSkip && !skipAppends) {
  const pg = startPostgres();
  try {
    runs.push(await appendRun('PostgreSQL, 4096 in flight (saturated)', { concurrency: 4096, postgres: pg.url, intervalMs: INTERVAL_MS, ms: Math.min(RUN_MS, 6000) }));
  } finally {
    pg.stop();
  }
}

// ---------------------------------------------------------------- proofs at 1M and 10M
/**
 * A tile store for a synthetic log: level-0 tiles are regenerated on demand from a seeded
 * generator (leaf hashes need not come from real entries to measure proofs), and the upper
 * levels are real Merkle hashes of the tiles below, so proofs verify against the real root.
 * 10M leaves cost 8 KiB per level-0 tile on demand and ~1.3 MB of upper tiles in memory.
 */
function syntheticLevel0(index: number, width: number): Bytes {
  const out = new Uint8Array(width * 32);
  const v = new Uint32Array(out.buffer);
  let x = (index * 2654435761 + 0x9e3779b9) >>> 0 || 1;
  for (let i = 0; i < v.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    v[i] = x >>> 0;
  }
  return out;
}

function buildSynthetic(size: number): { upper: Map<string, Bytes>; buildMs: number } {
  const t = performance.now();
  const upper = new Map<string, Bytes>();
  let below = (i: number, w: number) => syntheticLevel0(i, w);
  for (let level = 1; Math.floor(size / TILE_WIDTH ** level) > 0; level++) {
    const count = Math.floor(size / TILE_WIDTH ** level);
    const hashes = new Uint8Array(count * 32);
    for (let j = 0; j < count; j++) hashes.set(buildTileTree(below(j, TILE_WIDTH), TILE_WIDTH)[8]![0]!, j * 32);
    for (let n = 0; n * TILE_WIDTH < count; n++) {
      const w = tileWidthAt(level, n, size);
      upper.set(`${level}/${n}/${w}`, hashes.slice(n * TILE_WIDTH * 32, (n * TILE_WIDTH + w) * 32));
      if (w < TILE_WIDTH) upper.set(`${level}/${n}/${TILE_WIDTH}`, hashes.slice(n * TILE_WIDTH * 32, (n + 1) * TILE_WIDTH * 32));
    }
    const lv = level;
    below = (i, w) => upper.get(`${lv}/${i}/${w}`) ?? upper.get(`${lv}/${i}/${TILE_WIDTH}`)!.slice(0, w * 32);
  }
  return { upper, buildMs: performance.now() - t };
}

interface ProofRow {
  size: number;
  buildMs: number;
  inclusionGenCold: number;
  inclusionGenWarm: number;
  inclusionVerify: number;
  consistencyGen: number;
  consistencyVerify: number;
  proofLen: number;
}

async function proofBench(size: number): Promise<ProofRow> {
  const { upper, buildMs } = buildSynthetic(size);
  const readTile = (t: TileId): Promise<Uint8Array> => {
    if (t.level === 'entries') return Promise.reject(new Error('no entries in a synthetic log'));
    if (t.level === 0) return Promise.resolve(syntheticLevel0(t.index, t.width));
    // Partial tiles of older sizes are prefixes of the tile stored for the current size.
    const b = upper.get(`${t.level}/${t.index}/${t.width}`) ?? upper.get(`${t.level}/${t.index}/${TILE_WIDTH}`) ?? upper.get(`${t.level}/${t.index}/${tileWidthAt(t.level, t.index, size)}`);
    return b && b.length >= t.width * 32 ? Promise.resolve(b.slice(0, t.width * 32)) : Promise.reject(new Error(`missing tile ${t.level}/${t.index}/${t.width}`));
  };
  const root = await treeRoot(new TileHashSource(readTile, size), size);
  let seed = 12345;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const N = 400;
  // Cold: a fresh source per proof (every tile read and re-hashed, as a one-off client does).
  let t = performance.now();
  let proofLen = 0;
  const samples: { index: number; proof: Bytes[] }[] = [];
  for (let i = 0; i < N; i++) {
    const index = rand(size);
    const proof = await proveInclusion(new TileHashSource(readTile, size), index, size);
    samples.push({ index, proof });
    proofLen = proof.length;
  }
  const inclusionGenCold = ((performance.now() - t) * 1000) / N;
  // Warm: a server's tile cache (upper tiles stay hot; random leaves still hit new level-0 tiles).
  const cache = new TileCache(4096);
  const warmSrc = new TileHashSource(readTile, size, rfc6962, cache);
  for (let i = 0; i < N; i++) await proveInclusion(warmSrc, rand(size), size);
  t = performance.now();
  for (let i = 0; i < N; i++) await proveInclusion(warmSrc, rand(size), size);
  const inclusionGenWarm = ((performance.now() - t) * 1000) / N;
  // Same-leaf repeat (fully cached) is the floor of generation: tile lookups and range planning.
  const leafOf = (index: number) => syntheticLevel0(Math.floor(index / TILE_WIDTH), tileWidthAt(0, Math.floor(index / TILE_WIDTH), size)).slice((index % TILE_WIDTH) * 32, (index % TILE_WIDTH) * 32 + 32);
  const leaves = samples.map((s) => leafOf(s.index));
  for (let k = 0; k < 3; k++) samples.forEach((s, i) => verifyInclusion(s.index, size, leaves[i]!, s.proof, root));
  t = performance.now();
  const reps = 5;
  for (let k = 0; k < reps; k++) samples.forEach((s, i) => verifyInclusion(s.index, size, leaves[i]!, s.proof, root));
  const inclusionVerify = ((performance.now() - t) * 1000) / (N * reps);
  // Consistency from random older sizes.
  const cons: { old: number; proof: Bytes[]; oldRoot: Bytes }[] = [];
  t = performance.now();
  const M = 100;
  for (let i = 0; i < M; i++) {
    const old = 1 + rand(size - 1);
    cons.push({ old, proof: await proveConsistency(new TileHashSource(readTile, size), old, size), oldRoot: new Uint8Array() });
  }
  const consistencyGen = ((performance.now() - t) * 1000) / M;
  for (const c of cons) c.oldRoot = await treeRoot(new TileHashSource(readTile, c.old), c.old);
  t = performance.now();
  for (let k = 0; k < reps; k++) for (const c of cons) verifyConsistency(c.old, size, c.oldRoot, root, c.proof);
  const consistencyVerify = ((performance.now() - t) * 1000) / (M * reps);
  const r = { size, buildMs, inclusionGenCold, inclusionGenWarm, inclusionVerify, consistencyGen, consistencyVerify, proofLen };
  log(`proofs at ${fmt(size)}: build ${fmt(buildMs / 1000, 1)} s, inclusion gen cold ${inclusionGenCold.toFixed(0)} µs warm ${inclusionGenWarm.toFixed(0)} µs verify ${inclusionVerify.toFixed(1)} µs, consistency gen ${consistencyGen.toFixed(0)} µs verify ${consistencyVerify.toFixed(1)} µs`);
  return r;
}

const proofRows = [await proofBench(1_000_003), await proofBench(10_000_019)];
const rss = process.memoryUsage().rss;
rmSync(work, { recursive: true, force: true });

// ---------------------------------------------------------------- report
if (skipAppends) process.exit(0);
const sat = runs[0]!;
lines.push(`## Transparency ledger (packages/ledger, services/ledger)`);
lines.push('');
lines.push(`Machine: ${machine()}. Temp directory on the root filesystem (ext4 on a virtual disk). One process; the VM's disk and CPU are shared with other work and vary several-fold between runs, so compare rows within one run (the floor and baseline are measured in the same run for that reason).`);
lines.push(`Entries are ${entry200.length}-byte canonical-JSON \`key.released\` events. An append is acknowledged only after its batch's SQLite (WAL, synchronous=FULL) or PostgreSQL transaction commits; the integrator runs every ${INTERVAL_MS} ms, writes tiles with fdatasync, signs a checkpoint and publishes it atomically.`);
lines.push('');
lines.push('| floor / baseline | value |');
lines.push('|---|---:|');
row(['floor: raw fdatasync of a 4 KiB write', `${fmt(fsyncs)}/s (${(1000 / fsyncs).toFixed(2)} ms each)`]);
row(['floor: RFC 6962 node hash (SHA-256 of 65 B, pure JS)', `${nodeUs.toFixed(2)} µs`]);
row([`floor: leaf hash of a ${entry200.length}-byte entry`, `${leafUs.toFixed(2)} µs`]);
row(['floor: sign a checkpoint (Ed25519, WebCrypto)', `${signUs.toFixed(0)} µs`]);
row(['floor: open and verify a signed checkpoint', `${openUs.toFixed(0)} µs`]);
row(['baseline: one SQLite commit per append (no batching)', `${fmt(baseline)} appends/s`]);
lines.push('');
lines.push('| durable appends | appends/s | acknowledged | entries per commit | checkpoints | ack p50 / p99 ms | append→published p50 ms | p99 ms | max ms |');
lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const r of runs) row([r.label, fmt(r.appendsPerSec), fmt(r.acked), fmt(r.perCommit), r.checkpoints, `${r.ackP50.toFixed(1)} / ${r.ackP99.toFixed(1)}`, r.p50.toFixed(0), r.p99.toFixed(0), r.max.toFixed(0)]);
if (pgSkip) lines.push(`\nPostgreSQL run skipped: ${pgSkip}.`);
lines.push('');
lines.push('| proofs (tile store) | tree size | build upper tiles | inclusion gen, cold | inclusion gen, server cache | inclusion verify | consistency gen | consistency verify | proof hashes |');
lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|');
for (const p of proofRows)
  row([
    p.size >= 5_000_000 ? '10M' : '1M',
    fmt(p.size),
    `${fmt(p.buildMs / 1000, 1)} s`,
    `${p.inclusionGenCold.toFixed(0)} µs`,
    `${p.inclusionGenWarm.toFixed(0)} µs`,
    `${p.inclusionVerify.toFixed(1)} µs`,
    `${p.consistencyGen.toFixed(0)} µs`,
    `${p.consistencyVerify.toFixed(1)} µs`,
    p.proofLen,
  ]);
lines.push('');
lines.push(
  `Proof trees are synthetic: level-0 tiles are regenerated from a seeded generator on demand and the upper tiles are the real Merkle hashes of the tiles below (built once, "build upper tiles"), so every proof verifies against the real root; the process peaked at ${fmt(rss / 2 ** 20)} MiB RSS. ` +
    '"Cold" builds each proof from a fresh tile source (three tiles read and re-hashed, ~765 node hashes, as a one-off client does); "server cache" keeps up to 4096 tile trees, so upper tiles stay hot and a random leaf costs one level-0 tile (255 hashes).',
);
lines.push('');
const goal = sat.appendsPerSec >= 10_000 ? 'met' : 'NOT met';
const paced = runs.find((r) => r.label.includes('paced 10,000'));
const p99ok = paced && paced.p99 < 1000 ? 'met' : 'NOT met';
lines.push(
  `Goals: ≥ 10,000 durable appends/s sustained — ${goal} (${fmt(sat.appendsPerSec)}/s, ${fmt(sat.perCommit)} entries per commit, against a floor of ${fmt(fsyncs)} raw fsyncs/s and a baseline of ${fmt(baseline)} appends/s with one commit each). ` +
    `p99 append→published < 1 s at 10,000 appends/s — ${p99ok}${paced ? ` (${paced.p99.toFixed(0)} ms)` : ''}. ` +
    `Saturated runs push more entries than one ${INTERVAL_MS} ms integration cycle can absorb on this machine, so their publication latency is queueing, not the integration path.`,
);
writeSection('ledger', lines.join('\n'));
