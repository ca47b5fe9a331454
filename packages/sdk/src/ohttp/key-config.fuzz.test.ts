import { CustodyError, fromHex } from '@custody/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readVectorText } from '../../../../test/vectors.js';
import { encodeKeyConfig, encodeKeyConfigs, parseKeyConfig, parseKeyConfigs } from './key-config.js';

const seeds = [
  fromHex((JSON.parse(readVectorText('ohttp/rfc9458-appendix-a.json')) as { keyConfig: string }).keyConfig),
  fromHex((JSON.parse(readVectorText('ohttp/chunked-ohttp-appendix.json')) as { keyConfig: string }).keyConfig),
];
const listSeed = encodeKeyConfigs(seeds.map((s) => parseKeyConfig(s)));
const CODES = /^ERR_INPUT_(TRUNCATED|MALFORMED|UNSUPPORTED|TOO_LARGE)$/;

function parsesOrTypedError(b: Uint8Array): void {
  for (const parse of [() => [parseKeyConfig(b)], () => parseKeyConfigs(b)]) {
    try {
      const configs = parse();
      // Whatever parses re-encodes to a configuration that parses to the same value.
      for (const c of configs) expect(parseKeyConfig(encodeKeyConfig(c))).toEqual(c);
    } catch (e) {
      expect(e).toBeInstanceOf(CustodyError);
      expect((e as CustodyError).code).toMatch(CODES);
    }
  }
}

const mutated = fc
  .tuple(fc.constantFrom(...seeds, listSeed), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.option(fc.nat()))
  .map(([seed, flips, cut]) => {
    const b = seed.slice();
    for (const [pos, val] of flips) b[pos % b.length] = val;
    return cut === null ? b : b.subarray(0, cut % (b.length + 1));
  });

describe('key configuration parsers under fuzzing', () => {
  it('random bytes give typed errors', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), parsesOrTypedError), { numRuns: 3000, seed: 31 });
  });
  it('mutated real configurations give typed errors or round-trip', () => {
    fc.assert(fc.property(mutated, parsesOrTypedError), { numRuns: 3000, seed: 32 });
  });
});
