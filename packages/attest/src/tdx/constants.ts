/**
 * Sizes and identifiers from the Intel TDX DCAP Quoting Library API (appendix "TD Quote format")
 * and the Intel SGX PCK Certificate and CRL Profile.
 */

/** Quotes are about 5 KB (most of it the PEM PCK chain); anything far larger is not a quote. */
export const MAX_QUOTE_SIZE = 64 * 1024;

export const QUOTE_HEADER_SIZE = 48;
/** TD report body of a v4 quote / v5 body type 2 (TDX 1.0). */
export const TD_REPORT10_SIZE = 584;
/** TD report body of v5 body type 3 (TDX 1.5): TD 1.0 body + TEE_TCB_SVN_2 (16) + MRSERVICETD (48). */
export const TD_REPORT15_SIZE = 648;
/** SGX enclave report (the QE report). */
export const ENCLAVE_REPORT_SIZE = 384;
/** The raw TDREPORT_STRUCT the TDX module returns to a TD (TDG.MR.REPORT). */
export const TDREPORT_SIZE = 1024;

export const ECDSA_P256_SIGNATURE_SIZE = 64;
export const ECDSA_P256_KEY_SIZE = 64;

/** Attestation key type 2: ECDSA-256-with-P-256 curve. */
export const ATTESTATION_KEY_ECDSA_P256 = 2;
export const TEE_TYPE_SGX = 0x00000000;
export const TEE_TYPE_TDX = 0x00000081;

/** v5 body descriptor types. */
export const BODY_SGX_ENCLAVE_REPORT = 1;
export const BODY_TD_REPORT10 = 2;
export const BODY_TD_REPORT15 = 3;

/** Certification data types (QE Certification Data, Intel DCAP). */
export const CERT_DATA_PCK_CHAIN = 5;
export const CERT_DATA_QE_REPORT = 6;

/** Bounds on nested variable-length fields: an honest QE emits far less. */
export const MAX_QE_AUTH_DATA = 4096;
export const MAX_CERT_CHAIN_DATA = 32 * 1024;

/** Intel's QE vendor id (939A7233-F79C-4CA9-940A-0DB3957F0607). */
export const INTEL_QE_VENDOR_ID = '939a7233f79c4ca9940a0db3957f0607';

/** Intel SGX PCK certificate extensions (PCK Certificate and CRL Profile, section 1.3.5). */
export const SGX_OID = {
  extensions: '1.2.840.113741.1.13.1',
  ppid: '1.2.840.113741.1.13.1.1',
  tcb: '1.2.840.113741.1.13.1.2',
  /** .2.1 .. .2.16 are the SGX TCB component SVNs, .2.17 PCESVN, .2.18 CPUSVN. */
  pceSvn: '1.2.840.113741.1.13.1.2.17',
  cpuSvn: '1.2.840.113741.1.13.1.2.18',
  pceId: '1.2.840.113741.1.13.1.3',
  fmspc: '1.2.840.113741.1.13.1.4',
  sgxType: '1.2.840.113741.1.13.1.5',
  platformInstanceId: '1.2.840.113741.1.13.1.6',
  configuration: '1.2.840.113741.1.13.1.7',
} as const;

/** TDATTRIBUTES bits (Intel TDX module ABI, TD_PARAMS.ATTRIBUTES). */
export const TD_ATTRIBUTE_BITS = {
  debug: 0,
  septVeDisable: 28,
  migratable: 29,
  pks: 30,
  keyLocker: 31,
  perfmon: 63,
} as const;
