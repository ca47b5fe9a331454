/**
 * Wrapping a secret to a TEE's ephemeral public key with HPKE base mode: how the key broker
 * releases a key to an attested workload.
 *
 * Envelope (version 1), binary and canonical (one encoding per value, no trailing bytes):
 *
 *   WrappedKey {
 *     version   (8)  = 0x01,
 *     kem_id    (16),
 *     kdf_id    (16),
 *     aead_id   (16),            never 0xFFFF (export-only)
 *     enc       (8 * Nenc),      length fixed by kem_id
 *     ciphertext(..),            HPKE Seal output, at least Nt bytes, to the end
 *   }
 *
 * info = "custody key wrap v1" || 0x00 || version || kem_id || kdf_id || aead_id
 * aad  = RFC 8785 canonical JSON of the release context (for example
 *        {"key":"tenant/name","version":3,"session":"..."}); "{}" when there is none.
 *
 * The recipient must know the context it expects (its session, the key it asked for), so the
 * context is not carried in the envelope: a wrapped key moved to another session or key name
 * fails to open with ERR_HPKE_OPEN.
 */
import { concatBytes, utf8, type Bytes } from '../bytes.js';
import { canonicalBytes } from '../canonical-json.js';
import type { RandomSource } from '../crypto.js';
import { ParseError } from '../errors.js';
import { assertMaxSize, ByteReader } from '../reader.js';
import { hpkeOpen, hpkeSeal } from './hpke.js';
import { AeadId, aeadParams, HpkeError, KdfId, kdfParams, KemId, kemParams, type HpkeSuiteIds } from './identifiers.js';
import { deserializeHpkePublicKey, type HpkeKeyPair, type HpkePublicKey } from './keys.js';
import type { HpkePrimitives } from './provider.js';

export const WRAPPED_KEY_VERSION = 1;
/** The `info` label; the full info is this, a zero byte, then the 7-byte envelope header. */
export const KEY_WRAP_INFO_LABEL = 'custody key wrap v1';
/** X25519, HKDF-SHA256, AES-256-GCM. */
export const KEY_WRAP_DEFAULT_SUITE: HpkeSuiteIds = { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes256Gcm };
/** Largest secret that can be wrapped (keys and small secrets, not data). */
export const MAX_WRAPPED_SECRET = 64 * 1024;
const HEADER_LEN = 7;

export interface WrappedKey {
  readonly version: number;
  readonly suite: HpkeSuiteIds;
  readonly enc: Bytes;
  readonly ciphertext: Bytes;
}

/** Values bound as aad; the recipient must present the same ones to unwrap. */
export type KeyWrapContext = Readonly<Record<string, string | number | boolean>>;

function header(suite: HpkeSuiteIds): Bytes {
  return new Uint8Array([WRAPPED_KEY_VERSION, suite.kem >> 8, suite.kem & 0xff, suite.kdf >> 8, suite.kdf & 0xff, suite.aead >> 8, suite.aead & 0xff]);
}

/** The exact HPKE info used for a suite. */
export function keyWrapInfo(suite: HpkeSuiteIds): Bytes {
  return concatBytes(utf8(KEY_WRAP_INFO_LABEL), new Uint8Array([0]), header(suite));
}

/** The exact HPKE aad used for a context: its RFC 8785 canonical JSON. */
export function keyWrapAad(context: KeyWrapContext = {}): Bytes {
  return canonicalBytes(context);
}

function checkSuite(suite: HpkeSuiteIds): void {
  kemParams(suite.kem);
  kdfParams(suite.kdf);
  if (aeadParams(suite.aead).id === AeadId.ExportOnly) throw new HpkeError('ERR_HPKE_EXPORT_ONLY', 'an export-only suite cannot wrap keys');
}

export function encodeWrappedKey(w: WrappedKey): Bytes {
  if (w.version !== WRAPPED_KEY_VERSION) throw new HpkeError('ERR_INPUT_UNSUPPORTED', 'unknown wrapped-key version', { detail: { version: w.version } });
  checkSuite(w.suite);
  const nEnc = kemParams(w.suite.kem).nEnc;
  if (w.enc.length !== nEnc) throw new HpkeError('ERR_HPKE_PARAMS', 'enc has the wrong length for the KEM', { detail: { length: w.enc.length, expected: nEnc } });
  return concatBytes(header(w.suite), w.enc, w.ciphertext);
}

/** Parses an envelope of untrusted bytes; does not decrypt. */
export function parseWrappedKey(bytes: Uint8Array): WrappedKey {
  assertMaxSize(bytes, HEADER_LEN + 133 + MAX_WRAPPED_SECRET + 16, 'wrapped key');
  const r = new ByteReader(bytes, 'wrapped key');
  const version = r.u8();
  if (version !== WRAPPED_KEY_VERSION) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'unknown wrapped-key version', { detail: { version } });
  const suite = { kem: r.u16be(), kdf: r.u16be(), aead: r.u16be() };
  checkSuite(suite);
  const enc = r.take(kemParams(suite.kem).nEnc);
  const nT = aeadParams(suite.aead).nT;
  if (r.remaining < nT) throw new ParseError('ERR_INPUT_TRUNCATED', 'wrapped key ciphertext shorter than the tag', { detail: { remaining: r.remaining, min: nT } });
  const ciphertext = r.take(r.remaining);
  return { version, suite, enc, ciphertext };
}

export interface WrapKeyOptions {
  /** The TEE's public key, imported or as raw bytes for `suite.kem`. */
  readonly recipientPublicKey: HpkePublicKey | Uint8Array;
  readonly suite?: HpkeSuiteIds;
  readonly context?: KeyWrapContext;
  /** Derives the ephemeral key from random bytes (tests); default is the platform generator. */
  readonly random?: RandomSource;
  /** The primitive provider; default the process-wide one. */
  readonly provider?: HpkePrimitives;
}

/** Wraps `secret` to the recipient; returns the encoded envelope. */
export async function wrapKey(secret: Uint8Array, options: WrapKeyOptions): Promise<Bytes> {
  const suite = options.suite ?? KEY_WRAP_DEFAULT_SUITE;
  checkSuite(suite);
  if (secret.length > MAX_WRAPPED_SECRET) throw new HpkeError('ERR_INPUT_TOO_LARGE', 'secret too large to wrap', { detail: { size: secret.length, max: MAX_WRAPPED_SECRET } });
  const provider = options.provider;
  const pk = options.recipientPublicKey instanceof Uint8Array ? await deserializeHpkePublicKey(suite.kem, options.recipientPublicKey, provider ? { provider } : {}) : options.recipientPublicKey;
  const sealed = await hpkeSeal(
    { suite, recipientPublicKey: pk, info: keyWrapInfo(suite), aad: keyWrapAad(options.context), ...(options.random ? { random: options.random } : {}), ...(provider ? { provider } : {}) },
    secret,
  );
  return encodeWrappedKey({ version: WRAPPED_KEY_VERSION, suite, enc: sealed.enc, ciphertext: sealed.ciphertext });
}

export interface UnwrapKeyOptions {
  readonly recipientKeyPair: HpkeKeyPair;
  /** Must equal the context the sender bound; default {}. */
  readonly context?: KeyWrapContext;
  /** Suites the recipient accepts; default any supported suite whose KEM matches its key. */
  readonly allowedSuites?: readonly HpkeSuiteIds[];
  /** The primitive provider; default the process-wide one. */
  readonly provider?: HpkePrimitives;
}

/** Opens an envelope; ERR_HPKE_OPEN if it was tampered with or bound to another context. */
export async function unwrapKey(envelope: Uint8Array, options: UnwrapKeyOptions): Promise<Bytes> {
  const w = parseWrappedKey(envelope);
  if (w.suite.kem !== options.recipientKeyPair.kem) {
    throw new HpkeError('ERR_HPKE_KEY', 'wrapped key is for another KEM', { detail: { kem: w.suite.kem, expected: options.recipientKeyPair.kem } });
  }
  if (options.allowedSuites && !options.allowedSuites.some((s) => s.kem === w.suite.kem && s.kdf === w.suite.kdf && s.aead === w.suite.aead)) {
    throw new HpkeError('ERR_HPKE_UNSUPPORTED', 'wrapped key uses a suite the recipient does not accept', { detail: { kem: w.suite.kem, kdf: w.suite.kdf, aead: w.suite.aead } });
  }
  return hpkeOpen(
    { suite: w.suite, recipientKeyPair: options.recipientKeyPair, enc: w.enc, info: keyWrapInfo(w.suite), aad: keyWrapAad(options.context), ...(options.provider ? { provider: options.provider } : {}) },
    w.ciphertext,
  );
}
