// A tampered gateway is refused by the SDK before any prompt is sent: wrong measurement, debug
// evidence, a stale EAR, and key configurations not bound to the evidence. Every case asserts
// that nothing reached /ohttp and the model backend saw nothing.
import { Hono } from 'hono';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, toBase64Url } from '@custody/core';
import { loadPolicy } from '@custody/policy';
import { buildRuntimeData, createConfidentialFetch, createOhttpServerKey, encodeKeyConfigs, parseRuntimeData, type AttestationBundle, type ConfidentialFetchOptions } from '@custody/sdk';
import { listen, type RunningServer } from './http/serve.js';
import { simPolicyYaml, startTestGateway, type TestGateway } from './testing/index.js';

/** A man in the middle in front of a real gateway: rewrites the bundle and counts what it forwards. */
async function startMitm(target: string, rewrite: (b: AttestationBundle) => Promise<AttestationBundle> | AttestationBundle): Promise<RunningServer & { ohttpPosts: number }> {
  const app = new Hono();
  const state = { ohttpPosts: 0 };
  app.get('/.well-known/custody/attestation', async (c) => {
    const b = (await (await fetch(`${target}/.well-known/custody/attestation`)).json()) as AttestationBundle;
    return c.json(await rewrite(b));
  });
  app.post('/ohttp', async (c) => {
    state.ohttpPosts++;
    const res = await fetch(`${target}/ohttp`, { method: 'POST', headers: { 'content-type': c.req.header('content-type') ?? '' }, body: await c.req.arrayBuffer() });
    return new Response(res.body, { status: res.status, headers: { 'content-type': res.headers.get('content-type') ?? '' } });
  });
  const server = await listen(app);
  return Object.assign(server, {
    get ohttpPosts() {
      return state.ohttpPosts;
    },
  });
}

async function refusal(p: Promise<unknown>): Promise<CustodyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CustodyError);
  return e as CustodyError;
}

const body = JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'TOP-SECRET prompt that must never leave' }] });

describe('the SDK refuses a tampered gateway before sending anything', () => {
  let gw: TestGateway;
  let mitm: (RunningServer & { ohttpPosts: number }) | undefined;
  beforeAll(async () => {
    gw = await startTestGateway({ backend: 'upstream' });
  });
  afterAll(async () => {
    await gw.close();
  });
  afterEach(async () => {
    expect(gw.upstream!.received).toHaveLength(0);
    if (mitm) expect(mitm.ohttpPosts).toBe(0);
    await mitm?.close();
    mitm = undefined;
  });

  const send = (opts: Partial<ConfidentialFetchOptions> & { gateway: string }) =>
    createConfidentialFetch({ jwks: gw.jwks!, allowSimulated: true, ...opts })(`${opts.gateway}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body });

  it('wrong measurement: ERR_EVIDENCE_MEASUREMENT', async () => {
    const e = await refusal(send({ gateway: gw.url, expectedMeasurements: { measurement: 'b2'.repeat(48) } }));
    expect(e.code).toBe('ERR_EVIDENCE_MEASUREMENT');
  });

  it('simulated evidence without allowSimulated: ERR_EVIDENCE_SIMULATED', async () => {
    const e = await refusal(send({ gateway: gw.url, allowSimulated: false }));
    expect(e.code).toBe('ERR_EVIDENCE_SIMULATED');
  });

  it('stale EAR (the client clock is past its expiry): ERR_EAR_EXPIRED', async () => {
    const later = () => new Date(Date.now() + 3600_000);
    const e = await refusal(send({ gateway: gw.url, clock: later }));
    expect(e.code).toBe('ERR_EAR_EXPIRED');
  });

  it('EAR older than the accepted age: ERR_SDK_STALE', async () => {
    const later = () => new Date(Date.now() + 200_000);
    const e = await refusal(send({ gateway: gw.url, clock: later, maxAgeSeconds: 60 }));
    expect(e.code).toBe('ERR_SDK_STALE');
  });

  it("EAR signed by a key the client does not trust: ERR_EAR_KEY_UNKNOWN", async () => {
    const other = { keys: [{ ...gw.jwks!.keys[0]!, kid: 'someone-else', x: toBase64Url(new Uint8Array(32).fill(7)) }] };
    const e = await refusal(send({ gateway: gw.url, jwks: other }));
    expect(['ERR_EAR_KEY_UNKNOWN', 'ERR_EAR_SIGNATURE']).toContain(e.code);
  });

  it('a published key configuration that the evidence does not bind: ERR_EVIDENCE_BINDING', async () => {
    const attacker = await createOhttpServerKey({ keyId: 9 });
    mitm = await startMitm(gw.url, (b) => ({ ...b, ohttpKeys: toBase64Url(encodeKeyConfigs([attacker.config])) }));
    const e = await refusal(send({ gateway: mitm.url }));
    expect(e.code).toBe('ERR_EVIDENCE_BINDING');
  });

  it('runtime data rewritten to the attacker key (consistent bundle, wrong digest): ERR_EVIDENCE_BINDING', async () => {
    const attacker = await createOhttpServerKey({ keyId: 9 });
    mitm = await startMitm(gw.url, (b) => {
      const rd = parseRuntimeData(b.runtimeData);
      const forged = buildRuntimeData({
        ...(rd.nonce ? { nonce: rd.nonce } : {}),
        keyConfigs: [attacker.config],
        receiptKey: Buffer.from(rd.value['receipt-key'].x, 'base64url'),
        teePublicKey: Buffer.from(rd.value['tee-pubkey'].x, 'base64url'),
      });
      return { ...b, runtimeData: forged, ohttpKeys: toBase64Url(encodeKeyConfigs([attacker.config])) };
    });
    const e = await refusal(send({ gateway: mitm.url }));
    expect(e.code).toBe('ERR_EVIDENCE_BINDING');
  });

  it('a swapped receipt key: ERR_EVIDENCE_BINDING', async () => {
    mitm = await startMitm(gw.url, (b) => ({ ...b, receiptKey: { ...b.receiptKey, x: toBase64Url(new Uint8Array(32).fill(3)) } }));
    const e = await refusal(send({ gateway: mitm.url }));
    expect(e.code).toBe('ERR_EVIDENCE_BINDING');
  });

  it('an EAR removed from the bundle: ERR_EAR_MALFORMED', async () => {
    mitm = await startMitm(gw.url, (b) => {
      const { ear: _ear, ...rest } = b;
      return rest;
    });
    const e = await refusal(send({ gateway: mitm.url }));
    expect(e.code).toBe('ERR_EAR_MALFORMED');
  });
});

describe('debug-mode evidence is refused', () => {
  let gw: TestGateway;
  beforeAll(async () => {
    // No broker: the gateway publishes raw (debug) evidence; the client appraises it.
    gw = await startTestGateway({ backend: 'upstream', debug: true, broker: false });
  });
  afterAll(async () => {
    await gw.close();
  });
  afterEach(() => {
    expect(gw.upstream!.received).toHaveLength(0);
  });

  const send = (opts: Partial<ConfidentialFetchOptions>) =>
    createConfidentialFetch({ gateway: gw.url, allowSimulated: true, ...opts })(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body });

  it('by the client policy (the default rules forbid debug): ERR_EVIDENCE_DEBUG', async () => {
    const policy = await loadPolicy(simPolicyYaml([gw.measurement]));
    const e = await refusal(send({ policy }));
    expect(e.code).toBe('ERR_EVIDENCE_DEBUG');
  });

  it('by the debug step even when a lax policy accepts it with a warning: ERR_EVIDENCE_DEBUG', async () => {
    const policy = await loadPolicy(simPolicyYaml([gw.measurement], { allowDebug: true }));
    const e = await refusal(send({ policy, acceptWarning: true }));
    expect(e.code).toBe('ERR_EVIDENCE_DEBUG');
  });

  it('without any trust anchor configured: ERR_SDK_TRUST_CONFIG', async () => {
    const e = await refusal(send({}));
    expect(e.code).toBe('ERR_SDK_TRUST_CONFIG');
  });
});
