import { CustodyError } from '@custody/core';
import type { EvidenceVerifier, Platform, VerificationResult, VerifyInput } from './types.js';

/**
 * The one place evidence formats are resolved. Code below it never switches on format names:
 * it asks the registry for the verifier of a platform, or for the one whose `detect` accepts
 * the bytes.
 */
export class VerifierRegistry {
  private readonly byPlatform = new Map<Platform, EvidenceVerifier>();

  constructor(verifiers: readonly EvidenceVerifier[]) {
    for (const v of verifiers) {
      if (this.byPlatform.has(v.platform)) throw new CustodyError('ERR_INTERNAL', `two verifiers for ${v.platform}`);
      this.byPlatform.set(v.platform, v);
    }
  }

  get platforms(): Platform[] {
    return [...this.byPlatform.keys()];
  }

  get(platform: string): EvidenceVerifier {
    const v = this.byPlatform.get(platform as Platform);
    if (!v) throw new CustodyError('ERR_USAGE', `unknown platform "${platform}"; known: ${this.platforms.join(', ')}`);
    return v;
  }

  /** The platform whose verifier recognises the bytes; ERR_FORMAT_UNKNOWN when none or several do. */
  detect(evidence: Uint8Array): Platform {
    const hits = [...this.byPlatform.values()].filter((v) => {
      try {
        return v.detect(evidence);
      } catch {
        return false;
      }
    });
    if (hits.length === 1) return hits[0]!.platform;
    if (hits.length === 0) throw new CustodyError('ERR_FORMAT_UNKNOWN', 'evidence format not recognised; pass --platform');
    throw new CustodyError('ERR_FORMAT_UNKNOWN', `evidence matches several formats (${hits.map((h) => h.platform).join(', ')}); pass --platform`);
  }

  /** Verifies with the named platform's verifier, or the detected one. */
  async verify(input: VerifyInput & { platform?: string }): Promise<VerificationResult> {
    const platform = input.platform ?? this.detect(input.evidence);
    return this.get(platform).verify(input);
  }
}
