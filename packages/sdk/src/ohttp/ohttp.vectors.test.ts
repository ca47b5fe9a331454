// RFC 9458 Appendix A and the chunked-OHTTP draft example, byte for byte, with every
// intermediate value, plus tampered twins that must fail with typed codes.
import { CustodyError, deserializeHpkePrivateKey, fromHex, hpkeReceiveExport, toHex, utf8 } from '@custody/core';
import { describe, expect, it } from 'vitest';
import { readVectorText } from '../../../../test/vectors.js';
import { decodeBhttpRequest, decodeBhttpResponse, encodeBhttpRequest, encodeBhttpResponse } from './bhttp.js';
import { createChunkedRequest, decapsulateChunkedRequest, decapsulateChunkedRequestBytes } from './chunked.js';
import { encodeKeyConfig, encodeKeyConfigs, parseKeyConfig, parseKeyConfigs, type OhttpServerKey } from './key-config.js';
import { decapsulateRequest, deriveResponseKeys, encapsulateRequest, OhttpLabel, requestInfo } from './ohttp.js';
import { readAll, streamOf } from './stream-buffer.js';

interface Rfc9458Vector {
  kemId: number;
  kdfId: number;
  aeadId: number;
  keyId: number;
  skR: string;
  keyConfig: string;
  requestBhttp: string;
  skE: string;
  pkE: string;
  info: string;
  encapsulatedRequest: string;
  responseBhttp: string;
  exportedSecret: string;
  responseNonce: string;
  salt: string;
  prk: string;
  aeadKey: string;
  aeadNonce: string;
  encapsulatedResponse: string;
}

interface ChunkVector {
  plaintext: string;
  aad: string;
  final?: boolean;
  nonce?: string;
  encoded: string;
}

interface ChunkedVector extends Omit<Rfc9458Vector, 'encapsulatedResponse'> {
  requestChunks: ChunkVector[];
  responseChunks: ChunkVector[];
  encapsulatedResponse: string;
}

const rfc = JSON.parse(readVectorText('ohttp/rfc9458-appendix-a.json')) as Rfc9458Vector;
const chunked = JSON.parse(readVectorText('ohttp/chunked-ohttp-appendix.json')) as ChunkedVector;
const h = fromHex;

async function failure(p: Promise<unknown>): Promise<CustodyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e, 'expected a typed failure').toBeInstanceOf(CustodyError);
  return e as CustodyError;
}

function flip(b: Uint8Array, i: number): Uint8Array {
  const c = b.slice();
  c[(i + c.length) % c.length]! ^= 0x01;
  return c;
}

/** A RandomSource that returns fixed bytes (the vector's response nonce). */
const fixed = (b: Uint8Array) => (n: number) => {
  expect(n).toBe(b.length);
  return b.slice();
};

async function serverKey(v: { kemId: number; skR: string; keyConfig: string }): Promise<OhttpServerKey> {
  return { config: parseKeyConfig(h(v.keyConfig)), keyPair: await deserializeHpkePrivateKey(v.kemId, h(v.skR)) };
}

describe('RFC 9458 Appendix A', () => {
  it('key configuration parses and re-encodes byte-exactly, also as application/ohttp-keys', async () => {
    const c = parseKeyConfig(h(rfc.keyConfig));
    expect(c.keyId).toBe(rfc.keyId);
    expect(c.kem).toBe(rfc.kemId);
    expect(c.suites).toEqual([
      { kdf: 1, aead: 1 },
      { kdf: 1, aead: 3 },
    ]);
    expect(toHex(encodeKeyConfig(c))).toBe(rfc.keyConfig);
    // The configuration's key is the public half of skR.
    expect(toHex(c.publicKey)).toBe(toHex((await deserializeHpkePrivateKey(rfc.kemId, h(rfc.skR))).publicKey.bytes));
    const list = encodeKeyConfigs([c]);
    expect(toHex(list)).toBe('00' + (rfc.keyConfig.length / 2).toString(16) + rfc.keyConfig);
    expect(parseKeyConfigs(list)).toEqual([c]);
  });

  it('binary HTTP request and response encode to the example bytes', () => {
    const req = decodeBhttpRequest(h(rfc.requestBhttp));
    expect(req).toMatchObject({ framing: 'known-length', method: 'GET', scheme: 'https', authority: 'example.com', path: '/', headers: [], trailers: [] });
    expect(toHex(encodeBhttpRequest(req))).toBe(rfc.requestBhttp);
    const res = decodeBhttpResponse(h(rfc.responseBhttp));
    expect(res).toMatchObject({ framing: 'known-length', status: 200, headers: [], trailers: [], informational: [] });
    expect(toHex(encodeBhttpResponse({ status: 200 }))).toBe(rfc.responseBhttp);
  });

  it('client encapsulates the request byte-exactly', async () => {
    const config = parseKeyConfig(h(rfc.keyConfig));
    const eph = await deserializeHpkePrivateKey(rfc.kemId, h(rfc.skE));
    expect(toHex(eph.publicKey.bytes)).toBe(rfc.pkE);
    expect(toHex(requestInfo(OhttpLabel.Request, { keyId: rfc.keyId, kem: rfc.kemId, kdf: rfc.kdfId, aead: rfc.aeadId }))).toBe(rfc.info);
    const { encapsulatedRequest, context } = await encapsulateRequest(config, h(rfc.requestBhttp), { ephemeralKeyPair: eph });
    expect(toHex(encapsulatedRequest)).toBe(rfc.encapsulatedRequest);
    // The client opens the example response.
    expect(toHex(await context.decapsulateResponse(h(rfc.encapsulatedResponse)))).toBe(rfc.responseBhttp);
    expect((await failure(context.decapsulateResponse(flip(h(rfc.encapsulatedResponse), -1)))).code).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
  });

  it('gateway decapsulates, derives every intermediate value and encapsulates the response byte-exactly', async () => {
    const key = await serverKey(rfc);
    const { request, context } = await decapsulateRequest([key], h(rfc.encapsulatedRequest));
    expect(toHex(request)).toBe(rfc.requestBhttp);
    const enc = h(rfc.pkE);
    const secret = await hpkeReceiveExport({ suite: { kem: rfc.kemId, kdf: rfc.kdfId, aead: rfc.aeadId }, recipientKeyPair: key.keyPair, enc, info: h(rfc.info) }, utf8(OhttpLabel.Response), 16);
    expect(toHex(secret)).toBe(rfc.exportedSecret);
    const keys = await deriveResponseKeys(rfc.kdfId, rfc.aeadId, secret, enc, h(rfc.responseNonce));
    expect(toHex(keys.salt)).toBe(rfc.salt);
    expect(toHex(keys.prk)).toBe(rfc.prk);
    expect(toHex(keys.key)).toBe(rfc.aeadKey);
    expect(toHex(keys.nonce)).toBe(rfc.aeadNonce);
    const response = await context.encapsulateResponse(h(rfc.responseBhttp), { random: fixed(h(rfc.responseNonce)) });
    expect(toHex(response)).toBe(rfc.encapsulatedResponse);
  });

  it('tampered requests fail with typed codes', async () => {
    const key = await serverKey(rfc);
    const req = h(rfc.encapsulatedRequest);
    const code = async (b: Uint8Array): Promise<string> => (await failure(decapsulateRequest(key, b))).code;
    expect(await code(flip(req, -1))).toBe('ERR_OHTTP_REQUEST_DECRYPT'); // tag
    expect(await code(flip(req, 7 + 32 + 2))).toBe('ERR_OHTTP_REQUEST_DECRYPT'); // ciphertext
    expect(await code(flip(req, 7 + 3))).toBe('ERR_OHTTP_REQUEST_DECRYPT'); // enc
    expect(await code(flip(req, 0))).toBe('ERR_OHTTP_KEY_ID'); // key id 1 -> 0
    expect(await code(flip(req, 4))).toBe('ERR_OHTTP_SUITE'); // KDF 1 -> 0
    expect(await code(flip(req, 6))).toBe('ERR_OHTTP_SUITE'); // AEAD 1 -> 0
    expect(await code(flip(req, 2))).toBe('ERR_OHTTP_SUITE'); // KEM 0x20 -> 0x21 (not this key's)
    // AEAD 1 -> 3 is offered by the key: the suite changes the info and the key schedule.
    const cha = req.slice();
    cha[6] = 3;
    expect(await code(cha)).toBe('ERR_OHTTP_REQUEST_DECRYPT');
    expect(await code(req.subarray(0, 20))).toBe('ERR_INPUT_TRUNCATED');
    expect(await code(req.subarray(0, 7 + 32 + 15))).toBe('ERR_OHTTP_REQUEST_DECRYPT');
    // A different key with the same id cannot open it.
    const other = await serverKey(chunked);
    const otherSameId = { config: { ...other.config, keyId: 1 }, keyPair: other.keyPair };
    expect((await failure(decapsulateRequest(otherSameId, req))).code).toBe('ERR_OHTTP_REQUEST_DECRYPT');
  });

  it('tampered responses fail with typed codes', async () => {
    const config = parseKeyConfig(h(rfc.keyConfig));
    const eph = await deserializeHpkePrivateKey(rfc.kemId, h(rfc.skE));
    const { context } = await encapsulateRequest(config, h(rfc.requestBhttp), { ephemeralKeyPair: eph });
    const res = h(rfc.encapsulatedResponse);
    for (const i of [0, 15, 16, 17, res.length - 1]) expect((await failure(context.decapsulateResponse(flip(res, i)))).code).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
    expect((await failure(context.decapsulateResponse(res.subarray(0, 10)))).code).toBe('ERR_INPUT_TRUNCATED');
    expect((await failure(context.decapsulateResponse(res.subarray(0, res.length - 1)))).code).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
    // A response to another request (other ephemeral key) does not open.
    const { context: other } = await encapsulateRequest(config, h(rfc.requestBhttp));
    expect((await failure(other.decapsulateResponse(res))).code).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
  });
});

/** Splits bytes into a stream at the given cut points. */
function split(b: Uint8Array, cuts: number[]): ReadableStream<Uint8Array> {
  const points = [...new Set(cuts.map((c) => c % (b.length + 1)))].sort((x, y) => x - y);
  const parts: Uint8Array[] = [];
  let last = 0;
  for (const p of [...points, b.length]) {
    parts.push(b.subarray(last, p));
    last = p;
  }
  return streamOf(...parts);
}

async function chunksOf(stream: ReadableStream<Uint8Array>): Promise<string[]> {
  const out: string[] = [];
  for await (const c of stream as unknown as AsyncIterable<Uint8Array>) out.push(toHex(c));
  return out;
}

describe('chunked OHTTP example (draft-ietf-ohai-chunked-ohttp)', () => {
  it('client seals the three request chunks byte-exactly', async () => {
    const config = parseKeyConfig(h(chunked.keyConfig));
    expect(toHex(encodeKeyConfig(config))).toBe(chunked.keyConfig);
    const eph = await deserializeHpkePrivateKey(chunked.kemId, h(chunked.skE));
    expect(toHex(eph.publicKey.bytes)).toBe(chunked.pkE);
    expect(toHex(requestInfo(OhttpLabel.ChunkedRequest, { keyId: chunked.keyId, kem: chunked.kemId, kdf: chunked.kdfId, aead: chunked.aeadId }))).toBe(chunked.info);
    const { sealer, context } = await createChunkedRequest(config, { ephemeralKeyPair: eph });
    const parts = [sealer.prefix];
    for (const c of chunked.requestChunks) {
      expect(h(c.aad)).toEqual(c.final ? utf8('final') : new Uint8Array(0));
      const framed = await sealer.seal(h(c.plaintext), c.final === true);
      expect(toHex(framed)).toBe(c.encoded);
      parts.push(framed);
    }
    expect(toHex(Buffer.concat(parts))).toBe(chunked.encapsulatedRequest);
    expect((await failure(sealer.seal(new Uint8Array(1)))).code).toBe('ERR_HPKE_PARAMS');
    // The client opens the example response, split anywhere.
    const plain = await chunksOf(context.decapsulateResponse(split(h(chunked.encapsulatedResponse), [3, 16, 17, 30, 40])));
    expect(plain.join('')).toBe(chunked.responseBhttp);
    expect(plain).toEqual(chunked.responseChunks.filter((c) => c.plaintext !== '').map((c) => c.plaintext));
  });

  it('gateway opens the request stream, derives the response keys and seals the response byte-exactly', async () => {
    const key = await serverKey(chunked);
    const { request, context } = await decapsulateChunkedRequest(key, split(h(chunked.encapsulatedRequest), [1, 5, 7, 38, 39, 40, 70]));
    const plain = await chunksOf(request);
    expect(plain).toEqual(chunked.requestChunks.filter((c) => c.plaintext !== '').map((c) => c.plaintext));
    expect(plain.join('')).toBe(chunked.requestBhttp);
    // Read whole, the same request, and a context that seals the same response.
    const whole = await decapsulateChunkedRequestBytes(key, h(chunked.encapsulatedRequest));
    expect(toHex(whole.request)).toBe(chunked.requestBhttp);
    const wholeSealer = await whole.context.createResponseSealer({ random: fixed(h(chunked.responseNonce)) });
    const wholeParts = [wholeSealer.prefix];
    for (const c of chunked.responseChunks) wholeParts.push(await wholeSealer.seal(h(c.plaintext), c.final === true));
    expect(toHex(Buffer.concat(wholeParts))).toBe(chunked.encapsulatedResponse);

    const enc = h(chunked.pkE);
    const suite = { kem: chunked.kemId, kdf: chunked.kdfId, aead: chunked.aeadId };
    const secret = await hpkeReceiveExport({ suite, recipientKeyPair: key.keyPair, enc, info: h(chunked.info) }, utf8(OhttpLabel.ChunkedResponse), 16);
    expect(toHex(secret)).toBe(chunked.exportedSecret);
    const keys = await deriveResponseKeys(chunked.kdfId, chunked.aeadId, secret, enc, h(chunked.responseNonce));
    expect(toHex(keys.salt)).toBe(chunked.salt);
    expect(toHex(keys.prk)).toBe(chunked.prk);
    expect(toHex(keys.key)).toBe(chunked.aeadKey);
    expect(toHex(keys.nonce)).toBe(chunked.aeadNonce);

    const sealer = await context.createResponseSealer({ random: fixed(h(chunked.responseNonce)) });
    expect(toHex(sealer.prefix)).toBe(chunked.responseNonce);
    const parts = [sealer.prefix];
    for (const c of chunked.responseChunks) {
      const framed = await sealer.seal(h(c.plaintext), c.final === true);
      expect(toHex(framed)).toBe(c.encoded);
      parts.push(framed);
    }
    expect(toHex(Buffer.concat(parts))).toBe(chunked.encapsulatedResponse);
    // The chunk nonces of the example are aead_nonce XOR counter.
    expect(chunked.responseChunks.map((c) => c.nonce)).toEqual([0, 1, 2].map((i) => toHex(keys.nonce.map((b, j) => (j === 11 ? b ^ i : b)))));
  });

  it('tampered, reordered and truncated chunked requests fail with typed codes', async () => {
    const key = await serverKey(chunked);
    const full = h(chunked.encapsulatedRequest);
    const hdr = 7 + 32;
    const [c0, c1, c2] = chunked.requestChunks.map((c) => h(c.encoded));
    // Both openers (the stream, and the message read whole) fail alike.
    const errorOf = async (b: Uint8Array): Promise<string> => {
      const e = await decapsulateChunkedRequest(key, streamOf(b)).then(
        async ({ request }) => readAll(request).then(() => undefined),
        (err: unknown) => err,
      ).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(CustodyError);
      const whole = await decapsulateChunkedRequestBytes(key, b).then(() => undefined, (err: unknown) => err);
      expect(whole).toBeInstanceOf(CustodyError);
      expect((whole as CustodyError).code).toBe((e as CustodyError).code);
      return (e as CustodyError).code;
    };
    expect(await errorOf(flip(full, hdr + 5))).toBe('ERR_OHTTP_REQUEST_DECRYPT'); // first chunk body
    expect(await errorOf(flip(full, -1))).toBe('ERR_OHTTP_REQUEST_DECRYPT'); // final chunk tag
    expect(await errorOf(flip(full, 10))).toBe('ERR_OHTTP_REQUEST_DECRYPT'); // enc
    expect(await errorOf(flip(full, 0))).toBe('ERR_OHTTP_KEY_ID');
    // Swapped chunks, a missing chunk, a replayed chunk.
    expect(await errorOf(Buffer.concat([full.subarray(0, hdr), c1!, c0!, c2!]))).toBe('ERR_OHTTP_REQUEST_DECRYPT');
    expect(await errorOf(Buffer.concat([full.subarray(0, hdr), c1!, c2!]))).toBe('ERR_OHTTP_REQUEST_DECRYPT');
    expect(await errorOf(Buffer.concat([full.subarray(0, hdr), c0!, c0!, c2!]))).toBe('ERR_OHTTP_REQUEST_DECRYPT');
    // The final chunk moved to a non-final position (its AAD no longer matches) and vice versa.
    expect(await errorOf(Buffer.concat([full.subarray(0, hdr), c0!, c1!, new Uint8Array([c2!.length - 1]), c2!.subarray(1)]))).toBe('ERR_OHTTP_REQUEST_DECRYPT');
    expect(await errorOf(Buffer.concat([full.subarray(0, hdr), c0!, new Uint8Array([0]), c1!.subarray(1)]))).toBe('ERR_OHTTP_REQUEST_DECRYPT');
    // Truncation: at a chunk boundary, inside a chunk, inside the header.
    expect(await errorOf(Buffer.concat([full.subarray(0, hdr), c0!, c1!]))).toBe('ERR_OHTTP_TRUNCATED');
    expect(await errorOf(Buffer.concat([full.subarray(0, hdr), c0!.subarray(0, 10)]))).toBe('ERR_OHTTP_TRUNCATED');
    expect(await errorOf(full.subarray(0, hdr))).toBe('ERR_OHTTP_TRUNCATED');
    expect(await errorOf(full.subarray(0, 20))).toBe('ERR_OHTTP_TRUNCATED');
  });

  it('tampered and truncated chunked responses fail with typed codes', async () => {
    const config = parseKeyConfig(h(chunked.keyConfig));
    const eph = await deserializeHpkePrivateKey(chunked.kemId, h(chunked.skE));
    const res = h(chunked.encapsulatedResponse);
    const errorOf = async (b: Uint8Array): Promise<string> => {
      const { context } = await createChunkedRequest(config, { ephemeralKeyPair: eph });
      const e = await readAll(context.decapsulateResponse(streamOf(b))).then(
        () => undefined,
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(CustodyError);
      return (e as CustodyError).code;
    };
    const [r0, r1, r2] = chunked.responseChunks.map((c) => h(c.encoded));
    const nonce = res.subarray(0, 16);
    expect(await errorOf(flip(res, 3))).toBe('ERR_OHTTP_RESPONSE_DECRYPT'); // response nonce
    expect(await errorOf(flip(res, 20))).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
    expect(await errorOf(flip(res, -1))).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
    expect(await errorOf(Buffer.concat([nonce, r1!, r0!, r2!]))).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
    expect(await errorOf(Buffer.concat([nonce, r0!, r2!]))).toBe('ERR_OHTTP_RESPONSE_DECRYPT');
    expect(await errorOf(Buffer.concat([nonce, r0!, r1!]))).toBe('ERR_OHTTP_TRUNCATED');
    expect(await errorOf(nonce.subarray(0, 9))).toBe('ERR_OHTTP_TRUNCATED');
    expect(await errorOf(nonce)).toBe('ERR_OHTTP_TRUNCATED');
  });
});
