import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { CustodyError } from '@custody/core';
import { challengeRateLimitFromEnv, DEFAULT_CHALLENGE_RATE_LIMIT, parseChallengeRateLimit } from '../config.js';
import { ChallengeLimiter, clientAddressKey, TokenBuckets } from './challenge-limits.js';

const T0 = Date.parse('2025-06-01T12:00:00Z');

function clockAt(start = T0): { clock: () => Date; set(ms: number): void; advance(ms: number): void } {
  let now = start;
  return { clock: () => new Date(now), set: (ms) => void (now = ms), advance: (ms) => void (now += ms) };
}

function refusal(fn: () => unknown): { code: string; detail: Record<string, unknown> | undefined } {
  try {
    fn();
  } catch (e) {
    if (e instanceof CustodyError) return { code: e.code, detail: e.detail };
    throw e;
  }
  return { code: 'none', detail: undefined };
}

describe('TokenBuckets', () => {
  it('allows a burst, then asks to wait the time one token takes to come back', () => {
    const b = new TokenBuckets({ burst: 3, perSecond: 0.5 }, 100);
    expect([b.take('a', T0), b.take('a', T0), b.take('a', T0)]).toEqual([0, 0, 0]);
    expect(b.take('a', T0)).toBe(2);
    // Half way: still 1 s to go.
    expect(b.take('a', T0 + 1000)).toBe(1);
    expect(b.take('a', T0 + 2000)).toBe(0);
    expect(b.take('a', T0 + 2000)).toBe(2);
  });

  it('refills with time up to the burst, never beyond', () => {
    const b = new TokenBuckets({ burst: 2, perSecond: 10 }, 100);
    b.take('a', T0);
    b.take('a', T0);
    expect(b.take('a', T0)).toBe(1);
    // An hour later the bucket holds 2, not 36 000.
    const later = T0 + 3_600_000;
    expect([b.take('a', later), b.take('a', later), b.take('a', later)]).toEqual([0, 0, 1]);
  });

  it('keeps keys apart', () => {
    const b = new TokenBuckets({ burst: 1, perSecond: 1 }, 100);
    expect(b.take('k1', T0)).toBe(0);
    expect(b.take('k1', T0)).toBe(1);
    expect(b.take('k2', T0)).toBe(0);
    expect(b.take('k1', T0)).toBe(1);
  });

  it('a clock stepping back adds no tokens and takes none away', () => {
    const b = new TokenBuckets({ burst: 2, perSecond: 1 }, 100);
    b.take('a', T0);
    b.take('a', T0);
    expect(b.take('a', T0 - 60_000)).toBe(1);
    expect(b.take('a', T0 - 59_000)).toBe(0);
  });

  it('holds at most maxBuckets, evicting the least recently used', () => {
    const b = new TokenBuckets({ burst: 5, perSecond: 1 }, 16);
    for (let i = 0; i < 10_000; i++) b.take(`flood-${i}`, T0);
    expect(b.size).toBe(16);
    expect(b.evicted).toBe(10_000 - 16);
    // A recently used bucket survives a flood of new keys as long as it is touched.
    const c = new TokenBuckets({ burst: 1, perSecond: 0.001 }, 16);
    c.take('victim', T0);
    for (let i = 0; i < 100; i++) {
      c.take(`x-${i}`, T0);
      if (i % 10 === 0) expect(c.take('victim', T0)).toBeGreaterThan(0);
    }
    expect(c.size).toBeLessThanOrEqual(16);
  });

  it('drops idle buckets (full again) as it goes, without a timer', () => {
    const b = new TokenBuckets({ burst: 2, perSecond: 1 }, 1000);
    for (let i = 0; i < 400; i++) b.take(`c-${i}`, T0);
    expect(b.size).toBe(400);
    // 2 s later every bucket is full again: each call forgets a few of the oldest.
    for (let i = 0; i < 100; i++) b.take('steady', T0 + 2000 + i);
    expect(b.size).toBe(1);
    expect(b.evicted).toBe(0);
  });

  it('refuses nonsense settings', () => {
    for (const [rate, max] of [[{ burst: 0, perSecond: 1 }, 10], [{ burst: 1, perSecond: 0 }, 10], [{ burst: 1.5, perSecond: 1 }, 10], [{ burst: 1, perSecond: 1 }, 0]] as const) {
      expect(refusal(() => new TokenBuckets(rate, max)).code).toBe('ERR_USAGE');
    }
  });
});

describe('ChallengeLimiter', () => {
  const config = (over: Parameters<typeof parseChallengeRateLimit>[0]) => parseChallengeRateLimit(over);

  it('refuses with ERR_RATE_LIMITED, the scope and the seconds to wait', () => {
    const t = clockAt();
    const l = new ChallengeLimiter(config({ perAddress: { burst: 2, perSecond: 0.25 }, perApiKey: { burst: 1, perSecond: 1 } }), { clock: t.clock });
    l.admitAddress('ip4:10.0.0.1');
    l.admitAddress('ip4:10.0.0.1');
    expect(refusal(() => l.admitAddress('ip4:10.0.0.1'))).toEqual({ code: 'ERR_RATE_LIMITED', detail: { scope: 'address', retryAfterSeconds: 4 } });
    l.admitAddress('ip4:10.0.0.2');
    l.admitApiKey('apikey:a');
    expect(refusal(() => l.admitApiKey('apikey:a'))).toEqual({ code: 'ERR_RATE_LIMITED', detail: { scope: 'apiKey', retryAfterSeconds: 1 } });
    l.admitApiKey('apikey:b');
    t.advance(4000);
    l.admitAddress('ip4:10.0.0.1');
    // Address and key buckets are separate maps: the same string does not share a bucket.
    l.admitApiKey('ip4:10.0.0.1');
  });

  it('caps the live sessions; a slot frees when its session expires or the challenge fails', () => {
    const t = clockAt();
    const l = new ChallengeLimiter(config({ maxOutstandingSessions: 3 }), { clock: t.clock });
    l.reserveSession().commit(T0 + 300_000);
    t.advance(10_000);
    l.reserveSession().commit(T0 + 310_000);
    const inFlight = l.reserveSession();
    // Two committed and one in flight: full.
    expect(refusal(() => l.reserveSession())).toEqual({ code: 'ERR_RATE_LIMITED', detail: { scope: 'sessions', retryAfterSeconds: 290 } });
    inFlight.cancel();
    inFlight.cancel();
    const again = l.reserveSession();
    again.commit(T0 + 320_000);
    again.commit(T0 + 999_999);
    expect(l.stats().outstandingSessions).toBe(3);
    expect(refusal(() => l.reserveSession()).code).toBe('ERR_RATE_LIMITED');
    t.set(T0 + 300_000);
    expect(l.stats().outstandingSessions).toBe(2);
    l.reserveSession().commit(T0 + 600_000);
    t.set(T0 + 700_000);
    expect(l.stats().outstandingSessions).toBe(0);
  });

  it('counts refusals by scope in custody_broker_challenges_limited_total', async () => {
    const metrics = new Registry();
    const l = new ChallengeLimiter(config({ perAddress: { burst: 1, perSecond: 1 }, maxOutstandingSessions: 1 }), { clock: clockAt().clock, metrics });
    l.admitAddress('ip4:10.0.0.1');
    refusal(() => l.admitAddress('ip4:10.0.0.1'));
    refusal(() => l.admitAddress('ip4:10.0.0.1'));
    l.reserveSession();
    refusal(() => l.reserveSession());
    const values = (await metrics.getSingleMetric('custody_broker_challenges_limited_total')!.get()).values;
    expect(Object.fromEntries(values.map((v) => [v.labels.scope, v.value]))).toEqual({ address: 2, sessions: 1 });
  });

  it('keeps its session queue compact under a long steady flow', () => {
    const t = clockAt();
    const l = new ChallengeLimiter(config({ maxOutstandingSessions: 100 }), { clock: t.clock });
    for (let i = 0; i < 50_000; i++) {
      t.advance(10);
      l.reserveSession().commit(t.clock().getTime() + 500);
    }
    expect(l.stats().outstandingSessions).toBeLessThanOrEqual(50);
    expect((l as unknown as { expiries: number[] }).expiries.length).toBeLessThan(2200);
  });
});

describe('clientAddressKey', () => {
  it('uses the TCP peer unless a proxy is trusted', () => {
    expect(clientAddressKey('203.0.113.7', '198.51.100.1', false)).toBe('ip4:203.0.113.7');
    expect(clientAddressKey(undefined, undefined, false)).toBe('unknown');
    expect(clientAddressKey('::ffff:203.0.113.7', undefined, false)).toBe('ip4:203.0.113.7');
  });

  it('with N trusted proxies takes the N-th address from the right of X-Forwarded-For', () => {
    const xff = '192.0.2.66, 198.51.100.1, 10.0.0.5';
    expect(clientAddressKey('10.0.0.9', xff, true)).toBe('ip4:10.0.0.5');
    expect(clientAddressKey('10.0.0.9', xff, 1)).toBe('ip4:10.0.0.5');
    expect(clientAddressKey('10.0.0.9', xff, 2)).toBe('ip4:198.51.100.1');
    // The client-written left end is never used when it is beyond the trusted hops.
    expect(clientAddressKey('10.0.0.9', '192.0.2.66', 2)).toBe('ip4:10.0.0.9');
    // Not an address, or no header: the peer (the proxy).
    expect(clientAddressKey('10.0.0.9', 'evil, not-an-ip', true)).toBe('ip4:10.0.0.9');
    expect(clientAddressKey('10.0.0.9', undefined, true)).toBe('ip4:10.0.0.9');
    expect(clientAddressKey('10.0.0.9', '', true)).toBe('ip4:10.0.0.9');
    // Ports as some proxies write them.
    expect(clientAddressKey('10.0.0.9', '198.51.100.1:4711', true)).toBe('ip4:198.51.100.1');
    expect(clientAddressKey('10.0.0.9', '[2001:db8::1]:4711', true)).toBe('ip6:2001:db8:0:0::/64');
  });

  it('groups an IPv6 /64 into one client', () => {
    const a = clientAddressKey('2001:db8:1:2:aaaa::1', undefined, false);
    expect(a).toBe('ip6:2001:db8:1:2::/64');
    expect(clientAddressKey('2001:0db8:0001:0002:ffff:ffff:ffff:ffff', undefined, false)).toBe(a);
    expect(clientAddressKey('2001:db8:1:2::5%eth0', undefined, false)).toBe(a);
    expect(clientAddressKey('2001:db8:1:3::1', undefined, false)).not.toBe(a);
    expect(clientAddressKey('::1', undefined, false)).toBe('ip6:0:0:0:0::/64');
    expect(clientAddressKey('64:ff9b::192.0.2.1', undefined, false)).toBe('ip6:64:ff9b:0:0::/64');
  });
});

describe('challenge rate limit configuration', () => {
  it('fills in defaults, merges partial settings and refuses bad ones with ERR_USAGE', () => {
    expect(parseChallengeRateLimit()).toEqual(DEFAULT_CHALLENGE_RATE_LIMIT);
    const c = parseChallengeRateLimit({ perAddress: { burst: 5 }, trustProxy: 2 });
    expect(c).toMatchObject({ perAddress: { burst: 5, perSecond: DEFAULT_CHALLENGE_RATE_LIMIT.perAddress.perSecond }, perApiKey: DEFAULT_CHALLENGE_RATE_LIMIT.perApiKey, trustProxy: 2, enabled: true });
    for (const bad of [{ perAddress: { burst: 0 } }, { perApiKey: { perSecond: -1 } }, { maxBuckets: 1 }, { maxOutstandingSessions: 0 }, { trustProxy: 0 }, { extra: 1 }]) {
      expect(refusal(() => parseChallengeRateLimit(bad as never)).code).toBe('ERR_USAGE');
    }
  });

  it('reads the environment', () => {
    expect(challengeRateLimitFromEnv({})).toEqual(DEFAULT_CHALLENGE_RATE_LIMIT);
    expect(
      challengeRateLimitFromEnv({ CUSTODY_BROKER_TRUST_PROXY: 'true', CUSTODY_BROKER_CHALLENGE_BURST: '20', CUSTODY_BROKER_CHALLENGE_PER_SECOND: '2.5', CUSTODY_BROKER_MAX_SESSIONS: '500' }),
    ).toMatchObject({ trustProxy: true, perAddress: { burst: 20, perSecond: 2.5 }, perApiKey: { burst: 20, perSecond: 2.5 }, maxOutstandingSessions: 500 });
    expect(challengeRateLimitFromEnv({ CUSTODY_BROKER_TRUST_PROXY: '2', CUSTODY_BROKER_CHALLENGE_LIMIT: 'off' })).toMatchObject({ trustProxy: 2, enabled: false });
    for (const env of [{ CUSTODY_BROKER_TRUST_PROXY: 'yes' }, { CUSTODY_BROKER_CHALLENGE_BURST: '-1' }, { CUSTODY_BROKER_CHALLENGE_LIMIT: 'maybe' }, { CUSTODY_BROKER_MAX_SESSIONS: '0' }]) {
      expect(refusal(() => challengeRateLimitFromEnv(env)).code).toBe('ERR_USAGE');
    }
  });
});
