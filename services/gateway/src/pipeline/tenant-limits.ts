/**
 * Per-tenant request limits, applied right after a tenant authenticates: at most `concurrent`
 * requests of one tenant in the pipeline at once (a streamed answer holds its place until its
 * last chunk, or until its client leaves), and at most `perMinute` requests a minute (a token
 * bucket holding up to `burst`, refilled at `perMinute / 60` a second). A request over either
 * limit is refused with 429 `ERR_GATEWAY_TENANT_LIMIT` and a `Retry-After` as soon as its tenant
 * is known: its sealed body has been read, decrypted, checked against replays and decoded as
 * Binary HTTP (the API key is inside it), but its JSON is not parsed, no policy runs, nothing is
 * forwarded to the model, and nothing is decided or logged to the ledger for it.
 *
 * The bucket runs on a monotonic clock (`performance.now()` by default), not the wall clock: a
 * wall clock that steps (an NTP correction, a host setting the guest's clock) neither refills it
 * nor empties it for the length of the step.
 *
 * The counts live in this gateway process: behind a load balancer each replica applies the
 * limits on its own.
 */
import { CustodyError } from '@custody/core';

export interface TenantLimits {
  /** Requests of the tenant in the pipeline at once (streams until their end). */
  readonly concurrent?: number;
  /** Requests a minute, on average. */
  readonly perMinute?: number;
  /** Requests the tenant may send at once after a quiet spell; default `perMinute`. */
  readonly burst?: number;
}

interface State {
  inFlight: number;
  tokens: number;
  /** When `tokens` was last brought up to date (ms). */
  at: number;
}

/** Tenants tracked at most (a policy lists at most 1024). */
const MAX_TRACKED = 4096;

/** Milliseconds from a monotonic source: `performance.now()` unless a test injects its own. */
export type MonotonicClock = () => number;

const monotonic: MonotonicClock = () => performance.now();

export class TenantLimiter {
  private readonly states = new Map<string, State>();

  /** `clock`: monotonic milliseconds (default `performance.now()`); never the wall clock. */
  constructor(private readonly clock: MonotonicClock = monotonic) {}

  /**
   * Takes one place for a request of `tenant`; the returned function gives it back (calling it
   * again does nothing). Throws ERR_GATEWAY_TENANT_LIMIT when a limit is reached.
   */
  acquire(tenant: string, limits: TenantLimits | undefined): () => void {
    if (!limits || (limits.concurrent === undefined && limits.perMinute === undefined)) return noop;
    const now = this.clock();
    let s = this.states.get(tenant);
    if (!s) {
      if (this.states.size >= MAX_TRACKED) this.evictIdle();
      s = { inFlight: 0, tokens: bucketSize(limits), at: now };
      this.states.set(tenant, s);
    }
    if (limits.concurrent !== undefined && s.inFlight >= limits.concurrent) {
      throw limited(tenant, 'concurrent', 1);
    }
    if (limits.perMinute !== undefined) {
      const size = bucketSize(limits);
      const perMs = limits.perMinute / 60_000;
      // An injected clock that steps back refills nothing until it passes the latest time seen again.
      if (now > s.at) {
        s.tokens = Math.min(size, s.tokens + (now - s.at) * perMs);
        s.at = now;
      }
      if (s.tokens < 1) throw limited(tenant, 'rate', Math.max(1, Math.ceil((1 - s.tokens) / perMs / 1000)));
      s.tokens -= 1;
    }
    s.inFlight++;
    const state = s;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      state.inFlight--;
    };
  }

  /** Requests of `tenant` in the pipeline now (metrics and tests). */
  inFlight(tenant: string): number {
    return this.states.get(tenant)?.inFlight ?? 0;
  }

  private evictIdle(): void {
    for (const [id, s] of this.states) if (s.inFlight === 0) this.states.delete(id);
  }
}

function noop(): void {}

/**
 * Log lines for refusals, at most one per tenant per `intervalMs` (default 1 s): a flood of
 * refused requests writes one line a second carrying how many were refused since the previous
 * line, instead of a line each (the metric still counts each one).
 */
export class RefusalLogThrottle {
  private readonly tenants = new Map<string, { lastAt: number; pending: number }>();

  constructor(
    private readonly clock: MonotonicClock = monotonic,
    private readonly intervalMs = 1000,
  ) {}

  /**
   * Counts one refusal of `tenant`. Returns the number of refusals the line to write now should
   * report (this one included), or undefined when no line is due yet (the refusal is carried
   * into the next line).
   */
  note(tenant: string): number | undefined {
    const now = this.clock();
    let t = this.tenants.get(tenant);
    if (!t) {
      // Bounded like the limiter: a policy lists at most 1024 tenants; past that, forget all.
      if (this.tenants.size >= MAX_TRACKED) this.tenants.clear();
      t = { lastAt: -Infinity, pending: 0 };
      this.tenants.set(tenant, t);
    }
    t.pending++;
    if (now - t.lastAt < this.intervalMs && now >= t.lastAt) return undefined;
    const n = t.pending;
    t.pending = 0;
    t.lastAt = now;
    return n;
  }
}

function bucketSize(limits: TenantLimits): number {
  return limits.burst ?? limits.perMinute ?? 0;
}

function limited(tenant: string, limit: 'concurrent' | 'rate', retryAfterSeconds: number): CustodyError {
  const what = limit === 'concurrent' ? 'requests in progress' : 'requests a minute';
  return new CustodyError('ERR_GATEWAY_TENANT_LIMIT', `tenant ${tenant} is at its limit of ${what}; retry after ${retryAfterSeconds} s`, {
    detail: { limit, retryAfterSeconds },
  });
}
