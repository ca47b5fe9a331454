import { canonicalize, CustodyError } from '@custody/core';
import type { AuditRepository } from '../metadata/types.js';
import type { AuditEvent, AuditSink } from './types.js';

/**
 * INTERIM audit sink, until the transparency ledger lands: appends each event as canonical
 * JSON to the metadata store's `custody_audit_interim` table, which refuses UPDATE and DELETE
 * (triggers) and links rows in a SHA-256 hash chain. It is local and unwitnessed: it detects
 * casual edits, not an operator who rewrites the whole table. Replace it with the ledger's sink.
 */
export class InterimLocalAuditSink implements AuditSink {
  constructor(private readonly repository: AuditRepository) {}

  async append(event: AuditEvent): Promise<{ index: number }> {
    const at = Date.parse(event.time);
    try {
      return await this.repository.appendAudit(event.tenant, Number.isFinite(at) ? at : 0, canonicalize(event));
    } catch (e) {
      throw new CustodyError('ERR_STORE_AUDIT_UNAVAILABLE', 'the interim audit table is unavailable', { cause: e, detail: { applied: false } });
    }
  }
}

/**
 * Sends events to `primary` (the ledger) and, when it fails, to `fallback` (the interim local
 * table) so they can be replayed later. Fails only when both fail.
 */
export class FallbackAuditSink implements AuditSink {
  constructor(
    private readonly primary: AuditSink,
    private readonly fallback: AuditSink,
    private readonly onFallback: (error: unknown) => void = () => undefined,
  ) {}

  async append(event: AuditEvent): Promise<{ index: number }> {
    try {
      return await this.primary.append(event);
    } catch (e) {
      this.onFallback(e);
      return this.fallback.append({ ...event, detail: { ...event.detail, auditFallback: true } });
    }
  }
}
