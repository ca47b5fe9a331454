/**
 * The HPKE AEADs as plain keyed objects (the providers create them): AES-GCM through
 * WebCrypto, ChaCha20-Poly1305 in TypeScript. Used by the HPKE contexts and directly by
 * Oblivious HTTP responses, which encrypt with a key derived outside the HPKE context.
 */
import { copyBytes, type Bytes } from '../bytes.js';
import { subtle } from '../crypto.js';
import { chacha20Poly1305Open, chacha20Poly1305Seal } from './chacha20-poly1305.js';
import { HpkeError, type AeadParams } from './identifiers.js';

/** A keyed AEAD. `open` rejects with ERR_HPKE_OPEN when authentication fails. */
export interface AeadKey {
  readonly params: AeadParams;
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes>;
  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes>;
}

function buf(b: Uint8Array): Bytes {
  return b.buffer instanceof ArrayBuffer && b.byteOffset === 0 && b.byteLength === b.buffer.byteLength ? (b as Bytes) : copyBytes(b);
}

/** ERR_HPKE_PARAMS unless the nonce is Nn bytes; ERR_HPKE_OPEN for a ciphertext shorter than the tag. */
export function checkAeadInput(params: AeadParams, nonce: Uint8Array, ciphertext?: Uint8Array): void {
  if (nonce.length !== params.nN) throw new HpkeError('ERR_HPKE_PARAMS', 'AEAD nonce has the wrong length', { detail: { length: nonce.length, expected: params.nN } });
  if (ciphertext && ciphertext.length < params.nT) throw new HpkeError('ERR_HPKE_OPEN', 'ciphertext shorter than the tag', { detail: { length: ciphertext.length } });
}

/** AES-GCM on WebCrypto; the raw key is imported on first use and then wiped. */
export class WebCryptoAesGcmKey implements AeadKey {
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
    checkAeadInput(this.params, nonce);
    try {
      const key = await this.cryptoKey();
      return new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, key, buf(plaintext)));
    } catch (e) {
      throw new HpkeError('ERR_HPKE_SEAL', undefined, { cause: e });
    }
  }

  async open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
    checkAeadInput(this.params, nonce, ciphertext);
    const key = await this.cryptoKey();
    try {
      return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: buf(nonce), additionalData: buf(aad), tagLength: 128 }, key, buf(ciphertext)));
    } catch (e) {
      throw new HpkeError('ERR_HPKE_OPEN', undefined, { cause: e });
    }
  }
}

/** ChaCha20-Poly1305 (RFC 8439) in TypeScript: WebCrypto has none. */
export class ChaCha20Poly1305Key implements AeadKey {
  private readonly key: Bytes;

  constructor(
    readonly params: AeadParams,
    raw: Uint8Array,
  ) {
    this.key = copyBytes(raw);
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
    try {
      checkAeadInput(this.params, nonce);
      return Promise.resolve(chacha20Poly1305Seal(this.key, nonce, aad, plaintext));
    } catch (e) {
      return Promise.reject(e instanceof HpkeError ? e : new HpkeError('ERR_HPKE_SEAL', undefined, { cause: e }));
    }
  }

  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
    try {
      checkAeadInput(this.params, nonce, ciphertext);
      const pt = chacha20Poly1305Open(this.key, nonce, aad, ciphertext);
      return pt ? Promise.resolve(pt) : Promise.reject(new HpkeError('ERR_HPKE_OPEN'));
    } catch (e) {
      return Promise.reject(e instanceof HpkeError ? e : new HpkeError('ERR_HPKE_OPEN', undefined, { cause: e }));
    }
  }
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
