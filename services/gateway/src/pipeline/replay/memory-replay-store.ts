import { CustodyError, type Clock } from '@custody/core';
import { replayRefused, type ReplayStore, replayExpiry } from './replay-store.js';

/**
 * One process's replay memory: a Map of `enc` to its expiry, twice the Date window after the
 * first sighting. Replicas behind a load balancer need a shared store (SQLite or PostgreSQL)
 * instead. At the bound it refuses (ERR_GATEWAY_OVERLOADED) rather than forget.
 */
export class MemoryReplayStore implements ReplayStore {
  readonly kind = 'memory';
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
    const expires = this.seen.get(key);
    if (expires !== undefined && expires > now) throw replayRefused();
    if (expires === undefined && this.seen.size >= this.maxEntries) throw new CustodyError('ERR_GATEWAY_OVERLOADED', 'the replay window is full');
    // Delete first so a re-recorded key moves to the end and insertion order stays expiry order.
    this.seen.delete(key);
    this.seen.set(key, replayExpiry(now, this.windowMs));
  }
}
