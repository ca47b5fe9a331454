import {
  CborTag,
  CustodyError,
  ParseError,
  decodeCbor,
  parseCoseSign1,
  parseDer,
  parsePublicKeyInfo,
  toHex,
  verifyCoseSign1,
  copyBytes,
  type CborMap,
  type CborValue,
} from '@custody/core';
import type { Platform } from '@custody/attest';
import { POLICY_API_VERSION, validatePolicyObject, type PolicyDocument } from '../reference-values.js';

/**
 * Imports reference values from a CoRIM (draft-ietf-rats-corim): a tagged unsigned CoRIM map
 * (CBOR tag 501) or a signed one (COSE_Sign1, tag 18, whose payload is the tag-501 map). Each
 * CoMID (tag 506, a byte string holding the CBOR concise-mid-tag) contributes its
 * reference-value triples (triples key 0): `[environment-map, [+ measurement-map]]`.
 *
 * What is read from a measurement-map (`{0: mkey, 1: mval}`):
 * - `mkey` text names the claim directly (`measurement`, `mrtd`, `rtmr1`, `pcr7`, ...); an
 *   unsigned `mkey` N is `pcrN` on TPM and Nitro, `measurementN` on NVIDIA (SPDM index);
 * - `mval.digests` (key 2, `[+ [alg, bytes]]`) and `mval.raw-value` (key 4, tag 560 bytes):
 *   accepted values of that claim (several digests of one measurement are alternatives);
 * - `mval.integrity-registers` (key 14, `{index: digests}`): PCR-like registers, named `pcrN`
 *   (unsigned index) or by their text name;
 * - `mval.svn` (key 1): a `min-svn` (tag 553) becomes `tcb.minSvn[mkey]`; an exact SVN (tag 552
 *   or a bare uint) is imported as a minimum too (the direction that rejects rollbacks).
 * Endorsements, keys and conditional triples are not imported.
 */

export const MAX_CORIM_BYTES = 1024 * 1024;
const TAG_UNSIGNED_CORIM = 501;
const TAG_COMID = 506;
const TAG_RAW_BYTES = 560;
const TAG_SVN = 552;
const TAG_MIN_SVN = 553;
const TAG_COSE_SIGN1 = 18;
const MAX_VALUES = 4096;

/** One imported reference value, before it becomes part of a policy. */
export interface CorimReferenceValue {
  /** The environment the value is for (class-map vendor/model/layer/index, when given). */
  environment: { vendor?: string; model?: string; layer?: number; index?: number };
  /** Claim name (see the mapping above). */
  name: string;
  /** Accepted values, lowercase hex. */
  values: string[];
  /** Minimum SVN, when the measurement carried one. */
  minSvn?: number;
}

export interface CorimImport {
  /** The CoRIM id (text, or hex of a byte-string/UUID id). */
  corimId: string;
  /** Whether the CoRIM was signed, and whether the signature was verified. */
  signed: boolean;
  verified: boolean;
  referenceValues: CorimReferenceValue[];
}

export interface ReadCorimOptions {
  /** The platform the CoRIM describes; decides how numeric keys are named. */
  platform: Platform;
  /** SubjectPublicKeyInfo (DER) of the CoRIM signer; required for a signed CoRIM unless `allowUnverified`. */
  signerSpki?: Uint8Array;
  /** Accept a signed CoRIM without checking its signature (you vouch for the file yourself). */
  allowUnverified?: boolean;
}

function corimError(message: string): CustodyError {
  return new CustodyError('ERR_POLICY_CORIM', message);
}

function malformed(message: string): ParseError {
  return new ParseError('ERR_INPUT_MALFORMED', `CoRIM: ${message}`);
}

/** Reads the reference-value triples of a CoRIM. Errors: ERR_INPUT_* (CBOR/COSE), ERR_POLICY_CORIM, ERR_COLLATERAL_INVALID (bad signature). */
export async function readCorim(bytes: Uint8Array, options: ReadCorimOptions): Promise<CorimImport> {
  if (bytes.length > MAX_CORIM_BYTES) throw new ParseError('ERR_INPUT_TOO_LARGE', 'CoRIM is too large', { detail: { size: bytes.length, max: MAX_CORIM_BYTES } });
  let top = decodeCbor(bytes, { maxSize: MAX_CORIM_BYTES, maxDepth: 24 });
  let signed = false;
  let verified = false;
  if (top instanceof CborTag && Number(top.tag) === TAG_COSE_SIGN1) {
    signed = true;
    const msg = parseCoseSign1(bytes, { maxSize: MAX_CORIM_BYTES, requireTag: true });
    if (!msg.payload) throw corimError('signed CoRIM has a detached payload (hash envelope), which this importer does not resolve');
    if (options.signerSpki) {
      const key = parsePublicKeyInfo(parseDer(copyBytes(options.signerSpki)));
      if (!(await verifyCoseSign1(msg, key))) throw new CustodyError('ERR_COLLATERAL_INVALID', 'CoRIM signature does not verify with the given key');
      verified = true;
    } else if (!options.allowUnverified) {
      throw corimError('signed CoRIM: give the signer key, or allow an unverified import');
    }
    top = decodeCbor(msg.payload, { maxSize: MAX_CORIM_BYTES, maxDepth: 24 });
  }
  if (!(top instanceof CborTag) || Number(top.tag) !== TAG_UNSIGNED_CORIM) throw corimError('not a CoRIM: expected CBOR tag 501 (or a COSE_Sign1 around it)');
  const corim = asMap(top.value, 'corim-map');
  const id = corim.get(0);
  const tags = corim.get(1);
  if (id === undefined) throw malformed('corim-map has no id (key 0)');
  if (!Array.isArray(tags) || tags.length === 0) throw malformed('corim-map has no tags (key 1)');
  const referenceValues: CorimReferenceValue[] = [];
  for (const t of tags) {
    if (!(t instanceof CborTag) || Number(t.tag) !== TAG_COMID) continue; // CoSWID and CoTL carry no reference values for us
    if (!(t.value instanceof Uint8Array)) throw malformed('CoMID tag 506 does not hold a byte string');
    const comid = asMap(decodeCbor(t.value, { maxSize: MAX_CORIM_BYTES, maxDepth: 20 }), 'concise-mid-tag');
    const triples = asMap(comid.get(4), 'triples-map');
    const refs = triples.get(0);
    if (refs === undefined) continue;
    if (!Array.isArray(refs)) throw malformed('reference-triples is not an array');
    for (const triple of refs) readReferenceTriple(triple, options.platform, referenceValues);
  }
  if (referenceValues.length === 0) throw corimError('the CoRIM holds no reference-value triples with digests, raw values or SVNs');
  return { corimId: idText(id), signed, verified, referenceValues };
}

function readReferenceTriple(triple: CborValue, platform: Platform, out: CorimReferenceValue[]): void {
  if (!Array.isArray(triple) || triple.length !== 2) throw malformed('reference-triple-record is not [environment, measurements]');
  const env = environmentOf(asMap(triple[0], 'environment-map'));
  const measurements = triple[1];
  if (!Array.isArray(measurements)) throw malformed('reference claims are not an array of measurement-map');
  for (const m of measurements) {
    const mm = asMap(m, 'measurement-map');
    const mval = asMap(mm.get(1), 'measurement-values-map');
    const mkey = mm.get(0);
    const name = mkey === undefined ? undefined : nameOf(mkey, platform);
    const values = [...digestsOf(mval.get(2)), ...rawValueOf(mval.get(4))];
    const svn = svnOf(mval.get(1));
    if (name !== undefined && (values.length > 0 || svn !== undefined)) {
      const rv: CorimReferenceValue = { environment: env, name, values };
      if (svn !== undefined) rv.minSvn = svn;
      push(out, rv);
    }
    const registers = mval.get(14);
    if (registers !== undefined) {
      for (const [k, d] of asMap(registers, 'integrity-registers')) {
        const regName = typeof k === 'string' ? k : `pcr${Number(k)}`;
        const vs = digestsOf(d);
        if (vs.length > 0) push(out, { environment: env, name: regName, values: vs });
      }
    }
  }
}

function push(out: CorimReferenceValue[], rv: CorimReferenceValue): void {
  if (out.length >= MAX_VALUES) throw new ParseError('ERR_INPUT_TOO_LARGE', 'CoRIM holds too many reference values', { detail: { max: MAX_VALUES } });
  out.push(rv);
}

function asMap(v: CborValue, what: string): CborMap {
  if (!(v instanceof Map)) throw malformed(`${what} is not a map`);
  return v;
}

function environmentOf(env: CborMap): CorimReferenceValue['environment'] {
  const out: CorimReferenceValue['environment'] = {};
  const cls = env.get(0);
  if (cls instanceof Map) {
    const vendor = cls.get(1);
    const model = cls.get(2);
    const layer = cls.get(3);
    const index = cls.get(4);
    if (typeof vendor === 'string') out.vendor = vendor.slice(0, 256);
    if (typeof model === 'string') out.model = model.slice(0, 256);
    if (typeof layer === 'number') out.layer = layer;
    if (typeof index === 'number') out.index = index;
  }
  return out;
}

function nameOf(mkey: CborValue, platform: Platform): string | undefined {
  if (typeof mkey === 'string') return /^[A-Za-z0-9_.:-]{1,64}$/.test(mkey) ? mkey : undefined;
  if (typeof mkey === 'number' && Number.isInteger(mkey) && mkey >= 0) {
    if (platform === 'tpm' || platform === 'azure-vtpm' || platform === 'nitro') return `pcr${mkey}`;
    if (platform === 'nvidia') return `measurement${mkey}`;
    return String(mkey);
  }
  return undefined; // OID and UUID keys name nothing in the claims vocabulary
}

function digestsOf(v: CborValue): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw malformed('digests is not an array');
  const out: string[] = [];
  for (const d of v) {
    if (!Array.isArray(d) || d.length !== 2 || !(d[1] instanceof Uint8Array)) throw malformed('digest is not [alg, bytes]');
    if (typeof d[0] !== 'number' && typeof d[0] !== 'string') throw malformed('digest algorithm is not an integer or text');
    if (d[1].length === 0) continue;
    out.push(toHex(d[1]));
  }
  return out;
}

function rawValueOf(v: CborValue): string[] {
  if (v === undefined) return [];
  if (v instanceof CborTag && Number(v.tag) === TAG_RAW_BYTES && v.value instanceof Uint8Array) return v.value.length > 0 ? [toHex(v.value)] : [];
  if (v instanceof Uint8Array) return v.length > 0 ? [toHex(v)] : [];
  return []; // masked raw values compare under a mask, which the policy schema cannot express
}

function svnOf(v: CborValue): number | undefined {
  if (v === undefined) return undefined;
  const n = v instanceof CborTag && (Number(v.tag) === TAG_SVN || Number(v.tag) === TAG_MIN_SVN) ? v.value : v;
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > 2 ** 32) throw malformed('svn is not an unsigned integer');
  return n;
}

function idText(id: CborValue): string {
  if (typeof id === 'string') return id.slice(0, 256);
  if (id instanceof Uint8Array) return toHex(id.subarray(0, 128));
  if (id instanceof CborTag && id.value instanceof Uint8Array) return toHex(id.value.subarray(0, 128));
  throw malformed('corim id is neither text nor bytes');
}

export interface CorimPolicyOptions {
  id: string;
  version: number;
  description?: string;
  /** Accepted signer roots for the platform (required for a plain TPM: the AK SPKI SHA-256s). */
  signerRoots?: string[];
}

/**
 * Turns imported reference values into a policy document for one platform. Several values for
 * one name are alternatives; values outside every environment are kept (a CoRIM describing
 * several environments should be split by the caller first). The result is validated like any
 * policy file (ERR_POLICY_INVALID when, say, a digest has the wrong length for the field).
 */
export function corimToPolicy(imported: CorimImport, platform: Platform, options: CorimPolicyOptions): PolicyDocument {
  // Maps: claim names come from the CoRIM, and `toString` or `__proto__` must not find Object.prototype's.
  const measurements = new Map<string, string[]>();
  const minSvn = new Map<string, number>();
  for (const rv of imported.referenceValues) {
    if (rv.values.length > 0) measurements.set(rv.name, [...new Set([...(measurements.get(rv.name) ?? []), ...rv.values])]);
    if (rv.minSvn !== undefined) minSvn.set(rv.name, Math.max(minSvn.get(rv.name) ?? 0, rv.minSvn));
  }
  const section = sectionFor(platform, measurements);
  if (minSvn.size > 0) section.tcb = { minSvn: Object.fromEntries(minSvn) };
  if (options.signerRoots) section.signerRoots = options.signerRoots;
  const doc: Record<string, unknown> = {
    apiVersion: POLICY_API_VERSION,
    id: options.id,
    version: options.version,
    description: options.description ?? `imported from CoRIM ${imported.corimId}${imported.signed ? (imported.verified ? ' (signature verified)' : ' (signature NOT verified)') : ''}`,
    platforms: { [platform]: section },
  };
  return validatePolicyObject(doc);
}

/** Places claim names in the platform's own fields, so code and configuration stay apart. */
function sectionFor(platform: Platform, m: ReadonlyMap<string, string[]>): Record<string, unknown> {
  const section: Record<string, unknown> = {};
  const generic = new Map<string, string[]>();
  const fields: Record<Platform, readonly string[]> = {
    'sev-snp': ['measurement', 'hostData', 'idKeyDigest', 'authorKeyDigest', 'familyId', 'imageId'],
    tdx: ['mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'rtmr3', 'mrconfigid', 'mrowner', 'mrownerconfig', 'mrseam', 'mrsignerseam', 'mrservicetd'],
    sim: ['measurement'],
    nitro: [],
    tpm: [],
    'azure-vtpm': [],
    nvidia: [],
  };
  const pcrs: Record<string, Record<string, string[]>> = {};
  const indices: Record<string, string[]> = {};
  for (const [name, values] of m) {
    const pcr = /^pcr([0-9]|[12][0-9]|3[01])$/.exec(name);
    const spdm = /^measurement([1-9][0-9]{0,2})$/.exec(name);
    if (fields[platform].includes(name)) section[name] = values;
    else if (pcr && platform === 'nitro') (pcrs.nitro ??= {})[pcr[1]!] = values;
    else if (pcr && (platform === 'tpm' || platform === 'azure-vtpm')) {
      for (const v of values) {
        const bank = ({ 40: 'sha1', 64: 'sha256', 96: 'sha384', 128: 'sha512' } as Record<number, string>)[v.length];
        if (!bank) throw new CustodyError('ERR_POLICY_CORIM', `${name} has a ${v.length / 2}-byte value that fits no PCR bank`);
        ((pcrs[bank] ??= {})[pcr[1]!] ??= []).push(v);
      }
    } else if (spdm && platform === 'nvidia' && Number(spdm[1]) <= 254) indices[spdm[1]!] = values;
    else generic.set(name, values);
  }
  if (platform === 'nitro' && pcrs.nitro) section.pcrs = pcrs.nitro;
  if ((platform === 'tpm' || platform === 'azure-vtpm') && Object.keys(pcrs).length > 0) section.pcrs = pcrs;
  if (Object.keys(indices).length > 0) section.indices = indices;
  if (generic.size > 0) section.measurements = Object.fromEntries(generic);
  return section;
}
