import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, decodeCbor, encodeCbor, encodeCoseSign1, equalBytes, parseCoseSign1, type CborMap, type CborValue } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { parseNitroDocument } from './document.js';
import { nitroVerifier } from './verifier.js';

const DOC = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
const AT = new Date(1726606030 * 1000);
const CODES = /^ERR_(INPUT_[A-Z_]+|CBOR_[A-Z_]+)$/;

function parsesOrTypedError(b: Uint8Array): void {
  try {
    parseNitroDocument(b);
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    expect(e.code).toMatch(CODES);
  }
}

/** The real document with a few bytes changed, a truncation or an insertion. */
const mutated = fc.oneof(
  fc.array(fc.tuple(fc.nat(DOC.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 6 }).map((fs) => {
    const b = DOC.slice();
    for (const [i, x] of fs) b[i]! ^= x;
    return b;
  }),
  fc.nat(DOC.length - 1).map((n) => DOC.slice(0, n)),
  fc.tuple(fc.nat(DOC.length), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([at, ins]) => Uint8Array.from([...DOC.subarray(0, at), ...ins, ...DOC.subarray(at)])),
);

const cborLeaf: fc.Arbitrary<CborValue> = fc.oneof(
  fc.integer(),
  fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n - 1n }).filter((b) => b < BigInt(Number.MIN_SAFE_INTEGER) || b > BigInt(Number.MAX_SAFE_INTEGER)),
  fc.string({ maxLength: 20 }),
  fc.uint8Array({ maxLength: 1100 }),
  fc.constantFrom<CborValue>(null, undefined, true, false),
  fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 4 }),
  fc.array(fc.tuple(fc.integer({ min: -2, max: 40 }), fc.uint8Array({ maxLength: 70 })), { maxLength: 4 }).map((es) => new Map(es)),
);

describe('Nitro document parser fuzz', () => {
  it('random bytes give a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), parsesOrTypedError), { numRuns: 3000 });
  });

  it('mutations of the real document parse or give a typed error', () => {
    fc.assert(fc.property(mutated, parsesOrTypedError), { numRuns: 3000 });
  });

  it('random values in any payload field parse or give a typed error', () => {
    const cose = parseCoseSign1(DOC);
    const payload = decodeCbor(cose.payload!) as CborMap;
    const keys = [...payload.keys()] as string[];
    fc.assert(
      fc.property(fc.constantFrom(...keys, 'extra'), cborLeaf, (k, v) => {
        const m = new Map(payload);
        m.set(k, v);
        parsesOrTypedError(encodeCoseSign1({ ...cose, payload: encodeCbor(m) }));
      }),
      { numRuns: 2000 },
    );
  });

  // Crasher found by the property below: an intermediate whose EC point prefix 04 became 05 made
  // WebCrypto's importKey throw a DOMException that escaped as ERR_INTERNAL.
  it('regression: a CA certificate with an EC point WebCrypto refuses fails as ERR_CERT_SIGNATURE', async () => {
    const ca = (decodeCbor(parseCoseSign1(DOC).payload!) as CborMap).get('cabundle') as Uint8Array[];
    const at = Buffer.from(DOC).indexOf(Buffer.from(ca[1]!));
    const spkiAt = Buffer.from(ca[1]!).indexOf(Buffer.from([0x03, 0x62, 0x00, 0x04]));
    expect(at > 0 && spkiAt > 0).toBe(true);
    const bad = DOC.slice();
    bad[at + spkiAt + 3] = 0x05;
    const r = await nitroVerifier.verify({ evidence: bad, now: AT });
    expect(r.errors[0]).toMatchObject({ code: 'ERR_CERT_SIGNATURE', step: 'chain' });
  });

  it('no mutation of the document verifies', async () => {
    await fc.assert(
      fc.asyncProperty(mutated, async (m) => {
        fc.pre(!equalBytes(m, DOC));
        const r = await nitroVerifier.verify({ evidence: m, now: AT });
        expect(r.ok).toBe(false);
        expect(r.errors[0]!.code).toMatch(/^ERR_[A-Z_]+$/);
        expect(r.errors[0]!.code).not.toBe('ERR_INTERNAL');
      }),
      { numRuns: 300 },
    );
  });
});
