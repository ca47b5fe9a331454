import { VerificationError, fromUtf8, parsePem, sha256, toHex } from '@custody/core';
import { Pipeline } from '../steps.js';
import type { EvidenceVerifier, NormalizedClaims, VerificationResult, VerifyInput } from '../types.js';
import { akSpkiSha256, akTpmName, describeAk } from './ak.js';
import { tpmAlgName } from './constants.js';
import { looksLikeTpmEvidence, parseTpmEvidence, type TpmQuoteEvidence } from './evidence.js';
import { checkQuoteNonce, describeSelection, quoteMeasurements, requireQuoteInfo, verifyPcrDigest, verifyTpmQuoteSignature } from './quote.js';

export const NO_AK_CHAIN_WARNING =
  'plain TPM quote: no vendor certificate chain vouches for the attestation key; trust it only if a policy lists its SPKI SHA-256 (claims.signer.rootSha256)';

/**
 * Claims of a TPM quote, built right after parsing so a failed verification still shows what
 * was claimed. Only PCRs the quote selects become measurements.
 */
export async function tpmQuoteClaims(ev: Pick<TpmQuoteEvidence, 'attest' | 'signature' | 'ak' | 'pcrs'>): Promise<NormalizedClaims> {
  const { attest, ak, signature } = ev;
  const akSha256 = await akSpkiSha256(ak);
  const { measurements, primaryBank } = quoteMeasurements(attest, ev.pcrs);
  const platformClaims: Record<string, unknown> = {
    attestType: tpmAlgNameOfType(attest.type),
    akSpkiSha256: akSha256,
    akKey: describeAk(ak),
    akSource: ak.source,
    akCertificate: false,
    qualifiedSigner: toHex(attest.qualifiedSigner),
    clock: attest.clockInfo.clock.toString(),
    resetCount: attest.clockInfo.resetCount,
    restartCount: attest.clockInfo.restartCount,
    safe: attest.clockInfo.safe,
    firmwareVersion: attest.firmwareVersion.toString(16).padStart(16, '0'),
    signatureScheme: signature.scheme,
    signatureHash: tpmAlgName(signature.hashAlg),
  };
  if (attest.quote) {
    platformClaims.pcrSelection = attest.quote.pcrSelect.map((s) => ({ bank: tpmAlgName(s.hashAlg), pcrs: s.pcrs }));
    platformClaims.pcrDigest = toHex(attest.quote.pcrDigest);
  }
  if (primaryBank) platformClaims.pcrBank = primaryBank;
  if (ak.tpmPublic) {
    // An unsupported nameAlg (SM3, SHA-3) only costs the name, not the verification.
    const name = await akTpmName(ak)?.catch(() => undefined);
    if (name) platformClaims.akName = name;
    platformClaims.akObjectAttributes = ak.tpmPublic.objectAttributes >>> 0;
  }
  return {
    platform: 'tpm',
    simulated: false,
    measurements,
    reportData: toHex(attest.extraData),
    // TPM quotes have no debug mode of their own; a debug firmware shows in the PCRs.
    debug: false,
    tcb: { components: { firmwareVersion: platformClaims.firmwareVersion as string } },
    signer: { chain: [], rootSha256: akSha256, kind: 'TPM AK (no certificate)' },
    platformClaims,
  };
}

function tpmAlgNameOfType(type: number): string {
  return type === 0x8018 ? 'quote' : `0x${type.toString(16)}`;
}

/** SHA-256 (lowercase hex) of every public key in `roots`: SPKI DER, or PEM PUBLIC KEY blocks. */
async function rootSpkiDigests(roots: Uint8Array[]): Promise<Set<string>> {
  const out = new Set<string>();
  for (const r of roots) {
    if (r[0] === 0x30) {
      out.add(toHex(await sha256(r)));
      continue;
    }
    let text: string;
    try {
      text = fromUtf8(r);
    } catch {
      continue;
    }
    for (const b of parsePem(text)) if (b.label === 'PUBLIC KEY') out.add(toHex(await sha256(b.der)));
  }
  return out;
}

/** Plain TPM 2.0 quotes (custody-tpm-quote/v1 JSON, or the {ak_public, tpm_quote} form). Given `roots` pin the AK by its SPKI. */
export class TpmVerifier implements EvidenceVerifier {
  readonly platform = 'tpm' as const;

  detect(evidence: Uint8Array): boolean {
    return looksLikeTpmEvidence(evidence);
  }

  verify(input: VerifyInput): Promise<VerificationResult> {
    const p = new Pipeline('tpm', input.now);
    return p.run(async () => {
      let ev: TpmQuoteEvidence | undefined;
      let signature: ReturnType<typeof verifyTpmQuoteSignature> | undefined;
      await p.step('parse', () => {
        // The signature check starts as soon as the signed parts are parsed, so it runs on the
        // thread pool while the PCR values are parsed and the claims built; the steps still
        // report in order, and a later step only if the earlier ones passed.
        ev = parseTpmEvidence(input.evidence, (parts) => {
          signature = verifyTpmQuoteSignature(parts.attest, parts.signature, parts.ak);
          signature.catch(() => undefined);
        });
        const info = requireQuoteInfo(ev.attest);
        return `${ev.format}: TPMS_ATTEST quote over ${describeSelection(info)}, ${ev.signature.scheme.toUpperCase()}/${tpmAlgName(ev.signature.hashAlg)} signature, ${describeAk(ev.ak)} AK from ${ev.ak.source}`;
      });
      const q = ev!;
      // (Every parse path reports its signed parts; should one not, the check starts here.)
      const signed = signature ?? verifyTpmQuoteSignature(q.attest, q.signature, q.ak);
      signed.catch(() => undefined);
      const pcrDigest = verifyPcrDigest(q.attest, q.signature, q.pcrs);
      pcrDigest.catch(() => undefined);
      p.claims = await tpmQuoteClaims(q);
      p.warn(NO_AK_CHAIN_WARNING);
      if (!q.ak.tpmPublic) p.warn('the AK was given without its TPM public area, so its attributes (restricted signing key) could not be checked');
      await p.step('signature', async () => {
        const { detail, attributes } = await signed;
        const keyNote = attributes.checked ? 'AK is a restricted signing key' : 'AK attributes unknown (given without its TPM public area)';
        // Given roots pin the AK itself (a plain quote has no chain to anchor): its SPKI must be one of them.
        if (input.roots && input.roots.length > 0) {
          if (!(await rootSpkiDigests(input.roots)).has(p.claims!.signer.rootSha256 ?? '')) throw new VerificationError('ERR_CERT_ROOT_UNTRUSTED', 'the attestation key is not one of the given roots');
          return `${detail}; ${keyNote}; AK pinned by the given roots (SPKI SHA-256 ${p.claims!.signer.rootSha256})`;
        }
        return `${detail}; ${keyNote}; no AK certificate: AK SPKI SHA-256 ${p.claims!.signer.rootSha256} must be pinned by policy`;
      });
      await p.step('measurements', () => pcrDigest);
      if (input.nonce) {
        const nonce = input.nonce;
        await p.step('nonce', () => checkQuoteNonce(q.attest, nonce));
      } else {
        p.warn('no expected nonce was given: the quote qualifying data was not checked for freshness');
      }
    });
  }
}

export const tpmVerifier: EvidenceVerifier = new TpmVerifier();
