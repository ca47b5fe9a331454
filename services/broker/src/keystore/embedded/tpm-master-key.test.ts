// The TPM-sealed master key against a real software TPM (swtpm + tpm2-tools).
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSwtpm, type SwtpmInstance } from '@custody/attester-service/testing';
import { CustodyError, equalBytes, fromBase64, toBase64, toHex, type Bytes } from '@custody/core';
import { KeyService } from '../../keys/key-service.js';
import { SqliteMetadataStore } from '../../metadata/sqlite/sqlite-metadata-store.js';
import { startBroker } from '../../start.js';
import { InMemoryAuditSinkTestDouble, MiniPolicyEvaluatorTestDouble, openRelease, teeKeyPair } from '../../testing/doubles.js';
import { admin, attest, bufferLogger, workload } from '../../testing/harness.js';
import { HpkeKeyWrapper } from '../hpke-key-wrapper.js';
import { EmbeddedKeyStore } from './embedded-key-store.js';
import { masterKeyFromEnv, type MasterKeyProvider } from './master-key.js';
import { masterKeyFromTpm, type TpmMasterKeyOptions } from './tpm-master-key.js';

async function errorOf(p: Promise<unknown>): Promise<CustodyError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return e as CustodyError;
  }
  throw new Error('expected a CustodyError, but the call succeeded');
}

/** Deterministic-for-the-test randomness that keeps a copy of the key it hands out. */
function capturingRandom(): { random: (n: number) => Bytes; keys: Bytes[] } {
  const keys: Bytes[] = [];
  return {
    keys,
    random: (n) => {
      const b = new Uint8Array(randomBytes(n));
      keys.push(b.slice());
      return b;
    },
  };
}

/** Every encoding of `secret` a careless writer might use. */
function encodings(secret: Bytes): string[] {
  return [toHex(secret), toBase64(secret), Buffer.from(secret).toString('base64url'), toBase64(secret).replace(/=+$/, '')];
}

function containsBytes(hay: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(hay).indexOf(Buffer.from(needle)) >= 0;
}

let tpm: SwtpmInstance;
let dir: string;
beforeAll(async () => {
  tpm = await startSwtpm();
}, 60_000);
afterAll(async () => {
  await tpm?.stop();
});
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'custody-tpm-mk-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

function provider(extra: Partial<TpmMasterKeyOptions> = {}): MasterKeyProvider {
  return masterKeyFromTpm({ path: join(dir, 'master-key.tpm.json'), tcti: tpm.tcti, ...extra });
}

async function openStore(master: MasterKeyProvider) {
  const metadata = await SqliteMetadataStore.open(join(dir, 'broker.db'));
  let keystore: EmbeddedKeyStore;
  try {
    keystore = await EmbeddedKeyStore.open(master, metadata);
  } catch (e) {
    await metadata.close();
    throw e;
  }
  const service = new KeyService({ metadata, keystore, audit: new InMemoryAuditSinkTestDouble(), wrapper: new HpkeKeyWrapper(), policy: new MiniPolicyEvaluatorTestDouble() });
  return { metadata, keystore, service, close: async () => (await keystore.close(), await metadata.close()) };
}

describe('TPM-sealed master key (swtpm)', () => {
  const tee = teeKeyPair('P-256');

  for (const pcrs of [[], [0, 7]]) {
    it(`seals on first start and unseals the same key later (PCRs: ${pcrs.join(',') || 'none'}); the key store opens its keys`, async () => {
      const rnd = capturingRandom();
      const material = randomBytes(32);
      const a = await openStore(provider({ pcrs, random: rnd.random }));
      expect(rnd.keys).toHaveLength(1);
      await a.service.import(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', material, releasePolicy: 'true' });
      await a.close();

      const sealedPath = join(dir, 'master-key.tpm.json');
      expect(statSync(sealedPath).mode & 0o777).toBe(0o600);
      const sealed = JSON.parse(readFileSync(sealedPath, 'utf8')) as { policy: { pcrs: number[] } | null };
      expect(sealed.policy?.pcrs ?? []).toEqual(pcrs);

      // Second start: nothing new is generated, the unsealed key opens the stored material.
      const b = await openStore(provider({ pcrs, random: rnd.random }));
      expect(rnd.keys).toHaveLength(1);
      const released = await b.service.release({ principal: workload(), tenant: 'acme', name: 'dk', attestation: await attest(b.metadata, tee.recipient), recipient: tee.recipient });
      expect(equalBytes(await openRelease(tee, released), material)).toBe(true);
      await b.close();

      // The key that was sealed is exactly the key the store runs on.
      const c = await openStore(masterKeyFromEnv({ CUSTODY_MASTER_KEY: toBase64(rnd.keys[0]!) }));
      await c.close();
    }, 60_000);
  }

  it('with a PCR policy, extending a bound PCR makes the unseal fail closed (ERR_MASTER_KEY_TPM, reason policy)', async () => {
    const a = await openStore(provider({ pcrs: [0, 7] }));
    await a.service.import(admin(), { tenant: 'acme', name: 'dk', type: 'aes-256', material: randomBytes(32), releasePolicy: 'true' });
    await a.close();
    const before = readFileSync(join(dir, 'master-key.tpm.json'));

    // An unbound PCR changing does not matter.
    await tpm.tool('tpm2_pcrextend', [`16:sha256=${'ab'.repeat(32)}`]);
    await (await openStore(provider({ pcrs: [0, 7] }))).close();

    await tpm.tool('tpm2_pcrextend', [`7:sha256=${'cd'.repeat(32)}`]);
    const e = await errorOf(openStore(provider({ pcrs: [0, 7] })));
    expect(e.code).toBe('ERR_MASTER_KEY_TPM');
    expect(e.detail?.reason).toBe('policy');
    // Fail closed: the sealed file is kept as it was, never replaced by a new key.
    expect(equalBytes(readFileSync(join(dir, 'master-key.tpm.json')), before)).toBe(true);
  }, 60_000);

  it('a TPM that is not reachable or a broken sealed file is ERR_MASTER_KEY_TPM, and nothing is written', async () => {
    const e = await errorOf(masterKeyFromTpm({ path: join(dir, 'm.json'), tcti: 'swtpm:host=127.0.0.1,port=1', timeoutMs: 20_000 }).load());
    expect(e.code).toBe('ERR_MASTER_KEY_TPM');
    expect(e.detail?.reason).toBe('unavailable');
    expect(existsSync(join(dir, 'm.json'))).toBe(false);

    await provider({ pcrs: [] }).load();
    const path = join(dir, 'master-key.tpm.json');
    const sealed = JSON.parse(readFileSync(path, 'utf8')) as { private: string };
    const priv = fromBase64(sealed.private);
    priv[priv.length - 1]! ^= 1;
    const { writeFileSync } = await import('node:fs');
    writeFileSync(path, JSON.stringify({ ...sealed, private: toBase64(priv) }), { mode: 0o600 });
    expect((await errorOf(provider().load())).code).toBe('ERR_MASTER_KEY_TPM');
    writeFileSync(path, '{"format":"nope"}', { mode: 0o600 });
    const bad = await errorOf(provider().load());
    expect(bad.code).toBe('ERR_MASTER_KEY_TPM');
    expect(bad.detail?.reason).toBe('blob');
  }, 60_000);

  it('a TPM that stops answering is reason unavailable, naming the tool, after the deadline; it unseals again once it answers', async () => {
    await provider({ pcrs: [] }).load();
    process.kill(tpm.pid, 'SIGSTOP');
    let e: CustodyError;
    try {
      e = await errorOf(provider({ timeoutMs: 1500 }).load());
    } finally {
      process.kill(tpm.pid, 'SIGCONT');
    }
    expect(e.code).toBe('ERR_MASTER_KEY_TPM');
    expect(e.detail).toMatchObject({ reason: 'unavailable', timedOut: true });
    expect(e.message).toMatch(/^tpm2_\w+ got no answer from the TPM within 1500 ms/);
    const again = await openStore(provider());
    await again.close();
  }, 60_000);

  it('the sealed blobs on disk, the data dir and the logs never contain the key bytes', async () => {
    const rnd = capturingRandom();
    await provider({ random: rnd.random }).load();
    const key = rnd.keys[0]!;
    const { logger, lines } = bufferLogger();
    const started = await startBroker({ dataDir: dir, masterKey: { source: 'tpm', tcti: tpm.tcti }, logger, bootstrap: 'file' });
    try {
      await started.broker.service.create(admin('acme'), { tenant: 'acme', name: 'k', type: 'aes-256', releasePolicy: 'true' });
    } finally {
      await started.close();
    }
    expect(existsSync(join(dir, 'master.key'))).toBe(false);
    const files = readdirSync(dir).map((f) => join(dir, f));
    const sealed = JSON.parse(readFileSync(join(dir, 'master-key.tpm.json'), 'utf8')) as { public: string; private: string };
    const blobs = [fromBase64(sealed.public), fromBase64(sealed.private), ...files.map((f) => new Uint8Array(readFileSync(f)))];
    const texts = [...files.map((f) => readFileSync(f, 'latin1')), ...lines];
    expect(lines.length).toBeGreaterThan(0);
    for (const b of blobs) expect(containsBytes(b, key)).toBe(false);
    for (const t of texts) for (const enc of encodings(key)) expect(t.includes(enc)).toBe(false);

    // Failure paths carry no key either.
    await tpm.tool('tpm2_pcrextend', [`0:sha256=${'ef'.repeat(32)}`]);
    const e = await errorOf(startBroker({ dataDir: dir, masterKey: { source: 'tpm', tcti: tpm.tcti }, logger }));
    expect(e.code).toBe('ERR_MASTER_KEY_TPM');
    const dump = JSON.stringify(e.toJSON()) + String(e.stack) + lines.join('\n');
    for (const enc of encodings(key)) expect(dump.includes(enc)).toBe(false);
  }, 60_000);
});
