import { BytesKeyedCache, ParseError, VerificationError, concatBytes, copyBytes, digest, equalBytes, subtle, toHex, type Bytes } from '@custody/core';
import { TPM_ST_ATTEST, tpmAlgName, tpmHash, tpmHashByName, type TpmHashName } from './constants.js';
import { checkAkAttributes, describeAk, type AkAttributeCheck, type TpmAttestationKey } from './ak.js';
import { leftPad } from './spki.js';
import { PublicKeyMemo, hexOfEach } from './cache.js';
import type { TpmsAttest, TpmsQuoteInfo, TpmtSignature } from './structures.js';

/** PCR values of one bank, as read from the TPM next to the quote (untrusted until checked). */
export interface TpmPcrBank {
  hashAlg: number;
  hash: TpmHashName;
  values: Map<number, Bytes>;
}

/** A PCR bank from a list where entry i is PCR i (the form Azure and trustee evidence use). */
export function pcrBankFromList(bank: TpmHashName, values: readonly Uint8Array[]): TpmPcrBank {
  const h = tpmHashByName(bank)!;
  const map = new Map<number, Bytes>();
  values.forEach((v, i) => {
    if (v.length !== h.size) throw new ParseError('ERR_INPUT_MALFORMED', `PCR ${i} value is not a ${bank} digest`, { detail: { pcr: i, length: v.length } });
    map.set(i, copyBytes(v));
  });
  return { hashAlg: h.alg, hash: h.name, values: map };
}

/** The parts of a TPM quote, parsed. */
export interface TpmQuote {
  attest: TpmsAttest;
  signature: TpmtSignature;
  ak: TpmAttestationKey;
  pcrs: TpmPcrBank[];
}

export function requireQuoteInfo(attest: TpmsAttest): TpmsQuoteInfo {
  if (attest.type !== TPM_ST_ATTEST.quote || !attest.quote) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', 'TPMS_ATTEST is not a quote (TPM_ST_ATTEST_QUOTE)', { detail: { type: attest.type } });
  }
  return attest.quote;
}

// Imported public keys, keyed by algorithm and SPKI: importing dominates the cost of a verify.
const keyCache = new PublicKeyMemo<CryptoKey>();

const algTags = new Map<string, Map<string, Bytes>>();

/** The import parameters as bytes, the first part of the cache key (the SPKI is the second). */
function algTag(name: string, param: string): Bytes {
  let byParam = algTags.get(name);
  if (!byParam) algTags.set(name, (byParam = new Map<string, Bytes>()));
  let tag = byParam.get(param);
  if (!tag) byParam.set(param, (tag = new TextEncoder().encode(`${name}|${param}`)));
  return tag;
}

type VerifyKeyAlg = { name: 'RSASSA-PKCS1-v1_5' | 'RSA-PSS'; hash: string } | { name: 'ECDSA'; namedCurve: string };

function importVerifyKey(spki: Bytes, alg: VerifyKeyAlg): Promise<CryptoKey> {
  const tag = algTag(alg.name, 'hash' in alg ? alg.hash : alg.namedCurve);
  return keyCache.get([tag, spki], () => subtle.importKey('spki', copyBytes(spki), alg, false, ['verify']));
}

/**
 * Starts one signature check. With the AK's key already imported the WebCrypto job is started
 * before this returns, so the caller's synchronous work overlaps it; otherwise after the import.
 */
function startVerify(spki: Bytes, alg: VerifyKeyAlg, params: AlgorithmIdentifier | RsaPssParams | EcdsaParams, sig: Uint8Array, data: Uint8Array): Promise<boolean> {
  const key = keyCache.peek([algTag(alg.name, 'hash' in alg ? alg.hash : alg.namedCurve), spki]);
  if (key) return verifyWith(params, key, sig, data);
  return importVerifyKey(spki, alg).then((k) => verifyWith(params, k, sig, data));
}

async function verifyWith(params: AlgorithmIdentifier | RsaPssParams | EcdsaParams, key: CryptoKey, sig: Uint8Array, data: Uint8Array): Promise<boolean> {
  try {
    // WebCrypto copies its inputs when called; only views of shared memory need a copy first.
    return await subtle.verify(params, key, ownBytes(sig), ownBytes(data));
  } catch {
    return false;
  }
}

/**
 * Checks the TPMT_SIGNATURE over the exact TPMS_ATTEST bytes with the attestation key, and,
 * when the key came as a TPM public area, that it is a restricted signing key using this scheme.
 * Returns a one-line account for the pipeline.
 */
export async function verifyTpmQuoteSignature(attest: TpmsAttest, sig: TpmtSignature, ak: TpmAttestationKey): Promise<{ detail: string; attributes: AkAttributeCheck }> {
  const hash = tpmHash(sig.hashAlg);
  if (!hash) throw new ParseError('ERR_INPUT_UNSUPPORTED', `signature hash ${tpmAlgName(sig.hashAlg)} is not supported`, { detail: { hashAlg: sig.hashAlg } });
  const attributes = checkAkAttributes(ak, sig.sigAlg, sig.hashAlg);
  const what = `${sig.scheme.toUpperCase()}/${hash.webcrypto} signature by the ${describeAk(ak)} AK`;
  let ok = false;
  if (sig.scheme === 'rsassa' || sig.scheme === 'rsapss') {
    if (ak.key.kty !== 'RSA') throw new VerificationError('ERR_EVIDENCE_SIGNATURE', `${sig.scheme} signature but the AK is an EC key`);
    const k = ak.key.n.length;
    if (sig.sig.length !== k) throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'RSA signature length differs from the AK modulus length', { detail: { signature: sig.sig.length, modulus: k } });
    if (sig.scheme === 'rsassa') {
      ok = await startVerify(ak.spki, { name: 'RSASSA-PKCS1-v1_5', hash: hash.webcrypto }, { name: 'RSASSA-PKCS1-v1_5' }, sig.sig, attest.bytes);
    } else {
      const key = await importVerifyKey(ak.spki, { name: 'RSA-PSS', hash: hash.webcrypto });
      // TPMs since spec 1.38 use a salt as long as the digest; earlier ones used the largest salt.
      ok = await verifyWith({ name: 'RSA-PSS', saltLength: hash.size }, key, sig.sig, attest.bytes);
      if (!ok) ok = await verifyWith({ name: 'RSA-PSS', saltLength: k - hash.size - 2 }, key, sig.sig, attest.bytes);
    }
  } else if (sig.scheme === 'ecdsa') {
    if (ak.key.kty !== 'EC') throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'ECDSA signature but the AK is an RSA key');
    const size = curveSize(ak.key.curve);
    let raw: Bytes;
    try {
      raw = concatBytes(leftPad(sig.r, size, 'r'), leftPad(sig.s, size, 's'));
    } catch (e) {
      throw new VerificationError('ERR_EVIDENCE_SIGNATURE', 'ECDSA r or s is longer than the AK curve size', { cause: e });
    }
    ok = await startVerify(ak.spki, { name: 'ECDSA', namedCurve: ak.key.curve }, { name: 'ECDSA', hash: hash.webcrypto }, raw, attest.bytes);
  } else {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `${sig.scheme} quote signatures are not supported`, { detail: { sigAlg: sig.sigAlg } });
  }
  if (!ok) throw new VerificationError('ERR_EVIDENCE_SIGNATURE', `${what} does not verify over TPMS_ATTEST`);
  return { detail: `${what} verifies over TPMS_ATTEST`, attributes };
}

function ownBytes(b: Uint8Array): Bytes {
  return b.buffer instanceof ArrayBuffer ? (b as Bytes) : copyBytes(b);
}

function curveSize(curve: 'P-256' | 'P-384' | 'P-521'): number {
  return curve === 'P-256' ? 32 : curve === 'P-384' ? 48 : 66;
}

/**
 * H(concatenation of the selected PCR values, bank by bank in selection order, each bank in
 * ascending PCR order), with the signing scheme's hash: what TPM2_Quote puts in pcrDigest.
 */
export async function computePcrDigest(quote: TpmsQuoteInfo, banks: TpmPcrBank[], hashAlg: number): Promise<Bytes> {
  const hash = tpmHash(hashAlg);
  if (!hash) throw new ParseError('ERR_INPUT_UNSUPPORTED', `PCR digest hash ${tpmAlgName(hashAlg)} is not supported`, { detail: { hashAlg } });
  const parts: Uint8Array[] = [];
  for (const sel of quote.pcrSelect) {
    if (sel.pcrs.length === 0) continue;
    const bank = banks.find((b) => b.hashAlg === sel.hashAlg);
    if (!bank) throw new VerificationError('ERR_TPM_PCR_MISSING', `the quote selects the ${tpmAlgName(sel.hashAlg)} bank but the evidence has no values for it`, { detail: { bank: sel.hashAlg } });
    const size = tpmHash(sel.hashAlg)!.size;
    for (const i of sel.pcrs) {
      const v = bank.values.get(i);
      if (!v) throw new VerificationError('ERR_TPM_PCR_MISSING', `PCR ${i} of the ${bank.hash} bank is selected by the quote but has no value`, { detail: { pcr: i, bank: bank.hash } });
      if (v.length !== size) throw new ParseError('ERR_INPUT_MALFORMED', `PCR ${i} value is not a ${bank.hash} digest`, { detail: { pcr: i, length: v.length } });
      parts.push(v);
    }
  }
  const data = concatBytes(...parts);
  // A machine's PCR values stay the same across its quotes until it reboots or measures more, so
  // the digest is memoised by the exact bytes hashed (and the hash): a hit saves a WebCrypto
  // round trip. The comparison with the signed pcrDigest still runs on every verification.
  const key = [Uint8Array.of(hashAlg >>> 8, hashAlg & 0xff), data];
  let computed = pcrDigestCache.get(key);
  if (!computed) {
    computed = await digest(hash.webcrypto, data);
    pcrDigestCache.set(key, computed);
  }
  return computed.slice();
}

const pcrDigestCache = new BytesKeyedCache<Bytes>(256);

/** Checks that the PCR values given with the quote hash to its signed pcrDigest. */
export async function verifyPcrDigest(attest: TpmsAttest, sig: TpmtSignature, banks: TpmPcrBank[]): Promise<string> {
  const info = requireQuoteInfo(attest);
  const computed = await computePcrDigest(info, banks, sig.hashAlg);
  if (!equalBytes(computed, info.pcrDigest)) {
    throw new VerificationError('ERR_TPM_PCR_DIGEST', 'the PCR values do not hash to the quoted pcrDigest', { detail: { pcrDigest: toHex(info.pcrDigest), computed: toHex(computed) } });
  }
  return `pcrDigest ${toHex(info.pcrDigest).slice(0, 16)}… = ${tpmAlgName(sig.hashAlg)}(${describeSelection(info)})`;
}

export function describeSelection(info: TpmsQuoteInfo): string {
  const parts = info.pcrSelect.filter((s) => s.pcrs.length > 0).map((s) => `${tpmAlgName(s.hashAlg)}:${compressRanges(s.pcrs)}`);
  return parts.length ? parts.join(' + ') : 'no PCRs';
}

function compressRanges(xs: number[]): string {
  const out: string[] = [];
  for (let i = 0; i < xs.length; ) {
    let j = i;
    while (j + 1 < xs.length && xs[j + 1] === xs[j]! + 1) j++;
    out.push(i === j ? `${xs[i]}` : `${xs[i]}-${xs[j]}`);
    i = j + 1;
  }
  return out.join(',');
}

/** The qualifying data (extraData) must equal the nonce the verifier issued. */
export function checkQuoteNonce(attest: TpmsAttest, nonce: Uint8Array): string {
  if (!equalBytes(attest.extraData, nonce)) {
    throw new VerificationError('ERR_EVIDENCE_NONCE', 'the quote qualifying data (extraData) is not the expected nonce', { detail: { expectedLength: nonce.length, actualLength: attest.extraData.length } });
  }
  return `qualifying data equals the expected ${nonce.length}-byte nonce`;
}

const pcrNameLists = new Map<string, string[]>();

/** `pcr0`..`pcr63` with a bank prefix, built once: fresh key strings per verification cost more than the values. */
function pcrNames(prefix: string): string[] {
  let names = pcrNameLists.get(prefix);
  if (!names) {
    names = Array.from({ length: 64 }, (_, i) => `${prefix}pcr${i}`);
    pcrNameLists.set(prefix, names);
  }
  return names;
}

/**
 * Named PCR values for the claims: only PCRs the quote selected (others were not signed). The
 * SHA-256 bank, or else the first selected bank, gives `pcrN`; other banks give `<bank>_pcrN`.
 */
export function quoteMeasurements(attest: TpmsAttest, banks: TpmPcrBank[]): { measurements: Record<string, string>; primaryBank?: TpmHashName } {
  const info = attest.quote;
  const measurements: Record<string, string> = {};
  if (!info) return { measurements };
  const selected = info.pcrSelect.filter((s) => s.pcrs.length > 0 && s.hash !== undefined);
  const primary = selected.find((s) => s.hash === 'sha256') ?? selected[0];
  const keys: string[] = [];
  const values: Uint8Array[] = [];
  for (const sel of selected) {
    const bank = banks.find((b) => b.hashAlg === sel.hashAlg);
    if (!bank) continue;
    const prefix = sel === primary ? '' : `${sel.hash}_`;
    const names = pcrNames(prefix);
    for (const i of sel.pcrs) {
      const v = bank.values.get(i);
      if (!v) continue;
      keys.push(names[i] ?? `${prefix}pcr${i}`);
      values.push(v);
    }
  }
  const hex = hexOfEach(values);
  for (let i = 0; i < keys.length; i++) measurements[keys[i]!] = hex[i]!;
  return primary?.hash ? { measurements, primaryBank: primary.hash } : { measurements };
}

export interface TpmQuoteVerification {
  signature: string;
  pcrDigest: string;
  nonce?: string;
  akAttributes: AkAttributeCheck;
}

/**
 * Verifies a parsed quote in one call (signature, PCR digest, nonce when given); throws the
 * first failure as a typed error. For callers with their own pipeline (e.g. Azure vTPM), which
 * need the TPM checks without the TPM evidence file format.
 */
export async function verifyTpmQuote(q: TpmQuote, options: { nonce?: Uint8Array } = {}): Promise<TpmQuoteVerification> {
  requireQuoteInfo(q.attest);
  const sig = await verifyTpmQuoteSignature(q.attest, q.signature, q.ak);
  const pcrDigest = await verifyPcrDigest(q.attest, q.signature, q.pcrs);
  const out: TpmQuoteVerification = { signature: sig.detail, pcrDigest, akAttributes: sig.attributes };
  if (options.nonce) out.nonce = checkQuoteNonce(q.attest, options.nonce);
  return out;
}
