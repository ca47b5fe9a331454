import { toCustodyError } from '@custody/core';
import { readBodyLimited as readBodyLimitedFrom } from '@custody/core';

/** The one place ledger error codes become HTTP statuses. */
const STATUS: Record<string, number> = {
  ERR_AUTH_REQUIRED: 401,
  ERR_AUTH_INVALID: 401,
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

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** RFC 9457 problem details as a status and JSON text; `detail` carries only public facts (codes, sizes, indexes). */
export function problemBody(e: unknown): { status: number; body: string } {
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
  return { status, body: JSON.stringify(body) };
}

/** Headers of a problem answer: its media type, and the auth scheme a 401 asks for. */
export function problemHeaders(status: number): Record<string, string> {
  return status === 401 ? { 'content-type': PROBLEM_CONTENT_TYPE, 'www-authenticate': 'Bearer realm="custody-log"' } : { 'content-type': PROBLEM_CONTENT_TYPE };
}

/** The problem document as a Response. */
export function problem(e: unknown): Response {
  const p = problemBody(e);
  return new Response(p.body, { status: p.status, headers: problemHeaders(p.status) });
}

/** Reads a request body, refusing more than `max` bytes without buffering them (ERR_INPUT_TOO_LARGE, 413). */
export function readBodyLimited(req: Request, max: number): Promise<Uint8Array<ArrayBuffer>> {
  return readBodyLimitedFrom(req, max, 'request body');
}
