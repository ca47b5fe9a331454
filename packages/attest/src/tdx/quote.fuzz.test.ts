import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, X509Certificate, equalBytes, readCertificates, type Extension } from '@custody/core';
import { SGX_OID } from './constants.js';
import { parsePckExtensions } from './pck-extensions.js';
import { parseTdxQuote } from './quote.js';
import { parseTdReport } from './td-report.js';
import { AT_2023, G, T, collateral2023, quoteBytes } from './testing/sets.js';
import { TdxVerifier } from './verifier.js';

const seeds = [G + 'tdx_prod_quote_SPR_E4.dat', G + 'quote_v5_sample.dat', T + 'tdx_quote_4.dat', T + 'tdx_quote_6.dat'].map(quoteBytes);

/** Parsing either succeeds or throws a CustodyError with a stable code: never another exception. */
function typedOrOk(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toMatch(/^ERR_[A-Z_]+$/);
  }
}

/** Real quotes with bytes overwritten (biased to the header, body descriptor and length fields) and optionally cut. */
const mutatedQuote = fc
  .tuple(
    fc.constantFrom(...seeds),
    fc.array(fc.tuple(fc.oneof(fc.nat({ max: 64 }), fc.nat({ max: 5200 }), fc.constantFrom(632, 633, 634, 635, 764, 765, 1218, 1219, 1252, 1253, 1254)), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }),
    fc.option(fc.nat({ max: 5200 })),
  )
  .map(([seed, edits, cut]) => {
    const b = seed.slice();
    for (const [pos, val] of edits) b[pos % b.length] = val;
    return cut === null ? b : b.subarray(0, cut);
  });

describe('TDX quote parser fuzz', () => {
  it('random bytes give a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 6000 }), (b) => typedOrOk(() => parseTdxQuote(b))), { numRuns: 500 });
  });

  it('random bytes behind a valid v4/v5 header give a typed error', () => {
    const header = seeds[1]!.subarray(0, 54);
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 6000 }), fc.boolean(), (tail, v4) => {
        const h = header.slice();
        if (v4) h[0] = 4;
        const b = new Uint8Array(h.length + tail.length);
        b.set(h);
        b.set(tail, h.length);
        typedOrOk(() => parseTdxQuote(b));
      }),
      { numRuns: 500 },
    );
  });

  it('mutated real quotes parse or give a typed error', () => {
    fc.assert(fc.property(mutatedQuote, (b) => typedOrOk(() => parseTdxQuote(b))), { numRuns: 2000 });
  });

  it('TDREPORT parser: random and mutated input gives a typed error or a report', () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 1000, maxLength: 1030 }), (b) => typedOrOk(() => parseTdReport(b))), { numRuns: 300 });
  });

  it('PCK SGX extension parser: mutated extension DER gives ERR_TDX_PCK_CERT or a value', () => {
    const leaf = new X509Certificate(readCertificates(parseTdxQuote(seeds[0]!).pckCertChain)[0]!);
    const ext = leaf.extension(SGX_OID.extensions)!;
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.option(fc.nat()), (edits, cut) => {
        const v = ext.value.slice();
        for (const [pos, val] of edits) v[pos % v.length] = val;
        const value = cut === null ? v : v.subarray(0, cut % (v.length + 1));
        const stub = { extension: (oid: string): Extension | undefined => (oid === SGX_OID.extensions ? { oid, critical: false, value } : undefined) } as unknown as X509Certificate;
        try {
          parsePckExtensions(stub);
        } catch (e) {
          expect(e).toBeInstanceOf(CustodyError);
          expect((e as CustodyError).code).toBe('ERR_TDX_PCK_CERT');
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('the verifier never throws and never accepts a quote whose signed bytes changed', async () => {
    const v = new TdxVerifier();
    const collateral = collateral2023();
    const original = parseTdxQuote(seeds[2]!);
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.nat({ max: 4935 }), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }),
        async (edits) => {
          const b = seeds[2]!.slice();
          for (const [pos, val] of edits) b[pos] = val;
          const r = await v.verify({ evidence: b, collateral, now: AT_2023 });
          for (const e of r.errors) expect(e.code).toMatch(/^ERR_[A-Z_]+$/);
          if (r.ok) {
            const q = parseTdxQuote(b);
            expect(equalBytes(q.signedData, original.signedData)).toBe(true);
            expect(equalBytes(q.signature, original.signature)).toBe(true);
            expect(equalBytes(q.qeReport.raw, original.qeReport.raw)).toBe(true);
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
