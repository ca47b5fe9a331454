// @custody/crypto-node: Node-only primitive providers for @custody/core.
import { installNodeHpkeProvider } from './node-hpke-provider.js';
import { installNodeSignatureProvider } from './node-signature-provider.js';

export { nodeHpkePrimitives, installNodeHpkeProvider } from './node-hpke-provider.js';
export { nodeSignaturePrimitives, installNodeSignatureProvider } from './node-signature-provider.js';

/** Installs every node:crypto provider (HPKE, signatures) process-wide. Call at startup, before keys are created. */
export function installNodeCrypto(): void {
  installNodeHpkeProvider();
  installNodeSignatureProvider();
}
