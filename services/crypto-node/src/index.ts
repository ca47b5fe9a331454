// @custody/crypto-node: Node-only primitive providers for @custody/core.
export { nodeHpkePrimitives, installNodeHpkeProvider } from './node-hpke-provider.js';
