import { ByteReader, ParseError, assertMaxSize, digest, concatBytes, type Bytes } from '@custody/core';
import {
  EC_CURVES,
  TPM_ALG,
  TPM_GENERATED_VALUE,
  TPM_ST_ATTEST,
  tpmDigestSize,
  tpmHash,
  type TpmHashName,
} from './constants.js';

// Size bounds from TPM 2.0 Part 2 with the largest algorithms a real TPM implements
// (SHA-512 digests, RSA-4096, P-521). Anything larger is malformed, whatever its length field says.
const MAX_DIGEST = 64;
const MAX_NAME = 2 + MAX_DIGEST;
/** TPM2B_DATA holds up to sizeof(TPMT_HA). */
const MAX_DATA = 2 + MAX_DIGEST;
const MAX_RSA_BYTES = 512;
const MAX_ECC_BYTES = 66;
/** 8 bytes of bitmap = PCRs 0..63, far beyond the 24 every PC-client TPM has. */
const MAX_PCR_SELECT = 8;
/** One selection per bank; no TPM has more than a handful of banks. */
const MAX_PCR_BANKS = 16;

export const MAX_TPMS_ATTEST = 4096;
export const MAX_TPMT_SIGNATURE = 2 + 2 + 2 + MAX_RSA_BYTES;
export const MAX_TPM_PUBLIC = 2048;

export interface TpmsClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
}

export interface TpmsPcrSelection {
  /** TPM_ALG_ID of the PCR bank. */
  hashAlg: number;
  /** Bank name when Custody can recompute its hash. */
  hash: TpmHashName | undefined;
  sizeofSelect: number;
  /** Selected PCR indices, ascending: the order their values are hashed into pcrDigest. */
  pcrs: number[];
}

export interface TpmsQuoteInfo {
  pcrSelect: TpmsPcrSelection[];
  pcrDigest: Bytes;
}

/** TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12): the structure the attestation key signs. */
export interface TpmsAttest {
  /** The exact signed bytes (without any TPM2B size prefix). */
  bytes: Bytes;
  magic: number;
  /** TPM_ST_ATTEST_* tag; 0x8018 for a quote. */
  type: number;
  qualifiedSigner: Bytes;
  /** Qualifying data supplied by the caller: the nonce. */
  extraData: Bytes;
  clockInfo: TpmsClockInfo;
  firmwareVersion: bigint;
  /** Raw TPMU_ATTEST bytes, for every type. */
  attested: Bytes;
  /** Parsed TPMS_QUOTE_INFO when `type` is a quote. */
  quote?: TpmsQuoteInfo;
}

const ATTEST_TYPES = new Set<number>(Object.values(TPM_ST_ATTEST));

/** Reads a TPM2B: a big-endian u16 size then that many bytes, bounded by `max`. */
function tpm2b(r: ByteReader, max: number, what: string): Bytes {
  const offset = r.offset;
  const size = r.u16be();
  if (size > max) throw new ParseError('ERR_INPUT_MALFORMED', `${what} is longer than ${max} bytes`, { detail: { offset, size, max } });
  return r.take(size);
}

/**
 * Parses TPMS_ATTEST, the data a TPM signs for TPM2_Quote, TPM2_Certify and friends. Accepts the
 * bare structure (what tpm2_quote -m writes) or a TPM2B_ATTEST around it.
 */
export function parseTpmsAttest(input: Uint8Array): TpmsAttest {
  assertMaxSize(input, MAX_TPMS_ATTEST + 2, 'TPMS_ATTEST');
  let bytes = input;
  if (input.length >= 6 && readU32(input, 0) !== TPM_GENERATED_VALUE && readU32(input, 2) === TPM_GENERATED_VALUE) {
    const size = (input[0]! << 8) | input[1]!;
    if (size !== input.length - 2) throw new ParseError('ERR_INPUT_MALFORMED', 'TPM2B_ATTEST size does not match its contents', { detail: { size, length: input.length } });
    bytes = input.subarray(2);
  }
  const r = new ByteReader(bytes, 'TPMS_ATTEST');
  const magic = r.u32be();
  if (magic !== TPM_GENERATED_VALUE) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'TPMS_ATTEST magic is not TPM_GENERATED_VALUE', { detail: { magic: magic.toString(16) } });
  }
  const type = r.u16be();
  if (!ATTEST_TYPES.has(type)) throw new ParseError('ERR_INPUT_MALFORMED', 'TPMS_ATTEST type is not a TPM_ST_ATTEST value', { detail: { type: type.toString(16) } });
  const qualifiedSigner = tpm2b(r, MAX_NAME, 'qualifiedSigner');
  const extraData = tpm2b(r, MAX_DATA, 'extraData');
  const clockInfo: TpmsClockInfo = {
    clock: r.u64be(),
    resetCount: r.u32be(),
    restartCount: r.u32be(),
    safe: readYesNo(r),
  };
  const firmwareVersion = r.u64be();
  const attestedStart = r.offset;
  let quote: TpmsQuoteInfo | undefined;
  if (type === TPM_ST_ATTEST.quote) {
    const pcrSelect = parsePcrSelectionList(r);
    const pcrDigest = tpm2b(r, MAX_DIGEST, 'pcrDigest');
    r.end();
    quote = { pcrSelect, pcrDigest };
  }
  const attested = bytes.slice(attestedStart);
  const out: TpmsAttest = { bytes: bytes.slice(), magic, type, qualifiedSigner, extraData, clockInfo, firmwareVersion, attested };
  if (quote) out.quote = quote;
  return out;
}

function readYesNo(r: ByteReader): boolean {
  const offset = r.offset;
  const v = r.u8();
  if (v > 1) throw new ParseError('ERR_INPUT_MALFORMED', 'TPMI_YES_NO is neither 0 nor 1', { detail: { offset, value: v } });
  return v === 1;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** TPML_PCR_SELECTION: a count, then per bank a hash id and a PCR bitmap (bit i of byte j = PCR 8j+i). */
export function parsePcrSelectionList(r: ByteReader): TpmsPcrSelection[] {
  const offset = r.offset;
  const count = r.u32be();
  if (count > MAX_PCR_BANKS) throw new ParseError('ERR_INPUT_MALFORMED', `TPML_PCR_SELECTION has more than ${MAX_PCR_BANKS} banks`, { detail: { offset, count } });
  const out: TpmsPcrSelection[] = [];
  for (let i = 0; i < count; i++) {
    const hashAlg = r.u16be();
    if (tpmDigestSize(hashAlg) === undefined) throw new ParseError('ERR_INPUT_MALFORMED', 'PCR bank is not a hash algorithm', { detail: { offset: r.offset - 2, hashAlg } });
    const sizeofSelect = r.u8();
    if (sizeofSelect > MAX_PCR_SELECT) throw new ParseError('ERR_INPUT_MALFORMED', 'PCR select bitmap is too long', { detail: { offset: r.offset - 1, sizeofSelect } });
    const bitmap = r.bytesView(sizeofSelect);
    const pcrs: number[] = [];
    for (let byte = 0; byte < sizeofSelect; byte++) {
      for (let bit = 0; bit < 8; bit++) if ((bitmap[byte]! & (1 << bit)) !== 0) pcrs.push(byte * 8 + bit);
    }
    out.push({ hashAlg, hash: tpmHash(hashAlg)?.name, sizeofSelect, pcrs });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// TPMT_SIGNATURE

export type TpmtSignature =
  | { sigAlg: typeof TPM_ALG.rsassa | typeof TPM_ALG.rsapss; scheme: 'rsassa' | 'rsapss'; hashAlg: number; sig: Bytes }
  | {
      sigAlg: typeof TPM_ALG.ecdsa | typeof TPM_ALG.ecdaa | typeof TPM_ALG.sm2 | typeof TPM_ALG.ecschnorr;
      scheme: 'ecdsa' | 'ecdaa' | 'sm2' | 'ecschnorr';
      hashAlg: number;
      r: Bytes;
      s: Bytes;
    }
  | { sigAlg: typeof TPM_ALG.hmac; scheme: 'hmac'; hashAlg: number; digest: Bytes };

/** Parses TPMT_SIGNATURE (TPM 2.0 Part 2, 11.3.4), as tpm2_quote -s writes it. */
export function parseTpmtSignature(input: Uint8Array): TpmtSignature {
  assertMaxSize(input, MAX_TPMT_SIGNATURE, 'TPMT_SIGNATURE');
  const r = new ByteReader(input, 'TPMT_SIGNATURE');
  const sigAlg = r.u16be();
  let out: TpmtSignature;
  switch (sigAlg) {
    case TPM_ALG.rsassa:
    case TPM_ALG.rsapss: {
      const hashAlg = readSigHash(r);
      const sig = tpm2b(r, MAX_RSA_BYTES, 'RSA signature');
      if (sig.length === 0) throw new ParseError('ERR_INPUT_MALFORMED', 'RSA signature is empty');
      out = { sigAlg, scheme: sigAlg === TPM_ALG.rsassa ? 'rsassa' : 'rsapss', hashAlg, sig };
      break;
    }
    case TPM_ALG.ecdsa:
    case TPM_ALG.ecdaa:
    case TPM_ALG.sm2:
    case TPM_ALG.ecschnorr: {
      const hashAlg = readSigHash(r);
      const sr = tpm2b(r, MAX_ECC_BYTES, 'ECC signature r');
      const ss = tpm2b(r, MAX_ECC_BYTES, 'ECC signature s');
      const scheme = sigAlg === TPM_ALG.ecdsa ? 'ecdsa' : sigAlg === TPM_ALG.ecdaa ? 'ecdaa' : sigAlg === TPM_ALG.sm2 ? 'sm2' : 'ecschnorr';
      out = { sigAlg, scheme, hashAlg, r: sr, s: ss };
      break;
    }
    case TPM_ALG.hmac: {
      const hashAlg = readSigHash(r);
      const size = tpmDigestSize(hashAlg)!;
      out = { sigAlg, scheme: 'hmac', hashAlg, digest: r.take(size) };
      break;
    }
    default:
      throw new ParseError('ERR_INPUT_MALFORMED', 'TPMT_SIGNATURE algorithm is not a signature scheme', { detail: { sigAlg } });
  }
  r.end();
  return out;
}

function readSigHash(r: ByteReader): number {
  const offset = r.offset;
  const hashAlg = r.u16be();
  if (tpmDigestSize(hashAlg) === undefined) throw new ParseError('ERR_INPUT_MALFORMED', 'signature hash is not a hash algorithm', { detail: { offset, hashAlg } });
  return hashAlg;
}

// ---------------------------------------------------------------------------------------------
// TPMT_PUBLIC

export interface TpmtPublic {
  /** The exact TPMT_PUBLIC bytes; the object's name is nameAlg || H(bytes). */
  bytes: Bytes;
  type: 'rsa' | 'ecc';
  nameAlg: number;
  objectAttributes: number;
  authPolicy: Bytes;
  /** TPMT_SYM_DEF_OBJECT; NULL (0x0010) for signing keys. */
  symmetric: { algorithm: number; keyBits?: number; mode?: number };
  /** TPMT_RSA_SCHEME / TPMT_ECC_SCHEME: the signing scheme fixed by the key, or NULL. */
  scheme: { scheme: number; hashAlg?: number; count?: number };
  rsa?: { keyBits: number; exponent: number; modulus: Bytes };
  ecc?: { curveId: number; kdf: { scheme: number; hashAlg?: number }; x: Bytes; y: Bytes };
}

const SYM_OBJECT_ALGS = new Set([TPM_ALG.aes, 0x0013 /* SM4 */, 0x0026 /* CAMELLIA */]);
const RSA_SCHEMES_WITH_HASH = new Set<number>([TPM_ALG.rsassa, TPM_ALG.rsapss, TPM_ALG.oaep]);
const ECC_SCHEMES_WITH_HASH = new Set<number>([TPM_ALG.ecdsa, TPM_ALG.ecdh, TPM_ALG.sm2, TPM_ALG.ecschnorr, TPM_ALG.ecmqv]);
const KDF_SCHEMES = new Set<number>([0x0007 /* MGF1 */, TPM_ALG.kdf1_sp800_56a, TPM_ALG.kdf2, TPM_ALG.kdf1_sp800_108]);

/** Parses TPMT_PUBLIC (TPM 2.0 Part 2, 12.2.4) for RSA and ECC keys. */
export function parseTpmtPublic(input: Uint8Array): TpmtPublic {
  assertMaxSize(input, MAX_TPM_PUBLIC, 'TPMT_PUBLIC');
  const r = new ByteReader(input, 'TPMT_PUBLIC');
  const typeAlg = r.u16be();
  if (typeAlg !== TPM_ALG.rsa && typeAlg !== TPM_ALG.ecc) {
    if (typeAlg === TPM_ALG.keyedhash || typeAlg === TPM_ALG.symcipher) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'TPM public area is not an asymmetric key', { detail: { type: typeAlg } });
    throw new ParseError('ERR_INPUT_MALFORMED', 'TPMT_PUBLIC type is not a key type', { detail: { type: typeAlg } });
  }
  const nameAlg = r.u16be();
  if (tpmDigestSize(nameAlg) === undefined) throw new ParseError('ERR_INPUT_MALFORMED', 'TPMT_PUBLIC nameAlg is not a hash algorithm', { detail: { nameAlg } });
  const objectAttributes = r.u32be();
  const authPolicy = tpm2b(r, MAX_DIGEST, 'authPolicy');
  const symAlg = r.u16be();
  const symmetric: TpmtPublic['symmetric'] = { algorithm: symAlg };
  if (symAlg !== TPM_ALG.null) {
    if (!SYM_OBJECT_ALGS.has(symAlg)) throw new ParseError('ERR_INPUT_MALFORMED', 'TPMT_PUBLIC symmetric algorithm is invalid', { detail: { symAlg } });
    symmetric.keyBits = r.u16be();
    symmetric.mode = r.u16be();
  }
  const schemeAlg = r.u16be();
  const scheme: TpmtPublic['scheme'] = { scheme: schemeAlg };
  const out = { bytes: input.slice(), nameAlg, objectAttributes, authPolicy, symmetric, scheme } as Omit<TpmtPublic, 'type'>;
  if (typeAlg === TPM_ALG.rsa) {
    if (RSA_SCHEMES_WITH_HASH.has(schemeAlg)) scheme.hashAlg = readSigHash(r);
    else if (schemeAlg !== TPM_ALG.null && schemeAlg !== TPM_ALG.rsaes) throw new ParseError('ERR_INPUT_MALFORMED', 'RSA scheme is invalid', { detail: { scheme: schemeAlg } });
    const keyBits = r.u16be();
    const exponent = r.u32be();
    const modulus = tpm2b(r, MAX_RSA_BYTES, 'RSA modulus');
    if (keyBits === 0 || keyBits % 8 !== 0 || modulus.length !== keyBits / 8) {
      throw new ParseError('ERR_INPUT_MALFORMED', 'RSA modulus length does not match keyBits', { detail: { keyBits, modulus: modulus.length } });
    }
    r.end();
    return { ...out, type: 'rsa', rsa: { keyBits, exponent, modulus } };
  }
  if (ECC_SCHEMES_WITH_HASH.has(schemeAlg)) scheme.hashAlg = readSigHash(r);
  else if (schemeAlg === TPM_ALG.ecdaa) {
    scheme.hashAlg = readSigHash(r);
    scheme.count = r.u16be();
  } else if (schemeAlg !== TPM_ALG.null) throw new ParseError('ERR_INPUT_MALFORMED', 'ECC scheme is invalid', { detail: { scheme: schemeAlg } });
  const curveId = r.u16be();
  const kdfScheme = r.u16be();
  const kdf: { scheme: number; hashAlg?: number } = { scheme: kdfScheme };
  if (kdfScheme !== TPM_ALG.null) {
    if (!KDF_SCHEMES.has(kdfScheme)) throw new ParseError('ERR_INPUT_MALFORMED', 'ECC KDF scheme is invalid', { detail: { kdf: kdfScheme } });
    kdf.hashAlg = readSigHash(r);
  }
  const x = tpm2b(r, MAX_ECC_BYTES, 'ECC point x');
  const y = tpm2b(r, MAX_ECC_BYTES, 'ECC point y');
  r.end();
  return { ...out, type: 'ecc', ecc: { curveId, kdf, x, y } };
}

/** Parses TPM2B_PUBLIC, as tpm2_createak -u and tpm2_readpublic -o write it. */
export function parseTpm2bPublic(input: Uint8Array): TpmtPublic {
  assertMaxSize(input, MAX_TPM_PUBLIC + 2, 'TPM2B_PUBLIC');
  const r = new ByteReader(input, 'TPM2B_PUBLIC');
  const size = r.u16be();
  if (size !== r.remaining) throw new ParseError('ERR_INPUT_MALFORMED', 'TPM2B_PUBLIC size does not match its contents', { detail: { size, remaining: r.remaining } });
  return parseTpmtPublic(r.bytesView(size));
}

/** The TPM name of an object: nameAlg || H_nameAlg(TPMT_PUBLIC). */
export async function tpmObjectName(pub: TpmtPublic): Promise<Bytes> {
  const h = tpmHash(pub.nameAlg);
  if (!h) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'TPMT_PUBLIC nameAlg cannot be computed here', { detail: { nameAlg: pub.nameAlg } });
  return concatBytes(new Uint8Array([pub.nameAlg >> 8, pub.nameAlg & 0xff]), await digest(h.webcrypto, pub.bytes));
}

/** Curve parameters of an ECC public area, or an unsupported-input error. */
export function tpmEccCurve(pub: TpmtPublic): { name: 'P-256' | 'P-384' | 'P-521'; size: number } {
  const c = pub.ecc ? EC_CURVES[pub.ecc.curveId] : undefined;
  if (!c) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'ECC curve is not a NIST curve', { detail: { curveId: pub.ecc?.curveId ?? -1 } });
  return c;
}
