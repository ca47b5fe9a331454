import type { HashName } from '@custody/core';

/** TPM_GENERATED_VALUE: only the TPM puts this magic at the start of data it signs. */
export const TPM_GENERATED_VALUE = 0xff544347;

/** TPM_ST attestation structure tags (TPM 2.0 Part 2, 6.9). */
export const TPM_ST_ATTEST = {
  nv: 0x8014,
  commandAudit: 0x8015,
  sessionAudit: 0x8016,
  certify: 0x8017,
  quote: 0x8018,
  time: 0x8019,
  creation: 0x801a,
  nvDigest: 0x801c,
} as const;

/** TPM_ALG_ID values used by quotes and attestation keys (TPM 2.0 Part 2, 6.3). */
export const TPM_ALG = {
  rsa: 0x0001,
  sha1: 0x0004,
  hmac: 0x0005,
  aes: 0x0006,
  keyedhash: 0x0008,
  xor: 0x000a,
  sha256: 0x000b,
  sha384: 0x000c,
  sha512: 0x000d,
  null: 0x0010,
  sm3_256: 0x0012,
  rsassa: 0x0014,
  rsaes: 0x0015,
  rsapss: 0x0016,
  oaep: 0x0017,
  ecdsa: 0x0018,
  ecdh: 0x0019,
  ecdaa: 0x001a,
  sm2: 0x001b,
  ecschnorr: 0x001c,
  ecmqv: 0x001d,
  kdf1_sp800_56a: 0x0020,
  kdf2: 0x0021,
  kdf1_sp800_108: 0x0022,
  ecc: 0x0023,
  symcipher: 0x0025,
} as const;

/** TPM_ECC_CURVE identifiers of the NIST curves WebCrypto supports. */
export const TPM_ECC_CURVE = { p256: 0x0003, p384: 0x0004, p521: 0x0005 } as const;

export type TpmHashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';
export type EcCurveName = 'P-256' | 'P-384' | 'P-521';

const HASHES: Record<number, { name: TpmHashName; webcrypto: HashName; size: number }> = {
  [TPM_ALG.sha1]: { name: 'sha1', webcrypto: 'SHA-1', size: 20 },
  [TPM_ALG.sha256]: { name: 'sha256', webcrypto: 'SHA-256', size: 32 },
  [TPM_ALG.sha384]: { name: 'sha384', webcrypto: 'SHA-384', size: 48 },
  [TPM_ALG.sha512]: { name: 'sha512', webcrypto: 'SHA-512', size: 64 },
};

/** The hash algorithms Custody can recompute, or undefined (SM3, SHA-3, unknown). */
export function tpmHash(alg: number): { name: TpmHashName; webcrypto: HashName; size: number } | undefined {
  return HASHES[alg];
}

export function tpmHashByName(name: string): { alg: number; name: TpmHashName; webcrypto: HashName; size: number } | undefined {
  for (const [alg, h] of Object.entries(HASHES)) if (h.name === name) return { alg: Number(alg), ...h };
  return undefined;
}

/** Digest size of every TPM hash algorithm the parser may meet, known or not recomputable. */
export function tpmDigestSize(alg: number): number | undefined {
  if (alg === TPM_ALG.sm3_256) return 32;
  if (alg === 0x0027) return 32; // SHA3-256
  if (alg === 0x0028) return 48; // SHA3-384
  if (alg === 0x0029) return 64; // SHA3-512
  return HASHES[alg]?.size;
}

export const EC_CURVES: Record<number, { name: EcCurveName; size: number }> = {
  [TPM_ECC_CURVE.p256]: { name: 'P-256', size: 32 },
  [TPM_ECC_CURVE.p384]: { name: 'P-384', size: 48 },
  [TPM_ECC_CURVE.p521]: { name: 'P-521', size: 66 },
};

/** Short readable name of an algorithm id, for step details and claims. */
const ALG_NAMES = new Map<number, string>(Object.entries(TPM_ALG).map(([name, id]) => [id, name]));

export function tpmAlgName(alg: number): string {
  return ALG_NAMES.get(alg) ?? `0x${alg.toString(16).padStart(4, '0')}`;
}

/** TPMA_OBJECT bits (TPM 2.0 Part 2, 8.3). */
export const TPMA_OBJECT = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
} as const;

export function decodeObjectAttributes(bits: number): string[] {
  const out: string[] = [];
  for (const [name, bit] of Object.entries(TPMA_OBJECT)) if ((bits & bit) !== 0) out.push(name);
  return out;
}
