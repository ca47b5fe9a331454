import { CustodyError, readBodyLimited, type Bytes } from '@custody/core';

/** The subset of WHATWG `fetch` the collateral client uses (inject it; browsers and Node 20 have one). */
export type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface BoundedFetchOptions {
  fetch: FetchLike;
  /** Whole-request deadline: connect, headers and body. */
  timeoutMs: number;
  /** Largest body accepted; a larger one is refused before or while reading. */
  maxBytes: number;
  /** Response headers to keep (case-insensitive names). */
  keepHeaders?: readonly string[];
}

export interface BoundedResponse {
  url: string;
  body: Bytes;
  /** The kept headers that were present, by lowercase name. */
  headers: Record<string, string>;
}

function fail(code: 'ERR_COLLATERAL_UNAVAILABLE' | 'ERR_COLLATERAL_NOT_FOUND' | 'ERR_COLLATERAL_RESPONSE', message: string, detail: Record<string, string | number>, cause?: unknown): CustodyError {
  return new CustodyError(code, message, { detail, ...(cause === undefined ? {} : { cause }) });
}

/** Most redirects followed for one request. */
export const MAX_REDIRECTS = 5;
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);

/**
 * GET `url` with a deadline and a size bound. 200 gives the body; 404/410 ERR_COLLATERAL_NOT_FOUND;
 * 408, 429 and 5xx, network failures and the deadline ERR_COLLATERAL_UNAVAILABLE; anything else,
 * and a body over the bound, ERR_COLLATERAL_RESPONSE. The body is untrusted bytes.
 *
 * Redirects are followed here, not by `fetch` (at most MAX_REDIRECTS, all within the one deadline),
 * so that one from https to anything but https is refused before it is requested
 * (ERR_COLLATERAL_RESPONSE, reason `downgrade`), as is a redirect `fetch` will not show (a browser's
 * opaque redirect) or one to a URL with credentials in it (reason `redirect`).
 */
export async function fetchBounded(url: string, options: BoundedFetchOptions): Promise<BoundedResponse> {
  const controller = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    controller.abort();
  }, options.timeoutMs);
  try {
    let res: Response;
    let at = url;
    for (let hops = 0; ; hops++) {
      try {
        res = await options.fetch(at, { method: 'GET', redirect: 'manual', signal: controller.signal });
      } catch (e) {
        throw unreachable(url, timedOut, options.timeoutMs, e);
      }
      if (res.type === 'opaqueredirect') {
        await res.body?.cancel().catch(() => undefined);
        throw fail('ERR_COLLATERAL_RESPONSE', `${url} redirected where it cannot be followed`, { url, reason: 'redirect' });
      }
      if (!REDIRECT_STATUS.has(res.status)) break;
      await res.body?.cancel().catch(() => undefined);
      at = redirectTarget(url, at, res.headers.get('location'), hops);
    }
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => undefined);
      const detail = { url, status: res.status };
      if (res.status === 404 || res.status === 410) throw fail('ERR_COLLATERAL_NOT_FOUND', `${url} answered ${res.status}: no such collateral`, detail);
      if (res.status === 408 || res.status === 429 || res.status >= 500) throw fail('ERR_COLLATERAL_UNAVAILABLE', `${url} answered ${res.status}`, detail);
      throw fail('ERR_COLLATERAL_RESPONSE', `${url} answered ${res.status}`, detail);
    }
    const declared = res.headers.get('content-length');
    if (declared !== null && /^\d+$/.test(declared) && Number(declared) > options.maxBytes) {
      await res.body?.cancel().catch(() => undefined);
      throw fail('ERR_COLLATERAL_RESPONSE', `${url} declares ${declared} bytes, more than the ${options.maxBytes}-byte bound`, { url, bound: options.maxBytes });
    }
    let body: Bytes;
    try {
      body = await readBodyLimited(res, options.maxBytes, 'the response body');
    } catch (e) {
      if (e instanceof CustodyError && e.code === 'ERR_INPUT_TOO_LARGE') throw fail('ERR_COLLATERAL_RESPONSE', `${url} sent more than the ${options.maxBytes}-byte bound`, { url, bound: options.maxBytes });
      throw unreachable(url, timedOut, options.timeoutMs, e);
    }
    const headers: Record<string, string> = {};
    for (const name of options.keepHeaders ?? []) {
      const v = res.headers.get(name);
      if (v !== null) headers[name.toLowerCase()] = v;
    }
    return { url, body, headers };
  } finally {
    clearTimeout(timer);
  }
}

/** Where a redirect from `from` leads: an http(s) URL without credentials, never from https to http, at most MAX_REDIRECTS hops. */
function redirectTarget(url: string, from: string, location: string | null, hops: number): string {
  if (hops >= MAX_REDIRECTS) throw fail('ERR_COLLATERAL_RESPONSE', `${url} redirected more than ${MAX_REDIRECTS} times`, { url, reason: 'redirect' });
  let next: URL;
  try {
    if (location === null) throw new TypeError('no Location header');
    next = new URL(location, from);
  } catch (e) {
    throw fail('ERR_COLLATERAL_RESPONSE', `${url} redirected without a usable Location`, { url, reason: 'redirect' }, e);
  }
  // fetch refuses a URL with credentials as a TypeError, which would read as the service unreachable.
  if (next.username || next.password) throw fail('ERR_COLLATERAL_RESPONSE', `${url} redirected to a URL with credentials in it`, { url, reason: 'redirect' });
  const wasHttps = new URL(from).protocol === 'https:';
  if (next.protocol !== 'https:' && (wasHttps || next.protocol !== 'http:')) {
    throw fail('ERR_COLLATERAL_RESPONSE', `${url} redirected to a ${next.protocol.replace(/:$/, '')} URL (only http(s) is followed, and only https from https)`, { url, reason: 'downgrade' });
  }
  return next.href;
}

function unreachable(url: string, timedOut: boolean, timeoutMs: number, cause: unknown): CustodyError {
  return timedOut
    ? fail('ERR_COLLATERAL_UNAVAILABLE', `${url} did not answer within ${timeoutMs} ms`, { url, reason: 'timeout' }, cause)
    : fail('ERR_COLLATERAL_UNAVAILABLE', `${url} could not be reached`, { url, reason: 'network' }, cause);
}
