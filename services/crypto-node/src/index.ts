// @custody/crypto-node: Node-only providers for the browser-safe packages: node:crypto
// primitives for @custody/core, and a node:http transport for the SDK and the ledger clients.
import { installNodeHpkeProvider } from './node-hpke-provider.js';
import { installNodeSignatureProvider } from './node-signature-provider.js';

export { nodeHpkePrimitives, installNodeHpkeProvider } from './node-hpke-provider.js';
export { nodeSignaturePrimitives, installNodeSignatureProvider } from './node-signature-provider.js';
export { nodeHttpFetch, nodeGatewayFetch, DEFAULT_MAX_BODY, type NodeHttpFetch, type NodeHttpFetchOptions } from './node-fetch.js';

/** Installs every node:crypto provider (HPKE, signatures) process-wide. Call at startup, before keys are created. */
export function installNodeCrypto(): void {
  installNodeHpkeProvider();
  installNodeSignatureProvider();
}
export { hiddenSiblingPath, makePrivateDir, modeExposure, privateDirWarning, secretFileWarning, writeNewSecretFile } from './secret-file.js';
