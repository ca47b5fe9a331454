/**
 * The HPKE AEADs as plain keyed objects: AES-GCM through WebCrypto, ChaCha20-Poly1305 in
 * TypeScript. Used by the HPKE suites and directly by Oblivious HTTP responses, which encrypt
 * with a key derived outside the HPKE context.
 */
import type { AeadEncryptionContext, AeadInterface } from '@hpke/core';
import { copyBytes, type Bytes } from '../bytes.js';
import { subtle } from '../crypto.js';
import { chacha20Poly1305Open, chacha20Poly1305Seal } from './chacha20-poly1305.js';
import { AeadId, aeadParams, HpkeError, type AeadParams } from './identifiers.js';

/** A keyed AEAD. `open` throws ERR_HPKE_OPEN when authentication fails. */
export interface AeadKey {
  readonly params: AeadParams;
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes>;
  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes>;
}

function buf(b: Uint8Array): Bytes {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? (b as Bytes) : copyBytes(b);
}

function toBytes(b: ArrayBufferLike | ArrayBufferView): Uint8Array {
  if (ArrayBuffer.isView(b)) return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return new Uint8Array(b);
}

function checkSizes(params: AeadParams, nonce: Uint8Array): void {
  if (nonce.length !== params.nN) throw new HpkeError('ERR_HPKE_PARAMS', 'AEAD nonce has the wrong length', { detail: { length: nonce.length, expected: params.nN } });
}

class AesGcmKey implements AeadKey {
  private key: Promise<CryptoKey> | undefined;
  private raw: Bytes | undefined;

  constructor(
    readonly params: AeadParams,
    raw: Uint8Array,
  ) {
    this.raw = copyBytes(raw);
  }

  private cryptoKey(): Promise<CryptoKey> {
    if (!this.key) {
      const raw = this.raw!;
      this.key = subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']).finally(() => {
        raw.fill(0);
        this.raw = undefined;
      });
    }
    return this.key;
  }

  async seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
    checkSizes(this.params, nonce);
    const key = await this.cryptoKey();
    try {
      return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, key, buf(plaintext)));
    } catch (e) {
      throw new HpkeError('ERR_HPKE_SEAL', undefined, { cause: e });
    }
  }

  async open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
    checkSizes(this.params, nonce);
    if (ciphertext.length < this.params.nT) throw new HpkeError('ERR_HPKE_OPEN', 'ciphertext shorter than the tag', { detail: { length: ciphertext.length } });
    const key = await this.cryptoKey();
    try {
      return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, key, buf(ciphertext)));
    } catch (e) {
      throw new HpkeError('ERR_HPKE_OPEN', undefined, { cause: e });
    }
  }
}

class ChaChaKey implements AeadKey {
  private readonly key: Bytes;

  constructor(
    readonly params: AeadParams,
    raw: Uint8Array,
  ) {
    this.key = copyBytes(raw);
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
    checkSizes(this.params, nonce);
    return Promise.resolve(chacha20Poly1305Seal(this.key, nonce, aad, plaintext));
  }

  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
    checkSizes(this.params, nonce);
    const pt = chacha20Poly1305Open(this.key, nonce, aad, ciphertext);
    if (!pt) return Promise.reject(new HpkeError('ERR_HPKE_OPEN'));
    return Promise.resolve(pt);
  }
}

/** A keyed AEAD for `aeadId`; the key must be exactly Nk bytes. Export-only has no AEAD. */
export function createAeadKey(aeadId: number, key: Uint8Array): AeadKey {
  const params = aeadParams(aeadId);
  if (params.id === AeadId.ExportOnly) throw new HpkeError('ERR_HPKE_EXPORT_ONLY');
  if (key.length !== params.nK) throw new HpkeError('ERR_HPKE_KEY', 'AEAD key has the wrong length', { detail: { length: key.length, expected: params.nK } });
  return params.id === AeadId.ChaCha20Poly1305 ? new ChaChaKey(params, key) : new AesGcmKey(params, key);
}

/** Nonce for message `seq`: base_nonce XOR I2OSP(seq, Nn) (RFC 9180 section 5.2; also chunked OHTTP). */
export function xorNonce(base: Uint8Array, seq: number): Bytes {
  if (!Number.isSafeInteger(seq) || seq < 0) throw new HpkeError('ERR_HPKE_MESSAGE_LIMIT', undefined, { detail: { seq } });
  const out = copyBytes(base);
  let s = seq;
  for (let i = out.length - 1; i >= 0 && s > 0; i--) {
    out[i]! ^= s % 256;
    s = Math.floor(s / 256);
  }
  return out;
}

/** ChaCha20-Poly1305 as an @hpke/core AEAD, so the HPKE suites can use AEAD id 0x0003. */
export class ChaCha20Poly1305Aead implements AeadInterface {
  readonly id = AeadId.ChaCha20Poly1305;
  readonly keySize = 32;
  readonly nonceSize = 12;
  readonly tagSize = 16;

  createEncryptionContext(key: ArrayBufferLike | ArrayBufferView): AeadEncryptionContext {
    const k = createAeadKey(AeadId.ChaCha20Poly1305, toBytes(key));
    return {
      seal: async (iv, data, aad) => (await k.seal(toBytes(iv), toBytes(aad), toBytes(data))).buffer,
      open: async (iv, data, aad) => (await k.open(toBytes(iv), toBytes(aad), toBytes(data))).buffer,
    };
  }
}
