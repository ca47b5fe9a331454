// PKCS#11 specifics the conformance suite cannot see: object attributes inside SoftHSM2, the
// HSM refusing on its own, session loss and recovery, configuration errors.
import { cpSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { teeKeyPair } from '../../testing/doubles.js';
import { admin, attest, pkcs11Backend, workload, type Harness } from '../../testing/harness.js';
import type { MaterialRef } from '../../keys/types.js';
import { acquireLibrary, P, releaseLibrary, type Handle, type Pkcs11Module } from './module.js';
import { Pkcs11KeyStore } from './pkcs11-key-store.js';

const backend = pkcs11Backend();

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected a CustodyError, but the call succeeded');
}

function bool(v: Buffer): boolean {
  return v.length > 0 && v[0] !== 0;
}

describe('Pkcs11KeyStore on SoftHSM2', () => {
  let h: Harness;
  let m: Pkcs11Module;
  let s: Handle;

  beforeAll(() => backend.setup());
  afterAll(() => backend.teardown());
  beforeEach(async () => {
    h = await backend.open();
    m = acquireLibrary(backend.token().library);
    const slot = m.C_GetSlotList(true).find((sl) => m.C_GetTokenInfo(sl).label.trim() === backend.token().tokenLabel)!;
    s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  });
  afterEach(async () => {
    try {
      m.C_CloseSession(s);
    } catch {
      // closed by a test
    }
    releaseLibrary(backend.token().library);
    await h.close();
  });

  async function refOf(name: string): Promise<MaterialRef> {
    const key = (await h.metadata.getKey('acme', name))!;
    const v = (await h.metadata.getVersion(key.id, key.currentVersion))!;
    return { keyId: key.id, version: v.version, materialId: v.materialId, type: key.type };
  }

  function objects(materialId: string): Handle[] {
    m.C_FindObjectsInit(s, [{ type: P.CKA_ID, value: Buffer.from(materialId) }]);
    try {
      return m.C_FindObjects(s, 10);
    } finally {
      m.C_FindObjectsFinal(s);
    }
  }

  function sessionObjectCount(): number {
    m.C_FindObjectsInit(s, [{ type: P.CKA_TOKEN, value: false }]);
    try {
      return m.C_FindObjects(s, 1000).length;
    } finally {
      m.C_FindObjectsFinal(s);
    }
  }

  it('keeps every key sensitive; non-exportable keys are never extractable, generated inside the token', async () => {
    const cases = [
      { name: 'kek', type: 'aes-256' as const, exportable: false },
      { name: 'dk', type: 'aes-256' as const, exportable: true },
      { name: 'sec', type: 'secret' as const, exportable: true },
      { name: 'ed', type: 'ed25519' as const, exportable: false },
      { name: 'ec', type: 'ecdsa-p256' as const, exportable: false },
    ];
    for (const c of cases) {
      await h.service.create(admin(), { tenant: 'acme', name: c.name, type: c.type, exportable: c.exportable });
      const ref = await refOf(c.name);
      const cls = c.type === 'ed25519' || c.type === 'ecdsa-p256' ? P.CKO_PRIVATE_KEY : P.CKO_SECRET_KEY;
      const found = objects(ref.materialId).filter((o) => m.C_GetAttributeValue(s, o, [{ type: P.CKA_CLASS }])[0]!.value.readUInt32LE(0) === cls);
      expect(found).toHaveLength(1);
      const [token, priv, sensitive, extractable, never, local] = m.C_GetAttributeValue(s, found[0]!, [
        { type: P.CKA_TOKEN },
        { type: P.CKA_PRIVATE },
        { type: P.CKA_SENSITIVE },
        { type: P.CKA_EXTRACTABLE },
        { type: P.CKA_NEVER_EXTRACTABLE },
        { type: P.CKA_LOCAL },
      ]);
      expect(bool(token!.value)).toBe(true);
      expect(bool(priv!.value)).toBe(true);
      expect(bool(sensitive!.value)).toBe(true);
      expect(bool(extractable!.value)).toBe(c.exportable);
      expect(bool(never!.value)).toBe(!c.exportable);
      expect(bool(local!.value)).toBe(true);
      // The value can never be read out, exportable or not.
      expect(() => m.C_GetAttributeValue(s, found[0]!, [{ type: P.CKA_VALUE }])).toThrow(/CKR_ATTRIBUTE_SENSITIVE/);
      if (!c.exportable) expect(() => m.C_SetAttributeValue(s, found[0]!, [{ type: P.CKA_EXTRACTABLE, value: true }])).toThrow(/CKR_ATTRIBUTE_READ_ONLY/);
    }
  });

  it('the HSM itself refuses to wrap a non-exportable key out, even if the service check were bypassed', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'kek', type: 'aes-256', exportable: false });
    const tee = teeKeyPair('P-256');
    const ref = await refOf('kek');
    expect(await codeOf(h.keystore.wrapForRelease(ref, tee.recipient, {}, h.wrapper))).toBe('ERR_KEY_NOT_EXPORTABLE');
    expect(h.wrapper.seen).toHaveLength(0);
  });

  it('release runs inside the HSM: the injected wrapper never sees material and no session objects are left', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const before = sessionObjectCount();
    const tee = teeKeyPair('P-256');
    for (let i = 0; i < 3; i++) {
      await h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, tee.recipient), recipient: tee.recipient });
    }
    expect(h.wrapper.seen).toHaveLength(0);
    expect(sessionObjectCount()).toBe(before);
    // X25519 TEE keys cannot be used for in-HSM ECDH here.
    const x = teeKeyPair('X25519');
    expect(await codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(h.metadata, x.recipient), recipient: x.recipient }))).toBe('ERR_KEY_RECIPIENT');
  });

  it('destroy removes the token objects (private and public halves)', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'ec', type: 'ecdsa-p256' });
    const ref = await refOf('ec');
    expect(objects(ref.materialId)).toHaveLength(2);
    await h.service.destroy(admin(), { tenant: 'acme', name: 'ec' });
    expect(objects(ref.materialId)).toHaveLength(0);
  });

  it('a lost HSM session fails the operation closed, and the next operation reopens it', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const slot = m.C_GetSessionInfo(s).slotID;
    m.C_CloseAllSessions(slot);
    const tee = teeKeyPair('P-256');
    const attestation = await attest(h.metadata, tee.recipient);
    expect(await codeOf(h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient }))).toBe('ERR_STORE_UNAVAILABLE');
    const released = await h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient });
    expect(released.key.version).toBe(1);
    s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  });

  it('a token that goes away is ERR_STORE_UNAVAILABLE (not a destroyed key, not ready), and the store recovers once it is back', async () => {
    await h.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    const tee = teeKeyPair('P-256');
    const attestation = await attest(h.metadata, tee.recipient);
    const release = () => h.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient });
    const tokens = join(backend.token().dir, 'tokens');
    const token = join(tokens, readdirSync(tokens)[0]!);
    const backup = join(backend.token().dir, 'token-backup');
    cpSync(token, backup, { recursive: true });
    rmSync(token, { recursive: true });
    try {
      // SoftHSM2 still answers for the session and finds no objects: neither means "destroyed".
      expect(await codeOf(h.keystore.ping())).toBe('ERR_STORE_UNAVAILABLE');
      expect(await codeOf(release())).toBe('ERR_STORE_UNAVAILABLE');
      expect(await codeOf(release())).toBe('ERR_STORE_UNAVAILABLE');
      expect(await codeOf(h.service.ping())).toBe('ERR_STORE_UNAVAILABLE');
      expect((await h.metadata.getKey('acme', 'dk'))!.state).toBe('active');
    } finally {
      cpSync(backup, token, { recursive: true });
      rmSync(backup, { recursive: true });
    }
    // Back without a restart (the library is initialised again before the next session).
    await h.keystore.ping();
    expect((await release()).key.version).toBe(1);
    // That ended this test's own session too.
    const slot = m.C_GetSlotList(true).find((sl) => m.C_GetTokenInfo(sl).label.trim() === backend.token().tokenLabel)!;
    s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
  });

  it('reports configuration errors with ERR_STORE_CONFIG', async () => {
    const t = backend.token();
    expect(await codeOf(Pkcs11KeyStore.open({ library: t.library, tokenLabel: 'no-such-token', pin: t.pin }))).toBe('ERR_STORE_CONFIG');
    expect(await codeOf(Pkcs11KeyStore.open({ library: '/nonexistent/libpkcs11.so', tokenLabel: t.tokenLabel, pin: t.pin }))).toBe('ERR_STORE_CONFIG');
  });
});
