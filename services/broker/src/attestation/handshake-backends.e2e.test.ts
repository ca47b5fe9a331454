// The same handshake path on the other storage backends: keys in a PKCS#11 HSM (SoftHSM2; the
// TEE key is P-256 and the key is wrapped inside the HSM), and metadata in PostgreSQL, where
// two broker replicas sharing the database and the EAR key serve one workload: it attests on
// one and is released the key by the other.
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import { BrokerWorkloadClient, fetchKey } from './workload-client.js';
import { startBroker } from '../start.js';
import { startPostgres, type PostgresFixture } from '../testing/postgres.js';
import { createSoftHsmToken, type SoftHsmToken } from '../testing/softhsm.js';
import { attestWith, codeOf, releaseWith, simPolicy, startHandshakeBroker, type HandshakeBroker } from '../testing/handshake.js';

const GOOD = 'a1'.repeat(48);
const BAD = 'c3'.repeat(48);
const sim = (m = GOOD) => new SimAttester({ measurements: { measurement: m } });
const RELEASE = `status == 'affirming' && claims.measurements.measurement == '${GOOD}'`;

describe('handshake with keys in a PKCS#11 HSM (SoftHSM2)', () => {
  let token: SoftHsmToken;
  let b: HandshakeBroker;
  const material = randomBytes(32);
  beforeAll(async () => {
    token = createSoftHsmToken('custody-handshake');
    b = await startHandshakeBroker({ policy: simPolicy([GOOD]), keystore: { kind: 'pkcs11', library: token.library, tokenLabel: token.tokenLabel, pin: token.pin } });
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: RELEASE });
  });
  afterAll(async () => {
    await b?.close();
    token?.cleanup();
  });

  it('asks for a P-256 TEE key and releases the key wrapped inside the HSM', async () => {
    const challenge = await b.workload.challenge('acme');
    expect(challenge.teeKeyCurves).toEqual(['P-256']);
    const got = await fetchKey({ broker: b.url, tenant: 'acme', name: 'dk', attester: sim() });
    expect(Buffer.from(got.material).equals(material)).toBe(true);
    const a = await attestWith(b.workload, 'acme', sim());
    expect((await releaseWith(b.workload, 'acme', a, 'dk')).released.scheme).toBe('custody-pkcs11-ecdh-p256-a256kwp-v1');
  });

  it('refuses a wrong measurement, an X25519 TEE key, and a revoked key', async () => {
    expect(await codeOf(attestWith(b.workload, 'acme', sim(BAD)))).toBe('ERR_EVIDENCE_MEASUREMENT');
    expect(await codeOf(fetchKey({ broker: b.url, tenant: 'acme', name: 'dk', attester: sim(), curve: 'X25519' }))).toBe('ERR_KEY_RECIPIENT');
    const a = await attestWith(b.workload, 'acme', sim());
    await b.admin.revokeKey('dk');
    expect(await codeOf(releaseWith(b.workload, 'acme', a, 'dk'))).toBe('ERR_KEY_REVOKED');
  });
});

describe('handshake with metadata in PostgreSQL, two broker replicas', () => {
  let pg: PostgresFixture;
  beforeAll(async () => {
    pg = await startPostgres();
  }, 120_000);
  afterAll(() => pg?.destroy());

  it('attests on one replica, releases on the other, and a revocation on either stops both', async () => {
    const url = await pg.createDatabase('handshake');
    const a = await startHandshakeBroker({ policy: simPolicy([GOOD]), postgres: url });
    // The second replica shares the database, the master key and the EAR signing key (one data dir).
    const b = await startBroker({ dataDir: a.dataDir, postgres: url, tenant: 'acme', policy: { text: simPolicy([GOOD]) } });
    try {
      const material = randomBytes(32);
      await a.admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: RELEASE });
      const got = await fetchKey({ broker: a.url, tenant: 'acme', name: 'dk', attester: sim() });
      expect(Buffer.from(got.material).equals(material)).toBe(true);
      const session = await attestWith(a.workload, 'acme', sim());
      const onB = new BrokerWorkloadClient({ baseUrl: b.url });
      expect(Buffer.from((await releaseWith(onB, 'acme', session, 'dk')).material).equals(material)).toBe(true);
      // The nonce was consumed in the shared database: replaying the attestation on B fails.
      expect(await codeOf(onB.attest({ session: session.challenge.session, evidence: session.evidence, runtimeData: session.runtimeData, platform: 'sim' }))).toBe('ERR_SESSION_NONCE_USED');
      expect(await codeOf(attestWith(onB, 'acme', sim(BAD)))).toBe('ERR_EVIDENCE_MEASUREMENT');
      await a.admin.revokeKey('dk');
      expect(await codeOf(releaseWith(onB, 'acme', session, 'dk'))).toBe('ERR_KEY_REVOKED');
      expect(await codeOf(releaseWith(a.workload, 'acme', session, 'dk'))).toBe('ERR_KEY_REVOKED');
    } finally {
      await b.close();
      await a.close();
    }
  });
});
