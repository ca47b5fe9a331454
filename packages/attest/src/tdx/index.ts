export { TdxVerifier, createTdxVerifier, type TdxVerifierOptions } from './verifier.js';
export { CollateralCache, type CollateralKind, type CacheLookup } from './cache.js';
export { parseTdxQuote, parseEnclaveReport, looksLikeTdxQuote, tdReportHex, type TdxQuote, type TdxQuoteHeader, type TdReportBody, type SgxEnclaveReport } from './quote.js';
export { parseTdReport, type TdReport } from './td-report.js';
export { parsePckExtensions, type PckSgxExtensions } from './pck-extensions.js';
export {
  readTdxCollateral,
  parseCollateralBundle,
  readSignedResponse,
  readCrl,
  parseTdxTcbInfo,
  parseQeIdentity,
  TDX_COLLATERAL_KEYS,
  type TdxCollateralKey,
  type TdxCollateralInput,
  type TdxTcbInfo,
  type TdxTcbLevel,
  type TdxModuleIdentity,
  type QeIdentity,
} from './collateral.js';
export { splitSignedJson, type SignedJson } from './signed-json.js';
export { evaluateTdxTcb, evaluateQeIdentity, matchTcbLevels, type TdxTcbEvaluation, type QeIdentityResult } from './tcb.js';
export { tdMeasurements, decodeTdAttributes, type TdAttributes } from './claims.js';
export { intelSgxRootCa, INTEL_SGX_ROOT_CA_SHA256 } from './roots.js';
