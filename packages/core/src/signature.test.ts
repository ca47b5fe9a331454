import { describe, expect, it } from 'vitest';
import { getSignatureProvider, setSignatureProvider, webCryptoSignaturePrimitives, type SignaturePrimitives } from './signature.js';
import { describeSignatureConformance } from './testing/signature-conformance.js';

describeSignatureConformance(webCryptoSignaturePrimitives);

describe('signature provider installation', () => {
  it('installs process-wide, returns the previous one, and resets to WebCrypto', () => {
    const fake: SignaturePrimitives = { name: 'test-only', verifyEd25519: () => false };
    const before = setSignatureProvider(fake);
    expect(before).toBe(webCryptoSignaturePrimitives);
    expect(getSignatureProvider()).toBe(fake);
    expect(setSignatureProvider()).toBe(fake);
    expect(getSignatureProvider()).toBe(webCryptoSignaturePrimitives);
  });
});
