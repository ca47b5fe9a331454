/**
 * The HPKE primitives on node:crypto, synchronous: X25519, X448 and the NIST curves through
 * KeyObjects and crypto.diffieHellman, AES-GCM and ChaCha20-Poly1305 through createCipheriv,
 * HMAC through createHmac. Same results as the WebCrypto provider (both pass the RFC 9180
 * vectors through @custody/core's conformance suite), without WebCrypto's per-call cost:
 * algorithm normalisation, a CryptoKey per import and a thread-pool round trip per operation.
 *
 * Node-only, so it lives in services; install it once at startup:
 *
 *   import { installNodeHpkeProvider } from '@custody/crypto-node';
 *   installNodeHpkeProvider();   // before keys are created
 */
import {
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  diffieHellman,
  generateKeyPairSync,
  type CipherGCMTypes,
  type KeyObject,
} from 'node:crypto';
import { AeadId, HpkeError, KemId, setHpkeProvider, type AeadKey, type AeadParams, type Bytes, type HpkePrimitives, type KdfParams, type KemParams, type ProviderKeyPair } from '@custody/core';

interface Group {
  readonly kty: 'OKP' | 'EC';
  readonly crv: 'X25519' | 'X448' | 'P-256' | 'P-384' | 'P-521';
  /** OKP: DER of a PKCS #8 PrivateKeyInfo up to the raw key (RFC 8410). */
  readonly pkcs8Prefix?: Buffer;
  /** EC: the OpenSSL curve name and the coordinate length. */
  readonly curve?: string;
  readonly coord?: number;
}

const GROUPS: Readonly<Record<number, Group>> = {
  [KemId.DhkemX25519HkdfSha256]: { kty: 'OKP', crv: 'X25519', pkcs8Prefix: Buffer.from('302e020100300506032b656e04220420', 'hex') },
  [KemId.DhkemX448HkdfSha512]: { kty: 'OKP', crv: 'X448', pkcs8Prefix: Buffer.from('3046020100300506032b656f043a0438', 'hex') },
  [KemId.DhkemP256HkdfSha256]: { kty: 'EC', crv: 'P-256', curve: 'prime256v1', coord: 32 },
  [KemId.DhkemP384HkdfSha384]: { kty: 'EC', crv: 'P-384', curve: 'secp384r1', coord: 48 },
  [KemId.DhkemP521HkdfSha512]: { kty: 'EC', crv: 'P-521', curve: 'secp521r1', coord: 66 },
};

const HASHES: Readonly<Record<KdfParams['hash'], string>> = { 'SHA-256': 'sha256', 'SHA-384': 'sha384', 'SHA-512': 'sha512' };

function group(kem: KemParams): Group {
  const g = GROUPS[kem.id];
  if (!g) throw new HpkeError('ERR_HPKE_UNSUPPORTED', undefined, { detail: { kem: kem.id } });
  return g;
}

const b64url = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
const fromB64url = (s: string | undefined): Buffer => Buffer.from(s ?? '', 'base64url');

/** A fresh Uint8Array the caller owns (never a pooled Buffer view); wipes the source. */
function owned(b: Buffer): Bytes {
  const out = new Uint8Array(b);
  b.fill(0);
  return out;
}

/** SerializePublicKey from a public JWK: X25519/X448 x, or 0x04 || x || y. */
function serializePublic(g: Group, jwk: { x?: string; y?: string }): Bytes {
  if (g.kty === 'OKP') return new Uint8Array(fromB64url(jwk.x));
  const x = fromB64url(jwk.x);
  const y = fromB64url(jwk.y);
  const out = new Uint8Array(1 + 2 * g.coord!);
  out[0] = 4;
  out.set(x, 1 + g.coord! - x.length);
  out.set(y, 1 + 2 * g.coord! - y.length);
  return out;
}

function pairOf(g: Group, privateKey: KeyObject, publicKey: KeyObject): ProviderKeyPair {
  return { privateKey, publicKey: serializePublic(g, publicKey.export({ format: 'jwk' })) };
}

class NodeAeadKey implements AeadKey {
  private readonly key: KeyObject;
  private readonly cipher: CipherGCMTypes | 'chacha20-poly1305';

  constructor(
    readonly params: AeadParams,
    raw: Uint8Array,
  ) {
    this.cipher = params.id === AeadId.Aes128Gcm ? 'aes-128-gcm' : params.id === AeadId.Aes256Gcm ? 'aes-256-gcm' : 'chacha20-poly1305';
    // The KeyObject keeps its own copy of the key outside the JavaScript heap.
    this.key = createSecretKey(raw);
  }

  private checkNonce(nonce: Uint8Array): void {
    if (nonce.length !== this.params.nN) throw new HpkeError('ERR_HPKE_PARAMS', 'AEAD nonce has the wrong length', { detail: { length: nonce.length, expected: this.params.nN } });
  }

  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Promise<Bytes> {
    try {
      this.checkNonce(nonce);
      const c = createCipheriv(this.cipher as CipherGCMTypes, this.key, nonce, { authTagLength: this.params.nT });
      c.setAAD(aad);
      const body = c.update(plaintext);
      const last = c.final();
      const out = new Uint8Array(body.length + last.length + this.params.nT);
      out.set(body, 0);
      out.set(last, body.length);
      out.set(c.getAuthTag(), body.length + last.length);
      return Promise.resolve(out);
    } catch (e) {
      return Promise.reject(e instanceof HpkeError ? e : new HpkeError('ERR_HPKE_SEAL', undefined, { cause: e }));
    }
  }

  open(nonce: Uint8Array, aad: Uint8Array, ciphertext: Uint8Array): Promise<Bytes> {
    let body: Buffer | undefined;
    try {
      this.checkNonce(nonce);
      const nT = this.params.nT;
      if (ciphertext.length < nT) throw new HpkeError('ERR_HPKE_OPEN', 'ciphertext shorter than the tag', { detail: { length: ciphertext.length } });
      const d = createDecipheriv(this.cipher as CipherGCMTypes, this.key, nonce, { authTagLength: nT });
      d.setAuthTag(ciphertext.subarray(ciphertext.length - nT));
      d.setAAD(aad);
      body = d.update(ciphertext.subarray(0, ciphertext.length - nT));
      const last = d.final();
      const out = new Uint8Array(body.length + last.length);
      out.set(body, 0);
      out.set(last, body.length);
      body.fill(0);
      return Promise.resolve(out);
    } catch (e) {
      // Plaintext that did not authenticate is never returned, nor left in memory.
      body?.fill(0);
      return Promise.reject(e instanceof HpkeError ? e : new HpkeError('ERR_HPKE_OPEN', undefined, { cause: e }));
    }
  }
}

/** The HPKE primitive provider on node:crypto. */
export const nodeHpkePrimitives: HpkePrimitives = {
  name: 'node:crypto',

  generateKeyPair(kem) {
    const g = group(kem);
    const { privateKey, publicKey } = g.kty === 'EC' ? generateKeyPairSync('ec', { namedCurve: g.crv }) : g.crv === 'X25519' ? generateKeyPairSync('x25519') : generateKeyPairSync('x448');
    return pairOf(g, privateKey, publicKey);
  },

  importPrivateKey(kem, sk) {
    const g = group(kem);
    if (sk.length !== kem.nSk) throw new HpkeError('ERR_HPKE_KEY', 'private key has the wrong length');
    if (g.kty === 'OKP') {
      const der = Buffer.concat([g.pkcs8Prefix!, sk]);
      try {
        const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
        return pairOf(g, privateKey, createPublicKey(privateKey));
      } finally {
        der.fill(0);
      }
    }
    // The public point from the scalar, then a JWK import that OpenSSL checks for consistency.
    const ecdh = createECDH(g.curve!);
    ecdh.setPrivateKey(sk);
    const point = ecdh.getPublicKey();
    const c = g.coord!;
    const privateKey = createPrivateKey({ key: { kty: 'EC', crv: g.crv, d: b64url(sk), x: b64url(point.subarray(1, 1 + c)), y: b64url(point.subarray(1 + c)) }, format: 'jwk' });
    return { privateKey, publicKey: new Uint8Array(point) };
  },

  exportPrivateKey(kem, privateKey) {
    const d = fromB64url((privateKey as KeyObject).export({ format: 'jwk' }).d);
    if (d.length > kem.nSk) throw new HpkeError('ERR_HPKE_KEY', 'exported private key is too long');
    const out = new Uint8Array(kem.nSk);
    out.set(d, kem.nSk - d.length);
    d.fill(0);
    return out;
  },

  importPublicKey(kem, pk) {
    const g = group(kem);
    if (pk.length !== kem.nPk) throw new HpkeError('ERR_HPKE_KEY', 'public key has the wrong length');
    if (g.kty === 'OKP') return createPublicKey({ key: { kty: 'OKP', crv: g.crv, x: b64url(pk) }, format: 'jwk' });
    if (pk[0] !== 4) throw new HpkeError('ERR_HPKE_KEY', 'public key is not an uncompressed point');
    const c = g.coord!;
    // OpenSSL refuses coordinates that are not a point of the curve.
    return createPublicKey({ key: { kty: 'EC', crv: g.crv, x: b64url(pk.subarray(1, 1 + c)), y: b64url(pk.subarray(1 + c)) }, format: 'jwk' });
  },

  dh(_kem, privateKey, publicKey) {
    return owned(diffieHellman({ privateKey: privateKey as KeyObject, publicKey: publicKey as KeyObject }));
  },

  createAead(aead, key) {
    return new NodeAeadKey(aead, key);
  },

  hmac(kdf, key, message) {
    const h = createHmac(HASHES[kdf.hash], key);
    for (const m of message) h.update(m);
    return owned(h.digest());
  },

  sha256(data) {
    const d = createHash('sha256').update(data).digest();
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  },
};

/**
 * Makes node:crypto the process-wide HPKE provider of @custody/core and returns the previous
 * one. Call it at startup, before any HPKE key is created.
 */
export function installNodeHpkeProvider(): HpkePrimitives {
  return setHpkeProvider(nodeHpkePrimitives);
}
