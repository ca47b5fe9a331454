// HttpBrokerClient against a TEST DOUBLE of the broker's documented handshake endpoints
// (docs/key-release-protocol.md), backed by the in-process appraisal broker: the wire format
// the gateway speaks, the gateway attesting through it, and refusals arriving as typed codes.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, fromBase64, toBase64Url, toCustodyError } from '@custody/core';
import { generateEarSigningKey, loadPolicy } from '@custody/policy';
import { listen, type RunningServer } from '../http/serve.js';
import { FixtureGpuAttester } from '@custody/attester-service/testing';
import { compositePolicyYaml, fixtureGpuMeasurements, simPolicyYaml, startTestGateway, TEST_MEASUREMENT, type TestGateway } from '../testing/index.js';
import { isRefusal } from './broker-client.js';
import { HttpBrokerClient } from './http-broker-client.js';
import { LocalAppraisalBroker } from './local-broker.js';

const WORKLOAD_KEY = 'sk-workload-0000000001';
/** Every POST /v1/attest body the test double received. */
const bodies: Record<string, unknown>[] = [];

function brokerTestDouble(local: LocalAppraisalBroker): Hono {
  const app = new Hono();
  const problem = (e: unknown) => {
    const err = toCustodyError(e);
    return new Response(JSON.stringify({ code: err.code, detail: err.message }), { status: 403, headers: { 'content-type': 'application/problem+json' } });
  };
  app.use('/v1/*', async (c, next) => {
    if (c.req.header('authorization') !== `Bearer ${WORKLOAD_KEY}` && !c.req.path.endsWith('/release')) return c.json({ code: 'ERR_AUTH_INVALID' }, 401);
    return next();
  });
  app.post('/v1/attest/challenge', async (c) => {
    const ch = await local.challenge();
    return c.json({ session: ch.session, nonce: toBase64Url(ch.nonce), expiresAt: ch.expiresAt.toISOString() });
  });
  app.post('/v1/attest', async (c) => {
    const b = await c.req.json<{ session: string; evidence: string; runtimeData: string; platform: string; devices?: { platform: 'nvidia'; evidence: string }[] }>();
    bodies.push(b);
    try {
      const devices = b.devices?.map((d) => ({ platform: d.platform, evidence: fromBase64(d.evidence) }));
      return c.json(await local.attest({ session: b.session, evidence: fromBase64(b.evidence), runtimeData: b.runtimeData, platform: b.platform, ...(devices ? { devices } : {}) }));
    } catch (e) {
      return problem(e);
    }
  });
  app.post('/v1/keys/:name/release', async (c) => {
    const ear = (c.req.header('authorization') ?? '').replace(/^Bearer /, '');
    const b = await c.req.json<{ session: string }>();
    try {
      const r = await local.releaseKey(c.req.param('name'), { session: b.session, ear });
      return c.json({ wrappedKey: toBase64Url(r.wrappedKey), context: r.context });
    } catch (e) {
      return problem(e);
    }
  });
  app.get('/.well-known/jwks.json', async (c) => c.json(await local.jwks()));
  return app;
}

describe('HttpBrokerClient', () => {
  let local: LocalAppraisalBroker;
  let server: RunningServer;
  let gw: TestGateway;
  const released: Uint8Array[] = [];
  beforeAll(async () => {
    local = new LocalAppraisalBroker({ policy: await loadPolicy(simPolicyYaml([TEST_MEASUREMENT])), signingKey: await generateEarSigningKey(), keys: { weights: new Uint8Array(32).fill(9) } });
    server = await listen(brokerTestDouble(local));
    const broker = new HttpBrokerClient({ url: server.url, apiKey: WORKLOAD_KEY, tenant: 'acme' });
    gw = await startTestGateway({ broker: false, gateway: { broker, modelKey: { name: 'weights', onKey: (k) => void released.push(k.slice()) } } });
  });
  afterAll(async () => {
    await gw.close();
    await server.close();
  });

  it('the gateway attests through the HTTP handshake and receives the model key', () => {
    expect(gw.gateway.attestation.state).toBe('attested');
    expect(gw.gateway.attestation.snapshot!.earId).toBeTruthy();
    expect(released).toEqual([new Uint8Array(32).fill(9)]);
  });

  it('a refusal keeps its code; a bad workload key is an auth failure; an unreachable broker is unavailability', async () => {
    local.setPolicy(await loadPolicy(simPolicyYaml(['e5'.repeat(48)], { version: 2 })));
    await expect(gw.gateway.attestation.reattest()).rejects.toMatchObject({ code: 'ERR_EVIDENCE_MEASUREMENT' });
    expect(gw.gateway.attestation.state).toBe('revoked');
    const wrongKey = new HttpBrokerClient({ url: server.url, apiKey: 'sk-wrong-00000000', tenant: 'acme' });
    await expect(wrongKey.challenge()).rejects.toMatchObject({ code: 'ERR_AUTH_INVALID' });
    const down = new HttpBrokerClient({ url: 'http://127.0.0.1:9', apiKey: WORKLOAD_KEY, tenant: 'acme', timeoutMs: 2000 });
    const e = await down.challenge().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toBe('ERR_STORE_UNAVAILABLE');
  });
});

describe('HttpBrokerClient with GPUs', () => {
  it('sends each GPU as devices[] {platform, evidence: base64} in POST /v1/attest, and the composite EAR comes back', async () => {
    const root = await FixtureGpuAttester.testRoot();
    const local = new LocalAppraisalBroker({ policy: await loadPolicy(compositePolicyYaml([TEST_MEASUREMENT], await fixtureGpuMeasurements())), signingKey: await generateEarSigningKey(), deviceRoots: [root] });
    const server = await listen(brokerTestDouble(local));
    const broker = new HttpBrokerClient({ url: server.url, apiKey: WORKLOAD_KEY, tenant: 'acme' });
    const gw = await startTestGateway({ broker: false, gateway: { broker, devices: [new FixtureGpuAttester(), new FixtureGpuAttester()], deviceRoots: [root] } });
    try {
      expect(gw.gateway.attestation.state).toBe('attested');
      const body = bodies.at(-1)!;
      const devices = body.devices as { platform: string; evidence: string }[];
      expect(devices.map((d) => Object.keys(d).sort())).toEqual([['evidence', 'platform'], ['evidence', 'platform']]);
      expect(devices.map((d) => d.platform)).toEqual(['nvidia', 'nvidia']);
      // Standard base64, as `evidence` is; the same bytes the bundle publishes (base64url).
      const published = gw.gateway.attestation.snapshot!.bundle.devices!;
      expect(devices.map((d) => Buffer.from(fromBase64(d.evidence)).toString('base64url'))).toEqual(published.map((d) => d.evidence));
      expect(typeof body.evidence).toBe('string');
    } finally {
      await gw.close();
      await server.close();
    }
  });

  it('sends no devices member without GPUs', async () => {
    const fetched: string[] = [];
    const client = new HttpBrokerClient({
      url: 'http://broker.invalid',
      apiKey: WORKLOAD_KEY,
      tenant: 'acme',
      fetch: (_url, init) => {
        fetched.push(init?.body as string);
        return Promise.resolve(new Response(JSON.stringify({ ear: 'a.b.c' }), { status: 200 }));
      },
    });
    await client.attest({ session: 's', evidence: new Uint8Array([1, 2]), runtimeData: '{}', platform: 'sim' });
    await client.attest({ session: 's', evidence: new Uint8Array([1, 2]), runtimeData: '{}', platform: 'sim', devices: [] });
    for (const f of fetched) expect(Object.keys(JSON.parse(f) as object).sort()).toEqual(['evidence', 'platform', 'runtimeData', 'session']);
  });
});

describe('HttpBrokerClient transport (node:http, its own)', () => {
  // A stand-in broker that answers every request in the way its path names.
  let raw: Server;
  let base: string;
  let sent = 0;
  beforeAll(async () => {
    raw = createServer((req, res) => {
      req.resume();
      if (req.url === '/huge/v1/attest/challenge') {
        // 4 MiB of JSON-looking bytes, streamed: far past the client's 512 KiB bound.
        res.writeHead(200, { 'content-type': 'application/json' });
        const chunk = Buffer.alloc(64 * 1024, 0x20);
        const more = () => {
          while (sent < 64) {
            sent++;
            if (!res.write(chunk)) return void res.once('drain', more);
          }
          res.end();
        };
        res.once('close', () => res.removeAllListeners('drain'));
        more();
      } else if (req.url === '/moved/v1/attest/challenge') {
        res.writeHead(307, { location: '/ok/v1/attest/challenge', 'content-type': 'application/json' });
        res.end('{"detail":"moved"}');
      } else if (req.url === '/silent/v1/attest/challenge') {
        // Never answers.
      } else {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ session: 's1', nonce: 'AAAA', expiresAt: '2030-01-01T00:00:00Z' }));
      }
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', r));
    base = `http://127.0.0.1:${(raw.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    raw.closeAllConnections();
    await new Promise((r) => raw.close(r));
  });

  it('reads an answer, and keeps its connection for the next call until close()', async () => {
    const client = new HttpBrokerClient({ url: `${base}/ok`, apiKey: WORKLOAD_KEY, tenant: 'acme' });
    const sockets = new Set<unknown>();
    const onConn = (s: unknown) => sockets.add(s);
    raw.on('connection', onConn);
    try {
      expect((await client.challenge()).session).toBe('s1');
      expect((await client.challenge()).session).toBe('s1');
      expect(sockets.size).toBe(1);
      client.close();
      expect((await client.challenge()).session).toBe('s1');
      expect(sockets.size).toBe(2);
    } finally {
      raw.off('connection', onConn);
      client.close();
    }
  });

  it('refuses an answer past 512 KiB as ERR_INPUT_TOO_LARGE, and stops reading it', async () => {
    const client = new HttpBrokerClient({ url: `${base}/huge`, apiKey: WORKLOAD_KEY, tenant: 'acme' });
    try {
      await expect(client.challenge()).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
      // The stand-in could not write all 64 chunks: the client dropped the connection.
      await new Promise((r) => setTimeout(r, 100));
      expect(sent).toBeLessThan(64);
    } finally {
      client.close();
    }
  });

  it('gives up on a broker that does not answer within timeoutMs (ERR_STORE_UNAVAILABLE)', async () => {
    const client = new HttpBrokerClient({ url: `${base}/silent`, apiKey: WORKLOAD_KEY, tenant: 'acme', timeoutMs: 200 });
    try {
      const started = performance.now();
      await expect(client.challenge()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
      expect(performance.now() - started).toBeLessThan(5000);
    } finally {
      client.close();
    }
  });

  it('bounds an injected fetch the same way', async () => {
    const big = new Uint8Array(600 * 1024).fill(0x20);
    const client = new HttpBrokerClient({ url: 'http://broker.invalid', apiKey: WORKLOAD_KEY, tenant: 'acme', fetch: () => Promise.resolve(new Response(big, { status: 200 })) });
    await expect(client.challenge()).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
  });

  it('does not follow a redirect, and takes it for the broker being unavailable, never a refusal', async () => {
    const client = new HttpBrokerClient({ url: `${base}/moved`, apiKey: WORKLOAD_KEY, tenant: 'acme' });
    try {
      const e = await client.challenge().catch((x: unknown) => x);
      expect(e).toMatchObject({ code: 'ERR_STORE_UNAVAILABLE', detail: { status: 307 } });
      expect(isRefusal((e as CustodyError).code)).toBe(false);
    } finally {
      client.close();
    }
  });
});
