import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readVector } from '../../../../test/vectors.js';
import { CustodyError } from '../errors.js';
import { createKeyCertificate } from '../testing/certificates.js';
import { KEY_USAGE, X509Certificate } from './certificate.js';
import { X509Crl } from './crl.js';
import { OID } from './oids.js';

// A leaf carrying keyUsage and extKeyUsage (no real vendor leaf has extKeyUsage), so mutations reach both.
const usageLeaf = await createKeyCertificate({ cn: 'Fuzz Leaf', serial: 7, ca: false, keyUsage: KEY_USAGE.digitalSignature | KEY_USAGE.contentCommitment, extKeyUsage: ['1.3.6.1.5.5.7.3.1', OID.anyExtendedKeyUsage] });

const seeds = [
  readVector('attestation/sev-snp/go-sev-guest/vcek.testcer'),
  readVector('attestation/sev-snp/trustee/test-vlek.der'),
  readVector('attestation/tdx/go-tdx-guest/pckcrl'),
  usageLeaf.cert,
];

/** The extension getters chain validation reads: decoded lazily, so they are fuzzed too. */
function readExtensions(cert: X509Certificate): unknown[] {
  return [cert.basicConstraints, cert.keyUsage, cert.extKeyUsage];
}

/** Parsing must either succeed or throw a typed CustodyError: never another exception or a hang. */
function parsesOrTypedError(parse: () => unknown): void {
  try {
    const v = parse();
    if (v instanceof X509Certificate) readExtensions(v);
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

  it('random extKeyUsage and keyUsage extension values give a list or ERR_CERT_PARSE', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 64 }), fc.uint8Array({ maxLength: 8 }), async (eku, ku) => {
        const c = await createKeyCertificate({ cn: 'Fuzz Leaf', serial: 8, ca: false, keys: usageLeaf.keys, extensions: [[OID.extKeyUsage, eku], [OID.keyUsage, ku, true]] });
        const cert = new X509Certificate(c.cert);
        for (const get of [() => cert.extKeyUsage, () => cert.keyUsage]) {
          try {
            const v = get();
            expect(Array.isArray(v) ? v.every((o) => /^\d+(\.\d+)+$/.test(o)) : typeof v === 'number').toBe(true);
          } catch (e) {
            expect(e).toBeInstanceOf(CustodyError);
            expect((e as CustodyError).code).toBe('ERR_CERT_PARSE');
          }
        }
      }),
      { numRuns: 300, seed: 11 },
    );
  });

  it('an oversized input is refused before parsing', () => {
    expect(() => new X509Certificate(new Uint8Array(70_000))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TOO_LARGE' }) as Error);
  });
});
