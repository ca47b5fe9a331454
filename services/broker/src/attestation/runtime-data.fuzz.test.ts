// Runtime data arrives from workloads: random text, random JSON and mutations of real runtime
// data give ERR_RUNTIME_DATA (or ERR_INPUT_TOO_LARGE), never another exception; what passes is
// canonical and carries exactly the nonce and key it was parsed into.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalize, CustodyError, fromBase64Url } from '@custody/core';
import { generateTeeKeyPair } from './workload-client.js';
import { buildRuntimeData, parseRuntimeData, teeKeyJwk } from './runtime-data.js';

const nonce = new Uint8Array(32).fill(9);
const real: string[] = [buildRuntimeData(nonce, generateTeeKeyPair('X25519').recipient), buildRuntimeData(nonce, generateTeeKeyPair('P-256').recipient)];

function typedOrCanonical(input: unknown): void {
  try {
    const r = parseRuntimeData(input);
    const o = JSON.parse(r.text) as Record<string, unknown>;
    expect(canonicalize(o)).toBe(r.text);
    expect(fromBase64Url(r.nonce)).toHaveLength(32);
    expect(o['tee-pubkey']).toEqual(teeKeyJwk(r.teeKey));
    if (Object.keys(o).length === 2) expect(buildRuntimeData(fromBase64Url(r.nonce), r.teeKey)).toBe(r.text);
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    expect(['ERR_RUNTIME_DATA', 'ERR_INPUT_TOO_LARGE']).toContain(e.code);
  }
}

describe('parseRuntimeData under fuzzing', () => {
  it('random strings and JSON values', () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), typedOrCanonical), { numRuns: 2000 });
    fc.assert(fc.property(fc.jsonValue(), (v) => typedOrCanonical(JSON.stringify(v))), { numRuns: 2000 });
    fc.assert(fc.property(fc.anything(), typedOrCanonical), { numRuns: 500 });
  });

  it('character mutations of real runtime data', () => {
    fc.assert(
      fc.property(fc.constantFrom(...real), fc.nat(), fc.integer({ min: 32, max: 126 }), (text, at, ch) => {
        const i = at % text.length;
        typedOrCanonical(text.slice(0, i) + String.fromCharCode(ch) + text.slice(i + 1));
      }),
      { numRuns: 3000 },
    );
  });

  it('random values in place of each member', () => {
    const o = JSON.parse(real[0]!) as Record<string, unknown>;
    fc.assert(
      fc.property(fc.constantFrom('nonce', 'tee-pubkey', 'extra'), fc.jsonValue(), (k, v) => {
        typedOrCanonical(JSON.stringify({ ...o, [k]: v }));
      }),
      { numRuns: 1500 },
    );
  });
});
