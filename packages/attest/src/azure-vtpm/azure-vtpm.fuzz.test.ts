import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, equalBytes, utf8, type Bytes } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { parseAzureVtpmEvidence } from './checks.js';
import { detectAzureVtpmEvidence, readAzureVtpmEvidence } from './evidence.js';
import { HCL_REQUEST_DATA_OFFSET, parseHclReport, parseRuntimeData } from './hcl-report.js';
import { azureVtpmVerifier } from './verifier.js';
import { A, AT_SNP, CHALLENGE, SNP_V0, SNP_V1, TDX_V0, encodeDoc, flip, hclOf, loadDoc, mutationOf, quoteOf, setHcl, withHcl, withQuote, type EvidenceDoc } from './testing/vectors.js';

const SNP_HCL = readVector(`${A}az-snp-vtpm/hcl-report.bin`);
const TDX_HCL = readVector(`${A}az-tdx-vtpm/hcl-report.bin`);
const DOCS = { v0: loadDoc(SNP_V0), v1: loadDoc(SNP_V1), tdx: loadDoc(TDX_V0) };

/** Returns normally or throws a CustodyError; anything else fails the property. */
function typedOrValue(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    expect(e.code).toMatch(/^ERR_[A-Z_]+$/);
  }
}

function setPath(o: unknown, path: readonly (string | number)[], v: unknown): unknown {
  let cur = o as Record<string | number, unknown>;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, unknown>;
  cur[path.at(-1)!] = v;
  return o;
}

describe('HCL report parser under fuzzing', () => {
  it('random bytes, and random bytes behind the "HCLA" signature, give a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 3000 }), (b) => typedOrValue(() => parseHclReport(b))), { numRuns: 1500 });
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 3000 }), (b) => {
        const x = new Uint8Array(4 + b.length);
        x.set(utf8('HCLA'));
        x.set(b, 4);
        typedOrValue(() => parseHclReport(x));
      }),
      { numRuns: 1500 },
    );
  });

  it('mutated vectors give a typed error or a report', () => {
    for (const base of [SNP_HCL, TDX_HCL]) fc.assert(fc.property(mutationOf(base), (m) => typedOrValue(() => parseHclReport(m))), { numRuns: 1500 });
  });

  it('any value in any header or request data field gives a typed error or a consistent report', () => {
    const offsets = [4, 8, 12, 16, HCL_REQUEST_DATA_OFFSET, HCL_REQUEST_DATA_OFFSET + 4, HCL_REQUEST_DATA_OFFSET + 8, HCL_REQUEST_DATA_OFFSET + 12, HCL_REQUEST_DATA_OFFSET + 16];
    fc.assert(
      fc.property(fc.constantFrom(SNP_HCL, TDX_HCL), fc.constantFrom(...offsets), fc.oneof(fc.nat(8), fc.nat(5000), fc.constant(0xffffffff), fc.nat({ max: 0xffffffff })), (base, at, v) => {
        const b = base.slice();
        new DataView(b.buffer).setUint32(at, v, true);
        typedOrValue(() => {
          const h = parseHclReport(b);
          // Whatever parses must describe bytes inside the input.
          expect(h.runtimeDataOffset + h.runtimeData.length).toBeLessThanOrEqual(b.length);
          expect(h.header.reportSize).toBe(h.runtimeDataOffset + h.runtimeData.length);
        });
      }),
      { numRuns: 2000 },
    );
  });
});

describe('runtime data parser under fuzzing', () => {
  const rt = JSON.parse(new TextDecoder().decode(parseHclReport(SNP_HCL).runtimeData)) as unknown;
  it('random bytes, text and JSON give a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => typedOrValue(() => parseRuntimeData(b))), { numRuns: 1000 });
    fc.assert(fc.property(fc.string({ maxLength: 600 }), (s) => typedOrValue(() => parseRuntimeData(utf8(s)))), { numRuns: 1000 });
    fc.assert(fc.property(fc.jsonValue(), (v) => typedOrValue(() => parseRuntimeData(utf8(JSON.stringify(v))))), { numRuns: 1000 });
  });
  it('any JSON value in place of any member gives a typed error or runtime data with exactly one HCLAkPub', () => {
    const paths: (string | number)[][] = [['keys'], ['keys', 0], ['keys', 1], ['keys', 0, 'kid'], ['keys', 0, 'kty'], ['keys', 0, 'n'], ['keys', 0, 'e'], ['keys', 0, 'key_ops'], ['vm-configuration'], ['user-data']];
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.jsonValue(), (path, v) => {
        typedOrValue(() => {
          const out = parseRuntimeData(utf8(JSON.stringify(setPath(structuredClone(rt), path, v))));
          expect(out.keys.filter((k) => k.kid === 'HCLAkPub').length).toBe(1);
        });
      }),
      { numRuns: 2000 },
    );
  });
  it('deeply nested JSON gives a typed error', () => {
    for (const depth of [1000, 100000]) typedOrValue(() => parseRuntimeData(utf8('{"keys":' + '['.repeat(depth) + ']'.repeat(depth) + '}')));
  });
});

describe('evidence JSON reader under fuzzing', () => {
  it('random bytes, text and JSON give a typed error or evidence; detect never throws', () => {
    const check = (b: Uint8Array): void => {
      expect(typeof detectAzureVtpmEvidence(b)).toBe('boolean');
      typedOrValue(() => readAzureVtpmEvidence(b));
    };
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), check), { numRuns: 1000 });
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (s) => check(utf8(s))), { numRuns: 1000 });
    fc.assert(fc.property(fc.jsonValue(), (v) => check(utf8(JSON.stringify(v)))), { numRuns: 1000 });
  });

  const fieldPaths: Record<keyof typeof DOCS, (string | number)[][]> = {
    v0: [['quote'], ['report'], ['vcek'], ['quote', 'message'], ['quote', 'signature'], ['quote', 'pcrs'], ['quote', 'pcrs', 3], ['quote', 'pcrs', 3, 0], ['report', 5], ['version']],
    v1: [['version'], ['tpm_quote'], ['hcl_report'], ['vcek'], ['td_quote'], ['tpm_quote', 'message'], ['tpm_quote', 'signature'], ['tpm_quote', 'pcrs'], ['tpm_quote', 'pcrs', 3]],
    tdx: [['tpm_quote'], ['hcl_report'], ['td_quote'], ['tpm_quote', 'pcrs', 0], ['hcl_report', 0], ['td_quote', 10], ['vcek'], ['version']],
  };
  for (const name of Object.keys(DOCS) as (keyof typeof DOCS)[]) {
    it(`${name}: any JSON value in place of any field gives a typed error or evidence that parses fully or with a typed error`, () => {
      fc.assert(
        fc.property(fc.constantFrom(...fieldPaths[name]), fc.jsonValue(), (path, v) => {
          const b = encodeDoc(setPath(structuredClone(DOCS[name]), path, v) as EvidenceDoc);
          typedOrValue(() => parseAzureVtpmEvidence(b));
        }),
        { numRuns: 800 },
      );
    });
    it(`${name}: mutated evidence bytes give a typed error or evidence`, () => {
      fc.assert(fc.property(mutationOf(encodeDoc(DOCS[name])), (m) => typedOrValue(() => parseAzureVtpmEvidence(m))), { numRuns: 400 });
    });
    it(`${name}: a mutated HCL report inside the evidence gives a typed error or parts`, () => {
      const hcl = hclOf(DOCS[name]);
      fc.assert(fc.property(mutationOf(hcl), (m) => typedOrValue(() => parseAzureVtpmEvidence(encodeDoc(setHcl(structuredClone(DOCS[name]), m))))), { numRuns: 800 });
    });
  }
});

describe('Azure vTPM verifier under fuzzing: no change to a measured or signed byte verifies', () => {
  const doc = DOCS.v1;
  const hcl = hclOf(doc);
  const h = parseHclReport(hcl);
  // The SEV-SNP report's signed bytes and its r, s; the runtime data.
  const measured = [...Array.from({ length: 0x330 }, (_, i) => 0x20 + i), ...Array.from({ length: h.runtimeData.length }, (_, i) => h.runtimeDataOffset + i)];

  async function refused(d: EvidenceDoc): Promise<void> {
    const r = await azureVtpmVerifier.verify({ evidence: encodeDoc(d), now: AT_SNP, nonce: CHALLENGE });
    expect(r.ok).toBe(false);
    expect(r.errors.length).toBeGreaterThan(0);
    expect(r.errors[0]!.code).not.toBe('ERR_INTERNAL');
    expect(r.errors[0]!.code).toMatch(/^ERR_(INPUT|EVIDENCE|TPM|AZURE|CERT|SNP)_[A-Z_]+$/);
  }

  it('flipped bytes in the SEV-SNP report or the runtime data', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...measured), fc.integer({ min: 1, max: 255 }), async (at, x) => {
        await refused(withHcl(doc, (b) => flip(b, at, x)));
      }),
      { numRuns: 250 },
    );
  });

  const q = quoteOf(doc);
  const fields = [
    { name: 'quote message', bytes: q.message, set: (p: typeof q, b: Bytes) => (p.message = b) },
    { name: 'quote signature', bytes: q.signature, set: (p: typeof q, b: Bytes) => (p.signature = b) },
    { name: 'PCR 9', bytes: q.pcrs[9]!, set: (p: typeof q, b: Bytes) => (p.pcrs[9] = b) },
  ];
  for (const f of fields) {
    it(`mutated ${f.name}`, async () => {
      await fc.assert(
        fc.asyncProperty(mutationOf(f.bytes), async (m) => {
          fc.pre(!equalBytes(m, f.bytes));
          await refused(withQuote(doc, (p) => void f.set(p, m.slice())));
        }),
        { numRuns: 150 },
      );
    });
  }
});
