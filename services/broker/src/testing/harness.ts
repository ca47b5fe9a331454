// Test harness: a KeyService over a chosen key store and metadata store, with real HPKE and the
// test doubles for the ledger and CEL. Not part of the build.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import { secureRandom, toBase64, toHex, type Bytes } from '@custody/core';
import type { Principal } from '../auth/roles.js';
import { KeyService, releaseBinding, type ReleaseAttestation } from '../keys/key-service.js';
import { EmbeddedKeyStore } from '../keystore/embedded/embedded-key-store.js';
import { masterKeyFromFile } from '../keystore/embedded/master-key.js';
import { Pkcs11KeyStore } from '../keystore/pkcs11/pkcs11-key-store.js';
import type { KeyStore, RecipientKey } from '../keystore/types.js';
import { SqliteMetadataStore } from '../metadata/sqlite/sqlite-metadata-store.js';
import type { MetadataStore, SessionRepository } from '../metadata/types.js';
import { InMemoryAuditSinkTestDouble, MiniPolicyEvaluatorTestDouble, RecordingKeyWrapper } from './doubles.js';
import { createSoftHsmToken, type SoftHsmToken } from './softhsm.js';

/** pino writing JSON lines into an array, so tests can scan every log line. */
export function bufferLogger(): { logger: Logger; lines: string[] } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString('utf8').split('\n')) if (l) lines.push(l);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

export interface Harness {
  service: KeyService;
  keystore: KeyStore;
  metadata: MetadataStore;
  audit: InMemoryAuditSinkTestDouble;
  /** The real HPKE wrapper, recording what it wrapped. */
  wrapper: RecordingKeyWrapper;
  policy: MiniPolicyEvaluatorTestDouble;
  logLines: string[];
  /** The master key bytes (embedded only), for secret scans. */
  masterKey: Bytes | null;
  close(): Promise<void>;
}

export interface BackendFactory {
  name: 'embedded' | 'pkcs11';
  /** Called once per test file before any open(). */
  setup(): void;
  open(): Promise<Harness>;
  teardown(): void;
}

/**
 * Plays the handshake's part for tests: a session whose nonce was consumed and which is bound
 * to this EAR digest and recipient key, as `release` requires.
 */
export async function attest(
  metadata: SessionRepository,
  recipient: RecipientKey,
  ear: Record<string, unknown> = {},
  options: { tenant?: string; ttlMs?: number; earDigest?: string } = {},
): Promise<ReleaseAttestation> {
  const now = Date.now();
  const id = `sess_${toHex(secureRandom(8))}`;
  const nonce = toHex(secureRandom(16));
  const earDigest = options.earDigest ?? toHex(secureRandom(32));
  await metadata.createSession({ id, tenant: options.tenant ?? 'acme', nonce, state: 'challenged', createdAt: now, expiresAt: now + (options.ttlMs ?? 60_000), nonceConsumedAt: null, binding: null });
  await metadata.consumeNonce(nonce, now);
  await metadata.bindSession(id, releaseBinding(earDigest, recipient), now + (options.ttlMs ?? 60_000), now);
  return { sessionId: id, ear, earDigest, measurement: typeof ear.measurement === 'string' ? ear.measurement : 'aa11' };
}

export const admin = (tenant = 'acme'): Principal => ({ tenant, role: 'admin', subject: 'apikey:0000000000000001' });
export const auditor = (tenant = 'acme'): Principal => ({ tenant, role: 'auditor', subject: 'apikey:0000000000000002' });
export const workload = (tenant = 'acme'): Principal => ({ tenant, role: 'workload', subject: 'apikey:0000000000000003' });

function assemble(keystore: KeyStore, metadata: MetadataStore, masterKey: Bytes | null, cleanup: () => void): Harness {
  const audit = new InMemoryAuditSinkTestDouble();
  const wrapper = new RecordingKeyWrapper();
  const policy = new MiniPolicyEvaluatorTestDouble();
  const { logger, lines } = bufferLogger();
  const service = new KeyService({ metadata, keystore, audit, wrapper, policy, logger });
  return {
    service,
    keystore,
    metadata,
    audit,
    wrapper,
    policy,
    logLines: lines,
    masterKey,
    async close() {
      await keystore.close();
      await metadata.close();
      cleanup();
    },
  };
}

/** Embedded key store with a 0600 master key file, metadata in a temp SQLite file. */
export function embeddedBackend(): BackendFactory {
  return {
    name: 'embedded',
    setup() {},
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'custody-broker-'));
      const masterKey = secureRandom(32);
      const keyPath = join(dir, 'master.key');
      writeFileSync(keyPath, toBase64(masterKey), { mode: 0o600 });
      const metadata = await SqliteMetadataStore.open(join(dir, 'broker.db'));
      const keystore = await EmbeddedKeyStore.open(masterKeyFromFile(keyPath), metadata);
      return assemble(keystore, metadata, masterKey, () => rmSync(dir, { recursive: true, force: true }));
    },
    teardown() {},
  };
}

/** SoftHSM2 token as key store, metadata in a temp SQLite file. */
export function pkcs11Backend(): BackendFactory & { token(): SoftHsmToken } {
  let token: SoftHsmToken | undefined;
  return {
    name: 'pkcs11',
    token: () => token!,
    setup() {
      token = createSoftHsmToken('custody-conformance');
    },
    async open() {
      const dir = mkdtempSync(join(tmpdir(), 'custody-broker-'));
      const metadata = await SqliteMetadataStore.open(join(dir, 'broker.db'));
      const keystore = await Pkcs11KeyStore.open({ library: token!.library, tokenLabel: token!.tokenLabel, pin: token!.pin });
      return assemble(keystore, metadata, null, () => rmSync(dir, { recursive: true, force: true }));
    },
    teardown() {
      token?.cleanup();
    },
  };
}
