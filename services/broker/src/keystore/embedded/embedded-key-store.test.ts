// Embedded key store specifics: master key sources, sealing at rest, tampering, restart.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CustodyError, equalBytes, toBase64 } from '@custody/core';
import { KeyService } from '../../keys/key-service.js';
import { SqliteMetadataStore } from '../../metadata/sqlite/sqlite-metadata-store.js';
import { InMemoryAuditSinkTestDouble, MiniPolicyEvaluatorTestDouble, openRelease, teeKeyPair } from '../../testing/doubles.js';
import { HpkeKeyWrapper } from '../hpke-key-wrapper.js';
import { admin, attest, workload } from '../../testing/harness.js';
import { EmbeddedKeyStore } from './embedded-key-store.js';
import { generateMasterKeyFile, masterKeyFromEnv, masterKeyFromFile } from './master-key.js';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected a CustodyError, but the call succeeded');
}

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'custody-embedded-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

describe('master key sources', () => {
  it('reads 32 raw bytes or their base64 from a 0600 file', async () => {
    const raw = randomBytes(32);
    writeFileSync(join(dir, 'raw.key'), raw, { mode: 0o600 });
    writeFileSync(join(dir, 'b64.key'), toBase64(raw) + '\n', { mode: 0o600 });
    const a = await masterKeyFromFile(join(dir, 'raw.key')).load();
    const b = await masterKeyFromFile(join(dir, 'b64.key')).load();
    expect(a.extractable).toBe(false);
    expect(a.algorithm.name).toBe('AES-GCM');
    // Same key: what one encrypts the other decrypts.
    const iv = new Uint8Array(12);
    const ct = await crypto.subtle.encrypt({ name: 'AES-GCM', iv }, a, new Uint8Array([1, 2, 3]));
    expect(new Uint8Array(await crypto.subtle.decrypt({ name: 'AES-GCM', iv }, b, ct))).toEqual(new Uint8Array([1, 2, 3]));
    expect(masterKeyFromFile(join(dir, 'raw.key')).description).toBe(`file:${join(dir, 'raw.key')}`);
  });

  it('refuses a master key file readable by group or others, missing, or of the wrong size', async () => {
    writeFileSync(join(dir, 'open.key'), randomBytes(32), { mode: 0o644 });
    writeFileSync(join(dir, 'short.key'), toBase64(randomBytes(16)), { mode: 0o600 });
    writeFileSync(join(dir, 'junk.key'), 'not a key at all!', { mode: 0o600 });
    for (const f of ['open.key', 'short.key', 'junk.key', 'missing.key']) expect(await codeOf(masterKeyFromFile(join(dir, f)).load())).toBe('ERR_STORE_MASTER_KEY');
  });

  it('reads base64 from CUSTODY_MASTER_KEY (or a named variable)', async () => {
    const raw = randomBytes(32);
    const key = await masterKeyFromEnv({ CUSTODY_MASTER_KEY: toBase64(raw) }).load();
    expect(key.extractable).toBe(false);
    await masterKeyFromEnv({ OTHER: toBase64(raw) }, 'OTHER').load();
    expect(await codeOf(masterKeyFromEnv({}).load())).toBe('ERR_STORE_MASTER_KEY');
    expect(await codeOf(masterKeyFromEnv({ CUSTODY_MASTER_KEY: '%%%' }).load())).toBe('ERR_STORE_MASTER_KEY');
    expect(await codeOf(masterKeyFromEnv({ CUSTODY_MASTER_KEY: toBase64(randomBytes(31)) }).load())).toBe('ERR_STORE_MASTER_KEY');
  });

  it('generateMasterKeyFile writes a new 0600 key and never overwrites', async () => {
    const p = join(dir, 'gen.key');
    generateMasterKeyFile(p);
    expect(statSync(p).mode & 0o777).toBe(0o600);
    await masterKeyFromFile(p).load();
    expect(() => generateMasterKeyFile(p)).toThrow();
  });
});

describe('EmbeddedKeyStore', () => {
  const tee = teeKeyPair('P-256');

  async function open(env: Record<string, string>) {
    const metadata = await SqliteMetadataStore.open(join(dir, 'broker.db'));
    const keystore = await EmbeddedKeyStore.open(masterKeyFromEnv(env), metadata);
    const service = new KeyService({ metadata, keystore, audit: new InMemoryAuditSinkTestDouble(), wrapper: new HpkeKeyWrapper(), policy: new MiniPolicyEvaluatorTestDouble() });
    return { metadata, keystore, service, close: async () => (await keystore.close(), await metadata.close()) };
  }

  it('persists sealed material across restarts with the same master key, and refuses another master key', async () => {
    const env = { CUSTODY_MASTER_KEY: toBase64(randomBytes(32)) };
    const material = randomBytes(32);
    const a = await open(env);
    await a.service.import(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', material, releasePolicy: 'true' });
    await a.close();

    expect(await codeOf(open({ CUSTODY_MASTER_KEY: toBase64(randomBytes(32)) }))).toBe('ERR_STORE_MASTER_KEY');

    const b = await open(env);
    const released = await b.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(b.metadata, tee.recipient), recipient: tee.recipient });
    expect(equalBytes(await openRelease(tee, released), material)).toBe(true);
    await b.close();
  });

  it('never writes material in clear to the database or its WAL', async () => {
    const env = { CUSTODY_MASTER_KEY: toBase64(randomBytes(32)) };
    const s = await open(env);
    const materials = [randomBytes(32), randomBytes(777)];
    await s.service.import(admin(), { tenant: 'acme', name: 'a', type: 'aes-256', material: materials[0]! });
    await s.service.import(admin(), { tenant: 'acme', name: 'b', type: 'secret', material: materials[1]! });
    const files = ['broker.db', 'broker.db-wal'].map((f) => join(dir, f)).filter(existsSync);
    expect(files.length).toBeGreaterThan(0);
    for (const f of files) {
      const bytes = readFileSync(f);
      for (const m of materials) {
        expect(bytes.includes(m)).toBe(false);
        expect(bytes.includes(m.subarray(0, 16))).toBe(false);
      }
    }
    await s.close();
  });

  it('detects a tampered or swapped sealed blob (the AAD binds key id, version and material id)', async () => {
    const env = { CUSTODY_MASTER_KEY: toBase64(randomBytes(32)) };
    const s = await open(env);
    await s.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    await s.service.create(admin(), { tenant: 'acme', name: 'other', type: 'aes-256', releasePolicy: 'true' });
    await s.close();

    const db = new Database(join(dir, 'broker.db'));
    const rows = db.prepare('SELECT m.material_id, m.blob, k.name FROM custody_key_material m JOIN custody_keys k ON k.id = m.key_id').all() as Array<{ material_id: string; blob: Buffer; name: string }>;
    const dk = rows.find((r) => r.name === 'dk')!;
    const other = rows.find((r) => r.name === 'other')!;
    // Move the other key's sealed material under dk's id.
    db.prepare('UPDATE custody_key_material SET blob = ? WHERE material_id = ?').run(other.blob, dk.material_id);
    db.close();
    let t = await open(env);
    expect(await codeOf(t.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(t.metadata, tee.recipient), recipient: tee.recipient }))).toBe('ERR_STORE_CORRUPT');
    await t.close();

    const db2 = new Database(join(dir, 'broker.db'));
    const flipped = Buffer.from(other.blob);
    flipped[flipped.length - 1]! ^= 1;
    db2.prepare('UPDATE custody_key_material SET blob = ? WHERE material_id = ?').run(flipped, other.material_id);
    db2.close();
    t = await open(env);
    expect(await codeOf(t.service.release({ principal: workload(), tenant: 'acme', name: 'other', attestation: await attest(t.metadata, tee.recipient), recipient: tee.recipient }))).toBe('ERR_STORE_CORRUPT');
    await t.close();
  });

  it('destroy removes the sealed blob from the database file and the WAL', async () => {
    const env = { CUSTODY_MASTER_KEY: toBase64(randomBytes(32)) };
    const s = await open(env);
    await s.service.create(admin(), { tenant: 'acme', name: 'dk', type: 'secret', length: 4096 });
    const db = new Database(join(dir, 'broker.db'), { readonly: true });
    const blob = (db.prepare('SELECT blob FROM custody_key_material').get() as { blob: Buffer }).blob;
    db.close();
    const contains = () => ['broker.db', 'broker.db-wal'].map((f) => join(dir, f)).filter(existsSync).some((f) => readFileSync(f).includes(blob.subarray(100, 200)));
    expect(contains()).toBe(true);
    await s.service.destroy(admin(), { tenant: 'acme', name: 'dk' });
    expect(contains()).toBe(false);
    await s.close();
  });
});
