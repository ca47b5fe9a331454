import { CustodyError, deserializeHpkePrivateKey, fromHex, toHex } from '@custody/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { readVectorText } from '../../../../test/vectors.js';
import { createChunkedRequest, decapsulateChunkedRequest, decapsulateChunkedRequestBytes } from './chunked.js';
import { parseKeyConfig, type OhttpServerKey } from './key-config.js';
import { decapsulateRequest, encapsulateRequest } from './ohttp.js';
import { readAll, streamOf } from './stream-buffer.js';

interface V {
  kemId: number;
  skR: string;
  skE: string;
  keyConfig: string;
  encapsulatedRequest: string;
  encapsulatedResponse: string;
}
const chunked = JSON.parse(readVectorText('ohttp/chunked-ohttp-appendix.json')) as V;
const rfc = JSON.parse(readVectorText('ohttp/rfc9458-appendix-a.json')) as V;
const CODES = /^ERR_(INPUT_TRUNCATED|INPUT_MALFORMED|INPUT_TOO_LARGE|OHTTP_TRUNCATED|OHTTP_REQUEST_DECRYPT|OHTTP_RESPONSE_DECRYPT|OHTTP_KEY_ID|OHTTP_SUITE)$/;

async function key(v: V): Promise<OhttpServerKey> {
  return { config: parseKeyConfig(fromHex(v.keyConfig)), keyPair: await deserializeHpkePrivateKey(v.kemId, fromHex(v.skR)) };
}

function typed(e: unknown): void {
  expect(e).toBeInstanceOf(CustodyError);
  expect((e as CustodyError).code).toMatch(CODES);
}

function mutate(seed: Uint8Array) {
  return fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }), fc.option(fc.nat()), fc.array(fc.nat(), { maxLength: 4 })).map(([flips, cut, splits]) => {
    const b = seed.slice();
    for (const [pos, x] of flips) b[pos % b.length]! ^= x;
    const m = cut === null ? b : b.subarray(0, cut % (b.length + 1));
    const points = [...new Set(splits.map((s) => s % (m.length + 1)))].sort((x, y) => x - y);
    const parts: Uint8Array[] = [];
    let last = 0;
    for (const p of [...points, m.length]) {
      parts.push(m.subarray(last, p));
      last = p;
    }
    return parts;
  });
}

describe('chunked and plain OHTTP parsers under fuzzing', () => {
  it('mutated chunked requests never open and fail with typed codes', async () => {
    const k = await key(chunked);
    await fc.assert(
      fc.asyncProperty(mutate(fromHex(chunked.encapsulatedRequest)), async (parts) => {
        const e = await decapsulateChunkedRequest(k, streamOf(...parts))
          .then(async ({ request }) => readAll(request))
          .then(
            () => undefined,
            (err: unknown) => err,
          );
        typed(e);
      }),
      { numRuns: 500, seed: 51 },
    );
  });

  it('the opener of a message read whole agrees with the stream opener: the same request or the same error', async () => {
    const k = await key(chunked);
    const config = parseKeyConfig(fromHex(chunked.keyConfig));
    /** The request, or the error code, from either opener. */
    const outcome = (p: Promise<Uint8Array>): Promise<string> =>
      p.then(
        (b) => 'ok:' + toHex(b),
        (e: unknown) => {
          typed(e);
          return (e as CustodyError).code;
        },
      );
    const both = async (wire: Uint8Array, limits: { maxChunks?: number; maxChunkSize?: number } = {}) => {
      const whole = await outcome(decapsulateChunkedRequestBytes(k, wire, limits).then((r) => r.request));
      const streamed = await outcome(decapsulateChunkedRequest(k, streamOf(wire), limits).then(async ({ request }) => readAll(request)));
      expect(whole).toBe(streamed);
      return whole;
    };
    // Valid messages, cut into random chunks (empty ones too), under random limits; then mutated.
    /** Mostly `none`: most runs keep the message (or the limits) as they are. */
    const seldom = <T,>(arb: fc.Arbitrary<T>) => fc.oneof({ arbitrary: fc.constant(null), weight: 3 }, { arbitrary: arb, weight: 1 });
    const message = fc.record({
      pieces: fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 6 }),
      last: fc.uint8Array({ maxLength: 40 }),
      maxChunks: seldom(fc.integer({ min: 1, max: 8 })),
      maxChunkSize: seldom(fc.integer({ min: 16, max: 60 })),
      flips: seldom(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 2 })),
      cut: seldom(fc.nat()),
    });
    let opened = 0;
    await fc.assert(
      fc.asyncProperty(message, async (m) => {
        const { sealer } = await createChunkedRequest(config);
        const parts = [sealer.prefix];
        for (const p of m.pieces) parts.push(await sealer.seal(p));
        parts.push(await sealer.seal(m.last, true));
        let wire: Uint8Array = Buffer.concat(parts);
        for (const [pos, x] of m.flips ?? []) wire[pos % wire.length]! ^= x;
        if (m.cut !== null) wire = wire.subarray(0, m.cut % (wire.length + 1));
        const limits = { ...(m.maxChunks !== null ? { maxChunks: m.maxChunks } : {}), ...(m.maxChunkSize !== null ? { maxChunkSize: m.maxChunkSize } : {}) };
        const r = await both(wire, limits);
        if (r.startsWith('ok:')) {
          opened++;
          expect(r).toBe('ok:' + toHex(Buffer.concat([...m.pieces, m.last])));
        }
      }),
      { numRuns: 400, seed: 56 },
    );
    // Some of the runs opened (not every run an error), and random tails after a valid header agree too.
    expect(opened).toBeGreaterThan(60);
    const hdr = fromHex(chunked.encapsulatedRequest).subarray(0, 7 + 32);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (tail) => {
        await both(Buffer.concat([hdr, tail]));
      }),
      { numRuns: 300, seed: 57 },
    );
  });

  it('mutated chunked responses never open and fail with typed codes', async () => {
    const config = parseKeyConfig(fromHex(chunked.keyConfig));
    const eph = await deserializeHpkePrivateKey(chunked.kemId, fromHex(chunked.skE));
    await fc.assert(
      fc.asyncProperty(mutate(fromHex(chunked.encapsulatedResponse)), async (parts) => {
        const { context } = await createChunkedRequest(config, { ephemeralKeyPair: eph });
        const e = await readAll(context.decapsulateResponse(streamOf(...parts))).then(
          () => undefined,
          (err: unknown) => err,
        );
        typed(e);
      }),
      { numRuns: 500, seed: 52 },
    );
  });

  it('random chunk streams give typed errors', async () => {
    const k = await key(chunked);
    const hdr = fromHex(chunked.encapsulatedRequest).subarray(0, 7 + 32);
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (tail) => {
        const e = await decapsulateChunkedRequest(k, streamOf(hdr, tail))
          .then(async ({ request }) => readAll(request))
          .then(
            () => undefined,
            (err: unknown) => err,
          );
        typed(e);
      }),
      { numRuns: 500, seed: 53 },
    );
  });

  it('mutated and random plain requests and responses fail with typed codes', async () => {
    const k = await key(rfc);
    await fc.assert(
      fc.asyncProperty(fc.oneof(mutate(fromHex(rfc.encapsulatedRequest)), fc.uint8Array({ maxLength: 120 }).map((b) => [b])), async (parts) => {
        const e = await decapsulateRequest(k, Buffer.concat(parts)).then(
          () => undefined,
          (err: unknown) => err,
        );
        typed(e);
      }),
      { numRuns: 600, seed: 54 },
    );
    const eph = await deserializeHpkePrivateKey(rfc.kemId, fromHex(rfc.skE));
    const { context } = await encapsulateRequest(k.config, new Uint8Array(1), { ephemeralKeyPair: eph });
    await fc.assert(
      fc.asyncProperty(mutate(fromHex(rfc.encapsulatedResponse)), async (parts) => {
        const e = await context.decapsulateResponse(Buffer.concat(parts)).then(
          () => undefined,
          (err: unknown) => err,
        );
        typed(e);
      }),
      { numRuns: 600, seed: 55 },
    );
  });
});
