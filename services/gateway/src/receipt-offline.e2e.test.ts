// Offline receipt verification (verifyReceiptOffline, `custody receipt verify`): what an auditor
// holds — the receipt, the bundle it was answered under, a ledger proof and the response — is
// enough to check every link, and each tampered twin fails at its own step with its own code.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseTlogPolicy } from '@custody/ledger';
import { createConfidentialFetch, encodeReceiptHeader, verifyReceiptOffline, type AttestationBundle, type Receipt, type VerifyReceiptOfflineInput } from '@custody/sdk';
import { DEMO_MODEL_ID } from './backends/demo.js';
import { loadPolicy } from '@custody/policy';
import { defaultRegistry } from '@custody/attest';
import { listen } from './http/serve.js';
import { createRelayApp } from './relay/relay.js';
import { simPolicyYaml, startTestGateway, type TestGateway } from './testing/index.js';

let gw: TestGateway;
let other: TestGateway;
let base: VerifyReceiptOfflineInput;
let receipt: Receipt;
let bundle: AttestationBundle;
let proof: string;
let body: Uint8Array;

async function answered(g: TestGateway, prompt: string) {
  const receipts: Receipt[] = [];
  const cfetch = createConfidentialFetch({ gateway: g.url, jwks: g.jwks!, allowSimulated: true, onReceipt: (r) => receipts.push(r) });
  const res = await cfetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${g.apiKey}` }, body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: prompt }] }) });
  const content = new Uint8Array(await res.arrayBuffer());
  await cfetch.receiptOf(res);
  return { receipt: receipts[0]!, bundle: cfetch.lastBundle!, body: content };
}

beforeAll(async () => {
  gw = await startTestGateway();
  other = await startTestGateway();
  ({ receipt, bundle, body } = await answered(gw, 'Summarise the quarterly report.'));
  proof = await (await fetch(`${gw.url}/.well-known/custody/ledger/proof/${receipt.ledger!.index}`)).text();
  base = { receipt, bundle, now: new Date(), jwks: gw.jwks!, allowSimulated: true, proof, tlogPolicy: parseTlogPolicy(gw.ledger.tlogPolicyText), response: body };
});
afterAll(async () => {
  await gw.close();
  await other.close();
});

describe('verifyReceiptOffline', () => {
  it('verifies every link: receipt, attested gateway at the answer time, binding, signature, ledger entry, response', async () => {
    for (const r of [receipt, encodeReceiptHeader(receipt), JSON.parse(JSON.stringify(receipt)) as unknown]) {
      const doc = await verifyReceiptOffline({ ...base, receipt: r });
      expect(doc.error).toBeUndefined();
      expect(doc.ok).toBe(true);
      expect(doc.steps.map((s) => [s.name, s.ok, s.ran])).toEqual([
        ['receipt', true, true],
        ['gateway', true, true],
        ['binding', true, true],
        ['signature', true, true],
        ['ledger', true, true],
        ['response', true, true],
      ]);
      expect(doc.attestedAt).toBe(new Date(receipt.timestamps.receivedAt).toISOString());
    }
  });

  it('without a broker JWKS, an appraisal policy over the raw evidence is enough (no caller nonce can exist for a past answer)', async () => {
    const { jwks: _j, ...rest } = base;
    const doc = await verifyReceiptOffline({ ...rest, policy: await loadPolicy(simPolicyYaml([gw.measurement])), verifiers: defaultRegistry });
    expect(doc.error, JSON.stringify(doc.error)).toBeUndefined();
    expect(doc.ok).toBe(true);
    const wrong = await verifyReceiptOffline({ ...rest, policy: await loadPolicy(simPolicyYaml(['d4'.repeat(48)])), verifiers: defaultRegistry });
    expect(wrong.error).toMatchObject({ step: 'gateway', code: 'ERR_EVIDENCE_MEASUREMENT' });
  });

  it('checks the attestation when the request was received: an answer that streamed for ten minutes still verifies', async () => {
    // The receipt is what the gateway signed; only its completion time is pretended later here, so
    // the signature step is not reached with a changed receipt: check the gateway step alone.
    const late = { ...receipt, timestamps: { ...receipt.timestamps, completedAt: new Date(Date.parse(receipt.timestamps.receivedAt) + 600_000).toISOString() } };
    const doc = await verifyReceiptOffline({ ...base, receipt: late });
    expect(doc.steps.find((x) => x.name === 'gateway')).toMatchObject({ ok: true, ran: true });
    expect(doc.error).toMatchObject({ step: 'signature', code: 'ERR_RECEIPT_SIGNATURE' });
  });

  it('without a proof or the response those steps are reported as not checked', async () => {
    const { proof: _p, response: _r, ...rest } = base;
    const doc = await verifyReceiptOffline(rest);
    expect(doc.ok).toBe(true);
    expect(doc.steps.filter((s) => !s.ran).map((s) => s.name)).toEqual(['ledger', 'response']);
  });

  const twins: { name: string; change: () => Promise<Partial<VerifyReceiptOfflineInput>> | Partial<VerifyReceiptOfflineInput>; step: string; code: RegExp }[] = [
    { name: 'not a receipt', change: () => ({ receipt: { ...receipt, format: 'other' } }), step: 'receipt', code: /^ERR_RECEIPT_MALFORMED$/ },
    { name: 'another broker JWKS', change: () => ({ jwks: other.jwks! }), step: 'gateway', code: /^ERR_EAR_/ },
    { name: 'simulated evidence not allowed (the default)', change: () => ({ allowSimulated: false }), step: 'gateway', code: /^ERR_/ },
    { name: 'another measurement pinned', change: () => ({ expectedMeasurements: { measurement: 'd4'.repeat(48) } }), step: 'gateway', code: /^ERR_EVIDENCE_MEASUREMENT$/ },
    { name: 'checked long after the EAR expired', change: () => ({ attestedAt: new Date(Date.parse(receipt.timestamps.completedAt) + 3_600_000) }), step: 'gateway', code: /^ERR_/ },
    { name: "another gateway's bundle", change: async () => ({ bundle: (await answered(other, 'x')).bundle, jwks: other.jwks! }), step: 'binding', code: /^ERR_RECEIPT_MISMATCH$/ },
    { name: 'a changed status (signature no longer holds)', change: () => ({ receipt: { ...receipt, response: { ...receipt.response, status: 201 } } }), step: 'signature', code: /^ERR_RECEIPT_SIGNATURE$/ },
    { name: 'a flipped signature byte', change: () => ({ receipt: { ...receipt, signature: { ...receipt.signature, value: (receipt.signature.value[0] === 'A' ? 'B' : 'A') + receipt.signature.value.slice(1) } } }), step: 'signature', code: /^ERR_RECEIPT_SIGNATURE$/ },
    { name: 'another log key', change: async () => ({ tlogPolicy: parseTlogPolicy((await (await import('./ledger/ledger-sink.js')).InMemoryLedgerSink.create('custody.dev/other-log')).tlogPolicyText) }), step: 'ledger', code: /^ERR_(NOTE|TLOG)_/ },
    { name: "another entry's proof", change: async () => ({ proof: await (await fetch(`${gw.url}/.well-known/custody/ledger/proof/${receipt.ledger!.index - 1}`)).text() }), step: 'ledger', code: /^ERR_(TLOG|NOTE)_/ },
    { name: 'a proof without its log policy', change: () => ({ tlogPolicy: undefined }), step: 'ledger', code: /^ERR_USAGE$/ },
    { name: 'another response', change: () => ({ response: new TextEncoder().encode(new TextDecoder().decode(body).replace('}', ' }')) }), step: 'response', code: /^ERR_RECEIPT_MISMATCH$/ },
  ];
  for (const t of twins) {
    it(`refuses ${t.name} at step ${t.step}`, async () => {
      const input: VerifyReceiptOfflineInput = { ...base, ...(await t.change()) };
      if ('tlogPolicy' in input && input.tlogPolicy === undefined) delete input.tlogPolicy;
      const doc = await verifyReceiptOffline(input);
      expect(doc.ok).toBe(false);
      expect(doc.error?.step).toBe(t.step);
      expect(doc.error?.code).toMatch(t.code);
      // Steps after the failure did not run.
      const at = doc.steps.findIndex((s) => !s.ok);
      expect(doc.steps.slice(at + 1).every((s) => !s.ran)).toBe(true);
    });
  }
});

describe('the bundle a receipt names, after the gateway re-attested (bundleFor, ?digest=)', () => {
  it('a receipt answered in a later round names a newer bundle than lastBundle; the gateway still serves the one it names, directly and through the relay', async () => {
    const g = await startTestGateway();
    const relay = await listen(createRelayApp({ gateway: g.url }));
    try {
      const receipts: Receipt[] = [];
      const cfetch = createConfidentialFetch({ gateway: g.url, relay: relay.url, jwks: g.jwks!, allowSimulated: true, onReceipt: (r) => receipts.push(r) });
      const ask = async () => {
        const res = await cfetch(`${g.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${g.apiKey}` }, body: JSON.stringify({ model: DEMO_MODEL_ID, messages: [{ role: 'user', content: 'Name a colour.' }] }) });
        const content = new Uint8Array(await res.arrayBuffer());
        await cfetch.receiptOf(res);
        return { receipt: receipts.at(-1)!, content };
      };
      const first = await ask();
      expect(await cfetch.bundleFor(first.receipt)).toBe(cfetch.lastBundle);
      await g.gateway.attestation.reattest();
      const later = await ask();
      // The client's verification is still cached: its bundle is the earlier round's.
      expect(later.receipt.gateway.attestationDigest).not.toBe(first.receipt.gateway.attestationDigest);
      await expect(verifyReceiptOffline({ receipt: later.receipt, bundle: cfetch.lastBundle!, now: new Date(), jwks: g.jwks!, allowSimulated: true })).resolves.toMatchObject({ error: { step: 'binding', code: 'ERR_RECEIPT_MISMATCH' } });
      const named = await cfetch.bundleFor(later.receipt);
      expect(named).not.toBe(cfetch.lastBundle);
      const doc = await verifyReceiptOffline({ receipt: later.receipt, bundle: named, now: new Date(), jwks: g.jwks!, allowSimulated: true, response: later.content });
      expect(doc.error, JSON.stringify(doc.error)).toBeUndefined();
      // The first round's bundle is still served, by its digest, to anyone.
      const res = await fetch(`${g.url}/.well-known/custody/attestation?digest=${first.receipt.gateway.attestationDigest}`);
      expect(res.status).toBe(200);
      expect(res.headers.get('cache-control')).toContain('max-age');
      expect(((await res.json()) as AttestationBundle).ear).toBe(cfetch.lastBundle!.ear);
    } finally {
      await relay.close();
      await g.close();
    }
  });

  it('an unknown digest is 404 ERR_GATEWAY_BUNDLE_UNKNOWN, a malformed one 400; a gateway that answers another bundle is refused', async () => {
    const unknown = await fetch(`${gw.url}/.well-known/custody/attestation?digest=sha256:${'ab'.repeat(32)}`);
    expect(unknown.status).toBe(404);
    expect(((await unknown.json()) as { code: string }).code).toBe('ERR_GATEWAY_BUNDLE_UNKNOWN');
    const malformed = await fetch(`${gw.url}/.well-known/custody/attestation?digest=sha256:XYZ`);
    expect(malformed.status).toBe(400);
    // A gateway (or anyone on the path) answering with another bundle: the digest does not match.
    const liar = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, fetch: (input, init) => ((typeof input === 'string' ? input : input instanceof URL ? input.href : input.url).includes('?digest=') ? Promise.resolve(Response.json(other.gateway.attestation.snapshot!.bundle)) : fetch(input, init)) });
    await expect(liar.bundleFor({ ...receipt, gateway: { ...receipt.gateway, attestationDigest: `sha256:${'cd'.repeat(32)}` } })).rejects.toMatchObject({ code: 'ERR_SDK_DISCOVERY' });
    const gone = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    await expect(gone.bundleFor({ ...receipt, gateway: { ...receipt.gateway, attestationDigest: `sha256:${'ab'.repeat(32)}` } })).rejects.toMatchObject({ code: 'ERR_GATEWAY_BUNDLE_UNKNOWN' });
  });
});
