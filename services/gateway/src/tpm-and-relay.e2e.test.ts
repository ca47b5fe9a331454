// The gateway on a (software) TPM: its keys bound into a TPM quote's qualifying data
// (SHA-256 of the runtime data), appraised by the broker with PCR and AK reference values; and
// the OHTTP relay, which forwards without client addresses.
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TpmAttester } from '@custody/attester-service';
import { startSwtpm, type SwtpmInstance } from '@custody/attester-service/testing';
import { tpmVerifier } from '@custody/attest';
import { generateEarSigningKey, loadPolicy } from '@custody/policy';
import { createConfidentialFetch, type Receipt } from '@custody/sdk';
import { LocalAppraisalBroker } from './attestation/local-broker.js';
import { DEMO_MODEL_ID } from './backends/demo.js';
import { listen, type RunningServer } from './http/serve.js';
import { createRelayApp } from './relay/relay.js';
import { startTestGateway, type TestGateway } from './testing/index.js';

describe('gateway attested by a TPM quote (swtpm)', () => {
  let tpm: SwtpmInstance;
  let gw: TestGateway;
  let pcr0: string;
  let attester: TpmAttester | undefined;
  beforeAll(async () => {
    tpm = await startSwtpm();
    attester = new TpmAttester({ tcti: tpm.tcti, keyAlgorithm: 'ecc', pcrs: [0, 7] });
    // Reference values from a first quote: what an operator records when enrolling the machine.
    const probe = await tpmVerifier.verify({ evidence: await attester.collect(new Uint8Array(32)), now: new Date() });
    const claims = probe.claims!;
    pcr0 = claims.measurements['pcr0']!;
    const policy = await loadPolicy(
      ['apiVersion: custody.dev/policy/v1', 'id: gateway-tpm', 'version: 1', 'platforms:', '  tpm:', `    pcrs: { sha256: { 0: ${pcr0}, 7: ${claims.measurements['pcr7']} } }`, `    signerRoots: [${claims.signer.rootSha256}]`, ''].join('\n'),
    );
    const broker = new LocalAppraisalBroker({ policy, signingKey: await generateEarSigningKey() });
    gw = await startTestGateway({ attester, broker: false, gateway: { broker } });
    Object.assign(gw, { jwks: await broker.jwks() });
  }, 120_000);
  afterAll(async () => {
    await gw?.close();
    // The attester's key contexts live in its own temporary directory until it is closed.
    await attester?.close();
    await tpm?.stop();
  });

  it('a client pinning the TPM PCR verifies the EAR and talks to the gateway', async () => {
    expect(gw.gateway.attestation.state).toBe('attested');
    const receipts: Receipt[] = [];
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowedPlatforms: ['tpm'], expectedMeasurements: { pcr0 }, onReceipt: (r) => receipts.push(r) });
    const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.apiKey, fetch: cfetch, maxRetries: 0 });
    const res = await openai.chat.completions.create({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'hello from a TPM-attested gateway' }] });
    expect(res.choices[0]!.message.content).toContain('TPM-attested');
    expect(cfetch.lastVerification!.platform).toBe('tpm');
    expect(cfetch.lastVerification!.simulated).toBe(false);
    expect(receipts[0]!.gateway.platform).toBe('tpm');
  });

  it('the fresh-nonce path verifies the TPM quote itself against the EAR', async () => {
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowedPlatforms: ['tpm'], freshNonce: true });
    const v = await cfetch.verify();
    expect(v.document.steps.find((s) => s.name === 'evidence')).toMatchObject({ ran: true, ok: true });
    expect(v.document.steps.find((s) => s.name === 'binding')?.detail).toContain('SHA-256');
  });
});

describe('OHTTP relay', () => {
  let gw: TestGateway;
  let relay: RunningServer;
  const seenByGateway: string[] = [];
  beforeAll(async () => {
    gw = await startTestGateway();
    // Record the headers the relay sends to the gateway.
    const recording: typeof fetch = (input, init) => {
      seenByGateway.push(JSON.stringify(init?.headers ?? {}).toLowerCase());
      return fetch(input, init);
    };
    relay = await listen(createRelayApp({ gateway: gw.url, fetch: recording }));
  });
  afterAll(async () => {
    await relay.close();
    await gw.close();
  });

  it('carries discovery and encapsulated requests (streamed too) without client address headers', async () => {
    const cfetch = createConfidentialFetch({ gateway: gw.url, relay: relay.url, jwks: gw.jwks!, allowSimulated: true });
    const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: gw.apiKey, fetch: cfetch, maxRetries: 0 });
    const a = await openai.chat.completions.create({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'via the relay' }] });
    expect(a.choices[0]!.message.content).toContain('via the relay');
    const s = await openai.chat.completions.create({ model: DEMO_MODEL_ID, stream: true, messages: [{ role: 'user', content: 'streamed via the relay' }] });
    let text = '';
    for await (const c of s) text += c.choices[0]?.delta?.content ?? '';
    expect(text).toContain('streamed via the relay');
    const direct = await fetch(`${relay.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req', 'x-forwarded-for': '203.0.113.9', forwarded: 'for=203.0.113.9' }, body: new Uint8Array(50) });
    expect(direct.status).toBe(422);
    expect(seenByGateway.length).toBeGreaterThan(2);
    for (const h of seenByGateway) {
      expect(h).not.toContain('203.0.113.9');
      expect(h).not.toMatch(/x-forwarded|"forwarded"|"via"|authorization/);
    }
  });

  it('forwards only OHTTP media types', async () => {
    const res = await fetch(`${relay.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    expect(res.status).toBe(415);
  });
});
