import { createHash } from 'node:crypto';
import { CustodyError } from '@custody/core';

/**
 * Anti-replay for encapsulated requests (RFC 9458 section 6.5). Each request's encapsulated
 * key `enc` is fresh per request, so a second sighting within the replay window is a replay.
 * A key is remembered for twice the accepted Date window plus a margin (`replayExpiry`): the
 * Date check inside the request bounds how long a key must be remembered.
 *
 * Implementations: memory (one process), SQLite (replicas on one host sharing a file),
 * PostgreSQL (replicas on several hosts). A store that cannot answer throws
 * ERR_GATEWAY_REPLAY_STORE and the gateway refuses the request (fail closed).
 */
export interface ReplayStore {
  /** 'memory' | 'sqlite' | 'postgres': for logs and the launch summary. */
  readonly kind: string;
  /**
   * The atomic check-and-record, called once the request has authenticated: records `enc`
   * and returns, or throws ERR_GATEWAY_REPLAY when it was already recorded within the window
   * (by any replica sharing the store), ERR_GATEWAY_REPLAY_STORE when the store cannot tell,
   * ERR_GATEWAY_OVERLOADED at a configured bound.
   */
  commit(enc: Uint8Array): void | Promise<void>;
  close?(): void | Promise<void>;
}

/** Default accepted distance of a request's Date from the gateway clock (GatewayOptions.requestDateWindowMs). */
export const DEFAULT_REQUEST_DATE_WINDOW_MS = 60_000;

/**
 * The key a shared store records: SHA-256 of `enc`. `enc` is public (32 bytes for X25519),
 * but a fixed-width key keeps rows small whatever the KEM (a post-quantum `enc` is over 1 KiB).
 */
export function replayKey(enc: Uint8Array): Buffer {
  return createHash('sha256').update(enc).digest();
}

export function replayRefused(): CustodyError {
  return new CustodyError('ERR_GATEWAY_REPLAY');
}

/**
 * The fail-closed refusal. The client sees the code and the store kind only: driver messages
 * (host names, paths) stay in `cause`, which is never serialised into a response.
 */
export function replayStoreUnavailable(store: string, cause?: unknown): CustodyError {
  return new CustodyError('ERR_GATEWAY_REPLAY_STORE', undefined, { detail: { store }, ...(cause === undefined ? {} : { cause }) });
}

/**
 * How long a store remembers a key recorded at `now`: twice the Date window, plus a margin.
 * The margin covers the time between the store's clock reading at the first sighting and the
 * Date check that follows it (a database round trip), so a replay can never be recorded as new
 * at a moment when its Date is still accepted (it would need both sightings' Date checks within
 * 2W while the store saw them more than 2W + margin apart).
 */
export const REPLAY_MARGIN_MS = 60_000;

export function replayExpiry(now: number, windowMs: number): number {
  return now + 2 * windowMs + REPLAY_MARGIN_MS;
}

export function checkWindow(windowMs: number): void {
  if (!Number.isFinite(windowMs) || windowMs <= 0) throw new CustodyError('ERR_GATEWAY_CONFIG', 'the replay window must be a positive number of milliseconds');
}
