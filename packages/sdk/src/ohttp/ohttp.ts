/**
 * Oblivious HTTP message encapsulation (RFC 9458 sections 4.3 to 4.4), client and gateway.
 *
 * Request:  hdr = key_id(8) || kem_id(16) || kdf_id(16) || aead_id(16)
 *           info = label || 0x00 || hdr;  enc, ctx = SetupBaseS(pkR, info)
 *           enc_request = hdr || enc || ctx.Seal("", request)
 * Response: secret = ctx.Export(label, max(Nn, Nk)); response_nonce = random(max(Nn, Nk))
 *           prk = Extract(enc || response_nonce, secret)
 *           key = Expand(prk, "key", Nk); nonce = Expand(prk, "nonce", Nn)
 *           enc_response = response_nonce || Seal(key, nonce, "", response)
 */
import {
  aeadParams,
  ByteReader,
  concatBytes,
  createAeadKey,
  deserializeHpkePublicKey,
  HPKE_KEMS,
  HpkeError,
  hkdfExpand,
  hkdfExtract,
  isCustodyError,
  kemParams,
  prepareHpkeEncap,
  publicNonceRandom,
  setupHpkeRecipient,
  setupHpkeSender,
  utf8,
  type AeadKey,
  type Bytes,
  type CustodyError,
  type ErrorCode,
  type HpkeExporter,
  type HpkeKeyPair,
  type HpkePreparedEncap,
  type HpkePublicKey,
  type HpkeRecipientContext,
  type HpkeSenderContext,
  type HpkeSuiteIds,
  type RandomSource,
} from '@custody/core';
import { selectSuite, type KeyConfig, type OhttpServerKey, type OhttpSymmetricSuite } from './key-config.js';

/** The labels of RFC 9458 and draft-ietf-ohai-chunked-ohttp. */
export const OhttpLabel = {
  Request: 'message/bhttp request',
  Response: 'message/bhttp response',
  ChunkedRequest: 'message/bhttp chunked request',
  ChunkedResponse: 'message/bhttp chunked response',
} as const;

export const REQUEST_HEADER_LENGTH = 7;
/** Bound on a whole (non-chunked) encapsulated message. */
export const MAX_OHTTP_MESSAGE = 16 * 1024 * 1024;

export interface OhttpRequestHeader extends HpkeSuiteIds {
  readonly keyId: number;
}

export function encodeRequestHeader(h: OhttpRequestHeader): Bytes {
  return new Uint8Array([h.keyId, h.kem >> 8, h.kem & 0xff, h.kdf >> 8, h.kdf & 0xff, h.aead >> 8, h.aead & 0xff]);
}

/** info = label || 0x00 || hdr */
export function requestInfo(label: string, header: OhttpRequestHeader): Bytes {
  return concatBytes(utf8(label), new Uint8Array([0]), encodeRequestHeader(header));
}

/** Parses hdr || enc from the front of an encapsulated request; `offset` is where the ciphertext starts. */
export function parseRequestHeader(bytes: Uint8Array): OhttpRequestHeader & { readonly enc: Bytes; readonly offset: number } {
  const r = new ByteReader(bytes, 'encapsulated request');
  const keyId = r.u8();
  const kem = r.u16be();
  const kdf = r.u16be();
  const aead = r.u16be();
  const params = HPKE_KEMS[kem];
  if (!params) throw new HpkeError('ERR_OHTTP_SUITE', 'encapsulated request uses an unsupported KEM', { detail: { kem } });
  const enc = r.take(params.nEnc);
  return { keyId, kem, kdf, aead, enc, offset: r.offset };
}

export interface ResponseKeys {
  readonly salt: Bytes;
  readonly prk: Bytes;
  readonly key: Bytes;
  readonly nonce: Bytes;
}

/** Length of the exported secret and of the response nonce: max(Nn, Nk). */
export function responseNonceLength(aead: number): number {
  const p = aeadParams(aead);
  return Math.max(p.nN, p.nK);
}

/** The response key schedule (RFC 9458 section 4.4), exposed for conformance tests and EHBP. */
export async function deriveResponseKeys(kdf: number, aead: number, secret: Uint8Array, enc: Uint8Array, responseNonce: Uint8Array): Promise<ResponseKeys> {
  const p = aeadParams(aead);
  const salt = concatBytes(enc, responseNonce);
  const prk = await hkdfExtract(kdf, salt, secret);
  const key = await hkdfExpand(kdf, prk, utf8('key'), p.nK);
  const nonce = await hkdfExpand(kdf, prk, utf8('nonce'), p.nN);
  return { salt, prk, key, nonce };
}

/** @internal */
export function wrapError(e: unknown, code: ErrorCode): CustodyError {
  // Keep typed parse and suite errors; any cryptographic failure becomes the OHTTP code.
  if (isCustodyError(e) && (e.code.startsWith('ERR_INPUT_') || e.code === 'ERR_OHTTP_SUITE' || e.code === 'ERR_OHTTP_KEY_ID')) return e;
  return new HpkeError(code, undefined, { cause: e, ...(isCustodyError(e) ? { detail: { reason: e.code } } : {}) });
}

/** Shared by the plain and chunked variants: the response AEAD key and nonce for one exchange. */
export async function exportResponseKeys(ctx: HpkeExporter, label: string, enc: Uint8Array, responseNonce: Uint8Array): Promise<{ aead: AeadKey; nonce: Bytes }> {
  const len = responseNonceLength(ctx.suite.aead);
  if (responseNonce.length !== len) throw new HpkeError('ERR_HPKE_PARAMS', 'response nonce has the wrong length', { detail: { length: responseNonce.length, expected: len } });
  const secret = await ctx.export(utf8(label), len);
  const keys = await deriveResponseKeys(ctx.suite.kdf, ctx.suite.aead, secret, enc, responseNonce);
  const aead = createAeadKey(ctx.suite.aead, keys.key);
  // createAeadKey keeps its own copy; the intermediate secrets go now.
  secret.fill(0);
  keys.prk.fill(0);
  keys.key.fill(0);
  return { aead, nonce: keys.nonce };
}

const importedKeys = new WeakMap<KeyConfig, Promise<HpkePublicKey>>();

/** The configuration's public key, imported once per KeyConfig object. */
export function importConfigKey(config: KeyConfig): Promise<HpkePublicKey> {
  let p = importedKeys.get(config);
  if (!p) {
    p = deserializeHpkePublicKey(config.kem, config.publicKey);
    importedKeys.set(config, p);
    p.catch(() => importedKeys.delete(config));
  }
  return p;
}

export interface EncapsulateOptions {
  /** Symmetric suites the client prefers, in order; default the configuration's order. */
  readonly preferredSuites?: readonly OhttpSymmetricSuite[];
  /** Derives the ephemeral key from random bytes; default the platform generator. */
  readonly random?: RandomSource;
  /** Fixes the ephemeral key. Only for published test vectors. */
  readonly ephemeralKeyPair?: HpkeKeyPair;
  /** An encapsulation to this configuration's key made ahead of time (`prepareEncapsulation`); used once. */
  readonly prepared?: HpkePreparedEncap;
}

/**
 * The KEM half of a future request's encapsulation, made now (while the client is idle): the
 * ephemeral key and shared secret for this configuration's key, and the key schedule of the
 * kind of request expected next (`chunked`: `encapsulateChunkedRequest`, else
 * `encapsulateRequest`) with the suite `preferredSuites` selects. Pass it as `prepared` to one
 * `encapsulateRequest` or `encapsulateChunkedRequest` to this configuration; the other kind,
 * or another suite, runs its own key schedule.
 */
export async function prepareEncapsulation(config: KeyConfig, expect: { readonly chunked?: boolean; readonly preferredSuites?: readonly OhttpSymmetricSuite[] } = {}): Promise<HpkePreparedEncap> {
  const suite = selectSuite(config, expect.preferredSuites);
  const header: OhttpRequestHeader = { keyId: config.keyId, kem: suite.kem, kdf: suite.kdf, aead: suite.aead };
  const info = requestInfo(expect.chunked ? OhttpLabel.ChunkedRequest : OhttpLabel.Request, header);
  return prepareHpkeEncap({ kem: config.kem, recipientPublicKey: await importConfigKey(config), expect: { suite, info } });
}

/** The client's half of an exchange: opens the matching response. */
export class OhttpClientContext {
  /** @internal */
  constructor(
    private readonly ctx: HpkeSenderContext,
    readonly header: OhttpRequestHeader,
  ) {}

  get enc(): Bytes {
    return this.ctx.enc;
  }

  /** Opens message/ohttp-res bytes; ERR_OHTTP_RESPONSE_DECRYPT when they do not authenticate. */
  async decapsulateResponse(encapsulatedResponse: Uint8Array): Promise<Bytes> {
    const n = responseNonceLength(this.header.aead);
    if (encapsulatedResponse.length > MAX_OHTTP_MESSAGE) throw new HpkeError('ERR_INPUT_TOO_LARGE', 'encapsulated response too large', { detail: { max: MAX_OHTTP_MESSAGE } });
    if (encapsulatedResponse.length < n) throw new HpkeError('ERR_INPUT_TRUNCATED', 'encapsulated response shorter than its nonce', { detail: { length: encapsulatedResponse.length } });
    try {
      const keys = await exportResponseKeys(this.ctx, OhttpLabel.Response, this.ctx.enc, encapsulatedResponse.subarray(0, n));
      return await keys.aead.open(keys.nonce, new Uint8Array(0), encapsulatedResponse.subarray(n));
    } catch (e) {
      throw wrapError(e, 'ERR_OHTTP_RESPONSE_DECRYPT');
    }
  }

  /** The HPKE exporter, for the chunked variant and for protocols layered on OHTTP. */
  get exporter(): HpkeExporter {
    return this.ctx;
  }
}

/** @internal also used by the chunked client */
export async function setupClient(config: KeyConfig, label: string, options: EncapsulateOptions): Promise<{ ctx: HpkeSenderContext; header: OhttpRequestHeader; hdr: Bytes }> {
  const suite = selectSuite(config, options.preferredSuites);
  const header: OhttpRequestHeader = { keyId: config.keyId, kem: suite.kem, kdf: suite.kdf, aead: suite.aead };
  const ctx = await setupHpkeSender({
    suite,
    recipientPublicKey: await importConfigKey(config),
    info: requestInfo(label, header),
    ...(options.random ? { random: options.random } : {}),
    ...(options.ephemeralKeyPair ? { ephemeralKeyPair: options.ephemeralKeyPair } : {}),
    ...(options.prepared ? { prepared: options.prepared } : {}),
  });
  return { ctx, header, hdr: encodeRequestHeader(header) };
}

/** Client: encapsulates a binary HTTP request (message/ohttp-req) to a key configuration. */
export async function encapsulateRequest(config: KeyConfig, request: Uint8Array, options: EncapsulateOptions = {}): Promise<{ encapsulatedRequest: Bytes; context: OhttpClientContext }> {
  const { ctx, header, hdr } = await setupClient(config, OhttpLabel.Request, options);
  const ct = await ctx.seal(request);
  return { encapsulatedRequest: concatBytes(hdr, ctx.enc, ct), context: new OhttpClientContext(ctx, header) };
}

/** A response nonce and the keys derived from it, made before the response is known. */
export interface PreparedResponse {
  readonly nonce: Bytes;
  readonly keys: { readonly aead: AeadKey; readonly nonce: Bytes };
}

/** @internal A response nonce from `random` and the response keys for it (both server contexts). */
export async function drawResponseKeys(ctx: HpkeExporter, label: string, enc: Uint8Array, aead: number, random: RandomSource): Promise<PreparedResponse> {
  const nonce = random(responseNonceLength(aead));
  return { nonce, keys: await exportResponseKeys(ctx, label, enc, nonce) };
}

/** The gateway's half of an exchange: seals the response to the client. */
export class OhttpServerContext {
  private prepared: Promise<PreparedResponse> | undefined;
  /** Set once a response is sealed: nothing more is prepared. */
  private sealed = false;

  /** @internal */
  constructor(
    private readonly ctx: HpkeRecipientContext,
    readonly header: OhttpRequestHeader,
    readonly enc: Bytes,
  ) {}

  /**
   * Draws the response nonce (from the secure generator, through the pool of public nonces,
   * `publicNonceRandom`) and derives the response keys now, so
   * that `encapsulateResponse` only seals: the gateway calls it while the model works. Does
   * nothing once a response is sealed or already prepared.
   */
  prepareResponse(): void {
    if (this.sealed || this.prepared) return;
    this.prepared = this.responseKeys(publicNonceRandom);
    // A failure here surfaces when the response is sealed (the same derivation, so the same error).
    this.prepared.catch(() => undefined);
  }

  private responseKeys(random: RandomSource): Promise<PreparedResponse> {
    return drawResponseKeys(this.ctx, OhttpLabel.Response, this.enc, this.header.aead, random);
  }

  /**
   * Seals message/ohttp-res bytes; `random` supplies the response nonce (default secure, or what
   * `prepareResponse` drew; a `random` given here wins over a prepared nonce).
   */
  async encapsulateResponse(response: Uint8Array, options: { readonly random?: RandomSource } = {}): Promise<Bytes> {
    const prepared = options.random ? undefined : this.prepared;
    this.prepared = undefined;
    this.sealed = true;
    const { nonce, keys } = await (prepared ?? this.responseKeys(options.random ?? publicNonceRandom));
    const ct = await keys.aead.seal(keys.nonce, new Uint8Array(0), response);
    return concatBytes(nonce, ct);
  }

  get exporter(): HpkeExporter {
    return this.ctx;
  }
}

/**
 * Finds the key and checks the suite for an encapsulated request header.
 * ERR_OHTTP_KEY_ID when no key has that id (the client should refresh its configuration);
 * ERR_OHTTP_SUITE when the key does not offer that KEM, KDF and AEAD.
 */
export function findServerKey(keys: OhttpServerKey | readonly OhttpServerKey[], header: OhttpRequestHeader): OhttpServerKey {
  const list: readonly OhttpServerKey[] = Array.isArray(keys) ? keys : [keys as OhttpServerKey];
  const key = list.find((k) => k.config.keyId === header.keyId);
  if (!key) throw new HpkeError('ERR_OHTTP_KEY_ID', undefined, { detail: { keyId: header.keyId } });
  const offered = key.config.kem === header.kem && key.config.suites.some((s) => s.kdf === header.kdf && s.aead === header.aead);
  if (!offered) throw new HpkeError('ERR_OHTTP_SUITE', 'the request uses a suite the key does not offer', { detail: { keyId: header.keyId, kem: header.kem, kdf: header.kdf, aead: header.aead } });
  return key;
}

/** Decodes the 7-byte request header (key id and suite ids). */
export function decodeRequestHeader(hdr: Uint8Array): OhttpRequestHeader {
  const r = new ByteReader(hdr, 'encapsulated request header');
  return { keyId: r.u8(), kem: r.u16be(), kdf: r.u16be(), aead: r.u16be() };
}

/** @internal also used by the chunked gateway */
export async function setupServer(key: OhttpServerKey, header: OhttpRequestHeader, enc: Bytes, label: string): Promise<HpkeRecipientContext> {
  try {
    return await setupHpkeRecipient({ suite: header, recipientKeyPair: key.keyPair, enc, info: requestInfo(label, header) });
  } catch (e) {
    throw wrapError(e, 'ERR_OHTTP_REQUEST_DECRYPT');
  }
}

/** Gateway: opens message/ohttp-req bytes with one of its keys. */
export async function decapsulateRequest(
  keys: OhttpServerKey | readonly OhttpServerKey[],
  encapsulatedRequest: Uint8Array,
): Promise<{ request: Bytes; context: OhttpServerContext }> {
  if (encapsulatedRequest.length > MAX_OHTTP_MESSAGE) throw new HpkeError('ERR_INPUT_TOO_LARGE', 'encapsulated request too large', { detail: { max: MAX_OHTTP_MESSAGE } });
  // The key id is checked before anything else, so a stale client learns to refresh its keys.
  const header = decodeRequestHeader(encapsulatedRequest.subarray(0, REQUEST_HEADER_LENGTH));
  const key = findServerKey(keys, header);
  const r = new ByteReader(encapsulatedRequest, 'encapsulated request', REQUEST_HEADER_LENGTH);
  const enc = r.take(kemParams(key.config.kem).nEnc);
  const ctx = await setupServer(key, header, enc, OhttpLabel.Request);
  try {
    const request = await ctx.open(encapsulatedRequest.subarray(r.offset));
    return { request, context: new OhttpServerContext(ctx, header, enc) };
  } catch (e) {
    throw wrapError(e, 'ERR_OHTTP_REQUEST_DECRYPT');
  }
}
