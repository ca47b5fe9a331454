import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readVector } from '../../../../test/vectors.js';
import { CustodyError } from '../errors.js';
import { encodeCbor } from '../cbor/encode.js';
import { CborTag, type CborValue } from '../cbor/types.js';
import { parseCoseSign1 } from './sign1.js';

const CODES = /^ERR_(INPUT_[A-Z_]+|CBOR_[A-Z_]+)$/;

function parsesOrTypedError(b: Uint8Array): void {
  try {
    parseCoseSign1(b);
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    expect(e.code).toMatch(CODES);
  }
}

const header = fc.array(fc.tuple(fc.oneof(fc.integer({ min: -300, max: 40 }), fc.string({ maxLength: 4 })), fc.oneof(fc.integer({ min: -300, max: 300 }), fc.string({ maxLength: 4 }), fc.uint8Array({ maxLength: 4 }), fc.array(fc.integer(), { maxLength: 2 }))), { maxLength: 4 })
  .map((es) => new Map<string | number, CborValue>(es));

describe('COSE_Sign1 parser fuzz', () => {
  it('random bytes give a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), parsesOrTypedError), { numRuns: 3000 });
  });

  it('mutations of a real COSE_Sign1 (the Nitro document) parse or give a typed error', () => {
    const doc = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(doc.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 6 }), fc.nat(doc.length), (flips, cut) => {
        const b = doc.slice(0, cut || doc.length);
        for (const [i, x] of flips) if (i < b.length) b[i]! ^= x;
        parsesOrTypedError(b);
      }),
      { numRuns: 3000 },
    );
  });

  it('random header buckets and parts parse or give a typed error', () => {
    fc.assert(
      fc.property(header, header, fc.oneof(fc.uint8Array({ maxLength: 8 }), fc.constant(null), fc.string()), fc.uint8Array({ maxLength: 8 }), fc.boolean(), (prot, unprot, payload, sig, tagged) => {
        const arr: CborValue[] = [encodeCbor(prot), unprot, payload, sig];
        parsesOrTypedError(encodeCbor(tagged ? new CborTag(18, arr) : arr));
      }),
      { numRuns: 2000 },
    );
  });
});
