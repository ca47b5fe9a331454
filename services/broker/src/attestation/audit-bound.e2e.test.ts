// Refusals on one session are appended to the audit log a bounded number of times, and always in
// the session's tenant's trail: a client holding one session (from its own rate-limited challenge)
// cannot grow the ledger without bound, nor file refusals under another tenant.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import { attestWith, simPolicy, startHandshakeBroker, type HandshakeBroker } from '../testing/handshake.js';

const GOOD = 'a1'.repeat(48);

describe('refusals on one session', () => {
  let b: HandshakeBroker;
  beforeAll(async () => {
    b = await startHandshakeBroker({ policy: simPolicy([GOOD]) });
  });
  afterAll(async () => b?.close());

  it('100 junk releases naming another tenant and 100 junk attestations add at most 3 events, none in the other tenant', async () => {
    const ch = (await (await fetch(`${b.url}/v1/attest/challenge`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tenant: 'acme' }) })).json()) as { session: string };
    const before = b.ledger.events.length;
    const N = 100;
    for (let i = 0; i < N; i++) {
      const r = await fetch(`${b.url}/v1/keys/anything/release`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: 'Bearer x.y.z' },
        // A tenant chosen by the caller: the refusal is still filed under the session's tenant.
        body: JSON.stringify({ session: ch.session, tenant: 'victim' }),
      });
      expect(r.status).toBe(401);
      const a = await fetch(`${b.url}/v1/attest`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ session: ch.session, evidence: 'AA==', runtimeData: '{}' }),
      });
      expect(a.status).toBeGreaterThanOrEqual(400);
    }
    const added = b.ledger.events.slice(before);
    const victim = added.filter((e) => e.tenant === 'victim').length;
    expect(victim).toBe(0);
    expect(added.length).toBeGreaterThan(0);
    expect(added.length).toBeLessThanOrEqual(3);
    expect(added.every((e) => e.tenant === 'acme' && e.verdict === 'deny')).toBe(true);
  });

  it('an attested session asking for keys it cannot have (unknown, badly named, refused by policy) adds at most 3 events, each small', async () => {
    await b.admin.importKey({ name: 'guarded', type: 'aes-256', material: new Uint8Array(32).fill(1), releasePolicy: "platform == 'nitro'" });
    const a = await attestWith(b.workload, 'acme', new SimAttester({ measurements: { measurement: GOOD } }));
    const before = b.ledger.events.length;
    const names = ['guarded', 'missing', 'x'.repeat(20_000), '-bad-'];
    const codes = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const r = await fetch(`${b.url}/v1/keys/${names[i % names.length]!}/release`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${a.attested.ear}` },
        body: JSON.stringify({ session: a.challenge.session }),
      });
      codes.add(((await r.json()) as { code: string }).code);
    }
    expect([...codes].sort()).toEqual(['ERR_KEY_NAME', 'ERR_KEY_NOT_FOUND', 'ERR_POLICY_DENIED']);
    const added = b.ledger.lines.slice(before);
    expect(added.length).toBeGreaterThan(0);
    expect(added.length).toBeLessThanOrEqual(3);
    for (const line of added) expect(line.length).toBeLessThan(2048);
  });
});
