import { copyBytes, type Bytes } from '../bytes.js';
import { subtle } from '../crypto.js';
import { CustodyError, ParseError } from '../errors.js';
import { decodeCbor } from '../cbor/decode.js';
import { encodeCbor } from '../cbor/encode.js';
import { CborTag, cborTypeName, type CborKey, type CborMap, type CborValue } from '../cbor/types.js';
import { verifySignature, type PublicKeyInfo, type SignatureAlgorithm } from '../x509/signature.js';

/** COSE algorithm identifiers (RFC 9053) this module signs and verifies. */
export const COSE_ALG = { ES256: -7, ES384: -35, ES512: -36, EdDSA: -8 } as const;
export type CoseAlgorithm = keyof typeof COSE_ALG;

/** Common COSE header labels (RFC 9052 §3.1). */
export const COSE_HEADER = { alg: 1, crit: 2, contentType: 3, kid: 4, iv: 5, partialIv: 6, x5chain: 33 } as const;

/** CBOR tag of a COSE_Sign1 message. */
export const COSE_SIGN1_TAG = 18;

/** Largest COSE_Sign1 message parsed by default. */
export const COSE_DEFAULT_MAX_SIZE = 1024 * 1024;

const ALG_BY_ID = new Map<number, CoseAlgorithm>(Object.entries(COSE_ALG).map(([k, v]) => [v, k as CoseAlgorithm]));

const ALG_PARAMS: Record<CoseAlgorithm, { sig: SignatureAlgorithm; curve?: 'P-256' | 'P-384' | 'P-521'; sigBytes: number }> = {
  ES256: { sig: { kind: 'ecdsa', hash: 'SHA-256' }, curve: 'P-256', sigBytes: 64 },
  ES384: { sig: { kind: 'ecdsa', hash: 'SHA-384' }, curve: 'P-384', sigBytes: 96 },
  ES512: { sig: { kind: 'ecdsa', hash: 'SHA-512' }, curve: 'P-521', sigBytes: 132 },
  EdDSA: { sig: { kind: 'ed25519' }, sigBytes: 64 },
};

/** A parsed COSE_Sign1 message (RFC 9052 §4.2). */
export interface CoseSign1 {
  /** Whether the message carried CBOR tag 18. */
  tagged: boolean;
  /** The protected header bucket exactly as received: these bytes are what was signed. */
  protectedBytes: Bytes;
  protectedHeader: CborMap;
  unprotectedHeader: CborMap;
  /** The payload, or null when it is detached. */
  payload: Bytes | null;
  signature: Bytes;
  /** The signature algorithm named by the `alg` header. */
  alg: CoseAlgorithm;
  /** Whether `alg` sat in the protected bucket (it may legally sit in the unprotected one). */
  algProtected: boolean;
}

export interface CoseParseOptions {
  maxSize?: number;
  /** Fail unless the message is tagged 18 (default false: tagged and untagged both accepted). */
  requireTag?: boolean;
}

/**
 * Parses a COSE_Sign1 message, tagged (18) or untagged:
 * `[protected: bstr, unprotected: map, payload: bstr / nil, signature: bstr]`.
 * Header labels must not repeat across the two buckets; `crit` is refused since no extension
 * header is understood here; `alg` must be one of ES256, ES384, ES512, EdDSA.
 */
export function parseCoseSign1(input: Uint8Array, options: CoseParseOptions = {}): CoseSign1 {
  let top = decodeCbor(input, { maxSize: options.maxSize ?? COSE_DEFAULT_MAX_SIZE, maxDepth: 16 });
  let tagged = false;
  if (top instanceof CborTag) {
    if (top.tag !== COSE_SIGN1_TAG) throw malformed(`CBOR tag ${String(top.tag)} is not COSE_Sign1 (18)`);
    tagged = true;
    top = top.value;
  } else if (options.requireTag) {
    throw malformed('COSE_Sign1 message is not tagged 18');
  }
  if (!Array.isArray(top) || top.length !== 4) throw malformed('COSE_Sign1 is not an array of four items');
  const [prot, unprot, payload, signature] = top as [CborValue, CborValue, CborValue, CborValue];
  if (!(prot instanceof Uint8Array)) throw malformed(`protected header is ${cborTypeName(prot)}, not bytes`);
  if (!(unprot instanceof Map)) throw malformed(`unprotected header is ${cborTypeName(unprot)}, not a map`);
  if (!(payload instanceof Uint8Array) && payload !== null) throw malformed(`payload is ${cborTypeName(payload)}, not bytes or nil`);
  if (!(signature instanceof Uint8Array)) throw malformed(`signature is ${cborTypeName(signature)}, not bytes`);

  let protectedHeader: CborMap = new Map();
  if (prot.length > 0) {
    const decoded = decodeCbor(prot, { maxDepth: 8 });
    if (!(decoded instanceof Map)) throw malformed('protected header is not a CBOR map');
    protectedHeader = decoded;
  }
  for (const label of protectedHeader.keys()) {
    if (unprot.has(label)) throw malformed(`header label ${String(label)} appears in both buckets`);
  }
  if (protectedHeader.has(COSE_HEADER.crit) || unprot.has(COSE_HEADER.crit)) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', 'COSE critical headers (crit) are not supported');
  }
  const algProtected = protectedHeader.has(COSE_HEADER.alg);
  const algValue = algProtected ? protectedHeader.get(COSE_HEADER.alg) : unprot.get(COSE_HEADER.alg);
  if (algValue === undefined) throw malformed('COSE_Sign1 has no alg header');
  const alg = typeof algValue === 'number' ? ALG_BY_ID.get(algValue) : undefined;
  if (!alg) {
    const shown = typeof algValue === 'number' || typeof algValue === 'bigint' ? String(algValue) : typeof algValue === 'string' ? JSON.stringify(algValue.slice(0, 32)) : cborTypeName(algValue);
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `unsupported COSE algorithm ${shown}`);
  }
  return { tagged, protectedBytes: prot, protectedHeader, unprotectedHeader: unprot, payload, signature, alg, algProtected };
}

export interface CoseVerifyOptions {
  /** Externally supplied data bound into the signature (default empty). */
  externalAad?: Uint8Array;
  /** The payload when the message carries nil (detached content). */
  detachedPayload?: Uint8Array;
}

/**
 * The Sig_structure (RFC 9052 §4.4) for COSE_Sign1: `["Signature1", protected, external_aad, payload]`.
 * "If there are no protected attributes, a zero-length byte string is used": a protected bucket
 * holding an encoded empty map is signed as the empty string (cose-wg/Examples sign-pass-01).
 */
export function coseSign1ToBeSigned(msg: Pick<CoseSign1, 'protectedBytes' | 'payload'> & { protectedHeader?: CborMap }, options: CoseVerifyOptions = {}): Bytes {
  const payload = msg.payload ?? options.detachedPayload;
  if (!payload) throw new CustodyError('ERR_INPUT_MALFORMED', 'COSE_Sign1 payload is detached and none was supplied');
  if (msg.payload && options.detachedPayload) throw new CustodyError('ERR_INPUT_MALFORMED', 'COSE_Sign1 carries a payload and a detached one was also supplied');
  const protectedBytes = msg.protectedHeader?.size === 0 ? new Uint8Array(0) : msg.protectedBytes;
  // The encoder only reads these bytes, so any Uint8Array will do (no copy of a large payload).
  const aad = (options.externalAad ?? new Uint8Array(0)) as Bytes;
  return encodeCbor(['Signature1', protectedBytes, aad, payload as Bytes]);
}

/**
 * Verifies a COSE_Sign1 signature with a public key. ECDSA signatures are the fixed-size r||s
 * COSE uses. The key must fit the algorithm (ES256/P-256, ES384/P-384, ES512/P-521,
 * EdDSA/Ed25519); a mismatched key is refused with ERR_INPUT_UNSUPPORTED rather than tried.
 */
export async function verifyCoseSign1(msg: CoseSign1, key: PublicKeyInfo, options: CoseVerifyOptions = {}): Promise<boolean> {
  const params = ALG_PARAMS[msg.alg];
  const fits = params.curve ? key.algorithm === 'ec' && key.namedCurve === params.curve : key.algorithm === 'ed25519';
  if (!fits) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `COSE ${msg.alg} needs a ${params.curve ?? 'Ed25519'} key, not ${key.namedCurve ?? key.algorithm}`);
  }
  if (msg.signature.length !== params.sigBytes) return false;
  const tbs = coseSign1ToBeSigned(msg, options);
  try {
    return await verifySignature(key, params.sig, tbs, msg.signature, 'raw');
  } catch (e) {
    // A key WebCrypto refuses to import (say, a point not on its curve) verifies nothing.
    if (e instanceof CustodyError) throw e;
    return false;
  }
}

export interface CoseSignOptions extends CoseVerifyOptions {
  alg: CoseAlgorithm;
  /** A WebCrypto private key matching `alg` (ECDSA on the right curve, or Ed25519). */
  key: CryptoKey;
  /** The payload, or null for detached content (then `detachedPayload` is what gets signed). */
  payload: Uint8Array | null;
  /** Extra protected headers; `alg` is always written by this function. */
  protectedHeader?: Map<CborKey, CborValue>;
  unprotectedHeader?: Map<CborKey, CborValue>;
  /** Tag the message with 18 (default true). */
  tagged?: boolean;
}

/** Creates a COSE_Sign1 message (for tests, simulators and the ledger): protected headers are encoded deterministically. */
export async function signCoseSign1(o: CoseSignOptions): Promise<Bytes> {
  const params = ALG_PARAMS[o.alg];
  const protectedHeader = new Map<CborKey, CborValue>(o.protectedHeader ?? []);
  protectedHeader.set(COSE_HEADER.alg, COSE_ALG[o.alg]);
  const protectedBytes = encodeCbor(protectedHeader);
  const tbs = coseSign1ToBeSigned({ protectedBytes, payload: o.payload ? copyBytes(o.payload) : null }, o);
  const algorithm: EcdsaParams | Algorithm = params.sig.kind === 'ecdsa' ? { name: 'ECDSA', hash: params.sig.hash } : { name: 'Ed25519' };
  const signature = new Uint8Array(await subtle.sign(algorithm, o.key, tbs));
  return encodeCoseSign1({ protectedBytes, unprotectedHeader: o.unprotectedHeader ?? new Map<CborKey, CborValue>(), payload: o.payload, signature, tagged: o.tagged ?? true });
}

/** Encodes the four parts of a COSE_Sign1 message, tagged 18 unless `tagged` is false. */
export function encodeCoseSign1(parts: { protectedBytes: Uint8Array; unprotectedHeader: CborMap; payload: Uint8Array | null; signature: Uint8Array; tagged?: boolean }): Bytes {
  const arr: CborValue[] = [copyBytes(parts.protectedBytes), parts.unprotectedHeader, parts.payload ? copyBytes(parts.payload) : null, copyBytes(parts.signature)];
  return encodeCbor(parts.tagged === false ? arr : new CborTag(COSE_SIGN1_TAG, arr));
}

function malformed(what: string): ParseError {
  return new ParseError('ERR_INPUT_MALFORMED', what);
}
