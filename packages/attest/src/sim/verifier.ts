import { VerificationError, equalBytes, fromBase64Url, fromHex, fromUtf8, parsePem, sha256, toHex, type Bytes } from '@custody/core';
import { Pipeline } from '../steps.js';
import type { EvidenceVerifier, VerificationResult, VerifyInput } from '../types.js';
import { looksLikeSimEvidence, parseSimEvidence, verifySimSignature, type SimEvidence } from './format.js';

export const SIMULATED_WARNING =
  'SIMULATED evidence: signed by a software key, no hardware TEE stands behind these claims; policies must reject it unless they explicitly allow sim';

// SPKI DER prefix of an Ed25519 public key (RFC 8410): the key follows as the last 32 bytes.
const ED25519_SPKI_PREFIX = Uint8Array.of(0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00);

/** Allowed sim keys from `roots`: raw 32-byte keys, Ed25519 SPKI DER, or PEM PUBLIC KEY blocks. */
function allowedSimKeys(roots: Uint8Array[]): Bytes[] {
  const out: Bytes[] = [];
  for (const r of roots) {
    if (r.length === 32) out.push(r.slice());
    else if (r.length === 44 && equalBytes(r.subarray(0, 12), ED25519_SPKI_PREFIX)) out.push(r.slice(12));
    else if (r[0] !== 0x30) {
      let text: string;
      try {
        text = fromUtf8(r);
      } catch {
        continue;
      }
      for (const b of parsePem(text)) if (b.label === 'PUBLIC KEY' && b.der.length === 44 && equalBytes(b.der.subarray(0, 12), ED25519_SPKI_PREFIX)) out.push(b.der.slice(12));
    }
  }
  return out;
}

/** Development evidence (custody-sim/v1). Always labelled SIMULATED. */
export class SimVerifier implements EvidenceVerifier {
  readonly platform = 'sim' as const;

  detect(evidence: Uint8Array): boolean {
    return looksLikeSimEvidence(evidence);
  }

  verify(input: VerifyInput): Promise<VerificationResult> {
    const p = new Pipeline('sim', input.now);
    p.warn(SIMULATED_WARNING);
    return p.run(async () => {
      let ev: SimEvidence | undefined;
      await p.step('parse', () => {
        ev = parseSimEvidence(input.evidence);
        return `SIMULATED custody-sim/v1 evidence: ${Object.keys(ev.measurements).length} measurement(s), ${ev.reportData.length / 2}-byte report data, issued ${ev.issuedAt}`;
      });
      const e = ev!;
      const keyDigest = toHex(await sha256(fromBase64Url(e.publicKey)));
      p.claims = {
        platform: 'sim',
        simulated: true,
        measurements: { ...e.measurements },
        reportData: e.reportData,
        debug: e.debug,
        signer: { chain: [], rootSha256: keyDigest, kind: 'sim software key (Ed25519)' },
        platformClaims: { format: e.format, issuedAt: e.issuedAt, simKeySha256: keyDigest },
        ...(e.nonce !== undefined ? { nonce: e.nonce } : {}),
      };
      if (e.debug) p.warn('sim evidence claims a debug-mode TEE');
      if (Date.parse(e.issuedAt) > input.now.getTime() + 5 * 60_000) p.warn('sim evidence is dated in the future relative to the verification time');
      await p.step('signature', async () => {
        const pub = await verifySimSignature(e);
        if (input.roots && input.roots.length > 0) {
          const allowed = allowedSimKeys(input.roots);
          if (!allowed.some((k) => equalBytes(k, pub))) throw new VerificationError('ERR_CERT_ROOT_UNTRUSTED', 'the sim key is not one of the given roots');
          return `SIMULATED: Ed25519 signature by a pinned sim key (SHA-256 ${keyDigest.slice(0, 16)}…) verifies; no hardware stands behind it`;
        }
        return `SIMULATED: Ed25519 signature by sim key SHA-256 ${keyDigest.slice(0, 16)}… verifies (self-asserted key; no hardware stands behind it)`;
      });
      if (input.nonce) {
        const nonce = input.nonce;
        await p.step('nonce', () => {
          const carried = fromHex(e.nonce ?? e.reportData);
          if (!equalBytes(carried, nonce)) throw new VerificationError('ERR_EVIDENCE_NONCE', `SIMULATED: the evidence ${e.nonce !== undefined ? 'nonce' : 'report data'} is not the expected nonce`);
          return `SIMULATED: ${e.nonce !== undefined ? 'nonce' : 'report data'} equals the expected ${nonce.length}-byte nonce`;
        });
      }
    });
  }
}

export const simVerifier: EvidenceVerifier = new SimVerifier();
