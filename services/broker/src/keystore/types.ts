import type { Bytes } from '@custody/core';
import type { KeyType, MaterialRef } from '../keys/types.js';

/** Curves of TEE public keys a released key can be wrapped to. */
export type RecipientCurve = 'P-256' | 'X25519';

/**
 * The TEE's ephemeral public key, bound into its evidence: P-256 as the 65-byte uncompressed
 * point, X25519 as 32 bytes. The handshake checks the binding; the key store only wraps to it.
 */
export interface RecipientKey {
  curve: RecipientCurve;
  publicKey: Bytes;
}

/**
 * Key material wrapped for one recipient. `scheme` names how `payload` is opened; the payload
 * is opaque to the broker. Two schemes exist: HPKE_KEY_WRAP_SCHEME (HpkeKeyWrapper, for stores
 * whose material reaches broker memory) and PKCS11_RELEASE_SCHEME, produced inside the HSM (see
 * keystore/pkcs11/release-scheme.ts).
 */
export interface WrappedKey {
  scheme: string;
  payload: Bytes;
}

/**
 * Public facts a wrapping must authenticate (tenant, key id, version, session, EAR digest), so
 * a wrapped key cannot be replayed into another release. The same shape as @custody/core's
 * KeyWrapContext; every scheme binds its RFC 8785 canonical JSON.
 */
export type ReleaseContext = Readonly<Record<string, string | number | boolean>>;

/**
 * Wraps plaintext key material to a recipient public key. HpkeKeyWrapper (HPKE, RFC 9180, via
 * @custody/core wrapKey) is the implementation; the interface keeps key stores independent of it.
 */
export interface KeyWrapper {
  wrapKey(recipient: RecipientKey, material: Uint8Array, context: ReleaseContext): Promise<WrappedKey>;
}

export interface MaterialSpec {
  type: KeyType;
  exportable: boolean;
  /** Length in bytes for generated secrets; ignored for other types. */
  length?: number;
}

/** Public facts about stored material. */
export interface MaterialInfo {
  /** Bytes a release delivers: 32 for AES, the PKCS#8 length for signing keys, the secret's length. */
  length: number;
  /** SubjectPublicKeyInfo DER for signing keys. */
  publicKey: Bytes | null;
}

export interface AeadCiphertext {
  iv: Bytes;
  /** Ciphertext followed by the 16-byte GCM tag. */
  ciphertext: Bytes;
}

export interface KeyStoreCapabilities {
  /** Types that may be created with `exportable: true`. */
  exportableTypes: readonly KeyType[];
  /** Recipient curves `wrapForRelease` accepts. */
  recipientCurves: readonly RecipientCurve[];
  /** True when released material is wrapped inside the store and never exists in broker memory. */
  wrapsInside: boolean;
}

/**
 * Custody of key material. Every implementation keeps material encrypted at rest or inside
 * hardware, and hands it out only wrapped. The KeyService above it enforces state, policy and
 * audit; a key store never decides whether a release is allowed.
 *
 * Errors: ERR_STORE_UNAVAILABLE when the backend cannot be reached (fail closed: callers deny),
 * ERR_STORE_CORRUPT when stored material fails authentication, ERR_KEY_* for misuse.
 */
export interface KeyStore {
  readonly kind: 'embedded' | 'pkcs11';
  readonly capabilities: KeyStoreCapabilities;
  /** Generates material inside the store. */
  generate(ref: MaterialRef, spec: MaterialSpec): Promise<MaterialInfo>;
  /** Stores caller-supplied material (raw bytes; PKCS#8 DER for signing keys). */
  import(ref: MaterialRef, spec: MaterialSpec, material: Uint8Array): Promise<MaterialInfo>;
  /** AES-256-GCM with an `aes-256` key; the envelope helpers' KEK operation. */
  encrypt(ref: MaterialRef, plaintext: Uint8Array, aad: Uint8Array): Promise<AeadCiphertext>;
  decrypt(ref: MaterialRef, sealed: AeadCiphertext, aad: Uint8Array): Promise<Bytes>;
  /** Ed25519 (64-byte signature) or ECDSA P-256 with SHA-256 (64-byte r||s). */
  sign(ref: MaterialRef, data: Uint8Array): Promise<Bytes>;
  /**
   * Wraps one version's material to `recipient`, authenticating `context`. Stores whose
   * material may exist in broker memory call `wrapper`; stores with `wrapsInside` wrap inside.
   */
  wrapForRelease(ref: MaterialRef, recipient: RecipientKey, context: ReleaseContext, wrapper: KeyWrapper): Promise<WrappedKey>;
  /** Erases material (destroy). Erasing something already gone is not an error. */
  erase(refs: readonly MaterialRef[]): Promise<void>;
  /** True when material for `ref` is present (used by destroy checks and health probes). */
  has(ref: MaterialRef): Promise<boolean>;
  /** Throws ERR_STORE_UNAVAILABLE when the store cannot serve requests. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
