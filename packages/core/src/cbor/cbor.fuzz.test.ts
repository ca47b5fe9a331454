import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readVector } from '../../../../test/vectors.js';
import { fromHex } from '../bytes.js';
import { CustodyError } from '../errors.js';
import { decodeCbor } from './decode.js';
import { encodeCbor } from './encode.js';
import { CborFloat, CborSimple, CborTag, type CborDecodeOptions, type CborValue } from './types.js';

const CODES = /^ERR_(INPUT_(TRUNCATED|MALFORMED|TOO_LARGE|UNSUPPORTED)|CBOR_(DUPLICATE_KEY|NOT_DETERMINISTIC|INDEFINITE_LENGTH))$/;

function decodesOrTypedError(bytes: Uint8Array, opts?: CborDecodeOptions): void {
  try {
    decodeCbor(bytes, opts);
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    expect(e.code).toMatch(CODES);
  }
}

const key = fc.oneof(fc.integer({ min: -1000, max: 1000 }), fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n - 1n }), fc.string({ maxLength: 8 }));

/** Values in the shape the decoder produces (safe integers as number, others as bigint). */
const { value } = fc.letrec<{ value: CborValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer(),
    fc.bigInt({ min: -(2n ** 64n), max: 2n ** 64n - 1n }).map((b) => (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b)),
    fc.string({ unit: 'grapheme', maxLength: 16 }),
    fc.uint8Array({ maxLength: 32 }),
    fc.constantFrom<CborValue>(true, false, null, undefined),
    fc.double().map((d) => new CborFloat(d)),
    fc.oneof(fc.integer({ min: 0, max: 19 }), fc.integer({ min: 32, max: 255 })).map((s) => new CborSimple(s)),
    fc.tuple(fc.integer({ min: 0, max: 2 ** 40 }), tie('value')).map(([t, v]) => new CborTag(t, v)),
    fc.array(tie('value'), { maxLength: 5 }),
    fc.uniqueArray(fc.tuple(key, tie('value')), { maxLength: 5, selector: ([k]) => (typeof k === 'bigint' && k >= BigInt(Number.MIN_SAFE_INTEGER) && k <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(k) : k) })
      .map((es) => new Map(es.map(([k, v]) => [typeof k === 'bigint' && k >= BigInt(Number.MIN_SAFE_INTEGER) && k <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(k) : k, v]))),
  ),
}));

describe('CBOR fuzz', () => {
  it('random bytes decode or fail with a typed error, in every mode', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), fc.boolean(), fc.boolean(), (bytes, allowIndefinite, deterministic) => {
        decodesOrTypedError(bytes, { allowIndefinite, deterministic, maxDepth: 16, maxItems: 512 });
      }),
      { numRuns: 5000 },
    );
  });

  it('encode then decode is the identity, and the encoding passes the deterministic check', () => {
    fc.assert(
      fc.property(value, (v) => {
        const bytes = encodeCbor(v);
        const back = decodeCbor(bytes, { deterministic: true, maxDepth: 64 });
        expect(back).toStrictEqual(v);
        expect(encodeCbor(back)).toStrictEqual(bytes);
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated encodings of random values decode or fail with a typed error', () => {
    fc.assert(
      fc.property(value, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(), (v, flips, cut) => {
        const bytes = encodeCbor(v);
        for (const [at, b] of flips) if (bytes.length) bytes[at % bytes.length] = b;
        decodesOrTypedError(bytes.subarray(0, bytes.length - (cut % 3)), { allowIndefinite: true });
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated real COSE/CBOR (the Nitro attestation document) decodes or fails with a typed error', () => {
    const doc = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(doc.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(doc.length), (flips, cut) => {
        const m = doc.slice(0, cut === 0 ? doc.length : cut);
        for (const [at, b] of flips) if (at < m.length) m[at] = b;
        decodesOrTypedError(m);
      }),
      { numRuns: 3000 },
    );
  });

  // Regression inputs kept from development: deep nesting and oversized declared lengths.
  it.each(['9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f9f', 'bf5f', '7b7fffffffffffffff', 'c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c6c600'])('regression %s', (hex) => {
    decodesOrTypedError(fromHex(hex), { allowIndefinite: true });
  });
});
