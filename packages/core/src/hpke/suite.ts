/**
 * Suites resolved once from registry ids, and the mapping of platform exceptions to Custody codes.
 */
import { CustodyError, type ErrorCode } from '../errors.js';
import { hpkeSuiteId } from './hkdf.js';
import { aeadParams, HpkeError, kdfParams, kemParams, type AeadParams, type HpkeSuiteIds, type KdfParams, type KemParams } from './identifiers.js';

/** A resolved suite: its ids, sizes and suite_id. */
export interface ResolvedSuite {
  readonly ids: HpkeSuiteIds;
  readonly kem: KemParams;
  readonly kdf: KdfParams;
  readonly aead: AeadParams;
  /** "HPKE" || kem_id || kdf_id || aead_id */
  readonly suiteId: Uint8Array;
}

const suites = new Map<number, ResolvedSuite>();

/** Resolves a suite once and caches it; throws ERR_HPKE_UNSUPPORTED for unknown ids. */
export function resolveSuite(ids: HpkeSuiteIds): ResolvedSuite {
  const key = ids.kem * 2 ** 32 + ids.kdf * 2 ** 16 + ids.aead;
  let s = suites.get(key);
  if (!s) {
    const kem = kemParams(ids.kem);
    const kdf = kdfParams(ids.kdf);
    const aead = aeadParams(ids.aead);
    s = { ids: { kem: kem.id, kdf: kdf.id, aead: aead.id }, kem, kdf, aead, suiteId: hpkeSuiteId(kem.id, kdf.id, aead.id) };
    suites.set(key, s);
  }
  return s;
}

/** Maps a provider or platform exception to a typed HpkeError; CustodyErrors pass through. */
export function mapHpkeError(e: unknown, code: ErrorCode): CustodyError {
  if (e instanceof CustodyError) return e;
  const thrown = e instanceof Error ? e.name : 'unknown';
  return new HpkeError(code, undefined, { cause: e, detail: { thrown } });
}
