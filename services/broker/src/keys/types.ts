import { CustodyError } from '@custody/core';

/**
 * The key model: named, versioned, typed keys per tenant namespace.
 *
 * - `aes-256`: a 32-byte data key or key-encryption key (KEK for the envelope helpers).
 * - `ed25519`, `ecdsa-p256`: signing keys; material is PKCS#8 DER when released.
 * - `secret`: opaque bytes, 1 byte to 64 KiB (API tokens, passwords, model decryption keys).
 */
export type KeyType = 'aes-256' | 'ed25519' | 'ecdsa-p256' | 'secret';
export const KEY_TYPES: readonly KeyType[] = ['aes-256', 'ed25519', 'ecdsa-p256', 'secret'];

/**
 * `active`: usable and releasable (if exportable and its policy allows).
 * `revoked`: nothing is released, wrapped or unwrapped with it from the moment the state is
 *   committed; irreversible. Metadata and material remain (until destroyed) for forensics.
 * `destroyed`: material erased for every version; metadata kept.
 */
export type KeyState = 'active' | 'revoked' | 'destroyed';

/** A version is `enabled` until its material is erased. Only the current version is released. */
export type KeyVersionState = 'enabled' | 'destroyed';

export type KeyOrigin = 'generated' | 'imported';

export const MAX_SECRET_BYTES = 64 * 1024;
export const DEFAULT_SECRET_BYTES = 32;
/** Release policies are CEL expressions; bounded so a stored policy cannot be abused as storage. */
export const MAX_POLICY_CHARS = 16 * 1024;

export interface KeyRecord {
  /** Stable random id (`key_` + 32 hex); bound into stored ciphertexts and wrapped data keys. */
  id: string;
  tenant: string;
  name: string;
  type: KeyType;
  state: KeyState;
  /** False: the material never leaves the key store (signing happens inside it). */
  exportable: boolean;
  currentVersion: number;
  /** CEL expression over the attestation result; null means the key is never released. */
  releasePolicy: string | null;
  createdAt: number;
  updatedAt: number;
  revokedAt: number | null;
  destroyedAt: number | null;
}

export interface KeyVersionRecord {
  keyId: string;
  version: number;
  state: KeyVersionState;
  origin: KeyOrigin;
  /** Identifies the material inside the key store (a random id, unique per generation attempt). */
  materialId: string;
  /** Length of the material in bytes as released (32 for AES, PKCS#8 length for signing keys). */
  materialLength: number;
  /** SubjectPublicKeyInfo DER of signing keys; null for symmetric keys and secrets. */
  publicKey: Uint8Array | null;
  createdAt: number;
  destroyedAt: number | null;
}

/** What a key store needs to find and use one version's material. */
export interface MaterialRef {
  keyId: string;
  version: number;
  materialId: string;
  type: KeyType;
}

const TENANT_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export function assertTenant(tenant: string): void {
  if (!TENANT_RE.test(tenant)) throw new CustodyError('ERR_KEY_NAME', 'tenant must be 1-63 of [a-z0-9-], starting with a letter or digit');
}

export function assertKeyName(name: string): void {
  if (!NAME_RE.test(name)) throw new CustodyError('ERR_KEY_NAME', 'key name must be 1-128 of [A-Za-z0-9._-], starting with a letter or digit');
}

export function assertKeyType(type: string): asserts type is KeyType {
  if (!(KEY_TYPES as readonly string[]).includes(type)) throw new CustodyError('ERR_KEY_TYPE', `key type must be one of ${KEY_TYPES.join(', ')}`);
}

export function isSigningType(type: KeyType): type is 'ed25519' | 'ecdsa-p256' {
  return type === 'ed25519' || type === 'ecdsa-p256';
}

/** Signing keys default to non-exportable (they sign inside the store); data keys and secrets to exportable. */
export function defaultExportable(type: KeyType): boolean {
  return !isSigningType(type);
}
