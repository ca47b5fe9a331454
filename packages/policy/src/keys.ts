import { calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK, type JSONWebKeySet } from 'jose';
import { CustodyError } from '@custody/core';

/**
 * The verifier's EAR signing keys: creation (WebCrypto through jose), import/export of the
 * private JWK for a key store, and publication of the public keys as a JWKS with `kid`s.
 */

/** JWS algorithms Custody signs EARs with. `EdDSA` is Ed25519. */
export type EarAlgorithm = 'ES256' | 'ES384' | 'EdDSA';

export const EAR_ALGORITHMS: readonly EarAlgorithm[] = ['ES256', 'ES384', 'EdDSA'];

export interface EarSigningKey {
  readonly alg: EarAlgorithm;
  /** RFC 7638 JWK SHA-256 thumbprint of the public key. */
  readonly kid: string;
  readonly privateKey: CryptoKey;
  /** The public key as published: kty/crv/x/y plus kid, alg and use=sig. */
  readonly publicJwk: JWK;
}

export interface GenerateEarKeyOptions {
  /** Default ES256. */
  alg?: EarAlgorithm;
  /** Whether the private key can be exported (to persist it in a key store). Default false. */
  extractable?: boolean;
}

/** Creates a fresh signing key pair. */
export async function generateEarSigningKey(options: GenerateEarKeyOptions = {}): Promise<EarSigningKey> {
  const alg = options.alg ?? 'ES256';
  if (!EAR_ALGORITHMS.includes(alg)) throw new CustodyError('ERR_EAR_KEY', `unsupported EAR algorithm ${String(alg)}`);
  const pair = await generateKeyPair(alg === 'EdDSA' ? 'Ed25519' : alg, { extractable: options.extractable ?? false });
  return withPublic(alg, pair.privateKey, await exportJWK(pair.publicKey));
}

/** Imports a private JWK (as written by `exportEarSigningKey`) for signing. */
export async function importEarSigningKey(privateJwk: JWK, options: { extractable?: boolean } = {}): Promise<EarSigningKey> {
  const alg = algorithmOf(privateJwk);
  if (typeof privateJwk.d !== 'string') throw new CustodyError('ERR_EAR_KEY', 'EAR signing key JWK has no private part');
  let privateKey: CryptoKey;
  try {
    const imported = await importJWK({ ...privateJwk, alg, ext: options.extractable ?? false }, alg, { extractable: options.extractable ?? false });
    if (imported instanceof Uint8Array) throw new Error('symmetric key');
    privateKey = imported;
  } catch (e) {
    throw new CustodyError('ERR_EAR_KEY', 'EAR signing key JWK could not be imported', { cause: e });
  }
  return withPublic(alg, privateKey, publicPart(privateJwk));
}

/** The private JWK of an extractable signing key, with kid and alg, for a key store. Secret. */
export async function exportEarSigningKey(key: EarSigningKey): Promise<JWK> {
  if (!key.privateKey.extractable) throw new CustodyError('ERR_EAR_KEY', 'EAR signing key is not extractable');
  return { ...(await exportJWK(key.privateKey)), kid: key.kid, alg: key.alg };
}

/** The JWKS a verifier publishes: public keys only, whatever it is given. */
export function publishJwks(keys: readonly (EarSigningKey | JWK)[]): JSONWebKeySet {
  return {
    keys: keys.map((k) => {
      const jwk = 'publicJwk' in k ? (k).publicJwk : (k);
      const pub = publicPart(jwk);
      if (jwk.kid !== undefined) pub.kid = jwk.kid;
      pub.alg = jwk.alg ?? algorithmOf(jwk);
      pub.use = 'sig';
      return pub;
    }),
  };
}

function algorithmOf(jwk: JWK): EarAlgorithm {
  if (jwk.alg !== undefined) {
    if ((EAR_ALGORITHMS as readonly string[]).includes(jwk.alg)) return jwk.alg as EarAlgorithm;
    if (jwk.alg === 'Ed25519') return 'EdDSA';
    throw new CustodyError('ERR_EAR_KEY', `unsupported EAR algorithm ${jwk.alg}`);
  }
  if (jwk.kty === 'EC' && jwk.crv === 'P-256') return 'ES256';
  if (jwk.kty === 'EC' && jwk.crv === 'P-384') return 'ES384';
  if (jwk.kty === 'OKP' && jwk.crv === 'Ed25519') return 'EdDSA';
  throw new CustodyError('ERR_EAR_KEY', 'EAR signing keys are EC P-256, EC P-384 or Ed25519');
}

/** Only the public members, so no private member can leak into a JWKS or an EAR. */
function publicPart(jwk: JWK): JWK {
  if (jwk.kty === 'EC') return { kty: 'EC', crv: jwk.crv, x: jwk.x, y: jwk.y };
  if (jwk.kty === 'OKP') return { kty: 'OKP', crv: jwk.crv, x: jwk.x };
  throw new CustodyError('ERR_EAR_KEY', 'EAR signing keys are EC or OKP keys');
}

async function withPublic(alg: EarAlgorithm, privateKey: CryptoKey, publicJwk: JWK): Promise<EarSigningKey> {
  const pub = publicPart(publicJwk);
  const expected = alg === 'EdDSA' ? 'Ed25519' : alg === 'ES256' ? 'P-256' : 'P-384';
  if (pub.crv !== expected) throw new CustodyError('ERR_EAR_KEY', `${alg} needs a ${expected} key`);
  const kid = await calculateJwkThumbprint(pub, 'sha256');
  return { alg, kid, privateKey, publicJwk: { ...pub, kid, alg, use: 'sig' } };
}
