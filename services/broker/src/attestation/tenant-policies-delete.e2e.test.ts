// DELETE /v1/policy over HTTP on loopback with sim evidence: an admin drops the tenant's stored
// appraisal policy and the broker's file policy is in force from the next attestation on;
// auditors and workload keys are refused (and the refusals audited); the change is audited
// first like a set (digest and version, never the text); a second delete is 404.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import { toCustodyEvent } from '@custody/ledger';
import { BrokerAdminClient } from '../http/client.js';
import { attestWith, codeOf, releaseWith, simPolicy, startHandshakeBroker, statusOf, type HandshakeBroker } from '../testing/handshake.js';

const GOOD = 'a1'.repeat(48);
const OTHER = 'b2'.repeat(48);
const sim = (measurement = GOOD) => new SimAttester({ measurements: { measurement } });
const MARKER = 'delete-policy-text-marker-91c2';
const FILE_POLICY = simPolicy([OTHER]).replace('id: sim-workload', 'id: file-default');

describe('DELETE /v1/policy over HTTP', () => {
  let b: HandshakeBroker;
  let auditor: BrokerAdminClient;
  let workload: BrokerAdminClient;
  const material = randomBytes(32);

  const del = (token: string, query = '') => fetch(`${b.url}/v1/policy${query}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } });

  beforeAll(async () => {
    // The broker's default file policy accepts OTHER only.
    b = await startHandshakeBroker({ policy: FILE_POLICY });
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: `status == 'affirming' && platform == 'sim'` });
    auditor = new BrokerAdminClient({ baseUrl: b.url, apiKey: (await b.admin.createApiKey('auditor', 'a')).token });
    workload = new BrokerAdminClient({ baseUrl: b.url, apiKey: (await b.admin.createApiKey('workload', 'w')).token });
  }, 60_000);
  afterAll(async () => b?.close());

  it('only an admin deletes; auditor and workload keys are refused and audited; nothing changes for them', async () => {
    const stored = await b.admin.setPolicy(simPolicy([GOOD], `description: ${MARKER}\n`));
    expect((await attestWith(b.workload, 'acme', sim())).attested.policyId).toBe(stored.policyId);

    expect(await codeOf(auditor.deletePolicy())).toBe('ERR_AUTH_ROLE');
    expect(await statusOf(auditor.deletePolicy())).toBe(403);
    expect(await codeOf(workload.deletePolicy())).toBe('ERR_AUTH_ROLE');
    expect(await codeOf(new BrokerAdminClient({ baseUrl: b.url, apiKey: 'cst_nope' }).deletePolicy())).toMatch(/^ERR_AUTH_/);
    expect((await fetch(`${b.url}/v1/policy`, { method: 'DELETE' })).status).toBe(401);
    // Another tenant's policy: refused whoever asks.
    const cross = await del(b.started.adminKey!, '?tenant=globex');
    expect([cross.status, cross.headers.get('x-custody-code')]).toEqual([403, 'ERR_AUTH_TENANT']);

    expect(await b.admin.getPolicy()).toMatchObject({ source: 'stored', policyId: stored.policyId });
    const denials = b.ledger.events.filter((e) => e.action === 'auth.denied');
    expect(denials.some((e) => e.actor.role === 'auditor' && e.detail?.attempted === 'policy.delete' && e.reason === 'ERR_AUTH_ROLE')).toBe(true);
    expect(denials.some((e) => e.actor.role === 'workload' && e.reason === 'ERR_AUTH_ROLE' && String(e.detail?.attempted).startsWith('DELETE /v1/policy'))).toBe(true);
    expect(b.ledger.events.filter((e) => e.action === 'policy.changed' && e.detail?.operation === 'delete')).toEqual([]);
  });

  it('an admin delete puts the file policy in force from the next attestation on, audited first', async () => {
    const stored = await b.admin.getPolicy();
    const before = b.ledger.events.length;
    const res = await b.admin.deletePolicy('acme');
    expect(res).toMatchObject({
      tenant: 'acme',
      deleted: { id: 'sim-workload', version: 1, digest: stored.digest, policyId: stored.policyId, revision: stored.revision },
      inForce: { tenant: 'acme', source: 'file', id: 'file-default' },
    });
    expect(res.inForce).not.toHaveProperty('text');
    expect(await b.admin.getPolicy()).toEqual(res.inForce);
    expect(await auditor.getPolicy()).toEqual(res.inForce);

    // GOOD was allowed only by the stored policy; the file policy wants OTHER.
    expect(await codeOf(attestWith(b.workload, 'acme', sim(GOOD)))).toBe('ERR_EVIDENCE_MEASUREMENT');
    const a = await attestWith(b.workload, 'acme', sim(OTHER));
    expect(a.attested).toMatchObject({ status: 'affirming', policyId: res.inForce.policyId });
    expect(Buffer.from((await releaseWith(b.workload, 'acme', a, 'dk')).material).equals(material)).toBe(true);

    const change = b.ledger.events.slice(before).find((e) => e.action === 'policy.changed')!;
    expect(change).toMatchObject({
      tenant: 'acme',
      verdict: 'allow',
      actor: { tenant: 'acme', role: 'admin' },
      detail: { operation: 'delete', policyId: 'sim-workload', policyVersion: 1, policyDigest: `sha256:${stored.digest}`, revision: stored.revision, fallbackPolicyId: 'file-default', fallbackPolicyVersion: 1 },
    });
    expect(change.detail!.fallbackPolicyDigest).toBe(`sha256:${res.inForce.digest}`);
    expect(() => toCustodyEvent(change)).not.toThrow();
    for (const line of [...b.ledger.lines, ...b.logLines]) expect(line).not.toContain(MARKER);
  });

  it('a delete with nothing stored is 404 ERR_POLICY_NOT_STORED and audits nothing', async () => {
    const before = b.ledger.events.length;
    const res = await del(b.started.adminKey!);
    expect([res.status, res.headers.get('x-custody-code'), res.headers.get('content-type')]).toEqual([404, 'ERR_POLICY_NOT_STORED', 'application/problem+json']);
    expect(await codeOf(b.admin.deletePolicy())).toBe('ERR_POLICY_NOT_STORED');
    expect(b.ledger.events.length).toBe(before);
  });

  it('with the audit sink down nothing is deleted (503 ERR_STORE_AUDIT_UNAVAILABLE)', async () => {
    const stored = await b.admin.setPolicy(simPolicy([GOOD]));
    b.ledger.failing = true;
    const interim = b.started.broker.metadata;
    const append = interim.appendAudit.bind(interim);
    interim.appendAudit = () => Promise.reject(new Error('down'));
    try {
      expect(await codeOf(b.admin.deletePolicy())).toBe('ERR_STORE_AUDIT_UNAVAILABLE');
      expect(await statusOf(b.admin.deletePolicy())).toBe(503);
    } finally {
      b.ledger.failing = false;
      interim.appendAudit = append;
    }
    expect(await b.admin.getPolicy()).toMatchObject({ source: 'stored', policyId: stored.policyId });
    expect((await attestWith(b.workload, 'acme', sim(GOOD))).attested.policyId).toBe(stored.policyId);
  });
});
