// Two AttestationServices (replicas) on one metadata store sharing one EAR key file: after a
// rotation the replica that re-read the file signs with the new key, and the other verifies
// that EAR by re-reading the file when it meets the unknown kid. A dropped key stops releasing
// within a second whatever the reload interval; EARs longer than an hour verify at any replica;
// a bad key file costs a stat a second and one log line, whatever kids callers make up, and
// while a changed key file cannot be used every release is refused (ERR_EAR_KEY, audited). Also:
// a signer whose maximum EAR lifetime is shorter than the EARs the service would issue is
// refused at construction.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { fromBase64Url } from '@custody/core';
import { EAR_PROFILE, generateEarSigningKey, signEar, type Ear } from '@custody/policy';
import { SimAttester } from '@custody/attester-service';
import { InMemoryAuditSinkTestDouble } from '../testing/doubles.js';
import { admin, bufferLogger, embeddedBackend, type Harness } from '../testing/harness.js';
import { codeOf, simPolicy } from '../testing/handshake.js';
import { AppraisalPolicies } from './appraisal-policies.js';
import { rotateEarKeyFile } from './ear-key-set.js';
import { EAR_KEY_RECHECK_MS, EarSigner } from './ear-signer.js';
import { AttestationService, earLifetimeBound, type AttestationServiceOptions } from './handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { generateTeeKeyPair } from './workload-client.js';

/** An hour between polls: within a test only a reload, a request or an unknown kid makes a replica look at the file. */
const NO_POLL = 3_600_000;

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

  async function replica(signer: EarSigner, options: Partial<AttestationServiceOptions> = {}): Promise<AttestationService> {
    return new AttestationService({
      keys: h.service,
      sessions: h.metadata,
      recipientCurves: h.keystore.capabilities.recipientCurves,
      policies: await AppraisalPolicies.load({ defaultPolicy: { text: simPolicy([M]) } }),
      signer,
      audit: new InMemoryAuditSinkTestDouble(),
      ...options,
    });
  }

  async function attestAt(service: AttestationService): Promise<{ session: string; ear: string }> {
    const c = await service.challenge('acme');
    const tee = generateTeeKeyPair();
    const runtimeData = buildRuntimeData(fromBase64Url(c.nonce), tee.recipient);
    const evidence = await new SimAttester({ measurements: { measurement: M } }).collect(await runtimeDigest('sim', runtimeData));
    const attested = await service.attest({ session: c.session, evidence, runtimeData, platform: 'sim' });
    return { session: c.session, ear: attested.ear };
  }

  it('a replica verifies an EAR of a key it has not read yet by re-reading the shared file', async () => {
    const path = join(dir, 'ear.jwk');
    const signerA = await EarSigner.open(path, { reloadIntervalMs: NO_POLL });
    const signerB = await EarSigner.open(path, { reloadIntervalMs: NO_POLL });
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

  it('stops releasing to EARs of a key dropped without overlap within a second, however long the reload interval', async () => {
    const path = join(dir, 'ear.jwk');
    let mono = 0;
    const signer = await EarSigner.open(path, { reloadIntervalMs: NO_POLL, monotonicMs: () => mono });
    const service = await replica(signer);
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    // An EAR of the key about to be dropped (as good as one forged with the stolen key), released to once: remembered.
    const a = await attestAt(service);
    await service.release({ name: 'dk', session: a.session, ear: a.ear });
    const r = await rotateEarKeyFile(path, { overlap: false });
    // No SIGHUP, no poll: the next release a second later looks at the file first.
    mono += EAR_KEY_RECHECK_MS;
    expect(await codeOf(service.release({ name: 'dk', session: a.session, ear: a.ear }))).toBe('ERR_EAR_KEY_UNKNOWN');
    expect(signer.kid).toBe(r.kid);
    expect(signer.publishes(r.previousKid, Date.now())).toBe(false);
    // The next attestation is signed with the new key and releases.
    const b = await attestAt(service);
    expect((await service.release({ name: 'dk', session: b.session, ear: b.ear })).key).toMatchObject({ name: 'dk' });
  });

  it('releases to an EAR living longer than an hour at a replica that did not sign it (a cache miss)', async () => {
    const path = join(dir, 'ear.jwk');
    const long = { earTtlSeconds: 7200, sessionTtlSeconds: 7200 };
    const a = await replica(await EarSigner.open(path, { maxEarLifetimeSeconds: earLifetimeBound(long) }), long);
    // The other replica uses the defaults (300 s EARs).
    const b = await replica(await EarSigner.open(path));
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const attested = await attestAt(a);
    const claims = JSON.parse(Buffer.from(attested.ear.split('.')[1]!, 'base64url').toString('utf8')) as { iat: number; exp: number };
    expect(claims.exp - claims.iat).toBeGreaterThan(3600);
    expect((await b.release({ name: 'dk', session: attested.session, ear: attested.ear })).key).toMatchObject({ name: 'dk' });
  });

  it('while the key file is bad, releases are refused (ERR_EAR_KEY), EARs of made-up kids cost a stat a second and the bad file one log line per version', async () => {
    const path = join(dir, 'ear.jwk');
    let mono = 0;
    const signer = await EarSigner.open(path, { reloadIntervalMs: NO_POLL, monotonicMs: () => mono });
    const { logger, lines } = bufferLogger();
    const service = await replica(signer, { logger });
    const c = await service.challenge('acme');
    const rogue = await generateEarSigningKey({ alg: 'ES256' });
    const now = Math.floor(Date.now() / 1000);
    const ear: Ear = { eat_profile: EAR_PROFILE, iat: now, exp: now + 60, 'ear.verifier-id': { developer: 'x', build: 'y' }, submods: { cpu0: { 'ear.status': 'affirming' } } };
    const token = await signEar(ear, rogue);
    const reloadLines = () => lines.filter((l) => l.includes('"op":"ear-key.reload"'));

    // A half-written key file (0600, not JSON) holding a secret-looking fragment.
    writeFileSync(path, '{"kty":"EC","d":"c2VjcmV0LWZyYWdtZW50', { mode: 0o600 });
    for (let i = 0; i < 200; i++) {
      if (i % 20 === 0) mono += EAR_KEY_RECHECK_MS; // ten seconds in all
      expect(await codeOf(service.release({ name: 'dk', session: c.session, ear: token }))).toBe('ERR_EAR_KEY');
    }
    expect(reloadLines()).toHaveLength(1);
    const line = JSON.parse(reloadLines()[0]!) as { code: string; reason: string };
    expect(line).toMatchObject({ code: 'ERR_EAR_KEY', reason: expect.any(String) });
    expect(reloadLines()[0]).not.toContain('c2VjcmV0');
    // Another bad version: one more line.
    writeFileSync(path, '[]', { mode: 0o600 });
    for (let i = 0; i < 50; i++) {
      if (i % 10 === 0) mono += EAR_KEY_RECHECK_MS;
      await codeOf(service.release({ name: 'dk', session: c.session, ear: token }));
    }
    expect(reloadLines()).toHaveLength(2);
  });

  it('after --no-overlap, a rotated key file it cannot use makes a replica refuse releases and attestations (ERR_EAR_KEY, audited) until it can', async () => {
    const path = join(dir, 'ear.jwk');
    let mono = 0;
    const signer = await EarSigner.open(path, { reloadIntervalMs: NO_POLL, monotonicMs: () => mono });
    const audit = new InMemoryAuditSinkTestDouble();
    const service = await replica(signer, { audit });
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    // An EAR of the key about to be dropped as compromised (as good as one forged with it).
    const a = await attestAt(service);
    const b = await attestAt(service);
    const r = await rotateEarKeyFile(path, { overlap: false });
    // Config management resets the mode: the broker cannot read the rotated file.
    chmodSync(path, 0o640);
    mono += EAR_KEY_RECHECK_MS;
    expect(await codeOf(service.release({ name: 'dk', session: a.session, ear: a.ear }))).toBe('ERR_EAR_KEY');
    const denial = audit.events.at(-1)!;
    expect(denial).toMatchObject({ action: 'key.release', verdict: 'deny', reason: 'ERR_EAR_KEY' });
    expect(await codeOf(attestAt(service))).toBe('ERR_EAR_KEY');
    expect(audit.events.at(-1)).toMatchObject({ action: 'attest.appraise', verdict: 'deny', reason: 'ERR_EAR_KEY' });
    expect(service.jwks.keys).toEqual([]);
    // Fixed: the new key signs and releases; the dropped key's EARs stay refused.
    chmodSync(path, 0o600);
    mono += EAR_KEY_RECHECK_MS;
    expect(await codeOf(service.release({ name: 'dk', session: b.session, ear: b.ear }))).toBe('ERR_EAR_KEY_UNKNOWN');
    expect(signer.kid).toBe(r.kid);
    const c = await attestAt(service);
    expect((await service.release({ name: 'dk', session: c.session, ear: c.ear })).key).toMatchObject({ name: 'dk' });
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
