export { verifySevSnp, SevSnpVerifier, sevSnpVerifier, SNP_COLLATERAL_CRL } from './verifier.js';
export {
  parseSevSnpReport,
  decodeTcbVersion,
  decodeGuestPolicy,
  decodePlatformInfo,
  decodeSignerInfo,
  productFromCpuid,
  snpSignatureRaw,
  SNP_REPORT_SIZE,
  SNP_SIGNED_SIZE,
  SEV_SNP_PRODUCTS,
  type SevSnpReport,
  type SevSnpProduct,
  type SnpTcbVersion,
  type SnpTcbLayout,
  type SnpGuestPolicy,
  type SnpPlatformInfo,
  type SnpSignerInfo,
  type SnpSigningKey,
  type ParseSevSnpReportOptions,
} from './report.js';
export { parseSnpCertTable, encodeSnpCertTable, SNP_CERT_GUIDS, type SnpCertTableEntry, type SnpCertKind } from './cert-table.js';
export { readSevSnpEvidence, detectSevSnpEvidence, createConfigfsTsmEvidence, CONFIGFS_TSM_SNP_PROVIDER, type SevSnpEvidence } from './evidence.js';
export { readAmdKeyExtensions, AMD_OID, type AmdKeyExtensions } from './amd-certs.js';
export { AMD_ARK_SHA256, AMD_PRODUCT_CERTIFICATES } from './roots.js';
