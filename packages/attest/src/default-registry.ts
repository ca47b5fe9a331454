import { VerifierRegistry } from './registry.js';
import { sevSnpVerifier } from './sev-snp/index.js';
import { createTdxVerifier } from './tdx/index.js';
import { nitroVerifier } from './nitro/index.js';
import { tpmVerifier } from './tpm/index.js';
import { nvidiaVerifier } from './nvidia/index.js';
import { createAzureVtpmVerifier } from './azure-vtpm/index.js';
import { simVerifier } from './sim/index.js';

const tdx = createTdxVerifier();

/**
 * Every built-in verifier, resolved once. The Azure verifier reuses the same SEV-SNP and TDX
 * verifiers, so their caches (chains, TDX collateral) are shared.
 */
export const defaultRegistry = new VerifierRegistry([
  sevSnpVerifier,
  tdx,
  nitroVerifier,
  tpmVerifier,
  createAzureVtpmVerifier({ sevSnp: sevSnpVerifier, tdx }),
  nvidiaVerifier,
  simVerifier,
]);
