/**
 * Builds @hpke/core cipher suites from registry ids and maps its exceptions to Custody codes.
 * Nothing above this file touches @hpke/core types.
 */
import {
  Aes128Gcm,
  Aes256Gcm,
  CipherSuite,
  DecapError,
  DeriveKeyPairError,
  DeserializeError,
  DhkemP256HkdfSha256,
  DhkemP384HkdfSha384,
  DhkemP521HkdfSha512,
  DhkemX25519HkdfSha256,
  DhkemX448HkdfSha512,
  EncapError,
  ExportError,
  ExportOnly,
  InvalidParamError,
  MessageLimitReachedError,
  NotSupportedError,
  OpenError,
  SealError,
  SerializeError,
  ValidationError,
  type AeadInterface,
  type KdfInterface,
  type KemInterface,
} from '@hpke/core';
import { concatBytes } from '../bytes.js';
import { CustodyError, type ErrorCode } from '../errors.js';
import { ChaCha20Poly1305Aead } from './aead.js';
import { hkdfExpandWith, hkdfExtractWith } from './hkdf.js';
import { AeadId, aeadParams, HpkeError, KdfId, kdfParams, KemId, kemParams, type AeadParams, type HpkeSuiteIds, type KdfParams, type KemParams } from './identifiers.js';

const HPKE_V1 = new Uint8Array([0x48, 0x50, 0x4b, 0x45, 0x2d, 0x76, 0x31]); // "HPKE-v1"

function bytesOf(b: ArrayBufferLike | ArrayBufferView): Uint8Array {
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return new Uint8Array(b);
}

function arrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.byteOffset === 0 && b.byteLength === b.buffer.byteLength && b.buffer instanceof ArrayBuffer ? b.buffer : b.slice().buffer;
}

/**
 * The HPKE KDF (RFC 9180 section 4) over hkdf.ts. Replaces @hpke/core's HKDF classes for two
 * reasons: they write the LabeledExpand length as [0, L], wrong for L > 255 (exports may be up
 * to 255 * Nh bytes), and they make each HMAC an asynchronous WebCrypto call, which dominates
 * the cost of a message; HKDF-SHA256 here hashes synchronously.
 */
export class HpkeKdf implements KdfInterface {
  readonly id: KdfInterface['id'];
  readonly hashSize: number;
  private suiteId: Uint8Array = new Uint8Array(0);

  constructor(private readonly params: KdfParams) {
    this.id = params.id;
    this.hashSize = params.nH;
  }

  init(suiteId: Uint8Array): void {
    this.suiteId = suiteId.slice();
  }

  buildLabeledIkm(label: Uint8Array, ikm: Uint8Array): Uint8Array {
    return concatBytes(HPKE_V1, this.suiteId, label, ikm);
  }

  buildLabeledInfo(label: Uint8Array, info: Uint8Array, len: number): Uint8Array {
    return concatBytes(new Uint8Array([(len >>> 8) & 0xff, len & 0xff]), HPKE_V1, this.suiteId, label, info);
  }

  async extract(salt: ArrayBufferLike | ArrayBufferView, ikm: ArrayBufferLike | ArrayBufferView): Promise<ArrayBuffer> {
    return arrayBuffer(await hkdfExtractWith(this.params, bytesOf(salt), bytesOf(ikm)));
  }

  async expand(prk: ArrayBufferLike | ArrayBufferView, info: ArrayBufferLike | ArrayBufferView, len: number): Promise<ArrayBuffer> {
    return arrayBuffer(await hkdfExpandWith(this.params, bytesOf(prk), len, bytesOf(info)));
  }

  async extractAndExpand(salt: ArrayBufferLike | ArrayBufferView, ikm: ArrayBufferLike | ArrayBufferView, info: ArrayBufferLike | ArrayBufferView, len: number): Promise<ArrayBuffer> {
    const prk = await hkdfExtractWith(this.params, bytesOf(salt), bytesOf(ikm));
    const out = await hkdfExpandWith(this.params, prk, len, bytesOf(info));
    prk.fill(0);
    return arrayBuffer(out);
  }

  labeledExtract(salt: ArrayBufferLike | ArrayBufferView, label: Uint8Array, ikm: Uint8Array): Promise<ArrayBuffer> {
    return this.extract(salt, this.buildLabeledIkm(label, ikm));
  }

  labeledExpand(prk: ArrayBufferLike | ArrayBufferView, label: Uint8Array, info: Uint8Array, len: number): Promise<ArrayBuffer> {
    return this.expand(prk, this.buildLabeledInfo(label, info, len), len);
  }
}

/** suite_id of a KEM: "KEM" || I2OSP(kem_id, 2). */
function kemSuiteId(id: number): Uint8Array {
  return new Uint8Array([0x4b, 0x45, 0x4d, id >> 8, id & 0xff]);
}

/* The DHKEMs over HKDF-SHA256 derive their shared secret with HpkeKdf too (synchronous HMAC). */
class DhkemX25519 extends DhkemX25519HkdfSha256 {
  constructor() {
    super();
    const kdf = new HpkeKdf(kdfParams(KdfId.HkdfSha256));
    kdf.init(kemSuiteId(KemId.DhkemX25519HkdfSha256));
    this._kdf = kdf;
  }
}
class DhkemP256 extends DhkemP256HkdfSha256 {
  constructor() {
    super();
    const kdf = new HpkeKdf(kdfParams(KdfId.HkdfSha256));
    kdf.init(kemSuiteId(KemId.DhkemP256HkdfSha256));
    this._kdf = kdf;
  }
}

export function createKem(id: number): KemInterface {
  switch (kemParams(id).id) {
    case KemId.DhkemP256HkdfSha256:
      return new DhkemP256();
    case KemId.DhkemP384HkdfSha384:
      return new DhkemP384HkdfSha384();
    case KemId.DhkemP521HkdfSha512:
      return new DhkemP521HkdfSha512();
    case KemId.DhkemX25519HkdfSha256:
      return new DhkemX25519();
    case KemId.DhkemX448HkdfSha512:
      return new DhkemX448HkdfSha512();
  }
}

function createKdf(id: number): KdfInterface {
  return new HpkeKdf(kdfParams(id));
}

function createAead(id: number): AeadInterface {
  switch (aeadParams(id).id) {
    case AeadId.Aes128Gcm:
      return new Aes128Gcm();
    case AeadId.Aes256Gcm:
      return new Aes256Gcm();
    case AeadId.ChaCha20Poly1305:
      return new ChaCha20Poly1305Aead();
    case AeadId.ExportOnly:
      return new ExportOnly();
  }
}

/** A resolved suite: its ids, sizes and the @hpke/core object that runs it. */
export interface ResolvedSuite {
  readonly ids: HpkeSuiteIds;
  readonly kem: KemParams;
  readonly kdf: KdfParams;
  readonly aead: AeadParams;
  readonly impl: CipherSuite;
}

const suites = new Map<number, ResolvedSuite>();
const kems = new Map<number, KemInterface>();

function assertWebCrypto(): void {
  // Browsers expose crypto.subtle only in secure contexts (https, localhost).
  if ((globalThis.crypto as Crypto | undefined)?.subtle === undefined) {
    throw new HpkeError('ERR_HPKE_UNSUPPORTED', 'WebCrypto is not available here (browsers offer it only in secure contexts)');
  }
}

/** Resolves a suite once and caches it; throws ERR_HPKE_UNSUPPORTED for unknown ids. */
export function resolveSuite(ids: HpkeSuiteIds): ResolvedSuite {
  assertWebCrypto();
  const key = ids.kem * 2 ** 32 + ids.kdf * 2 ** 16 + ids.aead;
  let s = suites.get(key);
  if (!s) {
    const kem = kemParams(ids.kem);
    const kdf = kdfParams(ids.kdf);
    const aead = aeadParams(ids.aead);
    const impl = new CipherSuite({ kem: createKem(kem.id), kdf: createKdf(kdf.id), aead: createAead(aead.id) });
    s = { ids: { kem: kem.id, kdf: kdf.id, aead: aead.id }, kem, kdf, aead, impl };
    suites.set(key, s);
  }
  return s;
}

/** The cached KEM object for key operations that do not need a full suite. */
export function resolveKem(id: number): KemInterface {
  assertWebCrypto();
  let k = kems.get(id);
  if (!k) {
    k = createKem(id);
    kems.set(id, k);
  }
  return k;
}

/** Maps an @hpke/core or WebCrypto exception to a typed HpkeError; CustodyErrors pass through. */
export function mapHpkeError(e: unknown, fallback: ErrorCode): CustodyError {
  if (e instanceof CustodyError) return e;
  let code: ErrorCode = fallback;
  if (e instanceof OpenError) code = 'ERR_HPKE_OPEN';
  else if (e instanceof SealError) code = 'ERR_HPKE_SEAL';
  else if (e instanceof DecapError) code = 'ERR_HPKE_DECAP';
  else if (e instanceof EncapError) code = 'ERR_HPKE_ENCAP';
  else if (e instanceof DeserializeError || e instanceof SerializeError || e instanceof DeriveKeyPairError || e instanceof ValidationError) code = fallback === 'ERR_HPKE_DECAP' ? 'ERR_HPKE_DECAP' : 'ERR_HPKE_KEY';
  else if (e instanceof InvalidParamError || e instanceof ExportError) code = 'ERR_HPKE_PARAMS';
  else if (e instanceof MessageLimitReachedError) code = 'ERR_HPKE_MESSAGE_LIMIT';
  else if (e instanceof NotSupportedError) code = 'ERR_HPKE_UNSUPPORTED';
  const thrown = e instanceof Error ? e.name : 'unknown';
  return new HpkeError(code, undefined, { cause: e, detail: { thrown } });
}
