import { VerifierRegistry } from './registry.js';
import { sevSnpVerifier } from './sev-snp/index.js';
import { createTdxVerifier } from './tdx/index.js';
import { nitroVerifier } from './nitro/index.js';
import { tpmVerifier } from './tpm/index.js';
import { nvidiaVerifier } from './nvidia/index.js';
import { simVerifier } from './sim/index.js';

/** Every built-in verifier, resolved once. Services that need their own caches build their own registry. */
export const defaultRegistry = new VerifierRegistry([sevSnpVerifier, createTdxVerifier(), nitroVerifier, tpmVerifier, nvidiaVerifier, simVerifier]);
