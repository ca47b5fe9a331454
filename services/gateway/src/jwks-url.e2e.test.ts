// The broker rotates its EAR signing key. The gateway, which keeps the broker's JWKS between
// rounds, fetches it again when an EAR names a key it does not hold, and stays attested (it used
// to refuse the EAR and close). A client that fetches the JWKS from a URL (`jwksUrl`) instead of
// pinning it picks up the new key at its next verification of the gateway; a client that pinned
// the old JWKS refuses the gateway's new EAR; a JWKS endpoint that fails makes verification fail
// closed, with no prompt sent. An EAR whose key the broker does not publish is still refused.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { JSONWebKeySet } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateEarSigningKey, loadPolicy } from '@custody/policy';
import { createConfidentialFetch, discoverGateway } from '@custody/sdk';
import type { BrokerClient } from './attestation/broker-client.js';
import { LocalAppraisalBroker } from './attestation/local-broker.js';
import { DEMO_MODEL_ID } from './backends/demo.js';
import { simPolicyYaml, startTestGateway, TEST_MEASUREMENT, type TestGateway } from './testing/index.js';

describe('broker signing-key rotation: the gateway, and SDK clients with jwksUrl', () => {
  // The broker before and after rotating its EAR signing key: same policy, new key.
  let before: LocalAppraisalBroker;
  let after: LocalAppraisalBroker;
  /** Signs with a key no JWKS here publishes. */
  let rogue: LocalAppraisalBroker;
  let current: LocalAppraisalBroker;
  /** The JWKS the gateway's broker client answers (by default the current broker's). */
  let published: () => Promise<JSONWebKeySet>;
  let jwksCalls = 0;
  let jwksStatus = 200;
  let jwksServer: Server;
  let jwksUrl: string;
  let gw: TestGateway;
  const prompts: string[] = [];

  beforeAll(async () => {
    const policy = await loadPolicy(simPolicyYaml([TEST_MEASUREMENT]));
    before = new LocalAppraisalBroker({ policy, signingKey: await generateEarSigningKey({ alg: 'EdDSA' }) });
    after = new LocalAppraisalBroker({ policy, signingKey: await generateEarSigningKey({ alg: 'EdDSA' }) });
    rogue = new LocalAppraisalBroker({ policy, signingKey: await generateEarSigningKey({ alg: 'EdDSA' }) });
    current = before;
    published = () => current.jwks();
    const broker: BrokerClient = {
      challenge: () => current.challenge(),
      attest: (r) => current.attest(r),
      jwks: () => {
        jwksCalls++;
        return published();
      },
    };
    // The broker's published JWKS, as its well-known endpoint serves it.
    jwksServer = createServer((_req, res) => {
      void current.jwks().then((k) => {
        res.writeHead(jwksStatus, { 'content-type': 'application/json' });
        res.end(jwksStatus === 200 ? JSON.stringify(k) : '{"code":"ERR_INTERNAL"}');
      });
    });
    await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
    jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/.well-known/jwks.json`;
    gw = await startTestGateway({ broker: false, gateway: { broker } });
  });
  afterAll(async () => {
    await gw.close();
    jwksServer.closeAllConnections();
    await new Promise((r) => jwksServer.close(r));
  });

  const chat = (content: string) => {
    prompts.push(content);
    return { method: 'POST', headers: { authorization: `Bearer ${gw.apiKey}` }, body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content }] }) };
  };
  /** The prompts that reached the model. */
  const seen = () => gw.logs.length;

  it('verifies with the JWKS from the URL, follows a rotation at refresh, while a pinned old JWKS refuses', async () => {
    const fromUrl = createConfidentialFetch({ gateway: gw.url, jwksUrl, allowSimulated: true });
    const pinnedOld: JSONWebKeySet = await before.jwks();
    const pinned = createConfidentialFetch({ gateway: gw.url, jwks: pinnedOld, allowSimulated: true });
    expect((await fromUrl(`${gw.url}/v1/chat/completions`, chat('before the rotation'))).status).toBe(200);
    expect((await pinned(`${gw.url}/v1/chat/completions`, chat('pinned, before'))).status).toBe(200);

    // The broker rotates; the gateway's next round gets an EAR signed with the new key, fetches
    // the JWKS again (once) and stays attested.
    current = after;
    const calls = jwksCalls;
    const lines = gw.logs.length;
    await gw.gateway.attestation.reattest();
    expect(gw.gateway.attestation.state).toBe('attested');
    expect(jwksCalls).toBe(calls + 1);
    const newKid = (await after.jwks()).keys[0]!.kid;
    expect(newKid).not.toBe(pinnedOld.keys[0]!.kid);
    expect(gw.logs.slice(lines).map((l) => JSON.parse(l) as { event?: string; kids?: string[] }).filter((l) => l.event === 'attestation.jwks_refreshed')).toEqual([expect.objectContaining({ kids: [newKid] })]);
    // The next round needs no fetch: the kept JWKS holds the new key.
    await gw.gateway.attestation.reattest();
    expect(jwksCalls).toBe(calls + 1);

    const v = await fromUrl.refresh();
    expect(v.earId).toBe(gw.gateway.attestation.snapshot!.earId);
    expect((await fromUrl(`${gw.url}/v1/chat/completions`, chat('after the rotation'))).status).toBe(200);
    await expect(pinned.refresh()).rejects.toMatchObject({ code: 'ERR_EAR_KEY_UNKNOWN' });
  });

  it('fails closed when the JWKS endpoint fails: nothing is sent', async () => {
    jwksStatus = 500;
    try {
      const cfetch = createConfidentialFetch({ gateway: gw.url, jwksUrl, allowSimulated: true });
      const lines = seen();
      await expect(cfetch(`${gw.url}/v1/chat/completions`, chat('never sent'))).rejects.toMatchObject({ code: 'ERR_SDK_DISCOVERY' });
      // No request reached the gateway's pipeline (it logs a decision for every request it reads).
      expect(gw.logs.slice(lines).filter((l) => l.includes('"gate.decision"') || l.includes('"receipt"'))).toEqual([]);
      // Discovery reports it in its document (it does not throw), with the gateway's bundle.
      const d = await discoverGateway({ gateway: gw.url, jwksUrl, allowSimulated: true });
      expect(d.document).toMatchObject({ ok: false, error: { code: 'ERR_SDK_DISCOVERY', step: 'trust' } });
      expect(d.bundle?.ear).toBeTypeOf('string');
    } finally {
      jwksStatus = 200;
    }
  });

  it('still refuses an EAR signed with a key the broker does not publish, after fetching its JWKS again', async () => {
    current = rogue;
    published = () => after.jwks();
    const calls = jwksCalls;
    await expect(gw.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_EAR_KEY_UNKNOWN' });
    expect(jwksCalls).toBe(calls + 1);
    expect(gw.gateway.attestation.state).toBe('revoked');
  });
});

describe("the gateway's kept copy of the broker JWKS", () => {
  it('is fetched again after 300 s even without a rotation (a key the broker dropped leaves it)', async () => {
    let t = Date.parse('2026-11-27T12:00:00Z');
    const clock = () => new Date(t);
    const local = new LocalAppraisalBroker({ policy: await loadPolicy(simPolicyYaml([TEST_MEASUREMENT])), signingKey: await generateEarSigningKey({ alg: 'EdDSA' }), clock, earTtlSeconds: 3600 });
    let calls = 0;
    const broker: BrokerClient = {
      challenge: () => local.challenge(),
      attest: (r) => local.attest(r),
      jwks: () => {
        calls++;
        return local.jwks();
      },
    };
    const g = await startTestGateway({ broker: false, clock, gateway: { broker } });
    try {
      const atStart = calls;
      expect(atStart).toBeGreaterThanOrEqual(1);
      t += 200_000;
      await g.gateway.attestation.reattest();
      expect(calls).toBe(atStart);
      t += 101_000;
      await g.gateway.attestation.reattest();
      expect(calls).toBe(atStart + 1);
      expect(g.gateway.attestation.state).toBe('attested');
    } finally {
      await g.close();
    }
  });
});
