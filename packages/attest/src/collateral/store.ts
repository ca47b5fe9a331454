import type { Bytes } from '@custody/core';
import { readCrl, readSignedResponse } from '../tdx/collateral.js';
import type { CollateralRequest } from './urls.js';

/** A collateral response as fetched: its bytes and the headers it needs (issuer chains), still unverified. */
export interface StoredCollateral {
  url: string;
  body: Bytes;
  /** Kept response headers by lowercase name. */
  headers: Record<string, string>;
  /**
   * When it was fetched: the verification time of the run that fetched it, not the wall clock
   * (packages read no clock). A run verifying at a future time (`--at`) thus keeps copies dated
   * then, which runs at earlier times do not use (a copy dated after `now` is a miss), and whose
   * maximum age counts from that future time; such a copy replaces the entry for its URL.
   */
  fetchedAt: Date;
  /**
   * The copy may be used until this time: the collateral's own nextUpdate, capped at `fetchedAt`
   * plus the maximum age. A reader recomputes the bound from `body` and `fetchedAt` (see
   * `collateralExpiry`) and never trusts this field beyond it.
   */
  expiresAt: Date;
}

/**
 * Where fetched collateral is kept between verifications, keyed by URL. `get` returns a copy only
 * while `now` is before its `expiresAt`, and nothing for a missing, expired or damaged entry (the
 * caller then fetches again). The bytes stay untrusted: the verifier checks them on every use, and
 * `delete` drops a copy the verifier refused.
 */
export interface CollateralStore {
  get(url: string, now: Date): Promise<StoredCollateral | undefined>;
  put(entry: StoredCollateral): Promise<void>;
  delete(url: string): Promise<void>;
}

const copy = (e: StoredCollateral): StoredCollateral => ({ ...e, body: e.body.slice(), headers: { ...e.headers }, fetchedAt: new Date(e.fetchedAt), expiresAt: new Date(e.expiresAt) });

/** An in-memory store (browsers, tests, one process); the Node CLI has a disk store. */
export class MemoryCollateralStore implements CollateralStore {
  private readonly entries = new Map<string, StoredCollateral>();

  constructor(readonly maxEntries = 256) {}

  get(url: string, now: Date): Promise<StoredCollateral | undefined> {
    const e = this.entries.get(url);
    if (e && e.expiresAt.getTime() <= now.getTime()) this.entries.delete(url);
    return Promise.resolve(e && e.expiresAt.getTime() > now.getTime() ? copy(e) : undefined);
  }

  put(entry: StoredCollateral): Promise<void> {
    this.entries.delete(entry.url);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(entry.url, copy(entry));
    return Promise.resolve();
  }

  delete(url: string): Promise<void> {
    this.entries.delete(url);
    return Promise.resolve();
  }

  get size(): number {
    return this.entries.size;
  }
}

/** How long the AMD VCEK and certificate chains are kept at most: they do not change for a chip and TCB. */
export const DEFAULT_FIXED_TTL_MS = 7 * 24 * 60 * 60 * 1000;

/**
 * How long any fetched item is reused at most (24 h): CRLs, TCB Info and QE Identity often name a
 * nextUpdate weeks or months away (Intel's root CA CRL about a year), and reusing them that long
 * would hide a revocation or a TCB recovery published meanwhile.
 */
export const DEFAULT_MAX_AGE_MS = 24 * 60 * 60 * 1000;

export interface CollateralLifetime {
  /** Longest reuse of any item after it was fetched (default DEFAULT_MAX_AGE_MS). */
  maxAgeMs?: number;
  /** Longest reuse of a certificate (VCEK, ASK/ARK; default DEFAULT_FIXED_TTL_MS), within maxAgeMs. */
  fixedTtlMs?: number;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/**
 * Until when a response fetched at `fetchedAt` may be reused: `fetchedAt + maxAgeMs`, and never past
 * a CRL's, a TCB Info's or a QE Identity's own nextUpdate, nor (certificates) `fetchedAt +
 * fixedTtlMs`. Undefined when the bytes do not say (they are then passed to the verifier, which
 * rejects them with its own code, and never kept) or when that time is not after `fetchedAt`. A
 * reader of a kept copy calls it again on the kept body: a stored expiry is never trusted beyond it.
 */
export function collateralExpiry(request: CollateralRequest, body: Uint8Array, fetchedAt: Date, lifetime: CollateralLifetime = {}): Date | undefined {
  const own = ownExpiry(request, body, fetchedAt, lifetime.fixedTtlMs ?? DEFAULT_FIXED_TTL_MS);
  if (own === undefined) return undefined;
  const at = Math.min(own.getTime(), fetchedAt.getTime() + (lifetime.maxAgeMs ?? DEFAULT_MAX_AGE_MS));
  return at > fetchedAt.getTime() ? new Date(at) : undefined;
}

/** The life the bytes themselves give (nextUpdate; certificates `fetchedAt + fixedTtlMs`), before any maximum age; undefined when they give none. */
export function ownExpiry(request: CollateralRequest, body: Uint8Array, fetchedAt: Date, fixedTtlMs: number): Date | undefined {
  let at: number | undefined;
  try {
    switch (request.expiry) {
      case 'fixed':
        at = fetchedAt.getTime() + fixedTtlMs;
        break;
      case 'crl':
        at = readCrl(body, 'CRL').nextUpdate?.getTime();
        break;
      case 'tcbInfo':
      case 'qeIdentity': {
        const signed = readSignedResponse(body, request.expiry === 'tcbInfo' ? 'tcbInfo' : 'enclaveIdentity', request.kind);
        const next = (JSON.parse(signed.body) as { nextUpdate?: unknown }).nextUpdate;
        if (typeof next === 'string' && ISO_UTC.test(next)) at = new Date(next).getTime();
        break;
      }
    }
  } catch {
    return undefined;
  }
  return at === undefined || Number.isNaN(at) ? undefined : new Date(at);
}
