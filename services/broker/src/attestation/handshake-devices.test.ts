// Composite CPU + GPU attestation in process (AttestationService, no HTTP): sim CPU evidence
// with NVIDIA GPU evidence bound to the same runtime data (the real Hopper report re-signed for
// the runtime data digest under a test root), appraised as one EAR (cpu0, gpu0, ...). Every
// tampered twin is refused with its code and the failing submodule, the nonce stays spent, and
// no evidence bytes reach logs, audit events or errors.
import { createHash } from 'node:crypto';
import { Registry } from 'prom-client';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CustodyError, fromBase64Url, fromHex, toBase64, toHex } from '@custody/core';
import { defaultRegistry, type VerificationResult } from '@custody/attest';
import { verifyEar } from '@custody/policy';
import { toCustodyEvent } from '@custody/ledger';
import { SimAttester } from '@custody/attester-service';
import { nvidiaVerifier } from '../../../../packages/attest/src/nvidia/verifier.js';
import { reissuedNvidiaEvidence } from '../../../../packages/attest/src/nvidia/testing/reissue.js';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { admin, bufferLogger, embeddedBackend, type Harness } from '../testing/harness.js';
import { simPolicy } from '../testing/handshake.js';
import { AppraisalPolicies } from './appraisal-policies.js';
import { EarSigner } from './ear-signer.js';
import { AttestationService, EAR_ISSUER, MAX_DEVICES, type AttestationServiceOptions, type DeviceEvidenceInput, type EvidenceVerification } from './handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { generateTeeKeyPair } from './workload-client.js';

const M = 'a1'.repeat(48);
const sim = new SimAttester({ measurements: { measurement: M } });

/** The real report's measurements (measurement1..N), as the NVIDIA verifier reports them. */
let gpuMeasurements: Record<string, string>;
/** The test root the re-issued GPU evidence chains to (never a CPU root here). */
let gpuRoots: Uint8Array[];

/** An `nvidia:` platform section accepting these measurements by SPDM block index. */
function nvidiaSection(measurements: Record<string, string>): string {
  const lines = Object.entries(measurements).map(([name, value]) => `      ${name.replace('measurement', '')}: ${value}`);
  return `  nvidia:\n    indices:\n${lines.join('\n')}\n`;
}

/** Evidence of test GPU `gpu` (each index is another GPU: its own attestation key). */
async function gpuEvidence(nonce: Uint8Array, gpu = 0): Promise<DeviceEvidenceInput> {
  return { platform: 'nvidia', evidence: (await reissuedNvidiaEvidence(nonce, undefined, gpu)).evidence };
}

/** The evidence JSON with one byte of its SPDM signature (the report's last 96 bytes) flipped. */
function flipSignatureByte(evidence: Uint8Array): Uint8Array {
  const o = JSON.parse(new TextDecoder().decode(evidence)) as { report: string };
  const report = fromHex(o.report);
  report[report.length - 10]! ^= 0x01;
  o.report = toHex(report);
  return new TextEncoder().encode(JSON.stringify(o));
}

function sha256(b: Uint8Array): Buffer {
  return createHash('sha256').update(b).digest();
}

beforeAll(async () => {
  const probe = await reissuedNvidiaEvidence(new Uint8Array(32));
  gpuRoots = probe.roots;
  const r = await nvidiaVerifier.verify({ evidence: probe.evidence, roots: gpuRoots, now: new Date() });
  expect(r.ok).toBe(true);
  gpuMeasurements = r.claims!.measurements;
  expect(Object.keys(gpuMeasurements).length).toBeGreaterThan(10);
});

describe('AttestationService with device (GPU) evidence', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let audit: InMemoryAuditSinkTestDouble;
  let metrics: Registry;
  let logLines: string[];
  let signer: EarSigner;
  let svc: AttestationService;
  /** Every error text seen, for the evidence scan. */
  const errorTexts: string[] = [];

  async function service(overrides: Partial<AttestationServiceOptions> = {}): Promise<AttestationService> {
    const { logger, lines } = bufferLogger();
    logLines = lines;
    metrics = new Registry();
    const other = { ...gpuMeasurements, measurement1: 'ee'.repeat(48) };
    return new AttestationService({
      keys: h.service,
      sessions: h.metadata,
      recipientCurves: h.keystore.capabilities.recipientCurves,
      policies: await AppraisalPolicies.load({
        defaultPolicy: { text: simPolicy([M], nvidiaSection(gpuMeasurements)) },
        tenants: { nogpu: { text: simPolicy([M]) }, othergpu: { text: simPolicy([M], nvidiaSection(other)) }, othercpu: { text: simPolicy(['b2'.repeat(48)], nvidiaSection(gpuMeasurements)) } },
      }),
      signer,
      audit,
      metrics,
      logger,
      deviceRoots: gpuRoots,
      ...overrides,
    });
  }

  beforeEach(async () => {
    h = await backend.open();
    audit = new InMemoryAuditSinkTestDouble();
    signer = await EarSigner.inMemory();
    svc = await service();
  });
  afterEach(async () => h.close());

  /** A challenge answered with sim CPU evidence; the GPU nonce is SHA-256 of the runtime data. */
  async function present(tenant = 'acme') {
    const c = await svc.challenge(tenant);
    const tee = generateTeeKeyPair();
    const runtimeData = buildRuntimeData(fromBase64Url(c.nonce), tee.recipient);
    const evidence = await sim.collect(await runtimeDigest('sim', runtimeData));
    const gpuNonce = await runtimeDigest('nvidia', runtimeData);
    return { c, tee, runtimeData, evidence, gpuNonce, run: (devices?: DeviceEvidenceInput[]) => svc.attest({ session: c.session, evidence, runtimeData, platform: 'sim', ...(devices ? { devices } : {}) }) };
  }

  /** The refusal's code and detail; its text is kept for the evidence scan. */
  async function refusal(p: Promise<unknown>): Promise<{ code: string; detail: Record<string, unknown> }> {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(CustodyError);
      const err = e as CustodyError;
      errorTexts.push(err.message, JSON.stringify(err.toJSON()));
      return { code: err.code, detail: { ...err.detail } };
    }
    throw new Error('the attestation was not refused');
  }

  function eventOf(session: string) {
    const events = audit.events.filter((e) => e.action === 'attest.appraise' && e.detail?.session === session);
    expect(events).toHaveLength(1);
    return events[0]!;
  }

  it('affirms CPU + GPU as one EAR: cpu0 holds the TEE key, gpu0 is bound to the runtime data digest', async () => {
    expect((await svc.challenge('acme')).devicePlatforms).toEqual(['nvidia']);
    const p = await present();
    expect(p.gpuNonce).toHaveLength(32);
    const gpu = await gpuEvidence(p.gpuNonce);
    const r = await p.run([gpu]);
    expect(r).toMatchObject({ status: 'affirming', platform: 'sim' });

    const v = await verifyEar(r.ear, { jwks: svc.jwks, now: new Date(), nonce: fromBase64Url(p.c.nonce), issuer: EAR_ISSUER });
    expect(Object.keys(v.ear.submods)).toEqual(['cpu0', 'gpu0']);
    const { cpu0, gpu0 } = v.ear.submods;
    expect(cpu0!['ear.status']).toBe('affirming');
    expect(gpu0!['ear.status']).toBe('affirming');
    expect(cpu0!['ear.veraison.key-attestation']?.akpub).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(gpu0!['ear.veraison.key-attestation']).toBeUndefined();
    expect(cpu0!['ear.veraison.annotated-evidence']).toMatchObject({ platform: 'sim', measurements: { measurement: M } });
    expect(gpu0!['ear.veraison.annotated-evidence']).toMatchObject({ platform: 'nvidia', simulated: false, reportData: toHex(p.gpuNonce), nonce: toHex(p.gpuNonce), measurements: gpuMeasurements });
    expect(gpu0!['ear.trustworthiness-vector']).toMatchObject({ hardware: 2, executables: 2 });

    const event = eventOf(p.c.session);
    expect(event).toMatchObject({ verdict: 'allow', detail: { platform: 'sim', devices: 1, measurement: M, status: 'affirming', evidenceDigest: `sha256:${toHex(sha256(p.evidence))}` } });
    expect(event.detail!.devicesEvidenceDigest).toBe(`sha256:${toHex(sha256(sha256(gpu.evidence)))}`);
    expect(() => toCustodyEvent(event)).not.toThrow();
    expect(await metrics.metrics()).toContain('custody_broker_attestations_total{platform="sim",outcome="allow"} 1');
  });

  it(`takes up to ${MAX_DEVICES} GPUs (gpu0..gpu${MAX_DEVICES - 1}), and their audit record stays within the ledger's limits`, async () => {
    const p = await present();
    const gpus = await Promise.all(Array.from({ length: MAX_DEVICES }, (_, i) => gpuEvidence(p.gpuNonce, i)));
    const r = await p.run(gpus);
    const v = await verifyEar(r.ear, { jwks: svc.jwks, now: new Date(), nonce: fromBase64Url(p.c.nonce), issuer: EAR_ISSUER });
    expect(Object.keys(v.ear.submods)).toEqual(['cpu0', ...gpus.map((_, i) => `gpu${i}`)]);
    expect(Object.values(v.ear.submods).every((s) => s['ear.status'] === 'affirming')).toBe(true);
    const event = eventOf(p.c.session);
    expect(event.detail).toMatchObject({ devices: MAX_DEVICES, devicesEvidenceDigest: `sha256:${toHex(sha256(Buffer.concat(gpus.map((g) => sha256(g.evidence)))))}` });
    expect(() => toCustodyEvent(event)).not.toThrow();
  });

  it('the verified-EAR cache is bounded by bytes as well as entries: GPU EARs are large; an EAR it dropped still releases (verified afresh)', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    // Room for about two EARs with one GPU each (some 14 KiB apiece).
    svc = await service({ verifiedEarCacheBytes: 32 * 1024 });
    const sessions: { session: string; ear: string }[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await present();
      const r = await p.run([await gpuEvidence(p.gpuNonce)]);
      expect(r.ear.length).toBeGreaterThan(10 * 1024);
      sessions.push({ session: p.c.session, ear: r.ear });
      const cache = svc.verifiedEarCache;
      expect(cache.bytes).toBeLessThanOrEqual(32 * 1024);
      expect(cache.entries).toBeLessThanOrEqual(2);
    }
    // The first EAR was dropped from the cache long ago: its release verifies it again.
    const released = await svc.release({ name: 'dk', session: sessions[0]!.session, ear: sessions[0]!.ear });
    expect(released.wrappedKey.length).toBeGreaterThan(32);
    expect(svc.verifiedEarCache.bytes).toBeLessThanOrEqual(32 * 1024);
  });

  it('keeps the single-device EAR and audit record when no devices are given', async () => {
    const p = await present();
    const r = await p.run();
    const v = await verifyEar(r.ear, { jwks: svc.jwks, now: new Date(), nonce: fromBase64Url(p.c.nonce), issuer: EAR_ISSUER });
    expect(Object.keys(v.ear.submods)).toEqual(['cpu0']);
    expect(Object.keys(eventOf(p.c.session).detail!).sort()).toEqual(['earDigest', 'evidenceDigest', 'measurement', 'platform', 'policy', 'policyDigest', 'recipientDigest', 'session', 'status']);
  });

  it('refuses GPU evidence for another nonce (ERR_EVIDENCE_NONCE) naming the device, and the nonce stays spent', async () => {
    const p = await present();
    const good = await gpuEvidence(p.gpuNonce);
    const stale = await gpuEvidence(sha256(new TextEncoder().encode('another runtime data')), 1);
    expect(await refusal(p.run([good, stale]))).toMatchObject({ code: 'ERR_EVIDENCE_NONCE', detail: { submod: 'gpu1', step: 'nonce' } });
    const event = eventOf(p.c.session);
    expect(event).toMatchObject({ verdict: 'deny', reason: 'ERR_EVIDENCE_NONCE', detail: { devices: 2, submod: 'gpu1', platform: 'sim' } });
    expect(() => toCustodyEvent(event)).not.toThrow();
    expect(await metrics.metrics()).toContain('custody_broker_attestations_total{platform="sim",outcome="ERR_EVIDENCE_NONCE"} 1');
    // Single use: the same session with good evidence is refused now.
    expect(await refusal(p.run([good]))).toMatchObject({ code: 'ERR_SESSION_NONCE_USED' });
  });

  it('refuses a flipped signature byte (ERR_EVIDENCE_SIGNATURE)', async () => {
    const p = await present();
    const gpu = await gpuEvidence(p.gpuNonce);
    expect(await refusal(p.run([{ platform: 'nvidia', evidence: flipSignatureByte(gpu.evidence) }]))).toMatchObject({ code: 'ERR_EVIDENCE_SIGNATURE', detail: { submod: 'gpu0', step: 'signature' } });
    expect(await refusal(p.run([gpu]))).toMatchObject({ code: 'ERR_SESSION_NONCE_USED' });
  });

  it('checks GPU evidence against the device roots only: the pinned NVIDIA root refuses the test root (ERR_CERT_CHAIN), even when the CPU roots hold it', async () => {
    const simKey = fromBase64Url((JSON.parse(new TextDecoder().decode(await sim.collect(new Uint8Array(64)))) as { publicKey: string }).publicKey);
    expect(simKey).toHaveLength(32);
    svc = await service({ deviceRoots: undefined, roots: [simKey, ...gpuRoots] });
    const p = await present();
    expect(await refusal(p.run([await gpuEvidence(p.gpuNonce)]))).toMatchObject({ code: 'ERR_CERT_CHAIN', detail: { submod: 'gpu0', step: 'chain' } });
    // The CPU roots did apply to the CPU evidence: the same service affirms it alone.
    expect(await (await present()).run()).toMatchObject({ status: 'affirming' });
  });

  it('denies a GPU the policy has no nvidia section for (ERR_POLICY_PLATFORM on gpu0)', async () => {
    const p = await present('nogpu');
    expect(await refusal(p.run([await gpuEvidence(p.gpuNonce)]))).toMatchObject({ code: 'ERR_POLICY_PLATFORM', detail: { submod: 'gpu0', rule: 'platform-known', appraisal: 'contraindicated' } });
    expect(eventOf(p.c.session)).toMatchObject({ verdict: 'deny', reason: 'ERR_POLICY_PLATFORM', detail: { submod: 'gpu0', status: 'contraindicated' } });
  });

  it('denies a GPU whose measurement differs from the policy (ERR_EVIDENCE_MEASUREMENT on gpu0)', async () => {
    const p = await present('othergpu');
    expect(await refusal(p.run([await gpuEvidence(p.gpuNonce)]))).toMatchObject({ code: 'ERR_EVIDENCE_MEASUREMENT', detail: { submod: 'gpu0', rule: 'executables' } });
  });

  it(`refuses more than ${MAX_DEVICES} devices, an empty list, an unknown device platform and CPU evidence labelled nvidia`, async () => {
    let p = await present();
    const gpu = await gpuEvidence(p.gpuNonce);
    expect(await refusal(p.run(Array.from({ length: MAX_DEVICES + 1 }, () => gpu)))).toMatchObject({ code: 'ERR_INPUT_TOO_LARGE', detail: { devices: MAX_DEVICES + 1 } });
    expect(await refusal(p.run([gpu]))).toMatchObject({ code: 'ERR_SESSION_NONCE_USED' });
    p = await present();
    expect(await refusal(p.run([]))).toMatchObject({ code: 'ERR_INPUT_MALFORMED' });
    p = await present();
    expect(await refusal(p.run([{ platform: 'sev-snp' as 'nvidia', evidence: gpu.evidence }]))).toMatchObject({ code: 'ERR_INPUT_UNSUPPORTED', detail: { platform: 'sev-snp' } });
    p = await present();
    const simAsGpu = await sim.collect(await runtimeDigest('sim', p.runtimeData));
    expect(await refusal(p.run([{ platform: 'nvidia', evidence: simAsGpu }]))).toMatchObject({ code: 'ERR_INPUT_UNSUPPORTED', detail: { submod: 'gpu0', step: 'parse' } });
  });

  it('refuses CPU evidence that fails before looking at the devices', async () => {
    const p = await present();
    const c2 = await svc.challenge('acme');
    // Evidence of another session's runtime data.
    expect(await refusal(svc.attest({ session: c2.session, evidence: p.evidence, runtimeData: p.runtimeData, platform: 'sim', devices: [await gpuEvidence(p.gpuNonce)] }))).toMatchObject({ code: 'ERR_EVIDENCE_NONCE' });
    expect(eventOf(c2.session).detail).not.toHaveProperty('submod');
  });

  it('checks the binding again on the device claims (ERR_EVIDENCE_BINDING), whatever the verifier says', async () => {
    // A verifier that checks the nonce but reports another request nonce in its claims.
    const lying: EvidenceVerification = {
      detect: (e) => defaultRegistry.detect(e),
      async verify(input): Promise<VerificationResult> {
        const r = await defaultRegistry.verify(input);
        if (input.platform === 'nvidia' && r.claims) r.claims = { ...r.claims, reportData: '00'.repeat(32) };
        return r;
      },
    };
    svc = await service({ verifier: lying });
    const p = await present();
    expect(await refusal(p.run([await gpuEvidence(p.gpuNonce)]))).toMatchObject({ code: 'ERR_EVIDENCE_BINDING', detail: { submod: 'gpu0' } });
    // And one that labels a device's verified claims as another platform's.
    const relabelled: EvidenceVerification = {
      detect: (e) => defaultRegistry.detect(e),
      async verify(input): Promise<VerificationResult> {
        const r = await defaultRegistry.verify(input);
        if (input.platform === 'nvidia' && r.claims) return { ...r, platform: 'sim', claims: { ...r.claims, platform: 'sim' } };
        return r;
      },
    };
    svc = await service({ verifier: relabelled });
    const q = await present();
    expect(await refusal(q.run([await gpuEvidence(q.gpuNonce)]))).toMatchObject({ code: 'ERR_EVIDENCE_BINDING', detail: { submod: 'gpu0' } });
  });

  it('puts no evidence bytes in logs, audit events or errors', async () => {
    const p = await present();
    const gpu = await gpuEvidence(p.gpuNonce);
    await p.run([gpu]);
    const q = await present();
    await refusal(q.run([{ platform: 'nvidia', evidence: flipSignatureByte((await gpuEvidence(q.gpuNonce)).evidence) }]));
    const s = await present('othergpu');
    await refusal(s.run([await gpuEvidence(s.gpuNonce)]));

    const report = fromHex((JSON.parse(new TextDecoder().decode(gpu.evidence)) as { report: string }).report);
    const pieces: Uint8Array[] = [report.subarray(report.length - 96), report.subarray(100, 148), gpu.evidence.subarray(0, 48), gpu.evidence.subarray(gpu.evidence.length - 96)];
    const needles = pieces.flatMap((b) => [toHex(b), toHex(b).toUpperCase(), toBase64(b).replace(/=+$/, '')]);
    // GPU measurements are evidence contents too: none is logged or audited (all-zero ones would match anything zeroed).
    needles.push(...Object.values(gpuMeasurements).filter((m) => new Set(m).size > 8));
    expect(needles.length).toBeGreaterThan(pieces.length * 3);
    const haystack = [...logLines, ...audit.events.map((e) => JSON.stringify(e)), ...errorTexts, await metrics.metrics()].join('\n');
    expect(logLines.length).toBeGreaterThan(0);
    for (const n of needles) expect(haystack.includes(n), n.slice(0, 16)).toBe(false);
  });

  /** defaultRegistry, counting the device (nvidia) verifications and the most of them in flight at once. */
  function countingVerifier() {
    const count = { devices: 0, inFlight: 0, maxInFlight: 0 };
    const verifier: EvidenceVerification = {
      detect: (e) => defaultRegistry.detect(e),
      async verify(input): Promise<VerificationResult> {
        if (input.platform !== 'nvidia') return defaultRegistry.verify(input);
        count.devices++;
        count.maxInFlight = Math.max(count.maxInFlight, ++count.inFlight);
        try {
          // A turn of the event loop: a caller that starts the next device before this one ends shows here.
          await new Promise((resolve) => setImmediate(resolve));
          return await defaultRegistry.verify(input);
        } finally {
          count.inFlight--;
        }
      },
    };
    return { count, verifier };
  }

  describe('one GPU is one device (its attestation key), however often it is presented', () => {
    it('refuses the same evidence file as gpu0 and gpu1 (ERR_EVIDENCE_DEVICE_REPEATED naming gpu1), audited, and the nonce stays spent', async () => {
      const p = await present();
      const gpu = await gpuEvidence(p.gpuNonce);
      expect(await refusal(p.run([gpu, gpu]))).toMatchObject({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { submod: 'gpu1', sameAs: 'gpu0' } });
      const event = eventOf(p.c.session);
      expect(event).toMatchObject({ verdict: 'deny', reason: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { devices: 2, submod: 'gpu1', platform: 'sim' } });
      expect(() => toCustodyEvent(event)).not.toThrow();
      expect(await metrics.metrics()).toContain('custody_broker_attestations_total{platform="sim",outcome="ERR_EVIDENCE_DEVICE_REPEATED"} 1');
      expect(await refusal(p.run([gpu]))).toMatchObject({ code: 'ERR_SESSION_NONCE_USED' });
    });

    it('refuses two separately signed reports of one GPU (other bytes, one attestation key)', async () => {
      const p = await present();
      const a = await gpuEvidence(p.gpuNonce, 3);
      const b = await gpuEvidence(p.gpuNonce, 3); // ECDSA signs afresh: other bytes, the same GPU
      expect(Buffer.from(a.evidence).equals(Buffer.from(b.evidence))).toBe(false);
      expect(await refusal(p.run([a, b]))).toMatchObject({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { submod: 'gpu1', sameAs: 'gpu0' } });
    });

    it(`refuses ${MAX_DEVICES} copies of one GPU at the first repeat (gpu1), verifying no device after it`, async () => {
      const { count, verifier } = countingVerifier();
      svc = await service({ verifier });
      const p = await present();
      const gpu = await gpuEvidence(p.gpuNonce);
      expect(await refusal(p.run(Array.from({ length: MAX_DEVICES }, () => gpu)))).toMatchObject({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { submod: 'gpu1' } });
      expect(count.devices).toBe(2);
    });

    it('names the later device when the repeat is not adjacent (gpu0, gpu1, gpu0 again: gpu2 repeats gpu0)', async () => {
      const p = await present();
      const [g0, g1, g0again] = await Promise.all([gpuEvidence(p.gpuNonce, 0), gpuEvidence(p.gpuNonce, 1), gpuEvidence(p.gpuNonce, 0)]);
      expect(await refusal(p.run([g0, g1, g0again]))).toMatchObject({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { submod: 'gpu2', sameAs: 'gpu0' } });
    });

    it('refuses device claims that carry no attestation key identity (ERR_EVIDENCE_BINDING): devices that cannot be told apart are not counted', async () => {
      const anonymous: EvidenceVerification = {
        detect: (e) => defaultRegistry.detect(e),
        async verify(input): Promise<VerificationResult> {
          const r = await defaultRegistry.verify(input);
          if (input.platform === 'nvidia' && r.claims) {
            const { attestationKeySha256: _dropped, ...rest } = r.claims.platformClaims;
            r.claims = { ...r.claims, platformClaims: rest };
          }
          return r;
        },
      };
      svc = await service({ verifier: anonymous });
      const p = await present();
      expect(await refusal(p.run([await gpuEvidence(p.gpuNonce)]))).toMatchObject({ code: 'ERR_EVIDENCE_BINDING', detail: { submod: 'gpu0' } });
    });
  });

  describe('work before a refusal', () => {
    it('verifies no device for CPU evidence the policy refuses (default-deny: ERR_EVIDENCE_SIMULATED on cpu0)', async () => {
      const { count, verifier } = countingVerifier();
      svc = await service({ verifier, policies: await AppraisalPolicies.load({}) });
      const p = await present();
      const gpus = await Promise.all(Array.from({ length: MAX_DEVICES }, (_, i) => gpuEvidence(p.gpuNonce, i)));
      expect(await refusal(p.run(gpus))).toMatchObject({ code: 'ERR_EVIDENCE_SIMULATED', detail: { submod: 'cpu0' } });
      expect(count.devices).toBe(0);
      expect(eventOf(p.c.session)).toMatchObject({ verdict: 'deny', reason: 'ERR_EVIDENCE_SIMULATED', detail: { devices: MAX_DEVICES, submod: 'cpu0', status: 'contraindicated' } });
    });

    it('verifies no device for a CPU measurement the policy does not list (ERR_EVIDENCE_MEASUREMENT on cpu0), and the code is that of the CPU alone', async () => {
      const { count, verifier } = countingVerifier();
      svc = await service({ verifier });
      const p = await present('othercpu');
      expect(await refusal(p.run([await gpuEvidence(p.gpuNonce)]))).toMatchObject({ code: 'ERR_EVIDENCE_MEASUREMENT', detail: { submod: 'cpu0', appraisal: 'contraindicated' } });
      expect(count.devices).toBe(0);
      // Without devices: the same refusal.
      const q = await present('othercpu');
      expect(await refusal(q.run())).toMatchObject({ code: 'ERR_EVIDENCE_MEASUREMENT', detail: { submod: 'cpu0' } });
    });

    it('verifies the devices one at a time, in request order', async () => {
      const { count, verifier } = countingVerifier();
      svc = await service({ verifier });
      const p = await present();
      const gpus = await Promise.all(Array.from({ length: MAX_DEVICES }, (_, i) => gpuEvidence(p.gpuNonce, i)));
      expect(await p.run(gpus)).toMatchObject({ status: 'affirming' });
      expect(count).toMatchObject({ devices: MAX_DEVICES, maxInFlight: 1 });
    });

    for (const bad of [0, 3, MAX_DEVICES - 1]) {
      it(`stops at the first failing device (gpu${bad} of ${MAX_DEVICES}: ${bad + 1} verified)`, async () => {
        const { count, verifier } = countingVerifier();
        svc = await service({ verifier });
        const p = await present();
        const gpus = await Promise.all(Array.from({ length: MAX_DEVICES }, (_, i) => gpuEvidence(p.gpuNonce, i)));
        gpus[bad] = { platform: 'nvidia', evidence: flipSignatureByte(gpus[bad]!.evidence) };
        // A later device failing too does not change which one is named.
        if (bad + 1 < MAX_DEVICES) gpus[bad + 1] = { platform: 'nvidia', evidence: (await reissuedNvidiaEvidence(new Uint8Array(32), undefined, bad + 1)).evidence };
        expect(await refusal(p.run(gpus))).toMatchObject({ code: 'ERR_EVIDENCE_SIGNATURE', detail: { submod: `gpu${bad}`, step: 'signature' } });
        expect(count.devices).toBe(bad + 1);
      });
    }
  });
});
