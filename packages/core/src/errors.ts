/**
 * Typed errors with stable codes. Tests and callers match on `code`, never on messages.
 * Messages must never contain key material or plaintext; `detail` holds only public facts
 * (offsets, lengths, identifiers, digests).
 */

/** Every stable code Custody emits. Adding a code is fine; renaming one is a breaking change. */
export const ErrorCodes = {
  // input and parsing
  ERR_INPUT_TRUNCATED: 'input ended before the structure was complete',
  ERR_INPUT_TOO_LARGE: 'input exceeds the size bound for this format',
  ERR_INPUT_MALFORMED: 'input is not well-formed for this format',
  ERR_INPUT_UNSUPPORTED: 'input uses a version or algorithm this verifier does not support',
  ERR_FORMAT_UNKNOWN: 'evidence format could not be detected',
  ERR_USAGE: 'invalid command-line usage or arguments',
  // certificates and chains
  ERR_CERT_PARSE: 'certificate could not be parsed',
  ERR_CERT_CHAIN: 'certificate chain does not link to a trusted root',
  ERR_CERT_SIGNATURE: 'certificate signature is invalid',
  ERR_CERT_EXPIRED: 'certificate is outside its validity period at the verification time',
  ERR_CERT_REVOKED: 'certificate is revoked by a CRL',
  ERR_CERT_ROOT_UNTRUSTED: 'root certificate does not match a pinned trust anchor',
  ERR_CERT_MISSING: 'a required certificate is missing',
  ERR_CRL_INVALID: 'CRL is malformed or its signature is invalid',
  ERR_CRL_STALE: 'CRL is past its nextUpdate at the verification time',
  // evidence
  ERR_EVIDENCE_SIGNATURE: 'evidence signature is invalid',
  ERR_EVIDENCE_BINDING: 'evidence is not bound to the expected data',
  ERR_EVIDENCE_NONCE: 'evidence nonce does not match the expected nonce',
  ERR_EVIDENCE_DEBUG: 'evidence comes from a debug-mode TEE',
  ERR_EVIDENCE_SIMULATED: 'evidence is simulated (no hardware TEE) and not allowed here',
  ERR_EVIDENCE_MEASUREMENT: 'a measurement does not match its reference value',
  ERR_EVIDENCE_TCB_MISMATCH: 'TCB reported by evidence does not match its signing certificate',
  ERR_EVIDENCE_CHIP_ID: 'chip id in the evidence does not match the signing certificate',
  // TCB and collateral
  ERR_TCB_OUT_OF_DATE: 'platform TCB is out of date',
  ERR_TCB_REVOKED: 'platform TCB is revoked',
  ERR_TCB_NO_MATCH: 'no TCB level in the TCB info matches the platform',
  ERR_COLLATERAL_MISSING: 'required collateral is missing',
  ERR_COLLATERAL_INVALID: 'collateral is malformed or its signature is invalid',
  ERR_COLLATERAL_STALE: 'collateral is past its nextUpdate at the verification time',
  ERR_COLLATERAL_MISMATCH: 'collateral does not apply to this evidence',
  // attesters
  ERR_ATTESTER_UNAVAILABLE: 'no attestation device is available on this machine',
  ERR_ATTESTER_FAILED: 'collecting evidence failed',
  // policy and results
  ERR_POLICY_INVALID: 'policy is malformed',
  ERR_POLICY_DENIED: 'policy denied the request',
  // generic
  ERR_INTERNAL: 'internal error',
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

export interface CustodyErrorOptions {
  cause?: unknown;
  /** Public, non-secret facts about the failure (offsets, lengths, ids). */
  detail?: Record<string, string | number | boolean>;
}

export class CustodyError extends Error {
  readonly code: string;
  readonly detail: Record<string, string | number | boolean> | undefined;

  constructor(code: string, message?: string, options: CustodyErrorOptions = {}) {
    super(message ?? (ErrorCodes as Record<string, string>)[code] ?? code, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'CustodyError';
    this.code = code;
    this.detail = options.detail;
  }

  toJSON(): { code: string; message: string; detail?: Record<string, string | number | boolean> } {
    return this.detail ? { code: this.code, message: this.message, detail: this.detail } : { code: this.code, message: this.message };
  }
}

/** Raised by parsers of untrusted bytes. */
export class ParseError extends CustodyError {
  constructor(code: ErrorCode, message?: string, options?: CustodyErrorOptions) {
    super(code, message, options);
    this.name = 'ParseError';
  }
}

/** Raised when verification of evidence, certificates or collateral fails. */
export class VerificationError extends CustodyError {
  constructor(code: ErrorCode, message?: string, options?: CustodyErrorOptions) {
    super(code, message, options);
    this.name = 'VerificationError';
  }
}

export function isCustodyError(e: unknown): e is CustodyError {
  return e instanceof CustodyError;
}

/** Normalises anything thrown into a CustodyError, keeping its code when it has one. */
export function toCustodyError(e: unknown, fallback: ErrorCode = 'ERR_INTERNAL'): CustodyError {
  if (e instanceof CustodyError) return e;
  const name = e instanceof Error ? e.name : 'unknown';
  return new CustodyError(fallback, undefined, { cause: e, detail: { thrown: name } });
}
