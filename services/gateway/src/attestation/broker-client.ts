/**
 * What the gateway needs from the key broker, in the shape of docs/key-release-protocol.md:
 * a challenge (single-use nonce and session), the attestation that returns an EAR, the
 * broker's JWKS (to read and check its own EAR), and optionally a model key wrapped to the
 * gateway's TEE key.
 */
import type { JSONWebKeySet } from 'jose';

export interface BrokerChallenge {
  readonly session: string;
  readonly nonce: Uint8Array;
  readonly expiresAt: Date;
}

export interface BrokerAttestRequest {
  readonly session: string;
  readonly evidence: Uint8Array;
  /** The JCS runtime data text whose digest is in the evidence. */
  readonly runtimeData: string;
  readonly platform: string;
  /**
   * Evidence of the GPUs attached to the TEE, each bound to the same runtime data (nonce
   * SHA-256 of it): appraised with the CPU evidence as one composite (EAR submodules gpu0, ...).
   */
  readonly devices?: readonly { readonly platform: 'nvidia'; readonly evidence: Uint8Array }[];
}

export interface BrokerAttestResult {
  /** The EAR (JWT) for this session. */
  readonly ear: string;
  /** Where the broker logged its appraisal, when it says. */
  readonly ledgerIndex?: number;
}

export interface ReleasedKeyEnvelope {
  readonly wrappedKey: Uint8Array;
  readonly context: Readonly<Record<string, string | number | boolean>>;
}

export interface BrokerClient {
  challenge(): Promise<BrokerChallenge>;
  attest(request: BrokerAttestRequest): Promise<BrokerAttestResult>;
  jwks(): Promise<JSONWebKeySet>;
  /**
   * The named key wrapped (HPKE, custody wrapped-key envelope) to the TEE key in the EAR, with
   * the context the broker bound into the envelope's AAD (it names the key and its version).
   */
  releaseKey?(name: string, request: { readonly session: string; readonly ear: string }): Promise<ReleasedKeyEnvelope>;
}

/** Codes with which a broker refuses definitively (the gateway is then revoked, not merely lapsing). */
export function isRefusal(code: string): boolean {
  return /^ERR_(POLICY|EVIDENCE|EAR|TCB|CERT|COLLATERAL_MISMATCH|TPM|SESSION_MISMATCH|KEY_REVOKED|AUTH)/.test(code);
}

/**
 * The key a release envelope names, read from its authenticated context (the wrapping's AAD):
 * the broker service writes `name` (docs/key-release-protocol.md §4), the in-process
 * development broker `key`.
 */
export function releasedKeyName(context: ReleasedKeyEnvelope['context']): string | undefined {
  const name = context.name ?? context.key;
  return typeof name === 'string' ? name : undefined;
}

/** The key version a release envelope's authenticated context names, when it is a positive integer. */
export function releasedKeyVersion(context: ReleasedKeyEnvelope['context']): number | undefined {
  const v = context.version;
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 1 ? v : undefined;
}

/**
 * Whether a failed identity key release is definitive (the gateway stops serving with the
 * shared keys) rather than an outage: every refusal code, and any ERR_KEY_* but a concurrent
 * change (not found, revoked, destroyed, not exportable, no release policy, malformed material,
 * a version going backwards, an envelope that does not open).
 */
export function isIdentityRefusal(code: string): boolean {
  return isRefusal(code) || (code.startsWith('ERR_KEY_') && code !== 'ERR_KEY_CONFLICT');
}
