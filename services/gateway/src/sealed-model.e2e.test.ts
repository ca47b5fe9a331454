// A sealed GGUF model through the gateway: the weights are encrypted at rest under a key the
// (in-process) broker holds; the broker releases it to the attested gateway, which decrypts the
// model into tmpfs, loads it in the real engine (node-llama-cpp) and unlinks the plaintext at once.
// Every failure (wrong key, other version, key not held, key revoked, destroyed or without a
// release policy, a release replayed from an earlier round) keeps or makes the gateway closed.
import { createHash, randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { systemClock, toCustodyError } from '@custody/core';
import { createConfidentialFetch, type Receipt } from '@custody/sdk';
import { SealedModelBackend } from './backends/sealed-backend.js';
import { sealModelFile } from './backends/sealed-model.js';
import { launchGateway } from './launch.js';
import { createGatewayLogger } from './observability/logger.js';
import type { BrokerClient } from './attestation/broker-client.js';
import type { ModelBackend } from './backends/types.js';
import { LlamaCppBackend } from './backends/llama-cpp.js';
import { releasePolicyFor, startIdentityBroker, type IdentityBroker } from './testing/identity-broker.js';
import { startTestGateway, TEST_MEASUREMENT, type TestGateway } from './testing/index.js';
import { writeTinyLlamaGguf } from './testing/tiny-llama.js';

const SHM = '/dev/shm';
let dir: string;
/** This file's own plaintext directory in tmpfs: what other processes put in /dev/shm does not matter. */
let shm: string;
let ib: IdentityBroker;
let ggufDigest: string;
let sealedV1: string;
let sealedV2: string;
const key = new Uint8Array(randomBytes(32));
let gw: TestGateway | undefined;

const plaintextLeft = () => readdirSync(shm);

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'custody-sealed-e2e-'));
  shm = await mkdtemp(join(SHM, 'custody-sealed-e2e-'));
  ib = await startIdentityBroker([TEST_MEASUREMENT]);
  const gguf = join(dir, 'tiny.gguf');
  const bytes = await writeTinyLlamaGguf(gguf);
  ggufDigest = 'sha256:' + createHash('sha256').update(bytes).digest('hex');
  sealedV1 = join(dir, 'tiny.v1.sealed');
  sealedV2 = join(dir, 'tiny.v2.sealed');
  await sealModelFile(gguf, sealedV1, { key, keyName: 'model-key', keyVersion: 1, modelId: 'custody-tiny-llama', chunkSize: 64 * 1024 });
  await sealModelFile(gguf, sealedV2, { key, keyName: 'model-key', keyVersion: 2, modelId: 'custody-tiny-llama', chunkSize: 64 * 1024 });
});

afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

afterAll(async () => {
  await ib?.close();
  await rm(dir, { recursive: true, force: true });
  await rm(shm, { recursive: true, force: true });
});

async function sealedGateway(path: string, brokerKeys: Record<string, Uint8Array>): Promise<{ gw: TestGateway; backend: SealedModelBackend; logs: string[] }> {
  const logs: string[] = [];
  const logger = createGatewayLogger({ level: 'info', destination: { write: (line: string) => void logs.push(line) } });
  const backend = await SealedModelBackend.create({ sealedPath: path, plainDir: shm, clock: systemClock, logger, engine: { onEngineLog: () => undefined } });
  const g = await startTestGateway({ backend, brokerKeys, gateway: { modelKey: { name: backend.keyName, onKey: (k, v) => backend.onKey(k, v) } } });
  return { gw: g, backend, logs };
}

/** A gateway whose model key is held by the real broker service (keys destroyed, re-policied, rotated through its admin API). */
async function brokerGateway(name: string, path: string, client: BrokerClient = ib.client()): Promise<{ gw: TestGateway; backend: SealedModelBackend; logs: string[] }> {
  await ib.broker.admin.importKey({ name, type: 'aes-256', material: key, releasePolicy: releasePolicyFor([TEST_MEASUREMENT]) });
  const logs: string[] = [];
  const logger = createGatewayLogger({ level: 'info', destination: { write: (line: string) => void logs.push(line) } });
  const backend = await SealedModelBackend.create({ sealedPath: path, plainDir: shm, clock: systemClock, logger, engine: { onEngineLog: () => undefined } });
  const g = await startTestGateway({ backend, broker: false, gateway: { broker: client, modelKey: { name, onKey: (k, v) => backend.onKey(k, v) } } });
  return { gw: g, backend, logs };
}

describe('a sealed model served by the gateway', () => {
  it('is unsealed inside the attested gateway into a file with no name, and answers with receipts naming the weights digest', async () => {
    // The engine opens the plaintext through /proc/self/fd: while it loads, the directory is empty.
    let seenWhileLoading: string[] | undefined;
    const load = async (p: string, id: string): Promise<ModelBackend> => {
      seenWhileLoading = await readdir(shm);
      expect(p).toMatch(/^\/proc\/self\/fd\/\d+$/);
      return LlamaCppBackend.create({ modelPath: p, modelId: id, clock: systemClock, onEngineLog: () => undefined });
    };
    const logsOfBackend: string[] = [];
    const backend = await SealedModelBackend.create({ sealedPath: sealedV1, plainDir: shm, clock: systemClock, load, logger: createGatewayLogger({ level: 'info', destination: { write: (line: string) => void logsOfBackend.push(line) } }) });
    gw = await startTestGateway({ backend, brokerKeys: { 'model-key': key }, gateway: { modelKey: { name: backend.keyName, onKey: (k, v) => backend.onKey(k, v) } } });
    const s = { backend, logs: logsOfBackend };
    expect(seenWhileLoading).toEqual([]);
    expect(gw.gateway.attestation.state).toBe('attested');
    expect(s.backend.loaded).toBe(true);
    expect(plaintextLeft()).toEqual([]);
    // The bundle names the model by the digest of its plaintext weights, known from the sealed header.
    const bundle = (await (await fetch(`${gw.url}/.well-known/custody/attestation`)).json()) as { model?: { id: string; digest?: string } };
    expect(bundle.model).toMatchObject({ id: 'custody-tiny-llama', digest: ggufDigest });
    let receipt: Receipt | undefined;
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, onReceipt: (r) => (receipt = r) });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'custody-tiny-llama', messages: [{ role: 'user', content: 'hello' }], max_tokens: 4, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: { message: { content: string } }[] };
    expect(typeof body.choices[0]!.message.content).toBe('string');
    // The SDK verified the receipt's signature with the attested receipt key before handing it over.
    await cfetch.receiptOf(res);
    expect(receipt!.model).toMatchObject({ id: 'custody-tiny-llama', digest: ggufDigest, backend: 'llama-cpp' });
    // The logs name the unsealing, never the key.
    const logs = [...gw.logs, ...s.logs].join('\n');
    expect(logs).toContain('"event":"model.unsealed"');
    expect(logs).not.toContain(Buffer.from(key).toString('base64'));
    expect(logs).not.toContain(Buffer.from(key).toString('hex'));
  });

  it('a re-attestation asks for the key again: once the broker revokes it the gateway closes (fail closed)', async () => {
    const s = await sealedGateway(sealedV1, { 'model-key': key });
    gw = s.gw;
    expect(gw.gateway.attestation.state).toBe('attested');
    gw.broker!.revokeKey('model-key');
    await gw.gateway.attestation.reattest().catch(() => undefined);
    expect(gw.gateway.attestation.state).not.toBe('attested');
    const res = await fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': 'message/ohttp-req' }, body: new Uint8Array(40) });
    expect(res.status).toBe(503);
  });

  it('closes for good when the broker destroys the key, drops its release policy or revokes it, or an old release is replayed', async () => {
    const cases: [string, (name: string) => Promise<unknown>, string][] = [
      ['destroyed', (name) => ib.broker.admin.destroyKey(name), 'ERR_KEY_DESTROYED'],
      ['without a release policy', (name) => ib.broker.admin.setReleasePolicy(name, null), 'ERR_KEY_NO_RELEASE_POLICY'],
      ['revoked', (name) => ib.broker.admin.revokeKey(name, 'test'), 'ERR_KEY_REVOKED'],
    ];
    let n = 0;
    for (const [what, act, code] of cases) {
      const name = `sealed-${n++}`;
      // Sealed under this broker key's name (same material).
      const path = join(dir, `${name}.sealed`);
      await sealModelFile(join(dir, 'tiny.gguf'), path, { key, keyName: name, keyVersion: 1, modelId: 'custody-tiny-llama', chunkSize: 64 * 1024 });
      const s = await brokerGateway(name, path);
      expect(s.gw.gateway.attestation.state, what).toBe('attested');
      await act(name);
      await s.gw.gateway.attestation.reattest().catch(() => undefined);
      expect(s.gw.gateway.attestation.state, what).toBe('revoked');
      expect((await fetch(`${s.gw.url}/readyz`)).status, what).toBe(503);
      expect(s.gw.logs.join('\n'), what).toContain(`"code":"ERR_GATEWAY_MODEL_KEY","cause":"${code}"`);
      await s.gw.close();
    }
    // A relay of the broker's answers (a plain-http link) keeps the first release and replays it
    // after the key is revoked: the envelope names the first round's session, so it is refused.
    const path = join(dir, 'replayed.sealed');
    await sealModelFile(join(dir, 'tiny.gguf'), path, { key, keyName: 'replayed', keyVersion: 1, modelId: 'custody-tiny-llama', chunkSize: 64 * 1024 });
    const real = ib.client();
    let kept: Awaited<ReturnType<NonNullable<BrokerClient['releaseKey']>>> | undefined;
    const relay: BrokerClient = {
      challenge: () => real.challenge(),
      attest: (r) => real.attest(r),
      jwks: () => real.jwks(),
      releaseKey: async (name, req) => (kept ??= await real.releaseKey!(name, req)),
    };
    const s = await brokerGateway('replayed', path, relay);
    expect(s.gw.gateway.attestation.state).toBe('attested');
    await ib.broker.admin.revokeKey('replayed', 'test');
    await s.gw.gateway.attestation.reattest().catch(() => undefined);
    expect(s.gw.gateway.attestation.state).toBe('revoked');
    expect(s.gw.logs.join('\n')).toContain('"cause":"ERR_KEY_UNWRAP"');
    await s.gw.close();
  });

  it('the chain an auditor follows: receipt -> the EAR it names -> the broker\'s key.release event for that EAR -> the sealed header -> the weights digest', async () => {
    const path = join(dir, 'chain.sealed');
    const header = await sealModelFile(join(dir, 'tiny.gguf'), path, { key, keyName: 'chain', keyVersion: 1, modelId: 'custody-tiny-llama', chunkSize: 64 * 1024 });
    const s = await brokerGateway('chain', path);
    let receipt: Receipt | undefined;
    const cfetch = createConfidentialFetch({ gateway: s.gw.url, jwks: ib.jwks, allowSimulated: true, onReceipt: (r) => (receipt = r) });
    const res = await cfetch(`${s.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.gw.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'custody-tiny-llama', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, temperature: 0 }),
    });
    expect(res.status).toBe(200);
    await cfetch.receiptOf(res);
    // The receipt names the weights (the sealed header's digest) and the attestation (the EAR's digest).
    expect(receipt!.model.digest).toBe(header.digest);
    const earDigest = receipt!.gateway.attestationDigest.replace(/^sha256:/, '');
    // The broker's audit log holds the release of that key, at that version, to the holder of that EAR.
    const releases = ib.broker.ledger.events.filter((e) => e.action === 'key.release' && e.verdict === 'allow' && e.key?.name === 'chain');
    expect(releases.some((e) => e.key?.version === header.key.version && e.detail?.earDigest === earDigest)).toBe(true);
    await s.gw.close();
  });

  it('a rotated key (a new version released after loading) does not unload the model; it is logged once', async () => {
    const path = join(dir, 'rotating.sealed');
    await sealModelFile(join(dir, 'tiny.gguf'), path, { key, keyName: 'rotating', keyVersion: 1, modelId: 'custody-tiny-llama', chunkSize: 64 * 1024 });
    const s = await brokerGateway('rotating', path);
    await ib.broker.admin.rotateKey('rotating', { material: randomBytes(32) });
    await s.gw.gateway.attestation.reattest();
    await s.gw.gateway.attestation.reattest();
    expect(s.gw.gateway.attestation.state).toBe('attested');
    expect(s.backend.loaded).toBe(true);
    expect(s.logs.filter((l) => l.includes('"event":"model.key-changed"'))).toHaveLength(1);
    await s.gw.close();
  });

  it.each([
    ['another key under the same name', () => ({ 'model-key': new Uint8Array(randomBytes(32)) }), () => sealedV1, 'ERR_MODEL_UNSEAL'],
    ['a model sealed under another version of the key', () => ({ 'model-key': key }), () => sealedV2, 'ERR_MODEL_KEY_VERSION'],
    ['no key of that name at the broker', () => ({}), () => sealedV1, 'ERR_KEY_NOT_FOUND'],
  ])('does not attest, load or serve with %s, and keeps no plaintext', async (_name, keys, path, code) => {
    const before = plaintextLeft();
    const s = await sealedGateway(path(), keys());
    gw = s.gw;
    expect(gw.gateway.attestation.state).not.toBe('attested');
    expect(s.backend.loaded).toBe(false);
    expect(plaintextLeft()).toEqual(before);
    expect(gw.logs.join('\n')).toContain(code);
    expect((await fetch(`${gw.url}/readyz`)).status).toBe(503);
  });

  it('refuses a plaintext directory on a disk, and a sealed model without a key broker', async () => {
    const disk = await mkdtemp(join(tmpdir(), 'custody-disk-'));
    try {
      const e = await SealedModelBackend.create({ sealedPath: sealedV1, plainDir: disk, clock: systemClock }).catch((x: unknown) => toCustodyError(x));
      expect((e as { code?: string }).code).toBe('ERR_MODEL_PLAINTEXT_DIR');
    } finally {
      await rm(disk, { recursive: true, force: true });
    }
    const launched = await launchGateway({ modelPath: sealedV1 }).catch((x: unknown) => toCustodyError(x));
    expect((launched as { code?: string }).code).toBe('ERR_USAGE');
    const plainGguf = join(dir, 'plain.gguf');
    await writeFile(plainGguf, await readFile(join(dir, 'tiny.gguf')));
    const wrongDir = await launchGateway({ modelPath: plainGguf, modelPlainDir: SHM }).catch((x: unknown) => toCustodyError(x));
    expect((wrongDir as { code?: string }).code).toBe('ERR_USAGE');
  });
});
