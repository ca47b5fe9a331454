import { equalBytes } from '../bytes.js';
import { VerificationError } from '../errors.js';
import { parsePem, readCertificates } from '../pem.js';
import { X509Certificate } from './certificate.js';
import { X509Crl } from './crl.js';
import { checkLeafUsage, verifyCertificateChain, type LeafUsage } from './chain.js';

// Verification caches shared by every verifier that validates vendor chains.
// Parsed certificates and CRLs are cached by their exact DER, so the same bytes always give the
// same object; validated chains are cached by the identity of the objects involved. A cache hit
// never skips a time-dependent check: validity periods are checked against `now` on every call.

const MAX_ENTRIES = 512;

/** FNV-1a over the bytes: a cheap bucket index; entries are always confirmed byte for byte. */
function fnv1a(b: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < b.length; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
  return h >>> 0;
}

/** A bounded map keyed by exact byte strings (cleared when full: it is only a cache). */
class BytesCache<T> {
  private readonly buckets = new Map<number, { key: Uint8Array; value: T }[]>();
  private count = 0;

  constructor(private readonly max: number) {}

  get(key: Uint8Array): T | undefined {
    const bucket = this.buckets.get(fnv1a(key));
    return bucket?.find((e) => equalBytes(e.key, key))?.value;
  }

  set(key: Uint8Array, value: T): void {
    if (this.count >= this.max) {
      this.buckets.clear();
      this.count = 0;
    }
    const h = fnv1a(key);
    const bucket = this.buckets.get(h) ?? [];
    bucket.push({ key: key.slice(), value });
    this.buckets.set(h, bucket);
    this.count++;
  }
}

const certCache = new BytesCache<X509Certificate>(MAX_ENTRIES);
const blobCache = new BytesCache<X509Certificate[]>(MAX_ENTRIES);
const crlCache = new BytesCache<X509Crl>(64);
const ids = new WeakMap<object, number>();
let nextId = 1;

function remember<T extends object>(cache: BytesCache<T>, key: Uint8Array, make: () => T): T {
  const hit = cache.get(key);
  if (hit) return hit;
  const v = make();
  cache.set(key, v);
  return v;
}

export function parseCertificateCached(der: Uint8Array): X509Certificate {
  return remember(certCache, der, () => new X509Certificate(der));
}

export function parseCrlCached(der: Uint8Array): X509Crl {
  return remember(crlCache, der, () => new X509Crl(der));
}

/** DER or PEM certificate blobs (one or more per blob) to cached certificate objects. */
export function parseCertificateBlobs(blobs: readonly Uint8Array[]): X509Certificate[] {
  const out: X509Certificate[] = [];
  for (const blob of blobs) out.push(...remember(blobCache, blob, () => readCertificates(blob).map(parseCertificateCached)));
  return out;
}

/** DER or PEM (`X509 CRL`) CRL blobs to cached CRL objects. */
export function parseCrlBlob(blob: Uint8Array): X509Crl[] {
  if (blob.length > 0 && blob[0] === 0x30) return [parseCrlCached(blob)];
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(blob);
  } catch (e) {
    throw new VerificationError('ERR_CRL_INVALID', 'CRL is neither DER nor PEM', { cause: e });
  }
  const blocks = parsePem(text).filter((b) => b.label === 'X509 CRL');
  if (blocks.length === 0) throw new VerificationError('ERR_CRL_INVALID', 'no PEM X509 CRL block found');
  return blocks.map((b) => parseCrlCached(b.der));
}

function idOf(o: object): number {
  let id = ids.get(o);
  if (id === undefined) {
    id = nextId++;
    ids.set(o, id);
  }
  return id;
}

const chainCache = new Map<string, { chain: X509Certificate[]; root: X509Certificate }>();

function checkValidity(cert: X509Certificate, now: Date): void {
  if (!cert.isValidAt(now)) {
    throw new VerificationError('ERR_CERT_EXPIRED', `certificate "${cert.subject.text}" is not valid at ${now.toISOString()} (valid ${cert.notBefore.toISOString()} to ${cert.notAfter.toISOString()})`, {
      detail: { subject: cert.subject.text, notBefore: cert.notBefore.toISOString(), notAfter: cert.notAfter.toISOString() },
    });
  }
}

/**
 * verifyCertificateChain with a cache of successful path validations. The key is the exact set
 * of certificates offered (by parsed-object identity, which follows the DER bytes), so a
 * different certificate anywhere gives a fresh validation. On a hit the signatures are not
 * re-verified, but every certificate's validity period is checked against `now` again. The
 * leaf's key usage (`options.leafUsage`) is checked on every call, hit or miss.
 */
export async function verifyChainCached(
  leaf: X509Certificate,
  intermediates: X509Certificate[],
  roots: X509Certificate[],
  now: Date,
  options: { leafUsage?: LeafUsage } = {},
): Promise<{ chain: X509Certificate[]; root: X509Certificate; cached: boolean }> {
  if (options.leafUsage) checkLeafUsage(leaf, options.leafUsage);
  const key = `${idOf(leaf)}|${intermediates.map(idOf).sort((a, b) => a - b).join(',')}|${roots.map(idOf).sort((a, b) => a - b).join(',')}`;
  const hit = chainCache.get(key);
  if (hit) {
    for (const c of hit.chain) checkValidity(c, now);
    return { ...hit, cached: true };
  }
  const r = await verifyCertificateChain({ leaf, intermediates, roots, now });
  if (chainCache.size >= MAX_ENTRIES) chainCache.delete(chainCache.keys().next().value!);
  chainCache.set(key, { chain: r.chain, root: r.root });
  return { chain: r.chain, root: r.root, cached: false };
}

const crlSignatures = new Set<string>();

/** Whether `issuer` signed `crl`, remembered per (CRL, issuer) pair. */
export async function crlSignedBy(crl: X509Crl, issuer: X509Certificate): Promise<boolean> {
  const key = `${idOf(crl)}:${idOf(issuer)}`;
  if (crlSignatures.has(key)) return true;
  const ok = await crl.verifySignedBy(issuer);
  if (ok) {
    if (crlSignatures.size >= 1024) crlSignatures.clear();
    crlSignatures.add(key);
  }
  return ok;
}
