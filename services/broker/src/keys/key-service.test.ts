// KeyService when the metadata store fails after its commit (the flush of the write to disk, a
// transient EIO): the key or version may be recorded, so its new material is kept and the key
// stays usable, instead of a recorded key version left without material.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { CustodyError } from '@custody/core';
import type { SqliteMetadataStore } from '../metadata/sqlite/sqlite-metadata-store.js';
import { WalSync } from '../metadata/sqlite/wal-sync.js';
import { admin, embeddedBackend, type Harness } from '../testing/harness.js';

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
