// Composite CPU + GPU attestation end to end on loopback: a gateway with SIMULATED CPU evidence
// and one GPU (the FixtureGpuAttester TEST DOUBLE: the real Hopper report re-signed for each
// nonce under a test root), the in-process appraisal broker with a policy that accepts the real
// GPU measurements, and SDK clients that require attested GPUs. Every refusal asserts that the
// model backend saw nothing.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, canonicalize, fromBase64Url, sha256, toBase64Url, toHex, utf8 } from '@custody/core';
import { nvidiaVerifier } from '@custody/attest';
import { CommandGpuAttester, SimAttester, type DeviceAttester } from '@custody/attester-service';
import { FixtureGpuAttester } from '@custody/attester-service/testing';
import { generateEarSigningKey, loadPolicy, verifyEar } from '@custody/policy';
import {
  createConfidentialFetch,
  MAX_BUNDLE_DEVICE_EVIDENCE,
  parseRuntimeData,
  prepareReceipt,
  runtimeDigest,
  signPreparedReceipt,
  verifyReceiptOffline,
  type AttestationBundle,
  type ConfidentialFetchOptions,
  type Receipt,
  type ReceiptBody,
} from '@custody/sdk';
import type { BrokerClient } from './attestation/broker-client.js';
import { LocalAppraisalBroker } from './attestation/local-broker.js';
import { InMemoryLedgerSink } from './ledger/ledger-sink.js';
import { compositePolicyYaml, fixtureGpuMeasurements, fixtureGpuRootSha256, startTestGateway, TEST_MEASUREMENT, type TestGateway } from './testing/index.js';

const chat = JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'TOP-SECRET prompt for the GPU' }] });

async function refusal(p: Promise<unknown>): Promise<CustodyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CustodyError);
  return e as CustodyError;
}

async function bundleOf(gw: TestGateway): Promise<AttestationBundle> {
  const res = await fetch(`${gw.url}/.well-known/custody/attestation`);
  expect(res.status).toBe(200);
  return (await res.json()) as AttestationBundle;
}

let root: Uint8Array;
let gpuMeasurements: Record<string, string>;
let policyYaml: string;

beforeAll(async () => {
  root = await FixtureGpuAttester.testRoot();
  gpuMeasurements = await fixtureGpuMeasurements();
  policyYaml = compositePolicyYaml([TEST_MEASUREMENT], gpuMeasurements, { gpuRootSha256: await fixtureGpuRootSha256() });
});

/** A gateway with one fixture GPU (or `gpus`), appraised by the in-process broker under the composite policy. */
function gpuGateway(gpus: DeviceAttester[], extra: Parameters<typeof startTestGateway>[0] = {}): Promise<TestGateway> {
  return startTestGateway({
    backend: 'upstream',
    brokerPolicyYaml: policyYaml,
    brokerDeviceRoots: [root],
    ...extra,
    gateway: { devices: gpus, deviceRoots: [root], ...extra.gateway },
  });
}

describe('a gateway with a GPU: CPU and GPU evidence over the same runtime data, one composite EAR', () => {
  let gw: TestGateway;
  const gpu = new FixtureGpuAttester();
  beforeAll(async () => {
    gw = await gpuGateway([gpu]);
  });
  afterAll(async () => {
    await gw.close();
  });

  it('publishes the GPU evidence bound to the runtime data, and the EAR appraises it as gpu0', async () => {
    expect(gw.gateway.attestation.state).toBe('attested');
    const b = await bundleOf(gw);
    expect(b.devices).toHaveLength(1);
    expect(b.devices![0]!.platform).toBe('nvidia');
    const nonce = await runtimeDigest('nvidia', b.runtimeData);
    const r = await nvidiaVerifier.verify({ evidence: fromBase64Url(b.devices![0]!.evidence), roots: [root], now: new Date(), nonce });
    expect(r.ok).toBe(true);
    expect(r.claims!.measurements).toEqual(gpuMeasurements);
    // The GPU was asked for exactly this nonce (SHA-256 of the published runtime data).
    expect(gpu.nonces.some((n) => toHex(n) === toHex(nonce))).toBe(true);
    const v = await verifyEar(b.ear!, { jwks: gw.jwks!, now: new Date() });
    expect(Object.keys(v.ear.submods).sort()).toEqual(['cpu0', 'gpu0']);
    expect(v.ear.submods.gpu0!['ear.status']).toBe('affirming');
    expect(v.ear.submods.cpu0!['ear.veraison.key-attestation']).toBeDefined();
    expect(v.ear.submods.gpu0!['ear.veraison.key-attestation']).toBeUndefined();
    expect(gw.gateway.attestation.snapshot!.devices).toEqual([{ name: 'gpu0', platform: 'nvidia', measurements: gpuMeasurements }]);
  });

  it('a client that requires one attested GPU sends the prompt and gets a verified receipt', async () => {
    const before = gw.upstream!.received.length;
    const receipts: Receipt[] = [];
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, minGpus: 1, gpuRoots: [root], onReceipt: (r) => receipts.push(r) });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: chat });
    expect(res.status).toBe(200);
    await cfetch.receiptOf(res);
    expect(receipts).toHaveLength(1);
    expect(receipts[0]!.gateway.earId).toBe(gw.gateway.attestation.snapshot!.earId);
    // The receipt names the EAR, which appraised the CPU and the GPU (an auditor without the JWKS binds the evidence beside it to it).
    expect(receipts[0]!.gateway.attestationDigest).toBe('sha256:' + toHex(await sha256(utf8(gw.gateway.attestation.snapshot!.bundle.ear!))));
    const doc = cfetch.lastVerification!;
    expect(doc.ok).toBe(true);
    expect(doc.devices?.map((d) => d.name)).toEqual(['gpu0']);
    expect(doc.steps.find((s) => s.name === 'devices')).toMatchObject({ ok: true, ran: true });
    expect(gw.upstream!.received.length).toBe(before + 1);
  });

  it('a client that requires two GPUs is refused before sending anything: ERR_SDK_DEVICE_MISSING', async () => {
    const before = gw.upstream!.received.length;
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, minGpus: 2, gpuRoots: [root] });
    const e = await refusal(cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: chat }));
    expect(e.code).toBe('ERR_SDK_DEVICE_MISSING');
    expect(gw.upstream!.received.length).toBe(before);
  });

  it('a challenge bundle carries fresh GPU evidence bound to the fresh runtime data', async () => {
    const published = await bundleOf(gw);
    const clientNonce = globalThis.crypto.getRandomValues(new Uint8Array(32));
    const res = await fetch(`${gw.url}/.well-known/custody/attestation/challenge`, { method: 'POST', body: JSON.stringify({ nonce: Buffer.from(clientNonce).toString('base64url') }) });
    expect(res.status).toBe(200);
    const fresh = (await res.json()) as AttestationBundle;
    expect(parseRuntimeData(fresh.runtimeData).nonce).toEqual(clientNonce);
    expect(fresh.earRuntimeData).toBe(published.runtimeData);
    expect(fresh.devices).toHaveLength(1);
    expect(fresh.devices![0]!.evidence).not.toBe(published.devices![0]!.evidence);
    const gpuNonce = await runtimeDigest('nvidia', fresh.runtimeData);
    expect(toHex(gpu.nonces.at(-1)!)).toBe(toHex(gpuNonce));
    const r = await nvidiaVerifier.verify({ evidence: fromBase64Url(fresh.devices![0]!.evidence), roots: [root], now: new Date(), nonce: gpuNonce });
    expect(r.ok).toBe(true);
    // The published evidence is bound to the published runtime data, not to the fresh one.
    const stale = await nvidiaVerifier.verify({ evidence: fromBase64Url(published.devices![0]!.evidence), roots: [root], now: new Date(), nonce: gpuNonce });
    expect(stale.errors[0]?.code).toBe('ERR_EVIDENCE_NONCE');
    // And the SDK in fresh-nonce mode accepts it with one GPU required.
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, freshNonce: true, minGpus: 1, gpuRoots: [root] });
    const v = await cfetch.verify();
    expect(v.document.ok).toBe(true);
    expect(v.document.devices).toHaveLength(1);
  });

  it('re-attestation collects GPU evidence again for the new runtime data', async () => {
    const before = gw.gateway.attestation.snapshot!;
    const s = await gw.gateway.attestation.reattest();
    expect(s.runtimeData).not.toBe(before.runtimeData);
    expect(toHex(gpu.nonces.at(-1)!)).toBe(toHex(await runtimeDigest('nvidia', s.runtimeData)));
    expect(s.bundle.devices![0]!.evidence).not.toBe(before.bundle.devices![0]!.evidence);
  });
});

describe('fail closed', () => {
  it('a client requiring a GPU is refused by a gateway without GPUs before any prompt reaches the backend', async () => {
    const gw = await startTestGateway({ backend: 'upstream' });
    try {
      expect((await bundleOf(gw)).devices).toBeUndefined();
      const send = (o: Partial<ConfidentialFetchOptions>) =>
        createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, ...o })(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: chat });
      const e = await refusal(send({ minGpus: 1, gpuRoots: [root] }));
      expect(e.code).toBe('ERR_SDK_DEVICE_MISSING');
      expect(gw.upstream!.received).toHaveLength(0);
      // The same gateway serves a client that requires no GPU.
      expect((await send({})).status).toBe(200);
    } finally {
      await gw.close();
    }
  });

  it('a GPU that answers for another nonce: the gateway refuses to serve, publishes nothing, and the backend sees nothing', async () => {
    const liar = new FixtureGpuAttester({ answerNonce: () => new Uint8Array(32).fill(0xee) });
    const gw = await gpuGateway([liar]);
    try {
      expect(liar.nonces.length).toBeGreaterThan(0);
      expect(gw.gateway.attestation.state).toBe('revoked');
      expect(gw.gateway.attestation.snapshot).toBeUndefined();
      expect((await fetch(`${gw.url}/.well-known/custody/attestation`)).status).toBe(503);
      // Nothing was appraised: the gateway's own check stopped the round before the broker.
      expect(gw.ledger.events.filter((e) => e.type === 'attestation.appraised')).toHaveLength(0);
      const e = await refusal(createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true })(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: chat }));
      // The gateway's own check failed with a refusal code (ERR_EVIDENCE_NONCE): it is revoked until a round succeeds.
      expect(e.code).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
      expect(gw.upstream!.received).toHaveLength(0);
      expect(gw.logs.some((l) => l.includes('"code":"ERR_EVIDENCE_NONCE"'))).toBe(true);
    } finally {
      await gw.close();
    }
  });

  it('a GPU whose evidence program fails: no attestation at all, never a CPU-only bundle; once attested, a failing GPU keeps the last composite bundle until it lapses', async () => {
    const broken = new CommandGpuAttester({ argv: [process.execPath, '-e', 'process.exit(1)', '{nonce}'] });
    const gw = await gpuGateway([broken]);
    try {
      expect(gw.gateway.attestation.state).toBe('starting');
      expect((await fetch(`${gw.url}/.well-known/custody/attestation`)).status).toBe(503);
      expect(gw.ledger.events.filter((e) => e.type === 'attestation.appraised')).toHaveLength(0);
      expect(gw.logs.some((l) => l.includes('"code":"ERR_ATTESTER_FAILED"'))).toBe(true);
    } finally {
      await gw.close();
    }
    let failing = false;
    const fixture = new FixtureGpuAttester();
    const flaky: DeviceAttester = { platform: 'nvidia', collect: (n) => (failing ? Promise.reject(new CustodyError('ERR_ATTESTER_FAILED')) : fixture.collect(n)) };
    const gw2 = await gpuGateway([flaky]);
    try {
      const before = await bundleOf(gw2);
      expect(before.devices).toHaveLength(1);
      failing = true;
      await expect(gw2.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_ATTESTER_FAILED', detail: { device: 'gpu0' } });
      const after = await bundleOf(gw2);
      expect(after.runtimeData).toBe(before.runtimeData);
      expect(after.devices).toEqual(before.devices);
      await expect(gw2.gateway.attestation.challenge(new Uint8Array(16).fill(3))).rejects.toMatchObject({ code: 'ERR_ATTESTER_FAILED' });
    } finally {
      await gw2.close();
    }
  });

  it('GPU evidence larger than a bundle carries is not published: the round fails naming the GPU', async () => {
    const fixture = new FixtureGpuAttester();
    // Real, verifying evidence padded past the bound with trailing whitespace (the JSON form allows it).
    const padded: DeviceAttester = { platform: 'nvidia', collect: async (n) => { const e = await fixture.collect(n); const out = new Uint8Array(MAX_BUNDLE_DEVICE_EVIDENCE + 1).fill(0x20); out.set(e); return out; } };
    const gw = await gpuGateway([padded]);
    try {
      expect(gw.gateway.attestation.state).toBe('starting');
      expect((await fetch(`${gw.url}/.well-known/custody/attestation`)).status).toBe(503);
      await expect(gw.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_ATTESTER_FAILED', detail: { device: 'gpu0', size: MAX_BUNDLE_DEVICE_EVIDENCE + 1 } });
    } finally {
      await gw.close();
    }
  });

  it('more than 8 GPUs is a configuration error', async () => {
    const nine = Array.from({ length: 9 }, () => new FixtureGpuAttester());
    await expect(startTestGateway({ broker: false, gateway: { devices: nine, deviceRoots: [root] } })).rejects.toMatchObject({ code: 'ERR_GATEWAY_CONFIG' });
  });

  it('the broker denies the whole attestation when one GPU fails its appraisal, naming the GPU', async () => {
    const wrong = { ...gpuMeasurements, measurement2: 'ab'.repeat(48) };
    const gw = await gpuGateway([new FixtureGpuAttester(), new FixtureGpuAttester()], { brokerPolicyYaml: compositePolicyYaml([TEST_MEASUREMENT], wrong) });
    try {
      expect(gw.gateway.attestation.state).toBe('revoked');
      const denied = gw.ledger.events.find((e) => e.type === 'attestation.appraised') as unknown as { verdict: string; reasons: string[] };
      expect(denied.verdict).toBe('contraindicated');
      expect(denied.reasons).toContain('ERR_EVIDENCE_MEASUREMENT');
      const err = await refusal(gw.gateway.attestation.reattest());
      expect(err.code).toBe('ERR_EVIDENCE_MEASUREMENT');
      expect(err.detail).toMatchObject({ submod: 'gpu0' });
    } finally {
      await gw.close();
    }
  });

  it('a broker that ignores the GPUs (an EAR for the CPU alone) is not published', async () => {
    const local = new LocalAppraisalBroker({ policy: await loadPolicy(policyYaml), signingKey: await generateEarSigningKey({ alg: 'EdDSA' }), deviceRoots: [root] });
    const blind: BrokerClient = {
      challenge: () => local.challenge(),
      attest: ({ devices: _devices, ...cpuOnly }) => local.attest(cpuOnly),
      jwks: () => local.jwks(),
    };
    const gw = await startTestGateway({ backend: 'upstream', broker: false, gateway: { broker: blind, devices: [new FixtureGpuAttester()], deviceRoots: [root] } });
    try {
      expect(gw.gateway.attestation.state).toBe('revoked');
      expect(gw.gateway.attestation.snapshot).toBeUndefined();
      expect(gw.logs.some((l) => l.includes('"code":"ERR_EAR_CLAIMS"'))).toBe(true);
    } finally {
      await gw.close();
    }
  });

  it('the development broker verifies each GPU with the nonce SHA-256(runtime data): evidence for another nonce is denied as gpu0', async () => {
    const local = new LocalAppraisalBroker({ policy: await loadPolicy(policyYaml), signingKey: await generateEarSigningKey({ alg: 'EdDSA' }), deviceRoots: [root] });
    const ch = await local.challenge();
    const runtimeData = canonicalize({ nonce: Buffer.from(ch.nonce).toString('base64url'), 'tee-pubkey': { crv: 'X25519', kty: 'OKP', x: Buffer.alloc(32, 9).toString('base64url') } });
    const evidence = await new SimAttester({ measurements: { measurement: TEST_MEASUREMENT } }).collect(await runtimeDigest('sim', runtimeData));
    const other = await new FixtureGpuAttester().collect(new Uint8Array(32).fill(1));
    const e = await refusal(local.attest({ session: ch.session, evidence, runtimeData, platform: 'sim', devices: [{ platform: 'nvidia', evidence: other }] }));
    expect(e.code).toBe('ERR_EVIDENCE_NONCE');
    expect(e.detail).toMatchObject({ submod: 'gpu0' });
    // The same request with the GPU bound to the runtime data is affirmed, as a composite.
    const ch2 = await local.challenge();
    const rd2 = canonicalize({ nonce: Buffer.from(ch2.nonce).toString('base64url'), 'tee-pubkey': { crv: 'X25519', kty: 'OKP', x: Buffer.alloc(32, 9).toString('base64url') } });
    const ev2 = await new SimAttester({ measurements: { measurement: TEST_MEASUREMENT } }).collect(await runtimeDigest('sim', rd2));
    const gpu2 = await new FixtureGpuAttester().collect(await runtimeDigest('nvidia', rd2));
    const ok = await local.attest({ session: ch2.session, evidence: ev2, runtimeData: rd2, platform: 'sim', devices: [{ platform: 'nvidia', evidence: gpu2 }] });
    const v = await verifyEar(ok.ear, { jwks: await local.jwks(), now: new Date() });
    expect(v.status).toBe('affirming');
    expect(Object.keys(v.ear.submods).sort()).toEqual(['cpu0', 'gpu0']);
  });
});

describe('one GPU is counted once (its attestation key is its identity)', () => {
  /** The GPU identity the NVIDIA verifier reports for evidence of `gpu` (any nonce). */
  async function identityOf(gpu: DeviceAttester): Promise<string> {
    const nonce = new Uint8Array(32).fill(0x42);
    const r = await nvidiaVerifier.verify({ evidence: await gpu.collect(nonce), roots: [root], now: new Date(), nonce });
    expect(r.ok).toBe(true);
    return r.claims!.platformClaims.attestationKeySha256 as string;
  }

  it('two FixtureGpuAttester instances are two GPUs (every multi-GPU test here means distinct GPUs); one instance asked twice is one', async () => {
    const [a, b] = [new FixtureGpuAttester(), new FixtureGpuAttester()];
    const ka = await identityOf(a);
    expect(ka).toMatch(/^[0-9a-f]{64}$/);
    expect(await identityOf(b)).not.toBe(ka);
    expect(await identityOf(a)).toBe(ka);
  });

  it('the same GPU configured twice: the gateway does not attest, publishes nothing, the broker is not asked, and a client requiring two GPUs sends nothing', async () => {
    const gpu = new FixtureGpuAttester();
    const gw = await gpuGateway([gpu, gpu]);
    try {
      expect(gpu.nonces.length).toBeGreaterThan(0);
      expect(gw.gateway.attestation.state).toBe('revoked');
      expect(gw.gateway.attestation.snapshot).toBeUndefined();
      expect((await fetch(`${gw.url}/.well-known/custody/attestation`)).status).toBe(503);
      expect(gw.ledger.events.filter((e) => e.type === 'attestation.appraised')).toHaveLength(0);
      expect(gw.logs.some((l) => l.includes('"code":"ERR_EVIDENCE_DEVICE_REPEATED"'))).toBe(true);
      await expect(gw.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { device: 'gpu1', same: 'gpu0' } });
      const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, minGpus: 2, gpuRoots: [root] });
      const e = await refusal(cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: chat }));
      expect(e.code).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
      expect(gw.upstream!.received).toHaveLength(0);
    } finally {
      await gw.close();
    }
  });

  it('the repeated GPU is named as the later one, also without a broker: [a, b, a] fails on gpu2', async () => {
    const [a, b] = [new FixtureGpuAttester(), new FixtureGpuAttester()];
    const gw = await gpuGateway([a, b, a], { broker: false });
    try {
      expect(gw.gateway.attestation.snapshot).toBeUndefined();
      await expect(gw.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { device: 'gpu2', same: 'gpu0' } });
    } finally {
      await gw.close();
    }
  });

  it('two GPUs: published as gpu0 and gpu1, both affirmed in the EAR, and a client requiring two GPUs is served', async () => {
    const gw = await gpuGateway([new FixtureGpuAttester(), new FixtureGpuAttester()]);
    try {
      expect(gw.gateway.attestation.state).toBe('attested');
      const b = await bundleOf(gw);
      expect(b.devices).toHaveLength(2);
      const v = await verifyEar(b.ear!, { jwks: gw.jwks!, now: new Date() });
      expect(Object.keys(v.ear.submods).sort()).toEqual(['cpu0', 'gpu0', 'gpu1']);
      const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, minGpus: 2, gpuRoots: [root] });
      const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: chat });
      expect(res.status).toBe(200);
      expect(cfetch.lastVerification!.devices?.map((d) => d.name)).toEqual(['gpu0', 'gpu1']);
    } finally {
      await gw.close();
    }
  });

  it('a GPU that starts answering as another configured GPU: the round is refused and the gateway stops serving until a round counts two GPUs again', async () => {
    const [a, b] = [new FixtureGpuAttester(), new FixtureGpuAttester()];
    let second: DeviceAttester = b;
    const switching: DeviceAttester = { platform: 'nvidia', collect: (n) => second.collect(n) };
    const gw = await gpuGateway([a, switching]);
    try {
      const before = await bundleOf(gw);
      expect(before.devices).toHaveLength(2);
      second = a;
      await expect(gw.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_EVIDENCE_DEVICE_REPEATED', detail: { device: 'gpu1' } });
      // A refusal (as a GPU answering for another nonce is): confidential routes close at once.
      expect(gw.gateway.attestation.state).toBe('revoked');
      expect((await fetch(`${gw.url}/.well-known/custody/attestation`)).status).toBe(503);
      await expect(gw.gateway.attestation.challenge(new Uint8Array(16).fill(3))).rejects.toMatchObject({ code: 'ERR_GATEWAY_ATTESTATION_REVOKED', detail: { reason: 'ERR_EVIDENCE_DEVICE_REPEATED' } });
      // Only one round was appraised: the repeated GPU never reached the broker.
      expect(gw.ledger.events.filter((e) => e.type === 'attestation.appraised')).toHaveLength(1);
      second = b;
      await gw.gateway.attestation.reattest();
      expect(gw.gateway.attestation.state).toBe('attested');
      expect((await bundleOf(gw)).devices).toHaveLength(2);
    } finally {
      await gw.close();
    }
  });

  it('the development broker denies one GPU presented twice (audited, naming the later submodule) and affirms two GPUs', async () => {
    const ledger = await InMemoryLedgerSink.create();
    const local = new LocalAppraisalBroker({ policy: await loadPolicy(policyYaml), signingKey: await generateEarSigningKey({ alg: 'EdDSA' }), deviceRoots: [root], ledger });
    const [a, b] = [new FixtureGpuAttester(), new FixtureGpuAttester()];
    const sim = new SimAttester({ measurements: { measurement: TEST_MEASUREMENT } });
    const present = async (gpus: DeviceAttester[]) => {
      const ch = await local.challenge();
      const runtimeData = canonicalize({ nonce: toBase64Url(ch.nonce), 'tee-pubkey': { crv: 'X25519', kty: 'OKP', x: toBase64Url(new Uint8Array(32).fill(9)) } });
      const evidence = await sim.collect(await runtimeDigest('sim', runtimeData));
      const gpuNonce = await runtimeDigest('nvidia', runtimeData);
      const devices = [];
      for (const g of gpus) devices.push({ platform: 'nvidia' as const, evidence: await g.collect(gpuNonce) });
      return local.attest({ session: ch.session, evidence, runtimeData, platform: 'sim', devices });
    };
    for (const [gpus, submod] of [
      [[a, a], 'gpu1'],
      [[a, b, b], 'gpu2'],
      [[b, a, a, b], 'gpu2'],
    ] as const) {
      const e = await refusal(present([...gpus]));
      expect(e.code).toBe('ERR_EVIDENCE_DEVICE_REPEATED');
      expect(e.detail).toMatchObject({ status: 'contraindicated', submod });
      const audited = ledger.events.at(-1) as unknown as { type: string; verdict: string; reasons: string[] };
      expect(audited).toMatchObject({ type: 'attestation.appraised', verdict: 'contraindicated' });
      expect(audited.reasons).toEqual(['ERR_EVIDENCE_DEVICE_REPEATED']);
    }
    const ok = await present([a, b]);
    const v = await verifyEar(ok.ear, { jwks: await local.jwks(), now: new Date() });
    expect(v.status).toBe('affirming');
    expect(Object.keys(v.ear.submods).sort()).toEqual(['cpu0', 'gpu0', 'gpu1']);
  });
});

describe('shared identity key: the release handshake carries the GPUs too', () => {
  it('the GPU attests over the handshake runtime data {nonce, tee-pubkey}, then over the full runtime data', async () => {
    const gpu = new FixtureGpuAttester();
    const gw = await gpuGateway([gpu], { brokerKeys: { 'gw-identity': new Uint8Array(32).fill(5) }, gateway: { identityKey: { name: 'gw-identity' } } });
    try {
      expect(gw.gateway.attestation.state).toBe('attested');
      expect(gw.gateway.keys.identity?.version).toBe(1);
      // One handshake and one round: two nonces, the second being the published runtime data's.
      expect(gpu.nonces).toHaveLength(2);
      expect(toHex(gpu.nonces[1]!)).toBe(toHex(await runtimeDigest('nvidia', gw.gateway.attestation.snapshot!.runtimeData)));
      const appraised = gw.ledger.events.filter((e) => e.type === 'attestation.appraised') as unknown as { verdict: string }[];
      expect(appraised.map((e) => e.verdict)).toEqual(['affirming', 'affirming']);
    } finally {
      await gw.close();
    }
  });
});

describe('without a broker: the client appraises the raw CPU and GPU evidence', () => {
  it('publishes both; the receipt names the digest of the canonical {devices, evidence}', async () => {
    const gw = await gpuGateway([new FixtureGpuAttester()], { broker: false });
    try {
      const b = await bundleOf(gw);
      expect(b.ear).toBeUndefined();
      expect(b.devices).toHaveLength(1);
      const digest = 'sha256:' + toHex(await sha256(utf8(canonicalize({ devices: b.devices, evidence: b.evidence }))));
      expect(gw.gateway.attestation.snapshot!.attestationDigest).toBe(digest);
      const receipts: Receipt[] = [];
      const cfetch = createConfidentialFetch({ gateway: gw.url, policy: await loadPolicy(policyYaml), allowSimulated: true, minGpus: 1, gpuRoots: [root], onReceipt: (r) => receipts.push(r) });
      const res = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: chat });
      expect(res.status).toBe(200);
      await cfetch.receiptOf(res);
      expect(receipts[0]!.gateway.attestationDigest).toBe(digest);
      expect(cfetch.lastVerification!.devices?.map((d) => d.name)).toEqual(['gpu0']);
      // An auditor with the files alone: the receipt names exactly this CPU + GPU evidence.
      const offline = { receipt: receipts[0]!, bundle: b, policy: await loadPolicy(policyYaml), allowSimulated: true, minGpus: 1, gpuRoots: [root], now: new Date() };
      const doc = await verifyReceiptOffline(offline);
      expect(doc.error, JSON.stringify(doc.error)).toBeUndefined();
      expect(doc.steps.filter((x) => x.ran).map((x) => x.name)).toEqual(['receipt', 'gateway', 'binding', 'signature']);
      // Other GPU evidence beside the same CPU evidence, valid and bound to the same runtime data
      // (ECDSA signs afresh each time): the bundle still verifies, but the receipt does not name it.
      const swapped = { ...b, devices: [{ platform: 'nvidia' as const, evidence: toBase64Url(await new FixtureGpuAttester().collect(await runtimeDigest('nvidia', b.runtimeData))) }] };
      expect(swapped.devices[0]!.evidence).not.toBe(b.devices![0]!.evidence);
      const refused = await verifyReceiptOffline({ ...offline, bundle: swapped });
      expect(refused.error).toMatchObject({ step: 'binding', code: 'ERR_RECEIPT_MISMATCH' });
    } finally {
      await gw.close();
    }
  });
});

describe('replicas sharing an identity key: the receipt names the GPUs of the replica that answered', () => {
  // Same identity secret, so the same OHTTP and receipt keys; only A has a GPU. A client that
  // verified A cannot tell from the keys which replica answered: the receipt must say.
  const identity = { 'gw-identity': new Uint8Array(32).fill(6) };
  let a: TestGateway;
  let b: TestGateway;
  beforeAll(async () => {
    a = await gpuGateway([new FixtureGpuAttester()], { brokerKeys: identity, gateway: { identityKey: { name: 'gw-identity' } } });
    b = await startTestGateway({ backend: 'upstream', brokerPolicyYaml: policyYaml, brokerKeys: identity, gateway: { identityKey: { name: 'gw-identity' } } });
  });
  afterAll(async () => {
    await a?.close();
    await b?.close();
  });

  /** A load balancer: discovery reaches A, every encapsulated request reaches B. */
  const toB = (input: string | URL | Request, init?: RequestInit) => {
    const url = String(input instanceof Request ? input.url : input);
    return fetch(url.endsWith('/ohttp') ? url.replace(a.url, b.url) : input, init);
  };
  const send = (cfetch: ReturnType<typeof createConfidentialFetch>, stream = false) =>
    cfetch(`${a.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${a.apiKey}` }, body: stream ? JSON.stringify({ ...(JSON.parse(chat) as object), stream: true }) : chat });

  it('both replicas publish one key set; A attests a GPU, B none; A names its GPU in its receipts', async () => {
    const [ba, bb] = await Promise.all([bundleOf(a), bundleOf(b)]);
    expect(bb.ohttpKeys).toBe(ba.ohttpKeys);
    expect(bb.receiptKey.x).toBe(ba.receiptKey.x);
    expect(ba.devices).toHaveLength(1);
    expect(bb.devices).toBeUndefined();
    const receipts: Receipt[] = [];
    const cfetch = createConfidentialFetch({ gateway: a.url, jwks: a.jwks!, allowSimulated: true, minGpus: 1, gpuRoots: [root], onReceipt: (r) => receipts.push(r) });
    expect((await send(cfetch)).status).toBe(200);
    const res = await send(cfetch, true);
    expect(await res.text()).toContain('data:');
    await cfetch.receiptOf(res);
    expect(receipts.map((r) => r.gateway.gpus)).toEqual([1, 1]);
  });

  it('a client requiring one GPU verifies A; the answer B computed is refused, whole or streamed: ERR_RECEIPT_MISMATCH on gateway.gpus', async () => {
    const before = b.upstream!.received.length;
    const cfetch = createConfidentialFetch({ gateway: a.url, jwks: a.jwks!, allowSimulated: true, minGpus: 1, gpuRoots: [root], fetch: toB });
    const whole = await refusal(send(cfetch));
    expect(whole.code).toBe('ERR_RECEIPT_MISMATCH');
    expect(whole.detail).toMatchObject({ field: 'gateway.gpus', gpus: 0, required: 1 });
    expect(cfetch.lastVerification?.devices).toHaveLength(1);
    // The stream is handed over, then fails at its end: the caller must not trust what it read.
    const res = await send(cfetch, true);
    expect(res.status).toBe(200);
    const read = await res.text().then(
      () => 'read whole',
      (e: unknown) => (e instanceof CustodyError ? e.code : 'failed'),
    );
    expect(read).toBe('ERR_RECEIPT_MISMATCH');
    const streamed = await refusal(cfetch.receiptOf(res)!);
    expect(streamed.code).toBe('ERR_RECEIPT_MISMATCH');
    expect(streamed.detail).toMatchObject({ field: 'gateway.gpus' });
    // B (no GPU) computed both answers: what the client refuses is the answer, after the fact.
    expect(b.upstream!.received.length).toBe(before + 2);
  });

  it('a client that requires no GPU accepts the answer B computed; its receipt has no gpus member', async () => {
    const receipts: Receipt[] = [];
    const cfetch = createConfidentialFetch({ gateway: a.url, jwks: a.jwks!, allowSimulated: true, gpuRoots: [root], fetch: toB, onReceipt: (r) => receipts.push(r) });
    expect((await send(cfetch)).status).toBe(200);
    expect(receipts).toHaveLength(1);
    expect('gpus' in receipts[0]!.gateway).toBe(false);
    expect(receipts[0]!.gateway.attestationDigest).toBe(b.gateway.attestation.snapshot!.attestationDigest);
  });

  it('offline: a receipt whose GPU count is not the one its bundle attests is refused at binding, even signed by the shared receipt key', async () => {
    const answer = async (g: TestGateway) => {
      const receipts: Receipt[] = [];
      const cfetch = createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true, gpuRoots: [root], onReceipt: (r) => receipts.push(r) });
      await (await send(cfetch)).text();
      return { receipt: receipts[0]!, bundle: cfetch.lastBundle! };
    };
    // The replicas' receipt key signs whatever body it is given: a twin re-signed with it.
    const resigned = async (r: Receipt, gpus: number | undefined): Promise<Receipt> => {
      const { receiptId: _i, ledger: _l, signature: _s, ...body } = r;
      const { gpus: _g, ...gateway } = body.gateway;
      const changed: ReceiptBody = { ...body, gateway: { ...gateway, ...(gpus !== undefined ? { gpus } : {}) } };
      return (await signPreparedReceipt(prepareReceipt(changed), null, a.gateway.keys.receipt.sign)).receipt;
    };
    const withGpu = await answer(a);
    const without = await answer(b);
    const check = (x: { receipt: Receipt; bundle: AttestationBundle }, g: TestGateway) => verifyReceiptOffline({ ...x, jwks: g.jwks!, allowSimulated: true, gpuRoots: [root], now: new Date() });
    // The genuine receipts verify, and their re-signed copies too (the twins below differ only in gpus).
    for (const [x, g] of [[withGpu, a], [without, b]] as const) {
      expect((await check(x, g)).error).toBeUndefined();
      expect((await check({ ...x, receipt: await resigned(x.receipt, x.receipt.gateway.gpus) }, g)).error).toBeUndefined();
    }
    const twins: [string, { receipt: Receipt; bundle: AttestationBundle }, TestGateway][] = [
      ['a receipt naming one GPU beside a bundle without GPUs', { receipt: await resigned(without.receipt, 1), bundle: without.bundle }, b],
      ['a receipt naming no GPU beside a bundle with one', { receipt: await resigned(withGpu.receipt, undefined), bundle: withGpu.bundle }, a],
      ['a receipt naming two GPUs beside a bundle with one', { receipt: await resigned(withGpu.receipt, 2), bundle: withGpu.bundle }, a],
    ];
    for (const [name, x, g] of twins) {
      const doc = await check(x, g);
      expect(doc.error, name).toMatchObject({ step: 'binding', code: 'ERR_RECEIPT_MISMATCH' });
      expect(doc.steps.find((s) => s.name === 'binding')!.detail, name).toContain('gateway.gpus');
    }
    // A receipt without GPUs never satisfies an auditor who requires one (its bundle fails first).
    const strict = await verifyReceiptOffline({ ...without, jwks: b.jwks!, allowSimulated: true, minGpus: 1, gpuRoots: [root], now: new Date() });
    expect(strict.error).toMatchObject({ step: 'gateway', code: 'ERR_SDK_DEVICE_MISSING' });
  });
});
