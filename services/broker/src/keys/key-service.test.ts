// KeyService when the metadata store fails after its commit (the flush of the write to disk, a
// transient EIO): the key or version may be recorded, so its new material is kept and the key
// stays usable, instead of a recorded key version left without material.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CustodyError } from '@custody/core';
import type { SqliteMetadataStore } from '../metadata/sqlite/sqlite-metadata-store.js';
import { WalSync } from '../metadata/sqlite/wal-sync.js';
import { teeKeyPair } from '../testing/doubles.js';
import { admin, attest, embeddedBackend, workload, type Harness } from '../testing/harness.js';

const flushFails = () => Promise.reject(new CustodyError('ERR_STORE_UNAVAILABLE', 'the metadata store could not be flushed to disk'));

describe('KeyService: a store failing after its commit', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    vi.restoreAllMocks();
    await h?.close();
    h = undefined;
  });

  it('create: the key was recorded, so its material is kept and it works', async () => {
    h = await embeddedBackend().open();
    const store = h.metadata as SqliteMetadataStore;
    const insert = store.insertKey.bind(store);
    vi.spyOn(store, 'insertKey').mockImplementationOnce(async (...a) => {
      vi.spyOn(WalSync.prototype, 'sync').mockImplementationOnce(flushFails);
      return insert(...a);
    });
    await expect(h.service.create(admin(), { tenant: 'acme', name: 'k1', type: 'aes-256' })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    vi.restoreAllMocks();
    const key = await h.metadata.getKey('acme', 'k1');
    expect(key?.state).toBe('active');
    const dk = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'k1' });
    expect(dk.plaintext.length).toBe(32);
  });

  it('rotate: the new version was recorded, so its material is kept and it is used', async () => {
    h = await embeddedBackend().open();
    await h.service.create(admin(), { tenant: 'acme', name: 'k2', type: 'aes-256' });
    const store = h.metadata as SqliteMetadataStore;
    const add = store.addVersion.bind(store);
    vi.spyOn(store, 'addVersion').mockImplementationOnce(async (...a) => {
      vi.spyOn(WalSync.prototype, 'sync').mockImplementationOnce(flushFails);
      return add(...a);
    });
    await expect(h.service.rotate(admin(), { tenant: 'acme', name: 'k2' })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    vi.restoreAllMocks();
    expect((await h.metadata.getKey('acme', 'k2'))?.currentVersion).toBe(2);
    const dk = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'k2' });
    expect(dk.plaintext.length).toBe(32);
  });

  it('a write refused before its commit still erases the new material (nothing records it)', async () => {
    h = await embeddedBackend().open();
    const erase = vi.spyOn(h.keystore, 'erase');
    vi.spyOn(h.metadata, 'insertKey').mockRejectedValueOnce(new CustodyError('ERR_STORE_BACKEND', 'refused'));
    await expect(h.service.create(admin(), { tenant: 'acme', name: 'k3', type: 'aes-256' })).rejects.toMatchObject({ code: 'ERR_STORE_BACKEND' });
    expect(erase).toHaveBeenCalledTimes(1);
    expect(await h.metadata.getKey('acme', 'k3')).toBeNull();
  });
});

describe('KeyService: a revocation the metadata store could not take', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('refuses every release until the store takes writes again; then the revocation can be made, and it holds', async () => {
    h = await embeddedBackend().open();
    const service = h.service;
    await service.create(admin(), { tenant: 'acme', name: 'rk', type: 'aes-256', releasePolicy: 'ear.measurement == "aa11"' });
    await service.create(admin(), { tenant: 'acme', name: 'sk', type: 'ed25519' });
    const dataKey = await service.generateDataKey(admin(), { tenant: 'acme', kek: 'rk' });
    const tee = teeKeyPair('P-256');
    const ear = { 'ear.status': 'affirming', submods: { cpu0: { 'ear.status': 'affirming' } }, measurement: 'aa11' };
    const attestation = await attest(h.metadata, tee.recipient, ear);
    const release = () => service.release({ principal: workload(), tenant: 'acme', name: 'rk', attestation, recipient: tee.recipient });
    await release();
    // The database reads but takes no writes (SQLite query_only: SQLITE_READONLY, as on a read-only file).
    const db = (h.metadata as unknown as { db: { pragma(p: string): unknown } }).db;
    db.pragma('query_only = ON');
    // Releases still work while nobody needs a write...
    await release();
    const wrapped = h.wrapper.seen.length;
    // ...but once a revocation fails, none is made until the store takes writes again.
    await expect(service.revoke(admin(), { tenant: 'acme', name: 'rk', reason: 'compromised' })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    await expect(release()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    await expect(release()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    expect(h.wrapper.seen.length).toBe(wrapped);
    // Nor is the key used in any other way: no data key unwrapped, generated, or signature made.
    await expect(service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dataKey.wrapped })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    await expect(service.generateDataKey(admin(), { tenant: 'acme', kek: 'rk' })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    await expect(service.sign(admin(), { tenant: 'acme', name: 'sk', data: new Uint8Array(8) })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
    expect(h.logLines.some((l) => l.includes('"op":"store.write_failed"'))).toBe(true);
    db.pragma('query_only = OFF');
    // The revocation did not happen: releases resume; made again, it holds.
    await release();
    expect(h.logLines.some((l) => l.includes('"op":"store.writes_back"'))).toBe(true);
    await service.revoke(admin(), { tenant: 'acme', name: 'rk', reason: 'compromised' });
    await expect(release()).rejects.toMatchObject({ code: 'ERR_KEY_REVOKED' });
  });

  it('a destruction or a new release policy the store could not take stops releases the same way', async () => {
    h = await embeddedBackend().open();
    const service = h.service;
    const tee = teeKeyPair('P-256');
    const ear = { 'ear.status': 'affirming', submods: { cpu0: { 'ear.status': 'affirming' } }, measurement: 'aa11' };
    const attestation = await attest(h.metadata, tee.recipient, ear);
    await service.create(admin(), { tenant: 'acme', name: 'a', type: 'aes-256', releasePolicy: 'ear.measurement == "aa11"' });
    const db = (h.metadata as unknown as { db: { pragma(p: string): unknown } }).db;
    for (const stop of [() => service.destroy(admin(), { tenant: 'acme', name: 'a' }), () => service.setReleasePolicy(admin(), { tenant: 'acme', name: 'a', policy: 'false' })]) {
      db.pragma('query_only = ON');
      await expect(stop()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
      await expect(service.release({ principal: workload(), tenant: 'acme', name: 'a', attestation, recipient: tee.recipient })).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
      db.pragma('query_only = OFF');
      await service.release({ principal: workload(), tenant: 'acme', name: 'a', attestation, recipient: tee.recipient });
    }
  });
});

describe('KeyService: release refusals in the audit log', () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it('appends a refusal only when the caller’s bound (auditsDenial) allows it, and clips the name it audits', async () => {
    h = await embeddedBackend().open();
    const service = h.service;
    await service.create(admin(), { tenant: 'acme', name: 'other', type: 'aes-256', releasePolicy: 'ear.measurement == "bb22"' });
    const tee = teeKeyPair('P-256');
    const attestation = await attest(h.metadata, tee.recipient, { 'ear.status': 'affirming', measurement: 'aa11' });
    const release = (name: string, auditsDenial?: () => boolean) =>
      service.release({ principal: workload(), tenant: 'acme', name, attestation, recipient: tee.recipient, ...(auditsDenial ? { auditsDenial } : {}) });
    const before = h.audit.events.length;

    // A name no key may have, as long as a URL holds: refused, and audited with the name clipped.
    const huge = 'b'.repeat(200_000);
    await expect(release(huge)).rejects.toMatchObject({ code: 'ERR_KEY_NAME' });
    const audited = h.audit.lines.slice(before);
    expect(audited).toHaveLength(1);
    expect(h.audit.events.at(-1)).toMatchObject({ action: 'key.release', verdict: 'deny', reason: 'ERR_KEY_NAME', detail: { name: `${'b'.repeat(127)}…` } });
    expect(audited[0]!.length).toBeLessThan(2048);
    expect(h.logLines.every((l) => l.length < 4096)).toBe(true);

    // The bound says no: the refusal is thrown (and logged) but not appended.
    let asked = 0;
    const no = () => (asked++, false);
    await expect(release('missing', no)).rejects.toMatchObject({ code: 'ERR_KEY_NOT_FOUND' });
    await expect(release('other', no)).rejects.toMatchObject({ code: 'ERR_POLICY_DENIED' });
    await expect(release(huge, no)).rejects.toMatchObject({ code: 'ERR_KEY_NAME' });
    expect(asked).toBe(3);
    expect(h.audit.events.length).toBe(before + 1);
    // It says yes: appended as before.
    await expect(release('missing', () => true)).rejects.toMatchObject({ code: 'ERR_KEY_NOT_FOUND' });
    expect(h.audit.events.length).toBe(before + 2);
  });
});
