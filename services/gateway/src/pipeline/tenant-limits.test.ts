import { describe, expect, it, vi } from 'vitest';
import { CustodyError } from '@custody/core';
import { RefusalLogThrottle, TenantLimiter, type TenantLimits } from './tenant-limits.js';

function refusal(f: () => unknown): { code: string; limit: unknown; retryAfterSeconds: unknown } {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    const err = e as CustodyError;
    return { code: err.code, limit: err.detail?.limit, retryAfterSeconds: err.detail?.retryAfterSeconds };
  }
  throw new Error('expected a refusal');
}

describe('TenantLimiter', () => {
  it('without limits admits everything and tracks nothing', () => {
    const l = new TenantLimiter(() => 0);
    for (const limits of [undefined, {}] as (TenantLimits | undefined)[]) {
      for (let i = 0; i < 100; i++) l.acquire('t', limits);
    }
    expect(l.inFlight('t')).toBe(0);
  });

  it('admits `concurrent` requests at once; a place given back admits the next; giving back twice counts once', () => {
    const l = new TenantLimiter(() => 0);
    const a = l.acquire('t', { concurrent: 2 });
    l.acquire('t', { concurrent: 2 });
    expect(refusal(() => l.acquire('t', { concurrent: 2 }))).toEqual({ code: 'ERR_GATEWAY_TENANT_LIMIT', limit: 'concurrent', retryAfterSeconds: 1 });
    // Another tenant is not affected.
    l.acquire('u', { concurrent: 2 });
    a();
    a();
    expect(l.inFlight('t')).toBe(1);
    l.acquire('t', { concurrent: 2 });
    expect(refusal(() => l.acquire('t', { concurrent: 2 })).limit).toBe('concurrent');
  });

  // perMinute 60 = one a second; the bucket starts full.
  const table: { name: string; limits: TenantLimits; steps: [atMs: number, expect: 'ok' | number][] }[] = [
    { name: 'burst defaults to perMinute', limits: { perMinute: 3 }, steps: [[0, 'ok'], [0, 'ok'], [0, 'ok'], [0, 20], [19_999, 1], [20_000, 'ok'], [20_000, 20]] },
    { name: 'a burst of 1 spaces requests', limits: { perMinute: 60, burst: 1 }, steps: [[0, 'ok'], [0, 1], [500, 1], [1000, 'ok'], [1000, 1]] },
    { name: 'refill stops at the burst', limits: { perMinute: 60, burst: 2 }, steps: [[0, 'ok'], [0, 'ok'], [3_600_000, 'ok'], [3_600_000, 'ok'], [3_600_000, 1]] },
    { name: 'a clock stepping back refills nothing', limits: { perMinute: 60, burst: 1 }, steps: [[10_000, 'ok'], [5_000, 1], [10_999, 1], [11_000, 'ok']] },
    { name: 'retry-after rounds up to whole seconds', limits: { perMinute: 7, burst: 1 }, steps: [[0, 'ok'], [0, 9], [8_000, 1], [8_572, 'ok']] },
  ];
  for (const row of table) {
    it(`rate: ${row.name}`, () => {
      let now = 0;
      const l = new TenantLimiter(() => now);
      for (const [at, want] of row.steps) {
        now = at;
        if (want === 'ok') l.acquire('t', row.limits)();
        else expect(refusal(() => l.acquire('t', row.limits))).toEqual({ code: 'ERR_GATEWAY_TENANT_LIMIT', limit: 'rate', retryAfterSeconds: want });
      }
    });
  }

  it('a refused request takes no place and no token', () => {
    let now = 0;
    const l = new TenantLimiter(() => now);
    const limits = { concurrent: 1, perMinute: 60, burst: 2 };
    l.acquire('t', limits);
    expect(refusal(() => l.acquire('t', limits)).limit).toBe('concurrent');
    expect(l.inFlight('t')).toBe(1);
    now = 0;
    const l2 = new TenantLimiter(() => now);
    const r = l2.acquire('t', limits);
    r();
    // One token left: the concurrent refusal above did not spend it.
    l2.acquire('t', limits)();
    expect(refusal(() => l2.acquire('t', limits)).limit).toBe('rate');
  });

  it('runs on performance.now() by default, never on the wall clock', () => {
    let mono = 1_000;
    const now = vi.spyOn(performance, 'now').mockImplementation(() => mono);
    const wall = vi.spyOn(Date, 'now');
    try {
      const l = new TenantLimiter();
      const limits = { perMinute: 60, burst: 1 };
      l.acquire('t', limits)();
      expect(refusal(() => l.acquire('t', limits)).retryAfterSeconds).toBe(1);
      mono += 1000;
      l.acquire('t', limits)();
      expect(now).toHaveBeenCalled();
      expect(wall).not.toHaveBeenCalled();
    } finally {
      now.mockRestore();
      wall.mockRestore();
    }
  });
});

describe('RefusalLogThrottle', () => {
  // [atMs, tenant, what note() gives: the count for a line written now, or undefined (no line)]
  const steps: [number, string, number | undefined][] = [
    [0, 't', 1], // the first refusal is logged at once
    [10, 't', undefined],
    [500, 't', undefined],
    [20, 'u', 1], // another tenant has its own line
    [999, 't', undefined],
    [1000, 't', 4], // a second after the last line: the three held back and this one
    [1001, 't', undefined],
    [60_000, 't', 2],
    [60_000, 'u', 1],
  ];
  it('writes one line per tenant a second at most, carrying the refusals since the previous line', () => {
    let now = 0;
    const log = new RefusalLogThrottle(() => now);
    for (const [at, tenant, want] of steps) {
      now = at;
      expect([at, tenant, log.note(tenant)]).toEqual([at, tenant, want]);
    }
  });

  it('an injected clock that steps back still gets a line (nothing is held back for good)', () => {
    let now = 10_000;
    const log = new RefusalLogThrottle(() => now);
    expect(log.note('t')).toBe(1);
    now = 5_000;
    expect(log.note('t')).toBe(1);
    expect(log.note('t')).toBeUndefined();
  });
});
