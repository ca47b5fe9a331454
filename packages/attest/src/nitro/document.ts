import { ParseError, assertMaxSize, cborTypeName, decodeCbor, parseCoseSign1, type Bytes, type CborMap, type CborValue, type CoseSign1 } from '@custody/core';

/**
 * AWS Nitro Enclaves attestation document, as the Nitro Secure Module (NSM) returns it: a
 * COSE_Sign1 (ES384) whose payload is a CBOR map (AWS "Verifying the root of trust"):
 *
 * ```cddl
 * AttestationDocument = {
 *   module_id: text, timestamp: uint .size 8, digest: "SHA384",
 *   pcrs: { + index => pcr }, certificate: cert, cabundle: [* cert],
 *   ? public_key: user_data, ? user_data: user_data, ? nonce: user_data }
 * cert = bytes .size (1..1024); pcr = bytes .size (32/48/64); index = 0..31
 * ```
 * with AWS's syntactic checks: module_id non-empty, timestamp > 0, 1..32 PCRs, cabundle
 * non-empty, public_key 1..1024 bytes, user_data and nonce 0..512 bytes. Optional fields may
 * be present as CBOR null (the NSM writes them so) and then count as absent.
 */
export interface NitroAttestationDocument {
  cose: CoseSign1;
  moduleId: string;
  /** Milliseconds since the Unix epoch. */
  timestamp: number;
  digest: 'SHA384';
  /** PCR index to value, in index order. */
  pcrs: Map<number, Bytes>;
  /** The signing (leaf) certificate, DER. */
  certificate: Bytes;
  /** Root first, then intermediates towards the leaf, DER. */
  cabundle: Bytes[];
  publicKey?: Bytes;
  userData?: Bytes;
  nonce?: Bytes;
  /** Payload keys this parser does not know (signed, so kept and reported, not trusted). */
  unknownFields: string[];
}

/** Upper bound on a whole document: leaf + up to 16 CA certificates at 1 KiB, PCRs and user fields. */
export const MAX_NITRO_DOCUMENT_SIZE = 32 * 1024;
const MAX_CERT = 1024;
const MAX_CABUNDLE = 16;
const MAX_PUBLIC_KEY = 1024;
const MAX_USER_DATA = 512;
const MAX_NONCE = 512;
const MAX_PCRS = 32;
const PCR_SIZES = new Set([32, 48, 64]);
const DIGEST_SIZES: Record<string, number> = { SHA384: 48 };
/** Largest timestamp a JavaScript Date can hold (ms). */
const MAX_TIMESTAMP = 8.64e15;
const KNOWN = new Set(['module_id', 'timestamp', 'digest', 'pcrs', 'certificate', 'cabundle', 'public_key', 'user_data', 'nonce']);

// The NSM's protected header {1: -35} (alg ES384) right after the array head.
const NSM_PROTECTED = [0x44, 0xa1, 0x01, 0x38, 0x22];

/** Cheap sniff: a COSE_Sign1 array (tagged or not) whose protected header is the NSM's ES384 one. */
export function looksLikeNitroDocument(b: Uint8Array): boolean {
  const start = b[0] === 0xd2 ? 1 : 0;
  if (b[start] !== 0x84) return false;
  for (let i = 0; i < NSM_PROTECTED.length; i++) if (b[start + 1 + i] !== NSM_PROTECTED[i]) return false;
  return true;
}

/** Parses a Nitro attestation document with every field's type and size checked. No signature or chain check. */
export function parseNitroDocument(bytes: Uint8Array): NitroAttestationDocument {
  assertMaxSize(bytes, MAX_NITRO_DOCUMENT_SIZE, 'Nitro attestation document');
  const cose = parseCoseSign1(bytes, { maxSize: MAX_NITRO_DOCUMENT_SIZE });
  if (cose.payload === null) throw malformed('payload', 'the COSE_Sign1 payload is detached');
  const payload = decodeCbor(cose.payload, { maxSize: MAX_NITRO_DOCUMENT_SIZE, maxDepth: 4, maxItems: 256 });
  if (!(payload instanceof Map)) throw malformed('payload', `the payload is ${cborTypeName(payload)}, not a map`);
  const unknownFields: string[] = [];
  for (const k of payload.keys()) {
    if (typeof k !== 'string') throw malformed('payload', 'a payload key is not a text string');
    if (!KNOWN.has(k)) unknownFields.push(k.slice(0, 64));
  }

  const moduleId = payload.get('module_id');
  if (typeof moduleId !== 'string' || moduleId.length === 0) throw malformed('module_id', 'module_id is not a non-empty text string');

  const digest = payload.get('digest');
  if (typeof digest !== 'string') throw malformed('digest', 'digest is not a text string');
  const digestSize = Object.hasOwn(DIGEST_SIZES, digest) ? DIGEST_SIZES[digest] : undefined;
  if (digestSize === undefined) throw new ParseError('ERR_INPUT_UNSUPPORTED', `digest "${digest.slice(0, 16)}" is not SHA384`, { detail: { field: 'digest' } });

  const timestamp = payload.get('timestamp');
  if (typeof timestamp !== 'number' || timestamp <= 0 || timestamp > MAX_TIMESTAMP) throw malformed('timestamp', 'timestamp is not a positive millisecond time');

  const pcrs = parsePcrs(payload.get('pcrs'), digestSize);

  const certificate = bytesField(payload, 'certificate', 1, MAX_CERT, true)!;
  const bundle = payload.get('cabundle');
  if (!Array.isArray(bundle) || bundle.length === 0) throw malformed('cabundle', 'cabundle is not a non-empty array');
  if (bundle.length > MAX_CABUNDLE) throw new ParseError('ERR_INPUT_TOO_LARGE', `cabundle holds more than ${MAX_CABUNDLE} certificates`, { detail: { field: 'cabundle' } });
  const cabundle = bundle.map((c, i) => {
    if (!(c instanceof Uint8Array) || c.length < 1 || c.length > MAX_CERT) throw malformed('cabundle', `cabundle[${i}] is not 1..${MAX_CERT} bytes`);
    return c;
  });

  const doc: NitroAttestationDocument = { cose, moduleId, timestamp, digest: 'SHA384', pcrs, certificate, cabundle, unknownFields };
  const publicKey = bytesField(payload, 'public_key', 1, MAX_PUBLIC_KEY, false);
  const userData = bytesField(payload, 'user_data', 0, MAX_USER_DATA, false);
  const nonce = bytesField(payload, 'nonce', 0, MAX_NONCE, false);
  if (publicKey) doc.publicKey = publicKey;
  if (userData) doc.userData = userData;
  if (nonce) doc.nonce = nonce;
  return doc;
}

function parsePcrs(v: CborValue, digestSize: number): Map<number, Bytes> {
  if (!(v instanceof Map)) throw malformed('pcrs', 'pcrs is not a map');
  if (v.size < 1 || v.size > MAX_PCRS) throw malformed('pcrs', `pcrs must hold 1..${MAX_PCRS} registers`);
  const out = new Map<number, Bytes>();
  for (const [k, value] of [...v].sort(([a], [b]) => Number(a) - Number(b))) {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k >= MAX_PCRS) throw malformed('pcrs', 'a PCR index is not an integer 0..31');
    if (!(value instanceof Uint8Array) || !PCR_SIZES.has(value.length)) throw malformed('pcrs', `PCR${k} is not 32, 48 or 64 bytes`);
    if (value.length !== digestSize) throw malformed('pcrs', `PCR${k} is ${value.length} bytes, not the ${digestSize} of the document digest`);
    out.set(k, value);
  }
  for (const i of [0, 1, 2]) if (!out.has(i)) throw malformed('pcrs', `PCR${i} (enclave image, kernel, application) is missing`);
  return out;
}

function bytesField(m: CborMap, name: string, min: number, max: number, required: boolean): Bytes | undefined {
  const v = m.get(name);
  if (v === undefined || v === null) {
    if (required) throw malformed(name, `${name} is missing`);
    return undefined;
  }
  if (!(v instanceof Uint8Array)) throw malformed(name, `${name} is ${cborTypeName(v)}, not bytes`);
  if (v.length < min || v.length > max) throw malformed(name, `${name} is ${v.length} bytes, not ${min}..${max}`);
  return v;
}

function malformed(field: string, what: string): ParseError {
  return new ParseError('ERR_INPUT_MALFORMED', `Nitro attestation document: ${what}`, { detail: { field } });
}
