/**
 * HKDF (RFC 5869) over a provider's HMAC, with salts of any length: Oblivious HTTP needs that
 * because its response salt is enc || response_nonce, longer than the hash output. Also the
 * labeled forms of RFC 9180 section 4.
 */
import { concatBytes, utf8, type Bytes } from '../bytes.js';
import { HpkeError, kdfParams, type KdfParams } from './identifiers.js';
import { getHpkeProvider, type HpkePrimitives, type MaybePromise } from './provider.js';

/** HKDF-Extract(salt, IKM); an empty salt means Nh zero bytes; `ikm` may come in parts. */
export function hkdfExtractWith(provider: HpkePrimitives, kdf: KdfParams, salt: Uint8Array, ...ikm: Uint8Array[]): MaybePromise<Bytes> {
  return provider.hmac(kdf, salt.length === 0 ? new Uint8Array(kdf.nH) : salt, ikm);
}

/** HKDF-Expand(PRK, info, L) for 0 <= L <= 255 * Nh; `info` may come in parts. */
export async function hkdfExpandWith(provider: HpkePrimitives, kdf: KdfParams, prk: Uint8Array, length: number, ...info: Uint8Array[]): Promise<Bytes> {
  if (!Number.isInteger(length) || length < 0 || length > 255 * kdf.nH) {
    throw new HpkeError('ERR_HPKE_PARAMS', 'HKDF-Expand length out of range', { detail: { length, max: 255 * kdf.nH } });
  }
  const counter = new Uint8Array(1);
  if (length <= kdf.nH) {
    // One block (every key, nonce and secret HPKE and OHTTP derive): T(1) = HMAC(PRK, info || 0x01).
    if (length === 0) return new Uint8Array(0);
    counter[0] = 1;
    const t = await provider.hmac(kdf, prk, [...info, counter]);
    if (t.length === length) return t;
    const out = t.slice(0, length);
    t.fill(0);
    return out;
  }
  const out = new Uint8Array(length);
  let t: Uint8Array = new Uint8Array(0);
  for (let i = 1, off = 0; off < length; i++) {
    // T(i) = HMAC(PRK, T(i-1) || info || i)
    counter[0] = i;
    const next = await provider.hmac(kdf, prk, [t, ...info, counter]);
    t.fill(0);
    t = next;
    out.set(t.subarray(0, Math.min(t.length, length - off)), off);
    off += t.length;
  }
  t.fill(0);
  return out;
}

export async function hkdfExtract(kdfId: number, salt: Uint8Array, ikm: Uint8Array, provider: HpkePrimitives = getHpkeProvider()): Promise<Bytes> {
  return hkdfExtractWith(provider, kdfParams(kdfId), salt, ikm);
}

export function hkdfExpand(kdfId: number, prk: Uint8Array, info: Uint8Array, length: number, provider: HpkePrimitives = getHpkeProvider()): Promise<Bytes> {
  return hkdfExpandWith(provider, kdfParams(kdfId), prk, length, info);
}

const HPKE_V1 = utf8('HPKE-v1');

/** LabeledExtract and LabeledExpand (RFC 9180 section 4) under one suite_id. */
export class LabeledKdf {
  constructor(
    readonly provider: HpkePrimitives,
    readonly kdf: KdfParams,
    readonly suiteId: Uint8Array,
  ) {}

  /** Extract(salt, "HPKE-v1" || suite_id || label || ikm) */
  extract(salt: Uint8Array, label: Uint8Array, ikm: Uint8Array): MaybePromise<Bytes> {
    return hkdfExtractWith(this.provider, this.kdf, salt, HPKE_V1, this.suiteId, label, ikm);
  }

  /** Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L) */
  expand(prk: Uint8Array, label: Uint8Array, info: Uint8Array, length: number): Promise<Bytes> {
    return hkdfExpandWith(this.provider, this.kdf, prk, length, Uint8Array.of((length >>> 8) & 0xff, length & 0xff), HPKE_V1, this.suiteId, label, info);
  }
}

/** suite_id = "KEM" || I2OSP(kem_id, 2) */
export function kemSuiteId(kem: number): Bytes {
  return Uint8Array.of(0x4b, 0x45, 0x4d, kem >> 8, kem & 0xff);
}

/** suite_id = "HPKE" || I2OSP(kem_id, 2) || I2OSP(kdf_id, 2) || I2OSP(aead_id, 2) */
export function hpkeSuiteId(kem: number, kdf: number, aead: number): Bytes {
  return concatBytes(utf8('HPKE'), Uint8Array.of(kem >> 8, kem & 0xff, kdf >> 8, kdf & 0xff, aead >> 8, aead & 0xff));
}
