import { equalBytes } from '../bytes.js';
import { VerificationError } from '../errors.js';
import { KEY_USAGE, X509Certificate } from './certificate.js';
import { OID } from './oids.js';

/** Critical extensions chain validation understands (RFC 5280: any other critical one fails). */
const UNDERSTOOD_CRITICAL = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  '2.5.29.17', // subjectAltName
  '2.5.29.32', // certificatePolicies
  '2.23.133.5.4.1', // TCG DICE TcbInfo (NVIDIA FWID; the NVIDIA verifier reads it)
  '2.23.133.5.4.4', // TCG DICE UEID
]);

/** RFC 5280 6.1.4: an issuer must be a CA allowed to sign certificates, within its path length. */
function checkIssuer(issuer: X509Certificate, intermediatesBelow: number): void {
  const bc = issuer.basicConstraints;
  if (!bc?.ca) {
    throw new VerificationError('ERR_CERT_CHAIN', `"${issuer.subject.text}" signed a certificate but is not a CA (basicConstraints cA is ${bc ? 'false' : 'absent'})`, {
      detail: { issuer: issuer.subject.text },
    });
  }
  const ku = issuer.keyUsage;
  if (ku !== undefined && (ku & KEY_USAGE.keyCertSign) === 0) {
    throw new VerificationError('ERR_CERT_CHAIN', `"${issuer.subject.text}" signed a certificate but its keyUsage lacks keyCertSign`, { detail: { issuer: issuer.subject.text } });
  }
  if (bc.pathLen !== undefined && intermediatesBelow > bc.pathLen) {
    throw new VerificationError('ERR_CERT_CHAIN', `path length constraint of "${issuer.subject.text}" (${bc.pathLen}) exceeded`, { detail: { issuer: issuer.subject.text } });
  }
}

function checkCriticalExtensions(cert: X509Certificate): void {
  for (const e of cert.extensions) {
    if (e.critical && !UNDERSTOOD_CRITICAL.has(e.oid)) {
      throw new VerificationError('ERR_CERT_CHAIN', `certificate "${cert.subject.text}" has an unsupported critical extension ${e.oid}`, { detail: { oid: e.oid } });
    }
  }
}
import type { X509Crl } from './crl.js';

/**
 * What the leaf's key is used for by the caller, e.g. `{ keyUsage: KEY_USAGE.digitalSignature }`
 * for a key that signs evidence. RFC 5280 4.2.1.3 and 4.2.1.12: an extension the leaf does not
 * carry does not restrict it; one it carries must allow the use.
 */
export interface LeafUsage {
  /** KEY_USAGE bits that must all be set when the leaf has a keyUsage extension. */
  keyUsage?: number;
  /** A KeyPurposeId the leaf's extKeyUsage must list (or anyExtendedKeyUsage) when it has one. */
  extKeyUsage?: string;
}

/** Fails with ERR_CERT_CHAIN when `leaf`'s keyUsage or extKeyUsage rules out `usage`. */
export function checkLeafUsage(leaf: X509Certificate, usage: LeafUsage): void {
  const required = usage.keyUsage ?? 0;
  if (required !== 0) {
    const ku = leaf.keyUsage;
    if (ku !== undefined && (ku & required) !== required) {
      const missing = Object.entries(KEY_USAGE).filter(([, bit]) => (required & bit) !== 0 && (ku & bit) === 0).map(([name]) => name);
      throw new VerificationError('ERR_CERT_CHAIN', `certificate "${leaf.subject.text}" may not be used here: its keyUsage lacks ${missing.join(', ')}`, {
        detail: { subject: leaf.subject.text, missingKeyUsage: missing.join(',') },
      });
    }
  }
  if (usage.extKeyUsage !== undefined) {
    const eku = leaf.extKeyUsage;
    if (eku !== undefined && !eku.includes(usage.extKeyUsage) && !eku.includes(OID.anyExtendedKeyUsage)) {
      throw new VerificationError('ERR_CERT_CHAIN', `certificate "${leaf.subject.text}" may not be used here: its extKeyUsage does not list ${usage.extKeyUsage}`, {
        detail: { subject: leaf.subject.text, requiredPurpose: usage.extKeyUsage, purposes: eku.join(',') },
      });
    }
  }
}

export interface ChainOptions {
  /** The certificate to validate. */
  leaf: X509Certificate;
  /** Candidate intermediates, in any order. */
  intermediates?: X509Certificate[];
  /** Trust anchors: the chain must end at one of these exact certificates. */
  roots: X509Certificate[];
  now: Date;
  /** CRLs to apply; each is used for the certificates its issuer signed. */
  crls?: X509Crl[];
  /** Whether a stale CRL (now past nextUpdate) fails validation (default) or only warns. */
  staleCrl?: 'fail' | 'warn';
  maxDepth?: number;
  /** The use the caller makes of the leaf's key, checked against its keyUsage and extKeyUsage. */
  leafUsage?: LeafUsage;
}

export interface ChainResult {
  /** Leaf first, trust anchor last. */
  chain: X509Certificate[];
  root: X509Certificate;
  /** CRLs that were checked, with the certificate they covered. */
  crlChecks: { issuer: string; subject: string }[];
  warnings: string[];
}

/**
 * Validates a certificate path from `leaf` to one of `roots` (RFC 5280 basics): issuer/subject
 * name chaining, signatures, validity periods at `now`, CA constraint on issuers, the leaf's
 * key usage when `leafUsage` is given, and revocation against the supplied CRLs (each CRL's own
 * signature and freshness are checked first).
 */
export async function verifyCertificateChain(opts: ChainOptions): Promise<ChainResult> {
  const { leaf, now } = opts;
  const pool = [...(opts.intermediates ?? []), ...opts.roots];
  const maxDepth = opts.maxDepth ?? 8;
  const chain: X509Certificate[] = [leaf];
  const warnings: string[] = [];
  const crlChecks: { issuer: string; subject: string }[] = [];
  const crls = validCrls(opts, warnings);
  if (opts.leafUsage) checkLeafUsage(leaf, opts.leafUsage);

  let current = leaf;
  for (let depth = 0; ; depth++) {
    checkCriticalExtensions(current);
    if (!current.isValidAt(now)) {
      throw new VerificationError('ERR_CERT_EXPIRED', `certificate "${current.subject.text}" is not valid at ${now.toISOString()} (valid ${current.notBefore.toISOString()} to ${current.notAfter.toISOString()})`, {
        detail: { subject: current.subject.text, notBefore: current.notBefore.toISOString(), notAfter: current.notAfter.toISOString() },
      });
    }
    const anchor = opts.roots.find((r) => r.equals(current));
    if (anchor) {
      // The chain ends at the anchor object itself, even when the evidence carried its own copy.
      chain[chain.length - 1] = anchor;
      return { chain, root: anchor, crlChecks, warnings };
    }
    if (depth >= maxDepth) throw new VerificationError('ERR_CERT_CHAIN', 'certificate chain too long');

    const candidates = pool.filter((c) => equalBytes(c.subject.raw, current.issuer.raw) && !chain.includes(c));
    let issuer: X509Certificate | undefined;
    for (const c of candidates) {
      // A look-alike issuer with another key type must not stop the search for the real one.
      if (await current.verifySignedBy(c).catch(() => false)) {
        issuer = c;
        break;
      }
    }
    if (!issuer) {
      if (candidates.length > 0) {
        throw new VerificationError('ERR_CERT_SIGNATURE', `signature on "${current.subject.text}" does not verify with its issuer "${current.issuer.text}"`, { detail: { subject: current.subject.text } });
      }
      if (current.isSelfIssued()) {
        throw new VerificationError('ERR_CERT_ROOT_UNTRUSTED', `self-signed certificate "${current.subject.text}" is not a pinned trust anchor`, { detail: { subject: current.subject.text } });
      }
      throw new VerificationError('ERR_CERT_CHAIN', `issuer "${current.issuer.text}" of "${current.subject.text}" is not among the supplied certificates or trust anchors`, {
        detail: { subject: current.subject.text, issuer: current.issuer.text },
      });
    }
    // Certificates between this issuer and the leaf, not counting self-issued ones.
    checkIssuer(issuer, chain.slice(1).filter((c) => !c.isSelfIssued()).length);
    for (const crl of crls) {
      if (!equalBytes(crl.issuer.raw, issuer.subject.raw)) continue;
      if (!(await crl.verifySignedBy(issuer))) {
        throw new VerificationError('ERR_CRL_INVALID', `CRL naming "${issuer.subject.text}" as issuer is not signed by it`, { detail: { issuer: issuer.subject.text } });
      }
      crlChecks.push({ issuer: issuer.subject.text, subject: current.subject.text });
      if (crl.isRevoked(current)) {
        throw new VerificationError('ERR_CERT_REVOKED', `certificate "${current.subject.text}" (serial ${current.serialHex}) is revoked by its issuer's CRL`, {
          detail: { subject: current.subject.text, serial: current.serialHex },
        });
      }
    }
    chain.push(issuer);
    current = issuer;
  }
}

/** Keeps CRLs whose time window covers `now`; a stale one fails or warns as configured. */
function validCrls(opts: ChainOptions, warnings: string[]): X509Crl[] {
  const out: X509Crl[] = [];
  for (const crl of opts.crls ?? []) {
    if (crl.thisUpdate.getTime() > opts.now.getTime()) {
      throw new VerificationError('ERR_CRL_INVALID', `CRL from "${crl.issuer.text}" is not yet valid (thisUpdate ${crl.thisUpdate.toISOString()})`);
    }
    if (crl.nextUpdate && crl.nextUpdate.getTime() < opts.now.getTime()) {
      const msg = `CRL from "${crl.issuer.text}" is stale: nextUpdate ${crl.nextUpdate.toISOString()} is before ${opts.now.toISOString()}`;
      if ((opts.staleCrl ?? 'fail') === 'fail') throw new VerificationError('ERR_CRL_STALE', msg, { detail: { issuer: crl.issuer.text, nextUpdate: crl.nextUpdate.toISOString() } });
      warnings.push(msg);
    }
    out.push(crl);
  }
  return out;
}

/** Parses DER blobs into certificates; each failure is a typed ERR_CERT_PARSE. */
export function parseCertificates(ders: Uint8Array[]): X509Certificate[] {
  return ders.map((d) => new X509Certificate(d));
}
