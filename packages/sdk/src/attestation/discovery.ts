/**
 * Discovery: fetches a gateway's attestation bundle (optionally with fresh evidence bound to a
 * caller nonce) and the broker's JWKS from a URL the caller trusts, then verifies.
 */
import type { JSONWebKeySet } from 'jose';
import { CustodyError, fromUtf8, isCustodyError, secureRandom, systemClock, toBase64Url, type RandomSource } from '@custody/core';
import { readAll } from '../ohttp/stream-buffer.js';
import { ATTESTATION_PATH, CHALLENGE_PATH, MAX_BUNDLE_BYTES, bundleAttestationDigest, parseAttestationBundleText, type AttestationBundle } from './bundle.js';
import { verifyGatewayBundle, type GatewayTrustOptions, type VerificationDocument, type VerifiedGateway } from './verify.js';

export type FetchLike = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

const MAX_JWKS_BYTES = 64 * 1024;

/** `base` with `path` appended to its path (a base of https://h/gw gives https://h/gw/.well-known/...). */
export function joinPath(base: string | URL, path: string): string {
  const u = new URL(String(base));
  u.pathname = u.pathname.replace(/\/+$/, '') + path;
  u.search = '';
  u.hash = '';
  return u.toString();
}

/** The error a call aborted by `signal` gives: the signal's reason when it is typed (a deadline's). */
function abortedBy(signal: AbortSignal | undefined): CustodyError | undefined {
  return signal?.aborted && isCustodyError(signal.reason) ? signal.reason : undefined;
}

async function readBounded(res: Response, max: number, code: string, signal?: AbortSignal): Promise<string> {
  if (!res.body) return '';
  try {
    return fromUtf8(await readAll(res.body, max));
  } catch (e) {
    throw abortedBy(signal) ?? new CustodyError(code, 'response is too large or not UTF-8', { cause: e });
  }
}

export interface FetchBundleOptions {
  readonly fetch?: FetchLike;
  /** When given, the gateway re-attests with this nonce in its runtime data. */
  readonly nonce?: Uint8Array;
  readonly signal?: AbortSignal;
}

/**
 * A bundle from a gateway's answer: `request` makes the call; a status other than 200 throws the
 * answer's problem code (ERR_SDK_DISCOVERY when it names none), `what` naming the request.
 */
async function bundleFrom(request: () => Promise<Response>, what: string, signal: AbortSignal | undefined): Promise<AttestationBundle> {
  let res: Response;
  try {
    res = await request();
  } catch (e) {
    throw abortedBy(signal) ?? new CustodyError('ERR_SDK_DISCOVERY', 'the gateway attestation bundle could not be fetched', { cause: e });
  }
  const text = await readBounded(res, MAX_BUNDLE_BYTES, 'ERR_SDK_DISCOVERY', signal);
  if (res.status !== 200) {
    let code = 'ERR_SDK_DISCOVERY';
    try {
      const p = JSON.parse(text) as { code?: unknown };
      if (typeof p.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(p.code)) code = p.code;
    } catch {
      // not a problem document; keep the generic code
    }
    throw new CustodyError(code, `the gateway answered ${res.status} to ${what}`, { detail: { status: res.status } });
  }
  return parseAttestationBundleText(text);
}

/** GET the bundle, or POST the challenge with a nonce. ERR_SDK_DISCOVERY on any failure. */
export function fetchAttestationBundle(gateway: string | URL, options: FetchBundleOptions = {}): Promise<AttestationBundle> {
  const f = options.fetch ?? globalThis.fetch;
  const signal = options.signal ? { signal: options.signal } : {};
  const nonce = options.nonce;
  return bundleFrom(
    () =>
      nonce
        ? f(joinPath(gateway, CHALLENGE_PATH), { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json' }, body: JSON.stringify({ nonce: toBase64Url(nonce) }), ...signal })
        : f(joinPath(gateway, ATTESTATION_PATH), { headers: { accept: 'application/json' }, ...signal }),
    'attestation discovery',
    options.signal,
  );
}

/**
 * A bundle the gateway published in an earlier round, by the attestation digest a receipt names
 * (`receipt.gateway.attestationDigest`): what `verifyReceiptOffline` needs beside a receipt
 * answered after the bundle a client verified was replaced (every re-attestation publishes a new
 * one). Nothing in it is trusted: it must have exactly that digest (ERR_SDK_DISCOVERY otherwise),
 * and the offline verification checks it like any bundle. ERR_GATEWAY_BUNDLE_UNKNOWN when the
 * gateway no longer keeps it (about two hours of rounds).
 */
export async function fetchAttestationBundleByDigest(gateway: string | URL, digest: string, options: Omit<FetchBundleOptions, 'nonce'> = {}): Promise<AttestationBundle> {
  if (!/^sha256:[0-9a-f]{64}$/.test(digest)) throw new CustodyError('ERR_USAGE', 'an attestation digest is sha256:<64 lowercase hex>');
  const f = options.fetch ?? globalThis.fetch;
  const bundle = await bundleFrom(
    () => f(`${joinPath(gateway, ATTESTATION_PATH)}?digest=${digest}`, { headers: { accept: 'application/json' }, ...(options.signal ? { signal: options.signal } : {}) }),
    `the attestation bundle ${digest.slice(0, 23)}...`,
    options.signal,
  );
  if ((await bundleAttestationDigest(bundle)) !== digest) throw new CustodyError('ERR_SDK_DISCOVERY', 'the gateway answered another attestation bundle than the one asked for');
  return bundle;
}

/** Fetches a JWKS from a URL the caller chose (never from one the gateway names). */
export async function fetchJwks(url: string | URL, fetchFn: FetchLike = globalThis.fetch, signal?: AbortSignal): Promise<JSONWebKeySet> {
  let res: Response;
  try {
    res = await fetchFn(String(url), { headers: { accept: 'application/json' }, ...(signal ? { signal } : {}) });
  } catch (e) {
    throw abortedBy(signal) ?? new CustodyError('ERR_SDK_DISCOVERY', 'the broker JWKS could not be fetched', { cause: e });
  }
  const text = await readBounded(res, MAX_JWKS_BYTES, 'ERR_SDK_DISCOVERY', signal);
  if (res.status !== 200) throw new CustodyError('ERR_SDK_DISCOVERY', `the broker JWKS endpoint answered ${res.status}`, { detail: { status: res.status } });
  try {
    const v = JSON.parse(text) as JSONWebKeySet;
    if (!Array.isArray(v.keys) || v.keys.length === 0 || v.keys.length > 64) throw new Error('not a JWKS');
    return v;
  } catch (e) {
    throw new CustodyError('ERR_SDK_DISCOVERY', 'the broker JWKS is malformed', { cause: e });
  }
}

export interface DiscoverOptions extends GatewayTrustOptions {
  readonly gateway: string | URL;
  /** Fetch the bundle through this base URL instead (an OHTTP relay that forwards it). */
  readonly via?: string | URL;
  readonly fetch?: FetchLike;
  /** The broker's JWKS endpoint, when `jwks` is not pinned. */
  readonly jwksUrl?: string | URL;
  /** Challenge with a fresh nonce (default: when no broker JWKS is configured). */
  readonly freshNonce?: boolean;
  readonly nonce?: Uint8Array;
  readonly now?: () => Date;
  readonly random?: RandomSource;
  readonly signal?: AbortSignal;
}

/** The verification document of a verification that failed before the bundle could be checked (`what` failed with `e`). */
export function failedDiscovery(gateway: string | URL, at: Date, e: unknown, what: string): VerificationDocument {
  const err = isCustodyError(e) ? e : new CustodyError('ERR_SDK_DISCOVERY', undefined, { cause: e });
  return {
    format: 'custody.dev/gateway-verification/v1',
    ok: false,
    gateway: String(gateway),
    verifiedAt: at.toISOString(),
    steps: [{ name: 'trust', ok: false, ran: true, detail: `${what} failed: ${err.message}`, code: err.code }],
    error: { code: err.code, message: err.message, step: 'trust' },
  };
}

/** Fetches and verifies in one step. Never throws for a failed check: see `document.ok`. */
export async function discoverGateway(options: DiscoverOptions): Promise<{ document: VerificationDocument; verified?: VerifiedGateway; bundle?: AttestationBundle }> {
  const now = options.now ?? systemClock;
  const failed = (e: unknown, what: string): VerificationDocument => failedDiscovery(options.gateway, now(), e, what);
  const brokerTrusted = options.jwks !== undefined || options.jwksUrl !== undefined;
  const wantsNonce = options.nonce !== undefined || (options.freshNonce ?? !brokerTrusted);
  const nonce = options.nonce ?? (wantsNonce ? (options.random ?? secureRandom)(32) : undefined);
  // The gateway first: when it cannot serve (revoked, lapsed), its own code says so, whether or
  // not the broker's JWKS could be fetched.
  let bundle: AttestationBundle;
  try {
    bundle = await fetchAttestationBundle(options.via ?? options.gateway, {
      ...(options.fetch ? { fetch: options.fetch } : {}),
      ...(nonce ? { nonce } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } catch (e) {
    return { document: failed(e, 'discovery') };
  }
  let jwks = options.jwks;
  if (!jwks && options.jwksUrl) {
    try {
      jwks = await fetchJwks(options.jwksUrl, options.fetch, options.signal);
    } catch (e) {
      return { document: failed(e, "the broker's JWKS fetch"), bundle };
    }
  }
  const r = await verifyGatewayBundle(bundle, { ...options, ...(jwks ? { jwks } : {}), now: now(), gateway: String(options.gateway), ...(nonce ? { nonce } : {}) });
  return { ...r, bundle };
}
