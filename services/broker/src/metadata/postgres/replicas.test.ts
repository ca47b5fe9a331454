// Several broker replicas on one PostgreSQL: two processes over HTTP, and two in-process
// instances with separate pools, serving the same keys consistently. Also a database outage.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import pgDriver from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, equalBytes, toBase64 } from '@custody/core';
import { issueApiKey } from '../../auth/api-keys.js';
import { BrokerAdminClient } from '../../http/client.js';
import { KeyService } from '../../keys/key-service.js';
import { EmbeddedKeyStore } from '../../keystore/embedded/embedded-key-store.js';
import { masterKeyFromEnv } from '../../keystore/embedded/master-key.js';
import { InMemoryAuditSinkTestDouble, MiniPolicyEvaluatorTestDouble, openRelease, teeKeyPair } from '../../testing/doubles.js';
import { HpkeKeyWrapper } from '../../keystore/hpke-key-wrapper.js';
import { admin, attest, workload } from '../../testing/harness.js';
import { startPostgres, type PostgresFixture } from '../../testing/postgres.js';
import { PostgresMetadataStore } from './postgres-metadata-store.js';

const repoRoot = fileURLToPath(new URL('../../../../../', import.meta.url));

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected a CustodyError, but the call succeeded');
}

async function replica(url: string, env: Record<string, string>) {
  const metadata = await PostgresMetadataStore.open({ connectionString: url, maxConnections: 4, connectTimeoutMs: 1500 });
  const keystore = await EmbeddedKeyStore.open(masterKeyFromEnv(env), metadata);
  const audit = new InMemoryAuditSinkTestDouble();
  const service = new KeyService({ metadata, keystore, audit, wrapper: new HpkeKeyWrapper(), policy: new MiniPolicyEvaluatorTestDouble() });
  return { metadata, keystore, service, audit, close: async () => (await keystore.close(), await metadata.close()) };
}

function startBrokerProcess(env: Record<string, string>): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'services/broker/src/testing/broker-process.ts'], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`broker process did not start: ${stderr}`)), 60_000);
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      resolve({ url: (JSON.parse(line) as { url: string }).url, child });
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`broker process exited with ${code}: ${stderr}`));
    });
  });
}

function stop(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve();
    child.once('exit', () => resolve());
    child.kill('SIGTERM');
  });
}

describe('broker replicas on one PostgreSQL', () => {
  let pg: PostgresFixture;
  const env = { CUSTODY_MASTER_KEY: toBase64(randomBytes(32)) };

  beforeAll(async () => {
    pg = await startPostgres();
  }, 120_000);
  afterAll(() => pg?.destroy());

  it('two broker processes serve the same keys: create on one, rotate on the other, both see the same versions', async () => {
    const url = await pg.createDatabase('two_processes');
    const setup = await PostgresMetadataStore.open({ connectionString: url });
    const { token } = await issueApiKey(setup, { tenant: 'acme', role: 'admin', label: 'test', createdBy: 'test', now: Date.now() });
    await setup.close();
    const procEnv = { ...env, CUSTODY_DATABASE_URL: url };
    const [p1, p2] = await Promise.all([startBrokerProcess(procEnv), startBrokerProcess(procEnv)]);
    try {
      expect(p1.url).not.toBe(p2.url);
      const c1 = new BrokerAdminClient({ baseUrl: p1.url, apiKey: token });
      const c2 = new BrokerAdminClient({ baseUrl: p2.url, apiKey: token });
      const created = await c1.createKey({ name: 'shared', type: 'aes-256', releasePolicy: 'true' });
      expect(created.currentVersion).toBe(1);
      const rotated = await c2.rotateKey('shared');
      expect(rotated.currentVersion).toBe(2);
      const seen1 = await c1.getKey('shared');
      const seen2 = await c2.getKey('shared');
      expect(seen1).toEqual(seen2);
      expect(seen1.versions.map((v) => [v.version, v.usage])).toEqual([
        [1, 'decrypt-only'],
        [2, 'current'],
      ]);
      expect(await codeOf(c2.createKey({ name: 'shared', type: 'secret' }))).toBe('ERR_KEY_EXISTS');
      await c2.revokeKey('shared');
      expect((await c1.getKey('shared')).state).toBe('revoked');
      expect(await codeOf(c1.rotateKey('shared'))).toBe('ERR_KEY_REVOKED');
      // Both processes append to one interim audit chain.
      const events = await c1.readInterimAudit();
      expect(events.map((e) => (e.event as { action: string }).action)).toEqual(['key.create', 'key.rotate', 'key.revoke']);
      expect(events.map((e) => e.index)).toEqual([0, 1, 2]);
    } finally {
      await Promise.all([stop(p1.child), stop(p2.child)]);
    }
  });

  it('two in-process instances with separate pools: consistent versions, material, revocation and nonces', async () => {
    const url = await pg.createDatabase('two_instances');
    const a = await replica(url, env);
    const b = await replica(url, env);
    try {
      await a.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
      await b.service.rotate(admin(), { tenant: 'acme', name: 'dk' });
      expect(await a.service.get(admin(), 'acme', 'dk')).toEqual(await b.service.get(admin(), 'acme', 'dk'));

      const tee = teeKeyPair('P-256');
      const attestation = await attest(a.metadata, tee.recipient);
      const ra = await a.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient });
      const rb = await b.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient });
      expect([ra.key.version, rb.key.version]).toEqual([2, 2]);
      expect(equalBytes(await openRelease(tee, ra), await openRelease(tee, rb))).toBe(true);

      // A data key wrapped on one replica unwraps on the other.
      const dk = await a.service.generateDataKey(admin(), { tenant: 'acme', kek: 'dk' });
      expect(equalBytes(await b.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk.wrapped }), dk.plaintext)).toBe(true);

      // A revocation on one replica stops releases on the other immediately.
      await b.service.revoke(admin(), { tenant: 'acme', name: 'dk' });
      expect(await codeOf(a.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient }))).toBe('ERR_KEY_REVOKED');

      // A nonce consumed on one replica cannot be consumed on the other.
      const now = Date.now();
      await a.metadata.createSession({ id: 'sess', tenant: 'acme', nonce: 'ab'.repeat(16), state: 'challenged', createdAt: now, expiresAt: now + 60_000, nonceConsumedAt: null, binding: null });
      await a.metadata.consumeNonce('ab'.repeat(16), now + 1);
      expect(await codeOf(b.metadata.consumeNonce('ab'.repeat(16), now + 2))).toBe('ERR_SESSION_NONCE_USED');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('a database outage fails closed with ERR_STORE_UNAVAILABLE, and service resumes when it is back', async () => {
    const url = await pg.createDatabase('outage');
    const a = await replica(url, env);
    try {
      await a.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
      const tee = teeKeyPair('P-256');
      const attestation = await attest(a.metadata, tee.recipient);
      pg.stopServer();
      expect(await codeOf(a.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient }))).toBe('ERR_STORE_UNAVAILABLE');
      expect(await codeOf(a.service.list(admin(), 'acme'))).toBe('ERR_STORE_UNAVAILABLE');
      expect(await codeOf(a.metadata.consumeNonce('x', Date.now()))).toBe('ERR_STORE_UNAVAILABLE');
      expect(a.audit.events.some((e) => e.action === 'key.release' && e.verdict === 'allow')).toBe(false);
      pg.startServer();
      const released = await a.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation, recipient: tee.recipient });
      expect(released.key.version).toBe(1);
    } finally {
      pg.startServer();
      await a.close();
    }
  });

  it('a connection the server ends while a transaction holds it fails that call, not the process', async () => {
    const url = await pg.createDatabase('terminated');
    const store = await PostgresMetadataStore.open({ connectionString: url, maxConnections: 4, connectTimeoutMs: 1500 });
    try {
      // A transaction between two queries when its backend is ended (a restart, an administrator).
      const tx = (store as unknown as { tx<T>(fn: (c: { query(sql: string): Promise<unknown> }) => Promise<T>): Promise<T> }).tx.bind(store);
      const held = tx(async (c) => {
        await c.query('SELECT 1');
        const admin = new pgDriver.Client({ connectionString: url });
        await admin.connect();
        await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'idle in transaction'");
        await admin.end();
        await new Promise((r) => setTimeout(r, 200));
        return c.query('SELECT 2');
      });
      expect(await codeOf(held)).toBe('ERR_STORE_UNAVAILABLE');
      expect((await store.appendAudit('acme', Date.now(), '{"after":true}')).index).toBe(0);
    } finally {
      await store.close();
    }
  });
});
