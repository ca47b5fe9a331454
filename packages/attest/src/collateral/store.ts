import type { Bytes } from '@custody/core';
import { readCrl, readSignedResponse } from '../tdx/collateral.js';
import type { CollateralRequest } from './urls.js';

/** A collateral response as fetched: its bytes and the headers it needs (issuer chains), still unverified. */
export interface StoredCollateral {
  url: string;
  body: Bytes;
  /** Kept response headers by lowercase name. */
  headers: Record<string, string>;
  /** The copy may be used until this time (the collateral's own nextUpdate, or a fixed TTL). */
  expiresAt: Date;
}

/**
 * Where fetched collateral is kept between verifications, keyed by URL. `get` returns a copy only
 * while `now` is before its `expiresAt`, and nothing for a missing, expired or damaged entry (the
 * caller then fetches again). The bytes stay untrusted: the verifier checks them on every use.
 */
export interface CollateralStore {
  get(url: string, now: Date): Promise<StoredCollateral | undefined>;
  put(entry: StoredCollateral): Promise<void>;
}

/** An in-memory store (browsers, tests, one process); the Node CLI has a disk store. */
export class MemoryCollateralStore implements CollateralStore {
  private readonly entries = new Map<string, StoredCollateral>();

  constructor(readonly maxEntries = 256) {}

  get(url: string, now: Date): Promise<StoredCollateral | undefined> {
    const e = this.entries.get(url);
    if (e && e.expiresAt.getTime() <= now.getTime()) this.entries.delete(url);
    return Promise.resolve(e && e.expiresAt.getTime() > now.getTime() ? { ...e, body: e.body.slice(), headers: { ...e.headers } } : undefined);
  }

  put(entry: StoredCollateral): Promise<void> {
    this.entries.delete(entry.url);
    if (this.entries.size >= this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
    this.entries.set(entry.url, { ...entry, body: entry.body.slice(), headers: { ...entry.headers } });
    return Promise.resolve();
  }

  get size(): number {
    return this.entries.size;
  }
}

/** How long the AMD VCEK and certificate chains are kept: they do not change for a chip and TCB. */
export const DEFAULT_FIXED_TTL_MS = 7 * 24 * 60 * 60 * 1000;

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/**
 * Until when a fetched response may be reused: a CRL's nextUpdate, a TCB Info's or QE Identity's
 * nextUpdate, or `now + fixedTtlMs` for certificates. Undefined when the bytes do not say (they are
 * then passed to the verifier, which rejects them with its own code, and never kept) or when that
 * time has already passed at `now`.
 */
export function collateralExpiry(request: CollateralRequest, body: Uint8Array, now: Date, fixedTtlMs = DEFAULT_FIXED_TTL_MS): Date | undefined {
  let at: Date | undefined;
  try {
    switch (request.expiry) {
      case 'fixed':
        at = new Date(now.getTime() + fixedTtlMs);
        break;
      case 'crl':
        at = readCrl(body, 'CRL').nextUpdate;
        break;
      case 'tcbInfo':
      case 'qeIdentity': {
        const signed = readSignedResponse(body, request.expiry === 'tcbInfo' ? 'tcbInfo' : 'enclaveIdentity', request.kind);
        const next = (JSON.parse(signed.body) as { nextUpdate?: unknown }).nextUpdate;
        if (typeof next === 'string' && ISO_UTC.test(next)) at = new Date(next);
        break;
      }
    }
  } catch {
    return undefined;
  }
  if (!at || Number.isNaN(at.getTime()) || at.getTime() <= now.getTime()) return undefined;
  return at;
}

