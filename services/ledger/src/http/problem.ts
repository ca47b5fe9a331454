import { CustodyError, toCustodyError } from '@custody/core';

/** The one place ledger error codes become HTTP statuses. */
const STATUS: Record<string, number> = {
  ERR_INPUT_TOO_LARGE: 413,
  ERR_INPUT_MALFORMED: 400,
  ERR_INPUT_TRUNCATED: 400,
  ERR_INPUT_UNSUPPORTED: 400,
  ERR_TLOG_ENTRY: 400,
  ERR_TLOG_EVENT: 400,
  ERR_TLOG_EVENT_SECRET: 400,
  ERR_TLOG_TILE: 404,
  ERR_TLOG_INCLUSION: 404,
  ERR_TLOG_UNAVAILABLE: 503,
  ERR_TLOG_QUORUM: 503,
  ERR_WITNESS_UNAVAILABLE: 503,
};

export function statusFor(code: string): number {
  return STATUS[code] ?? 500;
}

/** RFC 9457 problem details; `detail` carries only public facts (codes, sizes, indexes). */
export function problem(e: unknown): Response {
  const err = toCustodyError(e);
  const status = statusFor(err.code);
  const body = {
    type: `urn:custody:error:${err.code}`,
    title: err.code,
    status,
    // Internal errors do not echo their message (it could describe server internals).
    detail: status === 500 ? 'internal error' : err.message,
    code: err.code,
    ...(err.detail && status !== 500 ? { facts: err.detail } : {}),
  };
  return new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/problem+json' } });
}

/** Reads a request body, refusing more than `max` bytes without buffering them. */
export async function readBodyLimited(req: Request, max: number): Promise<Uint8Array<ArrayBuffer>> {
  const declared = Number(req.headers.get('content-length') ?? '0');
  if (declared > max) throw new CustodyError('ERR_INPUT_TOO_LARGE', 'request body is too large', { detail: { max } });
  if (!req.body) return new Uint8Array(0);
  const reader = req.body.getReader();
  const parts: Uint8Array[] = [];
  let n = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    n += value.length;
    if (n > max) {
      await reader.cancel();
      throw new CustodyError('ERR_INPUT_TOO_LARGE', 'request body is too large', { detail: { max } });
    }
    parts.push(value);
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
