import { CustodyError, type Clock } from '@custody/core';
import { MemoryReplayStore } from './memory-replay-store.js';
import { PostgresReplayStore } from './postgres-replay-store.js';
import { DEFAULT_REQUEST_DATE_WINDOW_MS, checkWindow, type ReplayStore } from './replay-store.js';
import { SqliteReplayStore } from './sqlite-replay-store.js';

export interface ReplayStoreSettings {
  clock: Clock;
  /** The gateway's accepted Date window (GatewayOptions.requestDateWindowMs). Default 60 s. */
  windowMs?: number;
}

/**
 * Opens the store a location names: `memory` (one process only), `sqlite:PATH` (replicas on
 * one host share the file), or `postgres://...` / `postgresql://...` (replicas on several
 * hosts share the database).
 */
export async function openReplayStore(location: string, settings: ReplayStoreSettings): Promise<ReplayStore> {
  const windowMs = settings.windowMs ?? DEFAULT_REQUEST_DATE_WINDOW_MS;
  checkWindow(windowMs);
  if (location === 'memory') return new MemoryReplayStore(settings.clock, windowMs);
  if (location.startsWith('sqlite:')) {
    const path = location.slice('sqlite:'.length);
    if (!path) throw new CustodyError('ERR_GATEWAY_CONFIG', 'the replay store sqlite:PATH needs a file path');
    return SqliteReplayStore.open({ path, clock: settings.clock, windowMs });
  }
  if (/^postgres(ql)?:\/\//.test(location)) return PostgresReplayStore.open({ connectionString: location, clock: settings.clock, windowMs });
  throw new CustodyError('ERR_GATEWAY_CONFIG', 'the replay store must be memory, sqlite:PATH or postgres://...');
}
