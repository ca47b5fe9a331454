import { randomUUID } from 'node:crypto';
import { canonicalize, CustodyError, toCustodyError, toHex } from '@custody/core';
import { chainHash } from '../metadata/rows.js';
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

  /** Takes or renews the table's one forwarding lease for `holder`; true when it holds it. */
  lease(holder: string, ttlMs: number): Promise<boolean> {
    return this.repository.leaseAuditForwarding(holder, ttlMs);
  }

  /** Ends `holder`'s forwarding lease. */
  release(holder: string): Promise<void> {
    return this.repository.releaseAuditForwarding(holder);
  }
}

export interface FallbackAuditSinkOptions {
  /** Told of each failure of the primary (the event is then kept in the interim table). */
  onFallback?: (error: unknown) => void;
  /** Told how many kept events reached the primary in one pass. */
  onForwarded?: (count: number) => void;
  /** Told of a kept event the primary refuses as such (not an outage): it is recorded as `audit.forward_refused` and passed over. */
  onRefused?: (interimIndex: number, error: unknown) => void;
  /** Told once when the interim table's hash chain does not verify: nothing more is forwarded from it. */
  onTampered?: (atIndex: number) => void;
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
/** How long the forwarding lease lasts unless renewed; a pass renews it every third of that. */
const LEASE_MS = 60_000;
/** After finding the lease held by another replica, how long before this one asks again (at most). */
const LEASE_BUSY_MS = 1000;

/**
 * Sends events to `primary` (the ledger) and, when it fails, keeps them in the interim table
 * (`detail.auditFallback: true`); the answer then says so (`interim: true`), so its index is not
 * taken for a ledger index. Fails only when both fail.
 *
 * Kept events are forwarded to the primary once it takes entries again: in the order they were
 * kept, each with `detail.interimIndex` naming its interim row, and each forwarding recorded in the
 * interim table by an `audit.forwarded` row (`detail.interimIndex`, `detail.ledgerIndex`). This runs
 * after an append the primary took while events wait, at start (events kept before a restart), and
 * every `retryAfterMs` (events other replicas kept: one that stopped leaves them to the others).
 * An event the primary refuses as such (its content, not an outage) is recorded as
 * `audit.forward_refused` with the code and passed over. The table's hash chain is
 * checked as it is read; a row that breaks it stops all forwarding (`onTampered`).
 *
 * Replicas share the interim table, and each reads every kept event, so only the holder of the
 * table's forwarding lease (`leaseAuditForwarding`, 60 s on the store's clock, renewed as a pass
 * goes) forwards; it reads the table again once it holds the lease, so it sees what the previous
 * holder forwarded. A record it could not write is written again at every pass (the ledger need
 * not be up for that) and once more at close, before anything else, and until then the lease is
 * kept, renewed at each pass. An event is still sent twice when a holder stalls for longer than
 * the lease while sending it, when the table stays out longer than the lease (60 s) or the holder
 * stops (a crash, or a close the table fails) with records unwritten: the ledger then holds the
 * event twice, with the same `interimIndex`.
 */
export class FallbackAuditSink implements AuditSink {
  private readonly retryAfterMs: number;
  private readonly now: () => number;
  /** Until then appends go straight to the interim table. */
  private downUntil = 0;
  /** Interim rows kept and not yet forwarded (index to event), as far as the table was read. */
  private readonly waiting = new Map<number, AuditEvent>();
  private readTo = -1;
  /** The hash of row `readTo` (the chain is checked as rows are read). */
  private lastHash: Uint8Array | null = null;
  /** The table's chain did not verify: nothing is forwarded from it. */
  private tampered = false;
  private pass: Promise<void> | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private closed = false;
  /** Names this sink as the forwarding lease's holder. */
  private readonly holder = randomUUID();
  /** Another replica held the lease: not asked again before then. */
  private leaseBusyUntil = -Infinity;
  /** Records of forwarded events the table did not take yet (interim index to record), oldest first. */
  private readonly unrecorded = new Map<number, AuditEvent>();

  constructor(
    private readonly primary: AuditSink,
    private readonly fallback: InterimLocalAuditSink,
    private readonly options: FallbackAuditSinkOptions = {},
  ) {
    this.retryAfterMs = options.retryAfterMs ?? 30_000;
    if (!Number.isFinite(this.retryAfterMs) || this.retryAfterMs < 10) throw new CustodyError('ERR_USAGE', 'the audit retry interval must be at least 10 ms');
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
        // An outage stops tries for a while; an event refused as such does not.
        if (!refusedAsSuch(e)) this.downUntil = this.now() + this.retryAfterMs;
        this.tell(() => this.options.onFallback?.(e));
      }
    }
    const keep: AuditEvent = { ...event, detail: { ...event.detail, auditFallback: true } };
    const kept = await this.fallback.append(keep);
    this.waiting.set(kept.index, keep);
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
      // Always: another replica's kept events, which it may not live to forward, appear in the
      // table, and so do events kept before a restart when it could not be read yet.
      this.later(this.retryAfterMs);
    });
    return this.pass;
  }

  /** Stops offering kept events (they stay in the interim table for the next start). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.pass?.catch(() => undefined);
    // Records not written yet get one more try, so that no other replica sends their events again.
    if (this.unrecorded.size > 0) {
      try {
        for (const [index, record] of this.unrecorded) await this.record(index, record);
        await this.fallback.release(this.holder);
      } catch {
        // The table is still failing: the lease runs out, and another replica may send them again.
      }
    }
  }

  private later(ms: number): void {
    if (this.closed || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.forward();
    }, ms);
    this.timer.unref?.();
  }

  /**
   * Reads the interim rows not read yet, checking their hash chain: kept events join `waiting`,
   * forwarding records (and refusals) leave it. A row that breaks the chain stops all forwarding.
   */
  private async readNew(): Promise<void> {
    for (;;) {
      const rows = await this.fallback.read(this.readTo, READ_PAGE);
      for (const row of rows) {
        const hash = chainHash(this.lastHash, row.event);
        if (row.index !== this.readTo + 1 || toHex(hash) !== row.hash) {
          this.tampered = true;
          this.waiting.clear();
          this.tell(() => this.options.onTampered?.(row.index));
          return;
        }
        this.readTo = row.index;
        this.lastHash = hash;
        const e = JSON.parse(row.event) as AuditEvent;
        if (e.action === 'audit.forwarded' || e.action === 'audit.forward_refused') {
          if (typeof e.detail?.interimIndex === 'number') this.waiting.delete(e.detail.interimIndex);
        } else if (e.detail?.auditFallback === true && e.detail.interimIndex === undefined) this.waiting.set(row.index, e);
      }
      if (rows.length < READ_PAGE) return;
    }
  }

  /** Runs an observer; one that throws changes nothing here. */
  private tell(f: () => void): void {
    try {
      f();
    } catch {
      // The observer's own failure.
    }
  }

  private async forwardPass(): Promise<void> {
    let forwarded = 0;
    let leased = false;
    try {
      if (this.closed || this.tampered) return;
      // The whole table once (events kept before a restart), then only what was added since.
      await this.readNew();
      const mayForward = this.waiting.size > 0 && this.now() >= this.downUntil && this.now() >= this.leaseBusyUntil;
      if (this.unrecorded.size === 0 && !mayForward) return;
      leased = await this.fallback.lease(this.holder, LEASE_MS);
      // Records of events this sink sent need only the table, not the ledger, and go in even when
      // the lease was lost meanwhile: a replica that reads one in time does not send the event again.
      for (const [index, record] of this.unrecorded) await this.record(index, record);
      if (!leased) {
        this.leaseBusyUntil = this.now() + Math.min(this.retryAfterMs, LEASE_BUSY_MS);
        return;
      }
      if (!mayForward) return;
      let renewedAt = this.now();
      // What the lease's previous holder forwarded before it let go.
      await this.readNew();
      while (this.waiting.size > 0 && !this.closed && !this.tampered && this.now() >= this.downUntil) {
        if (this.now() - renewedAt >= LEASE_MS / 3) {
          if (!(await this.fallback.lease(this.holder, LEASE_MS))) {
            leased = false;
            return;
          }
          renewedAt = this.now();
        }
        let index = Infinity;
        for (const i of this.waiting.keys()) if (i < index) index = i;
        const kept = this.waiting.get(index)!;
        let into: AuditRecord;
        try {
          into = await this.primary.append({ ...kept, detail: { ...kept.detail, interimIndex: index } });
        } catch (e) {
          if (!refusedAsSuch(e)) {
            this.downUntil = this.now() + this.retryAfterMs;
            this.tell(() => this.options.onFallback?.(e));
            return;
          }
          // This event, not the ledger: recorded and passed over, so it blocks nothing behind it.
          this.waiting.delete(index);
          this.tell(() => this.options.onRefused?.(index, e));
          await this.record(index, marker(kept, 'audit.forward_refused', { interimIndex: index, code: toCustodyError(e).code }));
          continue;
        }
        this.waiting.delete(index);
        forwarded++;
        await this.record(index, marker(kept, 'audit.forwarded', { interimIndex: index, ledgerIndex: into.index }));
      }
    } catch {
      // The interim table failed: the next pass reads it again.
    } finally {
      // A record not written yet keeps the lease, so that no other replica sends its event again.
      if (leased && this.unrecorded.size === 0) await this.fallback.release(this.holder).catch(() => undefined);
      if (forwarded > 0) this.tell(() => this.options.onForwarded?.(forwarded));
    }
  }

  /** Writes what became of kept event `index`; kept in memory, to be written again, until the table takes it. */
  private async record(index: number, record: AuditEvent): Promise<void> {
    this.unrecorded.set(index, record);
    await this.fallback.append(record);
    this.unrecorded.delete(index);
  }
}

/** A refusal of the event itself (its content), which trying again would not change; anything else is an outage. */
function refusedAsSuch(e: unknown): boolean {
  const code = toCustodyError(e).code;
  return code.startsWith('ERR_TLOG_EVENT') || code === 'ERR_INPUT_TOO_LARGE' || code === 'ERR_INPUT_MALFORMED';
}

/** The interim table's record of what became of a kept event. */
function marker(kept: AuditEvent, action: 'audit.forwarded' | 'audit.forward_refused', detail: Record<string, string | number>): AuditEvent {
  return { v: 1, action, time: new Date().toISOString(), actor: { tenant: kept.tenant, subject: 'system', role: 'system' }, tenant: kept.tenant, verdict: action === 'audit.forwarded' ? 'allow' : 'error', detail };
}
