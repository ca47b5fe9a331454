/**
 * Anti-replay stores (see replay/replay-store.ts). `ReplayGuard` is the in-memory store under
 * its original name.
 */
export { MemoryReplayStore, MemoryReplayStore as ReplayGuard } from './replay/memory-replay-store.js';
export { DEFAULT_REQUEST_DATE_WINDOW_MS, REPLAY_MARGIN_MS, replayKey, type ReplayStore } from './replay/replay-store.js';
export { SqliteReplayStore, type SqliteReplayStoreOptions } from './replay/sqlite-replay-store.js';
export { PostgresReplayStore, type PostgresReplayStoreOptions } from './replay/postgres-replay-store.js';
export { openReplayStore, type ReplayStoreSettings } from './replay/open-replay-store.js';
