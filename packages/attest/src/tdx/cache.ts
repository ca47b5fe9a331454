/**
 * In-memory store of collateral that has already been verified (signature and issuer chain),
 * keyed by kind and an id (FMSPC for TCB Info, `TD_QE` for QE Identity, the issuer for CRLs) and
 * the trust anchors it was verified against. An entry is kept until its `nextUpdate`: looking it up
 * at a later time reports it as stale and drops it, so stale collateral is never silently used.
 * Time-dependent checks (validity periods at `now`) are still made by the caller on every use.
 */
export type CollateralKind = 'tcbInfo' | 'qeIdentity' | 'pckCrl' | 'rootCaCrl';

export type CacheLookup<T> = { state: 'fresh'; value: T; nextUpdate: Date } | { state: 'stale'; nextUpdate: Date } | { state: 'missing' };

interface Entry {
  value: unknown;
  nextUpdate: Date;
}

export class CollateralCache {
  private readonly entries = new Map<string, Entry>();

  constructor(readonly maxEntries = 4096) {}

  /** Looks an entry up at `now`; an entry past its nextUpdate is reported stale and evicted. */
  get<T>(kind: CollateralKind, id: string, now: Date): CacheLookup<T> {
    const k = `${kind}\u0000${id}`;
    const e = this.entries.get(k);
    if (!e) return { state: 'missing' };
    if (e.nextUpdate.getTime() < now.getTime()) {
      this.entries.delete(k);
      return { state: 'stale', nextUpdate: e.nextUpdate };
    }
    return { state: 'fresh', value: e.value as T, nextUpdate: e.nextUpdate };
  }

  /** The entry regardless of time (to recognise collateral already verified). */
  peek<T>(kind: CollateralKind, id: string): T | undefined {
    return this.entries.get(`${kind}\u0000${id}`)?.value as T | undefined;
  }

  set(kind: CollateralKind, id: string, value: unknown, nextUpdate: Date): void {
    const k = `${kind}\u0000${id}`;
    this.entries.delete(k);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(k, { value, nextUpdate });
  }

  delete(kind: CollateralKind, id: string): void {
    this.entries.delete(`${kind}\u0000${id}`);
  }

  clear(): void {
    this.entries.clear();
  }

  get size(): number {
    return this.entries.size;
  }
}
