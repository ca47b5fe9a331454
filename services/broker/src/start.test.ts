// startBroker: the embedded defaults in one data directory, owner-only files, the bootstrap
// admin key (in memory, or written once to a 0600 file), state kept across restarts, and a JWKS
// route that looks at the EAR key file itself (a dropped key leaves it at once, whatever the
// reload interval; an unusable file publishes no key, not to be cached).
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerAdminClient } from './http/client.js';
import { rotateEarKeyFile } from './attestation/ear-key-set.js';
import { startBroker } from './start.js';

describe('startBroker', () => {
  let root: string;
  beforeEach(() => (root = mkdtempSync(join(tmpdir(), 'custody-start-'))));
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('creates an owner-only data dir, writes the bootstrap admin key once, and keeps keys and the EAR key across restarts', async () => {
    const dataDir = join(root, 'data');
    const policyFile = join(root, 'policy.yaml');
    writeFileSync(policyFile, 'apiVersion: custody.dev/policy/v1\nid: p\nversion: 2\nallowSimulated: true\nplatforms:\n  sim:\n    measurement: "aa"\n');
    const first = await startBroker({ dataDir, bootstrap: 'file', tenant: 'acme', policy: policyFile });
    let jwks: unknown;
    try {
      expect(statSync(dataDir).mode & 0o777).toBe(0o700);
      for (const f of ['master.key', 'ear-signing-key.jwk', 'broker.db', 'admin-acme.key']) expect(statSync(join(dataDir, f)).mode & 0o777).toBe(0o600);
      expect(first).toMatchObject({ tenant: 'acme', adminKeyCreated: true, adminKeyFile: join(dataDir, 'admin-acme.key'), storage: { metadata: 'sqlite', keystore: 'embedded' } });
      expect(first.policies.default).toMatch(/^custody:policy:p:2:sha256:[0-9a-f]{64}$/);
      expect(readFileSync(first.adminKeyFile!, 'utf8').trim()).toBe(first.adminKey);
      await new BrokerAdminClient({ baseUrl: first.url, apiKey: first.adminKey! }).createKey({ name: 'k', type: 'aes-256', releasePolicy: 'true' });
      jwks = await (await fetch(first.jwksUrl)).json();
    } finally {
      await first.close();
    }
    const second = await startBroker({ dataDir, bootstrap: 'file', tenant: 'acme' });
    try {
      expect(second.adminKey).toBeUndefined();
      expect(second.adminKeyCreated).toBe(false);
      expect(second.policies.default).toMatch(/^custody:policy:default-deny:1:/);
      const admin = new BrokerAdminClient({ baseUrl: second.url, apiKey: readFileSync(second.adminKeyFile!, 'utf8').trim() });
      expect((await admin.listKeys()).map((k) => k.name)).toEqual(['k']);
      expect(await (await fetch(second.jwksUrl)).json()).toEqual(jwks);
    } finally {
      await second.close();
    }
  });

  it('warns (and logs) when others can write into the state directory or get at its admin key file; a fresh start has nothing to say', async () => {
    const dataDir = join(root, 'exposed');
    const fresh = await startBroker({ dataDir, bootstrap: 'file', tenant: 'acme' });
    expect(fresh.warnings).toEqual([]);
    await fresh.close();
    chmodSync(dataDir, 0o777);
    chmodSync(join(dataDir, 'admin-acme.key'), 0o666);
    const logged: string[] = [];
    const logger = { warn: (_o: unknown, m: string) => void logged.push(m), info: () => undefined, error: () => undefined, debug: () => undefined } as never;
    const again = await startBroker({ dataDir, bootstrap: 'file', tenant: 'acme', logger });
    try {
      expect(again.warnings).toEqual([
        `the broker state directory ${dataDir}: the group and other users can create and remove files in it (mode 0777); chmod 700 it`,
        `the admin key file ${join(dataDir, 'admin-acme.key')}: the group and other users can read and write it (mode 0666); chmod 600 it`,
      ]);
      expect(logged).toEqual(again.warnings);
    } finally {
      await again.close();
    }
  });

  it('a bootstrap whose key file cannot be written stores no key (the file is written first), so the next start bootstraps again', async () => {
    const dataDir = join(root, 'half');
    mkdirSync(dataDir, { mode: 0o700 });
    // Something in the way of the key file (a dangling link): the write fails before the key is stored.
    symlinkSync(join(root, 'nowhere'), join(dataDir, 'admin-acme.key'));
    await expect(startBroker({ dataDir, bootstrap: 'file', tenant: 'acme' })).rejects.toMatchObject({ code: 'ERR_FILE_EXISTS' });
    expect(readdirSync(dataDir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    rmSync(join(dataDir, 'admin-acme.key'));
    const again = await startBroker({ dataDir, bootstrap: 'file', tenant: 'acme' });
    try {
      expect(again.adminKeyCreated).toBe(true);
      const admin = new BrokerAdminClient({ baseUrl: again.url, apiKey: readFileSync(again.adminKeyFile!, 'utf8').trim() });
      expect(await admin.listKeys()).toEqual([]);
    } finally {
      await again.close();
    }
  });

  it('refuses to start on an emptied or replaced database beside an admin key file it issued', async () => {
    const dataDir = join(root, 'emptied');
    const first = await startBroker({ dataDir, bootstrap: 'file', tenant: 'acme' });
    await first.close();
    writeFileSync(join(dataDir, 'broker.db'), '');
    for (const f of ['broker.db-wal', 'broker.db-shm']) rmSync(join(dataDir, f), { force: true });
    await expect(startBroker({ dataDir, bootstrap: 'file', tenant: 'acme' })).rejects.toMatchObject({ code: 'ERR_STORE_CONFIG' });
  });

  it('by default issues an admin key held in memory only', async () => {
    const dataDir = join(root, 'mem');
    const b = await startBroker({ dataDir });
    try {
      expect(b.tenant).toBe('default');
      expect(b.adminKey).toMatch(/^cst_[0-9a-f]{16}_/);
      expect(existsSync(join(dataDir, 'admin-default.key'))).toBe(false);
      expect(await new BrokerAdminClient({ baseUrl: b.url, apiKey: b.adminKey! }).listKeys()).toEqual([]);
    } finally {
      await b.close();
    }
  });

  it('serves a JWKS without a key dropped by --no-overlap at the next fetch, however long the reload interval, and an uncached empty one while the key file is unusable', async () => {
    const dataDir = join(root, 'jwks');
    const b = await startBroker({ dataDir, earKeyReloadMs: 3_600_000 });
    try {
      const get = async () => {
        const res = await fetch(b.jwksUrl);
        return { cache: res.headers.get('cache-control'), kids: ((await res.json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid) };
      };
      const before = await get();
      expect(before).toMatchObject({ cache: 'public, max-age=300', kids: [expect.any(String)] });
      const r = await rotateEarKeyFile(join(dataDir, 'ear-signing-key.jwk'), { overlap: false });
      // The route looks at the file at most once a second.
      await new Promise((res) => setTimeout(res, 1100));
      expect(await get()).toEqual({ cache: 'public, max-age=300', kids: [r.kid] });
      const again = await rotateEarKeyFile(join(dataDir, 'ear-signing-key.jwk'), { overlap: false });
      chmodSync(join(dataDir, 'ear-signing-key.jwk'), 0o640);
      await new Promise((res) => setTimeout(res, 1100));
      expect(await get()).toEqual({ cache: 'no-store', kids: [] });
      chmodSync(join(dataDir, 'ear-signing-key.jwk'), 0o600);
      await new Promise((res) => setTimeout(res, 1100));
      expect(await get()).toEqual({ cache: 'public, max-age=300', kids: [again.kid] });
    } finally {
      await b.close();
    }
  });

  it('refuses a bad policy file and a bad tenant before serving', async () => {
    await expect(startBroker({ dataDir: join(root, 'x'), policy: join(root, 'missing.yaml') })).rejects.toMatchObject({ code: 'ERR_FILE_NOT_FOUND' });
    writeFileSync(join(root, 'bad.yaml'), 'apiVersion: nope\n');
    await expect(startBroker({ dataDir: join(root, 'y'), policy: join(root, 'bad.yaml') })).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    await expect(startBroker({ dataDir: join(root, 'z'), tenant: 'Not A Tenant' })).rejects.toMatchObject({ code: 'ERR_KEY_NAME' });
  });
});
