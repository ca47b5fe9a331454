import { ErrorCodes, toCustodyError, type CustodyError } from '@custody/core';

/**
 * The one place broker error codes become HTTP statuses and RFC 9457 problem documents
 * (application/problem+json). Exact codes first, then code families, then 500.
 */
const EXACT: Record<string, number> = {
  // The broker's own EAR signing key is unusable (its key file changed and cannot be loaded): an outage, not the caller's EAR.
  ERR_EAR_KEY: 503,
  ERR_AUTH_REQUIRED: 401,
  ERR_AUTH_INVALID: 401,
  ERR_AUTH_ROLE: 403,
  ERR_AUTH_TENANT: 403,
  ERR_KEY_NOT_FOUND: 404,
  ERR_KEY_VERSION: 404,
  ERR_KEY_EXISTS: 409,
  ERR_KEY_CONFLICT: 409,
  ERR_KEY_STATE: 409,
  ERR_KEY_REVOKED: 403,
  ERR_KEY_DESTROYED: 410,
  ERR_KEY_NAME: 400,
  ERR_KEY_TYPE: 400,
  ERR_KEY_MATERIAL: 400,
  ERR_KEY_RECIPIENT: 400,
  ERR_KEY_UNWRAP: 400,
  ERR_KEY_UNSUPPORTED: 422,
  ERR_KEY_NOT_EXPORTABLE: 403,
  ERR_KEY_NO_RELEASE_POLICY: 403,
  ERR_POLICY_INVALID: 400,
  ERR_POLICY_NOT_STORED: 404,
  ERR_POLICY_CONFLICT: 409,
  ERR_RATE_LIMITED: 429,
  ERR_POLICY_DENIED: 403,
  ERR_POLICY_RULE: 403,
  ERR_SESSION_NOT_FOUND: 404,
  ERR_SESSION_EXPIRED: 403,
  ERR_SESSION_NONCE_USED: 403,
  ERR_SESSION_MISMATCH: 403,
  ERR_STORE_UNAVAILABLE: 503,
  ERR_STORE_AUDIT_UNAVAILABLE: 503,
  ERR_STORE_MASTER_KEY: 500,
  ERR_STORE_CORRUPT: 500,
  ERR_STORE_BACKEND: 502,
  ERR_STORE_CONFIG: 500,
  ERR_RUNTIME_DATA: 400,
  ERR_FORMAT_UNKNOWN: 400,
  ERR_VERIFIER_UNAVAILABLE: 503,
  ERR_SERVICE_UNAVAILABLE: 503,
  ERR_INPUT_TOO_LARGE: 413,
  ERR_INPUT_UNSUPPORTED: 415,
  ERR_INTERNAL: 500,
};

const FAMILIES: Array<[string, number]> = [
  ['ERR_INPUT_', 400],
  ['ERR_USAGE', 400],
  ['ERR_HPKE_', 400],
  ['ERR_EAR_', 401],
  ['ERR_EVIDENCE_', 403],
  ['ERR_POLICY_', 403],
  ['ERR_TCB_', 403],
  ['ERR_CERT_', 403],
  ['ERR_CRL_', 403],
  ['ERR_TPM_', 403],
  ['ERR_AZURE_', 403],
  ['ERR_TDX_', 403],
  ['ERR_SNP_', 403],
  ['ERR_COLLATERAL_', 503],
  ['ERR_ATTESTER_', 503],
];

export function statusFor(code: string): number {
  const exact = EXACT[code];
  if (exact !== undefined) return exact;
  for (const [prefix, status] of FAMILIES) if (code.startsWith(prefix)) return status;
  return 500;
}

export interface Problem {
  type: string;
  title: string;
  status: number;
  /** Stable code; clients branch on this. */
  code: string;
  /** Human-readable explanation (never secret; generic for 5xx internal errors). */
  detail: string;
  /** Public facts from CustodyError.detail (ids, lengths, states). */
  facts?: Record<string, string | number | boolean>;
}

export function toProblem(e: unknown, statusOverride?: number): Problem {
  const err: CustodyError = toCustodyError(e);
  const status = statusOverride ?? statusFor(err.code);
  const title = (ErrorCodes as Record<string, string>)[err.code] ?? err.code;
  const internal = err.code === 'ERR_INTERNAL';
  return {
    type: `urn:custody:error:${err.code}`,
    title,
    status,
    code: err.code,
    detail: internal ? title : err.message,
    ...(err.detail && !internal ? { facts: err.detail } : {}),
  };
}

export function problemResponse(e: unknown, statusOverride?: number): Response {
  const problem = toProblem(e, statusOverride);
  const headers: Record<string, string> = { 'content-type': 'application/problem+json', 'cache-control': 'no-store', 'x-custody-code': problem.code };
  if (problem.status === 401) headers['www-authenticate'] = 'Bearer realm="custody"';
  if (problem.status === 503) headers['retry-after'] = '5';
  if (problem.status === 429) headers['retry-after'] = String(retryAfterSeconds(problem.facts?.retryAfterSeconds));
  return new Response(JSON.stringify(problem), { status: problem.status, headers });
}

/** Whole seconds, at least 1 (RFC 9110 delay-seconds); 1 when the error did not say. */
function retryAfterSeconds(v: string | number | boolean | undefined): number {
  return typeof v === 'number' && Number.isFinite(v) ? Math.min(86_400, Math.max(1, Math.ceil(v))) : 1;
}
