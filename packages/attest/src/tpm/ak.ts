import { ParseError, VerificationError, fromUtf8, parsePem, sha256, toHex, type Bytes } from '@custody/core';
import { decodeBase64 } from './base64.js';
import { TPM_ALG, TPMA_OBJECT, decodeObjectAttributes } from './constants.js';
import { decodeSpki, encodeEcSpki, encodeRsaSpki, jwkToSpki, type RsaOrEcJwk, type SpkiKey } from './spki.js';
import { parseTpm2bPublic, parseTpmtPublic, tpmEccCurve, tpmObjectName, type TpmtPublic } from './structures.js';
import { PublicKeyMemo } from './cache.js';

/** An attestation key in the one form the verifier uses, with where it came from. */
export interface TpmAttestationKey {
  /** SubjectPublicKeyInfo DER: the form policies pin (by SHA-256) and WebCrypto imports. */
  spki: Bytes;
  key: SpkiKey;
  /** How the key was given. */
  source: 'spki' | 'tpm2b-public' | 'tpmt-public' | 'jwk';
  /** The TPM public area, when the key was given as one: its attributes can then be checked. */
  tpmPublic?: TpmtPublic;
}

/** e.g. `rsa-2048`, `ecc-p256`. */
export function describeAk(ak: TpmAttestationKey): string {
  return ak.key.kty === 'RSA' ? `rsa-${ak.key.bits}` : `ecc-${ak.key.curve.toLowerCase().replace('-', '')}`;
}

const spkiDigestCache = new PublicKeyMemo<string>();
const nameCache = new PublicKeyMemo<string>();

/** SHA-256 of the AK's SPKI DER, hex: the value policies pin. */
export function akSpkiSha256(ak: TpmAttestationKey): Promise<string> {
  return spkiDigestCache.get([ak.spki], async () => toHex(await sha256(ak.spki)));
}

/** The AK's TPM name (nameAlg || H(TPMT_PUBLIC)), hex, when the AK came as a public area. */
export function akTpmName(ak: TpmAttestationKey): Promise<string> | undefined {
  const pub = ak.tpmPublic;
  if (!pub) return undefined;
  return nameCache.get([pub.bytes], async () => toHex(await tpmObjectName(pub)));
}

/** Builds the SPKI form of a TPM public area (RSA exponent 0 means the default 65537). */
export function tpmPublicToSpki(pub: TpmtPublic): Bytes {
  if (pub.type === 'rsa' && pub.rsa) {
    const e = pub.rsa.exponent === 0 ? 65537 : pub.rsa.exponent;
    return encodeRsaSpki(pub.rsa.modulus, Uint8Array.of(e >>> 24, (e >>> 16) & 0xff, (e >>> 8) & 0xff, e & 0xff));
  }
  const curve = tpmEccCurve(pub);
  return encodeEcSpki(curve.name, pub.ecc!.x, pub.ecc!.y);
}

export function akFromTpmPublic(pub: TpmtPublic, source: 'tpm2b-public' | 'tpmt-public' = 'tpmt-public'): TpmAttestationKey {
  const spki = tpmPublicToSpki(pub);
  return { spki, key: decodeSpki(spki), source, tpmPublic: pub };
}

export function akFromSpki(der: Uint8Array): TpmAttestationKey {
  const spki = der.slice();
  return { spki, key: decodeSpki(spki), source: 'spki' };
}

export function akFromJwk(jwk: RsaOrEcJwk): TpmAttestationKey {
  const spki = jwkToSpki(jwk);
  return { spki, key: decodeSpki(spki), source: 'jwk' };
}

/**
 * Reads an attestation key given as PEM (PUBLIC KEY), or as raw bytes holding SPKI DER,
 * TPM2B_PUBLIC or TPMT_PUBLIC. The forms are told apart by their first bytes: DER starts with
 * a SEQUENCE tag, TPM2B_PUBLIC with its own length, TPMT_PUBLIC with the key type.
 */
export function readAttestationKey(input: Uint8Array): TpmAttestationKey {
  if (input.length === 0) throw new ParseError('ERR_INPUT_MALFORMED', 'attestation key is empty');
  if (input[0] === 0x2d /* '-' */ || (input[0] !== 0x30 && isPemText(input))) {
    const blocks = parsePem(fromUtf8(input)).filter((b) => b.label === 'PUBLIC KEY');
    if (blocks.length !== 1) throw new ParseError('ERR_INPUT_MALFORMED', 'expected exactly one PEM PUBLIC KEY block');
    return akFromSpki(blocks[0]!.der);
  }
  if (input[0] === 0x30) return akFromSpki(input);
  if (input.length >= 2 && ((input[0]! << 8) | input[1]!) === input.length - 2) return akFromTpmPublic(parseTpm2bPublic(input), 'tpm2b-public');
  return akFromTpmPublic(parseTpmtPublic(input), 'tpmt-public');
}

// Parsed AKs by the exact `ak_public` text. A machine quotes with the same AK every time, and
// reading it (base64, TPM public area, SPKI encoding and decoding) is work done before the
// signature check can start. Only successful parses are kept; a hit gives a deep copy, so no
// two results share a buffer.
const akTextCache = new Map<string, TpmAttestationKey>();
const AK_TEXT_CACHE_MAX = 64;

/** Reads the `ak_public` string of a JSON evidence file: PEM text, or base64 of any binary form. */
export function readAttestationKeyString(s: string): TpmAttestationKey {
  const hit = akTextCache.get(s);
  if (hit) return cloneAk(hit);
  const ak = s.includes('-----BEGIN') ? readAttestationKey(new TextEncoder().encode(s)) : readAttestationKey(decodeBase64(s));
  if (akTextCache.size >= AK_TEXT_CACHE_MAX) akTextCache.delete(akTextCache.keys().next().value!);
  akTextCache.set(s, cloneAk(ak));
  return ak;
}

/** A deep copy: every byte array is copied (keep in step with TpmAttestationKey and TpmtPublic). */
export function cloneAk(ak: TpmAttestationKey): TpmAttestationKey {
  const k = ak.key;
  const key: SpkiKey = k.kty === 'RSA' ? { kty: 'RSA', bits: k.bits, n: k.n.slice(), e: k.e.slice() } : { kty: 'EC', curve: k.curve, x: k.x.slice(), y: k.y.slice() };
  const out: TpmAttestationKey = { spki: ak.spki.slice(), key, source: ak.source };
  const p = ak.tpmPublic;
  if (p) {
    const pub: TpmtPublic = { ...p, bytes: p.bytes.slice(), authPolicy: p.authPolicy.slice(), symmetric: { ...p.symmetric }, scheme: { ...p.scheme } };
    if (p.rsa) pub.rsa = { ...p.rsa, modulus: p.rsa.modulus.slice() };
    if (p.ecc) pub.ecc = { ...p.ecc, kdf: { ...p.ecc.kdf }, x: p.ecc.x.slice(), y: p.ecc.y.slice() };
    out.tpmPublic = pub;
  }
  return out;
}

function isPemText(b: Uint8Array): boolean {
  const head = b.subarray(0, 64);
  for (const c of head) if (c !== 0x09 && c !== 0x0a && c !== 0x0d && (c < 0x20 || c > 0x7e)) return false;
  return new TextDecoder().decode(head).trimStart().startsWith('-----BEGIN');
}

export interface AkAttributeCheck {
  /** Whether the check could be made (only for keys given as a TPM public area). */
  checked: boolean;
  attributes?: string[];
}

/**
 * An AK must be a restricted signing key: only then does the TPM refuse to sign data that
 * starts with TPM_GENERATED_VALUE, which is what makes a signed TPMS_ATTEST trustworthy.
 * Keys given as SPKI or JWK carry no attributes; the caller reports that as a warning.
 */
export function checkAkAttributes(ak: TpmAttestationKey, sigAlg: number, sigHash: number): AkAttributeCheck {
  const pub = ak.tpmPublic;
  if (!pub) return { checked: false };
  const attrs = pub.objectAttributes;
  const need = TPMA_OBJECT.restricted | TPMA_OBJECT.sign;
  if ((attrs & need) !== need || (attrs & TPMA_OBJECT.decrypt) !== 0) {
    throw new VerificationError('ERR_TPM_AK_ATTRIBUTES', 'attestation key is not a restricted signing key', { detail: { objectAttributes: attrs >>> 0 } });
  }
  // A restricted key signs only with its own scheme; a quote claiming another one was not made by it.
  if (pub.scheme.scheme !== TPM_ALG.null && (pub.scheme.scheme !== sigAlg || pub.scheme.hashAlg !== sigHash)) {
    throw new VerificationError('ERR_TPM_AK_ATTRIBUTES', 'signature scheme differs from the scheme fixed in the attestation key', {
      detail: { keyScheme: pub.scheme.scheme, keyHash: pub.scheme.hashAlg ?? 0, sigAlg, sigHash },
    });
  }
  return { checked: true, attributes: decodeObjectAttributes(attrs) };
}

export type { SpkiKey };
