import type { Bytes } from '@custody/core';

/** Every evidence format Custody verifies. `sim` is software-only, for development. */
export type Platform = 'sev-snp' | 'tdx' | 'nitro' | 'tpm' | 'azure-vtpm' | 'nvidia' | 'sim';

export const PLATFORMS: readonly Platform[] = ['sev-snp', 'tdx', 'nitro', 'tpm', 'azure-vtpm', 'nvidia', 'sim'];

/** The pipeline stages a verifier reports, in the order they usually run. */
export type StepName =
  | 'parse'
  | 'collateral'
  | 'chain'
  | 'revocation'
  | 'signature'
  | 'tcb'
  | 'binding'
  | 'measurements'
  | 'nonce'
  | 'debug';

export interface StepResult {
  name: StepName;
  ok: boolean;
  /** What was checked and against what: human-readable, never secret. */
  detail: string;
  /** Stable error code when `ok` is false. */
  code?: string;
  /**
   * False when the step passed without checking (optional collateral, such as a CRL, was not
   * supplied): reports show it as SKIP, not PASS. Absent otherwise.
   */
  checked?: false;
}

/** Intel's TCB statuses (also used for other platforms where a status is derived). */
export type TcbStatus =
  | 'UpToDate'
  | 'SWHardeningNeeded'
  | 'ConfigurationNeeded'
  | 'ConfigurationAndSWHardeningNeeded'
  | 'OutOfDate'
  | 'OutOfDateConfigurationNeeded'
  | 'Revoked';

export interface CertificateSummary {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  /** SHA-256 of the DER certificate, hex. */
  sha256: string;
}

export interface TcbClaims {
  status?: TcbStatus;
  advisoryIds?: string[];
  tcbDate?: string;
  /** Named security version numbers / firmware levels. */
  components: Record<string, number | string>;
}

/** Normalised claims: the same shape for every platform, so policies read one vocabulary. */
export interface NormalizedClaims {
  platform: Platform;
  /** True only for `sim`: no hardware stands behind these claims. */
  simulated: boolean;
  /** Named measurements as lowercase hex (e.g. `measurement`, `mrtd`, `rtmr0`, `pcr0`). */
  measurements: Record<string, string>;
  /** The data the TEE bound into the evidence (report data / user data / qualifying data), hex. */
  reportData: string;
  debug: boolean;
  tcb?: TcbClaims;
  signer: {
    /** Leaf first. */
    chain: CertificateSummary[];
    /** SHA-256 of the trust anchor the chain ended at, hex. */
    rootSha256?: string;
    /** e.g. `VCEK`, `VLEK`, `PCK`, `AWS Nitro Root-G1`, `AK (HCLAkPub)`. */
    kind?: string;
  };
  /** Nonce carried by the evidence where the format has one distinct from report data. */
  nonce?: string;
  /** Public key carried by the evidence (Nitro `public_key`, Azure HCLAkPub), hex or JWK JSON. */
  publicKey?: string;
  /** Format-specific facts (policy bits, VMPL, QE identity, PCR bank, ...). JSON-safe values only. */
  platformClaims: Record<string, unknown>;
  /** Sub-devices of composite evidence (e.g. Azure: the SNP/TDX report behind the vTPM). */
  devices?: Record<string, NormalizedClaims>;
}

export interface VerificationErrorInfo {
  code: string;
  message: string;
  step?: StepName;
}

export interface VerificationResult {
  ok: boolean;
  platform: Platform;
  /** Present whenever parsing succeeded, also on failure, so a person can see what was claimed. */
  claims?: NormalizedClaims;
  steps: StepResult[];
  errors: VerificationErrorInfo[];
  warnings: string[];
  /** The verification time used, RFC 3339. */
  verifiedAt: string;
}

/**
 * Everything a verifier may need beyond the evidence itself. All byte inputs are untrusted.
 * - `certs`: extra certificates (DER or PEM, one or many per blob), e.g. a VCEK and ASK/ARK.
 * - `collateral`: named blobs, names documented per verifier (e.g. TDX `tcbInfo`, `qeIdentity`,
 *   `pckCrl`, `rootCaCrl`), or a single `bundle` JSON.
 * - `roots`: trust anchors that replace the verifier's pinned vendor roots (tests, private PKI).
 */
export interface VerifyInput {
  evidence: Uint8Array;
  certs?: Uint8Array[];
  collateral?: Record<string, Uint8Array>;
  roots?: Uint8Array[];
  /** The verification time. Required: verifiers never read the wall clock. */
  now: Date;
  /** Expected nonce; when given, a verifier fails unless the evidence carries it. */
  nonce?: Uint8Array;
}

export interface EvidenceVerifier {
  readonly platform: Platform;
  /** Cheap sniff of the bytes (magic numbers, JSON shape); no verification. */
  detect(evidence: Uint8Array): boolean;
  verify(input: VerifyInput): Promise<VerificationResult>;
}

export type { Bytes };
