import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError } from '../errors.js';
import { KemId } from './identifiers.js';
import { encodeWrappedKey, parseWrappedKey, unwrapKey, wrapKey } from './key-wrap.js';
import { deriveHpkeKeyPair } from './keys.js';

function parsesOrTypedError(b: Uint8Array): void {
  try {
    const w = parseWrappedKey(b);
    // Whatever parses re-encodes to the same bytes (one encoding per value).
    expect(encodeWrappedKey(w)).toEqual(b);
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toMatch(/^ERR_(INPUT_TRUNCATED|INPUT_UNSUPPORTED|INPUT_TOO_LARGE|HPKE_UNSUPPORTED|HPKE_EXPORT_ONLY)$/);
  }
}

describe('wrapped-key parser under fuzzing', () => {
  it('random bytes give typed errors or canonical envelopes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), parsesOrTypedError), { numRuns: 3000, seed: 11 });
    const header = fc.tuple(fc.constantFrom(0, 1, 2), fc.constantFrom(0x10, 0x11, 0x12, 0x20, 0x21, 0x30), fc.constantFrom(1, 2, 3, 4), fc.constantFrom(1, 2, 3, 0xffff, 9));
    fc.assert(
      fc.property(header, fc.uint8Array({ maxLength: 250 }), ([v, kem, kdf, aead], rest) => {
        parsesOrTypedError(Uint8Array.from([v, kem >> 8, kem & 0xff, kdf >> 8, kdf & 0xff, aead >> 8, aead & 0xff, ...rest]));
      }),
      { numRuns: 3000, seed: 12 },
    );
  });

  it('mutated real envelopes never open and fail with typed codes', async () => {
    const tee = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, new Uint8Array(32).fill(3));
    const env = await wrapKey(new Uint8Array(32).fill(0xaa), { recipientPublicKey: tee.publicKey, context: { key: 'k' } });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), fc.option(fc.nat()), async (flips, cut) => {
        const b = env.slice();
        for (const [pos, x] of flips) b[pos % b.length]! ^= x;
        const m = cut === null ? b : b.subarray(0, cut % (b.length + 1));
        const err = await unwrapKey(m, { recipientKeyPair: tee, context: { key: 'k' } }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(CustodyError);
        expect((err as CustodyError).code).toMatch(/^ERR_(INPUT_TRUNCATED|INPUT_UNSUPPORTED|HPKE_UNSUPPORTED|HPKE_EXPORT_ONLY|HPKE_KEY|HPKE_OPEN|HPKE_DECAP)$/);
      }),
      { numRuns: 400, seed: 13 },
    );
  });
});
