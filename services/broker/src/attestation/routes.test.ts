// POST /v1/attest against bodies built to cost the broker time before it answers: a body's
// structure is bounded before it is parsed (values, nesting, collateral entries), and its base64
// is decoded only for a session that exists, so a client without one gets its answer cheaply.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64Url, toBase64 } from '@custody/core';
import { SimAttester } from '@custody/attester-service';
import { createBrokerApp } from '../http/app.js';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { embeddedBackend, type Harness } from '../testing/harness.js';
import { simPolicy } from '../testing/handshake.js';
import { AppraisalPolicies } from './appraisal-policies.js';
import { EarSigner } from './ear-signer.js';
import { AttestationService, MAX_COLLATERAL_ENTRIES } from './handshake.js';
import { MAX_ATTEST_BODY } from './routes.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { generateTeeKeyPair } from './workload-client.js';

const M = 'a1'.repeat(48);
const sim = new SimAttester({ measurements: { measurement: M } });
const NO_SESSION = 'ses_00000000-0000-0000-0000-000000000000';

/** `prefix`, then as many `item(i)` joined by `sep` as fit a body of the largest size, then `suffix`. */
function fill(prefix: string, item: (i: number) => string, sep: string, suffix: string): string {
  const parts: string[] = [];
  let len = prefix.length + suffix.length;
  for (let i = 0; ; i++) {
    const it = item(i);
    if (len + it.length + sep.length > MAX_ATTEST_BODY - 64) break;
    parts.push(it);
    len += it.length + sep.length;
  }
  return prefix + parts.join(sep) + suffix;
}

describe('POST /v1/attest: the work a body can cost', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let svc: AttestationService;
  let app: ReturnType<typeof createBrokerApp>;

  beforeAll(async () => {
    h = await backend.open();
    svc = new AttestationService({
      keys: h.service,
      sessions: h.metadata,
      recipientCurves: h.keystore.capabilities.recipientCurves,
      policies: await AppraisalPolicies.load({ defaultPolicy: { text: simPolicy([M]) } }),
      signer: await EarSigner.inMemory(),
      audit: new InMemoryAuditSinkTestDouble(),
    });
    app = createBrokerApp({ service: h.service, apiKeys: h.metadata, attestation: svc, challengeLimiter: false });
  });
  afterAll(async () => h?.close());

  async function post(body: string | object): Promise<{ status: number; json: Record<string, unknown> }> {
    const res = await app.request('/v1/attest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  }

  async function present() {
    const c = await svc.challenge('acme');
    const runtimeData = buildRuntimeData(fromBase64Url(c.nonce), generateTeeKeyPair().recipient);
    const evidence = await sim.collect(await runtimeDigest('sim', runtimeData));
    return { session: c.session, evidence: toBase64(evidence), runtimeData, platform: 'sim' };
  }

  it('refuses bodies with more values or deeper nesting than any attestation has, before parsing them (413)', async () => {
    const hostile: Record<string, string> = {
      // 385 000 one-character collateral entries: about 4 s of parsing, schema and base64 before.
      manyCollateral: fill(`{"session":"${NO_SESSION}","evidence":"AA==","runtimeData":"x","collateral":{`, (i) => `"k${i.toString(36)}":""`, ',', '}}'),
      manyUnknownMembers: fill(`{"session":"${NO_SESSION}","evidence":"AA==","runtimeData":"x",`, (i) => `"u${i.toString(36)}":0`, ',', ',"zz":0}'),
      manyNumbers: fill(`{"session":"${NO_SESSION}","evidence":"AA==","runtimeData":"x","certs":[`, () => '1e308', ',', ']}'),
      deepArray: `{"certs":${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}}`,
    };
    for (const [label, body] of Object.entries(hostile)) {
      const r = await post(body);
      expect([label, r.status, r.json.code]).toEqual([label, 413, 'ERR_INPUT_TOO_LARGE']);
      expect((r.json.facts as Record<string, unknown>).bound).toMatch(/^(values|depth)$/);
    }
  });

  it(`takes at most ${MAX_COLLATERAL_ENTRIES} collateral entries`, async () => {
    const entries = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`c${i}`, 'AA==']));
    const base = { session: NO_SESSION, evidence: 'AA==', runtimeData: 'x' };
    expect(await post({ ...base, collateral: entries(MAX_COLLATERAL_ENTRIES + 1) })).toMatchObject({ status: 400, json: { code: 'ERR_INPUT_MALFORMED', detail: 'invalid request body at collateral: too_big' } });
    // As many as allowed: on to the session, which does not exist.
    expect(await post({ ...base, collateral: entries(MAX_COLLATERAL_ENTRIES) })).toMatchObject({ status: 404, json: { code: 'ERR_SESSION_NOT_FOUND' } });
    // The service holds to the same bound for callers in process.
    const p = await present();
    await expect(svc.attest({ ...p, evidence: new Uint8Array(1), collateral: Object.fromEntries(Array.from({ length: MAX_COLLATERAL_ENTRIES + 1 }, (_, i) => [`c${i}`, new Uint8Array(1)])) })).rejects.toMatchObject({
      code: 'ERR_INPUT_TOO_LARGE',
      detail: { collateral: MAX_COLLATERAL_ENTRIES + 1 },
    });
  });

  it('decodes base64 only for a session that exists, and before its nonce is spent', async () => {
    // No such session: answered without decoding a byte (bad base64 is not even noticed).
    expect(await post({ session: NO_SESSION, evidence: '!!not base64!!', runtimeData: 'x', certs: ['!!'], collateral: { tcbInfo: '!!' } })).toMatchObject({ status: 404, json: { code: 'ERR_SESSION_NOT_FOUND' } });
    // A real session: bad base64 is refused, and the nonce still answers.
    const p = await present();
    for (const bad of [{ evidence: '!!not base64!!' }, { certs: ['!!'] }, { collateral: { tcbInfo: '!!' } }]) {
      expect(await post({ ...p, ...bad })).toMatchObject({ status: 400, json: { code: 'ERR_INPUT_MALFORMED' } });
    }
    expect(await post(p)).toMatchObject({ status: 200, json: { status: 'affirming', platform: 'sim' } });
  });
});

describe('arriving bodies: challenges and key releases have their own share', () => {
  const backend = embeddedBackend();
  let h: Harness;

  beforeAll(async () => {
    h = await backend.open();
  });
  afterAll(async () => h?.close());

  it('attestation bodies held open up to the budget do not keep a challenge from being read', async () => {
    const svc = new AttestationService({
      keys: h.service,
      sessions: h.metadata,
      recipientCurves: h.keystore.capabilities.recipientCurves,
      policies: await AppraisalPolicies.load({ defaultPolicy: { text: simPolicy([M]) } }),
      signer: await EarSigner.inMemory(),
      audit: new InMemoryAuditSinkTestDouble(),
    });
    const app = createBrokerApp({ service: h.service, apiKeys: h.metadata, attestation: svc, challengeLimiter: false, maxArrivingBodyBytes: 64 * 1024 });
    let feed!: ReadableStreamDefaultController<Uint8Array>;
    const held = new ReadableStream<Uint8Array>({ start: (c) => void (feed = c) });
    // Within 4 bytes of the whole budget: no other body fits beside it.
    const head = `{"session":"${NO_SESSION}","evidence":"`;
    feed.enqueue(new TextEncoder().encode(head + 'A'.repeat(64 * 1024 - 4 - head.length)));
    const first = app.request(new Request('http://broker/v1/attest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: held, duplex: 'half' } as RequestInit));
    await new Promise((r) => setTimeout(r, 50));
    // The large budget is full: another attestation body is refused, retry later.
    const another = await app.request('/v1/attest', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ session: NO_SESSION, evidence: 'A'.repeat(8 * 1024) }) });
    expect([another.status, another.headers.get('x-custody-code')]).toEqual([503, 'ERR_SERVICE_UNAVAILABLE']);
    // A challenge is read from its own share.
    const challenge = await app.request('/v1/attest/challenge', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenant: 'acme' }) });
    expect(challenge.status).toBe(201);
    feed.enqueue(new TextEncoder().encode('"}'));
    feed.close();
    expect((await first).status).toBe(400);
  });
});
