import { CustodyError, X509Certificate, equalBytes, readCertificates, type Bytes } from '@custody/core';
import { amdCaName, amdKeyKind, commonName } from '../sev-snp/amd-certs.js';
import { detectSevSnpEvidence, readSevSnpEvidence } from '../sev-snp/evidence.js';
import type { SevSnpProduct } from '../sev-snp/report.js';
import { parseCollateralBundle, readCrl, readSignedResponse } from '../tdx/collateral.js';
import { looksLikeTdxQuote } from '../tdx/quote.js';
import type { Platform, StepName, VerificationResult } from '../types.js';
import { fetchBounded, type FetchLike } from './http.js';
import { decodeIssuerChainHeader } from './issuer-chain.js';
import { DEFAULT_FIXED_TTL_MS, DEFAULT_MAX_AGE_MS, collateralExpiry, ownExpiry, type CollateralLifetime, type CollateralStore, type StoredCollateral } from './store.js';
import { AMD_KDS_URL, INTEL_PCS_URL, checkBaseUrl, planSevSnpCollateral, planTdxCollateral, type CollateralItemKind, type CollateralRequest, type SevSnpCollateralPlan, type TdxCollateralPlan } from './urls.js';

export interface CollateralSourceOptions {
  /** Defaults to `globalThis.fetch`. */
  fetch?: FetchLike;
  /** AMD KDS base URL (default https://kdsintf.amd.com). */
  kdsUrl?: string;
  /** Intel PCS v4 or PCCS base URL (default https://api.trustedservices.intel.com). */
  pcsUrl?: string;
  /** Where the Intel SGX Root CA CRL is fetched (default: Intel's distribution point, or the PCCS `rootcacrl` when `pcsUrl` is not Intel's PCS). */
  rootCaCrlUrl?: string;
  /** Deadline for each request (default 10 s). */
  timeoutMs?: number;
  /** Largest response body accepted (default 1 MiB; real ones are 1-100 KB). */
  maxResponseBytes?: number;
  /** Where fetched responses are kept until they expire; none by default. */
  store?: CollateralStore;
  /** Longest reuse of any kept item after it was fetched (default 24 h); never past the item's own nextUpdate. */
  maxAgeMs?: number;
  /** Longest reuse of a VCEK and certificate chains (default 7 days), within maxAgeMs. */
  fixedTtlMs?: number;
}

export interface FetchCollateralOptions {
  /**
   * The verification time: cached copies must be current at it. It is also the time a fetched copy
   * is recorded as fetched (`StoredCollateral.fetchedAt`), from which its maximum age is counted:
   * a run at a past or future time keeps copies dated then (see `StoredCollateral.fetchedAt`).
   */
  now: Date;
  /** Evidence format; detected when omitted. */
  platform?: Platform;
  /** SEV-SNP product, for reports that do not name it (v2). */
  product?: SevSnpProduct;
  /** Certificates the caller already has: nothing they cover is fetched. */
  certs?: readonly Uint8Array[];
  /** Collateral the caller already has, by verifier name: nothing it covers is fetched. */
  collateral?: Readonly<Record<string, Uint8Array>>;
}

export interface FetchedItem {
  kind: CollateralItemKind;
  url: string;
  from: 'network' | 'cache';
  /** When a kept copy expires (absent when it is not kept). */
  expiresAt?: string;
  /** Part of the item was given by hand (an issuer chain, an ARK): that part is not taken from the fetch, and nothing of the item is kept. */
  partlyGiven?: true;
}

/** Fetched collateral in exactly the form `VerifyInput` takes; all of it unverified. */
export interface FetchedCollateral {
  platform: 'sev-snp' | 'tdx';
  certs: Bytes[];
  collateral: Record<string, Bytes>;
  items: FetchedItem[];
  /** Keeps what came from the network in the store. Call it once the verifier accepted the collateral (see `collateralAccepted`). */
  commit(): Promise<void>;
  /**
   * Call it when the verifier refused the collateral (see `collateralRefused`). Fetches the items
   * that were served from the store again, from the network, and returns the collateral with those
   * fresh copies when at least one of them differs from its kept copy: verify again with it, and
   * `commit()` it if accepted, which replaces the kept copies. Undefined when nothing came from the
   * store, when every fresh copy equals its kept copy (the same bytes give the same refusal: it is
   * the evidence's, not the cache's) or is not newer than it (a CRL, TCB Info or QE Identity is used
   * instead of its kept copy only when strictly newer by its own dates and numbers, so a stale
   * mirror cannot roll the cache back; certificates carry no such order and may replace kept ones
   * whenever they differ), or when the service does not answer usably. The store is
   * never emptied by a refusal: evidence anyone can send (a flipped byte in a quote's own
   * certificate) cannot make a warm cache cold, and kept copies are only ever replaced by fresh
   * ones the verifier accepted.
   */
  refresh(): Promise<FetchedCollateral | undefined>;
}

/** The verifier's collateral name for each kind (VCEK and chains go to `certs`). */
const COLLATERAL_NAME: Record<CollateralItemKind, string | undefined> = { vcek: undefined, certChain: undefined, crl: 'crl', tcbInfo: 'tcbInfo', qeIdentity: 'qeIdentity', pckCrl: 'pckCrl', rootCaCrl: 'rootCaCrl' };
const CHAIN_NAME: Partial<Record<CollateralItemKind, string>> = { tcbInfo: 'tcbInfoIssuerChain', qeIdentity: 'qeIdentityIssuerChain', pckCrl: 'pckCrlIssuerChain' };
const BUNDLE_FIELDS = [
  ['tcbInfo', 'tcbInfo'],
  ['qeIdentity', 'qeIdentity'],
  ['pckCrl', 'pckCrl'],
  ['rootCaCrl', 'rootCaCrl'],
] as const;

interface Got {
  request: CollateralRequest;
  body: Bytes;
  chain?: Bytes;
  from: 'network' | 'cache';
  keep?: StoredCollateral;
  expiresAt?: Date;
}

/** What the caller already has: whole items (not fetched) and parts of items (those items are fetched, not kept). */
interface Supplied {
  have: Set<CollateralItemKind>;
  partly: Set<CollateralItemKind>;
}

const NOTHING_FETCHED = (platform: 'sev-snp' | 'tdx'): FetchedCollateral => ({ platform, certs: [], collateral: {}, items: [], commit: () => Promise.resolve(), refresh: () => Promise.resolve(undefined) });

/**
 * Fetches the vendor collateral a piece of evidence needs (SEV-SNP: VCEK, ASK/ARK, CRL from AMD KDS;
 * TDX: TCB Info, QE Identity, PCK and root CA CRLs with their issuer chains from Intel PCS or a
 * PCCS), from a store while a kept copy is current. It decides nothing: the output goes to the
 * verifier, which checks it against the pinned vendor roots exactly as hand-supplied files.
 */
export class CollateralSource {
  private readonly fetchFn: FetchLike;
  private readonly timeoutMs: number;
  private readonly maxBytes: number;
  private readonly lifetime: CollateralLifetime;

  constructor(private readonly options: CollateralSourceOptions = {}) {
    this.fetchFn = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.maxBytes = options.maxResponseBytes ?? 1024 * 1024;
    for (const [name, v] of [['maxAgeMs', options.maxAgeMs], ['fixedTtlMs', options.fixedTtlMs]] as const) {
      if (v !== undefined && !(Number.isSafeInteger(v) && v >= 0)) throw new CustodyError('ERR_USAGE', `${name} must be a whole number of milliseconds, 0 or more`);
    }
    this.lifetime = { ...(options.maxAgeMs !== undefined && { maxAgeMs: options.maxAgeMs }), ...(options.fixedTtlMs !== undefined && { fixedTtlMs: options.fixedTtlMs }) };
    checkBaseUrl(options.kdsUrl ?? AMD_KDS_URL, 'the KDS URL');
    checkBaseUrl(options.pcsUrl ?? INTEL_PCS_URL, 'the PCS URL');
  }

  /** The requests a piece of evidence maps to (no network). */
  plan(evidence: Uint8Array, options: { platform?: Platform; product?: SevSnpProduct } = {}): SevSnpCollateralPlan | TdxCollateralPlan {
    const platform = options.platform ?? detectPlatform(evidence);
    if (platform === 'sev-snp') return planSevSnpCollateral(evidence, { ...(this.options.kdsUrl !== undefined && { kdsUrl: this.options.kdsUrl }), ...(options.product && { product: options.product }) });
    if (platform === 'tdx') {
      return planTdxCollateral(evidence, { ...(this.options.pcsUrl !== undefined && { pcsUrl: this.options.pcsUrl }), ...(this.options.rootCaCrlUrl !== undefined && { rootCaCrlUrl: this.options.rootCaCrlUrl }) });
    }
    throw new CustodyError('ERR_INPUT_UNSUPPORTED', `collateral is fetched for SEV-SNP and TDX evidence, not ${platform}`, { detail: { platform } });
  }

  /** Fetches (or reads from the store) what the evidence needs and the caller does not already have. */
  async fetchFor(evidence: Uint8Array, options: FetchCollateralOptions): Promise<FetchedCollateral> {
    let plan: SevSnpCollateralPlan | TdxCollateralPlan;
    try {
      plan = this.plan(evidence, options);
    } catch (e) {
      // A VLEK the caller supplied needs nothing from KDS; without one there is nothing to verify with.
      if (e instanceof CustodyError && e.code === 'ERR_SNP_VLEK_NOT_FETCHABLE' && suppliesVlek(evidence, options)) {
        return NOTHING_FETCHED('sev-snp');
      }
      throw e;
    }
    const supplied = plan.platform === 'sev-snp' ? suppliedSnp(evidence, options) : suppliedTdx(options);
    const todo = plan.requests.filter((r) => !supplied.have.has(r.kind));
    const got = await Promise.all(todo.map((r) => this.get(r, options.now, supplied.partly.has(r.kind))));
    return this.assemble(plan.platform, supplied, got, options.now);
  }

  /** The verifier's input from the items got, with the store operations that settle them. */
  private assemble(platform: 'sev-snp' | 'tdx', supplied: Supplied, got: Got[], now: Date): FetchedCollateral {
    const certs: Bytes[] = [];
    const collateral: Record<string, Bytes> = {};
    for (const g of got) {
      const name = COLLATERAL_NAME[g.request.kind];
      if (name) collateral[name] = g.body;
      else certs.push(g.body);
      const chainName = CHAIN_NAME[g.request.kind];
      // A chain given by hand (named, or in a bundle, which named collateral would override) is used instead.
      if (chainName && g.chain && !supplied.partly.has(g.request.kind)) collateral[chainName] = g.chain;
    }
    const keep = got.flatMap((g) => (g.keep ? [g.keep] : []));
    const store = this.options.store;
    let committed = false;
    let refreshed = false;
    return {
      platform,
      certs,
      collateral,
      items: got.map((g) => ({
        kind: g.request.kind,
        url: g.request.url,
        from: g.from,
        ...(g.expiresAt && { expiresAt: g.expiresAt.toISOString() }),
        ...(supplied.partly.has(g.request.kind) && { partlyGiven: true as const }),
      })),
      async commit() {
        if (committed || !store) return;
        committed = true;
        for (const e of keep) await store.put(e);
      },
      refresh: async () => {
        if (refreshed || committed || !store) return undefined;
        refreshed = true;
        const kept = got.filter((g) => g.from === 'cache');
        if (kept.length === 0) return undefined;
        let fresh: Got[];
        try {
          fresh = await Promise.all(kept.map((g) => this.fromNetwork(g.request, now, supplied.partly.has(g.request.kind))));
        } catch (e) {
          // Unreachable, or an unusable answer: the kept copies stay, and the refusal stands.
          if (e instanceof CustodyError) return undefined;
          throw e;
        }
        // Only fresh copies that may replace their kept copy (differ, and are not older) are used.
        const replacing = fresh.filter((f, i) => supersedes(f, kept[i]!));
        if (replacing.length === 0) return undefined;
        const byUrl = new Map(replacing.map((f) => [f.request.url, f]));
        return this.assemble(platform, supplied, got.map((g) => byUrl.get(g.request.url) ?? g), now);
      },
    };
  }

  /**
   * One item, from the store while a kept copy is current, else from the network. A fetched item
   * part of which is given by hand is not kept: the kept copy would hold the fetched part that this
   * run did not use, hence did not check, and later runs would use it.
   */
  private async get(request: CollateralRequest, now: Date, partlyGiven: boolean): Promise<Got> {
    const store = this.options.store;
    if (store) {
      const hit = await this.fromStore(store, request, now);
      if (hit) return hit;
    }
    return this.fromNetwork(request, now, partlyGiven);
  }

  /**
   * One item from the network. A body that is not even the kind of thing asked for (a CRL that is
   * not a DER, PEM or hex CRL, TCB Info or QE Identity that is not the signed JSON, certificates
   * that do not parse), or one sent as text/html (a captive portal, a proxy's error page), is an
   * unusable answer (ERR_COLLATERAL_RESPONSE), not collateral for the verifier to refuse.
   */
  private async fromNetwork(request: CollateralRequest, now: Date, partlyGiven: boolean): Promise<Got> {
    const store = this.options.store;
    const res = await fetchBounded(request.url, { fetch: this.fetchFn, timeoutMs: this.timeoutMs, maxBytes: this.maxBytes, keepHeaders: [...(request.issuerChainHeaders ?? []), 'content-type'] });
    const { 'content-type': contentType, ...headers } = res.headers;
    checkResponseKind(request, res.body, contentType);
    const chain = issuerChain(request, headers);
    const expiresAt = store && !partlyGiven ? collateralExpiry(request, res.body, now, this.lifetime) : undefined;
    return {
      request,
      body: res.body,
      from: 'network',
      ...(chain && { chain }),
      ...(expiresAt && { expiresAt, keep: { url: request.url, body: res.body, headers, fetchedAt: now, expiresAt } }),
    };
  }

  /**
   * A kept copy that is current at `now`. Its life is recomputed from its own bytes and fetch time
   * (nextUpdate, the maximum age in force now); the stored expiry only ever shortens it. A copy
   * whose bytes give no life, or without its issuer chain, is damaged: it is dropped and fetched
   * again. A store that cannot be read is a miss, except one that refuses its location
   * (ERR_COLLATERAL_CACHE_DIR).
   */
  private async fromStore(store: CollateralStore, request: CollateralRequest, now: Date): Promise<Got | undefined> {
    let cached: StoredCollateral | undefined;
    try {
      cached = await store.get(request.url, now);
    } catch (e) {
      if (e instanceof CustodyError && e.code === 'ERR_COLLATERAL_CACHE_DIR') throw e;
      return undefined;
    }
    if (!cached) return undefined;
    // Kept by a run at a later verification time (--at in the past): not evidence of anything at `now`.
    if (cached.fetchedAt.getTime() > now.getTime()) return undefined;
    const own = ownExpiry(request, cached.body, cached.fetchedAt, this.lifetime.fixedTtlMs ?? DEFAULT_FIXED_TTL_MS);
    let chain: Bytes | undefined;
    try {
      if (!own) throw new CustodyError('ERR_COLLATERAL_RESPONSE', 'the kept copy gives no expiry');
      chain = issuerChain(request, cached.headers);
    } catch {
      await store.delete(request.url).catch(() => undefined);
      return undefined;
    }
    const capped = Math.min(own.getTime(), cached.fetchedAt.getTime() + (this.lifetime.maxAgeMs ?? DEFAULT_MAX_AGE_MS), cached.expiresAt.getTime());
    if (capped <= now.getTime()) return undefined;
    const expiresAt = new Date(capped);
    return { request, body: cached.body, from: 'cache', expiresAt, ...(chain && { chain }) };
  }
}

/**
 * Whether a fresh copy may replace (and be verified instead of) a kept one. A dated item (a CRL,
 * TCB Info, QE Identity) must be no older by its own fields (`newerByOwnFields`): a stale PCCS or
 * CDN serving an older copy that still verifies (an older CRL without a revocation) must not
 * roll the kept copy back, while a same-dated copy that differs (the kept one damaged) may
 * replace it, and the verifier decides. Certificates (a VCEK, the chains, an item's issuer chain when its
 * body is the kept one) carry no freshness order: a different one may replace the kept one, and
 * the verifier decides whether it is good.
 */
function supersedes(fresh: Got, kept: Got): boolean {
  if (sameCopy(fresh, kept)) return false;
  if (fresh.request.expiry === 'fixed' || equalBytes(fresh.body, kept.body)) return true;
  return newerByOwnFields(fresh.request, fresh.body, kept.body);
}

/**
 * Whether `fresh` is no older than `kept` by the fields each carries: a CRL by its thisUpdate;
 * TCB Info and QE Identity by tcbEvaluationDataNumber (when both have it) and issueDate, none
 * older. A kept copy whose fields cannot be read is damaged (a
 * readable fresh copy may replace it); a fresh one whose fields cannot be read is not used.
 */
function newerByOwnFields(request: CollateralRequest, fresh: Bytes, kept: Bytes): boolean {
  const f = freshnessOf(request, fresh);
  if (f === undefined) return false;
  const k = freshnessOf(request, kept);
  if (k === undefined) return true;
  for (let i = 0; i < f.length; i++) {
    const a = f[i];
    const b = k[i];
    if (a === undefined || b === undefined) continue;
    if (a < b) return false;
  }
  return true;
}

/** The fields that order copies of a dated item (see `newerByOwnFields`), or undefined when they cannot be read. */
function freshnessOf(request: CollateralRequest, body: Bytes): (number | undefined)[] | undefined {
  try {
    switch (request.expiry) {
      case 'crl':
        return finite([readCrl(body, 'CRL').thisUpdate.getTime()]);
      case 'tcbInfo':
      case 'qeIdentity': {
        const signed = readSignedResponse(body, request.expiry === 'tcbInfo' ? 'tcbInfo' : 'enclaveIdentity', request.kind);
        const o = JSON.parse(signed.body) as { issueDate?: unknown; tcbEvaluationDataNumber?: unknown };
        if (typeof o.issueDate !== 'string' || !ISO_UTC.test(o.issueDate)) return undefined;
        const n = o.tcbEvaluationDataNumber;
        if (n !== undefined && !(Number.isSafeInteger(n) && (n as number) >= 0)) return undefined;
        return finite([n as number | undefined, new Date(o.issueDate).getTime()]);
      }
      case 'fixed':
        return undefined;
    }
  } catch {
    return undefined;
  }
}

function finite(v: (number | undefined)[]): (number | undefined)[] | undefined {
  return v.every((x) => x === undefined || Number.isFinite(x)) ? v : undefined;
}

const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

/** Whether a fresh copy is the kept one: the same body and the same issuer chain. */
function sameCopy(fresh: Got, kept: Got): boolean {
  return equalBytes(fresh.body, kept.body) && (fresh.chain === undefined ? kept.chain === undefined : kept.chain !== undefined && equalBytes(fresh.chain, kept.chain));
}

/** Refuses a fetched body that is not even the kind of collateral asked for (see `fromNetwork`); whether it verifies is the verifier's to say. */
function checkResponseKind(request: CollateralRequest, body: Bytes, contentType: string | undefined): void {
  const refuse = (why: string, cause?: unknown): CustodyError =>
    new CustodyError('ERR_COLLATERAL_RESPONSE', `${request.url} answered with ${why}, not ${request.kind} collateral`, { detail: { url: request.url, reason: 'content' }, ...(cause === undefined ? {} : { cause }) });
  if (contentType !== undefined && /^\s*text\/html\s*(;|$)/i.test(contentType)) throw refuse('an HTML page');
  try {
    switch (request.expiry) {
      case 'crl':
        readCrl(body, 'CRL');
        break;
      case 'tcbInfo':
      case 'qeIdentity':
        readSignedResponse(body, request.expiry === 'tcbInfo' ? 'tcbInfo' : 'enclaveIdentity', request.kind);
        break;
      case 'fixed':
        for (const der of readCertificates(body)) new X509Certificate(der);
        break;
    }
  } catch (e) {
    throw refuse('a body that does not parse', e);
  }
}

function issuerChain(request: CollateralRequest, headers: Record<string, string>): Bytes | undefined {
  if (!request.issuerChainHeaders) return undefined;
  for (const name of request.issuerChainHeaders) {
    const v = headers[name.toLowerCase()];
    if (v !== undefined) return decodeIssuerChainHeader(v, name);
  }
  throw new CustodyError('ERR_COLLATERAL_RESPONSE', `${request.url} answered without its ${request.issuerChainHeaders[0]} header`, { detail: { url: request.url, header: request.issuerChainHeaders[0]! } });
}

function detectPlatform(evidence: Uint8Array): Platform {
  if (detectSevSnpEvidence(evidence)) return 'sev-snp';
  if (looksLikeTdxQuote(evidence)) return 'tdx';
  throw new CustodyError('ERR_FORMAT_UNKNOWN', 'the evidence is neither an SEV-SNP report nor a TDX quote, so no collateral applies');
}

/** Certificates the caller and the configfs-tsm certificate table supply (unreadable ones are the verifier's to report). */
function suppliedSnpCertificates(evidence: Uint8Array, options: FetchCollateralOptions): X509Certificate[] {
  const table = readSevSnpEvidence(evidence).certTable;
  const blobs = [...(options.certs ?? []), ...table.filter((e) => e.kind !== 'crl').map((e) => e.data)];
  return blobs.flatMap((blob) => {
    try {
      return readCertificates(blob).map((d) => new X509Certificate(d));
    } catch {
      return [];
    }
  });
}

function suppliesVlek(evidence: Uint8Array, options: FetchCollateralOptions): boolean {
  return suppliedSnpCertificates(evidence, options).some((c) => amdKeyKind(c) === 'VLEK');
}

/** SEV-SNP items the caller (or the configfs-tsm certificate table) already supplies; an ARK without its ASK is part of the chain. */
function suppliedSnp(evidence: Uint8Array, options: FetchCollateralOptions): Supplied {
  const have = new Set<CollateralItemKind>();
  const partly = new Set<CollateralItemKind>();
  if (options.collateral?.crl || readSevSnpEvidence(evidence).certTable.some((e) => e.kind === 'crl')) have.add('crl');
  for (const c of suppliedSnpCertificates(evidence, options)) {
    const role = amdCaName(commonName(c))?.role;
    if (amdKeyKind(c) === 'VCEK') have.add('vcek');
    if (role === 'ASK') have.add('certChain');
    if (role === 'ARK') partly.add('certChain');
  }
  for (const k of have) partly.delete(k);
  return { have, partly };
}

/** TDX items the caller already supplies, as named files or inside a `bundle`, and items of which it supplies only the issuer chain. */
function suppliedTdx(options: FetchCollateralOptions): Supplied {
  const have = new Set<CollateralItemKind>();
  const partly = new Set<CollateralItemKind>();
  const given = options.collateral ?? {};
  const chains = new Set(Object.keys(given).filter((k) => given[k]));
  for (const [kind, name] of BUNDLE_FIELDS) if (given[name]) have.add(kind);
  if (given.bundle) {
    try {
      const b = parseCollateralBundle(given.bundle);
      for (const [kind, field] of BUNDLE_FIELDS) if (b[field]) have.add(kind);
      for (const name of Object.values(CHAIN_NAME)) if (b[name as keyof typeof b]) chains.add(name);
    } catch {
      // a bundle that does not parse is the verifier's to report; fetch nothing that could mask it
      for (const [kind] of BUNDLE_FIELDS) have.add(kind);
    }
  }
  for (const [kind, name] of Object.entries(CHAIN_NAME) as [CollateralItemKind, string][]) if (!have.has(kind) && chains.has(name)) partly.add(kind);
  return { have, partly };
}

/** Hand-given certificates and collateral combined with fetched ones; hand-given ones win. */
export function withFetchedCollateral(input: { certs?: Uint8Array[]; collateral?: Record<string, Uint8Array> }, fetched: FetchedCollateral): { certs: Uint8Array[]; collateral: Record<string, Uint8Array> } {
  // The verifiers prefer earlier certificates among equal candidates, so hand-given ones go first.
  return { certs: [...(input.certs ?? []), ...fetched.certs], collateral: { ...fetched.collateral, ...(input.collateral ?? {}) } };
}

/** The steps that check collateral; fetched copies are kept only after all of them passed, and kept copies re-fetched when one failed. */
const COLLATERAL_STEPS: Record<'sev-snp' | 'tdx', StepName[]> = {
  'sev-snp': ['chain', 'revocation', 'signature', 'tcb'],
  tdx: ['chain', 'revocation', 'collateral'],
};

/**
 * Whether a verification accepted the collateral it was given (chain, revocation and collateral
 * steps passed), so fetched copies may be kept: a tampered or wrong response is never kept, and
 * is fetched again next time.
 */
export function collateralAccepted(platform: 'sev-snp' | 'tdx', result: VerificationResult): boolean {
  return COLLATERAL_STEPS[platform].every((name) => result.steps.some((s) => s.name === name && s.ok));
}

/**
 * Whether a verification refused collateral: one of the steps that check it failed (a parse or
 * binding failure says nothing about the collateral). Such a failure may still be the evidence's
 * own (a broken certificate or signature in it), so copies served from the store are not dropped:
 * `FetchedCollateral.refresh` fetches them again, and only fresh copies that differ are verified
 * again and, if accepted, replace them.
 */
export function collateralRefused(platform: 'sev-snp' | 'tdx', result: VerificationResult): boolean {
  return result.steps.some((s) => !s.ok && COLLATERAL_STEPS[platform].includes(s.name));
}
