// EAR signing-key rotation on a running broker (startBroker, HTTP on loopback, sim evidence):
// EARs of the retired key keep releasing while they can be valid, new EARs carry the new kid,
// the published JWKS follows the key file over time, and a remembered (cached) EAR fails once
// its key is no longer published, exactly as a fresh verification does.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyEar } from '@custody/policy';
import { SimAttester } from '@custody/attester-service';
import { attestWith, codeOf, releaseWith, simPolicy, startHandshakeBroker, statusOf, type HandshakeBroker } from '../testing/handshake.js';
import { EAR_KEY_RETENTION_SECONDS, rotateEarKeyFile } from './ear-key-set.js';
import { EAR_ISSUER } from './handshake.js';

const GOOD = 'a1'.repeat(48);
const RELEASE_POLICY = `status == 'affirming' && platform == 'sim' && claims.measurements.measurement == '${GOOD}'`;
const sim = () => new SimAttester({ measurements: { measurement: GOOD } });

function kidOf(token: string): string {
  return (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
}

describe('EAR signing-key rotation on a running broker', () => {
  let b: HandshakeBroker;
  let keyFile: string;
  const material = randomBytes(32);

  beforeAll(async () => {
    b = await startHandshakeBroker({ policy: simPolicy([GOOD]) });
    keyFile = join(b.dataDir, 'ear-signing-key.jwk');
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: RELEASE_POLICY });
  });
  afterAll(async () => b?.close());

  const jwks = async () => (await (await fetch(`${b.url}/.well-known/jwks.json`)).json()) as { keys: Array<{ kid: string; d?: string }> };
  const kids = async () => (await jwks()).keys.map((k) => k.kid);

  it('keeps releasing to EARs of the retired key, signs new EARs with the new kid, and drops the old key from the JWKS after its window', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    const oldKid = kidOf(a.attested.ear);
    expect(await kids()).toEqual([oldKid]);
    expect(Buffer.from((await releaseWith(b.workload, 'acme', a, 'dk')).material).equals(material)).toBe(true);

    const r = await rotateEarKeyFile(keyFile, { now: b.time.clock() });
    expect(await b.started.reloadEarKey()).toBe(true);
    expect(await kids()).toEqual([r.kid, oldKid]);
    expect((await jwks()).keys.some((k) => 'd' in k)).toBe(false);

    // The EAR issued before the rotation: still released to (remembered), and still verifies afresh.
    expect(Buffer.from((await releaseWith(b.workload, 'acme', a, 'dk')).material).equals(material)).toBe(true);
    expect((await verifyEar(a.attested.ear, { jwks: await jwks(), now: b.time.clock(), issuer: EAR_ISSUER })).kid).toBe(oldKid);

    // A new attestation is signed with the new key and releases too.
    const a2 = await attestWith(b.workload, 'acme', sim());
    expect(kidOf(a2.attested.ear)).toBe(r.kid);
    expect(Buffer.from((await releaseWith(b.workload, 'acme', a2, 'dk')).material).equals(material)).toBe(true);

    // Retention, on every broker whatever its settings: a day of EAR lifetime + an hour of reload
    // interval + 60 s skew after the retirement (the EAR itself expired long before).
    b.time.advance(EAR_KEY_RETENTION_SECONDS * 1000 - 1_000);
    expect(await kids()).toEqual([r.kid, oldKid]);
    b.time.advance(1_000);
    expect(await kids()).toEqual([r.kid]);
    expect(b.logLines.join('\n')).not.toContain('"d":');
  });

  it('refuses a remembered EAR once a rotation without overlap dropped its key, with the code a fresh verification gives', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    // Released once: its verification is remembered by the broker.
    await releaseWith(b.workload, 'acme', a, 'dk');
    const r = await rotateEarKeyFile(keyFile, { now: b.time.clock(), overlap: false });
    expect(await b.started.reloadEarKey()).toBe(true);
    const published = await jwks();
    expect(published.keys.map((k) => k.kid)).toEqual([r.kid]);
    // The EAR has not expired; only its key is gone.
    const fresh = await codeOf(verifyEar(a.attested.ear, { jwks: published, now: b.time.clock(), issuer: EAR_ISSUER }));
    expect(fresh).toBe('ERR_EAR_KEY_UNKNOWN');
    expect(await codeOf(releaseWith(b.workload, 'acme', a, 'dk'))).toBe(fresh);
    expect(await statusOf(releaseWith(b.workload, 'acme', a, 'dk'))).toBe(401);
    const denial = b.ledger.events.find((e) => e.action === 'key.release' && e.verdict === 'deny' && e.detail?.session === a.challenge.session);
    expect(denial).toMatchObject({ reason: 'ERR_EAR_KEY_UNKNOWN' });
    // The next workload attests under the new key.
    const a2 = await attestWith(b.workload, 'acme', sim());
    expect(kidOf(a2.attested.ear)).toBe(r.kid);
    await releaseWith(b.workload, 'acme', a2, 'dk');
  });
});
