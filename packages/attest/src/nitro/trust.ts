import { CustodyError, VerificationError, X509Certificate, verifyCertificateChain } from '@custody/core';

// Parsed certificates are cached by their exact DER, so the same bytes always give the same
// object, and successful path validations are cached by the identity of the objects involved.
// A hit never skips a time-dependent check: every validity period is checked against `now` on
// every call. (sev-snp/trust.ts and nvidia/trust.ts do the same for their formats.)

const MAX_CERTS = 256;
const MAX_CHAINS = 128;
const certCache = new Map<string, X509Certificate>();
const chainCache = new Map<string, { chain: X509Certificate[]; root: X509Certificate }>();
const ids = new WeakMap<X509Certificate, number>();
let nextId = 1;

function bytesKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode.apply(null, b.subarray(i, i + 8192) as unknown as number[]);
  return s;
}

/** A parsed certificate for these exact DER bytes (ERR_CERT_PARSE when they are not one). */
export function parseCertificateCached(der: Uint8Array): X509Certificate {
  const key = bytesKey(der);
  const hit = certCache.get(key);
  if (hit) return hit;
  const cert = new X509Certificate(der);
  if (certCache.size >= MAX_CERTS) certCache.delete(certCache.keys().next().value!);
  certCache.set(key, cert);
  ids.set(cert, nextId++);
  return cert;
}

function idOf(c: X509Certificate): number {
  let id = ids.get(c);
  if (id === undefined) {
    id = nextId++;
    ids.set(c, id);
  }
  return id;
}

function checkValidity(cert: X509Certificate, now: Date): void {
  if (!cert.isValidAt(now)) {
    throw new VerificationError('ERR_CERT_EXPIRED', `certificate "${cert.subject.text}" is not valid at ${now.toISOString()} (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`, {
      detail: { subject: cert.subject.text, notBefore: cert.notBefore.toISOString(), notAfter: cert.notAfter.toISOString() },
    });
  }
}

/**
 * verifyCertificateChain, remembering successful validations by the exact certificates offered.
 * On a hit the signatures are not verified again but every validity period is checked at `now`.
 * A key WebCrypto refuses to import (a point off its curve, say) fails as ERR_CERT_SIGNATURE
 * rather than escaping as a DOMException.
 */
export async function verifyChainCached(leaf: X509Certificate, intermediates: X509Certificate[], roots: X509Certificate[], now: Date): Promise<{ chain: X509Certificate[]; root: X509Certificate }> {
  const key = `${idOf(leaf)}|${intermediates.map(idOf).sort((a, b) => a - b).join(',')}|${roots.map(idOf).sort((a, b) => a - b).join(',')}`;
  const hit = chainCache.get(key);
  if (hit) {
    for (const c of hit.chain) checkValidity(c, now);
    return hit;
  }
  const r = await withUsableKeys(() => verifyCertificateChain({ leaf, intermediates, roots, now }));
  if (chainCache.size >= MAX_CHAINS) chainCache.delete(chainCache.keys().next().value!);
  const entry = { chain: r.chain, root: r.root };
  chainCache.set(key, entry);
  return entry;
}

/** Runs a signature check so that a key WebCrypto cannot import fails with a typed error. */
export async function withUsableKeys<T>(check: () => Promise<T>): Promise<T> {
  try {
    return await check();
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    throw new VerificationError('ERR_CERT_SIGNATURE', 'a certificate holds a public key that cannot be used to verify signatures', { cause: e });
  }
}
