import { KEY_USAGE, ParseError, VerificationError, X509Certificate, equalBytes, isAllZero, readCertificates, toHex, utf8, verifyCoseSign1 } from '@custody/core';
import { Pipeline } from '../steps.js';
import type { CertificateSummary, EvidenceVerifier, NormalizedClaims, VerificationResult, VerifyInput } from '../types.js';
import { looksLikeNitroDocument, parseNitroDocument, type NitroAttestationDocument } from './document.js';
import { AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256 } from './roots.js';
import { parseCertificateCached, verifyChainCached } from '@custody/core';

// The document signer's key signs COSE_Sign1 documents. Real Nitro leaves carry keyUsage
// digitalSignature + nonRepudiation and no extKeyUsage; a leaf whose keyUsage lacks
// digitalSignature (a CA certificate, say) may not sign documents.
const NITRO_SIGNER_USAGE = { keyUsage: KEY_USAGE.digitalSignature };

export const NITRO_DEBUG_WARNING = 'debug-mode enclave: PCR0, PCR1 and PCR2 are all zero, so the measurements say nothing about the code it runs';

let pinnedRoot: Promise<X509Certificate> | undefined;

/** The embedded AWS Nitro Enclaves Root-G1, checked against its pinned SHA-256 once. */
function awsNitroRoot(): Promise<X509Certificate> {
  pinnedRoot ??= (async () => {
    const root = new X509Certificate(readCertificates(utf8(AWS_NITRO_ROOT_G1_PEM))[0]!);
    if ((await root.sha256()) !== AWS_NITRO_ROOT_G1_SHA256) throw new VerificationError('ERR_INTERNAL', 'embedded AWS Nitro root does not match its pinned fingerprint');
    return root;
  })();
  return pinnedRoot;
}

async function summarize(c: X509Certificate): Promise<CertificateSummary> {
  return { subject: c.subject.text, issuer: c.issuer.text, serial: c.serialHex, notBefore: c.notBefore.toISOString(), notAfter: c.notAfter.toISOString(), sha256: await c.sha256() };
}

function claimsOf(doc: NitroAttestationDocument): NormalizedClaims {
  const measurements: Record<string, string> = {};
  for (const [i, v] of doc.pcrs) measurements[`pcr${i}`] = toHex(v);
  const platformClaims: Record<string, unknown> = { moduleId: doc.moduleId, timestamp: new Date(doc.timestamp).toISOString(), digest: doc.digest };
  if (doc.unknownFields.length > 0) platformClaims.unknownFields = [...doc.unknownFields];
  const claims: NormalizedClaims = {
    platform: 'nitro',
    simulated: false,
    measurements,
    reportData: doc.userData ? toHex(doc.userData) : '',
    debug: isDebug(doc),
    signer: { chain: [] },
    platformClaims,
  };
  if (doc.nonce) claims.nonce = toHex(doc.nonce);
  if (doc.publicKey) claims.publicKey = toHex(doc.publicKey);
  return claims;
}

/** An enclave started with --debug-mode reports all-zero PCR0..2 (AWS Nitro Enclaves user guide). */
function isDebug(doc: NitroAttestationDocument): boolean {
  return [0, 1, 2].every((i) => isAllZero(doc.pcrs.get(i)!));
}

/**
 * Verifies an AWS Nitro Enclaves attestation document: parse (strict NSM field checks), chain
 * (`cabundle[0]` is the pinned AWS Nitro Enclaves Root-G1, or one of `roots`; certificate ->
 * cabundle -> root at `now`), signature (COSE_Sign1 ES384 with the leaf key), nonce (when one is
 * expected) and debug mode (all-zero PCR0..2: reported and warned, left to policy to refuse).
 */
export class NitroVerifier implements EvidenceVerifier {
  readonly platform = 'nitro' as const;

  detect(evidence: Uint8Array): boolean {
    return looksLikeNitroDocument(evidence);
  }

  verify(input: VerifyInput): Promise<VerificationResult> {
    const p = new Pipeline('nitro', input.now);
    return p.run(async () => {
      let doc!: NitroAttestationDocument;
      await p.step('parse', () => {
        doc = parseNitroDocument(input.evidence);
        p.claims = claimsOf(doc);
        if (doc.unknownFields.length > 0) p.warn(`attestation document has fields this verifier does not know: ${doc.unknownFields.join(', ')}`);
        return `COSE_Sign1 ${doc.cose.alg} attestation document from ${doc.moduleId} at ${new Date(doc.timestamp).toISOString()}: ${doc.pcrs.size} ${doc.digest} PCRs, ${doc.cabundle.length} CA certificate(s)`;
      });

      let leaf!: X509Certificate;
      await p.step('chain', async () => {
        const custom = input.roots !== undefined && input.roots.length > 0;
        const roots = custom ? input.roots!.flatMap((r) => readCertificates(r)).map(parseCertificateCached) : [await awsNitroRoot()];
        leaf = parseCertificateCached(doc.certificate);
        const bundle = doc.cabundle.map(parseCertificateCached);
        const first = bundle[0]!;
        if (!roots.some((r) => r.equals(first))) {
          throw new VerificationError('ERR_CERT_ROOT_UNTRUSTED', `cabundle[0] "${first.subject.text}" is not ${custom ? 'one of the given roots' : 'the pinned AWS Nitro Enclaves Root-G1'}`, {
            detail: { subject: first.subject.text },
          });
        }
        const result = await verifyChainCached(leaf, bundle.slice(1), roots, input.now, { leafUsage: NITRO_SIGNER_USAGE });
        const rootSha256 = await result.root.sha256();
        p.claims!.signer = { chain: await Promise.all(result.chain.map(summarize)), rootSha256, kind: custom ? 'Nitro (custom root)' : 'AWS Nitro Root-G1' };
        return `${result.chain.length}-certificate chain from "${leaf.subject.text}" to ${custom ? 'a given root' : 'the pinned AWS Nitro Enclaves Root-G1'} (SHA-256 ${rootSha256.slice(0, 16)}…) valid at ${input.now.toISOString()}`;
      });

      await p.step('signature', async () => {
        if (doc.cose.alg !== 'ES384') throw new ParseError('ERR_INPUT_UNSUPPORTED', `Nitro documents are signed ES384, not ${doc.cose.alg}`);
        if (leaf.publicKey.namedCurve !== 'P-384') throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'the signing certificate does not hold a P-384 key');
        if (!(await verifyCoseSign1(doc.cose, leaf.publicKey))) throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'COSE_Sign1 ES384 signature does not verify with the signing certificate');
        return 'COSE_Sign1 ES384 signature verifies with the signing certificate key';
      });

      if (input.nonce) {
        const expected = input.nonce;
        await p.step('nonce', () => {
          if (!doc.nonce) throw new VerificationError('ERR_EVIDENCE_NONCE', 'the document carries no nonce but one is expected');
          if (!equalBytes(doc.nonce, expected)) throw new VerificationError('ERR_EVIDENCE_NONCE', 'the document nonce is not the expected nonce');
          return `document nonce equals the expected ${expected.length}-byte nonce`;
        });
      }

      await p.step('debug', () => {
        if (!p.claims!.debug) return 'PCR0..2 are non-zero: not a debug-mode enclave';
        p.warn(NITRO_DEBUG_WARNING);
        return 'debug-mode enclave (PCR0..2 all zero): reported for policy';
      });
    });
  }
}

export const nitroVerifier: EvidenceVerifier = new NitroVerifier();
