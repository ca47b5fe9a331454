export { CollateralSource, collateralAccepted, collateralRefused, withFetchedCollateral, type CollateralSourceOptions, type FetchCollateralOptions, type FetchedCollateral, type FetchedItem } from './source.js';
export { MemoryCollateralStore, collateralExpiry, DEFAULT_FIXED_TTL_MS, DEFAULT_MAX_AGE_MS, type CollateralLifetime, type CollateralStore, type StoredCollateral } from './store.js';
export {
  planSevSnpCollateral,
  planTdxCollateral,
  parseSevSnpProduct,
  vcekPath,
  AMD_KDS_URL,
  INTEL_PCS_URL,
  INTEL_ROOT_CA_CRL_URL,
  type CollateralItemKind,
  type CollateralRequest,
  type SevSnpCollateralPlan,
  type TdxCollateralPlan,
} from './urls.js';
export { decodeIssuerChainHeader, MAX_ISSUER_CHAIN_HEADER } from './issuer-chain.js';
export { fetchBounded, MAX_REDIRECTS, type FetchLike, type BoundedFetchOptions, type BoundedResponse } from './http.js';
