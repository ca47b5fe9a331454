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
import { machine, opsPerSecond, writeSection } from './_machine.js';

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
md += 'One verification at a time on one thread (the WebCrypto calls run on libuv\'s pool); each figure is the best of ' + ROUNDS + ' interleaved rounds, because other jobs share the machine. "End to end" is `tpmVerifier.verify` on the evidence file bytes: JSON parse, TPMS_ATTEST / TPMT_SIGNATURE / AK parse, AK SPKI SHA-256, signature, PCR digest, nonce and the claims. The AK\'s imported WebCrypto key is cached by SPKI, so this is the warm path. "Floor" is `crypto.subtle.verify` over the same TPMS_ATTEST with the key already imported; "baseline" is OpenSSL through `node:crypto.verify` with a `KeyObject`.\n\n';
md += '| evidence | end to end (verif./s) | floor: WebCrypto verify (ops/s) | end to end / floor (time) | baseline: node:crypto verify (ops/s) |\n|---|---|---|---|---|\n';

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
  // The machine is shared: measure in interleaved short rounds and keep each one's best round.
  let e2e = 0;
  let floor = 0;
  let baseline = 0;
  for (let round = 0; round < ROUNDS; round++) {
    e2e = Math.max(e2e, await opsPerSecond(() => tpmVerifier.verify({ evidence: c.evidence, now: NOW, ...(c.nonce ? { nonce: c.nonce } : {}) }), MS / ROUNDS, 50));
    floor = Math.max(floor, await opsPerSecond(floorFn, MS / ROUNDS, 50));
    baseline = Math.max(baseline, await opsPerSecond(baselineFn, MS / ROUNDS, 50));
  }
  md += `| ${c.name} | ${e2e.toFixed(0)} | ${floor.toFixed(0)} | ${(floor / e2e).toFixed(2)}x | ${baseline.toFixed(0)} |\n`;
}

// Where the rest of the time goes, for the vector: parsing alone (no crypto).
let parseOps = 0;
let digestOps = 0;
for (let round = 0; round < ROUNDS; round++) {
  parseOps = Math.max(parseOps, await opsPerSecond(() => parseTpmEvidence(vectorBytes), MS / ROUNDS, 50));
  digestOps = Math.max(digestOps, await opsPerSecond(() => crypto.subtle.digest('SHA-256', new Uint8Array(24 * 32)), MS / ROUNDS, 50));
}
md += `\nParts, for the vector: evidence parse alone (JSON + TPM structures + SPKI, no crypto) ${parseOps.toFixed(0)} ops/s; one SHA-256 over the 768 bytes of PCR values ${digestOps.toFixed(0)} ops/s. The verifier starts the signature check and the PCR digest together, then builds the claims while both run; the AK's SPKI SHA-256 and TPM name are cached with its imported key.\n`;

// Throughput with several verifications in flight (how a service uses it), same evidence.
const IN_FLIGHT = 8;
async function concurrentOps(fn: () => Promise<unknown>, ms: number): Promise<number> {
  let n = 0;
  const end = performance.now() + ms;
  const start = performance.now();
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async () => {
      while (performance.now() < end) {
        await fn();
        n++;
      }
    }),
  );
  return (n * 1000) / (performance.now() - start);
}
const vec = parseTpmEvidence(vectorBytes);
const vecKey = await crypto.subtle.importKey('spki', vec.ak.spki, { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' }, false, ['verify']);
const vecSig = vec.signature.scheme === 'rsassa' ? vec.signature.sig : new Uint8Array();
let cE2e = 0;
let cFloor = 0;
for (let round = 0; round < ROUNDS; round++) {
  cE2e = Math.max(cE2e, await concurrentOps(() => tpmVerifier.verify({ evidence: vectorBytes, now: NOW }), MS / ROUNDS));
  cFloor = Math.max(cFloor, await concurrentOps(() => crypto.subtle.verify({ name: 'RSASSA-PKCS1-v1_5' }, vecKey, vecSig, vec.attest.bytes), MS / ROUNDS));
}
md += `\nWith ${IN_FLIGHT} verifications in flight (the vector): end to end ${cE2e.toFixed(0)} verif./s, floor ${cFloor.toFixed(0)} ops/s, ratio ${(cFloor / cE2e).toFixed(2)}x.\n`;
md += `\nA plain TPM quote has no certificate chain, so there is no chain check to count: the floor is one RSA-2048 or P-256 signature check (about 50 and 100 µs here), and parsing the JSON evidence file alone costs about as much again. The issue's goal of 1.3x the floor is therefore not met for TPM quotes; the ratios above are what remains after starting the crypto jobs together and caching per-AK work. Load average (1 min) during this run: ${loadBefore} at the start, ${loadavg()[0]!.toFixed(1)} at the end, on 2 cores shared with other jobs, so single figures vary by up to 2x between runs.\n`;
writeSection('attest-tpm', md);
