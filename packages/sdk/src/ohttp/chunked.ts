/**
 * Chunked Oblivious HTTP (draft-ietf-ohai-chunked-ohttp): requests and responses sealed and
 * opened chunk by chunk, so a streamed response (server-sent events) reaches the client token
 * by token.
 *
 * Request:  hdr || enc, then chunks. Response: response_nonce (max(Nn, Nk)), then chunks.
 * Chunk:    varint(len(ct)) || ct for non-final chunks (len >= 1, AAD empty);
 *           0x00 || ct for the final chunk, which runs to the end of the stream (AAD "final").
 * Request chunks use the HPKE context's sequence; response chunk i uses aead_nonce XOR i.
 *
 * A message is complete only after its final chunk authenticates. A stream that ends earlier
 * fails with ERR_OHTTP_TRUNCATED, never a silent short message.
 */
import {
  ByteReader,
  concatBytes,
  HpkeError,
  isCustodyError,
  joinBytes,
  kemParams,
  ParseError,
  publicNonceRandom,
  utf8,
  xorNonce,
  type AeadKey,
  type Bytes,
  type HpkeExporter,
  type HpkeRecipientContext,
  type HpkeSenderContext,
  type RandomSource,
} from '@custody/core';
import type { KeyConfig, OhttpServerKey } from './key-config.js';
import {
  decodeRequestHeader,
  drawResponseKeys,
  exportResponseKeys,
  findServerKey,
  OhttpLabel,
  REQUEST_HEADER_LENGTH,
  responseNonceLength,
  setupClient,
  setupServer,
  wrapError,
  type EncapsulateOptions,
  type OhttpRequestHeader,
  type PreparedResponse,
} from './ohttp.js';
import { StreamBuffer } from './stream-buffer.js';
import { encodeVarint, readVarint } from './varint.js';

const FINAL_AAD = utf8('final');
const EMPTY = new Uint8Array(0);

export interface ChunkedLimits {
  /** Largest ciphertext chunk accepted, including the final one. Default 1 MiB + 16. */
  readonly maxChunkSize?: number;
  /**
   * Most chunks accepted in one message, empty ones included (each costs an AEAD open, so tiny
   * chunks would otherwise buy much work for few bytes). Default 1,048,576.
   */
  readonly maxChunks?: number;
}

/** Plaintext is cut into chunks of at most this size when sealing a stream. */
export const MAX_PLAINTEXT_CHUNK = 64 * 1024;
const DEFAULT_MAX_CHUNK = 1024 * 1024 + 16;
const DEFAULT_MAX_CHUNKS = 1 << 20;

function frame(ct: Uint8Array, final: boolean): Bytes {
  return concatBytes(final ? new Uint8Array([0]) : encodeVarint(ct.length), ct);
}

/** Seals one message chunk by chunk; after the final chunk it refuses to seal more. */
export interface ChunkSealer {
  /** What precedes the chunks: hdr || enc for a request, the response nonce for a response. */
  readonly prefix: Bytes;
  /** Returns the framed chunk: its varint length (0 when final) and the ciphertext. */
  seal(plaintext: Uint8Array, final?: boolean): Promise<Bytes>;
}

class Sealer implements ChunkSealer {
  private finished = false;
  constructor(
    readonly prefix: Bytes,
    private readonly sealOne: (pt: Uint8Array, aad: Uint8Array) => Promise<Bytes>,
  ) {}

  async seal(plaintext: Uint8Array, final = false): Promise<Bytes> {
    if (this.finished) throw new HpkeError('ERR_HPKE_PARAMS', 'the final chunk has already been sealed');
    if (final) this.finished = true;
    return frame(await this.sealOne(plaintext, final ? FINAL_AAD : EMPTY), final);
  }
}

/**
 * Seals plaintext that is ready now into one framed piece (what one socket write carries), for
 * producers that frame their own stream: `first` puts the sealer's prefix in front, `final`
 * seals the last part as the final chunk (plaintext may be empty then). Parts above
 * MAX_PLAINTEXT_CHUNK are split; an empty non-final plaintext gives only the prefix, if any.
 */
export async function sealReady(sealer: ChunkSealer, plaintext: Uint8Array, options: { readonly first?: boolean; readonly final?: boolean } = {}): Promise<Bytes> {
  const out: Uint8Array[] = options.first ? [sealer.prefix] : [];
  let rest = plaintext;
  while (rest.length > MAX_PLAINTEXT_CHUNK) {
    out.push(await sealer.seal(rest.subarray(0, MAX_PLAINTEXT_CHUNK)));
    rest = rest.subarray(MAX_PLAINTEXT_CHUNK);
  }
  if (options.final) out.push(await sealer.seal(rest, true));
  else if (rest.length > 0) out.push(await sealer.seal(rest));
  return out.length === 1 ? (out[0] as Bytes) : concatBytes(...out);
}

/**
 * A ReadableStream of prefix, sealed chunks and an empty final chunk from a plaintext source.
 * What is ready leaves as one piece (each piece is a socket write): the prefix goes with the
 * first chunk, and a body given whole goes with its final chunk. A streamed source still
 * leaves chunk by chunk, each as soon as it is sealed.
 */
function sealStream(sealer: ChunkSealer, source: ReadableStream<Uint8Array> | Uint8Array): ReadableStream<Uint8Array> {
  const reader = source instanceof Uint8Array ? undefined : source.getReader();
  let pending: Uint8Array[] = source instanceof Uint8Array ? [source] : [];
  let prefix: Uint8Array | undefined = sealer.prefix;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const out: Uint8Array[] = prefix ? [prefix] : [];
        prefix = undefined;
        const emit = () => controller.enqueue(out.length === 1 ? out[0]! : concatBytes(...out));
        for (;;) {
          const next = pending.shift();
          if (next) {
            if (next.length === 0) continue;
            if (next.length > MAX_PLAINTEXT_CHUNK) pending.unshift(next.subarray(MAX_PLAINTEXT_CHUNK));
            out.push(await sealer.seal(next.subarray(0, MAX_PLAINTEXT_CHUNK)));
            if (reader) {
              emit();
              return;
            }
            continue;
          }
          const r = reader ? await reader.read() : { done: true as const, value: undefined };
          if (r.done) {
            out.push(await sealer.seal(EMPTY, true));
            emit();
            controller.close();
            return;
          }
          pending = [r.value];
        }
      } catch (e) {
        controller.error(e);
        await reader?.cancel(e).catch(() => undefined);
      }
    },
    async cancel(reason) {
      await reader?.cancel(reason);
    },
  });
}

/** The bounds on a chunk's length and on the number of chunks (`count` includes this one), for both openers. */
function checkChunk(len: number, count: number, max: number, maxChunks: number): void {
  if (len > max) throw new ParseError('ERR_INPUT_TOO_LARGE', 'chunk exceeds its size bound', { detail: { length: len, max } });
  if (count > maxChunks) throw new ParseError('ERR_INPUT_TOO_LARGE', 'message has more chunks than allowed', { detail: { max: maxChunks } });
}

/**
 * Opens framed chunks from `buf` as a plaintext stream. `start` runs before the first chunk
 * (a response reads its nonce there); `open` decrypts one chunk; `code` is the error for
 * chunks that do not authenticate.
 */
function openStream(
  buf: StreamBuffer,
  start: () => Promise<void>,
  open: (ct: Uint8Array, final: boolean) => Promise<Bytes>,
  code: 'ERR_OHTTP_REQUEST_DECRYPT' | 'ERR_OHTTP_RESPONSE_DECRYPT',
  limits: ChunkedLimits,
): ReadableStream<Uint8Array> {
  const max = limits.maxChunkSize ?? DEFAULT_MAX_CHUNK;
  const maxChunks = limits.maxChunks ?? DEFAULT_MAX_CHUNKS;
  const truncated = (): HpkeError => new HpkeError('ERR_OHTTP_TRUNCATED');
  let started = false;
  let chunks = 0;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        if (!started) {
          started = true;
          await start();
        }
        // Until something is enqueued or the message ends: a pull that returns having enqueued
        // nothing (after an empty chunk) is not called again, and the reader would wait forever.
        for (;;) {
          let len: number | null;
          try {
            len = await buf.readVarint();
          } catch (e) {
            throw isCustodyError(e) && e.code === 'ERR_INPUT_TRUNCATED' ? truncated() : e;
          }
          if (len === null) throw truncated();
          checkChunk(len, ++chunks, max, maxChunks);
          const final = len === 0;
          let ct: Bytes;
          if (final) ct = await buf.readToEnd(max);
          else {
            if (!(await buf.fill(len))) throw truncated();
            ct = buf.take(len);
          }
          let pt: Bytes;
          try {
            pt = await open(ct, final);
          } catch (e) {
            throw wrapError(e, code);
          }
          if (pt.length > 0) controller.enqueue(pt);
          if (final) {
            buf.release();
            controller.close();
            return;
          }
          if (pt.length > 0) return;
        }
      } catch (e) {
        await buf.cancel(e);
        controller.error(e);
      }
    },
    async cancel(reason) {
      await buf.cancel(reason);
    },
  });
}

/** Response chunks under one AEAD key: chunk i uses aead_nonce XOR i. */
class ResponseChunkCipher {
  private counter = 0;
  constructor(
    private readonly aead: AeadKey,
    private readonly baseNonce: Uint8Array,
  ) {}

  async seal(pt: Uint8Array, aad: Uint8Array): Promise<Bytes> {
    const ct = await this.aead.seal(xorNonce(this.baseNonce, this.counter), aad, pt);
    this.counter++;
    return ct;
  }

  async open(ct: Uint8Array, aad: Uint8Array): Promise<Bytes> {
    const pt = await this.aead.open(xorNonce(this.baseNonce, this.counter), aad, ct);
    this.counter++;
    return pt;
  }
}

// ---------------------------------------------------------------- client

export class ChunkedClientContext {
  private used = false;

  /** @internal */
  constructor(
    private readonly ctx: HpkeSenderContext,
    readonly header: OhttpRequestHeader,
  ) {}

  get exporter(): HpkeExporter {
    return this.ctx;
  }

  /**
   * Opens a message/ohttp-chunked-res stream into the plaintext (binary HTTP) stream, which
   * errors with ERR_OHTTP_RESPONSE_DECRYPT or ERR_OHTTP_TRUNCATED. One response per request.
   */
  decapsulateResponse(stream: ReadableStream<Uint8Array>, limits: ChunkedLimits = {}): ReadableStream<Uint8Array> {
    if (this.used) throw new HpkeError('ERR_HPKE_PARAMS', 'the response of this request has already been opened');
    this.used = true;
    const buf = new StreamBuffer(stream.getReader());
    const n = responseNonceLength(this.header.aead);
    let cipher: ResponseChunkCipher | undefined;
    return openStream(
      buf,
      async () => {
        if (!(await buf.fill(n))) throw new HpkeError('ERR_OHTTP_TRUNCATED', 'response ended before its nonce');
        try {
          const keys = await exportResponseKeys(this.ctx, OhttpLabel.ChunkedResponse, this.ctx.enc, buf.take(n));
          cipher = new ResponseChunkCipher(keys.aead, keys.nonce);
        } catch (e) {
          throw wrapError(e, 'ERR_OHTTP_RESPONSE_DECRYPT');
        }
      },
      (ct, final) => cipher!.open(ct, final ? FINAL_AAD : EMPTY),
      'ERR_OHTTP_RESPONSE_DECRYPT',
      limits,
    );
  }
}

/**
 * Client: starts a chunked request. The sealer's prefix (hdr || enc) goes first, then each
 * sealed chunk; the last one must be sealed with `final = true`.
 */
export async function createChunkedRequest(config: KeyConfig, options: EncapsulateOptions = {}): Promise<{ sealer: ChunkSealer; context: ChunkedClientContext }> {
  const { ctx, header, hdr } = await setupClient(config, OhttpLabel.ChunkedRequest, options);
  const sealer = new Sealer(concatBytes(hdr, ctx.enc), (pt, aad) => ctx.seal(pt, aad));
  return { sealer, context: new ChunkedClientContext(ctx, header) };
}

/**
 * Client: encapsulates a request body stream as message/ohttp-chunked-req. Each source chunk
 * becomes one sealed chunk (split above 64 KiB) and the end of the source an empty final chunk.
 */
export async function encapsulateChunkedRequest(
  config: KeyConfig,
  body: ReadableStream<Uint8Array> | Uint8Array,
  options: EncapsulateOptions = {},
): Promise<{ body: ReadableStream<Uint8Array>; context: ChunkedClientContext }> {
  const { sealer, context } = await createChunkedRequest(config, options);
  return { body: sealStream(sealer, body), context };
}

// ---------------------------------------------------------------- gateway

export class ChunkedServerContext {
  private used = false;
  private prepared: Promise<PreparedResponse> | undefined;

  /** @internal */
  constructor(
    private readonly ctx: HpkeRecipientContext,
    readonly header: OhttpRequestHeader,
    readonly enc: Bytes,
  ) {}

  get exporter(): HpkeExporter {
    return this.ctx;
  }

  /**
   * Draws the response nonce (from the secure generator, through the pool of public nonces,
   * `publicNonceRandom`) and derives the response keys now, so
   * that `createResponseSealer` only wraps them: the gateway calls it while the model works.
   * Does nothing once the response is started or already prepared.
   */
  prepareResponse(): void {
    if (this.used || this.prepared) return;
    this.prepared = this.responseKeys(publicNonceRandom);
    // A failure here surfaces when the response is started (the same derivation, so the same error).
    this.prepared.catch(() => undefined);
  }

  private responseKeys(random: RandomSource): Promise<PreparedResponse> {
    return drawResponseKeys(this.ctx, OhttpLabel.ChunkedResponse, this.enc, this.header.aead, random);
  }

  /**
   * Starts the response: the sealer's prefix is the response nonce, then each sealed chunk. A
   * `random` given here wins over a nonce `prepareResponse` drew.
   */
  async createResponseSealer(options: { readonly random?: RandomSource } = {}): Promise<ChunkSealer> {
    if (this.used) throw new HpkeError('ERR_HPKE_PARAMS', 'the response to this request has already been started');
    this.used = true;
    const prepared = options.random ? undefined : this.prepared;
    this.prepared = undefined;
    const { nonce, keys } = await (prepared ?? this.responseKeys(options.random ?? publicNonceRandom));
    const cipher = new ResponseChunkCipher(keys.aead, keys.nonce);
    return new Sealer(nonce, (pt, aad) => cipher.seal(pt, aad));
  }

  /** Seals a response body stream as message/ohttp-chunked-res. */
  async encapsulateResponse(body: ReadableStream<Uint8Array> | Uint8Array, options: { readonly random?: RandomSource } = {}): Promise<ReadableStream<Uint8Array>> {
    return sealStream(await this.createResponseSealer(options), body);
  }
}

/**
 * Gateway: reads the request header from a message/ohttp-chunked-req stream and returns the
 * plaintext request stream (chunks are opened as they arrive) and the response context.
 * The header fails with ERR_OHTTP_KEY_ID, ERR_OHTTP_SUITE or ERR_OHTTP_REQUEST_DECRYPT; the
 * request stream errors with ERR_OHTTP_REQUEST_DECRYPT or ERR_OHTTP_TRUNCATED.
 */
export async function decapsulateChunkedRequest(
  keys: OhttpServerKey | readonly OhttpServerKey[],
  stream: ReadableStream<Uint8Array>,
  limits: ChunkedLimits = {},
): Promise<{ request: ReadableStream<Uint8Array>; context: ChunkedServerContext }> {
  const buf = new StreamBuffer(stream.getReader());
  let ctx: HpkeRecipientContext;
  let header: OhttpRequestHeader;
  let enc: Bytes;
  try {
    if (!(await buf.fill(REQUEST_HEADER_LENGTH))) throw new HpkeError('ERR_OHTTP_TRUNCATED', 'request ended inside its header');
    header = decodeRequestHeader(buf.take(REQUEST_HEADER_LENGTH));
    // The key id is checked before anything else, so a stale client learns to refresh its keys.
    const key = findServerKey(keys, header);
    const nEnc = kemParams(key.config.kem).nEnc;
    if (!(await buf.fill(nEnc))) throw new HpkeError('ERR_OHTTP_TRUNCATED', 'request ended inside its encapsulated key');
    enc = buf.take(nEnc);
    ctx = await setupServer(key, header, enc, OhttpLabel.ChunkedRequest);
  } catch (e) {
    await buf.cancel(e);
    throw e;
  }
  const request = openStream(
    buf,
    () => Promise.resolve(),
    (ct, final) => ctx.open(ct, final ? FINAL_AAD : EMPTY),
    'ERR_OHTTP_REQUEST_DECRYPT',
    limits,
  );
  return { request, context: new ChunkedServerContext(ctx, header, enc) };
}

/**
 * Gateway: `decapsulateChunkedRequest` for a message already read whole (the gateway reads a
 * sealed request whole before it starts): the same checks, limits and errors, in one pass over
 * the bytes, without the streams. `maxPlaintext` bounds the opened request (ERR_INPUT_TOO_LARGE,
 * as a bounded read of the request stream would fail). Whatever was opened is wiped when a
 * later chunk fails.
 */
export async function decapsulateChunkedRequestBytes(
  keys: OhttpServerKey | readonly OhttpServerKey[],
  message: Uint8Array,
  limits: ChunkedLimits & { readonly maxPlaintext?: number } = {},
): Promise<{ request: Bytes; context: ChunkedServerContext }> {
  const max = limits.maxChunkSize ?? DEFAULT_MAX_CHUNK;
  const maxChunks = limits.maxChunks ?? DEFAULT_MAX_CHUNKS;
  const maxPlaintext = limits.maxPlaintext ?? Number.MAX_SAFE_INTEGER;
  const truncated = (): HpkeError => new HpkeError('ERR_OHTTP_TRUNCATED');
  if (message.length < REQUEST_HEADER_LENGTH) throw new HpkeError('ERR_OHTTP_TRUNCATED', 'request ended inside its header');
  // Copies (a Buffer's slice would be a view): the context keeps `enc`, not the caller's message.
  const header = decodeRequestHeader(new Uint8Array(message.subarray(0, REQUEST_HEADER_LENGTH)));
  // The key id is checked before anything else, so a stale client learns to refresh its keys.
  const key = findServerKey(keys, header);
  const nEnc = kemParams(key.config.kem).nEnc;
  if (message.length < REQUEST_HEADER_LENGTH + nEnc) throw new HpkeError('ERR_OHTTP_TRUNCATED', 'request ended inside its encapsulated key');
  const enc = new Uint8Array(message.subarray(REQUEST_HEADER_LENGTH, REQUEST_HEADER_LENGTH + nEnc));
  const ctx = await setupServer(key, header, enc, OhttpLabel.ChunkedRequest);
  // As a bounded read with a negative bound fails before it reads anything.
  if (maxPlaintext < 0) throw new ParseError('ERR_INPUT_TOO_LARGE', 'stream tail exceeds its size bound', { detail: { max: maxPlaintext } });
  const r = new ByteReader(message, 'chunked request', REQUEST_HEADER_LENGTH + nEnc);
  const pieces: Bytes[] = [];
  let size = 0;
  try {
    for (let chunks = 1; ; chunks++) {
      if (r.remaining === 0) throw truncated();
      let len: number;
      try {
        len = readVarint(r);
      } catch (e) {
        throw isCustodyError(e) && e.code === 'ERR_INPUT_TRUNCATED' ? truncated() : e;
      }
      checkChunk(len, chunks, max, maxChunks);
      const final = len === 0;
      if (final && r.remaining > max) throw new ParseError('ERR_INPUT_TOO_LARGE', 'stream tail exceeds its size bound', { detail: { max } });
      if (!final && r.remaining < len) throw truncated();
      const ct = r.bytesView(final ? r.remaining : len);
      let pt: Bytes;
      try {
        pt = await ctx.open(ct, final ? FINAL_AAD : EMPTY);
      } catch (e) {
        throw wrapError(e, 'ERR_OHTTP_REQUEST_DECRYPT');
      }
      size += pt.length;
      pieces.push(pt);
      if (size > maxPlaintext) throw new ParseError('ERR_INPUT_TOO_LARGE', 'stream tail exceeds its size bound', { detail: { max: maxPlaintext } });
      if (final) break;
    }
  } catch (e) {
    for (const p of pieces) p.fill(0);
    throw e;
  }
  const request = pieces.length === 1 ? pieces[0]! : joinBytes(pieces, size);
  if (pieces.length > 1) for (const p of pieces) p.fill(0);
  return { request, context: new ChunkedServerContext(ctx, header, enc) };
}
