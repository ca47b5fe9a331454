// Rate limits of POST /v1/attest/challenge over HTTP on loopback: a burst per client address,
// then 429 ERR_RATE_LIMITED with Retry-After; refill with (movable) time; separate buckets per
// address and per workload API key; X-Forwarded-For only with trustProxy; the cap on live
// sessions; and full handshakes untouched at the defaults.
import { randomBytes } from 'node:crypto';
import { request } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import { DEFAULT_CHALLENGE_RATE_LIMIT } from '../config.js';
import { attestWith, releaseWith, simPolicy, startHandshakeBroker, type HandshakeBroker } from '../testing/handshake.js';

const GOOD = 'a1'.repeat(48);
const sim = () => new SimAttester({ measurements: { measurement: GOOD } });

interface Answer {
  status: number;
  code: string | null;
  retryAfter: string | null;
  body: { facts?: { scope?: string; retryAfterSeconds?: number } };
}

async function challenge(b: HandshakeBroker, headers: Record<string, string> = {}, tenant = 'acme'): Promise<Answer> {
  const res = await fetch(`${b.url}/v1/attest/challenge`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ tenant }) });
  return { status: res.status, code: res.headers.get('x-custody-code'), retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Answer['body'] };
}

/** A challenge from another loopback source address (127.0.0.2), over a fresh socket. */
function challengeFrom(b: HandshakeBroker, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ tenant: 'acme' });
    const req = request(`${b.url}/v1/attest/challenge`, { method: 'POST', localAddress, agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

describe('challenge rate limits over HTTP', () => {
  let tight: HandshakeBroker;
  let proxied: HandshakeBroker;

  beforeAll(async () => {
    // 100 s per token: real time passing during the test never refills a bucket by accident.
    tight = await startHandshakeBroker({ attestation: { challengeRateLimit: { perAddress: { burst: 3, perSecond: 0.01 } } } });
    proxied = await startHandshakeBroker({
      attestation: { challengeRateLimit: { trustProxy: true, perAddress: { burst: 2, perSecond: 0.01 }, perApiKey: { burst: 2, perSecond: 0.01 }, maxOutstandingSessions: 9 } },
    });
  }, 60_000);
  afterAll(async () => {
    await tight?.close();
    await proxied?.close();
  });

  it('allows a burst per address, then 429 ERR_RATE_LIMITED with Retry-After; refills with time', async () => {
    for (let i = 0; i < 3; i++) expect((await challenge(tight)).status).toBe(201);
    const refused = await challenge(tight);
    expect([refused.status, refused.code, refused.body.facts?.scope]).toEqual([429, 'ERR_RATE_LIMITED', 'address']);
    const wait = Number(refused.retryAfter);
    expect(Number.isInteger(wait) && wait >= 1 && wait <= 100).toBe(true);
    expect(refused.body.facts?.retryAfterSeconds).toBe(wait);
    // X-Forwarded-For is not trusted by default: a forged one is the same client.
    expect((await challenge(tight, { 'x-forwarded-for': '198.51.100.7' })).status).toBe(429);
    // Another source address has its own bucket.
    expect(await challengeFrom(tight, '127.0.0.2')).toBe(201);
    // Refusals are logged with their code like any request, and hold no session.
    expect(tight.logLines.some((l) => l.includes('"status":429') && l.includes('ERR_RATE_LIMITED'))).toBe(true);
    expect(tight.started.broker.challengeLimiter!.stats()).toMatchObject({ addressBuckets: 2, outstandingSessions: 4 });
    tight.time.advance(wait * 1000);
    expect((await challenge(tight)).status).toBe(201);
    expect((await challenge(tight)).status).toBe(429);
    // 127.0.0.2's bucket refilled while idle, so it was forgotten.
    expect(tight.started.broker.challengeLimiter!.stats()).toMatchObject({ addressBuckets: 1, outstandingSessions: 5 });
  });

  it('with trustProxy, buckets follow X-Forwarded-For; a workload API key has its own bucket too', async () => {
    // The proxy appends the peer it saw; whatever the client wrote stays on the left and is ignored.
    const xff = (client: string) => ({ 'x-forwarded-for': `192.0.2.99, ${client}` });
    // The right-most entry is the one the trusted proxy wrote.
    expect((await challenge(proxied, { 'x-forwarded-for': '192.0.2.1, 203.0.113.1' })).status).toBe(201);
    expect((await challenge(proxied, { 'x-forwarded-for': '192.0.2.2, 203.0.113.1' })).status).toBe(201);
    const sameProxyHop = await challenge(proxied, { 'x-forwarded-for': '192.0.2.3, 203.0.113.1' });
    expect([sameProxyHop.status, sameProxyHop.body.facts?.scope]).toEqual([429, 'address']);

    const k1 = (await proxied.admin.createApiKey('workload', 'w1')).token;
    const k2 = (await proxied.admin.createApiKey('workload', 'w2')).token;
    const auth = (k: string) => ({ authorization: `Bearer ${k}` });
    // One key from changing addresses: limited by its key bucket.
    expect((await challenge(proxied, { ...xff('198.51.100.1'), ...auth(k1) })).status).toBe(201);
    expect((await challenge(proxied, { ...xff('198.51.100.2'), ...auth(k1) })).status).toBe(201);
    const keyLimited = await challenge(proxied, { ...xff('198.51.100.3'), ...auth(k1) });
    expect([keyLimited.status, keyLimited.code, keyLimited.body.facts?.scope]).toEqual([429, 'ERR_RATE_LIMITED', 'apiKey']);
    expect(Number(keyLimited.retryAfter)).toBeGreaterThanOrEqual(1);
    // Another key from that address is fine (the address has one token left); so is no key from a fresh address.
    expect((await challenge(proxied, { ...xff('198.51.100.3'), ...auth(k2) })).status).toBe(201);
    expect((await challenge(proxied, xff('198.51.100.4'))).status).toBe(201);
    // An invalid key is refused as such and never gets a bucket.
    expect((await challenge(proxied, { ...xff('198.51.100.5'), authorization: 'Bearer cst_0000000000000000_AAAA' })).code).toBe('ERR_AUTH_INVALID');
    expect(proxied.started.broker.challengeLimiter!.stats().apiKeyBuckets).toBe(2);
  });

  it('caps the sessions a replica holds open; they free as they expire', async () => {
    const limiter = proxied.started.broker.challengeLimiter!;
    let n = 0;
    while (limiter.stats().outstandingSessions < 9) expect((await challenge(proxied, { 'x-forwarded-for': `192.0.2.${100 + n++}` })).status).toBe(201);
    const full = await challenge(proxied, { 'x-forwarded-for': '192.0.2.250' });
    expect([full.status, full.code, full.body.facts?.scope]).toEqual([429, 'ERR_RATE_LIMITED', 'sessions']);
    // Until the oldest session ends (default session TTL 300 s).
    const wait = Number(full.retryAfter);
    expect(wait).toBeGreaterThan(250);
    expect(wait).toBeLessThanOrEqual(300);
    // A refusal for the cap made no row and took no slot; failures release theirs.
    expect((await challenge(proxied, { 'x-forwarded-for': '192.0.2.251' }, 'Not A Tenant')).code).toBe('ERR_RATE_LIMITED');
    proxied.time.advance(wait * 1000 + 1000);
    expect((await challenge(proxied, { 'x-forwarded-for': '192.0.2.252' })).status).toBe(201);
    expect((await challenge(proxied, { 'x-forwarded-for': '192.0.2.253' }, 'Not A Tenant')).code).toBe('ERR_KEY_NAME');
    expect(limiter.stats().outstandingSessions).toBe(1);
  });
});

describe('legitimate handshakes at the default limits', () => {
  let b: HandshakeBroker;
  const material = randomBytes(32);

  beforeAll(async () => {
    b = await startHandshakeBroker({ policy: simPolicy([GOOD]) });
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material, releasePolicy: `status == 'affirming' && platform == 'sim'` });
  }, 60_000);
  afterAll(async () => b?.close());

  it('are limited on by default and never hit by a workload that attests and releases', async () => {
    expect(b.started.broker.challengeLimiter!.config).toEqual(DEFAULT_CHALLENGE_RATE_LIMIT);
    for (let i = 0; i < 12; i++) {
      const a = await attestWith(b.workload, 'acme', sim());
      const { material: got } = await releaseWith(b.workload, 'acme', a, 'dk');
      expect(Buffer.from(got).equals(material)).toBe(true);
    }
    // A fleet starting at once from one address (a NAT): the default burst.
    const burst = DEFAULT_CHALLENGE_RATE_LIMIT.perAddress.burst - 12;
    const all = await Promise.all(Array.from({ length: burst }, () => attestWith(b.workload, 'acme', sim())));
    expect(all.every((a) => a.attested.status === 'affirming')).toBe(true);
    expect(b.started.broker.challengeLimiter!.stats()).toMatchObject({ addressBuckets: 1, evictedBuckets: 0 });
    expect(b.logLines.filter((l) => l.includes('"status":429'))).toEqual([]);
  }, 60_000);
});
