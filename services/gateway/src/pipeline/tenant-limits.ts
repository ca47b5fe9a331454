/**
 * Per-tenant request limits, applied right after a tenant authenticates: at most `concurrent`
 * requests of one tenant in the pipeline at once (a streamed answer holds its place until its
 * last chunk, or until its client leaves), and at most `perMinute` requests a minute (a token
 * bucket holding up to `burst`, refilled at `perMinute / 60` a second). A request over either
 * limit is refused with 429 `ERR_GATEWAY_TENANT_LIMIT` and a `Retry-After`, before its body is
 * looked at: nothing is forwarded, decided or logged to the ledger for it.
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

export class TenantLimiter {
  private readonly states = new Map<string, State>();

  constructor(private readonly clock: () => number) {}

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
      // A clock that steps back refills nothing until it passes the latest time seen again.
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

function bucketSize(limits: TenantLimits): number {
  return limits.burst ?? limits.perMinute ?? 0;
}

function limited(tenant: string, limit: 'concurrent' | 'rate', retryAfterSeconds: number): CustodyError {
  const what = limit === 'concurrent' ? 'requests in progress' : 'requests a minute';
  return new CustodyError('ERR_GATEWAY_TENANT_LIMIT', `tenant ${tenant} is at its limit of ${what}; retry after ${retryAfterSeconds} s`, {
    detail: { limit, retryAfterSeconds },
  });
}
