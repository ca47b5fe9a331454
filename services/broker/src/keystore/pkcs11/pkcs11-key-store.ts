import { createHash } from 'node:crypto';
import type { AesCBC, AesGCM, ECDH1, Mechanism, Template } from 'pkcs11js';
import { CustodyError, concatBytes, copyBytes, secureRandom, type Bytes } from '@custody/core';
import { normalizeImportedMaterial, privateComponents, secretLength, spkiFromPoint } from '../../keys/material.js';
import { isSigningType, type KeyType, type MaterialRef } from '../../keys/types.js';
import { assertRecipient } from '../recipient.js';
import type { AeadCiphertext, KeyStore, KeyStoreCapabilities, KeyWrapper, MaterialInfo, MaterialSpec, RecipientKey, ReleaseContext, WrappedKey } from '../types.js';
import {
  acquireLibrary,
  ckr,
  CKK_EC_EDWARDS,
  CKM_EC_EDWARDS_KEY_PAIR_GEN,
  CKM_EDDSA,
  isUnavailable,
  libraryGeneration,
  mapPkcs11Error,
  OID_ED25519,
  OID_P256,
  P,
  reinitializeLibrary,
  releaseLibrary,
  type Handle,
  type Pkcs11Module,
} from './module.js';
import { encodeReleasePayload, PKCS11_RELEASE_SCHEME, releaseInfo } from './release-scheme.js';

export interface Pkcs11KeyStoreOptions {
  /** Path of the PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so. */
  library: string;
  /** Label of the token to use (the slot is found by it). */
  tokenLabel: string;
  /** User PIN. Read it from a secret (environment or file) in configuration, never a flag. */
  pin: string;
}

interface Pkcs11Params {
  ECDH1: ECDH1;
  AesCBC: AesCBC;
  AesGCM: AesGCM;
}

const IV_BYTES = 12;
const GCM_TAG_BYTES = 16;

/**
 * A PKCS#11 HSM as key store (tested with SoftHSM2 2.6). Every key version is a token object
 * generated or imported inside the HSM with CKA_SENSITIVE true, so its value can never be read
 * with C_GetAttributeValue. Non-exportable keys (the default for signing keys) also have
 * CKA_EXTRACTABLE false: nothing can take them out, wrapped or not, and the HSM refuses to set
 * it back to true. Exportable keys have CKA_EXTRACTABLE true only so that C_WrapKey can take
 * them out wrapped; see release-scheme.ts for the exact release mechanism, done in the HSM.
 *
 * Objects are found by CKA_ID = the material id. Envelope wrapping (KEK operations) is
 * CKM_AES_GCM inside the HSM with the named aes-256 key. Signing is CKM_EDDSA / CKM_ECDSA
 * inside the HSM. Ed25519 keys are always non-exportable: SoftHSM2 cannot wrap EdDSA keys.
 *
 * Calls are synchronous PKCS#11 calls on one logged-in session, so no two operations
 * interleave on it. When the HSM reports a device or session failure the operation fails with
 * ERR_STORE_UNAVAILABLE and the session is reopened on the next call.
 */
export class Pkcs11KeyStore implements KeyStore {
  readonly kind = 'pkcs11' as const;
  readonly capabilities: KeyStoreCapabilities = { exportableTypes: ['aes-256', 'secret', 'ecdsa-p256'], recipientCurves: ['P-256'], wrapsInside: true };

  private readonly module: Pkcs11Module;
  private session: Handle | null = null;
  /** The library generation the session was opened in. */
  private sessionGeneration = 0;
  /** A session was open once (a missing token is then an outage, not a configuration error). */
  private opened = false;
  /** The HSM failed since the last session was opened: the library is initialised again first. */
  private failed = false;
  private closed = false;

  private constructor(private readonly options: Pkcs11KeyStoreOptions) {
    this.module = acquireLibrary(options.library);
  }

  static async open(options: Pkcs11KeyStoreOptions): Promise<Pkcs11KeyStore> {
    const store = new Pkcs11KeyStore(options);
    try {
      await store.ping();
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  async generate(ref: MaterialRef, spec: MaterialSpec): Promise<MaterialInfo> {
    this.assertExportable(spec);
    return this.run('generate', (m, s) => {
      const common = this.commonAttributes(ref);
      switch (spec.type) {
        case 'aes-256':
          m.C_GenerateKey(s, { mechanism: P.CKM_AES_KEY_GEN }, [...common, ...this.secretAttributes(spec), { type: P.CKA_KEY_TYPE, value: P.CKK_AES }, { type: P.CKA_VALUE_LEN, value: 32 }]);
          return { length: 32, publicKey: null };
        case 'secret': {
          const length = secretLength(spec.length);
          m.C_GenerateKey(s, { mechanism: P.CKM_GENERIC_SECRET_KEY_GEN }, [...common, ...this.secretAttributes(spec), { type: P.CKA_KEY_TYPE, value: P.CKK_GENERIC_SECRET }, { type: P.CKA_VALUE_LEN, value: length }]);
          return { length, publicKey: null };
        }
        case 'ed25519':
        case 'ecdsa-p256': {
          const ed = spec.type === 'ed25519';
          const pair = m.C_GenerateKeyPair(
            s,
            { mechanism: ed ? CKM_EC_EDWARDS_KEY_PAIR_GEN : P.CKM_EC_KEY_PAIR_GEN },
            [...common, { type: P.CKA_PRIVATE, value: false }, { type: P.CKA_EC_PARAMS, value: ed ? OID_ED25519 : OID_P256 }, { type: P.CKA_VERIFY, value: true }],
            [...common, ...this.privateAttributes(spec)],
          );
          return { length: 0, publicKey: this.publicKeyOf(m, s, spec.type, pair.publicKey) };
        }
      }
    });
  }

  async import(ref: MaterialRef, spec: MaterialSpec, input: Uint8Array): Promise<MaterialInfo> {
    this.assertExportable(spec);
    const material = normalizeImportedMaterial(spec.type, input);
    // The one moment plaintext passes through the broker on its way into the HSM.
    try {
      return await this.run('import', (m, s) => {
        const common = this.commonAttributes(ref);
        if (spec.type === 'aes-256' || spec.type === 'secret') {
          const kt = spec.type === 'aes-256' ? P.CKK_AES : P.CKK_GENERIC_SECRET;
          m.C_CreateObject(s, [...common, ...this.secretAttributes(spec), { type: P.CKA_KEY_TYPE, value: kt }, { type: P.CKA_VALUE, value: Buffer.from(material) }]);
          return { length: material.length, publicKey: null };
        }
        const ed = spec.type === 'ed25519';
        const { d, publicPoint } = privateComponents(spec.type, material);
        try {
          const params = ed ? OID_ED25519 : OID_P256;
          const keyType = ed ? CKK_EC_EDWARDS : P.CKK_EC;
          m.C_CreateObject(s, [...common, ...this.privateAttributes(spec), { type: P.CKA_KEY_TYPE, value: keyType }, { type: P.CKA_EC_PARAMS, value: params }, { type: P.CKA_VALUE, value: Buffer.from(d) }]);
          m.C_CreateObject(s, [
            ...common,
            { type: P.CKA_CLASS, value: P.CKO_PUBLIC_KEY },
            { type: P.CKA_PRIVATE, value: false },
            { type: P.CKA_KEY_TYPE, value: keyType },
            { type: P.CKA_EC_PARAMS, value: params },
            { type: P.CKA_EC_POINT, value: Buffer.from(derOctetString(publicPoint)) },
            { type: P.CKA_VERIFY, value: true },
          ]);
          return { length: 0, publicKey: spkiFromPoint(spec.type, publicPoint) };
        } finally {
          d.fill(0);
        }
      });
    } finally {
      material.fill(0);
    }
  }

  async encrypt(ref: MaterialRef, plaintext: Uint8Array, aad: Uint8Array): Promise<AeadCiphertext> {
    assertAes(ref.type);
    const iv = secureRandom(IV_BYTES);
    return this.run('encrypt', (m, s) => {
      const key = this.find(m, s, ref, P.CKO_SECRET_KEY);
      m.C_EncryptInit(s, gcm(iv, aad), key);
      const out = m.C_Encrypt(s, Buffer.from(plaintext), Buffer.alloc(plaintext.length + GCM_TAG_BYTES + 16));
      return { iv, ciphertext: copyBytes(out) };
    });
  }

  async decrypt(ref: MaterialRef, sealed: AeadCiphertext, aad: Uint8Array): Promise<Bytes> {
    assertAes(ref.type);
    if (sealed.iv.length !== IV_BYTES || sealed.ciphertext.length < GCM_TAG_BYTES) throw new CustodyError('ERR_KEY_UNWRAP', 'wrapped data is malformed');
    return this.run('decrypt', (m, s) => {
      const key = this.find(m, s, ref, P.CKO_SECRET_KEY);
      m.C_DecryptInit(s, gcm(sealed.iv, aad), key);
      const buf = Buffer.alloc(sealed.ciphertext.length);
      try {
        return copyBytes(m.C_Decrypt(s, Buffer.from(sealed.ciphertext), buf));
      } catch (e) {
        // SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR. If the session still
        // answers, the HSM is fine and the ciphertext (or its context) is what failed.
        if (ckr(e) !== 'CKR_GENERAL_ERROR') throw e;
        m.C_GetSessionInfo(s);
        throw new CustodyError('ERR_KEY_UNWRAP', undefined, { detail: { ckr: 'CKR_GENERAL_ERROR' } });
      } finally {
        buf.fill(0);
      }
    });
  }

  async sign(ref: MaterialRef, data: Uint8Array): Promise<Bytes> {
    if (!isSigningType(ref.type)) throw new CustodyError('ERR_KEY_TYPE', 'only signing keys sign', { detail: { type: ref.type } });
    const ed = ref.type === 'ed25519';
    const input = ed ? Buffer.from(data) : createHash('sha256').update(data).digest();
    return this.run('sign', (m, s) => {
      const key = this.find(m, s, ref, P.CKO_PRIVATE_KEY);
      m.C_SignInit(s, { mechanism: ed ? CKM_EDDSA : P.CKM_ECDSA }, key);
      return copyBytes(m.C_Sign(s, input, Buffer.alloc(128)));
    });
  }

  /** The in-HSM release described in release-scheme.ts. `wrapper` is not used: nothing leaves unwrapped. */
  async wrapForRelease(ref: MaterialRef, recipient: RecipientKey, context: ReleaseContext, _wrapper: KeyWrapper): Promise<WrappedKey> {
    assertRecipient(recipient, this.capabilities.recipientCurves);
    return this.run('release', (m, s) => {
      const key = this.find(m, s, ref, isSigningType(ref.type) ? P.CKO_PRIVATE_KEY : P.CKO_SECRET_KEY);
      const length = isSigningType(ref.type) ? 0 : this.valueLength(m, s, key);
      const temporary: Handle[] = [];
      try {
        const pair = m.C_GenerateKeyPair(
          s,
          { mechanism: P.CKM_EC_KEY_PAIR_GEN },
          [{ type: P.CKA_TOKEN, value: false }, { type: P.CKA_EC_PARAMS, value: OID_P256 }],
          [
            { type: P.CKA_TOKEN, value: false },
            { type: P.CKA_PRIVATE, value: true },
            { type: P.CKA_SENSITIVE, value: true },
            { type: P.CKA_EXTRACTABLE, value: false },
            { type: P.CKA_DERIVE, value: true },
          ],
        );
        temporary.push(pair.privateKey, pair.publicKey);
        const ecdhParams: Pkcs11Params['ECDH1'] = { type: P.CK_PARAMS_EC_DH, kdf: P.CKD_NULL, publicData: Buffer.from(recipient.publicKey) };
        const ephemeral = parseEcPoint(m.C_GetAttributeValue(s, pair.publicKey, [{ type: P.CKA_EC_POINT }])[0]!.value, 65);
        const z = m.C_DeriveKey(
          s,
          { mechanism: P.CKM_ECDH1_DERIVE, parameter: ecdhParams },
          pair.privateKey,
          transientAesTemplate({ derive: true }),
        );
        temporary.push(z);
        const info = releaseInfo(ephemeral, recipient.publicKey, length, context);
        const kdfParams: Pkcs11Params['AesCBC'] = { type: P.CK_PARAMS_AES_CBC, iv: Buffer.alloc(16), data: Buffer.from(info) };
        const k = m.C_DeriveKey(
          s,
          { mechanism: P.CKM_AES_CBC_ENCRYPT_DATA, parameter: kdfParams },
          z,
          transientAesTemplate({ wrap: true }),
        );
        temporary.push(k);
        const wrapped = m.C_WrapKey(s, { mechanism: P.CKM_AES_KEY_WRAP_PAD }, k, key, Buffer.alloc(maxWrappedLength(length)));
        return { scheme: PKCS11_RELEASE_SCHEME, payload: encodeReleasePayload(ephemeral, length, wrapped) };
      } finally {
        for (const h of temporary) {
          try {
            m.C_DestroyObject(s, h);
          } catch {
            // Session objects die with the session anyway.
          }
        }
      }
    });
  }

  async erase(refs: readonly MaterialRef[]): Promise<void> {
    await this.run('erase', (m, s) => {
      for (const ref of refs) for (const h of this.findAll(m, s, ref.materialId)) m.C_DestroyObject(s, h);
    });
  }

  async has(ref: MaterialRef): Promise<boolean> {
    return this.run('has', (m, s) => {
      if (this.findAll(m, s, ref.materialId).length > 0) return true;
      assertTokenPresent(m, s);
      return false;
    });
  }

  /** The session and its token answer (a library may keep a session of a token that went away). */
  async ping(): Promise<void> {
    await this.run('ping', (m, s) => assertTokenPresent(m, s));
  }

  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      this.dropSession();
      releaseLibrary(this.options.library);
    }
    return Promise.resolve();
  }

  /** Runs one synchronous HSM operation on the session, opening it first when needed. */
  private async run<T>(op: string, fn: (m: Pkcs11Module, s: Handle) => T): Promise<T> {
    await Promise.resolve();
    if (this.closed) throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the HSM key store is closed', { detail: { op } });
    // A handle from before the library was initialised again (by another store) is not ours any
    // more: forgotten, not closed.
    if (this.session && this.sessionGeneration !== libraryGeneration(this.options.library)) this.session = null;
    try {
      const s = this.session ?? this.openSession();
      return fn(this.module, s);
    } catch (e) {
      if (isUnavailable(e)) {
        this.dropSession();
        this.failed = true;
      }
      throw mapPkcs11Error(e, op);
    }
  }

  private openSession(): Handle {
    const m = this.module;
    // After the HSM failed, the library is initialised again before a new session: otherwise a
    // token that went away and came back is never seen again until a restart.
    if (this.failed) reinitializeLibrary(this.options.library);
    const slot = m.C_GetSlotList(true).find((sl) => m.C_GetTokenInfo(sl).label.trim() === this.options.tokenLabel);
    if (!slot) {
      // At start a configuration error; later, the token went away (and may come back).
      if (this.opened) throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the HSM token is not present', { detail: { token: this.options.tokenLabel } });
      throw new CustodyError('ERR_STORE_CONFIG', 'no PKCS#11 token with this label', { detail: { token: this.options.tokenLabel } });
    }
    const s = m.C_OpenSession(slot, P.CKF_SERIAL_SESSION | P.CKF_RW_SESSION);
    try {
      m.C_Login(s, P.CKU_USER, this.options.pin);
    } catch (e) {
      // The login state is per token and process: another store may already be logged in.
      if (!/CKR_USER_ALREADY_LOGGED_IN/.test(e instanceof Error ? e.message : '')) {
        m.C_CloseSession(s);
        throw e;
      }
    }
    this.session = s;
    this.sessionGeneration = libraryGeneration(this.options.library);
    this.opened = true;
    this.failed = false;
    return s;
  }

  private dropSession(): void {
    const s = this.session;
    this.session = null;
    if (!s) return;
    try {
      this.module.C_CloseSession(s);
    } catch {
      // Already invalid.
    }
  }

  private assertExportable(spec: MaterialSpec): void {
    if (spec.exportable && !this.capabilities.exportableTypes.includes(spec.type)) {
      throw new CustodyError('ERR_KEY_UNSUPPORTED', `this HSM cannot export ${spec.type} keys; create it non-exportable`, { detail: { type: spec.type } });
    }
  }

  private commonAttributes(ref: MaterialRef): Template {
    return [
      { type: P.CKA_TOKEN, value: true },
      { type: P.CKA_ID, value: Buffer.from(ref.materialId) },
      { type: P.CKA_LABEL, value: `custody:${ref.keyId}:v${ref.version}` },
    ];
  }

  private secretAttributes(spec: MaterialSpec): Template {
    return [
      { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: spec.exportable },
      { type: P.CKA_ENCRYPT, value: spec.type === 'aes-256' },
      { type: P.CKA_DECRYPT, value: spec.type === 'aes-256' },
      { type: P.CKA_WRAP, value: false },
      { type: P.CKA_UNWRAP, value: false },
      { type: P.CKA_DERIVE, value: false },
    ];
  }

  private privateAttributes(spec: MaterialSpec): Template {
    return [
      { type: P.CKA_CLASS, value: P.CKO_PRIVATE_KEY },
      { type: P.CKA_PRIVATE, value: true },
      { type: P.CKA_SENSITIVE, value: true },
      { type: P.CKA_EXTRACTABLE, value: spec.exportable },
      { type: P.CKA_SIGN, value: true },
      { type: P.CKA_DERIVE, value: false },
    ];
  }

  private publicKeyOf(m: Pkcs11Module, s: Handle, type: 'ed25519' | 'ecdsa-p256', pub: Handle): Bytes {
    return spkiFromPoint(type, parseEcPoint(m.C_GetAttributeValue(s, pub, [{ type: P.CKA_EC_POINT }])[0]!.value, type === 'ed25519' ? 32 : 65));
  }

  private valueLength(m: Pkcs11Module, s: Handle, key: Handle): number {
    const v = m.C_GetAttributeValue(s, key, [{ type: P.CKA_VALUE_LEN }])[0]!.value;
    return v.readUIntLE(0, Math.min(v.length, 6));
  }

  private find(m: Pkcs11Module, s: Handle, ref: MaterialRef, cls: number): Handle {
    m.C_FindObjectsInit(s, [
      { type: P.CKA_ID, value: Buffer.from(ref.materialId) },
      { type: P.CKA_CLASS, value: cls },
    ]);
    try {
      const found = m.C_FindObjects(s, 2);
      if (found.length === 1) return found[0]!;
    } finally {
      m.C_FindObjectsFinal(s);
    }
    // No object: destroyed only if the token is there to say so (a token that went away finds nothing).
    assertTokenPresent(m, s);
    throw new CustodyError('ERR_KEY_DESTROYED', 'no material for this key version in the HSM', { detail: { keyId: ref.keyId, version: ref.version } });
  }

  private findAll(m: Pkcs11Module, s: Handle, materialId: string): Handle[] {
    m.C_FindObjectsInit(s, [{ type: P.CKA_ID, value: Buffer.from(materialId) }]);
    try {
      return m.C_FindObjects(s, 16);
    } finally {
      m.C_FindObjectsFinal(s);
    }
  }
}

function assertAes(type: KeyType): void {
  if (type !== 'aes-256') throw new CustodyError('ERR_KEY_TYPE', 'only aes-256 keys encrypt and wrap', { detail: { type } });
}

function gcm(iv: Uint8Array, aad: Uint8Array): Mechanism {
  const parameter: Pkcs11Params['AesGCM'] = { type: P.CK_PARAMS_AES_GCM, iv: Buffer.from(iv), ivBits: IV_BYTES * 8, aad: Buffer.from(aad), tagBits: GCM_TAG_BYTES * 8 };
  return { mechanism: P.CKM_AES_GCM, parameter };
}

function transientAesTemplate(use: { derive?: boolean; wrap?: boolean }): Template {
  return [
    { type: P.CKA_CLASS, value: P.CKO_SECRET_KEY },
    { type: P.CKA_KEY_TYPE, value: P.CKK_AES },
    { type: P.CKA_VALUE_LEN, value: 32 },
    { type: P.CKA_TOKEN, value: false },
    { type: P.CKA_PRIVATE, value: true },
    { type: P.CKA_SENSITIVE, value: true },
    { type: P.CKA_EXTRACTABLE, value: false },
    { type: P.CKA_DERIVE, value: use.derive === true },
    { type: P.CKA_WRAP, value: use.wrap === true },
  ];
}

/** Room for RFC 5649 output: the key rounded up to 8 bytes plus the 8-byte integrity block. */
function maxWrappedLength(length: number): number {
  return (length === 0 ? 4096 : Math.ceil(length / 8) * 8) + 16;
}

/** CKA_EC_POINT is a DER OCTET STRING around the point; some modules return it bare. */
function parseEcPoint(v: Buffer, length: number): Bytes {
  if (v.length === length + 2 && v[0] === 0x04 && v[1] === length) return copyBytes(v.subarray(2));
  if (v.length === length) return copyBytes(v);
  throw new CustodyError('ERR_STORE_BACKEND', 'the HSM returned an EC point of unexpected length', { detail: { length: v.length } });
}

function derOctetString(b: Uint8Array): Bytes {
  if (b.length >= 0x80) throw new CustodyError('ERR_INTERNAL', 'EC point too long');
  return concatBytes(Uint8Array.of(0x04, b.length), b);
}

/**
 * Throws ERR_STORE_UNAVAILABLE unless the session's token answers: SoftHSM2, for one, still
 * answers for a session and finds no objects once its token's files are gone.
 */
function assertTokenPresent(m: Pkcs11Module, s: Handle): void {
  m.C_GetTokenInfo(m.C_GetSessionInfo(s).slotID);
}
