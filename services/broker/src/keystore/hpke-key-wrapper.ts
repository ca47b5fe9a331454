import { AeadId, KdfId, KEY_WRAP_DEFAULT_SUITE, KemId, wrapKey, type HpkePrimitives, type HpkeSuiteIds } from '@custody/core';
import type { KeyWrapper, RecipientKey, ReleaseContext, WrappedKey } from './types.js';

/** Payload: the @custody/core key-wrap envelope (HPKE base mode, RFC 9180). */
export const HPKE_KEY_WRAP_SCHEME = 'custody-hpke-key-wrap-v1';

/** X25519 TEE keys use the core default suite; P-256 keys DHKEM(P-256) with the same KDF and AEAD. */
export const HPKE_SUITES: Record<RecipientKey['curve'], HpkeSuiteIds> = {
  X25519: KEY_WRAP_DEFAULT_SUITE,
  'P-256': { kem: KemId.DhkemP256HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes256Gcm },
};

/**
 * The KeyWrapper the broker uses for stores whose material reaches broker memory (embedded):
 * HPKE to the TEE's public key with @custody/core `wrapKey`, the release context bound as aad.
 * The TEE opens it with `unwrapKey(payload, { recipientKeyPair, context })`. `provider` picks
 * the HPKE primitives (the broker passes node:crypto's, @custody/crypto-node); default the
 * process-wide one.
 */
export class HpkeKeyWrapper implements KeyWrapper {
  constructor(private readonly provider?: HpkePrimitives) {}

  async wrapKey(recipient: RecipientKey, material: Uint8Array, context: ReleaseContext): Promise<WrappedKey> {
    const payload = await wrapKey(material, { recipientPublicKey: recipient.publicKey, suite: HPKE_SUITES[recipient.curve], context, ...(this.provider ? { provider: this.provider } : {}) });
    return { scheme: HPKE_KEY_WRAP_SCHEME, payload };
  }
}
