// RFC 9180 conformance of the default (WebCrypto) provider: every CFRG vector with tampered
// twins, and the provider checks of the shared suite (testing/conformance.ts). The node:crypto
// provider runs the same suite in services/crypto-node.
import { webCryptoHpkePrimitives } from './provider.js';
import { describeHpkeConformance } from './testing/conformance.js';

describeHpkeConformance(webCryptoHpkePrimitives);
