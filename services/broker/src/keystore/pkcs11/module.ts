import { createRequire } from 'node:module';
import type * as Pkcs11Types from 'pkcs11js';
import { CustodyError } from '@custody/core';

export type Pkcs11 = typeof Pkcs11Types;
export type Pkcs11Module = Pkcs11Types.PKCS11;
export type Handle = Buffer;

// pkcs11js is a CommonJS native addon without statically detectable exports.
export const P: Pkcs11 = createRequire(import.meta.url)('pkcs11js') as Pkcs11;

/** PKCS#11 3.0 values SoftHSM2 2.6 implements that pkcs11js does not name. */
export const CKK_EC_EDWARDS = 0x40;
export const CKM_EC_EDWARDS_KEY_PAIR_GEN = 0x1055;
export const CKM_EDDSA = 0x1057;

/** DER OIDs for CKA_EC_PARAMS. */
export const OID_P256 = Buffer.from('06082a8648ce3d030107', 'hex');
export const OID_ED25519 = Buffer.from('06032b6570', 'hex');

interface Loaded {
  module: Pkcs11Module;
  refs: number;
  /** Counts re-initialisations: a session handle from an earlier one means nothing now. */
  generation: number;
}
const loaded = new Map<string, Loaded>();

/**
 * A PKCS#11 library may be initialised once per process; stores on the same library share it
 * and the last one to close finalises it.
 */
export function acquireLibrary(path: string): Pkcs11Module {
  const hit = loaded.get(path);
  if (hit) {
    hit.refs++;
    return hit.module;
  }
  const module = new P.PKCS11();
  try {
    module.load(path);
  } catch (e) {
    throw new CustodyError('ERR_STORE_CONFIG', 'PKCS#11 library cannot be loaded', { cause: e, detail: { library: path } });
  }
  try {
    module.C_Initialize();
  } catch (e) {
    if (ckr(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw mapPkcs11Error(e, 'initialize');
  }
  loaded.set(path, { module, refs: 1, generation: 0 });
  return module;
}

/**
 * Finalises and initialises a loaded library again: after a token went away under a running
 * process, some libraries (SoftHSM2) keep answering from their old state until then, so a
 * session reopened without it never sees the token come back. Sessions of other stores on the
 * same library end too: their handles belong to the old generation, and a store drops (never
 * uses or closes) a handle of an earlier generation, since the library may hand the same number
 * to a new session.
 */
export function reinitializeLibrary(path: string): void {
  const hit = loaded.get(path);
  if (!hit) return;
  hit.generation++;
  try {
    hit.module.C_Finalize();
  } catch {
    // Not initialised, or failed: initialising is what matters.
  }
  try {
    hit.module.C_Initialize();
  } catch (e) {
    if (ckr(e) !== 'CKR_CRYPTOKI_ALREADY_INITIALIZED') throw mapPkcs11Error(e, 'initialize');
  }
}

/** The library's re-initialisation count (see Loaded.generation); 0 when not loaded. */
export function libraryGeneration(path: string): number {
  return loaded.get(path)?.generation ?? 0;
}

export function releaseLibrary(path: string): void {
  const hit = loaded.get(path);
  if (!hit) return;
  if (--hit.refs > 0) return;
  loaded.delete(path);
  try {
    hit.module.C_Finalize();
  } catch {
    // Finalising a library that already failed is not an error worth surfacing at close.
  }
}

export function ckr(e: unknown): string {
  const m = e instanceof Error ? /CKR_[A-Z0-9_]+/.exec(e.message) : null;
  return m ? m[0] : 'unknown';
}

const UNAVAILABLE = new Set([
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_COUNT',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_GENERAL_ERROR',
  'CKR_SLOT_ID_INVALID',
]);

/** True when the error means the HSM (not the request) is the problem: the session is dropped. */
export function isUnavailable(e: unknown): boolean {
  return e instanceof CustodyError ? e.code === 'ERR_STORE_UNAVAILABLE' : UNAVAILABLE.has(ckr(e));
}

/** Maps a PKCS#11 return value to a stable code; only the CKR name travels, never data. */
export function mapPkcs11Error(e: unknown, op: string): CustodyError {
  if (e instanceof CustodyError) return e;
  const code = ckr(e);
  const detail = { op, ckr: code };
  if (UNAVAILABLE.has(code)) return new CustodyError('ERR_STORE_UNAVAILABLE', 'the HSM is unavailable', { detail });
  switch (code) {
    case 'CKR_KEY_UNEXTRACTABLE':
    case 'CKR_KEY_NOT_WRAPPABLE':
      return new CustodyError('ERR_KEY_NOT_EXPORTABLE', undefined, { detail });
    case 'CKR_ENCRYPTED_DATA_INVALID':
    case 'CKR_ENCRYPTED_DATA_LEN_RANGE':
      return new CustodyError('ERR_KEY_UNWRAP', undefined, { detail });
    case 'CKR_PIN_INCORRECT':
    case 'CKR_PIN_LEN_RANGE':
    case 'CKR_PIN_LOCKED':
      return new CustodyError('ERR_STORE_CONFIG', 'the HSM rejected the PIN', { detail });
    case 'CKR_MECHANISM_INVALID':
    case 'CKR_MECHANISM_PARAM_INVALID':
    case 'CKR_KEY_TYPE_INCONSISTENT':
    case 'CKR_ATTRIBUTE_VALUE_INVALID':
    case 'CKR_TEMPLATE_INCONSISTENT':
      return new CustodyError('ERR_KEY_UNSUPPORTED', 'the HSM does not support this key or mechanism', { detail });
    default:
      return new CustodyError('ERR_STORE_BACKEND', undefined, { detail });
  }
}
