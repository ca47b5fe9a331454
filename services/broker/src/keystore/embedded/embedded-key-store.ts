import { createCipheriv, createDecipheriv, createPrivateKey, KeyObject, sign as nodeSign } from 'node:crypto';
import { CustodyError, concatBytes, copyBytes, secureRandom, subtle, utf8, wipe, type Bytes } from '@custody/core';
import { generateSoftwareMaterial, normalizeImportedMaterial, publicKeyOfPkcs8, scrub } from '../../keys/material.js';
import { isSigningType, KEY_TYPES, type MaterialRef } from '../../keys/types.js';
import type { SealedMaterialRepository } from '../../metadata/types.js';
import { assertRecipient } from '../recipient.js';
import type { AeadCiphertext, KeyStore, KeyStoreCapabilities, KeyWrapper, MaterialInfo, MaterialSpec, RecipientKey, ReleaseContext, WrappedKey } from '../types.js';
import type { MasterKeyProvider } from './master-key.js';

const BLOB_VERSION = 1;
const IV_BYTES = 12;
const CHECK_NAME = 'embedded.master-key-check';
const CHECK_PLAINTEXT = utf8('custody embedded key store master key check v1');
const CHECK_AAD = utf8('custody/embedded-keystore/v1/master-key-check');

/**
 * The embedded default key store: every version's material is sealed with AES-256-GCM under
 * the master key, with the key id, version, material id and type as AAD (a blob moved to
 * another key or version fails to open), and persisted through the metadata store (SQLite by
 * default, PostgreSQL for replicas; both only ever see ciphertext).
 *
 * Plaintext exists in broker memory only inside one operation and is wiped afterwards; a
 * release hands it to the KeyWrapper (HPKE to the TEE key) and wipes it.
 *
 * Blob layout: 0x01 || iv (12) || AES-256-GCM ciphertext || tag (16).
 */
export class EmbeddedKeyStore implements KeyStore {
  readonly kind = 'embedded' as const;
  readonly capabilities: KeyStoreCapabilities = { exportableTypes: KEY_TYPES, recipientCurves: ['P-256', 'X25519'], wrapsInside: false };

  private closed = false;
  /**
   * The same master key as a node:crypto KeyObject: sealing and unsealing run synchronously on
   * the release path instead of as WebCrypto thread-pool jobs. Both live only in this object.
   */
  private readonly master: KeyObject;

  private constructor(
    masterKey: CryptoKey,
    private readonly blobs: SealedMaterialRepository,
  ) {
    this.master = KeyObject.from(masterKey);
  }

  /**
   * Loads the master key and checks it against the check value stored on first open, so a
   * wrong master key fails at start (ERR_STORE_MASTER_KEY) rather than at the first release.
   */
  static async open(master: MasterKeyProvider, blobs: SealedMaterialRepository): Promise<EmbeddedKeyStore> {
    const key = await master.load();
    const store = new EmbeddedKeyStore(key, blobs);
    const fresh = await store.seal(CHECK_PLAINTEXT, CHECK_AAD);
    const stored = await blobs.putStoreMetaIfAbsent(CHECK_NAME, fresh);
    try {
      const opened = await store.unseal(stored, CHECK_AAD);
      if (opened.length !== CHECK_PLAINTEXT.length) throw new Error('length');
    } catch (e) {
      if (e instanceof CustodyError && e.code === 'ERR_STORE_UNAVAILABLE') throw e;
      throw new CustodyError('ERR_STORE_MASTER_KEY', 'the master key does not match this key store', { detail: { source: master.description } });
    }
    return store;
  }

  async generate(ref: MaterialRef, spec: MaterialSpec): Promise<MaterialInfo> {
    const material = generateSoftwareMaterial(spec.type, spec.length);
    try {
      return await this.store(ref, material);
    } finally {
      wipe(material);
    }
  }

  async import(ref: MaterialRef, spec: MaterialSpec, input: Uint8Array): Promise<MaterialInfo> {
    const material = normalizeImportedMaterial(spec.type, input);
    try {
      return await this.store(ref, material);
    } finally {
      wipe(material);
    }
  }

  async encrypt(ref: MaterialRef, plaintext: Uint8Array, aad: Uint8Array): Promise<AeadCiphertext> {
    const key = await this.aesKey(ref);
    const iv = secureRandom(IV_BYTES);
    const pt = copyBytes(plaintext);
    try {
      const ciphertext = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv, additionalData: copyBytes(aad) }, key, pt));
      return { iv, ciphertext };
    } finally {
      wipe(pt);
    }
  }

  async decrypt(ref: MaterialRef, sealed: AeadCiphertext, aad: Uint8Array): Promise<Bytes> {
    const key = await this.aesKey(ref);
    if (sealed.iv.length !== IV_BYTES || sealed.ciphertext.length < 16) throw new CustodyError('ERR_KEY_UNWRAP', 'wrapped data is malformed');
    try {
      return new Uint8Array(await subtle.decrypt({ name: 'AES-GCM', iv: copyBytes(sealed.iv), additionalData: copyBytes(aad) }, key, copyBytes(sealed.ciphertext)));
    } catch {
      throw new CustodyError('ERR_KEY_UNWRAP');
    }
  }

  async sign(ref: MaterialRef, data: Uint8Array): Promise<Bytes> {
    if (!isSigningType(ref.type)) throw new CustodyError('ERR_KEY_TYPE', 'only signing keys sign', { detail: { type: ref.type } });
    const der = await this.open(ref);
    try {
      const key = createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.byteLength), format: 'der', type: 'pkcs8' });
      const sig = ref.type === 'ed25519' ? nodeSign(null, data, key) : nodeSign('sha256', data, { key, dsaEncoding: 'ieee-p1363' });
      return copyBytes(sig);
    } catch (e) {
      throw new CustodyError('ERR_STORE_BACKEND', 'signing failed', { cause: scrub(e) });
    } finally {
      wipe(der);
    }
  }

  async wrapForRelease(ref: MaterialRef, recipient: RecipientKey, context: ReleaseContext, wrapper: KeyWrapper): Promise<WrappedKey> {
    assertRecipient(recipient, this.capabilities.recipientCurves);
    const material = await this.open(ref);
    try {
      return await wrapper.wrapKey(recipient, material, context);
    } finally {
      wipe(material);
    }
  }

  async erase(refs: readonly MaterialRef[]): Promise<void> {
    this.assertOpen();
    await this.blobs.eraseSealed(refs.map((r) => r.materialId));
  }

  async has(ref: MaterialRef): Promise<boolean> {
    this.assertOpen();
    return (await this.blobs.getSealed(ref.materialId)) !== null;
  }

  async ping(): Promise<void> {
    this.assertOpen();
    if ((await this.blobs.getStoreMeta(CHECK_NAME)) === null) throw new CustodyError('ERR_STORE_UNAVAILABLE', 'key store check value is missing');
  }

  /** After close every operation fails with ERR_STORE_UNAVAILABLE. */
  async close(): Promise<void> {
    await Promise.resolve();
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the embedded key store is closed');
  }

  private async store(ref: MaterialRef, material: Bytes): Promise<MaterialInfo> {
    this.assertOpen();
    const publicKey = isSigningType(ref.type) ? publicKeyOfPkcs8(ref.type, material) : null;
    const blob = await this.seal(material, materialAad(ref));
    await this.blobs.putSealed(ref.materialId, ref.keyId, ref.version, blob);
    return { length: material.length, publicKey };
  }

  /** Decrypts one version's material. The caller wipes the result. */
  private async open(ref: MaterialRef): Promise<Bytes> {
    this.assertOpen();
    const blob = await this.blobs.getSealed(ref.materialId);
    if (!blob) throw new CustodyError('ERR_KEY_DESTROYED', 'no material for this key version', { detail: { keyId: ref.keyId, version: ref.version } });
    try {
      return await this.unseal(blob, materialAad(ref));
    } catch (e) {
      if (e instanceof CustodyError) throw e;
      throw new CustodyError('ERR_STORE_CORRUPT', undefined, { detail: { keyId: ref.keyId, version: ref.version } });
    }
  }

  private async aesKey(ref: MaterialRef): Promise<CryptoKey> {
    if (ref.type !== 'aes-256') throw new CustodyError('ERR_KEY_TYPE', 'only aes-256 keys encrypt and wrap', { detail: { type: ref.type } });
    const raw = await this.open(ref);
    try {
      return await subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
    } finally {
      wipe(raw);
    }
  }

  private seal(plaintext: Uint8Array, aad: Uint8Array): Promise<Bytes> {
    const iv = secureRandom(IV_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.master, iv);
    cipher.setAAD(aad);
    const ct = cipher.update(plaintext);
    const last = cipher.final();
    const blob = concatBytes(Uint8Array.of(BLOB_VERSION), iv, ct, last, cipher.getAuthTag());
    return Promise.resolve(blob);
  }

  /** Opens a sealed blob (0x01 || iv || ciphertext || tag); throws on any mismatch. The caller wipes the result. */
  private unseal(blob: Uint8Array, aad: Uint8Array): Promise<Bytes> {
    if (blob.length < 1 + IV_BYTES + 16 || blob[0] !== BLOB_VERSION) return Promise.reject(new Error('malformed sealed blob'));
    const decipher = createDecipheriv('aes-256-gcm', this.master, blob.subarray(1, 1 + IV_BYTES));
    decipher.setAAD(aad);
    decipher.setAuthTag(blob.subarray(blob.length - 16));
    const body = decipher.update(blob.subarray(1 + IV_BYTES, blob.length - 16));
    try {
      decipher.final();
    } catch (e) {
      body.fill(0);
      return Promise.reject(e instanceof Error ? e : new Error('sealed blob does not authenticate'));
    }
    const out = copyBytes(body);
    body.fill(0);
    return Promise.resolve(out);
  }
}

/** AAD binding a sealed blob to exactly one key, version, material and type. */
function materialAad(ref: MaterialRef): Bytes {
  return utf8(`custody/embedded-keystore/v1\n${ref.keyId}\n${ref.version}\n${ref.materialId}\n${ref.type}`);
}
