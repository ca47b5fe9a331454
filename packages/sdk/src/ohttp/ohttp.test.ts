import { AeadId, concatBytes, CustodyError, equalBytes, generateHpkeKeyPair, getHpkeProvider, KdfId, KemId, setHpkeProvider, toHex, utf8 } from '@custody/core';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeBhttpRequestStream, decodeBhttpResponseStream, encodeBhttpContentChunk, encodeBhttpEnd, encodeBhttpRequest, encodeBhttpResponseHead } from './bhttp.js';
import { createChunkedRequest, decapsulateChunkedRequest, decapsulateChunkedRequestBytes, encapsulateChunkedRequest, MAX_PLAINTEXT_CHUNK, sealReady } from './chunked.js';
import { createOhttpServerKey, encodeKeyConfig, encodeKeyConfigs, parseKeyConfig, parseKeyConfigs, selectSuite, type KeyConfig } from './key-config.js';
import { assertMediaType, OhttpMediaType } from './media-types.js';
import { decapsulateRequest, encapsulateRequest } from './ohttp.js';
import { readAll, streamOf } from './stream-buffer.js';

async function failure(p: Promise<unknown>): Promise<CustodyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a typed failure').toBeInstanceOf(CustodyError);
  return e as CustodyError;
}

function counterRandom(seed: number): (n: number) => Uint8Array<ArrayBuffer> {
  let c = seed;
  return (n) => Uint8Array.from({ length: n }, () => c++ & 0xff);
}

describe('key configurations', () => {
  it('creates, encodes and parses gateway keys, single and as a list', async () => {
    const a = await createOhttpServerKey({ keyId: 7 });
    const b = await createOhttpServerKey({ keyId: 8, kem: KemId.DhkemP256HkdfSha256, suites: [{ kdf: KdfId.HkdfSha256, aead: AeadId.Aes256Gcm }] });
    expect(parseKeyConfig(encodeKeyConfig(a.config))).toEqual(a.config);
    const list = encodeKeyConfigs([a.config, b.config]);
    expect(parseKeyConfigs(list)).toEqual([a.config, b.config]);
    expect(b.config.publicKey).toHaveLength(65);
    // Deterministic from a seed.
    const c1 = await createOhttpServerKey({ keyId: 1, ikm: new Uint8Array(32).fill(9) });
    const c2 = await createOhttpServerKey({ keyId: 1, ikm: new Uint8Array(32).fill(9) });
    expect(toHex(encodeKeyConfig(c1.config))).toBe(toHex(encodeKeyConfig(c2.config)));
  });

  it('skips configurations with unknown KEMs in a list and selects a supported suite', async () => {
    const a = await createOhttpServerKey({ keyId: 1 });
    const unknownKem = concatBytes(new Uint8Array([0x09, 0x00, 0x30]), new Uint8Array(40), new Uint8Array([0, 4, 0, 1, 0, 1]));
    const list = concatBytes(new Uint8Array([0, unknownKem.length]), unknownKem, encodeKeyConfigs([a.config]));
    expect(parseKeyConfigs(list).map((c) => c.keyId)).toEqual([1]);
    expect(() => parseKeyConfig(unknownKem)).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_UNSUPPORTED' }) as Error);
    const weird: KeyConfig = { ...a.config, suites: [{ kdf: 9, aead: 1 }, { kdf: 1, aead: 0xffff }, { kdf: 3, aead: 3 }] };
    expect(selectSuite(weird)).toEqual({ keyId: 1, kem: 0x20, kdf: 3, aead: 3 });
    expect(selectSuite(a.config, [{ kdf: 1, aead: 3 }])).toMatchObject({ kdf: 1, aead: 3 });
    expect(() => selectSuite({ ...a.config, suites: [{ kdf: 9, aead: 9 }] })).toThrowError(expect.objectContaining({ code: 'ERR_OHTTP_SUITE' }) as Error);
  });

  it('refuses malformed configurations with parse codes', () => {
    expect(() => parseKeyConfig(new Uint8Array(0))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TRUNCATED' }) as Error);
    const base = concatBytes(new Uint8Array([1, 0, 0x20]), new Uint8Array(32));
    expect(() => parseKeyConfig(concatBytes(base, new Uint8Array([0, 0])))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => parseKeyConfig(concatBytes(base, new Uint8Array([0, 6, 0, 1, 0, 1, 0, 1])))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => parseKeyConfig(concatBytes(base, new Uint8Array([0, 8, 0, 1, 0, 1])))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TRUNCATED' }) as Error);
    expect(() => parseKeyConfig(concatBytes(base, new Uint8Array([0, 4, 0, 1, 0, 1, 0])))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => parseKeyConfigs(new Uint8Array(0))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TRUNCATED' }) as Error);
    expect(() => parseKeyConfigs(new Uint8Array(70_000))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TOO_LARGE' }) as Error);
  });

  it('checks media types', () => {
    expect(() => assertMediaType('message/ohttp-req', OhttpMediaType.Request)).not.toThrow();
    expect(() => assertMediaType('Message/OHTTP-Req; charset=x', OhttpMediaType.Request)).not.toThrow();
    expect(() => assertMediaType('application/json', OhttpMediaType.Request)).toThrowError(expect.objectContaining({ code: 'ERR_OHTTP_MEDIA_TYPE' }) as Error);
    expect(() => assertMediaType(null, OhttpMediaType.ChunkedResponse)).toThrowError(expect.objectContaining({ code: 'ERR_OHTTP_MEDIA_TYPE' }) as Error);
  });
});

describe('OHTTP round trips', () => {
  it('works for every supported suite and KEM, with key rotation by key id', async () => {
    const request = encodeBhttpRequest({ method: 'POST', scheme: 'https', authority: 'gw', path: '/v1/chat/completions', headers: [['content-type', 'application/json']], content: utf8('{"messages":[]}') });
    const keys = [
      await createOhttpServerKey({ keyId: 1 }),
      await createOhttpServerKey({ keyId: 2, kem: KemId.DhkemP256HkdfSha256 }),
      await createOhttpServerKey({ keyId: 3, kem: KemId.DhkemP384HkdfSha384, suites: [{ kdf: KdfId.HkdfSha384, aead: AeadId.Aes256Gcm }] }),
    ];
    for (const key of keys) {
      for (const suite of key.config.suites) {
        const { encapsulatedRequest, context } = await encapsulateRequest(key.config, request, { preferredSuites: [suite] });
        expect(encapsulatedRequest[0]).toBe(key.config.keyId);
        const got = await decapsulateRequest(keys, encapsulatedRequest);
        expect(got.request).toEqual(request);
        const res = await got.context.encapsulateResponse(utf8('response body'));
        expect(new TextDecoder().decode(await context.decapsulateResponse(res))).toBe('response body');
      }
    }
    // A retired key id tells the client to refresh.
    const retired = await createOhttpServerKey({ keyId: 9 });
    const { encapsulatedRequest } = await encapsulateRequest(retired.config, request);
    expect((await failure(decapsulateRequest(keys, encapsulatedRequest))).code).toBe('ERR_OHTTP_KEY_ID');
    // The key id is judged first, even when the rest of the header is nonsense.
    expect((await failure(decapsulateRequest(keys, Uint8Array.from([9, 0x7f, 0x7f, 0, 9, 0, 9])))).code).toBe('ERR_OHTTP_KEY_ID');
    const chunkedErr = await decapsulateChunkedRequest(keys, streamOf(Uint8Array.from([9, 0x7f, 0x7f, 0, 9, 0, 9]))).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((chunkedErr as CustodyError).code).toBe('ERR_OHTTP_KEY_ID');
    expect((await failure(decapsulateChunkedRequestBytes(keys, Uint8Array.from([9, 0x7f, 0x7f, 0, 9, 0, 9])))).code).toBe('ERR_OHTTP_KEY_ID');
  });

  it('is deterministic with injected randomness and unlinkable without it', async () => {
    const key = await createOhttpServerKey({ keyId: 1, ikm: new Uint8Array(32).fill(2) });
    const a = await encapsulateRequest(key.config, utf8('x'), { random: counterRandom(1) });
    const b = await encapsulateRequest(key.config, utf8('x'), { random: counterRandom(1) });
    expect(toHex(a.encapsulatedRequest)).toBe(toHex(b.encapsulatedRequest));
    const c = await encapsulateRequest(key.config, utf8('x'));
    const d = await encapsulateRequest(key.config, utf8('x'));
    expect(toHex(c.encapsulatedRequest)).not.toBe(toHex(d.encapsulatedRequest));
  });

  it('refuses a replayed response for another request and a second response context', async () => {
    const key = await createOhttpServerKey({ keyId: 1 });
    const r1 = await encapsulateRequest(key.config, utf8('one'));
    const r2 = await encapsulateRequest(key.config, utf8('two'));
    const s1 = await decapsulateRequest(key, r1.encapsulatedRequest);
    const res1 = await s1.context.encapsulateResponse(utf8('for one'));
    expect((await failure(r2.context.decapsulateResponse(res1))).code).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
  });
});

describe('responses prepared ahead (the gateway derives the response keys while the model works)', () => {
  it('a prepared response opens as any other; preparing twice, or after sealing, changes nothing', async () => {
    const key = await createOhttpServerKey({ keyId: 1 });
    const client = await encapsulateRequest(key.config, utf8('question'));
    const server = await decapsulateRequest(key, client.encapsulatedRequest);
    server.context.prepareResponse();
    server.context.prepareResponse();
    const sealed = await server.context.encapsulateResponse(utf8('answer'));
    expect(new TextDecoder().decode(await client.context.decapsulateResponse(sealed))).toBe('answer');
    // After sealing, nothing is prepared again: a second response gets a fresh nonce of its own.
    server.context.prepareResponse();
    const again = await server.context.encapsulateResponse(utf8('answer'));
    expect(toHex(again.subarray(0, 16))).not.toBe(toHex(sealed.subarray(0, 16)));
    expect(new TextDecoder().decode(await client.context.decapsulateResponse(again))).toBe('answer');
  });

  it('injected randomness wins over a prepared nonce (the published vectors stay reproducible)', async () => {
    const key = await createOhttpServerKey({ keyId: 1, ikm: new Uint8Array(32).fill(3) });
    const responses: string[] = [];
    for (const prepare of [false, true]) {
      const client = await encapsulateRequest(key.config, utf8('q'), { random: counterRandom(5) });
      const server = await decapsulateRequest(key, client.encapsulatedRequest);
      if (prepare) server.context.prepareResponse();
      responses.push(toHex(await server.context.encapsulateResponse(utf8('a'), { random: counterRandom(40) })));
    }
    expect(responses[1]).toBe(responses[0]);
    expect(responses[0]!.slice(0, 32)).toBe(toHex(counterRandom(40)(16)));
  });

  it('a prepared chunked response opens as any other, and the response still starts only once', async () => {
    const key = await createOhttpServerKey({ keyId: 2 });
    const { body, context } = await encapsulateChunkedRequest(key.config, streamOf(utf8('question')));
    const server = await decapsulateChunkedRequest(key, streamOf(await readAll(body)));
    expect(new TextDecoder().decode(await readAll(server.request))).toBe('question');
    server.context.prepareResponse();
    const sealer = await server.context.createResponseSealer();
    const wire = concatBytes(sealer.prefix, await sealReady(sealer, utf8('to'), { first: false }), await sealReady(sealer, utf8('ken'), { first: false, final: true }));
    expect(new TextDecoder().decode(await readAll(context.decapsulateResponse(streamOf(wire))))).toBe('token');
    expect((await failure(server.context.createResponseSealer())).code).toBe('ERR_HPKE_PARAMS');
  });
});

describe('chunked OHTTP streaming', () => {
  async function exchange(body: Uint8Array[], responseParts: Uint8Array[], cuts: number[]): Promise<{ request: Uint8Array; response: Uint8Array }> {
    const key = await createOhttpServerKey({ keyId: 4 });
    const { body: encBody, context } = await encapsulateChunkedRequest(key.config, streamOf(...body));
    // Re-split the wire bytes to model arbitrary network segmentation.
    const wire = await readAll(encBody);
    const segments: Uint8Array[] = [];
    let last = 0;
    for (const c of [...new Set(cuts.map((x) => x % (wire.length + 1)))].sort((x, y) => x - y)) {
      segments.push(wire.subarray(last, c));
      last = c;
    }
    segments.push(wire.subarray(last));
    const server = await decapsulateChunkedRequest([key], streamOf(...segments));
    const request = await readAll(server.request);
    const encRes = await server.context.encapsulateResponse(streamOf(...responseParts));
    const response = await readAll(context.decapsulateResponse(encRes));
    return { request, response };
  }

  it('round-trips bodies of any shape and segmentation', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 6 }), fc.array(fc.uint8Array({ maxLength: 100 }), { maxLength: 6 }), fc.array(fc.nat(), { maxLength: 8 }), async (req, res, cuts) => {
        const got = await exchange(req, res, cuts);
        expect(got.request).toEqual(concatBytes(...req));
        expect(got.response).toEqual(concatBytes(...res));
      }),
      { numRuns: 60, seed: 8 },
    );
  });

  it('opens empty chunks without stalling (each is a whole chunk: a tag and nothing else), and bounds how many a message may hold', async () => {
    const key = await createOhttpServerKey({ keyId: 4 });
    const seal = async (empties: number, content: Uint8Array) => {
      const { sealer } = await createChunkedRequest(key.config);
      const parts: Uint8Array[] = [sealer.prefix];
      for (let i = 0; i < empties; i++) parts.push(await sealer.seal(new Uint8Array(0)));
      parts.push(await sealer.seal(content));
      for (let i = 0; i < empties; i++) parts.push(await sealer.seal(new Uint8Array(0)));
      parts.push(await sealer.seal(new Uint8Array(0), true));
      return concatBytes(...parts);
    };
    const wire = await seal(3, utf8('after three empty chunks'));
    const opened = await decapsulateChunkedRequest([key], streamOf(wire));
    expect(new TextDecoder().decode(await readAll(opened.request))).toBe('after three empty chunks');

    // 3 + 1 + 3 + final = 8 chunks: over a bound of 7, refused as too large (no stall either).
    const bounded = await decapsulateChunkedRequest([key], streamOf(wire), { maxChunks: 7 });
    expect((await failure(readAll(bounded.request))).code).toBe('ERR_INPUT_TOO_LARGE');
    const atBound = await decapsulateChunkedRequest([key], streamOf(wire), { maxChunks: 8 });
    expect(new TextDecoder().decode(await readAll(atBound.request))).toBe('after three empty chunks');

    // Read whole (the gateway's node:http path): the same result and the same bound.
    expect(new TextDecoder().decode((await decapsulateChunkedRequestBytes([key], wire)).request)).toBe('after three empty chunks');
    expect((await failure(decapsulateChunkedRequestBytes([key], wire, { maxChunks: 7 }))).code).toBe('ERR_INPUT_TOO_LARGE');
    expect(new TextDecoder().decode((await decapsulateChunkedRequestBytes([key], wire, { maxChunks: 8 })).request)).toBe('after three empty chunks');
  });

  it('read whole, a chunked request is bounded like a bounded read of its stream, and a failure wipes what was opened', async () => {
    const key = await createOhttpServerKey({ keyId: 6 });
    const { sealer } = await createChunkedRequest(key.config);
    const first = await sealer.seal(utf8('0123456789'));
    const wire = concatBytes(sealer.prefix, first, await sealer.seal(utf8('abcdefghij')), await sealer.seal(utf8('last'), true));
    // The opened request (24 bytes) against maxPlaintext, as readAll(request, max) bounds it.
    expect(new TextDecoder().decode((await decapsulateChunkedRequestBytes([key], wire, { maxPlaintext: 24 })).request)).toBe('0123456789abcdefghijlast');
    const over = await failure(decapsulateChunkedRequestBytes([key], wire, { maxPlaintext: 23 }));
    const overStream = await failure(decapsulateChunkedRequest([key], streamOf(wire)).then(({ request }) => readAll(request, 23)));
    expect([over.code, overStream.code]).toEqual(['ERR_INPUT_TOO_LARGE', 'ERR_INPUT_TOO_LARGE']);
    // Chunk sizes: a non-final chunk over maxChunkSize, and a final chunk (the tail) over it.
    for (const maxChunkSize of [10 + 16 - 1, 4 + 16 - 1]) {
      const bytes = await failure(decapsulateChunkedRequestBytes([key], wire, { maxChunkSize }));
      const stream = await failure(decapsulateChunkedRequest([key], streamOf(wire), { maxChunkSize }).then(({ request }) => readAll(request)));
      expect([bytes.code, stream.code]).toEqual(['ERR_INPUT_TOO_LARGE', 'ERR_INPUT_TOO_LARGE']);
    }
    // A second chunk that does not open: the first chunk's plaintext is wiped before the error.
    const tampered = wire.slice();
    tampered[sealer.prefix.length + first.length + 3]! ^= 1;
    const opened: Uint8Array[] = [];
    const base = getHpkeProvider();
    setHpkeProvider({
      ...base,
      name: 'recording',
      createAead(aead, k) {
        const inner = base.createAead(aead, k);
        return {
          params: inner.params,
          seal: (n, a, pt) => inner.seal(n, a, pt),
          open: async (n, a, ct) => {
            const pt = await inner.open(n, a, ct);
            opened.push(pt);
            return pt;
          },
        };
      },
    });
    try {
      const err = await failure(decapsulateChunkedRequestBytes([key], tampered));
      expect(err.code).toBe('ERR_OHTTP_REQUEST_DECRYPT');
      expect(opened.map((b) => b.length)).toEqual([10]);
      expect([...opened[0]!].every((b) => b === 0)).toBe(true);
      // Opened whole, the chunks' plaintexts are wiped once joined; the request is a copy.
      opened.length = 0;
      const ok = await decapsulateChunkedRequestBytes([key], wire);
      expect(new TextDecoder().decode(ok.request)).toBe('0123456789abcdefghijlast');
      expect(opened.map((b) => b.length)).toEqual([10, 10, 4]);
      expect(opened.every((b) => b.every((x) => x === 0))).toBe(true);
    } finally {
      setHpkeProvider(base);
    }
  });

  it('a whole body sealed with sealReady and an empty final chunk is, byte for byte, what encapsulateChunkedRequest streams', async () => {
    // The SDK seals a streamed request's whole Binary HTTP message this way, without the stream.
    const key = await createOhttpServerKey({ keyId: 8 });
    for (const size of [1, 1000, MAX_PLAINTEXT_CHUNK, MAX_PLAINTEXT_CHUNK + 1, 3 * MAX_PLAINTEXT_CHUNK + 5]) {
      const body = new Uint8Array(size).map((_, i) => i * 7);
      const ephemeralKeyPair = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
      const streamed = await readAll((await encapsulateChunkedRequest(key.config, body, { ephemeralKeyPair })).body);
      const { sealer } = await createChunkedRequest(key.config, { ephemeralKeyPair });
      const whole = concatBytes(await sealReady(sealer, body, { first: true }), await sealer.seal(new Uint8Array(0), true));
      expect(toHex(whole)).toBe(toHex(streamed));
      expect(equalBytes((await decapsulateChunkedRequestBytes([key], whole)).request, body)).toBe(true);
    }
  });

  it('opened whole from a Buffer, the context keeps its own copy of enc, not a view of the message', async () => {
    const key = await createOhttpServerKey({ keyId: 10 });
    const wire = Buffer.from(await readAll((await encapsulateChunkedRequest(key.config, utf8('hello'))).body));
    const sent = toHex(wire.subarray(7, 7 + 32));
    const { context } = await decapsulateChunkedRequestBytes([key], wire);
    expect(toHex(context.enc)).toBe(sent);
    expect(context.enc.buffer).not.toBe(wire.buffer);
    wire.fill(0);
    expect(toHex(context.enc)).toBe(sent);
  });

  it('splits large chunks and carries 1 MiB', async () => {
    const big = new Uint8Array(1024 * 1024 + 5).map((_, i) => i * 7);
    const got = await exchange([big], [big.subarray(0, MAX_PLAINTEXT_CHUNK + 1)], []);
    // equalBytes, not toEqual: a deep compare of 1 MiB element by element is slow.
    expect(equalBytes(got.request, big)).toBe(true);
    expect(equalBytes(got.response, big.subarray(0, MAX_PLAINTEXT_CHUNK + 1))).toBe(true);
  });

  it('streams server-sent events token by token through bhttp and chunked OHTTP', async () => {
    const key = await createOhttpServerKey({ keyId: 5 });
    const request = encodeBhttpRequest({ method: 'POST', scheme: 'https', authority: 'gw', path: '/v1/chat/completions', content: utf8('{"stream":true}') });
    const { body, context } = await encapsulateChunkedRequest(key.config, request);
    const server = await decapsulateChunkedRequest(key, body);
    const inner = await decodeBhttpRequestStream(server.request);
    expect(inner.path).toBe('/v1/chat/completions');
    expect(new TextDecoder().decode(await readAll(inner.body))).toBe('{"stream":true}');

    // The gateway writes the response head, then one bhttp chunk per token, as they are produced.
    const tokens = ['data: {"t":"Hel"}\n\n', 'data: {"t":"lo"}\n\n', 'data: [DONE]\n\n'];
    let push!: (b: Uint8Array) => void;
    let end!: () => void;
    const plain = new ReadableStream<Uint8Array>({
      start(c) {
        push = (b) => c.enqueue(b);
        end = () => c.close();
      },
    });
    const wire = await server.context.encapsulateResponse(plain);
    push(encodeBhttpResponseHead({ status: 200, headers: [['content-type', 'text/event-stream']] }));
    const res = await decodeBhttpResponseStream(context.decapsulateResponse(wire));
    expect(res.status).toBe(200);
    const reader = res.body.getReader();
    for (const t of tokens) {
      push(encodeBhttpContentChunk(utf8(t)));
      // Each token is readable before the next one is produced.
      const { value } = await reader.read();
      expect(new TextDecoder().decode(value)).toBe(t);
    }
    push(encodeBhttpEnd());
    end();
    expect((await reader.read()).done).toBe(true);
    expect(await res.trailers).toEqual([]);
  });

  it('sealReady frames what a producer has ready: prefix first, split above the chunk limit, content in the final chunk', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ maxLength: 80 }), { minLength: 1, maxLength: 5 }), fc.boolean(), async (parts, big) => {
        const key = await createOhttpServerKey({ keyId: 6 });
        const { body, context } = await encapsulateChunkedRequest(key.config, utf8('q'));
        const server = await decapsulateChunkedRequest(key, body);
        await readAll(server.request);
        const sealer = await server.context.createResponseSealer();
        const pieces = big ? [new Uint8Array(MAX_PLAINTEXT_CHUNK + 3).fill(9), ...parts] : parts;
        const wire: Uint8Array[] = [];
        for (const [i, p] of pieces.entries()) wire.push(await sealReady(sealer, p, { first: i === 0, final: i === pieces.length - 1 }));
        const got = await readAll(context.decapsulateResponse(streamOf(...wire)));
        expect(equalBytes(got, concatBytes(...pieces))).toBe(true);
        // Nothing may follow the final chunk.
        await expect(sealer.seal(new Uint8Array(1))).rejects.toMatchObject({ code: 'ERR_HPKE_PARAMS' });
      }),
      { numRuns: 25, seed: 9 },
    );
  });
});
