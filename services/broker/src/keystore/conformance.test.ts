// One conformance suite, run against every key store backend (embedded SQLite and SoftHSM2).
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CustodyError, equalBytes, fromBase64, type Bytes } from '@custody/core';
import type { ReleasedKey } from '../keys/key-service.js';
import { MAX_SECRET_BYTES } from '../keys/types.js';
import { openRelease, teeKeyPair } from '../testing/doubles.js';
import { admin, attest, auditor, embeddedBackend, pkcs11Backend, workload, type BackendFactory, type Harness } from '../testing/harness.js';
import { HPKE_KEY_WRAP_SCHEME } from './hpke-key-wrapper.js';
import { PKCS11_RELEASE_SCHEME } from './pkcs11/release-scheme.js';

const backends: BackendFactory[] = [embeddedBackend(), pkcs11Backend()];

const GOOD_EAR = { 'ear.status': 'affirming', submods: { cpu0: { 'ear.status': 'affirming' } }, measurement: 'aa11' };
const POLICY = 'ear.measurement == "aa11"';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected a CustodyError, but the call succeeded');
}


/** The TEE side: opens a released key with the TEE private key, whatever the scheme. */
const openReleased = (tee: ReturnType<typeof teeKeyPair>, released: ReleasedKey): Promise<Bytes> => openRelease(tee, released);

function gate(): { wait: () => Promise<void>; open: () => void; entered: Promise<void> } {
  let open!: () => void;
  let entered!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const enteredP = new Promise<void>((r) => (entered = r));
  return {
    wait: async () => {
      entered();
      await opened;
    },
    open,
    entered: enteredP,
  };
}

describe.each(backends)('key store conformance: $name', (backend) => {
  let h: Harness;
  beforeAll(() => backend.setup());
  afterAll(() => backend.teardown());
  beforeEach(async () => {
    h = await backend.open();
  });
  afterEach(async () => {
    await h.close();
  });

  it('creates every key type with one current version and the right defaults', async () => {
    for (const type of ['aes-256', 'secret', 'ed25519', 'ecdsa-p256'] as const) {
      const k = await h.service.create(admin(), { tenant: 'acme', name: `k-${type}`, type });
      expect(k).toMatchObject({ name: `k-${type}`, type, state: 'active', currentVersion: 1, exportable: type === 'aes-256' || type === 'secret', releasePolicy: null });
      expect(k.id).toMatch(/^key_[0-9a-f]{32}$/);
      expect(k.versions).toHaveLength(1);
      expect(k.versions[0]).toMatchObject({ version: 1, state: 'enabled', origin: 'generated', usage: 'current' });
      if (type === 'ed25519' || type === 'ecdsa-p256') {
        const pub = createPublicKey({ key: Buffer.from(fromBase64(k.versions[0]!.publicKey!)), format: 'der', type: 'spki' });
        expect(pub.asymmetricKeyType).toBe(type === 'ed25519' ? 'ed25519' : 'ec');
      } else {
        expect(k.versions[0]!.publicKey).toBeUndefined();
      }
    }
    const list = await h.service.list(auditor(), 'acme');
    expect(list.map((k) => k.name)).toEqual(['k-aes-256', 'k-ecdsa-p256', 'k-ed25519', 'k-secret']);
    expect(await codeOf(h.service.create(admin(), { tenant: 'acme', name: 'k-aes-256', type: 'aes-256' }))).toBe('ERR_KEY_EXISTS');
  });

  it('rejects bad names, types and imported material with stable codes', async () => {
    expect(await codeOf(h.service.create(admin(), { tenant: 'acme', name: '../etc', type: 'aes-256' }))).toBe('ERR_KEY_NAME');
    expect(await codeOf(h.service.create(admin(), { tenant: 'ACME', name: 'x', type: 'aes-256' }))).toBe('ERR_AUTH_TENANT');
    expect(await codeOf(h.service.create(admin(), { tenant: 'acme', name: 'x', type: 'rsa-2048' as never }))).toBe('ERR_KEY_TYPE');
    expect(await codeOf(h.service.import(admin(), { tenant: 'acme', name: 'x', type: 'aes-256', material: randomBytes(31) }))).toBe('ERR_KEY_MATERIAL');
    expect(await codeOf(h.service.import(admin(), { tenant: 'acme', name: 'x', type: 'secret', material: new Uint8Array(0) }))).toBe('ERR_KEY_MATERIAL');
    expect(await codeOf(h.service.import(admin(), { tenant: 'acme', name: 'x', type: 'secret', material: new Uint8Array(MAX_SECRET_BYTES + 1) }))).toBe('ERR_KEY_MATERIAL');
    expect(await codeOf(h.service.import(admin(), { tenant: 'acme', name: 'x', type: 'ed25519', material: randomBytes(48) }))).toBe('ERR_KEY_MATERIAL');
    const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
    expect(await codeOf(h.service.import(admin(), { tenant: 'acme', name: 'x', type: 'ed25519', material: p256 }))).toBe('ERR_KEY_MATERIAL');
    expect(await codeOf(h.service.create(admin(), { tenant: 'acme', name: 'x', type: 'aes-256', releasePolicy: 'ear.x ~ 1' }))).toBe('ERR_POLICY_INVALID');
    expect(await codeOf(h.service.create(admin(), { tenant: 'acme', name: 'x', type: 'aes-256', length: 16 }))).toBe('ERR_KEY_TYPE');
    expect(await h.service.list(admin(), 'acme')).toEqual([]);
  });

  it('releases an imported data key to the attested TEE key, wrapped, and the TEE recovers it', async () => {
    const material = randomBytes(32);
    await h.service.import(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', material, releasePolicy: POLICY });
    const tee = teeKeyPair('P-256');
    const att = await attest(h.metadata, tee.recipient, GOOD_EAR);
    const released = await h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: att, recipient: tee.recipient });
    expect(released.key).toMatchObject({ name: 'dk', type: 'aes-256', version: 1 });
    expect(released.wrapped.scheme).toBe(h.keystore.capabilities.wrapsInside ? PKCS11_RELEASE_SCHEME : HPKE_KEY_WRAP_SCHEME);
    expect(Buffer.from(released.wrapped.payload).includes(material)).toBe(false);
    expect(equalBytes(await openReleased(tee, released), material)).toBe(true);
    // The wrapping authenticates the context: another session's context does not open it.
    const other = { ...released, context: { ...released.context, session: 'sess_other' } };
    await expect(openReleased(tee, other)).rejects.toThrow();
    // A tampered payload does not open either.
    const tampered = { ...released, wrapped: { ...released.wrapped, payload: released.wrapped.payload.slice() } };
    tampered.wrapped.payload[tampered.wrapped.payload.length - 3]! ^= 1;
    await expect(openReleased(tee, tampered)).rejects.toThrow();
    const events = h.audit.events.filter((e) => e.action === 'key.release');
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ verdict: 'allow', key: { name: 'dk', version: 1 }, detail: { session: att.sessionId, measurement: 'aa11', earDigest: att.earDigest } });
  });

  it('releases secrets up to 64 KiB exactly, including lengths that are not a multiple of 8', async () => {
    for (const n of [1, 13, 4099, MAX_SECRET_BYTES]) {
      const material = randomBytes(n);
      await h.service.import(admin(), { tenant: 'acme', name: `s${n}`, type: 'secret', material, releasePolicy: 'true' });
      const tee = teeKeyPair('P-256');
      const released = await h.service.release({ principal: workload(), tenant: 'acme', name: `s${n}`, attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient });
      expect(equalBytes(await openReleased(tee, released), material)).toBe(true);
    }
    const generated = await h.service.create(admin(), { tenant: 'acme', name: 'gen', type: 'secret', length: 100, releasePolicy: 'true' });
    expect(generated.versions[0]!.materialLength).toBe(100);
    const tee = teeKeyPair('P-256');
    const out = await openReleased(tee, await h.service.release({ principal: workload(), tenant: 'acme', name: 'gen', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }));
    expect(out.length).toBe(100);
  });

  it('denies release without attestation-backed permission, with the right code and an audit event', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'nopolicy', type: 'aes-256' });
    await h.service.create(admin(), { tenant: 'acme', name: 'sealed', type: 'aes-256', exportable: false, releasePolicy: 'true' });
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: POLICY });
    const tee = teeKeyPair('P-256');
    const req = async (name: string, over: Partial<Parameters<Harness['service']['release']>[0]> = {}) =>
      h.service.release({ principal: workload(), tenant: 'acme', name, attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient, ...over });
    expect(await codeOf(req('nopolicy'))).toBe('ERR_KEY_NO_RELEASE_POLICY');
    expect(await codeOf(req('sealed'))).toBe('ERR_KEY_NOT_EXPORTABLE');
    expect(await codeOf(req('dk', { attestation: await attest(h.metadata, tee.recipient, { measurement: 'bb22' }) }))).toBe('ERR_POLICY_DENIED');
    expect(await codeOf(req('missing'))).toBe('ERR_KEY_NOT_FOUND');
    expect(await codeOf(req('dk', { principal: admin() }))).toBe('ERR_AUTH_ROLE');
    expect(await codeOf(req('dk', { principal: workload('other') }))).toBe('ERR_AUTH_TENANT');
    const bad = { curve: 'P-256' as const, publicKey: new Uint8Array(65).fill(4) };
    expect(await codeOf(req('dk', { recipient: bad, attestation: await attest(h.metadata, bad, GOOD_EAR) }))).toBe('ERR_KEY_RECIPIENT');
    const denials = h.audit.events.filter((e) => e.verdict === 'deny');
    expect(denials.map((e) => e.reason)).toEqual(['ERR_KEY_NO_RELEASE_POLICY', 'ERR_KEY_NOT_EXPORTABLE', 'ERR_POLICY_DENIED', 'ERR_KEY_NOT_FOUND', 'ERR_AUTH_ROLE', 'ERR_AUTH_TENANT', 'ERR_KEY_RECIPIENT']);
    expect(h.audit.events.filter((e) => e.action === 'key.release' && e.verdict === 'allow')).toHaveLength(0);
  });

  it('releases only within a live attested session bound to this EAR and this recipient key', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const tee = teeKeyPair('P-256');
    const other = teeKeyPair('P-256');
    const release = (attestation: Awaited<ReturnType<typeof attest>>, recipient = tee.recipient) => h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient });
    const good = await attest(h.metadata, tee.recipient, GOOD_EAR);
    expect(await codeOf(release({ ...good, sessionId: 'sess_unknown' }))).toBe('ERR_SESSION_NOT_FOUND');
    // An EAR from another session, or this session's EAR presented with another TEE key.
    const another = await attest(h.metadata, tee.recipient, GOOD_EAR);
    expect(await codeOf(release({ ...good, earDigest: another.earDigest }))).toBe('ERR_SESSION_MISMATCH');
    expect(await codeOf(release(good, other.recipient))).toBe('ERR_SESSION_MISMATCH');
    expect(await codeOf(release(await attest(h.metadata, tee.recipient, GOOD_EAR, { tenant: 'globex' })))).toBe('ERR_SESSION_MISMATCH');
    const shortLived = await attest(h.metadata, tee.recipient, GOOD_EAR, { ttlMs: 1 });
    await new Promise((r) => setTimeout(r, 5));
    expect(await codeOf(release(shortLived))).toBe('ERR_SESSION_EXPIRED');
    // A challenge whose evidence was never appraised (not bound) releases nothing.
    const now = Date.now();
    await h.metadata.createSession({ id: 'sess_unbound', tenant: 'acme', nonce: 'ff'.repeat(16), state: 'challenged', createdAt: now, expiresAt: now + 60_000, nonceConsumedAt: null, binding: null });
    expect(await codeOf(release({ ...good, sessionId: 'sess_unbound' }))).toBe('ERR_SESSION_MISMATCH');
    expect((await release(good)).key.version).toBe(1);
    expect(h.audit.events.filter((e) => e.action === 'key.release').map((e) => e.reason ?? e.verdict)).toEqual([
      'ERR_SESSION_NOT_FOUND',
      'ERR_SESSION_MISMATCH',
      'ERR_SESSION_MISMATCH',
      'ERR_SESSION_MISMATCH',
      'ERR_SESSION_EXPIRED',
      'ERR_SESSION_MISMATCH',
      'allow',
    ]);
  });

  it('rotates: the new version is current, old versions only unwrap, and release always gives the current one', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'kek', type: 'aes-256', releasePolicy: 'true' });
    const dk1 = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'kek', context: { dataset: 'shard-7' } });
    expect(dk1.version).toBe(1);
    expect(dk1.wrapped).toMatch(/^cdk1\.key_[0-9a-f]{32}\.1\./);
    const tee = teeKeyPair('P-256');
    const r1 = await openReleased(tee, await h.service.release({ principal: workload(), tenant: 'acme', name: 'kek', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }));

    const rotated = await h.service.rotate(admin(), { tenant: 'acme', name: 'kek' });
    expect(rotated.currentVersion).toBe(2);
    expect(rotated.versions.map((v) => [v.version, v.usage])).toEqual([
      [1, 'decrypt-only'],
      [2, 'current'],
    ]);
    const released = await h.service.release({ principal: workload(), tenant: 'acme', name: 'kek', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient });
    expect(released.key.version).toBe(2);
    const r2 = await openReleased(tee, released);
    expect(equalBytes(r1, r2)).toBe(false);

    // The old version still unwraps what it wrapped; new wraps use version 2.
    const back = await h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk1.wrapped, context: { dataset: 'shard-7' } });
    expect(equalBytes(back, dk1.plaintext)).toBe(true);
    const dk2 = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'kek' });
    expect(dk2.version).toBe(2);
    expect(equalBytes(await h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk2.wrapped }), dk2.plaintext)).toBe(true);

    // Rotating with imported material.
    const material = randomBytes(32);
    const v3 = await h.service.rotate(admin(), { tenant: 'acme', name: 'kek', material });
    expect(v3.versions[2]).toMatchObject({ version: 3, origin: 'imported', usage: 'current' });
    const r3 = await openReleased(tee, await h.service.release({ principal: workload(), tenant: 'acme', name: 'kek', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }));
    expect(equalBytes(r3, material)).toBe(true);
  });

  it('envelope: a wrapped data key does not unwrap with another context, another tenant, or tampered', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'kek', type: 'aes-256' });
    await h.service.create(admin('globex'), { tenant: 'globex', name: 'kek', type: 'aes-256' });
    const dk = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'kek', context: { object: 'a' } });
    expect(await codeOf(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk.wrapped, context: { object: 'b' } }))).toBe('ERR_KEY_UNWRAP');
    expect(await codeOf(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk.wrapped }))).toBe('ERR_KEY_UNWRAP');
    expect(await codeOf(h.service.unwrapDataKey(admin('globex'), { tenant: 'globex', wrapped: dk.wrapped, context: { object: 'a' } }))).toBe('ERR_KEY_NOT_FOUND');
    const parts = dk.wrapped.split('.');
    const ct = fromBase64(parts[4]!);
    ct[0]! ^= 0x80;
    const tampered = [...parts.slice(0, 4), Buffer.from(ct).toString('base64url')].join('.');
    expect(await codeOf(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: tampered, context: { object: 'a' } }))).toBe('ERR_KEY_UNWRAP');
    expect(await codeOf(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: 'cdk1.nope' }))).toBe('ERR_INPUT_MALFORMED');
    const versionSwapped = [parts[0], parts[1], '2', parts[3], parts[4]].join('.');
    expect(await codeOf(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: versionSwapped, context: { object: 'a' } }))).toBe('ERR_KEY_VERSION');
    expect(await codeOf(h.service.generateDataKey(workload(), { tenant: 'acme', kek: 'kek' }))).toBe('ERR_AUTH_ROLE');
  });

  it('signs inside the store with ed25519 and ecdsa-p256; signatures verify with the listed public key', async () => {
    for (const type of ['ed25519', 'ecdsa-p256'] as const) {
      const k = await h.service.create(admin(), { tenant: 'acme', name: `sig-${type}`, type });
      const data = new TextEncoder().encode('checkpoint 42');
      const { signature, version } = await h.service.sign(admin(), { tenant: 'acme', name: `sig-${type}`, data });
      expect(version).toBe(1);
      expect(signature.length).toBe(64);
      const pub = createPublicKey({ key: Buffer.from(fromBase64(k.versions[0]!.publicKey!)), format: 'der', type: 'spki' });
      expect(verify(type === 'ed25519' ? null : 'sha256', data, { key: pub, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    }
    // An imported signing key signs too, and its public key is the imported one.
    const imported = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const k = await h.service.import(admin(), { tenant: 'acme', name: 'imp', type: 'ecdsa-p256', material: imported.privateKey.export({ format: 'der', type: 'pkcs8' }) });
    expect(Buffer.from(fromBase64(k.versions[0]!.publicKey!)).equals(imported.publicKey.export({ format: 'der', type: 'spki' }))).toBe(true);
    const { signature } = await h.service.sign(admin(), { tenant: 'acme', name: 'imp', data: Buffer.from('x') });
    expect(verify('sha256', Buffer.from('x'), { key: imported.publicKey, dsaEncoding: 'ieee-p1363' }, signature)).toBe(true);
    expect(await codeOf(h.service.sign(admin(), { tenant: 'acme', name: 'imp', data: new Uint8Array(1) }).then(() => h.service.create(admin(), { tenant: 'acme', name: 'a', type: 'aes-256' })).then(() => h.service.sign(admin(), { tenant: 'acme', name: 'a', data: new Uint8Array(1) })))).toBe('ERR_KEY_TYPE');
  });

  it('releases an exportable ecdsa-p256 key as PKCS#8 matching its public key', async () => {
    const k = await h.service.create(admin(), { tenant: 'acme', name: 'signer', type: 'ecdsa-p256', exportable: true, releasePolicy: 'true' });
    const tee = teeKeyPair('P-256');
    const pkcs8 = await openReleased(tee, await h.service.release({ principal: workload(), tenant: 'acme', name: 'signer', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }));
    const priv = createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });
    expect(Buffer.from(createPublicKey(priv).export({ format: 'der', type: 'spki' })).equals(Buffer.from(fromBase64(k.versions[0]!.publicKey!)))).toBe(true);
  });

  it('ed25519 exportability follows the store capability', async () => {
    const create = h.service.create(admin(), { tenant: 'acme', name: 'ed', type: 'ed25519', exportable: true, releasePolicy: 'true' });
    if (!h.keystore.capabilities.exportableTypes.includes('ed25519')) {
      expect(await codeOf(create)).toBe('ERR_KEY_UNSUPPORTED');
      return;
    }
    const k = await create;
    const tee = teeKeyPair('X25519');
    const pkcs8 = await openReleased(tee, await h.service.release({ principal: workload(), tenant: 'acme', name: 'ed', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }));
    const priv = createPrivateKey({ key: Buffer.from(pkcs8), format: 'der', type: 'pkcs8' });
    expect(Buffer.from(createPublicKey(priv).export({ format: 'der', type: 'spki' })).equals(Buffer.from(fromBase64(k.versions[0]!.publicKey!)))).toBe(true);
  });

  it('revoke takes effect immediately: no release, wrap, unwrap or rotation after it', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const dk = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'dk' });
    const revoked = await h.service.revoke(admin(), { tenant: 'acme', name: 'dk', reason: 'suspected compromise' });
    expect(revoked.state).toBe('revoked');
    expect(revoked.revokedAt).toBeDefined();
    const tee = teeKeyPair('P-256');
    expect(await codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'dk' }))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk.wrapped }))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(h.service.rotate(admin(), { tenant: 'acme', name: 'dk' }))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(h.service.setReleasePolicy(admin(), { tenant: 'acme', name: 'dk', policy: 'true' }))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(h.service.revoke(admin(), { tenant: 'acme', name: 'dk' }))).toBe('ERR_KEY_STATE');
    expect(h.audit.events.find((e) => e.action === 'key.revoke')).toMatchObject({ verdict: 'allow', detail: { reason: 'suspected compromise' } });
  });

  it('a revoke during an in-flight release stops it (policy evaluation window)', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const g = gate();
    h.policy.beforeEvaluate = g.wait;
    const tee = teeKeyPair('P-256');
    const inflight = codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }));
    await g.entered;
    await h.service.revoke(admin(), { tenant: 'acme', name: 'dk' });
    g.open();
    expect(await inflight).toBe('ERR_KEY_REVOKED');
    expect(h.audit.events.filter((e) => e.action === 'key.release').map((e) => e.verdict)).toEqual(['deny']);
  });

  it('a revoke while the release is being audited stops it (final re-check window)', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const g = gate();
    h.audit.beforeAppend = async (e) => {
      if (e.action === 'key.release' && e.verdict === 'allow') await g.wait();
    };
    const tee = teeKeyPair('P-256');
    const inflight = codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }));
    await g.entered;
    await h.service.revoke(admin(), { tenant: 'acme', name: 'dk' });
    g.open();
    expect(await inflight).toBe('ERR_KEY_REVOKED');
    const releases = h.audit.events.filter((e) => e.action === 'key.release');
    expect(releases.map((e) => [e.verdict, e.reason])).toEqual([
      ['allow', undefined],
      ['deny', 'ERR_KEY_REVOKED'],
    ]);
  });

  it('a rotation during an in-flight release makes it release the new current version', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const g = gate();
    h.policy.beforeEvaluate = g.wait;
    const tee = teeKeyPair('P-256');
    const inflight = h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient });
    await g.entered;
    await h.service.rotate(admin(), { tenant: 'acme', name: 'dk' });
    g.open();
    const released = await inflight;
    expect(released.key.version).toBe(2);
    expect((await openReleased(tee, released)).length).toBe(32);
  });

  it('destroy erases the material of every version and keeps the metadata', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const dk = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'dk' });
    await h.service.rotate(admin(), { tenant: 'acme', name: 'dk' });
    const versions = await h.metadata.listVersions((await h.metadata.getKey('acme', 'dk'))!.id);
    const refs = versions.map((v) => ({ keyId: v.keyId, version: v.version, materialId: v.materialId, type: 'aes-256' as const }));
    for (const r of refs) expect(await h.keystore.has(r)).toBe(true);

    const destroyed = await h.service.destroy(admin(), { tenant: 'acme', name: 'dk' });
    expect(destroyed.state).toBe('destroyed');
    expect(destroyed.versions.map((v) => [v.version, v.state, v.usage])).toEqual([
      [1, 'destroyed', 'none'],
      [2, 'destroyed', 'none'],
    ]);
    for (const r of refs) expect(await h.keystore.has(r)).toBe(false);
    expect((await h.service.list(auditor(), 'acme')).map((k) => [k.name, k.state])).toEqual([['dk', 'destroyed']]);
    const tee = teeKeyPair('P-256');
    expect(await codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }))).toBe('ERR_KEY_DESTROYED');
    expect(await codeOf(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk.wrapped }))).toBe('ERR_KEY_DESTROYED');
    expect(await codeOf(h.service.destroy(admin(), { tenant: 'acme', name: 'dk' }))).toBe('ERR_KEY_DESTROYED');
    expect(await codeOf(h.keystore.decrypt(refs[0]!, { iv: new Uint8Array(12), ciphertext: new Uint8Array(48) }, new Uint8Array(0)))).toBe('ERR_KEY_DESTROYED');
    // A revoked key can be destroyed too.
    await h.service.create(admin(), { tenant: 'acme', name: 'r', type: 'secret' });
    await h.service.revoke(admin(), { tenant: 'acme', name: 'r' });
    expect((await h.service.destroy(admin(), { tenant: 'acme', name: 'r' })).state).toBe('destroyed');
  });

  it('fails closed when the key store is unavailable: typed error, nothing released, denial audited', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    await h.keystore.close();
    const tee = teeKeyPair('P-256');
    expect(await codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await codeOf(h.service.create(admin(), { tenant: 'acme', name: 'dk2', type: 'aes-256' }))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await codeOf(h.service.ping())).toBe('ERR_STORE_UNAVAILABLE');
    expect(h.audit.events.filter((e) => e.action === 'key.release').map((e) => [e.verdict, e.reason])).toEqual([['deny', 'ERR_STORE_UNAVAILABLE']]);
  });

  it('fails closed when the metadata store is unavailable', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const tee = teeKeyPair('P-256');
    const att = await attest(h.metadata, tee.recipient, GOOD_EAR);
    await h.metadata.close();
    expect(await codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: att, recipient: tee.recipient }))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await codeOf(h.service.list(admin(), 'acme'))).toBe('ERR_STORE_UNAVAILABLE');
    expect(h.audit.events.some((e) => e.action === 'key.release' && e.verdict === 'allow')).toBe(false);
  });

  it('audit first for changes that widen exposure: no audit, no key (and its new material is erased)', async () => {
    h.audit.failing = true;
    const err = await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256' }).catch((e: unknown) => e as CustodyError);
    expect(err).toBeInstanceOf(CustodyError);
    expect((err as CustodyError).code).toBe('ERR_STORE_AUDIT_UNAVAILABLE');
    expect((err as CustodyError).detail).toEqual({ applied: false });
    expect(await h.metadata.getKey('acme', 'dk')).toBeNull();
    h.audit.failing = false;
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    h.audit.failing = true;
    expect(await codeOf(h.service.rotate(admin(), { tenant: 'acme', name: 'dk' }))).toBe('ERR_STORE_AUDIT_UNAVAILABLE');
    const key = (await h.metadata.getKey('acme', 'dk'))!;
    expect(key.currentVersion).toBe(1);
    // A release whose allow event cannot be written is denied.
    const tee = teeKeyPair('P-256');
    expect(await codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient, GOOD_EAR), recipient: tee.recipient }))).toBe('ERR_STORE_AUDIT_UNAVAILABLE');
    // Revoke narrows exposure: it is applied even without audit, and says so.
    const rev = await h.service.revoke(admin(), { tenant: 'acme', name: 'dk' }).catch((e: unknown) => e as CustodyError);
    expect((rev as CustodyError).code).toBe('ERR_STORE_AUDIT_UNAVAILABLE');
    expect((rev as CustodyError).detail).toEqual({ applied: true });
    expect((await h.metadata.getKey('acme', 'dk'))!.state).toBe('revoked');
  });

  it('audit events are canonical JSON with who, what, key and verdict', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: POLICY });
    await h.service.rotate(admin(), { tenant: 'acme', name: 'dk' });
    await h.service.revoke(admin(), { tenant: 'acme', name: 'dk' });
    await h.service.destroy(admin(), { tenant: 'acme', name: 'dk' });
    expect(h.audit.events.map((e) => [e.action, e.verdict, e.key?.version])).toEqual([
      ['key.create', 'allow', 1],
      ['key.rotate', 'allow', 2],
      ['key.revoke', 'allow', 2],
      ['key.destroy', 'allow', 2],
    ]);
    for (const [i, e] of h.audit.events.entries()) {
      expect(e.actor).toEqual({ tenant: 'acme', subject: 'apikey:0000000000000001', role: 'admin' });
      expect(e.tenant).toBe('acme');
      expect(e.key?.name).toBe('dk');
      // canonical: sorted keys, no whitespace
      expect(h.audit.lines[i]).toBe(JSON.stringify(sortDeep(e)));
    }
    expect(h.audit.events[0]!.detail).toMatchObject({ releasePolicy: true, exportable: true });
    expect(h.audit.events[0]!.detail!.policyDigest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });
});

function sortDeep(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(sortDeep);
  if (v && typeof v === 'object') return Object.fromEntries(Object.keys(v).sort().map((k) => [k, sortDeep((v as Record<string, unknown>)[k])]));
  return v;
}
