import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, fromBase64 } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { parseTpm2bPublic, parseTpmsAttest, parseTpmtPublic, parseTpmtSignature } from './structures.js';
import { readAttestationKey } from './ak.js';
import { mutationOf } from './testing/mutate.js';

const vector = JSON.parse(new TextDecoder().decode(readVector('attestation/azure-vtpm/tpm_evidence.json'))) as { ak_public: string; tpm_quote: { message: string; signature: string } };
const fixture = (name: string): { ak_public: string; quote: string; signature: string } =>
  JSON.parse(readFileSync(fileURLToPath(new URL(`./testdata/${name}`, import.meta.url)), 'utf8')) as { ak_public: string; quote: string; signature: string };
const ecc = fixture('swtpm-ecc-quote.json');
const rsa = fixture('swtpm-rsa-quote.json');

function onlyCustodyErrors(parse: (b: Uint8Array) => unknown): (b: Uint8Array) => void {
  return (b) => {
    try {
      parse(b);
    } catch (e) {
      if (!(e instanceof CustodyError)) throw e;
      expect(e.code).toMatch(/^ERR_[A-Z_]+$/);
    }
  };
}

const parsers: [string, (b: Uint8Array) => unknown, Uint8Array[]][] = [
  ['parseTpmsAttest', parseTpmsAttest, [fromBase64(vector.tpm_quote.message), fromBase64(ecc.quote)]],
  ['parseTpmtSignature', parseTpmtSignature, [fromBase64(vector.tpm_quote.signature), fromBase64(ecc.signature)]],
  ['parseTpm2bPublic', parseTpm2bPublic, [fromBase64(ecc.ak_public), fromBase64(rsa.ak_public)]],
  ['parseTpmtPublic', parseTpmtPublic, [fromBase64(ecc.ak_public).subarray(2), fromBase64(rsa.ak_public).subarray(2)]],
  ['readAttestationKey', readAttestationKey, [fromBase64(vector.ak_public), fromBase64(ecc.ak_public), fromBase64(rsa.ak_public)]],
];

describe('TPM structure parsers under fuzzing', () => {
  for (const [name, parse, seeds] of parsers) {
    it(`${name}: random bytes give a typed error or a value, never another exception`, () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 700 }), onlyCustodyErrors(parse)), { numRuns: 2000 });
    });

    it(`${name}: mutated real structures give a typed error or a value`, () => {
      for (const seed of seeds) fc.assert(fc.property(mutationOf(seed), onlyCustodyErrors(parse)), { numRuns: 1500 });
    });
  }

  it('parseTpmsAttest: TPM-shaped headers with random tails', () => {
    const head = Uint8Array.of(0xff, 0x54, 0x43, 0x47, 0x80, 0x18);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (tail) => {
        const b = new Uint8Array(head.length + tail.length);
        b.set(head);
        b.set(tail, head.length);
        onlyCustodyErrors(parseTpmsAttest)(b);
      }),
      { numRuns: 3000 },
    );
  });

  // Regression inputs found while writing the parsers.
  it('keeps known edge cases typed', () => {
    expect(() => parseTpmsAttest(Uint8Array.of(0x00, 0x04, 0xff, 0x54, 0x43, 0x47))).toThrowError(CustodyError);
    expect(() => parseTpmtSignature(Uint8Array.of(0x00, 0x05, 0x00, 0x0b))).toThrowError(CustodyError);
    expect(() => readAttestationKey(Uint8Array.of(0x30, 0x82, 0x00, 0x01, 0x00))).toThrowError(CustodyError);
    expect(() => readAttestationKey(new TextEncoder().encode('-----BEGIN PUBLIC KEY-----\n@@\n-----END PUBLIC KEY-----'))).toThrowError(CustodyError);
  });
});
