// Appraisal policies set through the admin API (PUT/GET /v1/policy) over HTTP on loopback with
// sim evidence: the next attestation is appraised with the stored policy, invalid policies
// change nothing, only admins write, tenants are isolated, and the change is audited first,
// without the policy text.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import { toCustodyEvent } from '@custody/ledger';
import { BrokerAdminClient } from '../http/client.js';
import { attestWith, codeOf, releaseWith, simPolicy, startHandshakeBroker, statusOf, type HandshakeBroker } from '../testing/handshake.js';

const GOOD = 'a1'.repeat(48);
const OTHER = 'b2'.repeat(48);
const sim = (measurement = GOOD) => new SimAttester({ measurements: { measurement } });
const MARKER = 'policy-text-marker-7f3a';

describe('PUT/GET /v1/policy over HTTP', () => {
  let b: HandshakeBroker;
  let auditor: BrokerAdminClient;
  let workloadKey: string;
  let globex: BrokerAdminClient;
  const material = randomBytes(32);

  // `connection: close`: a body refused before it was read leaves no half-read socket in the pool.
  const put = (token: string, body: string, type = 'application/yaml', query = '') =>
    fetch(`${b.url}/v1/policy${query}`, { method: 'PUT', headers: { authorization: `Bearer ${token}`, 'content-type': type, connection: 'close' }, body });

  beforeAll(async () => {
    // No file policy: every tenant starts on the default deny policy.
    b = await startHandshakeBroker();
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: `status == 'affirming' && platform == 'sim'` });
    auditor = new BrokerAdminClient({ baseUrl: b.url, apiKey: (await b.admin.createApiKey('auditor', 'a')).token });
    workloadKey = (await b.admin.createApiKey('workload', 'w')).token;
    globex = new BrokerAdminClient({ baseUrl: b.url, apiKey: (await b.started.broker.service.bootstrapAdminKey('globex', 'test')).token });
  }, 60_000);
  afterAll(async () => b?.close());

  it('a stored policy is in force from the next attestation on, and can be replaced', async () => {
    expect(await b.admin.getPolicy()).toMatchObject({ tenant: 'acme', source: 'file', id: 'default-deny', version: 1 });
    expect(await codeOf(attestWith(b.workload, 'acme', sim()))).toBe('ERR_EVIDENCE_SIMULATED');

    const text = simPolicy([GOOD], `description: ${MARKER}\n`);
    const set = await b.admin.setPolicy(text);
    expect(set).toMatchObject({ tenant: 'acme', source: 'stored', id: 'sim-workload', version: 1, revision: 1, text });
    expect(set.policyId).toBe(`custody:policy:sim-workload:1:sha256:${set.digest}`);

    const a = await attestWith(b.workload, 'acme', sim());
    expect(a.attested).toMatchObject({ status: 'affirming', policyId: set.policyId });
    const { material: got } = await releaseWith(b.workload, 'acme', a, 'dk');
    expect(Buffer.from(got).equals(material)).toBe(true);

    // Vice versa: a new version that no longer lists GOOD denies it at the next attestation.
    const v2 = await b.admin.setPolicy(simPolicy([OTHER]).replace('version: 1', 'version: 2'));
    expect(v2).toMatchObject({ source: 'stored', version: 2, revision: 2 });
    expect(await codeOf(attestWith(b.workload, 'acme', sim()))).toBe('ERR_EVIDENCE_MEASUREMENT');
    expect((await attestWith(b.workload, 'acme', sim(OTHER))).attested.policyId).toBe(v2.policyId);

    // JSON is accepted too.
    const json = JSON.stringify({ apiVersion: 'custody.dev/policy/v1', id: 'sim-json', version: 3, allowSimulated: true, platforms: { sim: { measurement: [GOOD] } } });
    expect(await b.admin.setPolicy(json)).toMatchObject({ id: 'sim-json', version: 3, revision: 3, text: json });
    expect((await attestWith(b.workload, 'acme', sim())).attested.status).toBe('affirming');
    expect(await b.admin.getPolicy()).toMatchObject({ source: 'stored', id: 'sim-json', revision: 3, updatedBy: expect.stringMatching(/^apikey:/) as unknown });
  });

  it('refuses an invalid policy with ERR_POLICY_INVALID (400); the previous one stays in force', async () => {
    const before = await b.admin.getPolicy();
    for (const bad of ['apiVersion: custody.dev/policy/v1\nid: x\n', 'not: [valid', '{"apiVersion": 1}', '', simPolicy([GOOD], 'rules:\n  - id: r\n    claim: executables\n    expr: "this is not CEL ("\n    fail: contraindicated\n    code: ERR_POLICY_DENIED\n    reason: r\n')]) {
      expect(await codeOf(b.admin.setPolicy(bad))).toBe('ERR_POLICY_INVALID');
      expect(await statusOf(b.admin.setPolicy(bad))).toBe(400);
    }
    expect(await b.admin.getPolicy()).toEqual(before);
    expect((await attestWith(b.workload, 'acme', sim())).attested.policyId).toBe(before.policyId);

    const unsupported = await put(b.started.adminKey!, simPolicy([GOOD]), 'application/octet-stream');
    expect([unsupported.status, unsupported.headers.get('x-custody-code')]).toEqual([415, 'ERR_INPUT_UNSUPPORTED']);
    const huge = await put(b.started.adminKey!, simPolicy([GOOD], `description: "${'x'.repeat(1024 * 1024)}"\n`));
    expect([huge.status, huge.headers.get('x-custody-code')]).toEqual([413, 'ERR_INPUT_TOO_LARGE']);
    expect(await b.admin.getPolicy()).toEqual(before);
  });

  it('accepts a policy larger than the general 128 KiB body limit, up to MAX_POLICY_BYTES', async () => {
    // Comments count towards the size: 200 KiB of them around a valid policy.
    const big = `${`# ${'c'.repeat(1022)}\n`.repeat(200)}${simPolicy([GOOD]).replace('id: sim-workload', 'id: sim-big')}`;
    const res = await put(b.started.adminKey!, big);
    expect(res.status, await res.clone().text()).toBe(200);
    expect(((await res.json()) as { id: string }).id).toBe('sim-big');
  });

  it('only admins set; auditors read; workload keys neither; every refusal is audited', async () => {
    const before = await b.admin.getPolicy();
    expect(await auditor.getPolicy()).toEqual(before);
    expect(await codeOf(auditor.setPolicy(simPolicy([OTHER])))).toBe('ERR_AUTH_ROLE');
    expect(await statusOf(auditor.setPolicy(simPolicy([OTHER])))).toBe(403);
    const w = new BrokerAdminClient({ baseUrl: b.url, apiKey: workloadKey });
    expect(await codeOf(w.setPolicy(simPolicy([OTHER])))).toBe('ERR_AUTH_ROLE');
    expect(await codeOf(w.getPolicy())).toBe('ERR_AUTH_ROLE');
    expect(await codeOf(new BrokerAdminClient({ baseUrl: b.url, apiKey: 'cst_nope' }).setPolicy(simPolicy([OTHER])))).toMatch(/^ERR_AUTH_/);
    const unauth = await fetch(`${b.url}/v1/policy`, { method: 'PUT', headers: { 'content-type': 'application/yaml' }, body: simPolicy([OTHER]) });
    expect(unauth.status).toBe(401);
    expect(await b.admin.getPolicy()).toEqual(before);
    const denials = b.ledger.events.filter((e) => e.action === 'auth.denied' && e.actor.role === 'auditor');
    expect(denials.at(-1)).toMatchObject({ verdict: 'deny', reason: 'ERR_AUTH_ROLE', detail: { attempted: 'policy.set' } });
  });

  it('keeps tenants apart', async () => {
    // acme's stored policy does not apply to globex, which stays on the file (deny) policy.
    expect(await globex.getPolicy()).toMatchObject({ tenant: 'globex', source: 'file', id: 'default-deny' });
    expect(await codeOf(attestWith(b.workload, 'globex', sim()))).toBe('ERR_EVIDENCE_SIMULATED');
    // acme's admin cannot read or set globex's policy.
    const cross = await put(b.started.adminKey!, simPolicy([GOOD]), 'application/yaml', '?tenant=globex');
    expect([cross.status, cross.headers.get('x-custody-code')]).toEqual([403, 'ERR_AUTH_TENANT']);
    const crossGet = await fetch(`${b.url}/v1/policy?tenant=globex`, { headers: { authorization: `Bearer ${b.started.adminKey!}` } });
    expect(crossGet.headers.get('x-custody-code')).toBe('ERR_AUTH_TENANT');
    // globex sets its own; acme's is unchanged.
    const acme = await b.admin.getPolicy();
    await globex.setPolicy(simPolicy([OTHER]).replace('id: sim-workload', 'id: globex-sim'));
    expect((await attestWith(b.workload, 'globex', sim(OTHER))).attested.status).toBe('affirming');
    expect(await codeOf(attestWith(b.workload, 'globex', sim(GOOD)))).toBe('ERR_EVIDENCE_MEASUREMENT');
    expect(await b.admin.getPolicy()).toEqual(acme);
    expect((await attestWith(b.workload, 'acme', sim(GOOD))).attested.status).toBe('affirming');
  });

  it('audits policy.changed before the change takes effect, with id, version and digest, never the text', async () => {
    const changes = b.ledger.events.filter((e) => e.action === 'policy.changed');
    expect(changes.length).toBeGreaterThanOrEqual(5);
    const first = changes[0]!;
    expect(first).toMatchObject({ tenant: 'acme', verdict: 'allow', actor: { tenant: 'acme', role: 'admin' }, detail: { policyId: 'sim-workload', policyVersion: 1 } });
    expect(first.detail!.policyDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(changes.some((e) => e.tenant === 'globex' && e.detail?.policyId === 'globex-sim')).toBe(true);
    for (const line of b.ledger.lines) expect(line).not.toContain(MARKER);
    // The transparency ledger accepts them as they are (its secrets rule on detail facts).
    for (const e of changes) expect(() => toCustodyEvent(e)).not.toThrow();
    for (const line of b.logLines) expect(line).not.toContain(MARKER);
    // The audit sink down (ledger and interim table): nothing changes.
    const before = await b.admin.getPolicy();
    b.ledger.failing = true;
    const interim = b.started.broker.metadata;
    const append = interim.appendAudit.bind(interim);
    interim.appendAudit = () => Promise.reject(new Error('down'));
    try {
      expect(await codeOf(b.admin.setPolicy(simPolicy([OTHER]).replace('version: 1', 'version: 9')))).toBe('ERR_STORE_AUDIT_UNAVAILABLE');
    } finally {
      b.ledger.failing = false;
      interim.appendAudit = append;
    }
    expect(await b.admin.getPolicy()).toEqual(before);
  });
});
