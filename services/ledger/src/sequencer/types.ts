import type { Bytes } from '@custody/core';

/** The integrated tree: every entry below `size` is in the tiles and `root` is its root hash. */
export interface TreeState {
  size: number;
  root: Bytes;
}

/**
 * Durable sequencing. `sequence` assigns consecutive indexes to a batch and resolves only once
 * the batch is committed (fsync'd): that is the acknowledgement a caller gets. `integrate`
 * runs `work` under an exclusive integration lock (one integrator per log, even with several
 * writer processes) with the integrated state and the next sequenced entries; when `work`
 * has written the tiles, the new state is committed and those entries leave the queue.
 */
export interface Sequencer {
  sequence(entries: readonly Uint8Array[]): Promise<number>;
  integrate(maxEntries: number, work: (state: TreeState, entries: Bytes[]) => Promise<TreeState>): Promise<{ state: TreeState; advanced: boolean }>;
  state(): Promise<TreeState & { sequenced: number }>;
  /**
   * Runs `write` (which publishes the checkpoint of `size`) under a publication lock, only if no
   * checkpoint of that size or larger was recorded as published yet. `write` re-checks the
   * stored checkpoint inside the lock and resolves false when it did not write (a larger one is
   * there); `size` is recorded only when it wrote. Returns whether it wrote. This keeps the
   * published checkpoint monotonic when several writers publish. With `sameSize`, a checkpoint of
   * the size already published may be written again (fresh cosignatures of the same tree; `write`
   * checks the root).
   */
  publish(size: number, write: () => Promise<boolean>, options?: { sameSize?: boolean }): Promise<boolean>;
  close(): Promise<void>;
}
