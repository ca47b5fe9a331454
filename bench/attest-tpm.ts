// TPM quote verification throughput: the shared vector (RSA-2048 AK, RSASSA/SHA-256, 24 PCRs)
// and an swtpm ECDSA P-256 quote, end to end through the verifier, against the floor (the raw
// WebCrypto signature check alone, key already imported) and a baseline (OpenSSL through
// node:crypto one-shot verify) in the same run.
import { createPublicKey, verify as nodeVerify } from 'node:crypto';
import { loadavg } from 'node:os';
import { readFileSync } from 'node:fs';
import { fromBase64 } from '@custody/core';
import { parseTpmEvidence, tpmVerifier } from '@custody/attest';
import { readVector } from '../test/vectors.js';
import { machine, opsPerSecond, rate, writeSection } from './_machine.js';

const NOW = new Date('2025-01-01T00:00:00Z');
const MS = Number(process.env.BENCH_MS ?? 4000);
const ROUNDS = 8;

interface Case {
  name: string;
  evidence: Uint8Array;
  nonce?: Uint8Array;
}

const vectorBytes = readVector('attestation/azure-vtpm/tpm_evidence.json');
const eccBytes = new Uint8Array(readFileSync(new URL('../packages/attest/src/tpm/testdata/swtpm-ecc-quote.json', import.meta.url)));
const cases: Case[] = [
  { name: 'vector tpm_evidence.json (RSA-2048, RSASSA/SHA-256, 24 PCRs)', evidence: vectorBytes },
  { name: 'swtpm quote (ECC P-256, ECDSA/SHA-256, 24 PCRs, TPM2B_PUBLIC AK, nonce)', evidence: eccBytes, nonce: fromBase64('ABEiM0RVZneImaq7zN3u/w==') },
];

const loadBefore = loadavg()[0]!.toFixed(1);
let md = `## TPM 2.0 quote verification (issue 2, section 6)\n\nMachine: ${machine()}\n\n`;
md += 'One verification at a time on one thread (the WebCrypto calls run on libuv\'s pool); each figure is the best of ' + ROUNDS + ' interleaved rounds, because other jobs share the machine. "End to end" is `tpmVerifier.verify` on the evidence file bytes: JSON parse, TPMS_ATTEST / TPMT_SIGNATURE / AK parse, signature, PCR digest, nonce and the claims. It is the warm path: the AK\'s parsed form (by the exact `ak_public` text), imported WebCrypto key, SPKI SHA-256 and TPM name are cached by exact bytes, and so is the SHA-256 of the PCR values (a machine\'s PCRs stay the same from quote to quote); the signature check runs on every verification. "Floor" is `crypto.subtle.verify` over the same TPMS_ATTEST with the key already imported; "baseline" is OpenSSL through `node:crypto.verify` with a `KeyObject`. Times are per verification: wall clock, and process CPU time (all threads, so the thread-pool work counts), which depends less on what else the machine runs.\n\n';
md += '| evidence | end to end: verif./s (µs wall / µs CPU) | floor: WebCrypto verify ops/s (µs wall / µs CPU) | end to end / floor, wall | end to end / floor, CPU | baseline: node:crypto verify (ops/s) |\n|---|---|---|---|---|---|\n';

interface Best {
  wall: number;
  cpu: number;
}
const better = (b: Best, r: { wall: number; perCpu: number }): Best => ({ wall: Math.min(b.wall, 1e6 / r.wall), cpu: Math.min(b.cpu, 1e6 / r.perCpu) });
const us = (x: number): string => x.toFixed(1);

for (const c of cases) {
  const first = await tpmVerifier.verify({ evidence: c.evidence, now: NOW, ...(c.nonce ? { nonce: c.nonce } : {}) });
  if (!first.ok) throw new Error(`${c.name} does not verify: ${JSON.stringify(first.errors)}`);
  const ev = parseTpmEvidence(c.evidence);
  const data = ev.attest.bytes;
  let floorFn: () => Promise<boolean>;
  let baselineFn: () => boolean;
  const keyObject = createPublicKey({ key: Buffer.from(ev.ak.spki), format: 'der', type: 'spki' });
  if (ev.signature.scheme === 'rsassa') {
    const key = await crypto.subtle.importKey('spki', ev.ak.spki, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['verify']);
    const sig = ev.signature.sig;
    floorFn = () => crypto.subtle.verify({ name: 'RSASSA-PKCS1-v1_5' }, key, sig, data);
    baselineFn = () => nodeVerify('sha256', data, keyObject, sig);
  } else if (ev.signature.scheme === 'ecdsa') {
    const key = await crypto.subtle.importKey('spki', ev.ak.spki, { name: 'ECDSA', namedCurve: 'P-256' }, false, ['verify']);
    const raw = new Uint8Array([...ev.signature.r, ...ev.signature.s]);
    floorFn = () => crypto.subtle.verify({ name: 'ECDSA', hash: 'SHA-256' }, key, raw, data);
    baselineFn = () => nodeVerify('sha256', data, { key: keyObject, dsaEncoding: 'ieee-p1363' }, raw);
  } else {
    throw new Error('unexpected scheme');
  }
  if (!(await floorFn()) || !baselineFn()) throw new Error('floor check failed');
  const e2eFn = async (): Promise<void> => {
    const r = await tpmVerifier.verify({ evidence: c.evidence, now: NOW, ...(c.nonce ? { nonce: c.nonce } : {}) });
    if (!r.ok) throw new Error('verification failed during the run');
  };
  const floorRun = async (): Promise<void> => {
    if (!(await floorFn())) throw new Error('floor check failed during the run');
  };
  // The machine is shared: measure in interleaved short rounds and keep each one's best round.
  await rate(e2eFn, 200);
  await rate(floorRun, 200);
  let e2e: Best = { wall: Infinity, cpu: Infinity };
  let floor: Best = { wall: Infinity, cpu: Infinity };
  let baseline = 0;
  for (let round = 0; round < ROUNDS; round++) {
    e2e = better(e2e, await rate(e2eFn, MS / ROUNDS));
    floor = better(floor, await rate(floorRun, MS / ROUNDS));
    baseline = Math.max(baseline, await opsPerSecond(baselineFn, MS / ROUNDS, 50));
  }
  md += `| ${c.name} | ${(1e6 / e2e.wall).toFixed(0)} (${us(e2e.wall)} / ${us(e2e.cpu)}) | ${(1e6 / floor.wall).toFixed(0)} (${us(floor.wall)} / ${us(floor.cpu)}) | ${(e2e.wall / floor.wall).toFixed(2)}x | ${(e2e.cpu / floor.cpu).toFixed(2)}x | ${baseline.toFixed(0)} |\n`;
}

// Where the rest of the time goes, for the vector: parsing alone (no crypto).
let parseOps = 0;
let digestOps = 0;
for (let round = 0; round < ROUNDS; round++) {
  parseOps = Math.max(parseOps, await opsPerSecond(() => parseTpmEvidence(vectorBytes), MS / ROUNDS, 50));
  digestOps = Math.max(digestOps, await opsPerSecond(() => crypto.subtle.digest('SHA-256', new Uint8Array(24 * 32)), MS / ROUNDS, 50));
}
md += `\nParts, for the vector: evidence parse alone (JSON + TPM structures, AK from the cache) ${parseOps.toFixed(0)} ops/s; one WebCrypto SHA-256 over the 768 bytes of PCR values ${digestOps.toFixed(0)} ops/s, which is what a PCR-digest cache miss adds, run alongside the signature check. The verifier starts the signature check as soon as the quote, signature and AK are parsed, and parses the PCR values and builds the claims while it runs.\n`;

// Throughput with several verifications in flight (how a service uses it), same evidence.
const IN_FLIGHT = 8;
async function concurrentOps(fn: () => Promise<unknown>, ms: number): Promise<{ wall: number; cpuUs: number }> {
  let n = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) {
        await fn();
        n++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  return { wall: (n * 1000) / (performance.now() - start), cpuUs: (cpu.user + cpu.system) / n };
}
const vec = parseTpmEvidence(vectorBytes);
const vecKey = await crypto.subtle.importKey('spki', vec.ak.spki, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['verify']);
const vecSig = vec.signature.scheme === 'rsassa' ? vec.signature.sig : new Uint8Array();
let cE2e = 0;
let cE2eCpu = Infinity;
let cFloor = 0;
let cFloorCpu = Infinity;
for (let round = 0; round < ROUNDS; round++) {
  const a = await concurrentOps(() => tpmVerifier.verify({ evidence: vectorBytes, now: NOW }), MS / ROUNDS);
  const b = await concurrentOps(() => crypto.subtle.verify({ name: 'RSASSA-PKCS1-v1_5' }, vecKey, vecSig, vec.attest.bytes), MS / ROUNDS);
  cE2e = Math.max(cE2e, a.wall);
  cE2eCpu = Math.min(cE2eCpu, a.cpuUs);
  cFloor = Math.max(cFloor, b.wall);
  cFloorCpu = Math.min(cFloorCpu, b.cpuUs);
}
md += `\nWith ${IN_FLIGHT} verifications in flight (the vector): end to end ${cE2e.toFixed(0)} verif./s (${us(cE2eCpu)} µs CPU each), floor ${cFloor.toFixed(0)} ops/s (${us(cFloorCpu)} µs CPU each), ratio ${(cFloor / cE2e).toFixed(2)}x by throughput, ${(cE2eCpu / cFloorCpu).toFixed(2)}x by CPU.\n`;
md += `\nA plain TPM quote has no certificate chain, so there is no chain check to count: the floor is one RSA-2048 or P-256 signature check. Before this round of work (same bench, same machine, load 1.0) end to end was 7567 and 4666 verif./s, 2.18x and 2.06x the floor by wall clock; the gains came from starting the signature check before the PCR values are parsed (so the rest overlaps it), caching the parsed AK by its exact text and the PCR-values digest by its exact bytes, keying the AK caches by bytes instead of building a string from the SPKI on every call, and decoding base64 four characters at a time (falling back to core's decoder for anything unusual). What remains above the floor is the work on the main thread before the check can start (JSON.parse, the TPMS_ATTEST and TPMT_SIGNATURE decode, WebCrypto's own argument checks), the claims and PCR parsing while it runs, and garbage collection; the issue's goal of 1.3x the floor is not met for TPM quotes. Load average (1 min) during this run: ${loadBefore} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on 2 cores shared with other jobs, so single figures vary by up to 2x between runs; the CPU-time ratio is the steadier one.\n`;
writeSection('attest-tpm', md);
