// The conformance suite a signature provider must pass: RFC 8032 section 7.1 Ed25519 vectors,
// each with tampered twins (signature, message, key), malformed lengths, and a signature whose
// scalar S is not reduced (S + L, which RFC 8032 section 5.1.7 requires verifiers to reject).
// Run for WebCrypto here and for node:crypto by services/crypto-node.
import { describe, expect, it } from 'vitest';
import { fromHex } from '../bytes.js';
import type { SignaturePrimitives } from '../signature.js';

/** RFC 8032, 7.1: TEST 1 (empty message), TEST 2 (one byte), TEST 3 (two bytes). */
export const RFC8032_ED25519 = [
  {
    name: 'TEST 1',
    publicKey: 'd75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a',
    message: '',
    signature: 'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
  },
  {
    name: 'TEST 2',
    publicKey: '3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c',
    message: '72',
    signature: '92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00',
  },
  {
    name: 'TEST 3',
    publicKey: 'fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025',
    message: 'af82',
    signature: '6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a',
  },
] as const;

/** The group order L of edwards25519, little-endian as S is encoded. */
const L = 2n ** 252n + 27742317777372353535851937790883648493n;

function addOrder(signature: Uint8Array): Uint8Array {
  let s = 0n;
  for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(signature[i]!);
  s += L;
  const out = signature.slice();
  for (let i = 32; i < 64; i++) {
    out[i] = Number(s & 0xffn);
    s >>= 8n;
  }
  return out;
}

export function describeSignatureConformance(provider: SignaturePrimitives): void {
  describe(`signature provider ${provider.name}: RFC 8032 Ed25519`, () => {
    for (const v of RFC8032_ED25519) {
      const pk = fromHex(v.publicKey);
      const msg = fromHex(v.message);
      const sig = fromHex(v.signature);
      it(`${v.name} verifies`, async () => {
        expect(await provider.verifyEd25519(pk, sig, msg)).toBe(true);
      });
      it(`${v.name} tampered twins fail`, async () => {
        const flip = (b: Uint8Array, i: number) => {
          const c = b.slice();
          c[i]! ^= 0x01;
          return c;
        };
        expect(await provider.verifyEd25519(pk, flip(sig, 0), msg)).toBe(false);
        expect(await provider.verifyEd25519(pk, flip(sig, 63), msg)).toBe(false);
        expect(await provider.verifyEd25519(pk, sig, Uint8Array.of(...msg, 0))).toBe(false);
        if (msg.length > 0) expect(await provider.verifyEd25519(pk, sig, flip(msg, 0))).toBe(false);
        expect(await provider.verifyEd25519(flip(pk, 5), sig, msg)).toBe(false);
        const other = RFC8032_ED25519.find((o) => o.name !== v.name)!;
        expect(await provider.verifyEd25519(fromHex(other.publicKey), sig, msg)).toBe(false);
        expect(await provider.verifyEd25519(pk, addOrder(sig), msg)).toBe(false);
      });
      it(`${v.name} malformed lengths are refused, not thrown`, async () => {
        expect(await provider.verifyEd25519(pk.subarray(1), sig, msg)).toBe(false);
        expect(await provider.verifyEd25519(pk, sig.subarray(1), msg)).toBe(false);
        expect(await provider.verifyEd25519(Uint8Array.of(...pk, 0), sig, msg)).toBe(false);
        expect(await provider.verifyEd25519(new Uint8Array(32).fill(0xff), sig, msg)).toBe(false);
      });
    }
  });
}
