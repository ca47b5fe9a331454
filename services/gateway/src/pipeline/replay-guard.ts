import { CustodyError, type Clock } from '@custody/core';

/**
 * Anti-replay for encapsulated requests (RFC 9458 section 6.5): each request's encapsulated
 * key (`enc`, fresh per request) is remembered for twice the accepted Date window; the Date
 * check inside the request bounds how long that must be. `commit` is the atomic
 * check-and-record, called once the request has authenticated. At the bound the gateway
 * refuses (fail closed) rather than forget.
 */
export class ReplayGuard {
  private readonly seen = new Map<string, number>();
  private lastSweep = 0;

  constructor(
    private readonly clock: Clock,
    private readonly windowMs: number,
    private readonly maxEntries = 1_000_000,
  ) {}

  get size(): number {
    return this.seen.size;
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < 1000 && this.seen.size < this.maxEntries) return;
    this.lastSweep = now;
    // Insertion order is expiry order (every entry lives the same time).
    for (const [k, exp] of this.seen) {
      if (exp > now) break;
      this.seen.delete(k);
    }
  }

  commit(enc: Uint8Array): void {
    const now = this.clock().getTime();
    this.sweep(now);
    const key = Buffer.from(enc.buffer, enc.byteOffset, enc.byteLength).toString('base64');
    if (this.seen.has(key)) throw new CustodyError('ERR_GATEWAY_REPLAY');
    if (this.seen.size >= this.maxEntries) throw new CustodyError('ERR_GATEWAY_OVERLOADED', 'the replay window is full');
    this.seen.set(key, now + 2 * this.windowMs);
  }
}
