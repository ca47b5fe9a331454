export { NitroVerifier, nitroVerifier, NITRO_DEBUG_WARNING } from './verifier.js';
export { parseNitroDocument, looksLikeNitroDocument, MAX_NITRO_DOCUMENT_SIZE, type NitroAttestationDocument } from './document.js';
export { AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256 } from './roots.js';
