/**
 * The default HPKE provider: WebCrypto for X25519, X448 and the NIST curves and for AES-GCM;
 * TypeScript for ChaCha20-Poly1305 (WebCrypto has none) and for HMAC-SHA256 (the key schedule
 * runs about ten HMACs over tens of bytes, and a synchronous hash is far cheaper than a
 * WebCrypto round trip each). HMAC-SHA384/512 go through WebCrypto.
 */
import { concatBytes, copyBytes, fromBase64Url, type Bytes } from '../bytes.js';
import { subtle } from '../crypto.js';
import { ChaCha20Poly1305Key, WebCryptoAesGcmKey, type AeadKey } from './aead.js';
import { AeadId, HpkeError, KemId, type AeadParams, type KdfParams, type KemParams } from './identifiers.js';
import type { HpkePrimitives, ProviderKeyPair } from './provider.js';
import { hmacSha256 } from './sha256.js';

interface Group {
  /** The WebCrypto algorithm for import, generate and deriveBits. */
  readonly alg: { name: string; namedCurve?: string };
  /** DER of a PKCS #8 PrivateKeyInfo up to the raw private key (RFC 8410 / RFC 5915, no public key). */
  readonly pkcs8Prefix: Bytes;
  /** Montgomery curves: the base point u, for computing a public key where JWK export fails. */
  readonly basePoint?: Bytes;
  /** Bits of DH output (Ndh * 8). */
  readonly dhBits: number;
}

const hex = (s: string): Bytes => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));
const uPoint = (u: number, len: number): Bytes => {
  const p = new Uint8Array(len);
  p[0] = u;
  return p;
};

const GROUPS: Readonly<Record<number, Group>> = {
  [KemId.DhkemX25519HkdfSha256]: { alg: { name: 'X25519' }, pkcs8Prefix: hex('302e020100300506032b656e04220420'), basePoint: uPoint(9, 32), dhBits: 256 },
  [KemId.DhkemX448HkdfSha512]: { alg: { name: 'X448' }, pkcs8Prefix: hex('3046020100300506032b656f043a0438'), basePoint: uPoint(5, 56), dhBits: 448 },
  [KemId.DhkemP256HkdfSha256]: { alg: { name: 'ECDH', namedCurve: 'P-256' }, pkcs8Prefix: hex('3041020100301306072a8648ce3d020106082a8648ce3d030107042730250201010420'), dhBits: 256 },
  [KemId.DhkemP384HkdfSha384]: { alg: { name: 'ECDH', namedCurve: 'P-384' }, pkcs8Prefix: hex('304e020100301006072a8648ce3d020106052b81040022043730350201010430'), dhBits: 384 },
  [KemId.DhkemP521HkdfSha512]: { alg: { name: 'ECDH', namedCurve: 'P-521' }, pkcs8Prefix: hex('3060020100301006072a8648ce3d020106052b81040023044930470201010442'), dhBits: 528 },
};

const USAGES: KeyUsage[] = ['deriveBits'];

function api(): SubtleCrypto {
  // Browsers expose crypto.subtle only in secure contexts (https, localhost).
  if ((subtle as SubtleCrypto | undefined) === undefined) throw new HpkeError('ERR_HPKE_UNSUPPORTED', 'WebCrypto is not available here (browsers offer it only in secure contexts)');
  return subtle;
}

function group(kem: KemParams): Group {
  const g = GROUPS[kem.id];
  if (!g) throw new HpkeError('ERR_HPKE_UNSUPPORTED', undefined, { detail: { kem: kem.id } });
  return g;
}

/** A DOMException NotSupportedError (X448 in Chromium, X25519 in old browsers) becomes ERR_HPKE_UNSUPPORTED. */
async function platform<T>(p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    if (e instanceof Error && e.name === 'NotSupportedError') throw new HpkeError('ERR_HPKE_UNSUPPORTED', 'this platform\'s WebCrypto lacks the algorithm', { cause: e });
    throw e;
  }
}

async function publicKeyOf(kem: KemParams, g: Group, privateKey: CryptoKey): Promise<Bytes> {
  try {
    const jwk = await api().exportKey('jwk', privateKey);
    if (g.basePoint) return fromBase64Url(jwk.x!);
    return concatBytes(Uint8Array.of(4), fromBase64Url(jwk.x!), fromBase64Url(jwk.y!));
  } catch (e) {
    // Some browsers cannot export JWK from an imported X25519 key: pk = X25519(sk, base point).
    if (!g.basePoint) throw e;
    const base = await api().importKey('raw', g.basePoint, g.alg, true, []);
    const pk = new Uint8Array(await api().deriveBits({ name: g.alg.name, public: base }, privateKey, kem.nPk * 8));
    return pk;
  }
}

function createAead(aead: AeadParams, key: Uint8Array): AeadKey {
  return aead.id === AeadId.ChaCha20Poly1305 ? new ChaCha20Poly1305Key(aead, key) : new WebCryptoAesGcmKey(aead, key);
}

async function hmacWebCrypto(kdf: KdfParams, key: Uint8Array, message: readonly Uint8Array[]): Promise<Bytes> {
  const k = await api().importKey('raw', copyBytes(key), { name: 'HMAC', hash: kdf.hash }, false, ['sign']);
  return new Uint8Array(await api().sign('HMAC', k, concatBytes(...message)));
}

export const webCryptoHpkePrimitives: HpkePrimitives = {
  name: 'webcrypto',

  async generateKeyPair(kem): Promise<ProviderKeyPair> {
    const g = group(kem);
    const pair = (await platform(api().generateKey(g.alg, true, USAGES))) as CryptoKeyPair;
    return { privateKey: pair.privateKey, publicKey: new Uint8Array(await api().exportKey('raw', pair.publicKey)) };
  },

  async importPrivateKey(kem, sk): Promise<ProviderKeyPair> {
    const g = group(kem);
    const der = concatBytes(g.pkcs8Prefix, sk);
    try {
      const privateKey = await platform(api().importKey('pkcs8', der, g.alg, true, USAGES));
      return { privateKey, publicKey: await publicKeyOf(kem, g, privateKey) };
    } finally {
      der.fill(0);
    }
  },

  async exportPrivateKey(kem, privateKey): Promise<Bytes> {
    const jwk = await api().exportKey('jwk', privateKey as CryptoKey);
    const d = fromBase64Url(jwk.d!);
    if (d.length !== kem.nSk) throw new HpkeError('ERR_HPKE_KEY', 'exported private key has the wrong length');
    return d;
  },

  importPublicKey(kem, pk): Promise<CryptoKey> {
    const g = group(kem);
    return platform(api().importKey('raw', copyBytes(pk), g.alg, true, []));
  },

  async dh(kem, privateKey, publicKey): Promise<Bytes> {
    const g = group(kem);
    return new Uint8Array(await platform(api().deriveBits({ name: g.alg.name, public: publicKey as CryptoKey }, privateKey as CryptoKey, g.dhBits)));
  },

  createAead,

  hmac(kdf, key, message) {
    return kdf.hash === 'SHA-256' ? hmacSha256(key, ...message) : hmacWebCrypto(kdf, key, message);
  },
};
