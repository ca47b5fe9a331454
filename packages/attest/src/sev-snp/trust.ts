import { VerificationError, parseCertificateCached as parseCertificate, parsePem, type X509Certificate } from '@custody/core';
import { AMD_ARK_SHA256, AMD_PRODUCT_CERTIFICATES } from './roots.js';
import { SEV_SNP_PRODUCTS, type SevSnpProduct } from './report.js';

export interface AmdTrust {
  product: SevSnpProduct;
  ark: X509Certificate;
  ask: X509Certificate;
  asvk: X509Certificate;
}

let pinned: Promise<Map<SevSnpProduct, AmdTrust>> | undefined;

/** The embedded AMD certificates, parsed once; each ARK must match its pinned fingerprint. */
export function loadAmdTrust(): Promise<Map<SevSnpProduct, AmdTrust>> {
  pinned ??= (async () => {
    const out = new Map<SevSnpProduct, AmdTrust>();
    for (const product of SEV_SNP_PRODUCTS) {
      const pems = AMD_PRODUCT_CERTIFICATES[product];
      const one = (pem: string) => parseCertificate(parsePem(pem)[0]!.der);
      const trust: AmdTrust = { product, ark: one(pems.ark), ask: one(pems.ask), asvk: one(pems.asvk) };
      const fp = await trust.ark.sha256();
      if (fp !== AMD_ARK_SHA256[product]) {
        throw new VerificationError('ERR_CERT_ROOT_UNTRUSTED', `embedded ${product} ARK does not match its pinned SHA-256`, { detail: { product, sha256: fp } });
      }
      out.set(product, trust);
    }
    return out;
  })();
  pinned.catch(() => (pinned = undefined));
  return pinned;
}

export { parseCertificateCached as parseCertificate, parseCertificateBlobs, parseCrlBlob, verifyChainCached, crlSignedBy } from '@custody/core';
