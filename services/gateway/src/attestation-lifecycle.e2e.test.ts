// The gateway's attestation lifecycle: it refuses to serve once its attestation is revoked or
// lapses (fail closed, typed errors), answers client challenges with fresh evidence, works
// without a broker (raw evidence appraised by the client), and its appraisal and receipts are
// provable from the ledger (strict mode).
import { afterEach, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { parseTlogPolicy } from '@custody/ledger';
import { generateEarSigningKey, loadPolicy } from '@custody/policy';
import { createConfidentialFetch, discoverGateway, fetchAttestationBundle, renderVerificationText, verifyGatewayBundle, verifyReceiptInclusion, type AttestationBundle, type Receipt } from '@custody/sdk';
import { DEMO_MODEL_ID } from './backends/demo.js';
import { LocalAppraisalBroker } from './attestation/local-broker.js';
import { TEST_MEASUREMENT, simPolicyYaml, startTestGateway, type TestGateway } from './testing/index.js';

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

const chat = (g: TestGateway, content = 'hello') => ({
  method: 'POST',
  headers: { authorization: `Bearer ${g.apiKey}` },
  body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content }] }),
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CustodyError);
  return (e as CustodyError).code;
}

describe('revocation and lapse', () => {
  it('refuses to serve once the broker no longer accepts its measurement (revoked), typed for clients', async () => {
    gw = await startTestGateway();
    const g = gw;
    const cfetch = createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true });
    expect((await cfetch(`${g.url}/v1/chat/completions`, chat(g))).status).toBe(200);
    const events = g.ledger.events.length;
    g.broker!.setPolicy(await g.brokerPolicy(['c3'.repeat(48)], 2));
    await expect(g.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_EVIDENCE_MEASUREMENT' });
    expect(g.gateway.attestation.state).toBe('revoked');
    // The client's cached verification is still valid, but the gateway itself refuses.
    expect(await codeOf(cfetch(`${g.url}/v1/chat/completions`, chat(g)))).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
    const bundle = await fetch(`${g.url}/.well-known/custody/attestation`);
    expect(bundle.status).toBe(503);
    expect(((await bundle.json()) as { code: string }).code).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
    expect((await fetch(`${g.url}/readyz`)).status).toBe(503);
    // New clients cannot even verify.
    expect(await codeOf(createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true }).verify())).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
    // The refusal was logged to the ledger (contraindicated appraisal), and no receipt after it.
    const after = g.ledger.events.slice(events);
    expect(after.map((e) => e.type)).toEqual(['attestation.appraised']);
    expect(after[0]).toMatchObject({ verdict: 'contraindicated' });
  });

  it('an operator revocation is final even if re-attestation would succeed', async () => {
    gw = await startTestGateway();
    gw.gateway.attestation.revoke('operator');
    await expect(gw.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_GATEWAY_ATTESTATION_REVOKED' });
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(503);
  });

  it('lapses when the EAR expires and the broker cannot be reached (ERR_GATEWAY_ATTESTATION_LAPSED)', async () => {
    let offset = 0;
    const clock = () => new Date(Date.now() + offset);
    gw = await startTestGateway({ clock, earTtlSeconds: 60, gateway: { reattestIntervalMs: 3600_000 } });
    const g = gw;
    const cfetch = createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true, clock });
    expect((await cfetch(`${g.url}/v1/chat/completions`, chat(g))).status).toBe(200);
    // The broker becomes unreachable: not a refusal, so the gateway serves until its EAR expires.
    g.broker!.challenge = () => Promise.reject(new CustodyError('ERR_STORE_UNAVAILABLE'));
    await expect(g.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    expect(g.gateway.attestation.state).toBe('attested');
    offset = 61_000;
    expect(g.gateway.attestation.state).toBe('lapsed');
    const res = await fetch(`${g.url}/readyz`);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_GATEWAY_ATTESTATION_LAPSED');
  });

  it('a round whose bundle lacks its ledger proof is followed by earlier rounds, each twice as late, up to the interval; a round with the proof ends them', async () => {
    gw = await startTestGateway({ gateway: { reattestIntervalMs: 2000, ledgerProofRetryMs: 100 } });
    const g = gw;
    const retries = () => g.logs.map((l) => JSON.parse(l) as { event?: string; inMs?: number }).filter((l) => l.event === 'attestation.ledger_retry').map((l) => l.inMs);
    expect(g.gateway.attestation.snapshot!.bundle.ledger).toBeDefined();
    expect(retries()).toEqual([]);
    // The broker names no ledger entry for its appraisal (as a broker service does while its
    // ledger is down: the record waits in its interim table).
    const attest = g.broker!.attest.bind(g.broker!);
    g.broker!.attest = async (req) => ({ ear: (await attest(req)).ear });
    const rounds = () => g.logs.filter((l) => l.includes('"event":"attestation.ok"')).length;
    const before = rounds();
    // (A round already under way when the broker changed may still carry a proof: poll.)
    let outage = await g.gateway.attestation.reattest();
    while (!outage.ledgerProofMissing) outage = await g.gateway.attestation.reattest();
    expect(outage.bundle.ledger).toBeUndefined();
    // 100, 200, 400, 800, 1600 ms; the next (3200) would come after the 2 s interval.
    await expect.poll(retries, { timeout: 10_000, interval: 100 }).toEqual([100, 200, 400, 800, 1600]);
    await new Promise((r) => setTimeout(r, 2500));
    expect(retries()).toEqual([100, 200, 400, 800, 1600]);
    expect(rounds() - before).toBeGreaterThanOrEqual(6);
    // The broker logs again: a round with the proof, and no more early rounds.
    g.broker!.attest = attest;
    let back = await g.gateway.attestation.reattest();
    while (back.ledgerProofMissing) back = await g.gateway.attestation.reattest();
    expect(back.bundle.ledger?.event).toMatchObject({ type: 'attestation.appraised' });
    // A later outage starts again from the first delay.
    g.broker!.attest = async (req) => ({ ear: (await attest(req)).ear });
    while (!(await g.gateway.attestation.reattest()).ledgerProofMissing);
    expect(retries().slice(5, 6)).toEqual([100]);
  });

  it('a first round at start whose bundle lacks its ledger proof is followed by an early round too', async () => {
    // A broker that logs nowhere: its EARs name no ledger entry, so no round carries a proof.
    const broker = new LocalAppraisalBroker({ policy: await loadPolicy(simPolicyYaml([TEST_MEASUREMENT])), signingKey: await generateEarSigningKey() });
    gw = await startTestGateway({ broker: false, gateway: { broker, reattestIntervalMs: 60_000, ledgerProofRetryMs: 100 } });
    const g = gw;
    expect(g.gateway.attestation.snapshot!.ledgerProofMissing).toBe(true);
    const retries = () => g.logs.map((l) => JSON.parse(l) as { event?: string; inMs?: number }).filter((l) => l.event === 'attestation.ledger_retry').map((l) => l.inMs);
    await expect.poll(() => retries().slice(0, 3), { timeout: 10_000, interval: 50 }).toEqual([100, 200, 400]);
  });

  it('does not serve before its first attestation succeeds (ERR_GATEWAY_NOT_ATTESTED)', async () => {
    gw = await startTestGateway({ attester: { platform: 'sim', collect: () => Promise.reject(new CustodyError('ERR_ATTESTER_UNAVAILABLE')) } });
    expect(gw.gateway.attestation.state).toBe('starting');
    const res = await fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) });
    expect(res.status).toBe(503);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_GATEWAY_NOT_ATTESTED');
  });
});

describe('model key release', () => {
  it('the broker releases a model key wrapped to the attested TEE key; the gateway unwraps it inside', async () => {
    const modelKey = new Uint8Array(32).map((_, i) => i + 1);
    const got: Uint8Array[] = [];
    gw = await startTestGateway({ brokerKeys: { 'model-key': modelKey }, gateway: { modelKey: { name: 'model-key', onKey: (k) => void got.push(k.slice()) } } });
    expect(gw.gateway.attestation.state).toBe('attested');
    expect(got).toHaveLength(1);
    expect(got[0]).toEqual(modelKey);
  });

  it('a gateway asking for a key the broker does not hold does not attest (fail closed)', async () => {
    gw = await startTestGateway({ brokerKeys: {}, gateway: { modelKey: { name: 'absent-key', onKey: () => undefined } } });
    expect(gw.gateway.attestation.state).not.toBe('attested');
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(503);
  });
});

describe('freshness and trust paths', () => {
  it("accepts a client clock up to a minute from the broker's for the EAR (clockToleranceSeconds), and refuses beyond", async () => {
    gw = await startTestGateway();
    const g = gw;
    const behind = (s: number) => () => new Date(Date.now() - s * 1000);
    const verify = (o: Partial<Parameters<typeof createConfidentialFetch>[0]>) => createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true, ...o }).verify();
    // A device clock 30 s behind: the EAR was issued "in the future" by 30 s.
    expect((await verify({ clock: behind(30) })).earIssuedAt).toBeInstanceOf(Date);
    expect(await codeOf(verify({ clock: behind(120) }))).toBe('ERR_EAR_NOT_YET_VALID');
    expect(await codeOf(verify({ clock: behind(30), clockToleranceSeconds: 0 }))).toBe('ERR_EAR_NOT_YET_VALID');
    for (const clockToleranceSeconds of [-1, 301, Number.NaN]) expect(await codeOf(verify({ clockToleranceSeconds }))).toBe('ERR_USAGE');
  });

  it("a client whose clock is off learns the gateway's time from its refusal (inside the encrypted answer) and sends once more; the date stays checked", async () => {
    gw = await startTestGateway();
    const g = gw;
    let sealed = 0;
    const counting: typeof fetch = (input, init) => {
      if (String(input instanceof Request ? input.url : input).endsWith('/ohttp')) sealed++;
      return fetch(input, init);
    };
    const ahead = () => new Date(Date.now() + 90_000);
    const cfetch = createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true, clock: ahead, fetch: counting });
    for (const stream of [false, true]) {
      sealed = 0;
      const res = await cfetch(`${g.url}/v1/chat/completions`, { ...chat(g), body: JSON.stringify({ model: DEMO_MODEL_ID, stream, messages: [{ role: 'user', content: 'clock ahead' }] }) });
      expect(res.status).toBe(200);
      await res.text();
      expect(await cfetch.receiptOf(res)).toBeDefined();
      // Refused once (the first call), then sent on the gateway's clock; later calls go once.
      expect(sealed).toBe(stream ? 1 : 2);
    }
    await g.close();
    // A date refused again after the one resend (here the gateway's clock jumps two minutes after
    // each sealed exchange) fails with the gateway's own code, not as a missing receipt.
    let jump = 0;
    gw = await startTestGateway({ clock: () => new Date(Date.now() + jump) });
    const h = gw;
    const jumping: typeof fetch = async (input, init) => {
      const res = await counting(input, init);
      if (String(input instanceof Request ? input.url : input).endsWith('/ohttp')) jump += 120_000;
      return res;
    };
    for (const stream of [false, true]) {
      jump = 0;
      const strict = createConfidentialFetch({ gateway: h.url, jwks: h.jwks!, allowSimulated: true, clock: () => new Date(Date.now() + 90_000), fetch: jumping });
      await strict.verify();
      sealed = 0;
      const e = await strict(`${h.url}/v1/chat/completions`, { ...chat(h), body: JSON.stringify({ model: DEMO_MODEL_ID, stream, messages: [{ role: 'user', content: 'refused' }] }) }).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toMatchObject({ code: 'ERR_GATEWAY_REQUEST_DATE', detail: { status: 400, receipt: false } });
      expect(sealed).toBe(2);
    }
    jump = 0;
    const lax = createConfidentialFetch({ gateway: h.url, jwks: h.jwks!, allowSimulated: true, requireReceipt: false, clock: () => new Date(Date.now() + 90_000), fetch: jumping });
    const res = await lax(`${h.url}/v1/chat/completions`, chat(h, 'refused'));
    expect(res.status).toBe(400);
    expect(((await res.json()) as { code: string }).code).toBe('ERR_GATEWAY_REQUEST_DATE');
  });

  it('answers a caller nonce with fresh evidence bound to it; the SDK checks it against the EAR', async () => {
    gw = await startTestGateway();
    const r = await discoverGateway({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, freshNonce: true });
    expect(r.document.ok).toBe(true);
    const steps = Object.fromEntries(r.document.steps.map((s) => [s.name, s]));
    expect(steps.nonce!.ran).toBe(true);
    expect(steps.evidence!.ran).toBe(true);
    expect(steps.ear!.ran).toBe(true);
    // The same fresh bundle checked against another nonce fails.
    const nonce = new Uint8Array(32).fill(5);
    const bundle = await fetchAttestationBundle(gw.url, { nonce });
    const other = await verifyGatewayBundle(bundle, { jwks: gw.jwks!, allowSimulated: true, now: new Date(), nonce: new Uint8Array(32).fill(6) });
    expect(other.document.error?.code).toBe('ERR_EVIDENCE_NONCE');
  });

  it('without a broker: the client appraises the raw evidence with its policy, freshness by nonce', async () => {
    gw = await startTestGateway({ broker: false });
    const policy = await loadPolicy(simPolicyYaml([gw.measurement]));
    const cfetch = createConfidentialFetch({ gateway: gw.url, policy, allowSimulated: true });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, chat(gw, 'raw evidence path'));
    expect(res.status).toBe(200);
    const doc = cfetch.lastVerification!;
    expect(doc.steps.find((s) => s.name === 'appraisal')).toMatchObject({ ok: true, ran: true });
    expect(doc.steps.find((s) => s.name === 'ear')).toMatchObject({ ran: false });
    expect(renderVerificationText(doc)).toContain('SIMULATED');
    // The model the bundle names is shown as the gateway's claim, not as attested.
    expect(doc.model).toBeDefined();
    expect(renderVerificationText(doc)).toMatch(/model .*\(as the bundle states, not attested; each receipt names the model that answered\)/);
    // A policy that pins another measurement refuses.
    const strictPolicy = await loadPolicy(simPolicyYaml(['d4'.repeat(48)]));
    expect(await codeOf(createConfidentialFetch({ gateway: gw.url, policy: strictPolicy, allowSimulated: true }).verify())).toBe('ERR_EVIDENCE_MEASUREMENT');
  });

  it('strict mode: the appraisal is proved in the ledger; receipts are provable too; a wrong log key fails', async () => {
    gw = await startTestGateway();
    const tlogPolicy = parseTlogPolicy(gw.ledger.tlogPolicyText);
    const receipts: Receipt[] = [];
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, strict: { tlogPolicy }, onReceipt: (r) => receipts.push(r) });
    expect((await cfetch(`${gw.url}/v1/chat/completions`, chat(gw, 'strict'))).status).toBe(200);
    expect(cfetch.lastVerification!.steps.find((s) => s.name === 'ledger')).toMatchObject({ ok: true, ran: true });
    const r = receipts[0]!;
    const proof = await (await fetch(`${gw.url}/.well-known/custody/ledger/proof/${r.ledger!.index}`)).text();
    await expect(verifyReceiptInclusion(r, proof, tlogPolicy, { now: new Date() })).resolves.toMatchObject({ index: r.ledger!.index });
    const forged = { ...r, ledger: { ...r.ledger!, index: r.ledger!.index - 1 } };
    await expect(verifyReceiptInclusion(forged, proof, tlogPolicy, { now: new Date() })).rejects.toBeInstanceOf(CustodyError);
    const otherLog = await (await import('./ledger/ledger-sink.js')).InMemoryLedgerSink.create('custody.dev/other-log');
    const wrong = parseTlogPolicy(otherLog.tlogPolicyText);
    expect(await codeOf(createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, strict: { tlogPolicy: wrong } }).verify())).toMatch(/^ERR_(NOTE|TLOG)_/);
  });

  it('strict mode without a broker JWKS: the logged appraisal must be of this gateway, not one spliced in from another', async () => {
    gw = await startTestGateway();
    const unappraised = await startTestGateway({ broker: false, measurement: 'b7'.repeat(48) });
    const { listen } = await import('./http/serve.js');
    const { Hono } = await import('hono');
    const donor = (await (await fetch(`${gw.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
    // A proxy in front of the gateway that was never appraised, splicing the other gateway's EAR and ledger entry into its bundles.
    const app = new Hono();
    const splice = async (res: Response) => ({ ...((await res.json()) as AttestationBundle), ear: donor.ear!, ledger: donor.ledger! });
    app.get('/.well-known/custody/attestation', async (c) => c.json(await splice(await fetch(`${unappraised.url}/.well-known/custody/attestation`))));
    app.post('/.well-known/custody/attestation/challenge', async (c) =>
      c.json(await splice(await fetch(`${unappraised.url}/.well-known/custody/attestation/challenge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: await c.req.text() }))),
    );
    const mitm = await listen(app);
    try {
      const tlogPolicy = parseTlogPolicy(gw.ledger.tlogPolicyText);
      // The appraised gateway passes strict mode on the no-broker path (raw evidence, policy, nonce).
      const own = createConfidentialFetch({ gateway: gw.url, policy: await loadPolicy(simPolicyYaml([gw.measurement])), allowSimulated: true, strict: { tlogPolicy } });
      expect((await own.verify()).document.steps.find((s) => s.name === 'ledger')).toMatchObject({ ok: true, ran: true });
      const policy = await loadPolicy(simPolicyYaml([unappraised.measurement]));
      // Alone, the unappraised gateway has no logged appraisal; with another's spliced in, it is refused too.
      expect(await codeOf(createConfidentialFetch({ gateway: unappraised.url, policy, allowSimulated: true, strict: { tlogPolicy } }).verify())).toBe('ERR_TLOG_INCLUSION');
      const spliced = createConfidentialFetch({ gateway: mitm.url, policy, allowSimulated: true, strict: { tlogPolicy } });
      expect(await codeOf(spliced.verify())).toBe('ERR_TLOG_INCLUSION');
    } finally {
      await mitm.close();
      await unappraised.close();
    }
  });

  it('builds at most 8 ledger proofs at once for anonymous callers; the 9th is refused with ERR_GATEWAY_OVERLOADED, and the others still answer', async () => {
    gw = await startTestGateway();
    const real = gw.ledger.proof.bind(gw.ledger);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let started = 0;
    gw.ledger.proof = async (index: number) => {
      started++;
      await gate;
      return real(index);
    };
    const pending = Array.from({ length: 8 }, () => fetch(`${gw!.url}/.well-known/custody/ledger/proof/0`));
    while (started < 8) await new Promise((r) => setTimeout(r, 5));
    const ninth = await fetch(`${gw.url}/.well-known/custody/ledger/proof/0`);
    expect(ninth.status).toBe(503);
    expect(((await ninth.json()) as { code: string }).code).toBe('ERR_GATEWAY_OVERLOADED');
    release();
    for (const r of await Promise.all(pending)) expect(r.status).toBe(200);
    // The limit is on proofs in flight, not a count: it is free again.
    expect((await fetch(`${gw.url}/.well-known/custody/ledger/proof/0`)).status).toBe(200);
  });
});
