import { CustodyError, fromHex } from '@custody/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readVectorText } from '../../../../test/vectors.js';
import { decodeBhttpRequest, decodeBhttpRequestStream, decodeBhttpResponse, decodeBhttpResponseStream, encodeBhttpRequest, encodeBhttpResponse } from './bhttp.js';
import { readAll, streamOf } from './stream-buffer.js';

const rfc = JSON.parse(readVectorText('ohttp/rfc9458-appendix-a.json')) as { requestBhttp: string; responseBhttp: string };
const seeds = [
  fromHex(rfc.requestBhttp),
  fromHex(rfc.responseBhttp),
  encodeBhttpRequest({ method: 'POST', scheme: 'https', authority: 'a.example', path: '/x', headers: [['a', 'b'], ['cookie', 'c=d']], content: new Uint8Array(40).fill(65), trailers: [['t', 'v']] }),
  encodeBhttpRequest({ method: 'POST', scheme: 'https', authority: '', path: '/x', headers: [['a', 'b']], content: new Uint8Array(70).fill(66), trailers: [['t', 'v']] }, { framing: 'indeterminate', padding: 3 }),
  encodeBhttpResponse({ informational: [{ status: 103, headers: [['link', '</a>']] }], status: 404, headers: [['x', 'y']], content: new Uint8Array(9), trailers: [['t', 'u']] }),
  encodeBhttpResponse({ informational: [{ status: 100, headers: [] }], status: 200, headers: [['x', 'y']], content: new Uint8Array(90).fill(1) }, { framing: 'indeterminate', truncate: false }),
];
const CODES = /^ERR_INPUT_(TRUNCATED|MALFORMED|TOO_LARGE)$/;

function typed(e: unknown): void {
  expect(e).toBeInstanceOf(CustodyError);
  expect((e as CustodyError).code).toMatch(CODES);
}

function decodesOrTypedError(b: Uint8Array): void {
  try {
    const r = decodeBhttpRequest(b);
    // A decoded message re-encodes and decodes to the same value.
    expect(decodeBhttpRequest(encodeBhttpRequest(r, { framing: r.framing }))).toEqual(r);
  } catch (e) {
    typed(e);
  }
  try {
    const r = decodeBhttpResponse(b);
    expect(decodeBhttpResponse(encodeBhttpResponse(r, { framing: r.framing }))).toEqual(r);
  } catch (e) {
    typed(e);
  }
}

/** The streaming decoder must agree with the whole-buffer decoder: same value or a typed error. */
async function streamAgrees(b: Uint8Array): Promise<void> {
  let whole: unknown;
  try {
    whole = decodeBhttpResponse(b);
  } catch (e) {
    whole = e;
  }
  const streamed = await decodeBhttpResponseStream(streamOf(b.subarray(0, 3), b.subarray(3))).then(
    async (s) => ({ framing: s.framing, informational: s.informational, status: s.status, headers: s.headers, content: await readAll(s.body), trailers: await s.trailers }),
    (e: unknown) => e,
  ).catch((e: unknown) => e);
  if (whole instanceof CustodyError) {
    typed(streamed);
    expect((streamed as CustodyError).code).toBe(whole.code);
  } else expect(streamed).toEqual(whole);
  const req = await decodeBhttpRequestStream(streamOf(b)).then(async (s) => readAll(s.body)).catch((e: unknown) => e);
  if (req instanceof Error) typed(req);
}

const mutated = fc
  .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.option(fc.nat()))
  .map(([seed, flips, cut]) => {
    const b = seed.slice();
    for (const [pos, val] of flips) b[pos % b.length] = val;
    return cut === null ? b : b.subarray(0, cut % (b.length + 1));
  });

describe('binary HTTP decoders under fuzzing', () => {
  it('random bytes give typed errors', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), decodesOrTypedError), { numRuns: 3000, seed: 41 });
    fc.assert(fc.property(fc.tuple(fc.constantFrom(0, 1, 2, 3), fc.uint8Array({ maxLength: 200 })).map(([f, r]) => Uint8Array.from([f, ...r])), decodesOrTypedError), { numRuns: 3000, seed: 42 });
  });
  it('mutated real messages give typed errors or round-trip', () => {
    fc.assert(fc.property(mutated, decodesOrTypedError), { numRuns: 4000, seed: 43 });
  });
  it('the streaming decoder agrees with the whole-buffer decoder', async () => {
    await fc.assert(fc.asyncProperty(mutated, streamAgrees), { numRuns: 800, seed: 44 });
  });
});
