// The key release handshake end to end over HTTP on loopback, with sim evidence: a broker
// started with startBroker (SQLite, embedded key store, EAR key in its data dir), the workload
// client, real HPKE. Every denial the protocol promises, with its code and HTTP status, plus
// the audit trail and a scan of every log line and event for key bytes.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CustodyError} from '@custody/core';
import { fromBase64Url, toBase64, toBase64Url, toHex } from '@custody/core';
import { verifyEar } from '@custody/policy';
import { SimAttester } from '@custody/attester-service';
import { toCustodyEvent } from '@custody/ledger';
import { issueApiKey } from '../auth/api-keys.js';
import { BrokerAdminClient } from '../http/client.js';
import type { AuditEvent } from '../audit/types.js';
import { attestWith, codeOf, releaseWith, simPolicy, startHandshakeBroker, statusOf, type HandshakeBroker } from '../testing/handshake.js';
import { BrokerWorkloadClient, fetchKey, generateTeeKeyPair, openReleasedKey } from './workload-client.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { EAR_ISSUER } from './handshake.js';

const GOOD = 'a1'.repeat(48);
const OTHER = 'b2'.repeat(48);
const BAD = 'c3'.repeat(48);
const RELEASE_POLICY = `status == 'affirming' && platform == 'sim' && claims.measurements.measurement == '${GOOD}'`;

const sim = (measurement = GOOD, debug = false) => new SimAttester({ measurements: { measurement }, debug });

function encodings(secret: Uint8Array): string[] {
  const out: string[] = [];
  for (const part of [secret, secret.subarray(0, 12)]) {
    if (part.length < 8) continue;
    const hex = toHex(part);
    out.push(hex, hex.toUpperCase(), toBase64(part).replace(/=+$/, ''), toBase64Url(part));
  }
  return out;
}

describe('key release handshake over HTTP with sim evidence', () => {
  let b: HandshakeBroker;
  const secrets: Uint8Array[] = []; // only searched for in logs, any buffer will do
  const errorTexts: string[] = [];
  const material = { dk: randomBytes(32), dk2: randomBytes(32), other: randomBytes(32) };

  /** Records the error's text for the secret scan and returns its code. */
  async function denied(p: Promise<unknown>): Promise<string> {
    try {
      await p;
      return 'resolved';
    } catch (e) {
      errorTexts.push(JSON.stringify((e as CustodyError).toJSON?.() ?? String(e)));
      return (e as { code?: string }).code ?? 'unknown';
    }
  }

  beforeAll(async () => {
    b = await startHandshakeBroker({ policy: simPolicy([GOOD, OTHER]) });
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material: material.dk, releasePolicy: RELEASE_POLICY });
    await b.admin.importKey({ name: 'dk2', type: 'aes-256', material: material.dk2, releasePolicy: RELEASE_POLICY });
    secrets.push(material.dk, material.dk2, material.other);
    secrets.push(fromBase64Url(b.started.adminKey!.slice(21)));
    secrets.push(Buffer.from(readFileSync(join(b.dataDir, 'master.key'), 'utf8').trim(), 'base64'));
    secrets.push(fromBase64Url((JSON.parse(readFileSync(join(b.dataDir, 'ear-signing-key.jwk'), 'utf8')) as { d: string }).d));
  });
  afterAll(async () => b?.close());

  it('releases a key to the right measurement, and the EAR verifies against the published JWKS', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    expect(a.attested).toMatchObject({ session: a.challenge.session, status: 'affirming', platform: 'sim' });
    const { released, material: got } = await releaseWith(b.workload, 'acme', a, 'dk');
    expect(Buffer.from(got).equals(material.dk)).toBe(true);
    expect(released).toMatchObject({ key: { name: 'dk', type: 'aes-256', version: 1 }, scheme: 'custody-hpke-key-wrap-v1' });
    secrets.push(fromBase64Url(a.tee.privateKey.export({ format: 'jwk' }).d!));

    const published = await fetch(`${b.url}/.well-known/jwks.json`, { headers: { origin: 'https://app.example' } });
    // Readable from a page of any origin (a browser SDK's jwksUrl).
    expect(published.headers.get('access-control-allow-origin')).toBe('*');
    const jwks = (await published.json()) as { keys: Array<Record<string, unknown>> };
    expect(jwks.keys).toHaveLength(1);
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const v = await verifyEar(a.attested.ear, { jwks, now: new Date(), nonce: fromBase64Url(a.challenge.nonce), issuer: EAR_ISSUER });
    expect(v.status).toBe('affirming');
    expect(v.ear.submods.cpu0!['ear.veraison.annotated-evidence']).toMatchObject({ platform: 'sim', simulated: true, measurements: { measurement: GOOD } });

    // One EAR serves several releases in its session until it expires.
    const second = await releaseWith(b.workload, 'acme', a, 'dk2');
    expect(Buffer.from(second.material).equals(material.dk2)).toBe(true);

    // Both decisions are on the record, tied together by the EAR digest, without key material.
    const events = b.ledger.events.filter((e) => e.detail?.session === a.challenge.session);
    expect(events.map((e) => [e.action, e.verdict])).toEqual([
      ['attest.appraise', 'allow'],
      ['key.release', 'allow'],
      ['key.release', 'allow'],
    ]);
    const earDigest = events[0]!.detail!.earDigest;
    expect(events.every((e) => e.detail!.earDigest === earDigest)).toBe(true);
    expect(events[0]!.detail).toMatchObject({ platform: 'sim', status: 'affirming', policy: 'sim-workload:1', measurement: GOOD });
    expect(events[1]).toMatchObject({ actor: { tenant: 'acme', role: 'workload', subject: `session:${a.challenge.session}` }, key: { name: 'dk', version: 1 } });
  });

  it('fetchKey runs the whole handshake in one call', async () => {
    const got = await fetchKey({ broker: b.url, tenant: 'acme', name: 'dk', attester: sim() });
    expect(Buffer.from(got.material).equals(material.dk)).toBe(true);
    expect(got).toMatchObject({ key: { name: 'dk', version: 1 }, platform: 'sim', status: 'affirming' });
  });

  it('denies a wrong measurement at appraisal, and a measurement the key policy does not name at release', async () => {
    const p = attestWith(b.workload, 'acme', sim(BAD));
    expect(await denied(p)).toBe('ERR_EVIDENCE_MEASUREMENT');
    expect(await statusOf(attestWith(b.workload, 'acme', sim(BAD)))).toBe(403);
    // Allowed by the appraisal policy, refused by the key's release policy.
    const a = await attestWith(b.workload, 'acme', sim(OTHER));
    expect(await denied(releaseWith(b.workload, 'acme', a, 'dk'))).toBe('ERR_POLICY_DENIED');
    const denial = b.ledger.events.find((e) => e.action === 'key.release' && e.verdict === 'deny' && e.detail?.session === a.challenge.session);
    expect(denial).toMatchObject({ reason: 'ERR_POLICY_DENIED', detail: { measurement: OTHER } });
    const appraisalDenial = b.ledger.events.find((e) => e.action === 'attest.appraise' && e.reason === 'ERR_EVIDENCE_MEASUREMENT');
    expect(appraisalDenial).toMatchObject({ verdict: 'deny', detail: { platform: 'sim', status: 'contraindicated', measurement: BAD } });
  });

  it('denies a debug-mode TEE', async () => {
    expect(await denied(attestWith(b.workload, 'acme', sim(GOOD, true)))).toBe('ERR_EVIDENCE_DEBUG');
  });

  it('consumes a nonce once: a replayed attestation, old evidence on a new session and a swapped runtime data all fail', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    const replay = { session: a.challenge.session, evidence: a.evidence, runtimeData: a.runtimeData, platform: 'sim' };
    expect(await denied(b.workload.attest(replay))).toBe('ERR_SESSION_NONCE_USED');
    expect(await statusOf(b.workload.attest(replay))).toBe(403);
    // The old evidence and runtime data on a fresh session: the runtime data names the old nonce.
    const fresh = await b.workload.challenge('acme');
    expect(await denied(b.workload.attest({ ...replay, session: fresh.session }))).toBe('ERR_EVIDENCE_NONCE');
    // New runtime data with the new nonce, but the old evidence: the evidence binds the old digest.
    const fresh2 = await b.workload.challenge('acme');
    const rd = buildRuntimeData(fromBase64Url(fresh2.nonce), a.tee.recipient);
    expect(await denied(b.workload.attest({ session: fresh2.session, evidence: a.evidence, runtimeData: rd, platform: 'sim' }))).toBe('ERR_EVIDENCE_NONCE');
    // Evidence over the right runtime data, but runtime data presented with another TEE key.
    const fresh3 = await b.workload.challenge('acme');
    const good = buildRuntimeData(fromBase64Url(fresh3.nonce), a.tee.recipient);
    const evidence = await sim().collect(await runtimeDigest('sim', good));
    const swapped = buildRuntimeData(fromBase64Url(fresh3.nonce), generateTeeKeyPair().recipient);
    expect(await denied(b.workload.attest({ session: fresh3.session, evidence, runtimeData: swapped, platform: 'sim' }))).toBe('ERR_EVIDENCE_NONCE');
    // Runtime data that is not canonical JSON.
    const fresh4 = await b.workload.challenge('acme');
    const loose = JSON.stringify(JSON.parse(buildRuntimeData(fromBase64Url(fresh4.nonce), a.tee.recipient)), null, 1);
    expect(await denied(b.workload.attest({ session: fresh4.session, evidence, runtimeData: loose, platform: 'sim' }))).toBe('ERR_RUNTIME_DATA');
  });

  it('denies an expired EAR (clock moved past exp) and an expired challenge', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    const fresh = await attestWith(b.workload, 'acme', sim());
    // `a` has been used (its verification is remembered), `fresh` has not: both expire.
    await releaseWith(b.workload, 'acme', a, 'dk');
    const c = await b.workload.challenge('acme');
    b.time.advance(301_000);
    try {
      expect(await denied(releaseWith(b.workload, 'acme', a, 'dk'))).toBe('ERR_EAR_EXPIRED');
      expect(await statusOf(releaseWith(b.workload, 'acme', a, 'dk'))).toBe(401);
      expect(await denied(releaseWith(b.workload, 'acme', fresh, 'dk'))).toBe('ERR_EAR_EXPIRED');
      const rd = buildRuntimeData(fromBase64Url(c.nonce), a.tee.recipient);
      const ev = await sim().collect(await runtimeDigest('sim', rd));
      expect(await denied(b.workload.attest({ session: c.session, evidence: ev, runtimeData: rd, platform: 'sim' }))).toBe('ERR_SESSION_EXPIRED');
    } finally {
      b.time.advance(-301_000);
    }
  });

  it('denies an EAR from another session, a forged EAR and an unknown session', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    const other = await attestWith(b.workload, 'acme', sim());
    expect(await denied(b.workload.release('dk', { session: other.challenge.session, ear: a.attested.ear }))).toBe('ERR_SESSION_MISMATCH');
    const [h, p, s] = a.attested.ear.split('.');
    const flipped = `${h}.${p}.${s!.slice(0, -4)}${s!.slice(-4) === 'AAAA' ? 'BBBB' : 'AAAA'}`;
    expect(await denied(b.workload.release('dk', { session: a.challenge.session, ear: flipped }))).toBe('ERR_EAR_SIGNATURE');
    expect(await denied(b.workload.release('dk', { session: 'ses_00000000-0000-4000-8000-000000000000', ear: a.attested.ear }))).toBe('ERR_SESSION_NOT_FOUND');
    expect(await denied(b.workload.release('dk', { session: a.challenge.session, ear: b.started.adminKey! }))).toBe('ERR_AUTH_INVALID');
    const noAuth = await fetch(`${b.url}/v1/keys/dk/release`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ session: a.challenge.session }) });
    expect([noAuth.status, ((await noAuth.json()) as { code: string }).code]).toEqual([401, 'ERR_AUTH_REQUIRED']);
  });

  it('never releases a revoked key, also in a session attested before the revocation and while a release is in flight', async () => {
    await b.admin.importKey({ name: 'rv', type: 'aes-256', material: randomBytes(32), releasePolicy: 'true' });
    await b.admin.importKey({ name: 'rv2', type: 'aes-256', material: randomBytes(32), releasePolicy: 'true' });
    const a = await attestWith(b.workload, 'acme', sim());
    const first = await releaseWith(b.workload, 'acme', a, 'rv');
    secrets.push(first.material);
    await b.admin.revokeKey('rv', 'test');
    expect(await denied(releaseWith(b.workload, 'acme', a, 'rv'))).toBe('ERR_KEY_REVOKED');
    // In flight: hold the release at its audit write, revoke, let it go.
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    let reached!: () => void;
    const atAudit = new Promise<void>((r) => (reached = r));
    b.ledger.beforeAppend = async (e: AuditEvent) => {
      if (e.action === 'key.release' && e.verdict === 'allow' && e.key?.name === 'rv2') {
        reached();
        await held;
      }
    };
    try {
      const inflight = denied(releaseWith(b.workload, 'acme', a, 'rv2'));
      await atAudit;
      await b.admin.revokeKey('rv2');
      release();
      expect(await inflight).toBe('ERR_KEY_REVOKED');
    } finally {
      b.ledger.beforeAppend = undefined;
    }
  });

  it("confines a workload to its tenant's namespace", async () => {
    const globexAdmin = new BrokerAdminClient({ baseUrl: b.url, apiKey: (await b.started.broker.service.bootstrapAdminKey('globex')).token });
    await globexAdmin.importKey({ name: 'gx', type: 'aes-256', material: material.other, releasePolicy: 'true' });
    const a = await attestWith(b.workload, 'acme', sim());
    expect(await denied(b.workload.release('gx', { session: a.challenge.session, ear: a.attested.ear, tenant: 'globex' }))).toBe('ERR_AUTH_TENANT');
    expect(await denied(b.workload.release('gx', { session: a.challenge.session, ear: a.attested.ear }))).toBe('ERR_KEY_NOT_FOUND');
    // A globex workload cannot use an acme session either (the EAR is bound to that session's tenant).
    const g = await attestWith(b.workload, 'globex', sim());
    expect(await denied(b.workload.release('dk', { session: g.challenge.session, ear: g.attested.ear, tenant: 'acme' }))).toBe('ERR_AUTH_TENANT');
    expect(await denied(b.workload.release('dk', { session: a.challenge.session, ear: g.attested.ear }))).toBe('ERR_SESSION_MISMATCH');
    // API keys presented with the handshake must be workload keys of that tenant.
    const now = Date.now();
    const acmeWorkload = (await issueApiKey(b.started.broker.metadata, { tenant: 'acme', role: 'workload', label: 'w', createdBy: 't', now })).token;
    const globexWorkload = (await issueApiKey(b.started.broker.metadata, { tenant: 'globex', role: 'workload', label: 'w', createdBy: 't', now })).token;
    secrets.push(fromBase64Url(acmeWorkload.slice(21)), fromBase64Url(globexWorkload.slice(21)));
    expect((await new BrokerWorkloadClient({ baseUrl: b.url, apiKey: acmeWorkload }).challenge('acme')).session).toMatch(/^ses_/);
    expect(await denied(new BrokerWorkloadClient({ baseUrl: b.url, apiKey: globexWorkload }).challenge('acme'))).toBe('ERR_AUTH_TENANT');
    expect(await denied(new BrokerWorkloadClient({ baseUrl: b.url, apiKey: b.started.adminKey! }).challenge('acme'))).toBe('ERR_AUTH_ROLE');
    const tenantDenial = b.ledger.events.find((e) => e.action === 'auth.denied' && e.reason === 'ERR_AUTH_TENANT' && e.tenant === 'globex');
    expect(tenantDenial).toMatchObject({ actor: { tenant: 'acme', role: 'workload' } });
  });

  it('a tampered wrapped key or release context does not open', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    const released = await b.workload.release('dk', { session: a.challenge.session, ear: a.attested.ear });
    const payload = fromBase64Url(released.wrappedKey);
    payload[payload.length - 5]! ^= 0x01;
    const expected = { tenant: 'acme', name: 'dk', session: a.challenge.session, ear: a.attested.ear };
    expect(await denied(openReleasedKey(a.tee, { ...released, wrappedKey: toBase64Url(payload) }, expected))).toBe('ERR_KEY_UNWRAP');
    // A context claiming another version: the client refuses it, and the aad would not match either.
    expect(await denied(openReleasedKey(a.tee, { ...released, key: { ...released.key, version: 2 }, context: { ...released.context, version: 2 } }, expected))).toBe('ERR_KEY_UNWRAP');
    // Another TEE key cannot open it.
    expect(await denied(openReleasedKey({ ...generateTeeKeyPair(), recipient: a.tee.recipient }, released, expected))).toBe('ERR_KEY_UNWRAP');
    secrets.push(await openReleasedKey(a.tee, released, expected));
  });

  it('rotation while clients fetch: every release is of one whole version, and the only errors are typed', async () => {
    const versions: Buffer[] = [randomBytes(32)];
    await b.admin.importKey({ name: 'rot', type: 'aes-256', material: versions[0]!, releasePolicy: 'true' });
    const sessions = await Promise.all(Array.from({ length: 6 }, () => attestWith(b.workload, 'acme', sim())));
    const seen: Array<{ version: number; ok: boolean }> = [];
    const codes: string[] = [];
    let rotating = true;
    const clients = sessions.map(async (a) => {
      while (rotating) {
        try {
          const { released, material: got } = await releaseWith(b.workload, 'acme', a, 'rot');
          const v = released.key.version;
          seen.push({ version: v, ok: versions[v - 1] !== undefined && Buffer.from(got).equals(versions[v - 1]!) });
        } catch (e) {
          codes.push((e as CustodyError).code);
        }
      }
    });
    for (let i = 0; i < 5; i++) {
      const next = randomBytes(32);
      versions.push(next);
      await b.admin.rotateKey('rot', { material: next });
      await new Promise((r) => setTimeout(r, 15));
    }
    rotating = false;
    await Promise.all(clients);
    secrets.push(...versions);
    expect(seen.length).toBeGreaterThan(10);
    expect(seen.every((s) => s.ok)).toBe(true);
    expect(new Set(seen.map((s) => s.version)).size).toBeGreaterThan(1);
    expect(codes.every((c) => c === 'ERR_KEY_CONFLICT')).toBe(true);
    // After the last rotation every fetch gets the newest version.
    const last = await releaseWith(b.workload, 'acme', sessions[0]!, 'rot');
    expect(last.released.key.version).toBe(6);
  });

  it('fails closed when the key store is unavailable (runs last: it closes the store)', async () => {
    const a = await attestWith(b.workload, 'acme', sim());
    await b.started.broker.keystore.close();
    expect(await denied(releaseWith(b.workload, 'acme', a, 'dk'))).toBe('ERR_STORE_UNAVAILABLE');
    expect(await statusOf(releaseWith(b.workload, 'acme', a, 'dk'))).toBe(503);
  });

  it('no key material, token or private key appears in any log line, audit event or error', () => {
    const interim = b.ledger.lines;
    const haystacks = [...b.logLines, ...interim, ...errorTexts];
    expect(b.logLines.length).toBeGreaterThan(40);
    expect(interim.length).toBeGreaterThan(30);
    expect(errorTexts.length).toBeGreaterThan(20);
    const leaks: string[] = [];
    for (const s of secrets) for (const enc of encodings(s)) for (const hay of haystacks) if (hay.includes(enc)) leaks.push(`${enc.slice(0, 10)}... in ${hay.slice(0, 100)}`);
    expect(leaks).toEqual([]);
    expect(secrets.length).toBeGreaterThan(10);
  });

  it("every event the handshake produced passes the ledger's event schema and secrets rule", () => {
    const refused: string[] = [];
    for (const e of b.ledger.events) {
      try {
        toCustodyEvent(e);
      } catch (err) {
        refused.push(`${e.action}/${e.verdict}: ${(err as Error).message}`);
      }
    }
    expect(refused).toEqual([]);
    expect(new Set(b.ledger.events.map((e) => e.action))).toEqual(new Set(['apikey.create', 'key.import', 'attest.appraise', 'key.release', 'key.revoke', 'key.rotate', 'auth.denied']));
  });
});

describe('fail closed and default policy', () => {
  it('refuses sim evidence under the default policy (no policy configured)', async () => {
    const b = await startHandshakeBroker();
    try {
      await b.admin.createKey({ name: 'k', type: 'aes-256', releasePolicy: 'true' });
      expect(await codeOf(attestWith(b.workload, 'acme', sim()))).toBe('ERR_EVIDENCE_SIMULATED');
      expect(b.ledger.events.at(-1)).toMatchObject({ action: 'attest.appraise', verdict: 'deny', reason: 'ERR_EVIDENCE_SIMULATED', detail: { policy: 'default-deny:1', status: 'contraindicated' } });
    } finally {
      await b.close();
    }
  });

  it("denies with the verifier's code when collateral is unavailable (503, retry later), and binds nothing", async () => {
    const b = await startHandshakeBroker({
      policy: simPolicy([GOOD]),
      attestation: {
        verifier: {
          detect: () => 'sim',
          verify: (input) =>
            Promise.resolve({ ok: false, platform: 'sim', steps: [], errors: [{ code: 'ERR_COLLATERAL_MISSING', message: 'TCB info could not be fetched', step: 'collateral' }], warnings: [], verifiedAt: input.now.toISOString() }),
        },
      },
    });
    try {
      await b.admin.createKey({ name: 'k', type: 'aes-256', releasePolicy: 'true' });
      const c = await b.workload.challenge('acme');
      const tee = generateTeeKeyPair();
      const rd = buildRuntimeData(fromBase64Url(c.nonce), tee.recipient);
      const evidence = await sim().collect(await runtimeDigest('sim', rd));
      const p = b.workload.attest({ session: c.session, evidence, runtimeData: rd, platform: 'sim' });
      expect(await codeOf(p)).toBe('ERR_COLLATERAL_MISSING');
      // The nonce is spent either way: retrying means a new challenge.
      expect(await codeOf(b.workload.attest({ session: c.session, evidence, runtimeData: rd, platform: 'sim' }))).toBe('ERR_SESSION_NONCE_USED');
      expect(await statusOf(attestWith(b.workload, 'acme', sim()))).toBe(503);
      expect(await b.started.broker.metadata.getSession(c.session)).toMatchObject({ state: 'challenged', binding: null });
      expect(b.ledger.events.at(-1)).toMatchObject({ action: 'attest.appraise', verdict: 'deny' });
    } finally {
      await b.close();
    }
  });

  it('denies with ERR_VERIFIER_UNAVAILABLE when the verifier cannot answer, and releases nothing', async () => {
    const b = await startHandshakeBroker({
      policy: simPolicy([GOOD]),
      attestation: { verifier: { detect: () => 'sim', verify: () => Promise.reject(new Error('verifier service down')) } },
    });
    try {
      await b.admin.createKey({ name: 'k', type: 'aes-256', releasePolicy: 'true' });
      const p = attestWith(b.workload, 'acme', sim());
      expect(await codeOf(p)).toBe('ERR_VERIFIER_UNAVAILABLE');
      expect(await statusOf(attestWith(b.workload, 'acme', sim()))).toBe(503);
      expect(b.ledger.events.filter((e) => e.action === 'key.release')).toEqual([]);
    } finally {
      await b.close();
    }
  });
});
