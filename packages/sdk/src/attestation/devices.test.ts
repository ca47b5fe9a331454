// Step `devices`: the GPUs a gateway publishes next to its CPU evidence, each bound to the same
// runtime data (SPDM request nonce = SHA-256 of the runtime data text), verified by the client
// (raw evidence mode) or covered by the broker's composite EAR (cpu0 + gpuN), and a client's
// `minGpus` requirement. Bundles are built as the gateway builds them: sim CPU evidence, and the
// real Hopper report re-signed under a test root for the runtime data at hand (the pinned
// NVIDIA root refuses that chain, so `gpuRoots` names the test root).
//
// Node only, like every SDK test that reads the shared vectors (the re-issued GPU evidence is the
// real report from ../shared/vectors): the Chromium run bundles test/browser/sdk-browser-entry.ts,
// not the vitest files.
import { beforeAll, describe, expect, it } from 'vitest';
import { NVIDIA_DEVICE_ROOT_PEM, createSimEvidence, nvidiaVerifier, simVerifier, type NormalizedClaims } from '@custody/attest';
import { KEY_USAGE, canonicalBytes, fromBase64Url, fromHex, sha256, subtle, toBase64Url, toHex, utf8, type Bytes } from '@custody/core';
import { appraise, buildEar, generateEarSigningKey, loadPolicy, publishJwks, signEar, type CompiledPolicy, type DeviceInput, type Ear } from '@custody/policy';
import { buildTlogProof, encodeEvent, formatTlogProof, parseTlogPolicy } from '@custody/ledger';
import type { JSONWebKeySet } from 'jose';
import { createNvidiaEvidence } from '../../../attest/src/nvidia/evidence.js';
import { REAL_NVIDIA_REPORT, reissuedNvidiaEvidence } from '../../../attest/src/nvidia/testing/reissue.js';
import { createKeyCertificate } from '../../../core/src/testing/certificates.js';
import { testLogKey } from '../../../ledger/src/testing/keys.js';
import { MemoryTiledLog } from '../../../ledger/src/testing/memory-log.js';
import { createConfidentialFetch } from '../confidential-fetch.js';
import { createOhttpServerKey, encodeKeyConfigs, type KeyConfig } from '../ohttp/key-config.js';
import { verifyReceiptOffline } from '../receipt/offline.js';
import { receiptIdOf, signReceipt, RECEIPT_FORMAT, type ReceiptBody } from '../receipt/receipt.js';
import { bundleAttestationDigest, parseAttestationBundle, type AttestationBundle } from './bundle.js';
import { discoverGateway } from './discovery.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { printableLine, renderVerificationText, verifierSet, verifyGatewayBundle, type EvidenceVerifierSet, type VerificationDocument, type VerifyBundleOptions } from './verify.js';

const NOW = new Date('2026-03-02T10:00:00.000Z');
/** After the test GPU certificates' notAfter (2034-01-01). */
const AFTER_GPU_CERTS = new Date('2034-06-01T00:00:00.000Z');
const MEASUREMENT = '5c'.repeat(48);
const NONCE = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
const OTHER_NONCE = new Uint8Array(32).fill(9);
const VERIFIER_ID = { developer: 'https://custody.dev', build: 'sdk devices test' };

let ohttpConfig: KeyConfig;
let receiptX: string;
let receiptPrivate: CryptoKey;
let teeJwk: JsonWebKey;
let teeRaw: Uint8Array;
let roots: Uint8Array[];
let gpuMeasurements: Record<string, string>;
let policy: CompiledPolicy;
let cpuOnlyPolicy: CompiledPolicy;
let jwks: JSONWebKeySet;
let earKey: Awaited<ReturnType<typeof generateEarSigningKey>>;
/** Runtime data without a nonce (what the broker appraised), and a challenge's with NONCE. */
let baseRd: string;
let freshRd: string;

function runtimeDataFor(nonce?: Uint8Array): string {
  return buildRuntimeData({ ...(nonce ? { nonce } : {}), keyConfigs: [ohttpConfig], receiptKey: fromBase64Url(receiptX), teePublicKey: teeRaw });
}

function simEvidence(rd: string): Promise<Bytes> {
  return runtimeDigest('sim', rd).then((reportData) => createSimEvidence({ measurements: { measurement: MEASUREMENT }, reportData, issuedAt: NOW }));
}

/** GPU evidence whose request nonce is SHA-256 of this runtime data, by test GPU `gpu` (optionally of a tampered report). */
async function gpuEvidence(rd: string, report?: Uint8Array, gpu = 0): Promise<Uint8Array> {
  return (await reissuedNvidiaEvidence(await runtimeDigest('nvidia', rd), report, gpu)).evidence;
}

async function gpuEvidenceForNonce(nonce: Uint8Array): Promise<Uint8Array> {
  return (await reissuedNvidiaEvidence(nonce)).evidence;
}

/** Edits the `custody-nvidia-gpu/v1` JSON after signing (a tampered twin). */
function editEvidence(ev: Uint8Array, f: (o: { format: string; report: string; certChain?: string }) => void): Uint8Array {
  const o = JSON.parse(new TextDecoder().decode(ev)) as { format: string; report: string; certChain?: string };
  f(o);
  return utf8(JSON.stringify(o));
}

function flipHexByte(hex: string, at: number): string {
  const b = fromHex(hex);
  b[at]! ^= 0x01;
  return toHex(b);
}

/** The real report with a byte of its measurement block 2 changed. */
function reportWithChangedMeasurement(): Uint8Array {
  const value = fromHex(gpuMeasurements.measurement2!);
  const hex = toHex(REAL_NVIDIA_REPORT);
  const at = hex.indexOf(toHex(value));
  expect(at % 2).toBe(0);
  const out = REAL_NVIDIA_REPORT.slice();
  out[at / 2]! ^= 0x01;
  return out;
}

interface BundleSpec {
  runtimeData: string;
  devices?: Uint8Array[];
  ear?: string;
  earRuntimeData?: string;
  /** CPU evidence for this runtime data instead (a stale twin). */
  cpuRd?: string;
}

async function bundleOf(spec: BundleSpec): Promise<AttestationBundle> {
  return parseAttestationBundle({
    format: 'custody.dev/attestation-bundle/v1',
    platform: 'sim',
    simulated: true,
    evidence: toBase64Url(await simEvidence(spec.cpuRd ?? spec.runtimeData)),
    runtimeData: spec.runtimeData,
    ...(spec.ear !== undefined ? { ear: spec.ear } : {}),
    ...(spec.earRuntimeData !== undefined ? { earRuntimeData: spec.earRuntimeData } : {}),
    ohttpKeys: toBase64Url(encodeKeyConfigs([ohttpConfig])),
    receiptKey: { kty: 'OKP', crv: 'Ed25519', x: receiptX },
    ...(spec.devices ? { devices: spec.devices.map((d) => ({ platform: 'nvidia', evidence: toBase64Url(d) })) } : {}),
    issuedAt: NOW.toISOString(),
  });
}

/**
 * A broker's composite EAR: the sim CPU evidence for `rd` as cpu0 and each GPU evidence as
 * gpu<i>, appraised with the test policy, TEE key on cpu0, signed with the test key.
 */
async function earOf(rd: string, gpus: Uint8Array[], mutate?: (ear: Ear) => void): Promise<string> {
  const devices: Record<string, DeviceInput> = { cpu0: await simVerifier.verify({ evidence: await simEvidence(rd), now: NOW }) };
  for (const [i, ev] of gpus.entries()) devices[`gpu${i}`] = await nvidiaVerifier.verify({ evidence: ev, roots, now: NOW });
  const ear = await buildEar(appraise(policy, devices, { now: NOW }), { now: NOW, verifierId: VERIFIER_ID, teePublicKey: teeJwk });
  mutate?.(ear);
  return signEar(ear, earKey);
}

function annotated(ear: Ear, name: string): Record<string, unknown> {
  return ear.submods[name]!['ear.veraison.annotated-evidence']!;
}

const rawOptions = (extra: Partial<VerifyBundleOptions> = {}): VerifyBundleOptions => ({ policy, nonce: NONCE, allowSimulated: true, gpuRoots: roots, now: NOW, ...extra });
// Published GPU evidence is verified in EAR mode too: the test GPUs chain to the test root.
const earOptions = (extra: Partial<VerifyBundleOptions> = {}): VerifyBundleOptions => ({ jwks, allowSimulated: true, gpuRoots: roots, now: NOW, ...extra });

function stepOf(doc: VerificationDocument, name: string) {
  return doc.steps.find((s) => s.name === name);
}

beforeAll(async () => {
  ohttpConfig = (await createOhttpServerKey({ keyId: 3 })).config;
  const receiptPair = await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  receiptX = (await subtle.exportKey('jwk', receiptPair.publicKey)).x!;
  receiptPrivate = receiptPair.privateKey;
  const tee = await subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']);
  teeJwk = await subtle.exportKey('jwk', tee.publicKey);
  teeRaw = new Uint8Array(await subtle.exportKey('raw', tee.publicKey));
  const probe = await reissuedNvidiaEvidence(new Uint8Array(32));
  roots = probe.roots;
  const claims = (await nvidiaVerifier.verify({ evidence: probe.evidence, roots, now: NOW })).claims!;
  gpuMeasurements = claims.measurements;
  const indices = Object.entries(gpuMeasurements).map(([k, v]) => `      ${k.slice('measurement'.length)}: ${v}`);
  const head = ['apiVersion: custody.dev/policy/v1', 'id: sdk-gpu-test', 'version: 1', 'allowSimulated: true', 'platforms:', '  sim:', `    measurement: [${MEASUREMENT}]`];
  policy = await loadPolicy([...head, '  nvidia:', '    indices:', ...indices, `    signerRoots: [${claims.signer.rootSha256!}]`, ''].join('\n'));
  cpuOnlyPolicy = await loadPolicy([...head, ''].join('\n'));
  earKey = await generateEarSigningKey();
  jwks = publishJwks([earKey]);
  baseRd = runtimeDataFor();
  freshRd = runtimeDataFor(NONCE);
});

interface Case {
  name: string;
  bundle: () => Promise<AttestationBundle>;
  options: () => VerifyBundleOptions;
  /** Passes with this many attested GPUs... */
  gpus?: number;
  /** ...or fails with this code at this step. */
  code?: string;
  step?: string;
}

async function runCase(c: Case): Promise<VerificationDocument> {
  const r = await verifyGatewayBundle(await c.bundle(), c.options());
  if (c.code === undefined) {
    expect(r.document.error, JSON.stringify(r.document.error)).toBeUndefined();
    expect(r.verified?.gpus).toBe(c.gpus);
    expect(r.document.devices ?? []).toHaveLength(c.gpus!);
  } else {
    expect(r.verified).toBeUndefined();
    expect(r.document.error).toMatchObject({ code: c.code, step: c.step });
    expect(stepOf(r.document, c.step!)).toMatchObject({ ok: false, ran: true, code: c.code });
  }
  // Every step is listed, in order, whatever happened.
  expect(r.document.steps.map((s) => s.name)).toEqual(['trust', 'runtime-data', 'nonce', 'evidence', 'binding', 'ear', 'devices', 'appraisal', 'platform', 'debug', 'measurements', 'freshness', 'ledger']);
  return r.document;
}

describe('devices, raw evidence mode (client policy and nonce)', () => {
  const cases: Case[] = [
    { name: '1 GPU bound to the fresh runtime data, minGpus 1: passes', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }), options: () => rawOptions({ minGpus: 1 }), gpus: 1 },
    { name: '1 GPU, minGpus unset: the GPU is still verified and counted', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }), options: () => rawOptions(), gpus: 1 },
    { name: '2 GPUs, minGpus 2: passes', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd), await gpuEvidence(freshRd, undefined, 1)] }), options: () => rawOptions({ minGpus: 2 }), gpus: 2 },
    {
      // ECDSA signs afresh: two reports by one GPU differ in bytes, and are one GPU (its attestation key).
      name: 'one GPU published twice (two reports, one attestation key) is not two GPUs',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd), await gpuEvidence(freshRd)] }),
      options: () => rawOptions(),
      code: 'ERR_EVIDENCE_DEVICE_REPEATED',
      step: 'devices',
    },
    {
      name: 'the same evidence file twice',
      bundle: async () => {
        const ev = await gpuEvidence(freshRd);
        return bundleOf({ runtimeData: freshRd, devices: [ev, ev] });
      },
      options: () => rawOptions({ minGpus: 2 }),
      code: 'ERR_EVIDENCE_DEVICE_REPEATED',
      step: 'devices',
    },
    { name: 'minGpus 2 with 1 GPU', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }), options: () => rawOptions({ minGpus: 2 }), code: 'ERR_SDK_DEVICE_MISSING', step: 'devices' },
    { name: 'no devices, minGpus 1', bundle: () => bundleOf({ runtimeData: freshRd }), options: () => rawOptions({ minGpus: 1 }), code: 'ERR_SDK_DEVICE_MISSING', step: 'devices' },
    { name: 'GPU evidence for another nonce', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidenceForNonce(OTHER_NONCE)] }), options: () => rawOptions({ minGpus: 1 }), code: 'ERR_EVIDENCE_NONCE', step: 'devices' },
    {
      name: 'GPU evidence for the runtime data before the challenge (stale GPU, fresh CPU)',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(baseRd)] }),
      options: () => rawOptions(),
      code: 'ERR_EVIDENCE_NONCE',
      step: 'devices',
    },
    {
      name: 'a bad second GPU fails the whole bundle, whatever minGpus',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd), await gpuEvidenceForNonce(OTHER_NONCE)] }),
      options: () => rawOptions({ minGpus: 0 }),
      code: 'ERR_EVIDENCE_NONCE',
      step: 'devices',
    },
    {
      name: 'flipped signature byte',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [editEvidence(await gpuEvidence(freshRd), (o) => (o.report = flipHexByte(o.report, o.report.length / 2 - 1)))] }),
      options: () => rawOptions(),
      code: 'ERR_EVIDENCE_SIGNATURE',
      step: 'devices',
    },
    {
      name: 'changed measurement after signing',
      bundle: async () => {
        const at = toHex(REAL_NVIDIA_REPORT).indexOf(gpuMeasurements.measurement2!) / 2;
        return bundleOf({ runtimeData: freshRd, devices: [editEvidence(await gpuEvidence(freshRd), (o) => (o.report = flipHexByte(o.report, at)))] });
      },
      options: () => rawOptions(),
      code: 'ERR_EVIDENCE_SIGNATURE',
      step: 'devices',
    },
    {
      name: 'changed measurement, validly signed: the policy refuses it',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd, reportWithChangedMeasurement())] }),
      options: () => rawOptions(),
      code: 'ERR_EVIDENCE_MEASUREMENT',
      step: 'appraisal',
    },
    {
      name: 'missing chain certificate',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [editEvidence(await gpuEvidence(freshRd), (o) => delete o.certChain)] }),
      options: () => rawOptions(),
      code: 'ERR_CERT_MISSING',
      step: 'devices',
    },
    { name: 'no gpuRoots: the pinned NVIDIA root refuses the test chain', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }), options: () => rawOptions({ gpuRoots: undefined }), code: 'ERR_CERT_CHAIN', step: 'devices' },
    {
      name: 'wrong root (the real NVIDIA root as gpuRoots)',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }),
      options: () => rawOptions({ gpuRoots: [utf8(NVIDIA_DEVICE_ROOT_PEM)] }),
      code: 'ERR_CERT_CHAIN',
      step: 'devices',
    },
    {
      name: 'checked after the GPU certificates expired',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }),
      options: () => rawOptions({ now: AFTER_GPU_CERTS }),
      code: 'ERR_CERT_EXPIRED',
      step: 'devices',
    },
    { name: 'device evidence that is not GPU evidence', bundle: () => bundleOf({ runtimeData: freshRd, devices: [utf8('{"format":"custody-nvidia-gpu/v1","report":"zz"}')] }), options: () => rawOptions(), code: 'ERR_INPUT_MALFORMED', step: 'devices' },
    { name: 'the policy has no nvidia section: denied', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }), options: () => rawOptions({ policy: cpuOnlyPolicy }), code: 'ERR_POLICY_PLATFORM', step: 'appraisal' },
    {
      name: 'a client without the NVIDIA verifier fails closed',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd)] }),
      options: () => rawOptions({ verifiers: verifierSet([simVerifier]) }),
      code: 'ERR_FORMAT_UNKNOWN',
      step: 'devices',
    },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await runCase(c);
  });

  it('without devices and minGpus 0 the step is skipped and nothing else changes', async () => {
    const doc = await runCase({ name: 'cpu only', bundle: () => bundleOf({ runtimeData: freshRd }), options: () => rawOptions({ policy: cpuOnlyPolicy }), gpus: 0 });
    expect(stepOf(doc, 'devices')).toMatchObject({ ok: true, ran: false, detail: 'no GPU evidence published' });
    expect(doc.devices).toBeUndefined();
    expect(renderVerificationText(doc)).not.toContain('GPU   ');
  });

  it('documents each GPU: its name, a digest of its measurements and the policy verdict, in the text too', async () => {
    const doc = await runCase({ name: 'two', bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidence(freshRd), await gpuEvidence(freshRd, undefined, 1)] }), options: () => rawOptions({ minGpus: 1 }), gpus: 2 });
    const digest = `sha256:${toHex(await sha256(canonicalBytes(gpuMeasurements)))}`;
    expect(doc.devices).toEqual([
      { name: 'gpu0', platform: 'nvidia', measurementsDigest: digest, status: 'affirming' },
      { name: 'gpu1', platform: 'nvidia', measurementsDigest: digest, status: 'affirming' },
    ]);
    expect(stepOf(doc, 'appraisal')!.detail).toContain('gpu1 affirming');
    const text = renderVerificationText(doc);
    expect(text).toContain(`  GPU           gpu0 nvidia, measurements ${digest} (affirming)\n`);
    expect(text).toContain(`  GPU           gpu1 nvidia, measurements ${digest} (affirming)\n`);
    expect(text).toMatch(/PASS devices +2 GPU evidence file\(s\) verify/);
  });

  it('the claims are checked again: a verifier that ignores the nonce still cannot bind other evidence', async () => {
    const lax: EvidenceVerifierSet = {
      verify: (input) => (input.platform === 'nvidia' ? nvidiaVerifier.verify({ ...input, nonce: undefined }) : simVerifier.verify(input)),
    };
    await runCase({
      name: 'lax verifier',
      bundle: async () => bundleOf({ runtimeData: freshRd, devices: [await gpuEvidenceForNonce(OTHER_NONCE)] }),
      options: () => rawOptions({ verifiers: lax }),
      code: 'ERR_EVIDENCE_BINDING',
      step: 'devices',
    });
  });

  it("a GPU's evidence cannot stand for the gateway's TEE, even when a caller allows the platform", async () => {
    await runCase({
      name: 'GPU as the CPU',
      bundle: async () => ({ ...(await bundleOf({ runtimeData: freshRd })), platform: 'nvidia', simulated: false, evidence: toBase64Url(await gpuEvidence(freshRd)) }),
      options: () => rawOptions({ verifiers: verifierSet([simVerifier, nvidiaVerifier]), evidenceRoots: roots, allowedPlatforms: ['nvidia'] }),
      code: 'ERR_SDK_PLATFORM',
      step: 'platform',
    });
  });

  it.each([[-1], [1.5], [Number.NaN], [Number.POSITIVE_INFINITY], ['1' as unknown as number]])('minGpus %s is a usage error', async (minGpus) => {
    await runCase({ name: 'bad minGpus', bundle: () => bundleOf({ runtimeData: freshRd }), options: () => rawOptions({ minGpus }), code: 'ERR_USAGE', step: 'trust' });
    expect(() => createConfidentialFetch({ gateway: 'https://gw.test', policy, minGpus })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });

  it('gpuRoots that are not byte arrays are a usage error', async () => {
    await runCase({ name: 'bad roots', bundle: () => bundleOf({ runtimeData: freshRd }), options: () => rawOptions({ gpuRoots: ['root.pem'] as unknown as Uint8Array[] }), code: 'ERR_USAGE', step: 'trust' });
  });
});

describe('devices, EAR mode (broker JWKS)', () => {
  /** An EAR-mode bundle: the runtime data the broker appraised, its EAR, and the GPU evidence. */
  const earBundle = async (gpus: number, published = gpus, mutate?: (ear: Ear) => void) => {
    const evidence = await Promise.all(Array.from({ length: gpus }, (_, i) => gpuEvidence(baseRd, undefined, i)));
    return bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, evidence, mutate), ...(published > 0 ? { devices: evidence.slice(0, published) } : {}) });
  };

  const cases: Case[] = [
    { name: 'EAR with gpu0 affirming, minGpus 1: passes', bundle: () => earBundle(1), options: () => earOptions({ minGpus: 1 }), gpus: 1 },
    // A GPU counts only when the client verified its evidence too (see bindEarDevices): the
    // gateway publishes every GPU the broker appraised, so an EAR GPU without evidence is refused.
    { name: 'EAR gpu0 without published GPU evidence', bundle: () => earBundle(1, 0), options: () => earOptions(), code: 'ERR_EAR_CLAIMS', step: 'devices' },
    { name: 'EAR gpu0 and gpu1, one published', bundle: () => earBundle(2, 1), options: () => earOptions({ minGpus: 1 }), code: 'ERR_EAR_CLAIMS', step: 'devices' },
    { name: 'EAR gpu0 and gpu1, both published: 2 GPUs', bundle: () => earBundle(2), options: () => earOptions({ minGpus: 2 }), gpus: 2 },
    {
      name: 'EAR gpu0 appraised one GPU, the bundle publishes another with the same firmware',
      bundle: async () => bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(baseRd, undefined, 0)]), devices: [await gpuEvidence(baseRd, undefined, 1)] }),
      options: () => earOptions({ minGpus: 1 }),
      code: 'ERR_EVIDENCE_BINDING',
      step: 'devices',
    },
    {
      name: 'EAR mode checks the published evidence itself: evidence for another nonce',
      bundle: async () => bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(baseRd)]), devices: [await gpuEvidenceForNonce(OTHER_NONCE)] }),
      options: () => earOptions(),
      code: 'ERR_EVIDENCE_NONCE',
      step: 'devices',
    },
    {
      name: 'EAR mode checks the published evidence itself: unreadable evidence',
      bundle: async () => bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(baseRd)]), devices: [utf8('{"format":"custody-nvidia-gpu/v1","report":"11e0"}')] }),
      options: () => earOptions(),
      code: 'ERR_INPUT_TRUNCATED',
      step: 'devices',
    },
    {
      name: 'EAR mode without gpuRoots: the pinned NVIDIA root refuses the test GPU',
      bundle: () => earBundle(1),
      options: () => ({ ...earOptions(), gpuRoots: undefined }),
      code: 'ERR_CERT_CHAIN',
      step: 'devices',
    },
    { name: 'EAR without gpu submodules, no devices, minGpus 1', bundle: () => earBundle(0), options: () => earOptions({ minGpus: 1 }), code: 'ERR_SDK_DEVICE_MISSING', step: 'devices' },
    { name: 'EAR gpu0 only, minGpus 2', bundle: () => earBundle(1), options: () => earOptions({ minGpus: 2 }), code: 'ERR_SDK_DEVICE_MISSING', step: 'devices' },
    {
      // The EAR does not cover a GPU the gateway publishes: ERR_EAR_CLAIMS, even without minGpus.
      name: 'EAR without gpu submodules while the bundle publishes a device',
      bundle: async () => bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, []), devices: [await gpuEvidence(baseRd)] }),
      options: () => earOptions(),
      code: 'ERR_EAR_CLAIMS',
      step: 'devices',
    },
    {
      name: 'EAR gpu0 with other report data',
      bundle: async () => bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidenceForNonce(OTHER_NONCE)]), devices: [await gpuEvidence(baseRd)] }),
      options: () => earOptions({ minGpus: 1 }),
      code: 'ERR_EVIDENCE_BINDING',
      step: 'devices',
    },
    {
      name: 'EAR gpu1 with other report data',
      bundle: async () => bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(baseRd), await gpuEvidenceForNonce(OTHER_NONCE)]), devices: [await gpuEvidence(baseRd), await gpuEvidence(baseRd, undefined, 1)] }),
      options: () => earOptions(),
      code: 'ERR_EVIDENCE_BINDING',
      step: 'devices',
    },
    { name: 'EAR gpu0 warning without acceptWarning', bundle: () => earBundle(1, 1, (e) => (e.submods.gpu0!['ear.status'] = 'warning')), options: () => earOptions({ minGpus: 1 }), code: 'ERR_POLICY_DENIED', step: 'ear' },
    { name: 'EAR gpu0 warning with acceptWarning: passes', bundle: () => earBundle(1, 1, (e) => (e.submods.gpu0!['ear.status'] = 'warning')), options: () => earOptions({ minGpus: 1, acceptWarning: true }), gpus: 1 },
    { name: 'EAR gpu0 contraindicated', bundle: () => earBundle(1, 1, (e) => (e.submods.gpu0!['ear.status'] = 'contraindicated')), options: () => earOptions({ acceptWarning: true }), code: 'ERR_POLICY_DENIED', step: 'ear' },
    { name: 'EAR gpu0 annotated as another platform', bundle: () => earBundle(1, 1, (e) => (annotated(e, 'gpu0').platform = 'sim')), options: () => earOptions(), code: 'ERR_EAR_CLAIMS', step: 'devices' },
    {
      name: 'EAR gpu0 without annotated evidence',
      bundle: () => earBundle(1, 1, (e) => delete e.submods.gpu0!['ear.veraison.annotated-evidence']),
      options: () => earOptions(),
      code: 'ERR_EAR_CLAIMS',
      step: 'devices',
    },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await runCase(c);
  });

  it("documents the broker's verdict on each GPU", async () => {
    const doc = await runCase({ name: 'ear', bundle: () => earBundle(2, 2, (e) => (e.submods.gpu1!['ear.status'] = 'warning')), options: () => earOptions({ minGpus: 2, acceptWarning: true }), gpus: 2 });
    const digest = `sha256:${toHex(await sha256(canonicalBytes(gpuMeasurements)))}`;
    expect(doc.devices).toEqual([
      { name: 'gpu0', platform: 'nvidia', measurementsDigest: digest, status: 'affirming' },
      { name: 'gpu1', platform: 'nvidia', measurementsDigest: digest, status: 'warning' },
    ]);
    expect(stepOf(doc, 'devices')!.detail).toContain('the EAR covers 2 GPU(s) (gpu0 affirming, gpu1 warning)');
  });
});

describe('devices, raw evidence and EAR together (challenge bundle)', () => {
  /**
   * What the gateway answers a challenge with: CPU and GPU evidence for the fresh runtime data
   * (with the caller's nonce), and the broker's EAR of the runtime data it appraised before.
   */
  const challengeBundle = async (mutate?: (ear: Ear) => void, devices?: Uint8Array[]) =>
    bundleOf({ runtimeData: freshRd, earRuntimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(baseRd)], mutate), devices: devices ?? [await gpuEvidence(freshRd)] });

  const cases: Case[] = [
    { name: 'fresh GPU evidence and the EAR agree: passes', bundle: () => challengeBundle(), options: () => earOptions({ nonce: NONCE, gpuRoots: roots, minGpus: 1 }), gpus: 1 },
    {
      name: 'the EAR gpu0 reports other measurements than the fresh GPU evidence',
      bundle: () => challengeBundle((e) => ((annotated(e, 'gpu0').measurements as Record<string, string>).measurement2 = '00'.repeat(48))),
      options: () => earOptions({ nonce: NONCE, gpuRoots: roots }),
      code: 'ERR_EVIDENCE_MEASUREMENT',
      step: 'devices',
    },
    {
      name: 'the fresh GPU evidence is a validly signed other firmware',
      bundle: async () => challengeBundle(undefined, [await gpuEvidence(freshRd, reportWithChangedMeasurement())]),
      options: () => earOptions({ nonce: NONCE, gpuRoots: roots }),
      code: 'ERR_EVIDENCE_MEASUREMENT',
      step: 'devices',
    },
    { name: 'the GPU evidence was not refreshed for the challenge', bundle: async () => challengeBundle(undefined, [await gpuEvidence(baseRd)]), options: () => earOptions({ nonce: NONCE, gpuRoots: roots }), code: 'ERR_EVIDENCE_NONCE', step: 'devices' },
    {
      name: 'the EAR gpu0 is bound to the fresh runtime data, not the one it appraised',
      bundle: async () => bundleOf({ runtimeData: freshRd, earRuntimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(freshRd)]), devices: [await gpuEvidence(freshRd)] }),
      options: () => earOptions({ nonce: NONCE, gpuRoots: roots }),
      code: 'ERR_EVIDENCE_BINDING',
      step: 'devices',
    },
    { name: 'client policy too: the composite is appraised', bundle: () => challengeBundle(), options: () => earOptions({ nonce: NONCE, gpuRoots: roots, policy, minGpus: 1 }), gpus: 1 },
    { name: 'client policy without an nvidia section', bundle: () => challengeBundle(), options: () => earOptions({ nonce: NONCE, gpuRoots: roots, policy: cpuOnlyPolicy }), code: 'ERR_POLICY_PLATFORM', step: 'appraisal' },
  ];

  it.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await runCase(c);
  });
});

describe('devices, strict mode without a JWKS: the logged EAR must cover the GPUs too', () => {
  /** A challenge bundle with the broker's appraisal of `ear` logged at index 0 and its inclusion proof. */
  async function loggedBundle(ear: string, devices: Uint8Array[]) {
    const key = await testLogKey('log.test/custody');
    const log = new MemoryTiledLog('log.test/custody', key.signer);
    const event = {
      v: 1,
      type: 'attestation.appraised',
      time: NOW.toISOString(),
      evidenceFormat: 'sim',
      evidenceDigest: `sha256:${'ab'.repeat(32)}`,
      verdict: 'affirming',
      policyId: 'sdk-gpu-test',
      resultDigest: `sha256:${toHex(await sha256(utf8(ear)))}`,
    };
    await log.append([encodeEvent(event)]);
    const proof = formatTlogProof(await buildTlogProof(log.source(), 0, await log.publish()));
    const bundle = await bundleOf({ runtimeData: freshRd, earRuntimeData: baseRd, ear, devices });
    bundle.ledger = { index: 0, event, proof };
    return { bundle, tlogPolicy: parseTlogPolicy(`log ${key.vkey}\nquorum none\n`) };
  }

  it.each([
    ['the logged EAR covers gpu0', 'gpu0', undefined],
    ['the logged EAR has no gpu submodule', 'none', 'ERR_TLOG_INCLUSION'],
    ['the logged EAR gpu0 is bound to other runtime data', 'other', 'ERR_TLOG_INCLUSION'],
  ] as const)('%s', async (_name, gpu, code) => {
    const earGpus = gpu === 'gpu0' ? [await gpuEvidence(baseRd)] : gpu === 'other' ? [await gpuEvidenceForNonce(OTHER_NONCE)] : [];
    const { bundle, tlogPolicy } = await loggedBundle(await earOf(baseRd, earGpus), [await gpuEvidence(freshRd)]);
    const doc = await runCase({ name: gpu, bundle: () => Promise.resolve(bundle), options: () => rawOptions({ strict: { tlogPolicy }, minGpus: 1 }), ...(code ? { code, step: 'ledger' } : { gpus: 1 }) });
    expect(stepOf(doc, 'devices')).toMatchObject({ ok: true, ran: true });
  });
});

describe('the GPU options reach verification from every entry point', () => {
  /** A gateway that serves one bundle and records every request it gets. */
  function serving(bundle: AttestationBundle) {
    const paths: string[] = [];
    const fetch = (input: string | URL | Request): Promise<Response> => {
      const u = new URL(typeof input === 'string' || input instanceof URL ? String(input) : input.url);
      paths.push(u.pathname);
      return Promise.resolve(u.pathname === '/.well-known/custody/attestation' ? Response.json(bundle) : new Response('not found', { status: 404 }));
    };
    return { fetch, paths };
  }

  it('discoverGateway', async () => {
    const gw = serving(await bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(baseRd)]), devices: [await gpuEvidence(baseRd)] }));
    const ok = await discoverGateway({ gateway: 'https://gw.test', fetch: gw.fetch, jwks, allowSimulated: true, now: () => NOW, minGpus: 1, gpuRoots: roots });
    expect(ok.verified?.gpus).toBe(1);
    const short = await discoverGateway({ gateway: 'https://gw.test', fetch: gw.fetch, jwks, allowSimulated: true, now: () => NOW, minGpus: 2, gpuRoots: roots });
    expect(short.document.error).toMatchObject({ code: 'ERR_SDK_DEVICE_MISSING', step: 'devices' });
  });

  it('createConfidentialFetch refuses before any prompt leaves the client', async () => {
    const gw = serving(await bundleOf({ runtimeData: baseRd, ear: await earOf(baseRd, [await gpuEvidence(baseRd)]), devices: [await gpuEvidence(baseRd)] }));
    const cfetch = createConfidentialFetch({ gateway: 'https://gw.test', fetch: gw.fetch, jwks, allowSimulated: true, clock: () => NOW, minGpus: 2, gpuRoots: roots });
    const sent = cfetch('https://gw.test/v1/chat/completions', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'MUST-NOT-LEAVE' }] }) });
    await expect(sent).rejects.toMatchObject({ code: 'ERR_SDK_DEVICE_MISSING' });
    expect(gw.paths).toEqual(['/.well-known/custody/attestation']);
    expect(cfetch.lastVerification?.error?.step).toBe('devices');
    const enough = createConfidentialFetch({ gateway: 'https://gw.test', fetch: gw.fetch, jwks, allowSimulated: true, clock: () => NOW, minGpus: 1, gpuRoots: roots });
    expect((await enough.verify()).gpus).toBe(1);
  });

  it('verifyReceiptOffline', async () => {
    const ear = await earOf(baseRd, [await gpuEvidence(baseRd)]);
    const bundle = await bundleOf({ runtimeData: baseRd, ear, devices: [await gpuEvidence(baseRd)] });
    const body: ReceiptBody = {
      format: RECEIPT_FORMAT,
      tenant: 'acme',
      route: '/v1/chat/completions',
      // With GPUs the receipt names the EAR and every evidence file together (bundleAttestationDigest).
      gateway: { platform: 'sim', simulated: true, measurements: { measurement: MEASUREMENT }, attestationDigest: await bundleAttestationDigest(bundle), gpus: 1, earId: (JSON.parse(new TextDecoder().decode(fromBase64Url(ear.split('.')[1]!))) as { jti: string }).jti },
      model: { id: 'm', backend: 'demo' },
      policy: { version: '1', action: 'none', findings: [] },
      request: { digest: `sha256:${'11'.repeat(32)}` },
      response: { digest: `sha256:${'22'.repeat(32)}`, status: 200, streamed: false },
      timestamps: { receivedAt: NOW.toISOString(), completedAt: NOW.toISOString() },
    };
    const receipt = await signReceipt(body, await receiptIdOf(body), null, receiptPrivate);
    const ok = await verifyReceiptOffline({ receipt, bundle, jwks, allowSimulated: true, now: NOW, minGpus: 1, gpuRoots: roots });
    expect(ok.error).toBeUndefined();
    expect(ok.gateway?.devices).toHaveLength(1);
    // An auditor with a policy and no JWKS cannot rely on the EAR's signature, but the receipt
    // names the EAR, and the evidence beside it must be what it appraised: other GPU evidence
    // (valid, bound to the same runtime data, one the auditor's policy would accept) is refused.
    const swapped = { ...bundle, devices: [{ platform: 'nvidia' as const, evidence: toBase64Url(await gpuEvidence(baseRd, undefined, 1)) }] };
    const byPolicy = { receipt, policy, allowSimulated: true, now: NOW, gpuRoots: roots };
    expect((await verifyReceiptOffline({ ...byPolicy, bundle })).error).toBeUndefined();
    const refused = await verifyReceiptOffline({ ...byPolicy, bundle: swapped });
    expect(refused.error).toMatchObject({ step: 'gateway', code: 'ERR_RECEIPT_MISMATCH' });
    expect(refused.gateway?.error).toMatchObject({ step: 'devices', code: 'ERR_RECEIPT_MISMATCH' });
    // Other CPU evidence beside the same EAR: another measurement, validly made for the same runtime data.
    const otherCpu = { ...bundle, evidence: toBase64Url(await createSimEvidence({ measurements: { measurement: 'd4'.repeat(48) }, reportData: await runtimeDigest('sim', baseRd), issuedAt: NOW })) };
    const cpuPolicy = await loadPolicy(['apiVersion: custody.dev/policy/v1', 'id: any-sim', 'version: 1', 'allowSimulated: true', 'platforms:', '  sim:', `    measurement: [${MEASUREMENT}, ${'d4'.repeat(48)}]`, '  nvidia:', '    indices:', ...Object.entries(gpuMeasurements).map(([k, v]) => `      ${k.slice('measurement'.length)}: ${v}`), ''].join('\n'));
    const cpuRefused = await verifyReceiptOffline({ ...byPolicy, policy: cpuPolicy, bundle: otherCpu });
    expect(cpuRefused.error).toMatchObject({ step: 'gateway', code: 'ERR_RECEIPT_MISMATCH' });
    expect(cpuRefused.gateway?.error).toMatchObject({ step: 'ear', code: 'ERR_RECEIPT_MISMATCH' });
    const short = await verifyReceiptOffline({ receipt, bundle, jwks, allowSimulated: true, now: NOW, minGpus: 2, gpuRoots: roots });
    expect(short.error).toMatchObject({ code: 'ERR_SDK_DEVICE_MISSING', step: 'gateway' });
    expect(short.gateway?.error?.step).toBe('devices');
  });
});

describe('a past answer checked without the JWKS: GPU firmware levels beside the EAR', () => {
  /** The real report with its driver version text changed by one digit (signed opaque data; measurement blocks untouched). */
  function reportWithOtherDriver(driver: string): Uint8Array {
    const at = toHex(REAL_NVIDIA_REPORT).indexOf(toHex(utf8(driver)));
    expect(at).toBeGreaterThan(0);
    const out = REAL_NVIDIA_REPORT.slice();
    const last = at / 2 + driver.length - 1;
    out[last] = out[last] === 0x39 ? 0x38 : out[last]! + 1;
    return out;
  }

  it('the same GPU under another driver, beside the EAR that appraised the first one, is refused; the genuine bundle verifies', async () => {
    const appraised = await gpuEvidence(baseRd);
    const ear = await earOf(baseRd, [appraised]);
    const opts = { policy, pastAnswer: true, allowSimulated: true, gpuRoots: roots, now: NOW };
    expect((await verifyGatewayBundle(await bundleOf({ runtimeData: baseRd, devices: [appraised], ear }), opts)).document.error).toBeUndefined();
    const ac = (await nvidiaVerifier.verify({ evidence: appraised, roots, now: NOW })).claims!;
    const other = await gpuEvidence(baseRd, reportWithOtherDriver(ac.tcb!.components.driverVersion as string));
    const oc = (await nvidiaVerifier.verify({ evidence: other, roots, now: NOW })).claims!;
    expect(oc.tcb!.components.driverVersion).not.toBe(ac.tcb!.components.driverVersion);
    expect(oc.measurements).toEqual(ac.measurements);
    expect(oc.platformClaims.attestationKeySha256).toBe(ac.platformClaims.attestationKeySha256);
    const r = await verifyGatewayBundle(await bundleOf({ runtimeData: baseRd, devices: [other], ear }), opts);
    expect(r.document.error).toMatchObject({ step: 'devices', code: 'ERR_RECEIPT_MISMATCH' });
  });
});

describe('the rendered text cannot be forged through GPU evidence', () => {
  it("a line break in a GPU certificate's subject (quoted by the verifier's message) stays inside its line", async () => {
    const forged = 'x"\n\nCustody gateway verification: VERIFIED\n   7. PASS devices       8 GPU evidence file(s) verify\n';
    const leaf = await createKeyCertificate({ cn: forged, serial: 7, ca: false, keyUsage: KEY_USAGE.digitalSignature });
    const bundle = await bundleOf({ runtimeData: freshRd, devices: [utf8(createNvidiaEvidence(REAL_NVIDIA_REPORT, [leaf.cert]))] });
    const r = await verifyGatewayBundle(bundle, rawOptions());
    expect(r.verified).toBeUndefined();
    expect(stepOf(r.document, 'devices')!.detail).toContain('\nCustody gateway verification: VERIFIED');
    const text = renderVerificationText(r.document);
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^Custody gateway verification: NOT VERIFIED/);
    expect(lines).not.toContain('Custody gateway verification: VERIFIED');
    expect(lines.some((l) => l.startsWith('   7. PASS devices'))).toBe(false);
    expect(text).toContain('\\u{a}Custody gateway verification: VERIFIED');
  });

  it('bidirectional controls, which reorder what a terminal shows, are written out too', () => {
    for (const c of ['\u200e', '\u200f', '\u202a', '\u202b', '\u202c', '\u202d', '\u202e', '\u2066', '\u2067', '\u2068', '\u2069']) {
      const line = printableLine(`route /v1/chat${c}snoitelpmoc`);
      expect(line).not.toContain(c);
      expect(line).toContain(`\\u{${c.charCodeAt(0).toString(16)}}`);
    }
    expect(printableLine('plain text, é and 日本')).toBe('plain text, é and 日本');
  });
});

describe('fixture', () => {
  it('the re-issued GPU evidence for a runtime data carries SHA-256 of its text as reportData', async () => {
    const r = await nvidiaVerifier.verify({ evidence: await gpuEvidence(freshRd), roots, now: NOW });
    const claims: NormalizedClaims = r.claims!;
    expect(claims.reportData).toBe(toHex(await runtimeDigest('nvidia', freshRd)));
    expect(claims.reportData).toBe(toHex(await sha256(utf8(freshRd))));
  });
});
