import { ErrorCodes, toCustodyError, utf8, type Bytes, type CustodyError } from '@custody/core';
import { OHTTP_KEY_PROBLEM_TYPE } from '@custody/sdk';

/**
 * The one place gateway error codes become HTTP statuses and RFC 9457 problem documents.
 * Inner (encrypted) responses carry the same document with an OpenAI-style `error` member, so
 * OpenAI clients show the code and message.
 */
const EXACT: Record<string, number> = {
  ERR_GATEWAY_PLAINTEXT: 403,
  ERR_GATEWAY_NOT_ATTESTED: 503,
  ERR_GATEWAY_ATTESTATION_LAPSED: 503,
  ERR_GATEWAY_ATTESTATION_REVOKED: 503,
  ERR_GATEWAY_REPLAY: 400,
  ERR_GATEWAY_REQUEST_DATE: 400,
  ERR_GATEWAY_ROUTE: 404,
  ERR_GATEWAY_BUNDLE_UNKNOWN: 404,
  ERR_GATEWAY_MODEL: 404,
  ERR_GATEWAY_BACKEND: 502,
  ERR_GATEWAY_BACKEND_UNAVAILABLE: 503,
  ERR_GATEWAY_LEDGER: 503,
  ERR_GATEWAY_OVERLOADED: 503,
  ERR_GATEWAY_TENANT_LIMIT: 429,
  ERR_GATEWAY_REPLAY_STORE: 503,
  ERR_GATEWAY_CONFIG: 500,
  ERR_GATEWAY_MODEL_FILE: 500,
  ERR_RELAY_GATEWAY_UNREACHABLE: 502,
  ERR_RELAY_GATEWAY_ANSWER: 502,
  ERR_RELAY_GATEWAY_TIMEOUT: 504,
  ERR_RELAY_OVERLOADED: 503,
  ERR_OHTTP_KEY_ID: 422,
  ERR_OHTTP_MEDIA_TYPE: 415,
  ERR_AUTH_REQUIRED: 401,
  ERR_AUTH_INVALID: 401,
  ERR_POLICY_DENIED: 403,
  ERR_INPUT_TOO_LARGE: 413,
  ERR_INTERNAL: 500,
};

const FAMILIES: Array<[string, number]> = [
  ['ERR_INPUT_', 400],
  ['ERR_OHTTP_', 400],
  ['ERR_HPKE_', 400],
  ['ERR_POLICY_', 403],
];

export function statusFor(code: string): number {
  const exact = EXACT[code];
  if (exact !== undefined) return exact;
  for (const [prefix, status] of FAMILIES) if (code.startsWith(prefix)) return status;
  return 500;
}

export interface GatewayProblem {
  type: string;
  title: string;
  status: number;
  code: string;
  detail: string;
  facts?: Record<string, string | number | boolean>;
  /** OpenAI-compatible error member. */
  error: { message: string; type: string; code: string };
}

export function toProblem(e: unknown): GatewayProblem {
  const err: CustodyError = toCustodyError(e);
  const status = statusFor(err.code);
  const title = (ErrorCodes as Record<string, string>)[err.code] ?? err.code;
  const internal = status >= 500 && (err.code === 'ERR_INTERNAL' || !(err.code.startsWith('ERR_GATEWAY_') || err.code.startsWith('ERR_RELAY_')));
  const detail = internal ? title : err.message;
  return {
    type: err.code === 'ERR_OHTTP_KEY_ID' ? OHTTP_KEY_PROBLEM_TYPE : `urn:custody:error:${err.code}`,
    title,
    status,
    code: err.code,
    detail,
    ...(err.detail && !internal ? { facts: err.detail } : {}),
    error: { message: detail, type: 'custody_error', code: err.code },
  };
}

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

export function problemBody(p: GatewayProblem): Bytes {
  return utf8(JSON.stringify(p));
}

export function problemResponse(e: unknown): Response {
  const p = toProblem(e);
  const headers: Record<string, string> = { 'content-type': PROBLEM_CONTENT_TYPE, 'cache-control': 'no-store', 'x-custody-code': p.code };
  if (p.status === 503) headers['retry-after'] = '5';
  return new Response(problemBody(p), { status: p.status, headers });
}
