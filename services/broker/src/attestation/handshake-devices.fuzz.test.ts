// Fuzzing the device part of the handshake: random `devices` members of POST /v1/attest never
// give a 5xx or a non-problem answer, and random or mutated GPU evidence beside good CPU evidence
// is always refused with a stable code (never an exception of another kind, never an EAR).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, fromBase64Url, fromHex, toBase64, toHex } from '@custody/core';
import { SimAttester } from '@custody/attester-service';
import { nvidiaVerifier } from '../../../../packages/attest/src/nvidia/verifier.js';
import { reissuedNvidiaEvidence } from '../../../../packages/attest/src/nvidia/testing/reissue.js';
import { createBrokerApp } from '../http/app.js';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { embeddedBackend, type Harness } from '../testing/harness.js';
import { simPolicy } from '../testing/handshake.js';
import { AppraisalPolicies } from './appraisal-policies.js';
import { EarSigner } from './ear-signer.js';
import { AttestationService, type DeviceEvidenceInput } from './handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { generateTeeKeyPair } from './workload-client.js';

const M = 'a1'.repeat(48);
const sim = new SimAttester({ measurements: { measurement: M } });
const STABLE_CODE = /^ERR_[A-Z0-9_]{1,60}$/;

describe('device evidence under fuzzing', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let svc: AttestationService;
  let roots: Uint8Array[];

  beforeAll(async () => {
    h = await backend.open();
    const probe = await reissuedNvidiaEvidence(new Uint8Array(32));
    roots = probe.roots;
    const measurements = (await nvidiaVerifier.verify({ evidence: probe.evidence, roots, now: new Date() })).claims!.measurements;
    const nvidia = `  nvidia:\n    indices:\n${Object.entries(measurements).map(([n, v]) => `      ${n.replace('measurement', '')}: ${v}`).join('\n')}\n`;
    svc = new AttestationService({
      keys: h.service,
      sessions: h.metadata,
      recipientCurves: h.keystore.capabilities.recipientCurves,
      // The real report's measurements are accepted: only verification stands in the way.
      policies: await AppraisalPolicies.load({ defaultPolicy: { text: simPolicy([M], nvidia) } }),
      signer: await EarSigner.inMemory(),
      audit: new InMemoryAuditSinkTestDouble(),
      deviceRoots: roots,
    });
  });
  afterAll(async () => h?.close());

  async function present() {
    const c = await svc.challenge('acme');
    const runtimeData = buildRuntimeData(fromBase64Url(c.nonce), generateTeeKeyPair().recipient);
    const evidence = await sim.collect(await runtimeDigest('sim', runtimeData));
    return { c, runtimeData, evidence, gpuNonce: await runtimeDigest('nvidia', runtimeData) };
  }

  async function refusedCode(p: Promise<unknown>): Promise<string> {
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(CustodyError);
      return (e as CustodyError).code;
    }
    return 'resolved';
  }

  it('random devices members of the attest body: never a 5xx, always a problem document', async () => {
    const app = createBrokerApp({ service: h.service, apiKeys: h.metadata, attestation: svc, challengeLimiter: false });
    const p = await present();
    const base = { session: p.c.session, evidence: toBase64(p.evidence), runtimeData: p.runtimeData, platform: 'sim' };
    const device = fc.record(
      {
        platform: fc.constantFrom('nvidia', 'sim', 'NVIDIA', ''),
        evidence: fc.oneof(fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 200 }).map((b) => toBase64(b))),
        certs: fc.array(fc.oneof(fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 60 }).map((b) => toBase64(b))), { maxLength: 3 }),
        extra: fc.json({ maxDepth: 1 }),
      },
      { requiredKeys: [] },
    );
    const devices = fc.oneof(fc.json({ maxDepth: 2 }).map((t) => JSON.parse(t) as unknown), fc.array(device, { maxLength: 10 }));
    await fc.assert(
      fc.asyncProperty(devices, async (d) => {
        const res = await app.request('/v1/attest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ...base, devices: d }) });
        expect(res.status).toBeGreaterThanOrEqual(400);
        expect(res.status).toBeLessThan(500);
        expect(res.headers.get('content-type')).toBe('application/problem+json');
        expect((await res.json()) as { code: string }).toMatchObject({ code: expect.stringMatching(STABLE_CODE) as string });
      }),
      { numRuns: 150 },
    );
  });

  it('random bytes as GPU evidence are refused with a stable code', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 400 }), async (bytes) => {
        const p = await present();
        const devices: DeviceEvidenceInput[] = [{ platform: 'nvidia', evidence: bytes }];
        expect(await refusedCode(svc.attest({ session: p.c.session, evidence: p.evidence, runtimeData: p.runtimeData, platform: 'sim', devices }))).toMatch(STABLE_CODE);
      }),
      { numRuns: 60 },
    );
  });

  it('mutated real GPU reports (every byte is signed or the signature) are refused with a stable code', async () => {
    const p0 = await present();
    const good: DeviceEvidenceInput = { platform: 'nvidia', evidence: (await reissuedNvidiaEvidence(p0.gpuNonce)).evidence };
    // The unmutated report is affirmed: the refusals below are the mutations'.
    await expect(svc.attest({ session: p0.c.session, evidence: p0.evidence, runtimeData: p0.runtimeData, platform: 'sim', devices: [good] })).resolves.toMatchObject({ status: 'affirming' });
    const length = (JSON.parse(new TextDecoder().decode(good.evidence)) as { report: string }).report.length / 2;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat({ max: length - 1 }), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat({ max: 8 }), async (flips, cut) => {
        const p = await present();
        const fresh = JSON.parse(new TextDecoder().decode((await reissuedNvidiaEvidence(p.gpuNonce)).evidence)) as { report: string; certChain: string };
        const report = fromHex(fresh.report);
        for (const [at, x] of flips) report[at]! ^= x;
        const mutated = cut > 0 && cut < 4 ? report.subarray(0, report.length - cut) : report;
        const evidence = new TextEncoder().encode(JSON.stringify({ format: 'custody-nvidia-gpu/v1', report: toHex(mutated), certChain: fresh.certChain }));
        const code = await refusedCode(svc.attest({ session: p.c.session, evidence: p.evidence, runtimeData: p.runtimeData, platform: 'sim', devices: [{ platform: 'nvidia', evidence }] }));
        expect(code).toMatch(STABLE_CODE);
      }),
      { numRuns: 60 },
    );
  });
});
