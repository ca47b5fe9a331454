// AttestationService in process (no HTTP): no audit record, no EAR; metrics by outcome; the
// session binding written for the release.
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromBase64Url } from '@custody/core';
import { SimAttester } from '@custody/attester-service';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { embeddedBackend, type Harness } from '../testing/harness.js';
import { simPolicy } from '../testing/handshake.js';
import { AppraisalPolicies } from './appraisal-policies.js';
import { EarSigner } from './ear-signer.js';
import { AttestationService } from './handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { generateTeeKeyPair } from './workload-client.js';

const M = 'a1'.repeat(48);

describe('AttestationService', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let audit: InMemoryAuditSinkTestDouble;
  let metrics: Registry;
  let svc: AttestationService;

  beforeEach(async () => {
    h = await backend.open();
    audit = new InMemoryAuditSinkTestDouble();
    metrics = new Registry();
    svc = new AttestationService({
      keys: h.service,
      sessions: h.metadata,
      recipientCurves: h.keystore.capabilities.recipientCurves,
      policies: await AppraisalPolicies.load({ defaultPolicy: { text: simPolicy([M]) } }),
      signer: await EarSigner.inMemory(),
      audit,
      metrics,
    });
  });
  afterEach(async () => h.close());

  async function present(measurement = M) {
    const c = await svc.challenge('acme');
    const tee = generateTeeKeyPair();
    const runtimeData = buildRuntimeData(fromBase64Url(c.nonce), tee.recipient);
    const evidence = await new SimAttester({ measurements: { measurement } }).collect(await runtimeDigest('sim', runtimeData));
    return { c, tee, run: () => svc.attest({ session: c.session, evidence, runtimeData, platform: 'sim' }) };
  }

  it('binds the session to the EAR and the TEE key, and counts outcomes', async () => {
    const ok = await present();
    const r = await ok.run();
    const session = await h.metadata.getSession(ok.c.session);
    expect(session).toMatchObject({ state: 'attested', binding: { earDigest: expect.stringMatching(/^[0-9a-f]{64}$/), recipientSha256: expect.stringMatching(/^X25519:[0-9a-f]{64}$/) } });
    expect(session!.expiresAt).toBe(Date.parse(r.expiresAt));
    await expect((await present('b2'.repeat(48))).run()).rejects.toMatchObject({ code: 'ERR_EVIDENCE_MEASUREMENT' });
    const text = await metrics.metrics();
    expect(text).toContain('custody_broker_attestations_total{platform="sim",outcome="allow"} 1');
    expect(text).toContain('custody_broker_attestations_total{platform="sim",outcome="ERR_EVIDENCE_MEASUREMENT"} 1');
  });

  it('issues no EAR when the appraisal cannot be recorded, and closes the session', async () => {
    const p = await present();
    audit.failing = true;
    await expect(p.run()).rejects.toMatchObject({ code: 'ERR_STORE_AUDIT_UNAVAILABLE', detail: { applied: false } });
    expect(await h.metadata.getSession(p.c.session)).toMatchObject({ state: 'closed' });
  });

  it('validates its settings', async () => {
    const base = { keys: h.service, sessions: h.metadata, recipientCurves: h.keystore.capabilities.recipientCurves, policies: await AppraisalPolicies.load(), signer: await EarSigner.inMemory(), audit };
    expect(() => new AttestationService({ ...base, nonceTtlSeconds: 600, sessionTtlSeconds: 300 })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    expect(() => new AttestationService({ ...base, earTtlSeconds: 0 })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    await expect(new AttestationService(base).challenge('Bad Tenant')).rejects.toMatchObject({ code: 'ERR_KEY_NAME' });
  });
});
