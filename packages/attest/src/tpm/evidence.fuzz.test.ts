import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, equalBytes, fromBase64, fromHex, toBase64, toHex, utf8 } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { parseTpmEvidence } from './evidence.js';
import { tpmVerifier } from './verifier.js';
import { mutationOf } from './testing/mutate.js';

const vectorBytes = readVector('attestation/azure-vtpm/tpm_evidence.json');
const vector = JSON.parse(new TextDecoder().decode(vectorBytes)) as { ak_public: string; tpm_quote: { message: string; signature: string; pcrs: string[] } };
const eccBytes = new Uint8Array(readFileSync(fileURLToPath(new URL('./testdata/swtpm-ecc-quote.json', import.meta.url))));
const ecc = JSON.parse(new TextDecoder().decode(eccBytes)) as { ak_public: string; quote: string; signature: string; pcrs: { bank: string; values: Record<string, string> } };
const AT = new Date('2024-06-01T00:00:00Z');

/** Replaces the value at `path` (object keys or array indices) with `v`. */
function setPath(o: unknown, path: readonly string[], v: unknown): unknown {
  let cur = o as Record<string, unknown>;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string, unknown>;
  cur[path.at(-1)!] = v;
  return o;
}

function typedOrValue(b: Uint8Array): void {
  try {
    parseTpmEvidence(b);
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
  }
}

describe('TPM evidence JSON reader under fuzzing', () => {
  it('random bytes and random text give a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), typedOrValue), { numRuns: 1500 });
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (s) => typedOrValue(utf8(s))), { numRuns: 1500 });
  });

  it('random JSON values, alone or in place of any field, give a typed error', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => typedOrValue(utf8(JSON.stringify(v)))), { numRuns: 1000 });
    // Each path names a field of the vector (trustee form) or the swtpm fixture (custody form).
    const vectorPaths = [['ak_public'], ['tpm_quote'], ['tpm_quote', 'message'], ['tpm_quote', 'signature'], ['tpm_quote', 'pcrs'], ['tpm_quote', 'pcrs', '5']];
    const custodyPaths = [['format'], ['quote'], ['signature'], ['pcrs'], ['pcrs', 'bank'], ['pcrs', 'values'], ['pcrs', 'values', '5'], ['pcrs', 'values', '99']];
    for (const [base, paths] of [[vector, vectorPaths], [ecc, custodyPaths]] as const) {
      fc.assert(
        fc.property(fc.constantFrom(...paths), fc.jsonValue(), (path, v) => {
          typedOrValue(utf8(JSON.stringify(setPath(structuredClone(base), path, v))));
        }),
        { numRuns: 1000 },
      );
    }
  });

  it('mutated evidence files give a typed error or a value', () => {
    fc.assert(fc.property(mutationOf(vectorBytes), typedOrValue), { numRuns: 1000 });
    fc.assert(fc.property(mutationOf(eccBytes), typedOrValue), { numRuns: 1000 });
  });
});

describe('TPM verifier under fuzzing: no mutated quote, signature or PCR value verifies', () => {
  const fields = [
    { name: 'quote', bytes: fromBase64(vector.tpm_quote.message), set: (o: typeof vector, b: Uint8Array) => (o.tpm_quote.message = toBase64(b)) },
    { name: 'signature', bytes: fromBase64(vector.tpm_quote.signature), set: (o: typeof vector, b: Uint8Array) => (o.tpm_quote.signature = toBase64(b)) },
    { name: 'PCR 17', bytes: fromHex(vector.tpm_quote.pcrs[17]!), set: (o: typeof vector, b: Uint8Array) => (o.tpm_quote.pcrs[17] = toHex(b)) },
  ];
  for (const f of fields) {
    it(`mutated ${f.name}`, async () => {
      await fc.assert(
        fc.asyncProperty(mutationOf(f.bytes), async (m) => {
          fc.pre(!equalBytes(m, f.bytes));
          const o = structuredClone(vector);
          f.set(o, m);
          const r = await tpmVerifier.verify({ evidence: utf8(JSON.stringify(o)), now: AT });
          expect(r.ok).toBe(false);
          expect(r.errors.length).toBeGreaterThan(0);
          expect(r.errors[0]!.code).toMatch(/^ERR_(INPUT|EVIDENCE|TPM)_[A-Z_]+$/);
        }),
        { numRuns: 300 },
      );
    });
  }

  it('mutated ECDSA evidence never verifies (swtpm fixture)', async () => {
    const sig = fromBase64(ecc.signature);
    await fc.assert(
      fc.asyncProperty(mutationOf(sig), async (m) => {
        fc.pre(!equalBytes(m, sig));
        const r = await tpmVerifier.verify({ evidence: utf8(JSON.stringify({ ...ecc, signature: toBase64(m) })), now: AT });
        expect(r.ok).toBe(false);
      }),
      { numRuns: 300 },
    );
  });
});
