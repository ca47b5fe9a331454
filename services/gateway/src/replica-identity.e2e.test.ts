// Gateway replicas that share one OHTTP key and one receipt key, derived from an identity secret
// the key broker service (real: SQLite, embedded key store, CEL release policy, versioned keys)
// releases only to attested replicas, wrapped to each replica's TEE key. Over HTTP on loopback
// with SIMULATED evidence: the same published keys with per-replica evidence, an SDK client
// whose requests alternate between replicas, a replay across replicas refused through a shared
// SQLite store, a release policy that excludes a measurement, revocation, rotation with grace,
// and a scan of every log line for the secrets and the derived private keys.
import { createPrivateKey, createPublicKey, hkdfSync, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deriveHpkeKeyPair, KemId, serializeHpkePrivateKey, systemClock, toBase64, toBase64Url, toHex, utf8, type Bytes } from '@custody/core';
import {
  createConfidentialFetch,
  decodeBhttpResponse,
  encapsulateRequest,
  parseRuntimeData,
  type AttestationBundle,
  type FetchLike,
  type KeyConfig,
  type Receipt,
} from '@custody/sdk';
import { Gateway } from './gateway.js';
import { DemoBackend } from './backends/demo.js';
import { InMemoryLedgerSink } from './ledger/ledger-sink.js';
import { launchGateway } from './launch.js';
import { createGatewayLogger } from './observability/logger.js';
import { SqliteReplayStore } from './pipeline/replay-guard.js';
import { startIdentityBroker, type IdentityBroker } from './testing/identity-broker.js';
import { bhttpChatRequest, startTestGateway, TEST_MEASUREMENT, type TestGateway, type TestGatewayOptions } from './testing/index.js';
import { SimAttester } from '@custody/attester-service';

const GOOD = TEST_MEASUREMENT;
const OTHER = 'b2'.repeat(48);

const material = { shared: randomBytes(32), rotV1: randomBytes(32), rotV2: randomBytes(32), revoked: randomBytes(32) };
const started: TestGateway[] = [];
let ib: IdentityBroker;
let dir: string;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-replica-identity-'));
  // The appraisal accepts both measurements; the identity keys' release policy only GOOD.
  ib = await startIdentityBroker([GOOD, OTHER]);
  await ib.importIdentityKey('gw-identity', material.shared, [GOOD]);
  await ib.importIdentityKey('gw-rotating', material.rotV1, [GOOD]);
  await ib.importIdentityKey('gw-revoked', material.revoked, [GOOD]);
}, 60_000);

afterAll(async () => {
  for (const g of started) await g.close();
  await ib?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function replica(name: string, o: TestGatewayOptions = {}): Promise<TestGateway> {
  const g = await startTestGateway({ ...o, broker: false, gateway: { broker: ib.client(), identityKey: { name }, ...o.gateway } });
  started.push(g);
  return g;
}

async function bundleOf(gw: TestGateway): Promise<AttestationBundle> {
  const res = await fetch(`${gw.url}/.well-known/custody/attestation`);
  expect(res.status).toBe(200);
  return (await res.json()) as AttestationBundle;
}

async function keyConfigOf(gw: TestGateway): Promise<KeyConfig> {
  return parseRuntimeData((await bundleOf(gw)).runtimeData).keyConfigs[0]!;
}

function chatRequest(gw: TestGateway, prompt = 'replica identity test'): Uint8Array {
  return bhttpChatRequest({ apiKey: gw.apiKey, model: gw.backend.models()[0]!.id, content: prompt });
}

const post = (gw: TestGateway, body: Uint8Array) => fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: body as Uint8Array<ArrayBuffer> });

async function problemCode(res: Response): Promise<string> {
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  return ((await res.json()) as { code: string }).code;
}

/** Sends a fresh request encrypted to `config` to `to`; returns the outer status and, when 200, the inner one. */
async function send(config: KeyConfig, to: TestGateway): Promise<{ status: number; inner?: number; code?: string }> {
  const { encapsulatedRequest, context } = await encapsulateRequest(config, chatRequest(to));
  const res = await post(to, encapsulatedRequest);
  if (res.status !== 200) return { status: res.status, code: await problemCode(res) };
  return { status: 200, inner: decodeBhttpResponse(await context.decapsulateResponse(new Uint8Array(await res.arrayBuffer()))).status };
}

async function rejection(p: Promise<unknown>): Promise<{ code?: string; detail?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; detail?: Record<string, unknown> };
  }
  throw new Error('expected a rejection');
}

/** The derivation as docs/key-release-protocol.md states it, computed independently of the gateway. */
function expected(secret: Uint8Array, name: string, version: number): { ikm: Bytes; seed: Bytes; receiptX: string; keyId: number } {
  const h = (label: string) => new Uint8Array(hkdfSync('sha256', secret, utf8('custody/gateway-identity/v1'), utf8(`${label}\n${name}\n${version}`), 32));
  const seed = h('receipt-ed25519-seed');
  const priv = createPrivateKey({ key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]), format: 'der', type: 'pkcs8' });
  return { ikm: h('ohttp-x25519-ikm'), seed, receiptX: createPublicKey(priv).export({ format: 'jwk' }).x!, keyId: 1 + ((version - 1) % 255) };
}

/** Every text form of a secret a log line could carry (whole, and a 12-byte prefix). */
function encodings(secret: Uint8Array): string[] {
  const out: string[] = [];
  for (const part of [secret, secret.subarray(0, 12)]) {
    const hex = toHex(part);
    out.push(hex, hex.toUpperCase(), toBase64(part).replace(/=+$/, ''), toBase64Url(part));
  }
  return out;
}

describe('two replicas with one identity key and a shared SQLite replay store', () => {
  let a: TestGateway;
  let b: TestGateway;
  beforeAll(async () => {
    const path = join(dir, 'replay.db');
    const store = () => SqliteReplayStore.open({ path, clock: () => new Date(), windowMs: 60_000 });
    const sa = store();
    const sb = store();
    a = await replica('gw-identity', { gateway: { replay: sa } });
    b = await replica('gw-identity', { gateway: { replay: sb } });
  }, 60_000);

  it('(a) both publish the same key configuration and receipt key, each with its own evidence and EAR', async () => {
    expect(a.gateway.attestation.state).toBe('attested');
    expect(b.gateway.attestation.state).toBe('attested');
    const [ba, bb] = [await bundleOf(a), await bundleOf(b)];
    expect(ba.ohttpKeys).toBe(bb.ohttpKeys);
    expect(ba.receiptKey).toEqual(bb.receiptKey);
    const [ra, rb] = [parseRuntimeData(ba.runtimeData), parseRuntimeData(bb.runtimeData)];
    expect(ra.value['ohttp-keys']).toBe(rb.value['ohttp-keys']);
    expect(ra.value['receipt-key']).toEqual(rb.value['receipt-key']);
    // Per replica: the TEE key, the evidence and the broker's EAR.
    expect(ra.value['tee-pubkey'].x).not.toBe(rb.value['tee-pubkey'].x);
    expect(ba.evidence).not.toBe(bb.evidence);
    expect(ba.ear).toBeTruthy();
    expect(ba.ear).not.toBe(bb.ear);
    // The keys are the documented derivation of version 1 of the secret.
    const want = expected(material.shared, 'gw-identity', 1);
    expect(ra.keyConfigs).toHaveLength(1);
    expect(ra.keyConfigs[0]!.keyId).toBe(want.keyId);
    const pair = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, want.ikm);
    expect(toHex(ra.keyConfigs[0]!.publicKey)).toBe(toHex(pair.publicKey.bytes));
    expect(ba.receiptKey.x).toBe(want.receiptX);
    expect(a.gateway.keys.identity).toEqual({ name: 'gw-identity', version: 1 });
  });

  it('(b) the SDK verifies replica A, then its requests alternate between A and B: all answered, every receipt verified', async () => {
    const hits = { a: 0, b: 0 };
    let turn = 0;
    // A load balancer in front of both: discovery reaches A, OHTTP requests go round robin.
    const transport: FetchLike = (input, init) => {
      const url = new URL(typeof input === 'string' ? input : input instanceof URL ? input.href : input.url);
      let base = a.url;
      if (url.pathname === '/ohttp') {
        const toB = turn++ % 2 === 1;
        base = toB ? b.url : a.url;
        hits[toB ? 'b' : 'a']++;
      }
      return fetch(base + url.pathname + url.search, init);
    };
    const receipts: Receipt[] = [];
    const cfetch = createConfidentialFetch({ gateway: a.url, jwks: ib.jwks, allowSimulated: true, fetch: transport, onReceipt: (r) => void receipts.push(r) });
    const verified = await cfetch.verify();
    expect(toBase64Url(new Uint8Array(await crypto.subtle.exportKey('raw', verified.receiptKey)))).toBe((await bundleOf(a)).receiptKey.x);
    const ledgerBefore = { a: a.ledger.events.length, b: b.ledger.events.length };
    for (let i = 0; i < 6; i++) {
      const res = await cfetch(`${a.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: a.backend.models()[0]!.id, messages: [{ role: 'user', content: `round robin ${i}` }] }),
      });
      expect(res.status).toBe(200);
      await expect(cfetch.receiptOf(res)).resolves.toBeTruthy();
      await res.text();
    }
    expect(hits).toEqual({ a: 3, b: 3 });
    expect(receipts).toHaveLength(6);
    // Each replica answered (and logged a receipt for) its half.
    expect(a.ledger.events.length - ledgerBefore.a).toBeGreaterThanOrEqual(3);
    expect(b.ledger.events.length - ledgerBefore.b).toBeGreaterThanOrEqual(3);
  });

  it('(c) a request captured on its way to A and replayed to B is refused with ERR_GATEWAY_REPLAY', async () => {
    const config = await keyConfigOf(a);
    const { encapsulatedRequest, context } = await encapsulateRequest(config, chatRequest(a));
    const first = await post(a, encapsulatedRequest);
    expect(first.status).toBe(200);
    expect(decodeBhttpResponse(await context.decapsulateResponse(new Uint8Array(await first.arrayBuffer()))).status).toBe(200);
    const replayed = await post(b, encapsulatedRequest);
    expect(replayed.status).toBe(400);
    expect(await problemCode(replayed)).toBe('ERR_GATEWAY_REPLAY');
    // B decapsulates fresh requests with the shared key: it refused the replay, not the key.
    expect(await send(config, b)).toEqual({ status: 200, inner: 200 });
  });
});

describe('fail closed', () => {
  it('(d) a replica whose measurement the release policy excludes gets no secret and does not serve', async () => {
    const g = await replica('gw-identity', { measurement: OTHER });
    // The appraisal itself affirms OTHER; the identity key's release policy refuses it.
    expect(g.gateway.attestation.state).toBe('revoked');
    expect(g.gateway.keys.identity).toBeUndefined();
    expect(g.gateway.keys.ohttp.active).toHaveLength(0);
    const e = await rejection(g.gateway.attestation.reattest());
    expect(e.code).toBe('ERR_GATEWAY_IDENTITY_KEY');
    expect(e.detail).toMatchObject({ code: 'ERR_POLICY_DENIED', key: 'gw-identity' });
    expect(() => g.gateway.attestation.assertServing()).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_ATTESTATION_REVOKED' }));
    const bundle = await fetch(`${g.url}/.well-known/custody/attestation`);
    expect(bundle.status).not.toBe(200);
    expect(await problemCode(bundle)).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
    const other = await replica('gw-identity');
    const res = await send(await keyConfigOf(other), g);
    expect(res.code).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
    // launchGateway (custody gateway serve) refuses to start at all.
    const lines: string[] = [];
    const logger = createGatewayLogger({ destination: { write: (s: string) => void lines.push(s) } });
    const launched = await rejection(launchGateway({ broker: ib.client(), identityKey: 'gw-identity', simMeasurement: OTHER, port: 0, logger }));
    expect(launched.code).toBe('ERR_GATEWAY_NOT_ATTESTED');
    expect(lines.some((l) => l.includes('ERR_GATEWAY_IDENTITY_KEY'))).toBe(true);
  }, 30_000);

  it('an identity key without a releasing broker is a configuration error', async () => {
    const ledger = await InMemoryLedgerSink.create();
    const attester = new SimAttester({ measurements: { measurement: GOOD } });
    const base = { backend: await DemoBackend.create(systemClock), attester, ledger, policy: { id: 'p', version: 1, tenants: [] } };
    expect((await rejection(Gateway.create({ ...base, identityKey: { name: 'gw-identity' } }))).code).toBe('ERR_GATEWAY_CONFIG');
    expect((await rejection(Gateway.create({ ...base, broker: ib.client(), identityKey: { name: 'bad name\n' } }))).code).toBe('ERR_GATEWAY_CONFIG');
    expect((await rejection(launchGateway({ identityKey: 'gw-identity', port: 0 }))).code).toBe('ERR_USAGE');
  });

  it('(e) revoking the identity key at the broker stops serving at the next attestation', async () => {
    const g = await replica('gw-revoked');
    const cfetch = createConfidentialFetch({ gateway: g.url, jwks: ib.jwks, allowSimulated: true });
    const chat = () =>
      cfetch(`${g.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${g.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: g.backend.models()[0]!.id, messages: [{ role: 'user', content: 'before revocation' }] }),
      });
    expect((await chat()).status).toBe(200);
    await ib.broker.admin.revokeKey('gw-revoked', 'replica identity test');
    // The gateway learns of it at its next attestation (scheduled, or now).
    const e = await rejection(g.gateway.attestation.reattest());
    expect(e.code).toBe('ERR_GATEWAY_IDENTITY_KEY');
    expect(e.detail).toMatchObject({ code: 'ERR_KEY_REVOKED' });
    expect(g.gateway.attestation.state).toBe('revoked');
    expect(g.gateway.keys.identity).toBeUndefined();
    expect(g.gateway.keys.ohttp.active).toHaveLength(0);
    expect((await rejection(chat())).code).toBe('ERR_GATEWAY_ATTESTATION_REVOKED');
    // And it stays closed: the next attempt cannot obtain the key either.
    expect((await rejection(g.gateway.attestation.reattest())).code).toBe('ERR_GATEWAY_IDENTITY_KEY');
    expect(g.gateway.attestation.state).toBe('revoked');
  }, 30_000);
});

describe('(f) rotation of the identity key at the broker', () => {
  it('gives a new key id, key configuration and receipt key on every replica; the old key decapsulates until an attestation without it is published after its grace', async () => {
    let offset = 0;
    const clock = () => new Date(Date.now() + offset);
    const a = await replica('gw-rotating', { clock, gateway: { keyGraceMs: 20_000 } });
    const b = await replica('gw-rotating', { clock, gateway: { keyGraceMs: 20_000 } });
    const before = await bundleOf(a);
    const oldConfig = await keyConfigOf(a);
    expect(oldConfig.keyId).toBe(1);
    const cfetch = createConfidentialFetch({ gateway: a.url, jwks: ib.jwks, allowSimulated: true, clock });
    const chat = () =>
      cfetch(`${a.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${a.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: a.backend.models()[0]!.id, messages: [{ role: 'user', content: 'around a rotation' }] }),
      });
    expect((await chat()).status).toBe(200);
    await ib.broker.admin.rotateKey('gw-rotating', { material: material.rotV2 });
    // rotateKeys() (and any re-attestation) picks up the broker's current version.
    const snap = await a.gateway.attestation.rotateKeys();
    expect(a.gateway.keys.identity).toEqual({ name: 'gw-rotating', version: 2 });
    expect(snap.keyConfigs.map((k) => k.keyId)).toEqual([2, 1]);
    await b.gateway.attestation.reattest();
    const [ba, bb] = [await bundleOf(a), await bundleOf(b)];
    expect(ba.ohttpKeys).toBe(bb.ohttpKeys);
    expect(ba.ohttpKeys).not.toBe(before.ohttpKeys);
    expect(ba.receiptKey).toEqual(bb.receiptKey);
    expect(ba.receiptKey.x).not.toBe(before.receiptKey.x);
    const want = expected(material.rotV2, 'gw-rotating', 2);
    expect(ba.receiptKey.x).toBe(want.receiptX);
    const current = parseRuntimeData(ba.runtimeData).keyConfigs[0]!;
    expect(current.keyId).toBe(2);
    expect(toHex(current.publicKey)).toBe(toHex((await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, want.ikm)).publicKey.bytes));
    // A client still holding the version 1 configuration is served by both replicas during grace.
    for (const g of [a, b]) expect(await send(oldConfig, g)).toEqual({ status: 200, inner: 200 });
    for (const g of [a, b]) expect(await send(current, g)).toEqual({ status: 200, inner: 200 });
    // The receipt key moved with the version, but a client that verified version 1 seals to the
    // old OHTTP key and is answered with the old receipt key, which it verified beside it, and
    // the receipt names the attestation that bound that key (version 1's), not the newest one.
    const v1EarId = a.gateway.attestation.snapshotFor(1, new Uint8Array(Buffer.from(before.receiptKey.x, 'base64url'))).earId;
    expect(v1EarId).toBeDefined();
    expect(v1EarId).not.toBe(snap.earId);
    // However many re-attestations come during the grace period, the attestation that bound the old key is kept.
    for (let i = 0; i < 10; i++) await a.gateway.attestation.reattest();
    expect(a.gateway.attestation.snapshotFor(1, new Uint8Array(Buffer.from(before.receiptKey.x, 'base64url'))).earId).toBe(v1EarId);
    const old = await chat();
    expect(old.status).toBe(200);
    expect((await cfetch.receiptOf(old))!.gateway.earId).toBe(v1EarId);
    await cfetch.refresh();
    const fresh = await chat();
    expect(fresh.status).toBe(200);
    expect((await cfetch.receiptOf(fresh))!.gateway.earId).toBe(a.gateway.attestation.snapshot!.earId);
    // After the grace period the old key is no longer published; it decapsulates until each
    // replica has published an attestation without it (the round a replica runs when the grace
    // ends), then its id is unknown (the SDK verifies again on this problem type).
    offset = 21_000;
    expect((await bundleOf(a)).ohttpKeys).toBe(ba.ohttpKeys);
    for (const g of [a, b]) expect(await send(oldConfig, g)).toEqual({ status: 200, inner: 200 });
    for (const g of [a, b]) await g.gateway.attestation.reattest();
    for (const g of [a, b]) expect(parseRuntimeData((await bundleOf(g)).runtimeData).keyConfigs.map((k) => k.keyId)).toEqual([2]);
    for (const g of [a, b]) expect(await send(oldConfig, g)).toMatchObject({ status: 422, code: 'ERR_OHTTP_KEY_ID' });
    expect(await send(current, a)).toEqual({ status: 200, inner: 200 });
  }, 30_000);
});

describe('(g) secrets stay out of the logs', () => {
  it('no log line of any replica or of the broker carries the identity secrets or the derived private keys', async () => {
    const secrets: Uint8Array[] = [];
    for (const [m, name, version] of [
      [material.shared, 'gw-identity', 1],
      [material.rotV1, 'gw-rotating', 1],
      [material.rotV2, 'gw-rotating', 2],
      [material.revoked, 'gw-revoked', 1],
    ] as const) {
      const d = expected(m, name, version);
      const pair = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, d.ikm);
      secrets.push(m, d.ikm, d.seed, await serializeHpkePrivateKey(pair));
    }
    const lines = [...started.flatMap((g) => g.logs), ...ib.broker.logLines];
    expect(started.length).toBeGreaterThanOrEqual(6);
    expect(lines.filter((l) => l.includes('identity.installed')).length).toBeGreaterThanOrEqual(5);
    const needles = secrets.flatMap(encodings);
    for (const line of lines) for (const n of needles) expect(line.includes(n), 'a log line carries key material').toBe(false);
    // The published bundles carry only public keys.
    for (const g of started.filter((x) => x.gateway.attestation.state === 'attested')) {
      const text = JSON.stringify(await bundleOf(g));
      for (const n of needles) expect(text.includes(n)).toBe(false);
    }
  });
});
