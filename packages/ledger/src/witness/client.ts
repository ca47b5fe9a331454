import { CustodyError, readBodyLimited, toCustodyError } from '@custody/core';
import { decodeUtf8Exact } from '../note/utf8.js';
import { formatAddCheckpoint, parseTlogSize, type AddCheckpointRequest } from './protocol.js';

/** The subset of `fetch` the ledger clients use; inject `globalThis.fetch` or a test double. */
export type FetchLike = (
  url: string,
  init?: { method?: string; body?: string | Uint8Array<ArrayBuffer>; headers?: Record<string, string>; signal?: AbortSignal },
) => Promise<Response>;

/** Bound on a witness's add-checkpoint response: cosignature lines (one per witness key) or a size. */
export const MAX_WITNESS_RESPONSE = 64 * 1024;

export function joinUrl(prefix: string, path: string): string {
  return prefix.replace(/\/+$/, '') + '/' + path.replace(/^\/+/, '');
}

/**
 * Sends `add-checkpoint` to a witness. Returns the cosignature lines on 200. A 409 becomes
 * ERR_WITNESS_CONFLICT with the witness's size in `detail.size`, so the caller can send a
 * consistency proof from that size; every other failure is typed by status.
 */
export async function requestCosignature(fetchFn: FetchLike, submissionPrefix: string, req: AddCheckpointRequest, timeoutMs = 10_000): Promise<string> {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), timeoutMs);
  let res: Response;
  let text: string;
  try {
    res = await fetchFn(joinUrl(submissionPrefix, 'add-checkpoint'), {
      method: 'POST',
      body: formatAddCheckpoint(req),
      headers: { 'content-type': 'text/plain; charset=utf-8' },
      signal: ctl.signal,
    });
    // A witness answers with a few signature lines or a size; never buffer more than that.
    text = decodeUtf8Exact(await readBodyLimited(res, MAX_WITNESS_RESPONSE, 'witness response'));
  } catch (e) {
    const err = toCustodyError(e);
    const why = err.code === 'ERR_INPUT_TOO_LARGE' ? 'witness response is too large' : err.code === 'ERR_INPUT_MALFORMED' ? 'witness response is not UTF-8' : 'witness did not answer';
    throw new CustodyError('ERR_WITNESS_UNAVAILABLE', why, { cause: err, detail: { witness: submissionPrefix } });
  } finally {
    clearTimeout(timer);
  }
  switch (res.status) {
    case 200:
      if (!/^(\u2014 [^\n]+\n)+$/.test(text)) throw new CustodyError('ERR_WITNESS_UNAVAILABLE', 'witness sent a malformed cosignature response');
      return text;
    case 409:
      throw new CustodyError('ERR_WITNESS_CONFLICT', undefined, { detail: { witness: submissionPrefix, size: parseTlogSize(text) } });
    case 403:
      throw new CustodyError('ERR_WITNESS_FORBIDDEN', undefined, { detail: { witness: submissionPrefix } });
    case 404:
      throw new CustodyError('ERR_WITNESS_UNKNOWN_LOG', undefined, { detail: { witness: submissionPrefix } });
    case 422:
      throw new CustodyError('ERR_TLOG_CONSISTENCY', 'witness refused the checkpoint as inconsistent', { detail: { witness: submissionPrefix } });
    case 400:
      throw new CustodyError('ERR_WITNESS_BAD_REQUEST', undefined, { detail: { witness: submissionPrefix } });
    default:
      throw new CustodyError('ERR_WITNESS_UNAVAILABLE', 'witness answered with an unexpected status', { detail: { witness: submissionPrefix, status: res.status } });
  }
}
