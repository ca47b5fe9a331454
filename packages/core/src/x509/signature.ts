import { concatBytes, copyBytes, type Bytes } from '../bytes.js';
import { subtle, type HashName } from '../crypto.js';
import { CustodyError, ParseError } from '../errors.js';
import { children, decodeBitString, decodeOid, decodeSmallInteger, decodeUnsignedInteger, encodeTlv, isContext, parseDer, sequence, TAG, type DerNode } from './der.js';
import { OID } from './oids.js';

/** A signature algorithm as read from an AlgorithmIdentifier, ready for WebCrypto. */
export type SignatureAlgorithm =
  | { kind: 'ecdsa'; hash: HashName }
  | { kind: 'rsa-pkcs1'; hash: HashName }
  | { kind: 'rsa-pss'; hash: HashName; saltLength: number }
  | { kind: 'ed25519' };

const HASH_BY_OID: Record<string, HashName> = {
  [OID.sha1]: 'SHA-1',
  [OID.sha256]: 'SHA-256',
  [OID.sha384]: 'SHA-384',
  [OID.sha512]: 'SHA-512',
};

export function parseSignatureAlgorithm(node: DerNode): SignatureAlgorithm {
  const parts = sequence(node, 'AlgorithmIdentifier');
  const oid = decodeOid(parts[0]!);
  switch (oid) {
    case OID.ecdsaWithSha256:
      return { kind: 'ecdsa', hash: 'SHA-256' };
    case OID.ecdsaWithSha384:
      return { kind: 'ecdsa', hash: 'SHA-384' };
    case OID.ecdsaWithSha512:
      return { kind: 'ecdsa', hash: 'SHA-512' };
    case OID.sha256WithRSA:
      return { kind: 'rsa-pkcs1', hash: 'SHA-256' };
    case OID.sha384WithRSA:
      return { kind: 'rsa-pkcs1', hash: 'SHA-384' };
    case OID.sha512WithRSA:
      return { kind: 'rsa-pkcs1', hash: 'SHA-512' };
    case OID.sha1WithRSA:
      return { kind: 'rsa-pkcs1', hash: 'SHA-1' };
    case OID.ed25519:
      return { kind: 'ed25519' };
    case OID.rsassaPss:
      return parsePssParams(parts[1]);
    default:
      throw new ParseError('ERR_INPUT_UNSUPPORTED', `unsupported signature algorithm ${oid}`, { detail: { oid } });
  }
}

/** RSASSA-PSS-params (RFC 4055); defaults SHA-1/MGF1-SHA-1/salt 20 when absent. */
function parsePssParams(node: DerNode | undefined): SignatureAlgorithm {
  let hash: HashName = 'SHA-1';
  let mgfHash: HashName = 'SHA-1';
  let saltLength = 20;
  if (node && node.tagNumber === TAG.SEQUENCE) {
    for (const p of children(node)) {
      if (isContext(p, 0)) hash = hashOf(children(p)[0]);
      else if (isContext(p, 1)) {
        const mgf = sequence(children(p)[0], 'MaskGenAlgorithm');
        if (decodeOid(mgf[0]!) !== OID.mgf1) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'unsupported PSS mask generation function');
        mgfHash = hashOf(mgf[1]);
      } else if (isContext(p, 2)) saltLength = decodeSmallInteger(children(p)[0]!);
    }
  }
  if (mgfHash !== hash) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'PSS with a different MGF1 hash is not supported by WebCrypto');
  if (saltLength < 0 || saltLength > 512) throw new ParseError('ERR_INPUT_MALFORMED', 'PSS salt length out of range');
  return { kind: 'rsa-pss', hash, saltLength };
}

function hashOf(node: DerNode | undefined): HashName {
  const oid = decodeOid(sequence(node, 'hash AlgorithmIdentifier')[0]!);
  const h = HASH_BY_OID[oid];
  if (!h) throw new ParseError('ERR_INPUT_UNSUPPORTED', `unsupported hash ${oid}`, { detail: { oid } });
  return h;
}

/** A parsed SubjectPublicKeyInfo. */
export interface PublicKeyInfo {
  /** The whole SPKI DER. */
  spki: Bytes;
  algorithm: 'rsa' | 'ec' | 'ed25519';
  /** EC curve name for `ec`. */
  namedCurve?: 'P-256' | 'P-384' | 'P-521';
  /** RSA modulus size in bits, EC field size. */
  bits: number;
  /** Raw key bytes (EC point, RSA's RSAPublicKey DER, Ed25519 32 bytes). */
  keyBytes: Bytes;
  /** RSA only: whether the SPKI named id-RSASSA-PSS (WebCrypto cannot import that form directly). */
  pssOnly?: boolean;
}

const CURVES: Record<string, { name: 'P-256' | 'P-384' | 'P-521'; bits: number }> = {
  [OID.p256]: { name: 'P-256', bits: 256 },
  [OID.p384]: { name: 'P-384', bits: 384 },
  [OID.p521]: { name: 'P-521', bits: 521 },
};

export function parsePublicKeyInfo(node: DerNode): PublicKeyInfo {
  const [alg, bits] = sequence(node, 'SubjectPublicKeyInfo');
  const algParts = sequence(alg, 'AlgorithmIdentifier');
  const oid = decodeOid(algParts[0]!);
  const keyBytes = decodeBitString(bits!);
  switch (oid) {
    case OID.ecPublicKey: {
      const curve = CURVES[decodeOid(algParts[1]!)];
      if (!curve) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'unsupported EC curve');
      return { spki: node.raw, algorithm: 'ec', namedCurve: curve.name, bits: curve.bits, keyBytes };
    }
    case OID.rsaEncryption:
    case OID.rsassaPss: {
      const rsa = sequence(parseDer(keyBytes), 'RSAPublicKey');
      const n = decodeUnsignedInteger(rsa[0]!);
      decodeUnsignedInteger(rsa[1]!);
      return { spki: node.raw, algorithm: 'rsa', bits: n.length * 8, keyBytes, pssOnly: oid === OID.rsassaPss };
    }
    case OID.ed25519:
      if (keyBytes.length !== 32) throw new ParseError('ERR_INPUT_MALFORMED', 'bad Ed25519 key length');
      return { spki: node.raw, algorithm: 'ed25519', bits: 256, keyBytes };
    default:
      throw new ParseError('ERR_INPUT_UNSUPPORTED', `unsupported public key algorithm ${oid}`, { detail: { oid } });
  }
}

/** The SPKI of an RSA key re-labelled as rsaEncryption, so WebCrypto will import it. */
function rsaEncryptionSpki(info: PublicKeyInfo): Bytes {
  const algId = encodeTlv(0x30, concatBytes(encodeTlv(0x06, Uint8Array.of(0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01)), Uint8Array.of(0x05, 0x00)));
  const bitString = encodeTlv(0x03, concatBytes(Uint8Array.of(0), info.keyBytes));
  return encodeTlv(0x30, concatBytes(algId, bitString));
}

function importParams(info: PublicKeyInfo, alg: SignatureAlgorithm): RsaHashedImportParams | EcKeyImportParams | Algorithm {
  switch (alg.kind) {
    case 'ecdsa':
      if (info.algorithm !== 'ec') break;
      return { name: 'ECDSA', namedCurve: info.namedCurve! };
    case 'rsa-pkcs1':
      if (info.algorithm !== 'rsa' || info.pssOnly) break;
      return { name: 'RSASSA-PKCS1-v1_5', hash: alg.hash };
    case 'rsa-pss':
      if (info.algorithm !== 'rsa') break;
      return { name: 'RSA-PSS', hash: alg.hash };
    case 'ed25519':
      if (info.algorithm !== 'ed25519') break;
      return { name: 'Ed25519' };
  }
  throw new CustodyError('ERR_INPUT_UNSUPPORTED', `a ${info.algorithm} key cannot verify a ${alg.kind} signature`);
}

const keyCache = new Map<string, Promise<CryptoKey>>();
const KEY_CACHE_MAX = 256;

/** Imports (and caches, keyed by SPKI and algorithm) a WebCrypto verification key. */
export function importVerifyKey(info: PublicKeyInfo, alg: SignatureAlgorithm): Promise<CryptoKey> {
  const params = importParams(info, alg);
  const id = `${alg.kind}:${'hash' in alg ? alg.hash : ''}:${hexKey(info.spki)}`;
  let p = keyCache.get(id);
  if (!p) {
    const spki = info.algorithm === 'rsa' ? rsaEncryptionSpki(info) : copyBytes(info.spki);
    p = subtle.importKey('spki', spki, params, false, ['verify']);
    p.catch(() => keyCache.delete(id));
    if (keyCache.size >= KEY_CACHE_MAX) keyCache.delete(keyCache.keys().next().value!);
    keyCache.set(id, p);
  }
  return p;
}

/** The exact SPKI bytes as a string, so equal keys share one imported CryptoKey. */
function hexKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/** Converts a DER ECDSA-Sig-Value to the fixed-size r||s form WebCrypto expects. */
export function ecdsaDerToRaw(der: Uint8Array, fieldBytes: number): Bytes {
  const parts = sequence(parseDer(copyBytes(der)), 'ECDSA-Sig-Value');
  if (parts.length !== 2) throw new ParseError('ERR_INPUT_MALFORMED', 'bad ECDSA signature');
  const out = new Uint8Array(fieldBytes * 2);
  [parts[0]!, parts[1]!].forEach((p, i) => {
    // DER INTEGERs are minimal: a leading 0x00 only before a byte with the top bit set.
    const raw = p.value;
    if (raw.length > 1 && raw[0] === 0 && (raw[1]! & 0x80) === 0) throw new ParseError('ERR_INPUT_MALFORMED', 'non-minimal INTEGER in ECDSA signature');
    const v = decodeUnsignedInteger(p);
    if (v.length > fieldBytes) throw new ParseError('ERR_INPUT_MALFORMED', 'ECDSA signature component too long');
    out.set(v, (i + 1) * fieldBytes - v.length);
  });
  return out;
}

export function fieldBytesOf(curve: 'P-256' | 'P-384' | 'P-521'): number {
  return curve === 'P-256' ? 32 : curve === 'P-384' ? 48 : 66;
}

/**
 * Verifies `signature` over `data`. ECDSA signatures may be DER (as in X.509/CRLs) or raw r||s
 * (`ecdsaFormat: 'raw'`, as in SEV-SNP, TDX and COSE).
 */
export async function verifySignature(
  info: PublicKeyInfo,
  alg: SignatureAlgorithm,
  data: Uint8Array,
  signature: Uint8Array,
  ecdsaFormat: 'der' | 'raw' = 'der',
): Promise<boolean> {
  let key: CryptoKey;
  try {
    key = await importVerifyKey(info, alg);
  } catch (e) {
    // A key that names the wrong algorithm is a caller error; a key WebCrypto cannot import
    // (a point off its curve, a malformed modulus) simply verifies nothing.
    if (e instanceof CustodyError) throw e;
    return false;
  }
  let sig: Bytes;
  let params: AlgorithmIdentifier | RsaPssParams | EcdsaParams;
  switch (alg.kind) {
    case 'ecdsa': {
      const fb = fieldBytesOf(info.namedCurve!);
      try {
        sig = ecdsaFormat === 'der' ? ecdsaDerToRaw(signature, fb) : copyBytes(signature);
      } catch {
        return false;
      }
      if (sig.length !== fb * 2) return false;
      params = { name: 'ECDSA', hash: alg.hash };
      break;
    }
    case 'rsa-pss':
      sig = copyBytes(signature);
      params = { name: 'RSA-PSS', saltLength: alg.saltLength };
      break;
    case 'rsa-pkcs1':
      sig = copyBytes(signature);
      params = { name: 'RSASSA-PKCS1-v1_5' };
      break;
    case 'ed25519':
      sig = copyBytes(signature);
      params = { name: 'Ed25519' };
      break;
  }
  try {
    return await subtle.verify(params, key, sig, copyBytes(data));
  } catch {
    return false;
  }
}

export { decodeBitString };
