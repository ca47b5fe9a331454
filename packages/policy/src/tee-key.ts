import { CustodyError, ParseError, copyBytes, decodeBitString, decodeOid, parseDer, sequence, subtle, type Bytes } from '@custody/core';

/**
 * The TEE public key bound into the evidence travels in the EAR as Veraison's
 * `ear.veraison.key-attestation` claim: `{ "akpub": base64url(SubjectPublicKeyInfo DER) }`.
 * These helpers convert between that form and a public JWK (what HPKE and jose take).
 *
 * Supported: EC P-256/P-384/P-521, X25519, Ed25519, RSA.
 */

export const MAX_SPKI_BYTES = 2048;

const OID_EC = '1.2.840.10045.2.1';
const OID_X25519 = '1.3.101.110';
const OID_ED25519 = '1.3.101.112';
const OID_RSA = '1.2.840.113549.1.1.1';
const CURVES: Record<string, string> = {
  '1.2.840.10045.3.1.7': 'P-256',
  '1.3.132.0.34': 'P-384',
  '1.3.132.0.35': 'P-521',
};

type ImportAlg = EcKeyImportParams | RsaHashedImportParams | Algorithm;

function importParamsForJwk(jwk: JsonWebKey): { params: ImportAlg; pub: JsonWebKey } {
  if (typeof jwk !== 'object' || jwk === null) throw new CustodyError('ERR_EAR_KEY', 'TEE key is not a JWK');
  if ('d' in jwk || 'p' in jwk || 'q' in jwk) throw new CustodyError('ERR_EAR_KEY', 'TEE key must be a public key, not a private one');
  switch (jwk.kty) {
    case 'EC':
      if (jwk.crv !== 'P-256' && jwk.crv !== 'P-384' && jwk.crv !== 'P-521') break;
      return { params: { name: 'ECDH', namedCurve: jwk.crv }, pub: { kty: 'EC', crv: jwk.crv, x: jwk.x!, y: jwk.y! } };
    case 'OKP':
      if (jwk.crv !== 'X25519' && jwk.crv !== 'Ed25519') break;
      return { params: { name: jwk.crv }, pub: { kty: 'OKP', crv: jwk.crv, x: jwk.x! } };
    case 'RSA':
      return { params: { name: 'RSA-OAEP', hash: 'SHA-256' }, pub: { kty: 'RSA', n: jwk.n!, e: jwk.e! } };
  }
  throw new CustodyError('ERR_EAR_KEY', 'TEE key type is not supported (EC P-256/384/521, X25519, Ed25519, RSA)');
}

/** SubjectPublicKeyInfo DER of a public JWK. */
export async function spkiFromJwk(jwk: JsonWebKey): Promise<Bytes> {
  const { params, pub } = importParamsForJwk(jwk);
  try {
    const key = await subtle.importKey('jwk', pub, params, true, params.name === 'Ed25519' ? ['verify'] : params.name === 'RSA-OAEP' ? ['encrypt'] : []);
    return new Uint8Array(await subtle.exportKey('spki', key));
  } catch (e) {
    throw new CustodyError('ERR_EAR_KEY', 'TEE key could not be imported', { cause: e });
  }
}

/** Public JWK of a SubjectPublicKeyInfo DER (untrusted input: bounded and parsed before use). */
export async function jwkFromSpki(spki: Uint8Array): Promise<JsonWebKey> {
  if (spki.length > MAX_SPKI_BYTES) throw new ParseError('ERR_INPUT_TOO_LARGE', 'TEE key is too large', { detail: { size: spki.length } });
  const der = copyBytes(spki);
  const [alg, bits] = sequence(parseDer(der), 'SubjectPublicKeyInfo');
  if (!alg || !bits) throw new ParseError('ERR_INPUT_MALFORMED', 'SubjectPublicKeyInfo is incomplete');
  decodeBitString(bits);
  const algParts = sequence(alg, 'AlgorithmIdentifier');
  const oid = decodeOid(algParts[0]!);
  let params: ImportAlg;
  let usages: KeyUsage[] = [];
  switch (oid) {
    case OID_EC: {
      const curve = algParts[1] ? CURVES[decodeOid(algParts[1])] : undefined;
      if (!curve) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'unsupported EC curve for the TEE key');
      params = { name: 'ECDH', namedCurve: curve };
      break;
    }
    case OID_X25519:
      params = { name: 'X25519' };
      break;
    case OID_ED25519:
      params = { name: 'Ed25519' };
      usages = ['verify'];
      break;
    case OID_RSA:
      params = { name: 'RSA-OAEP', hash: 'SHA-256' };
      usages = ['encrypt'];
      break;
    default:
      throw new ParseError('ERR_INPUT_UNSUPPORTED', 'unsupported TEE key algorithm', { detail: { oid } });
  }
  try {
    const key = await subtle.importKey('spki', der, params, true, usages);
    const jwk = await subtle.exportKey('jwk', key);
    delete jwk.key_ops;
    delete jwk.ext;
    delete jwk.alg;
    return jwk;
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'TEE key could not be imported', { cause: e });
  }
}
