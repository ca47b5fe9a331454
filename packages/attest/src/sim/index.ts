export { SimVerifier, simVerifier, SIMULATED_WARNING } from './verifier.js';
export {
  createSimEvidence,
  parseSimEvidence,
  verifySimSignature,
  simSignedBytes,
  looksLikeSimEvidence,
  SIM_FORMAT,
  SIM_DEV_SEED,
  type SimEvidence,
  type CreateSimEvidenceOptions,
} from './format.js';
