import type { AuditEvent } from './types.js';

/**
 * Length bounds of audited strings. Every audit event is kept for good (the ledger, or the
 * interim table that refuses UPDATE and DELETE), and some of what it names comes from callers (a
 * key name in a URL, a `?tenant=`, a path): without a bound, each refusal could add as much as a
 * URL holds. The bounds are the ledger's (packages/ledger events: identifiers 128, facts 256,
 * codes 64), so a bounded event is never refused there for its lengths.
 */
export const AUDIT_BOUNDS = { id: 128, name: 128, code: 64, fact: 256 } as const;

/** `s` when it has at most `max` characters, else its first `max - 1` and `…` (so a clipped value is never taken for a whole one). */
export function clipAudited(s: string, max: number): string {
  if (s.length <= max) return s;
  // Never split a surrogate pair.
  const end = max - 1 - (isHighSurrogate(s.charCodeAt(max - 2)) ? 1 : 0);
  return `${s.slice(0, end)}…`;
}

/**
 * The event with every string within AUDIT_BOUNDS: actor, tenant and key identifiers, the key
 * name, the reason code and each fact. Everything the broker appends goes through here.
 */
export function boundAuditEvent(event: AuditEvent): AuditEvent {
  const { id, name, code, fact } = AUDIT_BOUNDS;
  return {
    ...event,
    actor: { ...event.actor, tenant: clipAudited(event.actor.tenant, id), subject: clipAudited(event.actor.subject, id) },
    tenant: clipAudited(event.tenant, id),
    ...(event.key ? { key: { ...event.key, id: clipAudited(event.key.id, id), name: clipAudited(event.key.name, name), type: clipAudited(event.key.type, id) } } : {}),
    ...(event.reason !== undefined ? { reason: clipAudited(event.reason, code) } : {}),
    ...(event.detail ? { detail: Object.fromEntries(Object.entries(event.detail).map(([k, v]) => [k, typeof v === 'string' ? clipAudited(v, fact) : v])) } : {}),
  };
}

function isHighSurrogate(c: number): boolean {
  return c >= 0xd800 && c <= 0xdbff;
}
