import { isIP } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import { CustodyError, systemClock, type Clock } from '@custody/core';
import { peerAddressKey } from '@custody/ledger-service';
import { DEFAULT_CHALLENGE_RATE_LIMIT, type ChallengeRateLimitConfig } from '../config.js';
import { DEFAULT_SESSION_TTL_SECONDS } from './handshake.js';

/** Bucket refill settings: `burst` tokens at most, `perSecond` added back. */
export interface TokenBucketRate {
  burst: number;
  perSecond: number;
}

interface Bucket {
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

/** Idle buckets looked at per call, oldest first (amortised sweeping, no timer). */
const SWEEP_PER_CALL = 4;

/**
 * Token buckets by key with bounded memory. A bucket that has refilled to `burst` is exactly a
 * new bucket, so it is dropped when met at the old end (the Map is kept in least-recently-used
 * order); past `maxBuckets` the least recently used bucket goes even if not full (that client
 * then starts afresh, which only loosens its own limit; the session cap still holds).
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, Bucket>();
  /** Buckets dropped while not yet full (bound reached). */
  evicted = 0;

  constructor(
    private readonly rate: TokenBucketRate,
    private readonly maxBuckets: number,
  ) {
    if (!(Number.isInteger(rate.burst) && rate.burst >= 1) || !(rate.perSecond > 0) || !(Number.isInteger(maxBuckets) && maxBuckets >= 1)) {
      throw new CustodyError('ERR_USAGE', 'token buckets need an integer burst >= 1, perSecond > 0 and maxBuckets >= 1');
    }
  }

  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token for `key` at `now` (ms). Returns 0 when taken, else the whole seconds until one is there (>= 1). */
  take(key: string, now: number): number {
    this.sweep(now);
    let bucket = this.buckets.get(key);
    if (bucket) {
      this.buckets.delete(key);
      this.refill(bucket, now);
    } else {
      if (this.buckets.size >= this.maxBuckets) this.evictOldest();
      bucket = { tokens: this.rate.burst, at: now };
    }
    this.buckets.set(key, bucket);
    if (bucket.tokens >= 1) {
      bucket.tokens -= 1;
      return 0;
    }
    return Math.max(1, Math.ceil((1 - bucket.tokens) / this.rate.perSecond));
  }

  private refill(b: Bucket, now: number): void {
    // A clock stepping back adds nothing (and never takes tokens away).
    const elapsed = Math.max(0, now - b.at);
    b.tokens = Math.min(this.rate.burst, b.tokens + (elapsed / 1000) * this.rate.perSecond);
    b.at = now;
  }

  private sweep(now: number): void {
    let n = 0;
    for (const [key, b] of this.buckets) {
      if (n++ >= SWEEP_PER_CALL) break;
      // Full again means idle: forgetting it changes nothing.
      if (b.tokens + (Math.max(0, now - b.at) / 1000) * this.rate.perSecond < this.rate.burst) break;
      this.buckets.delete(key);
    }
  }

  private evictOldest(): void {
    const oldest = this.buckets.keys().next();
    if (!oldest.done) {
      this.buckets.delete(oldest.value);
      this.evicted++;
    }
  }
}

/** A place for one session under the cap: commit it with the session's expiry, or cancel it. */
export interface SessionSlot {
  commit(expiresAtMs: number): void;
  cancel(): void;
}

export type ChallengeLimitScope = 'address' | 'apiKey' | 'sessions';

export interface ChallengeLimiterOptions {
  clock?: Clock;
  /** When given: custody_broker_challenges_limited_total{scope}. */
  metrics?: Registry;
}

/**
 * The challenge route's admission control (see ChallengeRateLimitConfig): per-address and
 * per-API-key token buckets, and a cap on the sessions this replica opened that are still alive.
 * Refusals are ERR_RATE_LIMITED with `scope` and `retryAfterSeconds` (the HTTP layer turns the
 * latter into Retry-After).
 */
export class ChallengeLimiter {
  readonly config: ChallengeRateLimitConfig;
  private readonly clock: Clock;
  private readonly addresses: TokenBuckets;
  private readonly apiKeys: TokenBuckets;
  /** Expiry times (ms) of committed sessions, in commit order: with one session TTL that is expiry order. */
  private expiries: number[] = [];
  private head = 0;
  /** Slots reserved by challenges still in flight. */
  private pending = 0;
  private readonly limited: Counter<'scope'> | undefined;

  constructor(config: ChallengeRateLimitConfig = DEFAULT_CHALLENGE_RATE_LIMIT, options: ChallengeLimiterOptions = {}) {
    this.config = config;
    this.clock = options.clock ?? systemClock;
    this.addresses = new TokenBuckets(config.perAddress, config.maxBuckets);
    this.apiKeys = new TokenBuckets(config.perApiKey, config.maxBuckets);
    if (options.metrics) {
      this.limited = new Counter({ name: 'custody_broker_challenges_limited_total', help: 'Handshake challenges refused by the rate limits, by scope (address, apiKey, sessions)', labelNames: ['scope'], registers: [options.metrics] });
    }
  }

  /** Takes a token for the client address (as returned by clientAddressKey). */
  admitAddress(addressKey: string): void {
    this.admit(this.addresses, addressKey, 'address');
  }

  /** Takes a token for a workload API key (its principal subject, `apikey:<id>`). */
  admitApiKey(subject: string): void {
    this.admit(this.apiKeys, subject, 'apiKey');
  }

  /** Reserves a session under the cap, or refuses with the seconds until the oldest live session expires. */
  reserveSession(): SessionSlot {
    const now = this.clock().getTime();
    this.expire(now);
    if (this.outstanding() >= this.config.maxOutstandingSessions) {
      const oldest = this.expiries[this.head];
      this.refuse('sessions', oldest === undefined ? 1 : Math.ceil((oldest - now) / 1000));
    }
    this.pending++;
    let done = false;
    return {
      commit: (expiresAtMs) => {
        if (done) return;
        done = true;
        this.pending--;
        // An unparsable expiry still holds its slot for the default session lifetime.
        this.expiries.push(Number.isFinite(expiresAtMs) ? expiresAtMs : this.clock().getTime() + DEFAULT_SESSION_TTL_SECONDS * 1000);
      },
      cancel: () => {
        if (done) return;
        done = true;
        this.pending--;
      },
    };
  }

  /** Counts for metrics and tests. */
  stats(): { addressBuckets: number; apiKeyBuckets: number; evictedBuckets: number; outstandingSessions: number } {
    const now = this.clock().getTime();
    this.expire(now);
    return { addressBuckets: this.addresses.size, apiKeyBuckets: this.apiKeys.size, evictedBuckets: this.addresses.evicted + this.apiKeys.evicted, outstandingSessions: this.outstanding() };
  }

  /** The bucket key for a request: see clientAddressKey. */
  addressKeyFor(peer: string | undefined, forwardedFor: string | undefined): string {
    return clientAddressKey(peer, forwardedFor, this.config.trustProxy);
  }

  private admit(buckets: TokenBuckets, key: string, scope: ChallengeLimitScope): void {
    const wait = buckets.take(key, this.clock().getTime());
    if (wait > 0) this.refuse(scope, wait);
  }

  private refuse(scope: ChallengeLimitScope, seconds: number): never {
    this.limited?.inc({ scope });
    const retryAfterSeconds = Math.max(1, seconds);
    throw new CustodyError('ERR_RATE_LIMITED', scope === 'sessions' ? 'this broker has too many open handshake sessions' : `too many challenges from this ${scope === 'address' ? 'client address' : 'API key'}`, {
      detail: { scope, retryAfterSeconds },
    });
  }

  private outstanding(): number {
    return this.expiries.length - this.head + this.pending;
  }

  private expire(now: number): void {
    while (this.head < this.expiries.length && this.expiries[this.head]! <= now) this.head++;
    if (this.head > 1024 && this.head * 2 > this.expiries.length) {
      this.expiries = this.expiries.slice(this.head);
      this.head = 0;
    }
  }
}

/**
 * The rate-limit key of a client: `ip4:<address>`, `ip6:<first 64 bits>::/64` (one host of an
 * IPv6 network can use its whole /64, so that is one client), or `unknown` when the transport
 * gives no peer (in-process requests). With `trustProxy` (true = 1, or N proxies) the address is
 * the N-th entry from the right of X-Forwarded-For, the one the outermost trusted proxy wrote; when
 * the header is absent, shorter than N, or that entry is not an IP address, the TCP peer.
 */
export function clientAddressKey(peer: string | undefined, forwardedFor: string | undefined, trustProxy: boolean | number): string {
  if (trustProxy !== false && forwardedFor) {
    const hops = trustProxy === true ? 1 : trustProxy;
    const chain = forwardedFor.split(',').map((s) => s.trim());
    const entry = chain.length >= hops ? stripPort(chain[chain.length - hops]!) : undefined;
    if (entry !== undefined && isIP(stripZone(entry)) !== 0) return peerAddressKey(entry);
  }
  return peer ? peerAddressKey(peer) : 'unknown';
}

function stripZone(a: string): string {
  const i = a.indexOf('%');
  return i === -1 ? a : a.slice(0, i);
}

/** `[v6]:port` and `v4:port` as some proxies write them. */
function stripPort(a: string): string {
  const bracketed = /^\[([^\]]+)\](?::\d+)?$/.exec(a);
  if (bracketed) return bracketed[1]!;
  const v4 = /^(\d{1,3}(?:\.\d{1,3}){3}):\d+$/.exec(a);
  return v4 ? v4[1]! : a;
}

