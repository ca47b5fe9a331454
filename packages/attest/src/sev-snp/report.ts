import { ByteReader, ParseError, assertMaxSize, concatBytes, isAllZero, reverseBytes, toHex, type Bytes } from '@custody/core';

/**
 * AMD SEV-SNP ATTESTATION_REPORT (SEV Secure Nested Paging Firmware ABI Specification, 56860,
 * "ATTESTATION_REPORT Structure"). Versions 2, 3 and 5 share one 1184-byte layout; later versions
 * only fill fields that were reserved before:
 * - v3 adds CPUID family/model/stepping at 0x188..0x18A (reserved in v2);
 * - v5 adds LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR at 0x1F8 and 0x200.
 * Every multi-byte integer is little-endian.
 */
export const SNP_REPORT_SIZE = 0x4a0;
/** The signature covers bytes 0x000..0x29F. */
export const SNP_SIGNED_SIZE = 0x2a0;
/** SIGNATURE_ALGO value for ECDSA P-384 with SHA-384, the only one the ABI defines. */
export const SNP_SIG_ALGO_ECDSA_P384_SHA384 = 1;

export type SevSnpProduct = 'Milan' | 'Genoa' | 'Turin';
export const SEV_SNP_PRODUCTS: readonly SevSnpProduct[] = ['Milan', 'Genoa', 'Turin'];

/**
 * How a TCB_VERSION's 8 bytes are laid out. Milan and Genoa: BOOT_LOADER, TEE, 4 reserved, SNP,
 * MICROCODE. Turin (family 1Ah): FMC, BOOT_LOADER, TEE, SNP, 3 reserved, MICROCODE.
 */
export type SnpTcbLayout = 'legacy' | 'turin';

export function tcbLayoutOf(product: SevSnpProduct | undefined): SnpTcbLayout {
  return product === 'Turin' ? 'turin' : 'legacy';
}

export interface SnpTcbVersion {
  bootloader: number;
  tee: number;
  snp: number;
  microcode: number;
  /** Turin only: the FMC (first mutable code) security version. */
  fmc?: number;
  /** The 8 raw bytes as they appear in the report, hex. */
  raw: string;
}

export interface SnpGuestPolicy {
  abiMinor: number;
  abiMajor: number;
  smtAllowed: boolean;
  migrateMaAllowed: boolean;
  debugAllowed: boolean;
  singleSocket: boolean;
  cxlAllowed: boolean;
  memAes256Xts: boolean;
  raplDisabled: boolean;
  ciphertextHiding: boolean;
  pageSwapDisabled: boolean;
}

export interface SnpPlatformInfo {
  smtEnabled: boolean;
  tsmeEnabled: boolean;
  eccEnabled: boolean;
  raplDisabled: boolean;
  ciphertextHidingEnabled: boolean;
  aliasCheckComplete: boolean;
  tioEnabled: boolean;
}

/** SIGNING_KEY: which key signed the report. */
export type SnpSigningKey = 'VCEK' | 'VLEK' | 'none' | 'reserved';

export interface SnpSignerInfo {
  authorKeyEn: boolean;
  maskChipKey: boolean;
  signingKey: SnpSigningKey;
  /** The 3-bit SIGNING_KEY value (0 VCEK, 1 VLEK, 7 none, 2..6 reserved). */
  signingKeyValue: number;
}

export interface SnpFirmwareVersion {
  major: number;
  minor: number;
  build: number;
}

export interface SevSnpReport {
  /** The whole 1184-byte report (a private copy). */
  bytes: Bytes;
  /** Bytes 0x000..0x29F, the part the signature covers (a view into `bytes`). */
  signedBytes: Bytes;
  version: number;
  guestSvn: number;
  /** GUEST POLICY as a 64-bit value. */
  policy: bigint;
  policyDecoded: SnpGuestPolicy;
  familyId: Bytes;
  imageId: Bytes;
  vmpl: number;
  signatureAlgo: number;
  currentTcb: SnpTcbVersion;
  platformInfo: bigint;
  platformInfoDecoded: SnpPlatformInfo;
  signerInfo: SnpSignerInfo;
  reportData: Bytes;
  measurement: Bytes;
  hostData: Bytes;
  idKeyDigest: Bytes;
  authorKeyDigest: Bytes;
  reportId: Bytes;
  reportIdMa: Bytes;
  reportedTcb: SnpTcbVersion;
  /** v3+: CPUID_FAM_ID, CPUID_MOD_ID, CPUID_STEP (family and model already combined with their extended parts). */
  cpuid?: { family: number; model: number; stepping: number };
  chipId: Bytes;
  committedTcb: SnpTcbVersion;
  currentVersion: SnpFirmwareVersion;
  committedVersion: SnpFirmwareVersion;
  launchTcb: SnpTcbVersion;
  /** v5+: LAUNCH_MIT_VECTOR and CURRENT_MIT_VECTOR. */
  launchMitVector?: bigint;
  currentMitVector?: bigint;
  /** ECDSA r and s as AMD writes them: 72 bytes each, little-endian. */
  signatureR: Bytes;
  signatureS: Bytes;
  /** The product the CPUID fields name (v3+), when they name one Custody knows. */
  cpuidProduct?: SevSnpProduct;
  /** The TCB_VERSION layout used to decode the four TCB fields. */
  tcbLayout: SnpTcbLayout;
  /**
   * Reserved (must-be-zero / must-be-one) fields that do not hold their required value, e.g.
   * `0x1f8..0x29f`. The report is still parsed: the signature decides whether it is genuine,
   * and the verifier reports these as warnings.
   */
  reservedViolations: string[];
}

export interface ParseSevSnpReportOptions {
  /**
   * The product, when known from elsewhere (e.g. the VCEK issuer). It selects the TCB layout
   * and overrides the CPUID fields' product for that purpose. A v2 report has no CPUID fields,
   * so without this its TCBs are decoded in the Milan/Genoa layout.
   */
  product?: SevSnpProduct;
}

// GUEST POLICY bit positions (ABI spec "GUEST_POLICY Structure").
const POLICY_SMT = 16n;
const POLICY_RESERVED_ONE = 17n;
const POLICY_MIGRATE_MA = 18n;
const POLICY_DEBUG = 19n;
const POLICY_SINGLE_SOCKET = 20n;
const POLICY_CXL_ALLOW = 21n;
const POLICY_MEM_AES_256_XTS = 22n;
const POLICY_RAPL_DIS = 23n;
const POLICY_CIPHERTEXT_HIDING = 24n;
const POLICY_PAGE_SWAP_DISABLE = 25n;
const POLICY_FIRST_MBZ = 26n;

// PLATFORM_INFO bits.
const PLATFORM_INFO_DEFINED = 0b1011_1111n;

const bit = (v: bigint, n: bigint): boolean => ((v >> n) & 1n) === 1n;

export function decodeGuestPolicy(policy: bigint): SnpGuestPolicy {
  return {
    abiMinor: Number(policy & 0xffn),
    abiMajor: Number((policy >> 8n) & 0xffn),
    smtAllowed: bit(policy, POLICY_SMT),
    migrateMaAllowed: bit(policy, POLICY_MIGRATE_MA),
    debugAllowed: bit(policy, POLICY_DEBUG),
    singleSocket: bit(policy, POLICY_SINGLE_SOCKET),
    cxlAllowed: bit(policy, POLICY_CXL_ALLOW),
    memAes256Xts: bit(policy, POLICY_MEM_AES_256_XTS),
    raplDisabled: bit(policy, POLICY_RAPL_DIS),
    ciphertextHiding: bit(policy, POLICY_CIPHERTEXT_HIDING),
    pageSwapDisabled: bit(policy, POLICY_PAGE_SWAP_DISABLE),
  };
}

export function decodePlatformInfo(info: bigint): SnpPlatformInfo {
  return {
    smtEnabled: bit(info, 0n),
    tsmeEnabled: bit(info, 1n),
    eccEnabled: bit(info, 2n),
    raplDisabled: bit(info, 3n),
    ciphertextHidingEnabled: bit(info, 4n),
    aliasCheckComplete: bit(info, 5n),
    tioEnabled: bit(info, 7n),
  };
}

export function decodeSignerInfo(v: number): SnpSignerInfo {
  const signingKeyValue = (v >>> 2) & 7;
  const signingKey: SnpSigningKey = signingKeyValue === 0 ? 'VCEK' : signingKeyValue === 1 ? 'VLEK' : signingKeyValue === 7 ? 'none' : 'reserved';
  return { authorKeyEn: (v & 1) !== 0, maskChipKey: (v & 2) !== 0, signingKey, signingKeyValue };
}

/** Decodes one 8-byte TCB_VERSION in the given layout; reserved bytes must be zero. */
export function decodeTcbVersion(raw: Uint8Array, layout: SnpTcbLayout, name = 'tcb', violations?: string[]): SnpTcbVersion {
  if (raw.length !== 8) throw new ParseError('ERR_INPUT_MALFORMED', 'a TCB_VERSION is 8 bytes', { detail: { length: raw.length } });
  if (layout === 'turin') {
    if (violations && (raw[4]! | raw[5]! | raw[6]!) !== 0) violations.push(`${name}[4..6]`);
    return { fmc: raw[0]!, bootloader: raw[1]!, tee: raw[2]!, snp: raw[3]!, microcode: raw[7]!, raw: toHex(raw) };
  }
  if (violations && (raw[2]! | raw[3]! | raw[4]! | raw[5]!) !== 0) violations.push(`${name}[2..5]`);
  return { bootloader: raw[0]!, tee: raw[1]!, snp: raw[6]!, microcode: raw[7]!, raw: toHex(raw) };
}

/**
 * The product a v3+ report's CPUID fields name (AMD family 19h: Milan models 00h-0Fh, Genoa
 * 10h-1Fh and A0h-AFh; family 1Ah: Turin models 00h-11h). Undefined for anything else.
 */
export function productFromCpuid(family: number, model: number): SevSnpProduct | undefined {
  if (family === 0x19) {
    if (model <= 0x0f) return 'Milan';
    if ((model >= 0x10 && model <= 0x1f) || (model >= 0xa0 && model <= 0xaf)) return 'Genoa';
  }
  if (family === 0x1a && model <= 0x11) return 'Turin';
  return undefined;
}

function checkZero(bytes: Uint8Array, from: number, to: number, violations: string[]): void {
  if (!isAllZero(bytes.subarray(from, to))) violations.push(`0x${from.toString(16)}..0x${(to - 1).toString(16)}`);
}

/**
 * Parses an SEV-SNP ATTESTATION_REPORT from untrusted bytes: exactly 1184 bytes, version 2 or
 * later. Nothing is verified here; see `verifySevSnp`.
 */
export function parseSevSnpReport(input: Uint8Array, options: ParseSevSnpReportOptions = {}): SevSnpReport {
  assertMaxSize(input, SNP_REPORT_SIZE, 'SEV-SNP report');
  if (input.length < SNP_REPORT_SIZE) {
    throw new ParseError('ERR_INPUT_TRUNCATED', `SEV-SNP report is ${input.length} bytes, not ${SNP_REPORT_SIZE}`, { detail: { length: input.length } });
  }
  const bytes = input.slice();
  const r = new ByteReader(bytes, 'SEV-SNP report');
  const violations: string[] = [];

  const version = r.u32le();
  if (version < 2) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `SEV-SNP report version ${version} is not supported (2 or later)`, { detail: { version } });
  }
  const guestSvn = r.u32le();
  const policy = r.u64le();
  if (!bit(policy, POLICY_RESERVED_ONE)) violations.push('policy bit 17 (must be one)');
  if (policy >> POLICY_FIRST_MBZ !== 0n) violations.push('policy bits 26..63');
  const familyId = r.take(16);
  const imageId = r.take(16);
  const vmpl = r.u32le();
  const signatureAlgo = r.u32le();
  const currentTcbRaw = r.bytesView(8);
  const platformInfo = r.u64le();
  if ((platformInfo & ~PLATFORM_INFO_DEFINED) !== 0n) violations.push('platform_info reserved bits');
  const signerRaw = r.u32le();
  if (signerRaw >>> 5 !== 0) violations.push('signer info bits 5..31');
  const signerInfo = decodeSignerInfo(signerRaw);
  checkZero(bytes, 0x4c, 0x50, violations);
  r.seek(0x50);
  const reportData = r.take(64);
  const measurement = r.take(48);
  const hostData = r.take(32);
  const idKeyDigest = r.take(48);
  const authorKeyDigest = r.take(48);
  const reportId = r.take(32);
  const reportIdMa = r.take(32);
  const reportedTcbRaw = r.bytesView(8);

  let cpuid: SevSnpReport['cpuid'];
  let cpuidProduct: SevSnpProduct | undefined;
  if (version >= 3) {
    cpuid = { family: r.u8(), model: r.u8(), stepping: r.u8() };
    cpuidProduct = productFromCpuid(cpuid.family, cpuid.model);
    checkZero(bytes, 0x18b, 0x1a0, violations);
  } else {
    checkZero(bytes, 0x188, 0x1a0, violations);
  }
  r.seek(0x1a0);
  const chipId = r.take(64);
  const committedTcbRaw = r.bytesView(8);
  const currentVersion = { build: r.u8(), minor: r.u8(), major: r.u8() };
  checkZero(bytes, 0x1eb, 0x1ec, violations);
  r.seek(0x1ec);
  const committedVersion = { build: r.u8(), minor: r.u8(), major: r.u8() };
  checkZero(bytes, 0x1ef, 0x1f0, violations);
  r.seek(0x1f0);
  const launchTcbRaw = r.bytesView(8);
  let launchMitVector: bigint | undefined;
  let currentMitVector: bigint | undefined;
  if (version >= 5) {
    launchMitVector = r.u64le();
    currentMitVector = r.u64le();
    checkZero(bytes, 0x208, SNP_SIGNED_SIZE, violations);
  } else {
    checkZero(bytes, 0x1f8, SNP_SIGNED_SIZE, violations);
  }
  r.seek(SNP_SIGNED_SIZE);
  const signatureR = r.take(72);
  const signatureS = r.take(72);
  if (signatureAlgo === SNP_SIG_ALGO_ECDSA_P384_SHA384) checkZero(bytes, SNP_SIGNED_SIZE + 144, SNP_REPORT_SIZE, violations);
  r.seek(SNP_REPORT_SIZE);
  r.end();

  const tcbLayout = tcbLayoutOf(options.product ?? cpuidProduct);
  const report: SevSnpReport = {
    bytes,
    signedBytes: bytes.subarray(0, SNP_SIGNED_SIZE),
    version,
    guestSvn,
    policy,
    policyDecoded: decodeGuestPolicy(policy),
    familyId,
    imageId,
    vmpl,
    signatureAlgo,
    currentTcb: decodeTcbVersion(currentTcbRaw, tcbLayout, 'current_tcb', violations),
    platformInfo,
    platformInfoDecoded: decodePlatformInfo(platformInfo),
    signerInfo,
    reportData,
    measurement,
    hostData,
    idKeyDigest,
    authorKeyDigest,
    reportId,
    reportIdMa,
    reportedTcb: decodeTcbVersion(reportedTcbRaw, tcbLayout, 'reported_tcb', violations),
    chipId,
    committedTcb: decodeTcbVersion(committedTcbRaw, tcbLayout, 'committed_tcb', violations),
    currentVersion,
    committedVersion,
    launchTcb: decodeTcbVersion(launchTcbRaw, tcbLayout, 'launch_tcb', violations),
    signatureR,
    signatureS,
    tcbLayout,
    reservedViolations: violations,
  };
  if (cpuid) report.cpuid = cpuid;
  if (cpuidProduct) report.cpuidProduct = cpuidProduct;
  if (launchMitVector !== undefined) report.launchMitVector = launchMitVector;
  if (currentMitVector !== undefined) report.currentMitVector = currentMitVector;
  return report;
}

/**
 * The report's ECDSA signature as the fixed-size big-endian r||s (96 bytes) WebCrypto verifies,
 * or undefined when r or s does not fit in 48 bytes (then it cannot be a P-384 signature).
 */
export function snpSignatureRaw(report: SevSnpReport): Bytes | undefined {
  const { signatureR: r, signatureS: s } = report;
  if (!isAllZero(r.subarray(48)) || !isAllZero(s.subarray(48))) return undefined;
  return concatBytes(reverseBytes(r.subarray(0, 48)), reverseBytes(s.subarray(0, 48)));
}
