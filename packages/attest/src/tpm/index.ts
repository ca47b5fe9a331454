export { TpmVerifier, tpmVerifier, tpmQuoteClaims, NO_AK_CHAIN_WARNING } from './verifier.js';
export {
  parseTpmsAttest,
  parseTpmtSignature,
  parseTpmtPublic,
  parseTpm2bPublic,
  parsePcrSelectionList,
  tpmObjectName,
  type TpmsAttest,
  type TpmsClockInfo,
  type TpmsPcrSelection,
  type TpmsQuoteInfo,
  type TpmtSignature,
  type TpmtPublic,
} from './structures.js';
export {
  verifyTpmQuote,
  verifyTpmQuoteSignature,
  verifyPcrDigest,
  computePcrDigest,
  pcrBankFromList,
  checkQuoteNonce,
  quoteMeasurements,
  describeSelection,
  requireQuoteInfo,
  type TpmPcrBank,
  type TpmQuote,
  type TpmQuoteVerification,
} from './quote.js';
export {
  readAttestationKey,
  readAttestationKeyString,
  akFromSpki,
  akFromJwk,
  akFromTpmPublic,
  akSpkiSha256,
  tpmPublicToSpki,
  checkAkAttributes,
  type TpmAttestationKey,
} from './ak.js';
export { parseTpmEvidence, encodeTpmEvidence, looksLikeTpmEvidence, TPM_QUOTE_FORMAT, type TpmQuoteEvidence, type TpmEvidenceParts } from './evidence.js';
export { TPM_ALG, TPM_ST_ATTEST, TPM_GENERATED_VALUE, TPMA_OBJECT, tpmAlgName, tpmHashByName, type TpmHashName } from './constants.js';
export { jwkToSpki, decodeSpki, type SpkiKey, type RsaOrEcJwk } from './spki.js';
