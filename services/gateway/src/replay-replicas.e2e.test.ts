// Two gateway replicas behind one load balancer: a request captured on its way to replica A and
// replayed to replica B is refused with ERR_GATEWAY_REPLAY when they share an anti-replay store
// (one SQLite file, or one PostgreSQL database), and accepted when each keeps its own memory.
// A store outage refuses requests with a typed 503 and the model never sees them.
//
// Replicas behind one address must decapsulate with the same OHTTP key (clients fetch one key
// configuration): both derive it from one identity key their broker releases to each attested
// replica (GatewayOptions.identityKey; replica-identity.e2e.test.ts covers it in depth).
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  decodeBhttpResponse,
  encapsulateChunkedRequest,
  encapsulateRequest,
  parseRuntimeData,
  readAll,
  type AttestationBundle,
  type KeyConfig,
} from '@custody/sdk';
import { generateEarSigningKey, loadPolicy } from '@custody/policy';
import { startPostgres, type PostgresFixture } from '../../broker/src/testing/postgres.js';
import { LocalAppraisalBroker } from './attestation/local-broker.js';
import { PostgresReplayStore, SqliteReplayStore, type ReplayStore } from './pipeline/replay-guard.js';
import { bhttpChatRequest, simPolicyYaml, startTestGateway, TEST_MEASUREMENT, type TestGateway, type TestGatewayOptions } from './testing/index.js';

let pgFixture: PostgresFixture;
let dir: string;
beforeAll(async () => {
  pgFixture = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'custody-replicas-'));
}, 120_000);
afterAll(() => {
  pgFixture?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Replicas {
  a: TestGateway;
  b: TestGateway;
  close(): Promise<void>;
}

/**
 * Two gateways, each with its own store handle (as two processes would have), attesting to one
 * broker that releases them one identity key: they derive and publish the same OHTTP key.
 */
async function startReplicas(stores: [ReplayStore | undefined, ReplayStore | undefined], options: TestGatewayOptions = {}): Promise<Replicas> {
  const broker = new LocalAppraisalBroker({
    policy: await loadPolicy(simPolicyYaml([TEST_MEASUREMENT])),
    signingKey: await generateEarSigningKey({ alg: 'EdDSA' }),
    keys: { 'replica-identity': randomBytes(32) },
  });
  const shared = { broker, identityKey: { name: 'replica-identity' } };
  const a = await startTestGateway({ ...options, broker: false, gateway: { ...shared, ...(stores[0] ? { replay: stores[0] } : {}) } });
  const b = await startTestGateway({ ...options, broker: false, gateway: { ...shared, ...(stores[1] ? { replay: stores[1] } : {}) } });
  expect(b.gateway.keys.ohttp.configs).toEqual(a.gateway.keys.ohttp.configs);
  return {
    a,
    b,
    async close() {
      await a.close();
      await b.close();
      for (const s of stores) await s?.close?.();
    },
  };
}

async function keyConfig(gw: TestGateway): Promise<KeyConfig> {
  const bundle = (await (await fetch(`${gw.url}/.well-known/custody/attestation`)).json()) as AttestationBundle;
  return parseRuntimeData(bundle.runtimeData).keyConfigs[0]!;
}

function chatRequest(gw: TestGateway, prompt = 'replica test'): Uint8Array {
  return bhttpChatRequest({ apiKey: gw.apiKey, model: gw.backend.models()[0]!.id, content: prompt });
}

const post = (gw: TestGateway, body: Uint8Array, type = 'message/ohttp-req') => fetch(`${gw.url}/ohttp`, { method: 'POST', headers: { 'content-type': type }, body: body as Uint8Array<ArrayBuffer> });

async function problemCode(res: Response): Promise<string> {
  expect(res.headers.get('content-type')).toBe('application/problem+json');
  return ((await res.json()) as { code: string }).code;
}

/** Sends a fresh request to `to` and checks the model answered inside the encrypted response. */
async function expectAnswered(config: KeyConfig, to: TestGateway, from: TestGateway): Promise<void> {
  const { encapsulatedRequest, context } = await encapsulateRequest(config, chatRequest(from));
  const res = await post(to, encapsulatedRequest);
  expect(res.status).toBe(200);
  const inner = decodeBhttpResponse(await context.decapsulateResponse(new Uint8Array(await res.arrayBuffer())));
  expect(inner.status).toBe(200);
}

const sharedStores: Array<{ name: string; open: () => Promise<[ReplayStore, ReplayStore]> }> = [
  {
    name: 'one SQLite file',
    open() {
      const path = join(dir, 'replay.db');
      const open = () => SqliteReplayStore.open({ path, clock: () => new Date(), windowMs: 60_000 });
      return Promise.resolve([open(), open()]);
    },
  },
  {
    name: 'one PostgreSQL database',
    async open() {
      const connectionString = await pgFixture.createDatabase('gateway_replay');
      const open = () => PostgresReplayStore.open({ connectionString, clock: () => new Date(), windowMs: 60_000 });
      return [await open(), await open()];
    },
  },
];

describe.each(sharedStores)('two replicas sharing $name', ({ open }) => {
  let r: Replicas;
  beforeAll(async () => {
    r = await startReplicas(await open());
  }, 60_000);
  afterAll(async () => {
    await r?.close();
  });

  it('a request answered by replica A and replayed to replica B is refused with ERR_GATEWAY_REPLAY', async () => {
    const config = await keyConfig(r.a);
    const { encapsulatedRequest, context } = await encapsulateRequest(config, chatRequest(r.a));
    const first = await post(r.a, encapsulatedRequest);
    expect(first.status).toBe(200);
    expect(decodeBhttpResponse(await context.decapsulateResponse(new Uint8Array(await first.arrayBuffer()))).status).toBe(200);
    const replayed = await post(r.b, encapsulatedRequest);
    expect(replayed.status).toBe(400);
    expect(await problemCode(replayed)).toBe('ERR_GATEWAY_REPLAY');
    // And back to A as well.
    expect(await problemCode(await post(r.a, encapsulatedRequest))).toBe('ERR_GATEWAY_REPLAY');
    // B answers fresh requests: it refused the replay, not everything.
    await expectAnswered(config, r.b, r.a);
  });

  it('a chunked request answered by replica B and replayed to replica A is refused with ERR_GATEWAY_REPLAY', async () => {
    const config = await keyConfig(r.a);
    const { body } = await encapsulateChunkedRequest(config, chatRequest(r.a));
    const sealed = await readAll(body, 1 << 20);
    const first = await post(r.b, sealed, 'message/ohttp-chunked-req');
    expect(first.status).toBe(200);
    expect(first.headers.get('content-type')).toBe('message/ohttp-chunked-res');
    await first.arrayBuffer();
    const replayed = await post(r.a, sealed, 'message/ohttp-chunked-req');
    expect(replayed.status).toBe(400);
    expect(await problemCode(replayed)).toBe('ERR_GATEWAY_REPLAY');
  });
});

describe('two replicas each with its own memory (the default)', () => {
  it('accept the same request once each: why replicas need a shared store', async () => {
    const r = await startReplicas([undefined, undefined]);
    try {
      const { encapsulatedRequest } = await encapsulateRequest(await keyConfig(r.a), chatRequest(r.a));
      expect((await post(r.a, encapsulatedRequest)).status).toBe(200);
      expect((await post(r.b, encapsulatedRequest)).status).toBe(200);
      expect(await problemCode(await post(r.b, encapsulatedRequest))).toBe('ERR_GATEWAY_REPLAY');
    } finally {
      await r.close();
    }
  });
});

describe('a PostgreSQL outage', () => {
  it('refuses requests with a 503 ERR_GATEWAY_REPLAY_STORE that never reach the model, and recovers', async () => {
    const connectionString = await pgFixture.createDatabase('gateway_outage');
    const open = () => PostgresReplayStore.open({ connectionString, clock: () => new Date(), windowMs: 60_000, connectTimeoutMs: 1000 });
    const r = await startReplicas([await open(), await open()], { backend: 'upstream' });
    try {
      const config = await keyConfig(r.a);
      await expectAnswered(config, r.a, r.a);
      expect(r.a.upstream!.received).toHaveLength(1);
      pgFixture.stopServer();
      try {
        for (const gw of [r.a, r.b]) {
          const { encapsulatedRequest } = await encapsulateRequest(config, chatRequest(r.a, 'sent during the outage'));
          const res = await post(gw, encapsulatedRequest);
          expect(res.status).toBe(503);
          expect(res.headers.get('retry-after')).toBe('5');
          expect(res.headers.get('x-custody-code')).toBe('ERR_GATEWAY_REPLAY_STORE');
          expect(await problemCode(res)).toBe('ERR_GATEWAY_REPLAY_STORE');
          const { body } = await encapsulateChunkedRequest(config, chatRequest(r.a, 'sent during the outage'));
          const chunked = await post(gw, await readAll(body, 1 << 20), 'message/ohttp-chunked-req');
          expect(chunked.status).toBe(503);
          expect(await problemCode(chunked)).toBe('ERR_GATEWAY_REPLAY_STORE');
        }
        expect(r.a.upstream!.received).toHaveLength(1);
        expect(r.b.upstream!.received).toHaveLength(0);
        expect(r.a.logs.some((l) => l.includes('ERR_GATEWAY_REPLAY_STORE'))).toBe(true);
        expect(r.a.logs.some((l) => l.includes('sent during the outage'))).toBe(false);
      } finally {
        pgFixture.startServer();
      }
      await expectAnswered(config, r.b, r.a);
      expect(r.b.upstream!.received).toHaveLength(1);
    } finally {
      await r.close();
    }
  }, 60_000);
});
