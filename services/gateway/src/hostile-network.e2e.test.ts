// The client SDK against whatever carries its traffic (a relay, a proxy, the network), over real
// sockets: a proxy in front of a real gateway that can hold the attestation answer open, trickle
// it, forge the outer (unauthenticated) error of an exchange the gateway answered, or cut a
// streamed answer. The SDK ends a caller's wait on its signal, bounds a verification, never has
// the model answer twice on a forged error, and types a cut stream.
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { nodeGatewayFetch } from '@custody/crypto-node';
import { createConfidentialFetch, parseRuntimeData, verifyGatewayBundle, type AttestationBundle, type ConfidentialFetchOptions } from '@custody/sdk';
import { startTestGateway, type TestGateway } from './testing/index.js';

/** Takes a request (true) or lets the proxy pass it on (false); `pass` sends it to the gateway and returns the answer whole. */
type Hook = (req: IncomingMessage, res: ServerResponse, pass: () => Promise<{ status: number; headers: Record<string, string>; body: Buffer }>) => Promise<boolean> | boolean;

let offset = 0;
const gatewayClock = () => new Date(Date.now() + offset);
let gw: TestGateway;
let proxy: Server;
let proxyUrl: string;
let hook: Hook | undefined;
/** Encapsulated requests that reached the gateway. */
let sealedToGateway = 0;

beforeAll(async () => {
  gw = await startTestGateway({ clock: gatewayClock, gateway: { keyGraceMs: 1000 } });
  proxy = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const pass = () =>
        new Promise<{ status: number; headers: Record<string, string>; body: Buffer }>((resolve, reject) => {
          if (req.url === '/ohttp') sealedToGateway++;
          const headers: Record<string, string> = {};
          for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && k !== 'host' && k !== 'connection') headers[k] = v;
          const up = httpRequest(new URL(req.url!, gw.url), { method: req.method, headers }, (r) => {
            const got: Buffer[] = [];
            r.on('data', (c: Buffer) => got.push(c));
            r.on('end', () => {
              const h: Record<string, string> = {};
              for (const [k, v] of Object.entries(r.headers)) if (typeof v === 'string' && k !== 'transfer-encoding' && k !== 'connection') h[k] = v;
              resolve({ status: r.statusCode!, headers: h, body: Buffer.concat(got) });
            });
            r.on('error', reject);
          });
          up.on('error', reject);
          up.end(Buffer.concat(parts));
        });
      void (async () => {
        try {
          if (hook && (await hook(req, res, pass))) return;
          const r = await pass();
          res.writeHead(r.status, { ...r.headers, 'content-length': String(r.body.length) });
          res.end(r.body);
        } catch (e) {
          res.destroy(e as Error);
        }
      })();
    });
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});
afterAll(async () => {
  proxy?.closeAllConnections();
  await new Promise((r) => proxy?.close(r));
  await gw?.close();
});
beforeEach(() => {
  hook = undefined;
  sealedToGateway = 0;
});

const transports = [
  ['fetch (undici)', undefined],
  ['nodeGatewayFetch', nodeGatewayFetch()],
] as const;

function client(transport: (typeof transports)[number][1], over: Partial<ConfidentialFetchOptions> = {}) {
  // The gateway's clock (tests move it past a grace period): the EARs it gets are issued on it.
  return createConfidentialFetch({ gateway: proxyUrl, jwks: gw.jwks!, allowSimulated: true, expectedMeasurements: { measurement: gw.measurement }, clock: gatewayClock, ...(transport ? { fetch: transport } : {}), ...over });
}

function chat(cfetch: ReturnType<typeof client>, init: { stream?: boolean; signal?: AbortSignal } = {}): Promise<Response> {
  return cfetch(`${proxyUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${gw.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'custody-demo', stream: init.stream ?? false, messages: [{ role: 'user', content: 'hello' }] }),
    ...(init.signal ? { signal: init.signal } : {}),
  });
}

async function outcome(p: Promise<unknown>): Promise<{ name: string; code?: string; ms: number; timedOut?: unknown }> {
  const t0 = performance.now();
  try {
    await p;
    return { name: 'resolved', ms: performance.now() - t0 };
  } catch (e) {
    const err = e as { name?: string; code?: string; detail?: Record<string, unknown> };
    return { name: err.name ?? 'unknown', ...(e instanceof CustodyError ? { code: err.code, timedOut: err.detail?.timedOut } : {}), ms: performance.now() - t0 };
  }
}

/** Holds every attestation answer open: no head (`silent`), or a head and then a byte every 100 ms (`trickle`). */
function holdDiscovery(mode: 'silent' | 'trickle', held: ServerResponse[]): Hook {
  return (req, res) => {
    if (!req.url!.startsWith('/.well-known/custody/attestation')) return false;
    held.push(res);
    if (mode === 'trickle') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const t = setInterval(() => (res.destroyed ? clearInterval(t) : res.write(' ')), 100);
      res.once('close', () => clearInterval(t));
    }
    return true;
  };
}

/** Lets the gateway answer the first sealed request, and puts an error it did not give (`code`) in place of its answer. */
function forgeOnce(code: string): Hook {
  let forged = false;
  return async (req, res, pass) => {
    if (req.url !== '/ohttp' || forged) return false;
    forged = true;
    await pass();
    res.writeHead(code === 'ERR_OHTTP_KEY_ID' ? 422 : 400, { 'content-type': 'application/problem+json' });
    res.end(JSON.stringify({ code, type: code === 'ERR_OHTTP_KEY_ID' ? 'https://custody.dev/problems/ohttp-key' : `urn:custody:error:${code}` }));
    return true;
  };
}

/** Passes the first half of the gateway's sealed answer to /ohttp, then cuts the connection after `ms`. */
function halfThenCut(ms: number): Hook {
  return async (req, res, pass) => {
    if (req.url !== '/ohttp') return false;
    const r = await pass();
    res.writeHead(r.status, { 'content-type': r.headers['content-type']!, 'transfer-encoding': 'chunked' });
    res.write(r.body.subarray(0, r.body.length >> 1));
    setTimeout(() => res.destroy(), ms);
    return true;
  };
}

describe('a verification the network holds open', () => {
  for (const [name, transport] of transports) {
    for (const mode of ['silent', 'trickle'] as const) {
      it(`${name}, ${mode}: a call's signal ends its wait at once, the verification fails at its deadline, and the next call verifies afresh`, async () => {
        const held: ServerResponse[] = [];
        hook = holdDiscovery(mode, held);
        const cfetch = client(transport, { verifyTimeoutMs: 1500 });
        const ac = new AbortController();
        setTimeout(() => ac.abort(), 200);
        const aborted = outcome(chat(cfetch, { signal: ac.signal }));
        const waiting = outcome(chat(cfetch));
        const a = await aborted;
        expect(a.name).toBe('AbortError');
        expect(a.ms).toBeLessThan(1000);
        // The other caller shares the verification, which ends at its own deadline, typed.
        const w = await waiting;
        expect(w).toMatchObject({ name: 'CustodyError', code: 'ERR_SDK_DISCOVERY', timedOut: true });
        expect(w.ms).toBeLessThan(5000);
        expect(cfetch.lastVerification?.error?.code).toBe('ERR_SDK_DISCOVERY');
        // Nothing was sent while the gateway was not verified.
        expect(sealedToGateway).toBe(0);
        hook = undefined;
        for (const r of held) r.destroy();
        const res = await chat(cfetch);
        expect(res.status).toBe(200);
        expect(await cfetch.receiptOf(res)).toBeDefined();
      }, 20_000);
    }
  }

  it('a transport that ignores the signal cannot hold the verification past its deadline either', async () => {
    const held: ServerResponse[] = [];
    hook = holdDiscovery('trickle', held);
    const deaf = (input: string | URL | Request, init?: RequestInit) => {
      const { signal: _ignored, ...rest } = init ?? {};
      return fetch(input, rest);
    };
    const cfetch = client(undefined, { verifyTimeoutMs: 500, fetch: deaf });
    const w = await outcome(chat(cfetch));
    expect(w).toMatchObject({ name: 'CustodyError', code: 'ERR_SDK_DISCOVERY', timedOut: true });
    expect(w.ms).toBeLessThan(3000);
    expect(cfetch.lastVerification).toMatchObject({ ok: false, error: { code: 'ERR_SDK_DISCOVERY' } });
    for (const r of held) r.destroy();
  });

  it('a call whose signal is already aborted neither starts nor joins a verification, and a verification failing behind it is not left unhandled', async () => {
    const held: ServerResponse[] = [];
    hook = holdDiscovery('silent', held);
    const unhandled: unknown[] = [];
    const onUnhandled = (e: unknown) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      const cfetch = client(undefined, { verifyTimeoutMs: 300 });
      const first = outcome(chat(cfetch));
      const reason = new Error('the caller gave up before it began');
      await expect(chat(cfetch, { signal: AbortSignal.abort(reason) })).rejects.toBe(reason);
      expect(await first).toMatchObject({ code: 'ERR_SDK_DISCOVERY', timedOut: true });
      await new Promise((r) => setTimeout(r, 100));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
      for (const r of held) r.destroy();
    }
  });

  it('refuses a verification deadline that is not a positive number', () => {
    for (const verifyTimeoutMs of [0, -1, Number.NaN]) expect(() => client(undefined, { verifyTimeoutMs })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });
});

describe('a forged outer error on an exchange the gateway answered', () => {
  for (const stream of [false, true]) {
    for (const code of ['ERR_OHTTP_REQUEST_DECRYPT', 'ERR_OHTTP_KEY_ID']) {
      it(`${stream ? 'streamed' : 'plain'}, ${code}: the request is not sent again while the gateway's key is the same, and the caller gets the error`, async () => {
        const cfetch = client(undefined);
        await cfetch.verify();
        const before = gw.ledger.size;
        hook = forgeOnce(code);
        expect(await outcome(chat(cfetch, { stream }))).toMatchObject({ name: 'CustodyError', code });
        // The model answered once: one sealed request, one decision and one receipt in the ledger.
        expect(sealedToGateway).toBe(1);
        expect(gw.ledger.size - before).toBe(2);
        // The next call goes through.
        expect((await chat(cfetch, { stream })).status).toBe(200);
      });
    }
  }

  it("the openai client as the README sets it up (maxRetries: 0) sends nothing again after a forged error; its own retries would", async () => {
    for (const [maxRetries, sent] of [
      [0, 1],
      [2, 3],
    ] as const) {
      const cfetch = client(undefined);
      await cfetch.verify();
      sealedToGateway = 0;
      // Every answer of the gateway is swapped for the forged error.
      hook = (req, res, pass) => forgeOnce('ERR_OHTTP_KEY_ID')(req, res, pass);
      const openai = new OpenAI({ baseURL: `${proxyUrl}/v1`, apiKey: gw.apiKey, fetch: cfetch, maxRetries });
      await expect(openai.chat.completions.create({ model: 'custody-demo', messages: [{ role: 'user', content: 'once' }] })).rejects.toThrow();
      // Every sealed request reached the gateway, which answered each: the model answered `sent` times.
      expect(sealedToGateway).toBe(sent);
    }
  });

  it('a key the gateway really retired: the SDK verifies again, finds the key gone and sends once more', async () => {
    const cfetch = client(undefined);
    expect((await chat(cfetch)).status).toBe(200);
    const oldKeyId = (await cfetch.verify()).keyConfigs[0]!.keyId;
    await gw.gateway.attestation.rotateKeys();
    offset += 5000;
    // The round at the end of the grace period (on a timer in real time) publishes the bundle
    // without the old key; only then does the key stop decapsulating.
    await gw.gateway.attestation.reattest();
    sealedToGateway = 0;
    const res = await chat(cfetch);
    expect(res.status).toBe(200);
    expect(sealedToGateway).toBe(2);
    expect((await cfetch.verify()).keyConfigs[0]!.keyId).not.toBe(oldKeyId);
  });

  for (const code of ['ERR_OHTTP_KEY_ID', 'ERR_OHTTP_REQUEST_DECRYPT']) {
    it(`${code} forged during a rotation's grace period (the gateway publishes a new key and still the old one): not sent again`, async () => {
      const cfetch = client(undefined);
      const old = (await cfetch.verify()).keyConfigs[0]!;
      offset += 2000;
      await gw.gateway.attestation.rotateKeys();
      const before = gw.ledger.size;
      hook = forgeOnce(code);
      expect(await outcome(chat(cfetch))).toMatchObject({ name: 'CustodyError', code });
      expect(sealedToGateway).toBe(1);
      expect(gw.ledger.size - before).toBe(2);
      // The SDK verified again: it now seals to the new key.
      expect((await cfetch.verify()).keyConfigs[0]!.keyId).not.toBe(old.keyId);
      expect((await chat(cfetch)).status).toBe(200);
    });
  }

  it('a relay that forges the error and answers the verification with an older bundle (from before the key existed) gets no second answer', async () => {
    const older = await (await fetch(`${gw.url}/.well-known/custody/attestation`)).text();
    offset += 2000;
    await gw.gateway.attestation.rotateKeys();
    const cfetch = client(undefined);
    const now = await cfetch.verify();
    // The older bundle does not list the key the client seals to now, and verifies on its own.
    const sealedTo = now.keyConfigs[0]!;
    expect(parseRuntimeData((JSON.parse(older) as AttestationBundle).runtimeData).keyConfigs.some((k) => k.keyId === sealedTo.keyId)).toBe(false);
    expect((await verifyGatewayBundle(JSON.parse(older) as AttestationBundle, { jwks: gw.jwks!, allowSimulated: true, now: gatewayClock() })).verified).toBeDefined();
    const forge = forgeOnce('ERR_OHTTP_KEY_ID');
    hook = (req, res, pass) => {
      if (req.url!.startsWith('/.well-known/custody/attestation')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(older);
        return true;
      }
      return forge(req, res, pass);
    };
    const before = gw.ledger.size;
    expect(await outcome(chat(cfetch))).toMatchObject({ name: 'CustodyError', code: 'ERR_OHTTP_KEY_ID' });
    expect(sealedToGateway).toBe(1);
    expect(gw.ledger.size - before).toBe(2);
  });
});

describe('a streamed answer the caller stops', () => {
  for (const [name, transport] of transports) {
    it(`${name}: reading fails with the reason the caller aborted with, as fetch does`, async () => {
      const cfetch = client(transport);
      hook = halfThenCut(3000);
      const ac = new AbortController();
      const res = await chat(cfetch, { stream: true, signal: ac.signal });
      cfetch.receiptOf(res)!.catch(() => undefined);
      const reason = new Error('the user pressed stop');
      setTimeout(() => ac.abort(reason), 100);
      await expect(res.text()).rejects.toBe(reason);
    });
  }
});

describe('a streamed answer cut off by the network', () => {
  for (const [name, transport] of transports) {
    it(`${name}: the body and the receipt fail typed (ERR_SDK_GATEWAY), not with the transport's own error`, async () => {
      const cfetch = client(transport);
      hook = halfThenCut(50);
      const res = await chat(cfetch, { stream: true });
      expect(res.status).toBe(200);
      const receipt = cfetch.receiptOf(res)!;
      receipt.catch(() => undefined);
      const read = await outcome(res.text());
      expect(read).toMatchObject({ name: 'CustodyError', code: 'ERR_SDK_GATEWAY' });
      expect(await outcome(receipt)).toMatchObject({ name: 'CustodyError', code: 'ERR_SDK_GATEWAY' });
    });
  }
});
