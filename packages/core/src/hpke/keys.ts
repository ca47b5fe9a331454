/**
 * KEM keys (RFC 9180 section 7.1): generation, DeriveKeyPair and (de)serialisation on a
 * provider. A private key is an opaque value; the handle the provider made for it stays in
 * this module, so a key pair can be logged or serialised as JSON without revealing anything.
 */
import { copyBytes, utf8, type Bytes } from '../bytes.js';
import { CustodyError, type ErrorCode } from '../errors.js';
import { LabeledKdf, kemSuiteId } from './hkdf.js';
import { HpkeError, KdfId, kdfParams, KemId, kemParams, type KemParams } from './identifiers.js';
import { getHpkeProvider, type HpkePrimitives, type MaybePromise, type ProviderKeyPair } from './provider.js';
import { mapHpkeError } from './suite.js';

/** A KEM public key: its serialised form (SerializePublicKey), validated for its KEM. */
export interface HpkePublicKey {
  readonly kem: KemId;
  readonly bytes: Bytes;
}

/** A KEM private key. Opaque: the key material stays with the provider that holds it. */
export interface HpkePrivateKey {
  readonly kem: KemId;
  /** The name of the provider holding the key. */
  readonly provider: string;
}

/** A KEM key pair. Serialise the private key only to store it sealed. */
export interface HpkeKeyPair {
  readonly kem: KemId;
  readonly publicKey: HpkePublicKey;
  readonly privateKey: HpkePrivateKey;
}

export interface HpkeKeyOptions {
  /** The provider that creates or imports the key; default the process-wide one. */
  readonly provider?: HpkePrimitives;
}

interface PrivateEntry {
  readonly provider: HpkePrimitives;
  readonly handle: unknown;
  /** The same key imported into other providers, on first use there. */
  foreign?: Map<HpkePrimitives, Promise<unknown>>;
}

interface PublicEntry {
  readonly provider: HpkePrimitives;
  readonly pending: Promise<unknown>;
  ready: boolean;
  handle?: unknown;
}

const privateKeys = new WeakMap<HpkePrivateKey, PrivateEntry>();
const publicKeys = new WeakMap<HpkePublicKey, PublicEntry>();

/** The KDF each DHKEM uses for its own key derivation (RFC 9180 section 7.1). */
const KEM_KDF: Readonly<Record<number, number>> = {
  [KemId.DhkemP256HkdfSha256]: KdfId.HkdfSha256,
  [KemId.DhkemP384HkdfSha384]: KdfId.HkdfSha384,
  [KemId.DhkemP521HkdfSha512]: KdfId.HkdfSha512,
  [KemId.DhkemX25519HkdfSha256]: KdfId.HkdfSha256,
  [KemId.DhkemX448HkdfSha512]: KdfId.HkdfSha512,
};

const hex = (s: string): Bytes => Uint8Array.from(s.match(/../g)!.map((b) => parseInt(b, 16)));

/** NIST curves: the group order n and the DeriveKeyPair bitmask (RFC 9180 section 7.1.3). */
const NIST: Readonly<Record<number, { order: Bytes; bitmask: number }>> = {
  [KemId.DhkemP256HkdfSha256]: { order: hex('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551'), bitmask: 0xff },
  [KemId.DhkemP384HkdfSha384]: { order: hex('ffffffffffffffffffffffffffffffffffffffffffffffffc7634d81f4372ddf581a0db248b0a77aecec196accc52973'), bitmask: 0xff },
  [KemId.DhkemP521HkdfSha512]: {
    order: hex('01ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffa51868783bf2f966b7fcc0148f709a5d03bb5c9b8899c47aebb6fb71e91386409'),
    bitmask: 0x01,
  },
};

const LABEL_DKP_PRK = utf8('dkp_prk');
const LABEL_SK = utf8('sk');
const LABEL_CANDIDATE = utf8('candidate');

/** The labelled KDF of a KEM: its hash, suite_id "KEM" || kem_id. */
export function kemKdf(provider: HpkePrimitives, kem: KemParams): LabeledKdf {
  return new LabeledKdf(provider, kdfParams(KEM_KDF[kem.id]!), kemSuiteId(kem.id));
}

/** 1 <= sk < n for a big-endian scalar of the order's length, without data-dependent branches. */
function scalarInRange(sk: Uint8Array, order: Uint8Array): boolean {
  let lt = 0;
  let gt = 0;
  let nonZero = 0;
  for (let i = 0; i < order.length; i++) {
    const a = sk[i]!;
    const b = order[i]!;
    const undecided = 1 ^ (lt | gt);
    lt |= undecided & ((a - b) >>> 31);
    gt |= undecided & ((b - a) >>> 31);
    nonZero |= a;
  }
  return lt === 1 && nonZero !== 0;
}

/** Wraps a provider's key pair in the opaque public types. @internal */
export function keyPairOf(provider: HpkePrimitives, kem: KemParams, pair: ProviderKeyPair): HpkeKeyPair {
  if (pair.publicKey.length !== kem.nPk) throw new HpkeError('ERR_HPKE_KEY', 'provider returned a public key of the wrong length');
  const privateKey: HpkePrivateKey = Object.freeze({ kem: kem.id, provider: provider.name });
  privateKeys.set(privateKey, { provider, handle: pair.privateKey });
  const publicKey: HpkePublicKey = Object.freeze({ kem: kem.id, bytes: copyBytes(pair.publicKey) });
  return Object.freeze({ kem: kem.id, publicKey, privateKey });
}

/** The provider's handle for a private key, importing it there once when another provider made it. @internal */
export function privateKeyHandle(key: HpkePrivateKey, provider: HpkePrimitives): MaybePromise<unknown> {
  const entry = privateKeys.get(key);
  if (!entry) return Promise.reject(new HpkeError('ERR_HPKE_KEY', 'not a private key made by this module'));
  if (entry.provider === provider) return entry.handle;
  entry.foreign ??= new Map();
  let p = entry.foreign.get(provider);
  if (!p) {
    const kem = kemParams(key.kem);
    p = (async () => {
      const sk = await entry.provider.exportPrivateKey(kem, entry.handle);
      try {
        return (await provider.importPrivateKey(kem, sk)).privateKey;
      } finally {
        sk.fill(0);
      }
    })();
    entry.foreign.set(provider, p);
    p.catch(() => entry.foreign?.delete(provider));
  }
  return p;
}

/** The provider's handle for a public key, imported (and so validated) once per provider. @internal */
export function publicKeyHandle(pk: HpkePublicKey, provider: HpkePrimitives): MaybePromise<unknown> {
  const entry = publicKeys.get(pk);
  if (entry && entry.provider === provider) return entry.ready ? entry.handle : entry.pending;
  const kem = kemParams(pk.kem);
  const pending = (async () => {
    if (pk.bytes.length !== kem.nPk) throw new HpkeError('ERR_HPKE_KEY', 'public key has the wrong length', { detail: { length: pk.bytes.length, expected: kem.nPk } });
    try {
      return await provider.importPublicKey(kem, pk.bytes);
    } catch (e) {
      throw keyError(e, 'ERR_HPKE_KEY');
    }
  })();
  const fresh: PublicEntry = { provider, pending, ready: false };
  publicKeys.set(pk, fresh);
  pending.then(
    (h) => {
      fresh.handle = h;
      fresh.ready = true;
    },
    () => {
      if (publicKeys.get(pk) === fresh) publicKeys.delete(pk);
    },
  );
  return pending;
}

/** Keeps ERR_HPKE_UNSUPPORTED (and `code` itself) from a provider; any other failure becomes `code`. @internal */
export function keyError(e: unknown, code: ErrorCode): CustodyError {
  if (e instanceof CustodyError && (e.code === 'ERR_HPKE_UNSUPPORTED' || e.code === code)) return e;
  return new HpkeError(code, undefined, { cause: e, detail: { thrown: e instanceof Error ? e.name : 'unknown' } });
}

/** DeriveKeyPair(ikm) on a provider (RFC 9180 section 7.1.3). @internal */
export async function deriveProviderKeyPair(provider: HpkePrimitives, kem: KemParams, ikm: Uint8Array): Promise<ProviderKeyPair> {
  const kdf = kemKdf(provider, kem);
  const dkpPrk = await kdf.extract(new Uint8Array(0), LABEL_DKP_PRK, ikm);
  try {
    const nist = NIST[kem.id];
    if (!nist) {
      const sk = await kdf.expand(dkpPrk, LABEL_SK, new Uint8Array(0), kem.nSk);
      try {
        return await provider.importPrivateKey(kem, sk);
      } finally {
        sk.fill(0);
      }
    }
    for (let counter = 0; counter < 256; counter++) {
      const candidate = await kdf.expand(dkpPrk, LABEL_CANDIDATE, Uint8Array.of(counter), kem.nSk);
      try {
        candidate[0]! &= nist.bitmask;
        if (scalarInRange(candidate, nist.order)) return await provider.importPrivateKey(kem, candidate);
      } finally {
        candidate.fill(0);
      }
    }
    throw new HpkeError('ERR_HPKE_KEY', 'DeriveKeyPair found no valid scalar');
  } finally {
    dkpPrk.fill(0);
  }
}

/** A fresh key pair from the platform's secure random source (RFC 9180 GenerateKeyPair). */
export async function generateHpkeKeyPair(kemId: number, options: HpkeKeyOptions = {}): Promise<HpkeKeyPair> {
  const kem = kemParams(kemId);
  const provider = options.provider ?? getHpkeProvider();
  try {
    return keyPairOf(provider, kem, await provider.generateKeyPair(kem));
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_UNSUPPORTED');
  }
}

/**
 * DeriveKeyPair(ikm) (RFC 9180 section 7.1.3): the same ikm always gives the same key pair.
 * For test vectors and for keys derived from a sealed seed; ikm needs at least Nsk bytes of entropy.
 */
export async function deriveHpkeKeyPair(kemId: number, ikm: Uint8Array, options: HpkeKeyOptions = {}): Promise<HpkeKeyPair> {
  const kem = kemParams(kemId);
  if (ikm.length < kem.nSk) throw new HpkeError('ERR_HPKE_PARAMS', 'ikm is shorter than Nsk', { detail: { length: ikm.length, min: kem.nSk } });
  const provider = options.provider ?? getHpkeProvider();
  try {
    return keyPairOf(provider, kem, await deriveProviderKeyPair(provider, kem, ikm));
  } catch (e) {
    throw keyError(e, 'ERR_HPKE_KEY');
  }
}

/** SerializePublicKey: the KEM's public key encoding (32 bytes for X25519, 65 for P-256). */
export function serializeHpkePublicKey(pk: HpkePublicKey): Bytes {
  return pk.bytes.slice();
}

/** DeserializePublicKey: validates length and encoding; ERR_HPKE_KEY when it is not a key of this KEM. */
export async function deserializeHpkePublicKey(kemId: number, bytes: Uint8Array, options: HpkeKeyOptions = {}): Promise<HpkePublicKey> {
  const kem = kemParams(kemId);
  if (bytes.length !== kem.nPk) throw new HpkeError('ERR_HPKE_KEY', 'public key has the wrong length', { detail: { length: bytes.length, expected: kem.nPk } });
  const pk: HpkePublicKey = Object.freeze({ kem: kem.id, bytes: copyBytes(bytes) });
  await publicKeyHandle(pk, options.provider ?? getHpkeProvider());
  return pk;
}

/** SerializePrivateKey. The caller owns the returned secret and should wipe it after use. */
export async function serializeHpkePrivateKey(pair: HpkeKeyPair): Promise<Bytes> {
  const entry = privateKeys.get(pair.privateKey);
  if (!entry) throw new HpkeError('ERR_HPKE_KEY', 'not a private key made by this module');
  try {
    return await entry.provider.exportPrivateKey(kemParams(pair.kem), entry.handle);
  } catch (e) {
    throw keyError(e, 'ERR_HPKE_KEY');
  }
}

/** DeserializePrivateKey, returning the full pair (the public key is recomputed). */
export async function deserializeHpkePrivateKey(kemId: number, bytes: Uint8Array, options: HpkeKeyOptions = {}): Promise<HpkeKeyPair> {
  const kem = kemParams(kemId);
  if (bytes.length !== kem.nSk) throw new HpkeError('ERR_HPKE_KEY', 'private key has the wrong length', { detail: { length: bytes.length, expected: kem.nSk } });
  const nist = NIST[kem.id];
  if (nist && !scalarInRange(bytes, nist.order)) throw new HpkeError('ERR_HPKE_KEY', 'private key is not a scalar in 1..n-1');
  const provider = options.provider ?? getHpkeProvider();
  try {
    return keyPairOf(provider, kem, await provider.importPrivateKey(kem, bytes));
  } catch (e) {
    throw keyError(e, 'ERR_HPKE_KEY');
  }
}
