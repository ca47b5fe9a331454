import fc from 'fast-check';
import { describe, it, expect } from 'vitest';
import { CustodyError, equalBytes, utf8 } from '@custody/core';
import { createSimEvidence, parseSimEvidence } from './format.js';
import { simVerifier } from './verifier.js';
import { mutationOf } from '../tpm/testing/mutate.js';

const NOW = new Date('2025-03-01T12:00:00Z');
const base = await createSimEvidence({ measurements: { measurement: 'ab'.repeat(48), rtmr0: '00'.repeat(48) }, reportData: new Uint8Array(64).fill(7), nonce: new Uint8Array(8).fill(1), issuedAt: NOW });

function typedOrValue(b: Uint8Array): void {
  try {
    parseSimEvidence(b);
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
  }
}

describe('custody-sim/v1 reader under fuzzing', () => {
  it('random bytes, text and JSON give a typed error', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), typedOrValue), { numRuns: 1000 });
    fc.assert(fc.property(fc.jsonValue(), (v) => typedOrValue(utf8(JSON.stringify(v)))), { numRuns: 1000 });
  });

  it('random values in place of any field give a typed error', () => {
    const o = JSON.parse(new TextDecoder().decode(base)) as Record<string, unknown>;
    const keys = Object.keys(o);
    fc.assert(
      fc.property(fc.constantFrom(...keys), fc.jsonValue(), (k, v) => {
        typedOrValue(utf8(JSON.stringify({ ...o, [k]: v })));
      }),
      { numRuns: 1000 },
    );
  });

  it('no mutation of the signed document verifies unless it is the same JSON', async () => {
    const canonical = JSON.stringify(JSON.parse(new TextDecoder().decode(base)));
    await fc.assert(
      fc.asyncProperty(mutationOf(base), async (m) => {
        fc.pre(!equalBytes(m, base));
        const r = await simVerifier.verify({ evidence: m, now: NOW });
        if (r.ok) {
          // Only whitespace-level changes may pass: the parsed document must be identical.
          expect(JSON.stringify(JSON.parse(new TextDecoder().decode(m)))).toBe(canonical);
        } else {
          expect(r.errors[0]!.code).toMatch(/^ERR_[A-Z_]+$/);
        }
      }),
      { numRuns: 500 },
    );
  });
});
