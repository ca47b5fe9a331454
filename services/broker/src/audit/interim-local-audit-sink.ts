import { canonicalize, CustodyError } from '@custody/core';
import type { AuditRepository, StoredAuditEvent } from '../metadata/types.js';
import type { AuditEvent, AuditSink, AuditRecord } from './types.js';

/**
 * INTERIM audit sink: appends each event as canonical JSON to the metadata store's
 * `custody_audit_interim` table, which refuses UPDATE and DELETE (triggers) and links rows in a
 * SHA-256 hash chain. It is local and unwitnessed: it detects casual edits, not an operator who
 * rewrites the whole table. The broker's only audit trail without a ledger; with one, where
 * events wait while the ledger cannot take them (FallbackAuditSink).
 */
export class InterimLocalAuditSink implements AuditSink {
  constructor(private readonly repository: AuditRepository) {}

  async append(event: AuditEvent): Promise<AuditRecord> {
    const at = Date.parse(event.time);
    try {
      return await this.repository.appendAudit(event.tenant, Number.isFinite(at) ? at : 0, canonicalize(event));
    } catch (e) {
      throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', 'the interim audit table is unavailable', { cause: e, detail: { applied: false } });
    }
  }

  /** Rows after `afterIndex` (every tenant), in order. */
  read(afterIndex: number, limit: number): Promise<StoredAuditEvent[]> {
    return this.repository.readAudit(null, afterIndex, limit);
  }
}

export interface FallbackAuditSinkOptions {
  /** Told of each failure of the primary (the event is then kept in the interim table). */
  onFallback?: (error: unknown) => void;
  /** Told how many kept events reached the primary in one pass. */
  onForwarded?: (count: number) => void;
  /**
   * After the primary fails, how long appends go straight to the interim table without trying it
   * (default 30 s), so a ledger that hangs costs one caller its deadline, not every caller; also
   * how often kept events are offered to the primary again.
   */
  retryAfterMs?: number;
  /** Monotonic milliseconds (tests). */
  now?: () => number;
}

const READ_PAGE = 500;

/**
 * Sends events to `primary` (the ledger) and, when it fails, keeps them in the interim table
 * (`detail.auditFallback: true`); the answer then says so (`interim: true`), so its index is not
 * taken for a ledger index. Fails only when both fail.
 *
 * Kept events are forwarded to the primary once it takes entries again: in the order they were
 * kept, each with `detail.interimIndex` naming its interim row, and each forwarding recorded in the
 * interim table by an `audit.forwarded` row (`detail.interimIndex`, `detail.ledgerIndex`). This runs
 * after an append the primary took, every `retryAfterMs` while events wait, and at start (events
 * kept before a restart). Replicas that share the interim table may each forward an event before
 * seeing the other's record: the ledger may then hold it twice, with the same `interimIndex`.
 */
export class FallbackAuditSink implements AuditSink {
  private readonly retryAfterMs: number;
  private readonly now: () => number;
  /** Until then appends go straight to the interim table. */
  private downUntil = 0;
  /** Interim rows kept and not yet forwarded; undefined until the table was first read. */
  private readonly waiting = new Set<number>();
  private readTo = -1;
  private scanned = false;
  private pass: Promise<void> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;

  constructor(
    private readonly primary: AuditSink,
    private readonly fallback: InterimLocalAuditSink,
    private readonly options: FallbackAuditSinkOptions = {},
  ) {
    this.retryAfterMs = options.retryAfterMs ?? 30_000;
    this.now = options.now ?? (() => performance.now());
    this.later(0);
  }

  async append(event: AuditEvent): Promise<AuditRecord> {
    if (this.now() >= this.downUntil) {
      try {
        const r = await this.primary.append(event);
        if (this.waiting.size > 0) void this.forward();
        return r;
      } catch (e) {
        this.downUntil = this.now() + this.retryAfterMs;
        this.options.onFallback?.(e);
      }
    }
    const kept = await this.fallback.append({ ...event, detail: { ...event.detail, auditFallback: true } });
    this.waiting.add(kept.index);
    this.later(this.retryAfterMs);
    return { index: kept.index, interim: true };
  }

  /** Events kept in the interim table that have not reached the primary yet (as last read). */
  get pending(): number {
    return this.waiting.size;
  }

  /** Offers the kept events to the primary now; resolves when this pass ends (primary failing included). */
  forward(): Promise<void> {
    this.pass ??= this.forwardPass().finally(() => {
      this.pass = undefined;
      if (this.waiting.size > 0) this.later(this.retryAfterMs);
    });
    return this.pass;
  }

  /** Stops offering kept events (they stay in the interim table for the next start). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.pass?.catch(() => undefined);
  }

  private later(ms: number): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.forward();
    }, ms);
    this.timer.unref?.();
  }

  /** Reads the interim rows not read yet: kept events join `waiting`, forwarding records leave it. */
  private async readNew(): Promise<void> {
    for (;;) {
      const rows = await this.fallback.read(this.readTo, READ_PAGE);
      for (const row of rows) {
        this.readTo = row.index;
        const e = JSON.parse(row.event) as AuditEvent;
        if (e.action === 'audit.forwarded') {
          if (typeof e.detail?.interimIndex === 'number') this.waiting.delete(e.detail.interimIndex);
        } else if (e.detail?.auditFallback === true && e.detail.interimIndex === undefined) this.waiting.add(row.index);
      }
      if (rows.length < READ_PAGE) return;
    }
  }

  private async forwardPass(): Promise<void> {
    let forwarded = 0;
    try {
      if (this.closed) return;
      // The whole table once (events kept before a restart), then only what was added since.
      if (!this.scanned || this.waiting.size > 0) await this.readNew();
      this.scanned = true;
      while (this.waiting.size > 0 && !this.closed && this.now() >= this.downUntil) {
        let index = Infinity;
        for (const i of this.waiting) if (i < index) index = i;
        const [row] = await this.fallback.read(index - 1, 1);
        if (!row || row.index !== index) {
          this.waiting.delete(index);
          continue;
        }
        const kept = JSON.parse(row.event) as AuditEvent;
        let into: AuditRecord;
        try {
          into = await this.primary.append({ ...kept, detail: { ...kept.detail, interimIndex: index } });
        } catch (e) {
          this.downUntil = this.now() + this.retryAfterMs;
          this.options.onFallback?.(e);
          return;
        }
        this.waiting.delete(index);
        forwarded++;
        await this.fallback.append({
          v: 1,
          action: 'audit.forwarded',
          time: new Date().toISOString(),
          actor: { tenant: kept.tenant, subject: 'system', role: 'system' },
          tenant: kept.tenant,
          verdict: 'allow',
          detail: { interimIndex: index, ledgerIndex: into.index },
        });
      }
    } catch {
      // The interim table failed: the next pass reads it again.
    } finally {
      if (forwarded > 0) this.options.onForwarded?.(forwarded);
    }
  }
}
