import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { encodeGgufMetadata, parseGgufHeader } from './gguf.js';

const seed = encodeGgufMetadata({ 'general.architecture': 'llama', 'general.name': 'fuzz', n: 7, big: 12n, ok: true, toks: ['a', 'bb', 'ccc'] });

function outcome(bytes: Uint8Array): string {
  try {
    parseGgufHeader(bytes);
    return 'ok';
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    return e.code;
  }
}

describe('GGUF header parser (fuzz)', () => {
  it('random bytes give ERR_GATEWAY_MODEL_FILE, never another exception', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (b) => {
        expect(['ok', 'ERR_GATEWAY_MODEL_FILE']).toContain(outcome(b));
      }),
      { numRuns: 2000 },
    );
  });

  it('mutated real headers parse or fail with the stable code', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(seed.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.nat(seed.length), (muts, cut) => {
        const b = seed.slice(0, Math.max(cut, 1));
        for (const [i, v] of muts) if (i < b.length) b[i] = v;
        expect(['ok', 'ERR_GATEWAY_MODEL_FILE']).toContain(outcome(b));
      }),
      { numRuns: 3000 },
    );
  });
});
