// Two AttestationServices (replicas) on one metadata store sharing one EAR key file: after a
// rotation the replica that re-read the file signs with the new key, and the other verifies
// that EAR by re-reading the file when it meets the unknown kid. Also: a signer whose maximum
// EAR lifetime is shorter than the EARs the service would issue is refused at construction.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromBase64Url } from '@custody/core';
import { SimAttester } from '@custody/attester-service';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { admin, embeddedBackend, type Harness } from '../testing/harness.js';
import { simPolicy } from '../testing/handshake.js';
import { AppraisalPolicies } from './appraisal-policies.js';
import { rotateEarKeyFile } from './ear-key-set.js';
import { EarSigner } from './ear-signer.js';
import { AttestationService, earLifetimeBound } from './handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { generateTeeKeyPair } from './workload-client.js';

const M = 'a1'.repeat(48);

describe('AttestationService replicas across an EAR key rotation', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let dir: string;
  beforeEach(async () => {
    h = await backend.open();
    dir = mkdtempSync(join(tmpdir(), 'custody-ear-replicas-'));
  });
  afterEach(async () => {
    await h.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function replica(signer: EarSigner): Promise<AttestationService> {
    return new AttestationService({
      keys: h.service,
      sessions: h.metadata,
      recipientCurves: h.keystore.capabilities.recipientCurves,
      policies: await AppraisalPolicies.load({ defaultPolicy: { text: simPolicy([M]) } }),
      signer,
      audit: new InMemoryAuditSinkTestDouble(),
    });
  }

  it('a replica verifies an EAR of a key it has not read yet by re-reading the shared file', async () => {
    const path = join(dir, 'ear.jwk');
    // No polling: only a reload, or an unknown kid, makes them re-read the file.
    const signerA = await EarSigner.open(path, { reloadIntervalMs: 0 });
    const signerB = await EarSigner.open(path, { reloadIntervalMs: 0 });
    const a = await replica(signerA);
    const b = await replica(signerB);
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });

    const r = await rotateEarKeyFile(path);
    expect(await signerA.reload()).toBe(true);
    const c = await a.challenge('acme');
    const tee = generateTeeKeyPair();
    const runtimeData = buildRuntimeData(fromBase64Url(c.nonce), tee.recipient);
    const evidence = await new SimAttester({ measurements: { measurement: M } }).collect(await runtimeDigest('sim', runtimeData));
    const attested = await a.attest({ session: c.session, evidence, runtimeData, platform: 'sim' });
    expect(signerB.kid).toBe(r.previousKid);

    const released = await b.release({ name: 'dk', session: c.session, ear: attested.ear });
    expect(released.key).toMatchObject({ name: 'dk', version: 1 });
    expect(signerB.kid).toBe(r.kid);
    expect(signerB.jwks).toEqual(signerA.jwks);
  });

  it('refuses a signer whose EARs could outlive their key publication', async () => {
    const base = { keys: h.service, sessions: h.metadata, recipientCurves: h.keystore.capabilities.recipientCurves, policies: await AppraisalPolicies.load(), audit: new InMemoryAuditSinkTestDouble() };
    const short = await EarSigner.inMemory({ maxEarLifetimeSeconds: 60 });
    expect(() => new AttestationService({ ...base, signer: short })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    expect(() => new AttestationService({ ...base, signer: short, earTtlSeconds: 60 })).not.toThrow();
    expect(() => new AttestationService({ ...base, signer: short, sessionTtlSeconds: 60, nonceTtlSeconds: 60 })).not.toThrow();
    expect(earLifetimeBound({ earTtlSeconds: 600, sessionTtlSeconds: 120 })).toBe(120);
    expect(earLifetimeBound()).toBe(300);
  });
});
