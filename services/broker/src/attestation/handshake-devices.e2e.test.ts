// Composite CPU + GPU attestation over HTTP on loopback: a broker started with startBroker and
// `deviceRoots` (the test root of the re-issued NVIDIA evidence), `devices` in the JSON body of
// POST /v1/attest, the EAR presented for a release, and the route's refusals of malformed
// device lists before the session's nonce is touched.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64Url, toBase64, toHex } from '@custody/core';
import { verifyEar } from '@custody/policy';
import { SimAttester } from '@custody/attester-service';
import { nvidiaVerifier } from '../../../../packages/attest/src/nvidia/verifier.js';
import { reissuedNvidiaEvidence } from '../../../../packages/attest/src/nvidia/testing/reissue.js';
import { codeOf, simPolicy, startHandshakeBroker, type HandshakeBroker } from '../testing/handshake.js';
import { EAR_ISSUER, MAX_DEVICES, type AttestResponse, type ChallengeResponse } from './handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { fetchKey, generateTeeKeyPair, openReleasedKey } from './workload-client.js';

const M = 'a1'.repeat(48);
const sim = new SimAttester({ measurements: { measurement: M } });
const RELEASE_POLICY = `status == 'affirming' && platform == 'sim' && claims.measurements.measurement == '${M}' && 'gpu0' in ear.submods && ear.submods.gpu0['ear.status'] == 'affirming'`;

describe('composite CPU + GPU attestation over HTTP', () => {
  let b: HandshakeBroker;
  const material = randomBytes(32);

  beforeAll(async () => {
    const probe = await reissuedNvidiaEvidence(new Uint8Array(32));
    const measurements = (await nvidiaVerifier.verify({ evidence: probe.evidence, roots: probe.roots, now: new Date() })).claims!.measurements;
    const nvidia = `  nvidia:\n    indices:\n${Object.entries(measurements).map(([n, v]) => `      ${n.replace('measurement', '')}: ${v}`).join('\n')}\n`;
    b = await startHandshakeBroker({ policy: simPolicy([M], nvidia), attestation: { deviceRoots: probe.roots } });
    await b.admin.importKey({ name: 'gpu-dk', type: 'aes-256', material, releasePolicy: RELEASE_POLICY });
  });
  afterAll(async () => b?.close());

  async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await fetch(`${b.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  /** A challenge over HTTP, a TEE key, sim CPU evidence, and GPU evidence for SHA-256(runtime data). */
  async function prepare(gpus = 1) {
    const { json } = await post('/v1/attest/challenge', { tenant: 'acme' });
    const challenge = json as unknown as ChallengeResponse;
    const tee = generateTeeKeyPair(challenge.teeKeyCurves[0]);
    const runtimeData = buildRuntimeData(fromBase64Url(challenge.nonce), tee.recipient);
    const evidence = await sim.collect(await runtimeDigest('sim', runtimeData));
    const gpuNonce = await runtimeDigest('nvidia', runtimeData);
    // Test GPUs 0, 1, ...: each its own attestation key (one GPU twice is refused).
    const devices = await Promise.all(Array.from({ length: gpus }, async (_, i) => ({ platform: 'nvidia', evidence: toBase64((await reissuedNvidiaEvidence(gpuNonce, undefined, i)).evidence) })));
    return { challenge, tee, runtimeData, gpuNonce, body: { session: challenge.session, evidence: toBase64(evidence), runtimeData, platform: 'sim', devices } };
  }

  it('announces device platforms, attests CPU + GPU from a JSON body, and releases a key to the composite EAR', async () => {
    const p = await prepare();
    expect(p.challenge.devicePlatforms).toEqual(['nvidia']);
    expect(p.challenge.platforms).not.toContain('nvidia');
    const res = await post('/v1/attest', p.body);
    expect(res.status).toBe(200);
    const attested = res.json as unknown as AttestResponse;
    expect(attested).toMatchObject({ status: 'affirming', platform: 'sim' });

    const jwks = (await (await fetch(`${b.url}/.well-known/jwks.json`)).json()) as { keys: Array<Record<string, unknown>> };
    const v = await verifyEar(attested.ear, { jwks, now: new Date(), nonce: fromBase64Url(p.challenge.nonce), issuer: EAR_ISSUER });
    expect(Object.keys(v.ear.submods)).toEqual(['cpu0', 'gpu0']);
    expect(v.ear.submods.gpu0!['ear.veraison.annotated-evidence']).toMatchObject({ platform: 'nvidia', reportData: toHex(p.gpuNonce) });
    expect(v.ear.submods.cpu0!['ear.veraison.key-attestation']).toBeDefined();

    const released = await b.workload.release('gpu-dk', { session: p.challenge.session, ear: attested.ear });
    const got = await openReleasedKey(p.tee, released, { tenant: 'acme', name: 'gpu-dk', session: p.challenge.session, ear: attested.ear });
    expect(Buffer.from(got).equals(material)).toBe(true);

    const events = b.ledger.events.filter((e) => e.detail?.session === p.challenge.session);
    expect(events.map((e) => [e.action, e.verdict])).toEqual([
      ['attest.appraise', 'allow'],
      ['key.release', 'allow'],
    ]);
    expect(events[0]!.detail).toMatchObject({ devices: 1, devicesEvidenceDigest: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) as string, measurement: M });
  });

  it(`releases to an EAR covering ${MAX_DEVICES} GPUs (the EAR travels in the Authorization header)`, async () => {
    const p = await prepare(MAX_DEVICES);
    const res = await post('/v1/attest', p.body);
    expect(res.status).toBe(200);
    const attested = res.json as unknown as AttestResponse;
    const released = await b.workload.release('gpu-dk', { session: p.challenge.session, ear: attested.ear });
    const got = await openReleasedKey(p.tee, released, { tenant: 'acme', name: 'gpu-dk', session: p.challenge.session, ear: attested.ear });
    expect(Buffer.from(got).equals(material)).toBe(true);
  });

  it('refuses a GPU bound to other runtime data with 403 ERR_EVIDENCE_NONCE naming gpu0', async () => {
    const p = await prepare();
    const other = await reissuedNvidiaEvidence(new Uint8Array(32).fill(9));
    const res = await post('/v1/attest', { ...p.body, devices: [{ platform: 'nvidia', evidence: toBase64(other.evidence) }] });
    expect([res.status, res.json.code, (res.json.facts as Record<string, unknown> | undefined)?.submod]).toEqual([403, 'ERR_EVIDENCE_NONCE', 'gpu0']);
    // The nonce is spent.
    const again = await post('/v1/attest', p.body);
    expect([again.status, again.json.code]).toEqual([403, 'ERR_SESSION_NONCE_USED']);
  });

  it('refuses one GPU presented twice with 403 ERR_EVIDENCE_DEVICE_REPEATED naming gpu1', async () => {
    const p = await prepare();
    const res = await post('/v1/attest', { ...p.body, devices: [p.body.devices[0]!, p.body.devices[0]!] });
    expect([res.status, res.json.code, res.json.facts]).toEqual([403, 'ERR_EVIDENCE_DEVICE_REPEATED', { submod: 'gpu1', sameAs: 'gpu0' }]);
  });

  it(`refuses malformed device lists at the route (400 ERR_INPUT_MALFORMED) without spending the nonce`, async () => {
    const p = await prepare();
    const device = p.body.devices[0]!;
    const bad: unknown[] = [
      Array.from({ length: MAX_DEVICES + 1 }, () => device),
      [],
      [{ ...device, platform: 'amd-gpu' }],
      [{ ...device, platform: 'sim' }],
      [{ ...device, extra: true }],
      [{ platform: 'nvidia' }],
      [{ ...device, evidence: '' }],
      [{ ...device, evidence: 'A'.repeat(256 * 1024 + 4) }],
      [{ ...device, certs: [] }],
      [{ ...device, evidence: '!!not base64!!' }],
      { nvidia: device },
    ];
    for (const devices of bad) {
      const res = await post('/v1/attest', { ...p.body, devices });
      expect([res.status, res.json.code], JSON.stringify(devices).slice(0, 80)).toEqual([400, 'ERR_INPUT_MALFORMED']);
    }
    // None of them reached the session: the nonce still answers.
    expect((await post('/v1/attest', p.body)).status).toBe(200);
  });

  it('logs no evidence bytes', async () => {
    const p = await prepare();
    await post('/v1/attest', p.body);
    const evidence = Buffer.from(p.body.devices[0]!.evidence, 'base64');
    const report = Buffer.from((JSON.parse(evidence.toString('utf8')) as { report: string }).report, 'hex');
    const signature = report.subarray(report.length - 96);
    const needles = [p.body.devices[0]!.evidence.slice(0, 64), signature.toString('hex'), signature.toString('base64').slice(0, 64)];
    const haystack = [...b.logLines, ...b.ledger.events.map((e) => JSON.stringify(e))].join('\n');
    expect(b.logLines.length).toBeGreaterThan(0);
    for (const n of needles) expect(haystack.includes(n), n.slice(0, 16)).toBe(false);
  });

  it('fetchKey carries device evidence from device attesters', async () => {
    const gpu = (index: number) => ({ platform: 'nvidia' as const, collect: async (nonce: Uint8Array) => (await reissuedNvidiaEvidence(nonce, undefined, index)).evidence });
    const got = await fetchKey({ broker: b.url, tenant: 'acme', name: 'gpu-dk', attester: sim, devices: [gpu(0), gpu(1)] });
    expect(Buffer.from(got.material).equals(material)).toBe(true);
    const event = b.ledger.events.find((e) => e.action === 'attest.appraise' && e.detail?.session === got.session);
    expect(event?.detail).toMatchObject({ devices: 2 });
    // Without devices the key policy (it asks for gpu0) refuses.
    expect(await codeOf(fetchKey({ broker: b.url, tenant: 'acme', name: 'gpu-dk', attester: sim }))).toBe('ERR_POLICY_DENIED');
    // One GPU given twice is one GPU: the attestation is refused.
    expect(await codeOf(fetchKey({ broker: b.url, tenant: 'acme', name: 'gpu-dk', attester: sim, devices: [gpu(0), gpu(0)] }))).toBe('ERR_EVIDENCE_DEVICE_REPEATED');
  });
});
