/**
 * Typed errors with stable codes. Tests and callers match on `code`, never on messages.
 * Messages must never contain key material or plaintext; `detail` holds only public facts
 * (offsets, lengths, identifiers, digests).
 */

/** Every stable code Custody emits. Adding a code is fine; renaming one is a breaking change. */
export const ErrorCodes = {
  // input and parsing
  ERR_INPUT_TRUNCATED: 'input ended before the structure was complete',
  ERR_FILE_NOT_FOUND: 'the file or directory does not exist',
  ERR_FILE_NOT_REGULAR: 'the path names a directory, FIFO, device or socket where a regular file is needed',
  ERR_FILE_UNREADABLE: 'the file exists but cannot be read (permissions or an I/O error)',
  ERR_FILE_EXISTS: 'the file exists and is not replaced',
  ERR_LISTEN: 'the service cannot listen on this address (in use, not permitted, or not an address of this machine)',
  ERR_FILE_UNWRITABLE: 'the file cannot be written (disk full, read-only or permissions); nothing was written',
  ERR_INPUT_TOO_LARGE: 'input exceeds the size bound for this format',
  ERR_INPUT_MALFORMED: 'input is not well-formed for this format',
  ERR_INPUT_UNSUPPORTED: 'input uses a version or algorithm this verifier does not support',
  ERR_FORMAT_UNKNOWN: 'evidence format could not be detected',
  ERR_USAGE: 'invalid command-line usage or arguments',
  ERR_CBOR_DUPLICATE_KEY: 'CBOR map holds the same key twice',
  ERR_CBOR_NOT_DETERMINISTIC: 'CBOR item is not in deterministic (core) encoding where that is required',
  ERR_CBOR_INDEFINITE_LENGTH: 'CBOR indefinite-length item where only definite lengths are accepted',
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
  ERR_EVIDENCE_DEVICE_REPEATED: 'the same device (GPU attestation key) is presented more than once',
  ERR_EVIDENCE_NONCE: 'evidence nonce does not match the expected nonce',
  ERR_EVIDENCE_DEBUG: 'evidence comes from a debug-mode TEE',
  ERR_EVIDENCE_SIMULATED: 'evidence is simulated (no hardware TEE) and not allowed here',
  ERR_EVIDENCE_MEASUREMENT: 'a measurement does not match its reference value',
  ERR_EVIDENCE_TCB_MISMATCH: 'TCB reported by evidence does not match its signing certificate',
  ERR_EVIDENCE_CHIP_ID: 'chip id in the evidence does not match the signing certificate',
  ERR_TPM_PCR_DIGEST: 'PCR values do not hash to the pcrDigest signed in the TPM quote',
  ERR_TPM_PCR_MISSING: 'a PCR selected by the TPM quote has no value in the evidence',
  ERR_TPM_AK_ATTRIBUTES: 'the TPM attestation key is not a restricted signing key',
  ERR_AZURE_AK_MISSING: 'the Azure HCL runtime data holds no HCLAkPub attestation key',
  ERR_AZURE_VMPL: 'the SEV-SNP report behind the Azure vTPM was not produced at VMPL 0 (by the paravisor)',
  ERR_AZURE_TD_QUOTE_MISMATCH: 'the TD quote does not describe the same TD as the TDREPORT in the Azure HCL report',
  // TCB and collateral
  ERR_TCB_OUT_OF_DATE: 'platform TCB is out of date',
  ERR_TCB_REVOKED: 'platform TCB is revoked',
  ERR_TCB_NO_MATCH: 'no TCB level in the TCB info matches the platform',
  ERR_COLLATERAL_MISSING: 'required collateral is missing',
  ERR_COLLATERAL_INVALID: 'collateral is malformed or its signature is invalid',
  ERR_COLLATERAL_STALE: 'collateral is past its nextUpdate at the verification time',
  ERR_COLLATERAL_MISMATCH: 'collateral does not apply to this evidence',
  ERR_TDX_PCK_CERT: 'the quote signer is not an Intel SGX PCK certificate with well-formed SGX extensions',
  ERR_TDX_QE_IDENTITY: 'the quoting enclave does not match the QE Identity (MRSIGNER, ISVPRODID, MISCSELECT or ATTRIBUTES)',
  ERR_TDX_MODULE_MISMATCH: 'the TDX module (version, MRSIGNERSEAM or SEAMATTRIBUTES) does not match the TCB Info',
  ERR_SNP_PRODUCT: 'the SEV-SNP report and its certificates name different AMD products (Milan, Genoa, Turin), or the product has no trust anchors',
  ERR_COLLATERAL_UNAVAILABLE: 'the collateral service (AMD KDS, Intel PCS or a PCCS) could not be reached, timed out or answered with a server error; retry later',
  ERR_COLLATERAL_NOT_FOUND: 'the collateral service has no collateral for this evidence (HTTP 404 or 410)',
  ERR_COLLATERAL_RESPONSE: 'the collateral service answered unusably: an unexpected status, a response over the size bound, or a missing or malformed issuer-chain header',
  ERR_SNP_VLEK_NOT_FETCHABLE: 'the SEV-SNP report is signed by a VLEK, which the cloud provider issues and AMD KDS does not serve; supply the VLEK certificate',
  ERR_COLLATERAL_CACHE_DIR: 'the collateral cache directory is refused: not a directory, not owned by the current user, writable by group or others, or it could not be created',
  // attesters
  ERR_ATTESTER_UNAVAILABLE: 'no attestation device is available on this machine',
  ERR_ATTESTER_FAILED: 'collecting evidence failed',
  // policy and results
  ERR_POLICY_INVALID: 'policy is malformed',
  ERR_POLICY_DENIED: 'policy denied the request',
  ERR_POLICY_PLATFORM: 'the policy has no reference values for this platform',
  ERR_POLICY_RULE: 'a policy rule could not be evaluated',
  ERR_POLICY_ADVISORY: 'the platform is affected by a security advisory the policy does not accept',
  ERR_POLICY_SIGNER: 'the evidence signer root is not one the policy accepts',
  ERR_POLICY_CORIM: 'the CoRIM holds no reference values this importer understands',
  ERR_EAR_MALFORMED: 'attestation result token is malformed or not an EAR',
  ERR_EAR_SIGNATURE: 'attestation result signature is invalid',
  ERR_EAR_KEY_UNKNOWN: 'attestation result is signed by a key not in the trusted key set',
  ERR_EAR_EXPIRED: 'attestation result has expired',
  ERR_EAR_NOT_YET_VALID: 'attestation result is not yet valid (issued in the future)',
  ERR_EAR_NONCE: 'attestation result nonce does not match the expected nonce',
  ERR_EAR_CLAIMS: 'attestation result claims fail validation (issuer, audience, profile)',
  ERR_EAR_KEY: 'signing key is unsupported or unusable for attestation results',
  ERR_EAR_KEY_OWNER: 'the EAR signing key file belongs to another user than the one reading or rewriting it',
  // transparency log: signed notes, checkpoints, proofs, tiles, witnesses
  ERR_NOTE_MALFORMED: 'signed note is malformed',
  ERR_NOTE_KEY: 'note verifier or signer key is malformed or its key ID does not match',
  ERR_NOTE_SIGNATURE: 'a note signature from a known key does not verify',
  ERR_NOTE_UNVERIFIED: 'no signature on the note is from a trusted key',
  ERR_TLOG_CHECKPOINT: 'checkpoint body is malformed',
  ERR_TLOG_ORIGIN: 'checkpoint origin is not the expected log',
  ERR_TLOG_INCLUSION: 'inclusion proof does not verify against the tree root',
  ERR_TLOG_CONSISTENCY: 'consistency proof does not verify between the two tree roots',
  ERR_TLOG_PROOF: 'transparency log proof file is malformed',
  ERR_TLOG_TILE: 'log tile is missing, malformed or does not match the tree',
  ERR_TLOG_ENTRY: 'log entry or entry bundle is malformed or too large',
  ERR_TLOG_ROLLBACK: 'checkpoint is smaller than one already seen for this log',
  ERR_TLOG_SPLIT_VIEW: 'two checkpoints for this log cannot both be true (split view)',
  ERR_TLOG_POLICY: 'transparency log policy is malformed',
  ERR_TLOG_QUORUM: 'checkpoint is not cosigned by a quorum of trusted witnesses',
  ERR_TLOG_EVENT: 'event does not match the Custody event schema',
  ERR_TLOG_EVENT_SECRET: 'event field looks like key material or plaintext and is refused',
  ERR_TLOG_UNAVAILABLE: 'the log storage or sequencer is unavailable',
  ERR_TLOG_LOCKED: 'the log database is in use by another process',
  ERR_WITNESS_UNKNOWN_LOG: 'the witness does not know this log origin',
  ERR_WITNESS_CONFLICT: 'the old size does not match the latest checkpoint the witness cosigned',
  ERR_WITNESS_BAD_REQUEST: 'add-checkpoint request is malformed',
  ERR_WITNESS_FORBIDDEN: 'checkpoint is not signed by a key the witness trusts for this log',
  ERR_WITNESS_UNAVAILABLE: 'the witness could not be reached or answered unexpectedly',
  ERR_WITNESS_CLOCK: "the witness's cosignature timestamp is too far from the log's clock to be counted",
  // encryption: HPKE (RFC 9180), Oblivious HTTP (RFC 9458, chunked OHTTP)
  ERR_HPKE_UNSUPPORTED: 'HPKE KEM, KDF or AEAD id is not supported here',
  ERR_HPKE_KEY: 'HPKE key is malformed or does not belong to the KEM',
  ERR_HPKE_PARAMS: 'HPKE inputs are invalid (mode inputs, psk, info, exporter context or length)',
  ERR_HPKE_ENCAP: 'HPKE encapsulation to the recipient public key failed',
  ERR_HPKE_DECAP: 'HPKE encapsulated key is malformed or invalid',
  ERR_HPKE_SEAL: 'HPKE encryption failed',
  ERR_HPKE_OPEN: 'HPKE decryption failed: ciphertext, aad, info, psk or key does not match',
  ERR_HPKE_EXPORT_ONLY: 'the HPKE suite is export-only and cannot seal or open',
  ERR_HPKE_MESSAGE_LIMIT: 'HPKE context sequence number is exhausted',
  ERR_OHTTP_KEY_ID: 'encapsulated request names a key id the gateway does not hold (refresh the key configuration)',
  ERR_OHTTP_SUITE: 'no KEM, KDF and AEAD combination in common with the key configuration',
  ERR_OHTTP_REQUEST_DECRYPT: 'encapsulated request could not be decrypted',
  ERR_OHTTP_RESPONSE_DECRYPT: 'encapsulated response could not be decrypted',
  ERR_OHTTP_TRUNCATED: 'chunked OHTTP message ended before its authenticated final chunk',
  ERR_OHTTP_MEDIA_TYPE: 'content type is not the expected Oblivious HTTP media type',
  // key broker: keys, key stores, sessions, administrative authentication
  ERR_KEY_NOT_FOUND: 'no key with this name (or id) exists in this tenant',
  ERR_KEY_EXISTS: 'a key with this name already exists in this tenant',
  ERR_KEY_NAME: 'key name or tenant name is not valid',
  ERR_KEY_TYPE: 'the operation or option does not fit the key type',
  ERR_KEY_MATERIAL: 'imported key material is malformed or has the wrong size for its type',
  ERR_KEY_REVOKED: 'the key is revoked: nothing is released or wrapped with it',
  ERR_KEY_DESTROYED: 'the key material has been destroyed',
  ERR_KEY_STATE: 'the key is not in a state that allows this operation',
  ERR_KEY_VERSION: 'the key version does not exist or may not be used for this operation',
  ERR_KEY_NOT_EXPORTABLE: 'the key is not exportable and is never released',
  ERR_KEY_NO_RELEASE_POLICY: 'the key has no release policy, so it is never released',
  ERR_KEY_UNSUPPORTED: 'the key store does not support this key type or option',
  ERR_KEY_RECIPIENT: 'the recipient public key is malformed or its curve is not supported by this key store',
  ERR_KEY_UNWRAP: 'wrapped key could not be unwrapped: wrong key, wrong context or tampered data',
  ERR_KEY_CONFLICT: 'the key changed concurrently; retry the operation',
  ERR_AUTH_REQUIRED: 'authentication is required (Authorization: Bearer <API key>)',
  ERR_AUTH_INVALID: 'the API key is malformed, unknown or revoked',
  ERR_AUTH_ROLE: 'the role of this API key does not allow this operation',
  ERR_AUTH_TENANT: 'this API key may not act on another tenant',
  ERR_SESSION_NOT_FOUND: 'no session or challenge with this id or nonce exists',
  ERR_SESSION_EXPIRED: 'the session or its nonce has expired',
  ERR_SESSION_NONCE_USED: 'the nonce was already used (nonces are single-use)',
  ERR_SESSION_MISMATCH: 'the attestation result does not belong to this session',
  ERR_STORE_UNAVAILABLE: 'the key store or metadata store is unavailable; nothing was released (retry later)',
  ERR_STORE_MASTER_KEY: 'the master key is missing, malformed, readable by others, or does not match the key store',
  ERR_STORE_CORRUPT: 'stored key material failed authentication (tampered data or wrong master key)',
  ERR_STORE_BACKEND: 'the key store backend rejected the operation',
  ERR_STORE_CONFIG: 'the key store or metadata store configuration is invalid',
  ERR_STORE_AUDIT_UNAVAILABLE: 'the audit sink is unavailable; see detail.applied for whether the change was made',
  ERR_MASTER_KEY_TPM: 'the TPM-sealed master key could not be sealed or unsealed (TPM absent, PCRs changed, or sealed blob not for this TPM); see detail.reason',
  ERR_RUNTIME_DATA: 'runtime data is not the canonical JSON {nonce, tee-pubkey} of the key release handshake',
  ERR_VERIFIER_UNAVAILABLE: 'the evidence verifier is unavailable; nothing was released, retry later',
  ERR_RATE_LIMITED: 'too many handshake challenges from this client address or API key, or too many open sessions on this broker; retry after Retry-After seconds (see detail.scope)',
  ERR_POLICY_NOT_STORED: "the tenant has no appraisal policy stored through the API (the broker's file policy is in force); nothing was changed",
  ERR_POLICY_CONFLICT: "the tenant's stored appraisal policy changed while it was being deleted; nothing was deleted, retry",
  // confidential inference: gateway, client SDK, receipts
  ERR_GATEWAY_PLAINTEXT: 'confidential routes are reachable only through Oblivious HTTP (POST /ohttp); plaintext requests are refused',
  ERR_GATEWAY_NOT_ATTESTED: 'the gateway has not completed attestation and serves no confidential route yet',
  ERR_GATEWAY_ATTESTATION_LAPSED: 'the gateway attestation result expired and could not be renewed; confidential routes are closed',
  ERR_GATEWAY_ATTESTATION_REVOKED: 'the gateway attestation was refused or revoked; confidential routes are closed',
  ERR_GATEWAY_REPLAY: 'the encapsulated request was already received (replay)',
  ERR_GATEWAY_REQUEST_DATE: 'the request date is missing or outside the accepted window',
  ERR_GATEWAY_ROUTE: 'no confidential route with this method and path',
  ERR_GATEWAY_MODEL: 'the requested model is not served by this gateway',
  ERR_GATEWAY_BACKEND: 'the model backend failed or answered with an error',
  ERR_GATEWAY_BACKEND_UNAVAILABLE: 'the model backend is not available on this machine',
  ERR_GATEWAY_LEDGER: 'the ledger did not accept the receipt; the response is withheld',
  ERR_GATEWAY_OVERLOADED: 'the gateway is at a safety limit (replay window, attestation queue or ledger proofs in flight); retry later',
  ERR_GATEWAY_CONFIG: 'the gateway configuration is invalid',
  ERR_GATEWAY_MODEL_FILE: 'the model file is missing or is not a well-formed GGUF file',
  ERR_MODEL_SEALED: 'not a sealed model file, or its header is malformed or of an unsupported format',
  ERR_MODEL_UNSEAL: 'the sealed model did not decrypt: a wrong key, or a tampered, reordered or truncated file; no plaintext was kept',
  ERR_MODEL_KEY_VERSION: 'the broker released another version of the model key than the one the model was sealed under; reseal the model under the current version',
  ERR_MODEL_PLAINTEXT_DIR: 'the directory for the unsealed model is not memory-backed (tmpfs or ramfs): decrypted weights would reach a disk',
  ERR_GATEWAY_REPLAY_STORE: 'the shared anti-replay store is unavailable, locked or full; the request was refused unprocessed (retry later)',
  ERR_GATEWAY_MODEL_KEY: 'the broker did not release the model key (refused, revoked, destroyed or malformed), or it did not open the sealed model; see detail.code',
  ERR_GATEWAY_IDENTITY_KEY: 'the broker did not release the gateway identity key (refused, revoked or malformed); the gateway does not serve with shared keys; see detail.code',
  ERR_GATEWAY_BUNDLE_UNKNOWN: 'the gateway keeps no attestation bundle with this digest (never published, or older than it keeps)',
  ERR_GATEWAY_TENANT_LIMIT: 'the tenant is at its limit of requests in progress or requests a minute; nothing was forwarded (retry after the Retry-After seconds)',
  ERR_RELAY_GATEWAY_UNREACHABLE: 'the OHTTP relay could not reach the gateway (refused, or not resolvable); the gateway did not see the request: retry later',
  ERR_RELAY_GATEWAY_ANSWER: 'the gateway got the request, but its answer to the OHTTP relay broke off, was not valid HTTP, or never came (the connection closed); it may have acted on the request',
  ERR_RELAY_GATEWAY_TIMEOUT: 'the gateway did not begin its answer to the OHTTP relay in time',
  ERR_RELAY_OVERLOADED: 'the OHTTP relay holds as many arriving request bodies as it allows; retry later',
  ERR_SDK_TRUST_CONFIG: 'no trust anchor configured: pin a broker JWKS or give an appraisal policy',
  ERR_SDK_DISCOVERY: 'the gateway attestation bundle could not be fetched or is malformed',
  ERR_SDK_PLATFORM: 'the gateway runs on a platform the client does not accept',
  ERR_SDK_DEVICE_MISSING: 'the gateway did not prove as many attested GPUs as the client requires',
  ERR_SDK_STALE: 'the gateway attestation is older than the accepted age',
  ERR_SDK_NOT_VERIFIED: 'the gateway did not pass verification; no request was sent',
  ERR_SDK_GATEWAY: 'the gateway or relay refused the encapsulated request',
  ERR_RECEIPT_MISSING: 'the response carries no receipt',
  ERR_RECEIPT_MALFORMED: 'the receipt is malformed',
  ERR_RECEIPT_SIGNATURE: 'the receipt signature does not verify with the attested receipt key',
  ERR_RECEIPT_MISMATCH: 'the receipt does not describe this request and response',
  // generic
  ERR_CRYPTO_UNAVAILABLE: 'WebCrypto is not available in this context (a browser page that is not https:// or localhost)',
  ERR_SERVICE_UNAVAILABLE: 'a service Custody depends on is unavailable; nothing was released, retry later',
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
    // A code may come from another service's answer: own members only, so `constructor` is no known code.
    super(message ?? (Object.hasOwn(ErrorCodes, code) ? (ErrorCodes as Record<string, string>)[code] : undefined) ?? code, options.cause === undefined ? undefined : { cause: options.cause });
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

/**
 * A server that could not listen on `address` (host:port), named with the system's code: in use
 * (EADDRINUSE), not permitted (EACCES), or not an address of this machine (EADDRNOTAVAIL).
 */
export function listenFailure(e: unknown, address: string): CustodyError {
  const errno = typeof (e as { code?: unknown } | null)?.code === 'string' ? (e as { code: string }).code : 'unknown';
  const why = errno === 'EADDRINUSE' ? 'the port is in use' : errno === 'EACCES' ? 'not permitted' : errno === 'EADDRNOTAVAIL' ? 'not an address of this machine' : errno;
  return new CustodyError('ERR_LISTEN', `cannot listen on ${address}: ${why}`, { cause: e, detail: { address, errno } });
}
