import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readVector } from '../../../../test/vectors.js';
import { CustodyError } from '../errors.js';
import { X509Certificate } from './certificate.js';
import { X509Crl } from './crl.js';

const seeds = [
  readVector('attestation/sev-snp/go-sev-guest/vcek.testcer'),
  readVector('attestation/sev-snp/trustee/test-vlek.der'),
  readVector('attestation/tdx/go-tdx-guest/pckcrl'),
];

/** Parsing must either succeed or throw a typed CustodyError: never another exception or a hang. */
function parsesOrTypedError(parse: () => unknown): void {
  try {
    parse();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toMatch(/^ERR_(CERT_PARSE|CRL_INVALID|INPUT_TOO_LARGE)$/);
  }
}

const mutated = fc
  .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.option(fc.nat()))
  .map(([seed, flips, cut]) => {
    const b = seed.slice();
    for (const [pos, val] of flips) b[pos % b.length] = val;
    return cut === null ? b : b.subarray(0, cut % (b.length + 1));
  });

describe('X.509 and CRL parsers under fuzzing', () => {
  it('random bytes give typed errors', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2048 }), (b) => {
        parsesOrTypedError(() => new X509Certificate(b));
        parsesOrTypedError(() => new X509Crl(b));
      }),
      { numRuns: 2000, seed: 42 },
    );
  });

  it('mutated real certificates and CRLs give typed errors or parse', () => {
    fc.assert(
      fc.property(mutated, (b) => {
        parsesOrTypedError(() => new X509Certificate(b));
        parsesOrTypedError(() => new X509Crl(b));
      }),
      { numRuns: 3000, seed: 7 },
    );
  });

  it('an oversized input is refused before parsing', () => {
    expect(() => new X509Certificate(new Uint8Array(70_000))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TOO_LARGE' }) as Error);
  });
});
