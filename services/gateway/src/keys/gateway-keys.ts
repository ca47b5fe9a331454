/**
 * The keys a gateway creates inside its TEE and binds into its evidence:
 * - OHTTP keys (X25519 HPKE) with key ids 0..255, rotated; a retired key stays published and
 *   usable for a grace period; once the gateway has published an attestation without it,
 *   requests naming it get ERR_OHTTP_KEY_ID (the SDK verifies again and sends once more only
 *   when the gateway no longer publishes that key);
 * - the receipt key (Ed25519, non-extractable) that signs every receipt;
 * - the TEE key (X25519) a broker wraps model keys to (key-release protocol).
 * No private key ever leaves this module.
 *
 * Replicas behind one address share the OHTTP and receipt keys instead of creating their own:
 * each derives them from an identity secret the broker released to its attested TEE key
 * (`deriveGatewayIdentity`), so all replicas given one version of the secret publish the same
 * key configuration and receipt key, each with its own evidence. The TEE key stays per process.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, hkdfSync, sign as signMessage, type KeyObject } from 'node:crypto';
import { CustodyError, KemId, equalBytes, generateHpkeKeyPair, utf8, wipe, type Clock, type HpkeKeyPair } from '@custody/core';
import { createOhttpServerKey, type KeyConfig, type OhttpServerKey } from '@custody/sdk';

interface RingEntry {
  key: OhttpServerKey;
  createdAt: number;
  /** When set, the key is retired: published and decapsulating until this time (its grace). */
  removeAt?: number;
}

const sameConfig = (a: KeyConfig, b: KeyConfig) => a.keyId === b.keyId && equalBytes(a.publicKey, b.publicKey);

/**
 * The gateway's OHTTP keys. A retired key leaves in two steps: at the end of its grace period it
 * is no longer published (`configs`, what the next attestation binds), and only once an
 * attestation without it has been published (`dropUnpublished`) does it stop decapsulating
 * (`active`). So whenever the gateway answers ERR_OHTTP_KEY_ID, the bundle it publishes no
 * longer lists that key, and a client can tell a real stale key from a forged "stale key"
 * answer by verifying again (a relay that replaces an answer with that error must not make the
 * model answer the same request twice).
 */
export class OhttpKeyRing {
  private entries: RingEntry[] = [];
  private nextId: number;

  constructor(
    private readonly clock: Clock,
    private readonly graceMs: number,
    firstKeyId = 1,
  ) {
    this.nextId = firstKeyId & 0xff;
  }

  /** Creates a new current key; the previous one is retired (published and usable until its grace period ends). */
  async rotate(): Promise<OhttpServerKey> {
    const now = this.clock().getTime();
    const used = new Set(this.entries.map((e) => e.key.config.keyId));
    let id = this.nextId;
    for (let i = 0; i < 256 && used.has(id); i++) id = (id + 1) & 0xff;
    if (used.has(id)) throw new Error('no free OHTTP key id');
    this.nextId = (id + 1) & 0xff;
    const key = await createOhttpServerKey({ keyId: id });
    for (const e of this.entries) e.removeAt ??= now + this.graceMs;
    this.entries.unshift({ key, createdAt: now });
    return key;
  }

  /**
   * Makes `key` the current key (a key derived from a shared identity secret, which every
   * replica derives alike); the previous keys are retired into their grace period. An entry with
   * the same key id (a version 255 rotations old) is dropped first: one id names one key.
   */
  install(key: OhttpServerKey): void {
    const now = this.clock().getTime();
    this.entries = this.entries.filter((e) => e.key.config.keyId !== key.config.keyId);
    for (const e of this.entries) e.removeAt ??= now + this.graceMs;
    this.entries.unshift({ key, createdAt: now });
  }

  /** Removes every key at once (the identity key was revoked: nothing decapsulates any more). */
  clear(): void {
    this.entries = [];
  }

  /**
   * After an attestation binding `published` was published: drops the retired keys whose grace
   * period has ended and that it does not list (they no longer decapsulate); returns their ids.
   * A key retired while that attestation was made is still listed by it, and stays.
   */
  dropUnpublished(published: readonly KeyConfig[]): number[] {
    const now = this.clock().getTime();
    const gone = (e: RingEntry) => e.removeAt !== undefined && e.removeAt <= now && !published.some((c) => sameConfig(c, e.key.config));
    const ids = this.entries.filter(gone).map((e) => e.key.config.keyId);
    if (ids.length > 0) this.entries = this.entries.filter((e) => !gone(e));
    return ids;
  }

  /**
   * When the next retired key's grace period ends (ms since the epoch): the earliest among the
   * retired keys still held, which is in the past for a key whose grace ended but that an
   * attestation made before then still listed (it waits for the next one).
   */
  nextRetirement(): number | undefined {
    let next: number | undefined;
    for (const e of this.entries) if (e.removeAt !== undefined && (next === undefined || e.removeAt < next)) next = e.removeAt;
    return next;
  }

  /** Removes a key at once (compromise, or a test of the refresh path); re-attest to stop publishing it. */
  remove(keyId: number): void {
    this.entries = this.entries.filter((e) => e.key.config.keyId !== keyId);
  }

  /** Keys that decapsulate: current first, then retired ones not yet dropped by `dropUnpublished`. */
  get active(): OhttpServerKey[] {
    return this.entries.map((e) => e.key);
  }

  /** Key configurations to publish and bind, current first: the retired keys still in their grace period. */
  get configs(): KeyConfig[] {
    const now = this.clock().getTime();
    return this.entries.filter((e) => e.removeAt === undefined || e.removeAt > now).map((e) => e.key.config);
  }

  get current(): OhttpServerKey | undefined {
    return this.entries[0]?.key;
  }
}

/**
 * Ed25519 receipt signing key, held as a Node KeyObject that this class never exports; signing
 * is synchronous (no round trip through the WebCrypto job queue on every response).
 */
export class ReceiptSigner {
  private constructor(
    private readonly key: KeyObject,
    readonly publicKey: Uint8Array,
  ) {}

  static create(): Promise<ReceiptSigner> {
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const x = publicKey.export({ format: 'jwk' }).x!;
    return Promise.resolve(new ReceiptSigner(privateKey, new Uint8Array(Buffer.from(x, 'base64url'))));
  }

  /** The Ed25519 key of a 32-byte seed (RFC 8032 private key), through its PKCS#8 encoding. */
  static fromSeed(seed: Uint8Array): ReceiptSigner {
    if (seed.length !== 32) throw new CustodyError('ERR_KEY_MATERIAL', 'an Ed25519 seed is 32 bytes');
    const der = Buffer.concat([ED25519_PKCS8_PREFIX, seed]);
    try {
      const privateKey = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
      const x = createPublicKey(privateKey).export({ format: 'jwk' }).x!;
      return new ReceiptSigner(privateKey, new Uint8Array(Buffer.from(x, 'base64url')));
    } finally {
      der.fill(0);
    }
  }

  /** Signs a message (the receipt's canonical bytes). */
  readonly sign = (message: Uint8Array): Uint8Array => new Uint8Array(signMessage(null, message, this.key));
}

/** PKCS#8 PrivateKeyInfo of an Ed25519 key (RFC 8410) up to the 32-byte seed. */
const ED25519_PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

/** HKDF-SHA256 salt of every key derived from a gateway identity secret. */
export const IDENTITY_DERIVATION_SALT = 'custody/gateway-identity/v1';
const OHTTP_IKM_LABEL = 'ohttp-x25519-ikm';
const RECEIPT_SEED_LABEL = 'receipt-ed25519-seed';
/** Broker-released identity secrets shorter than this are refused (the HKDF input needs 256 bits). */
export const MIN_IDENTITY_SECRET = 32;

/** Which version of which broker key the shared keys come from. */
export interface IdentityKeyVersion {
  readonly name: string;
  readonly version: number;
}

/** The keys every replica derives from one version of the identity secret. */
export interface GatewayIdentity extends IdentityKeyVersion {
  readonly ohttp: OhttpServerKey;
  readonly receipt: ReceiptSigner;
}

/**
 * The OHTTP key id of an identity key version: 1..255, cycling, so all replicas agree on it
 * and consecutive versions (the current key and the one in grace) never share an id.
 */
export function identityKeyId(version: number): number {
  if (!Number.isSafeInteger(version) || version < 1) throw new CustodyError('ERR_KEY_VERSION', 'an identity key version is a positive integer');
  return 1 + ((version - 1) % 255);
}

function hkdf(secret: Uint8Array, label: string, id: IdentityKeyVersion): Uint8Array {
  const info = utf8(`${label}\n${id.name}\n${id.version}`);
  return new Uint8Array(hkdfSync('sha256', secret, utf8(IDENTITY_DERIVATION_SALT), info, 32));
}

/**
 * Derives the shared gateway keys from an identity secret, with HKDF-SHA256 (salt
 * `custody/gateway-identity/v1`, info `<label>\n<key name>\n<version>`, one label per key):
 * the OHTTP X25519 key pair (RFC 9180 DeriveKeyPair of a 32-byte ikm), its key id (from the
 * version) and the Ed25519 receipt key (a 32-byte seed). The intermediate secrets are wiped
 * here; the caller wipes `secret`.
 */
export async function deriveGatewayIdentity(secret: Uint8Array, id: IdentityKeyVersion): Promise<GatewayIdentity> {
  if (secret.length < MIN_IDENTITY_SECRET) throw new CustodyError('ERR_KEY_MATERIAL', `a gateway identity secret is at least ${MIN_IDENTITY_SECRET} bytes`, { detail: { length: secret.length } });
  const keyId = identityKeyId(id.version);
  const ikm = hkdf(secret, OHTTP_IKM_LABEL, id);
  const seed = hkdf(secret, RECEIPT_SEED_LABEL, id);
  try {
    // DeriveKeyPair (core's deriveHpkeKeyPair with DHKEM(X25519, HKDF-SHA256)) of the ikm.
    const ohttp = await createOhttpServerKey({ keyId, kem: KemId.DhkemX25519HkdfSha256, ikm });
    return { name: id.name, version: id.version, ohttp, receipt: ReceiptSigner.fromSeed(seed) };
  } finally {
    wipe(ikm);
    wipe(seed);
  }
}

/** All keys of one gateway instance. */
export class GatewayKeys {
  private receiptSigner: ReceiptSigner | undefined;
  private identityValue: IdentityKeyVersion | undefined;
  /**
   * Shared identities: the receipt key of each installed version by its OHTTP key id, so that a
   * request sealed to a key still in grace gets a receipt from the key its client verified.
   */
  private readonly receiptByKeyId = new Map<number, ReceiptSigner>();

  private constructor(
    readonly ohttp: OhttpKeyRing,
    receipt: ReceiptSigner | undefined,
    readonly tee: HpkeKeyPair,
  ) {
    this.receiptSigner = receipt;
  }

  /**
   * Per-process keys (default), or, with `shared: true`, only the TEE key: the OHTTP and
   * receipt keys then come from `installIdentity` once the broker released the identity secret.
   */
  static async create(clock: Clock, options: { graceMs?: number; firstKeyId?: number; shared?: boolean } = {}): Promise<GatewayKeys> {
    const ring = new OhttpKeyRing(clock, options.graceMs ?? 10 * 60_000, options.firstKeyId ?? 1);
    const tee = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    if (options.shared) return new GatewayKeys(ring, undefined, tee);
    await ring.rotate();
    return new GatewayKeys(ring, await ReceiptSigner.create(), tee);
  }

  /** The receipt key; ERR_GATEWAY_NOT_ATTESTED while a shared identity is not installed. */
  get receipt(): ReceiptSigner {
    if (!this.receiptSigner) throw new CustodyError('ERR_GATEWAY_NOT_ATTESTED', 'the gateway identity key has not been released yet');
    return this.receiptSigner;
  }

  /**
   * The receipt key published beside the OHTTP key `keyId` (the one a request was sealed to):
   * for a shared identity in rotation, the previous version's key while its OHTTP key is in
   * grace; otherwise the current receipt key.
   */
  receiptFor(keyId: number | undefined): ReceiptSigner {
    if (keyId !== undefined && this.receiptByKeyId.size > 0) {
      const live = new Set(this.ohttp.active.map((k) => k.config.keyId));
      for (const id of [...this.receiptByKeyId.keys()]) if (!live.has(id)) this.receiptByKeyId.delete(id);
      const signer = this.receiptByKeyId.get(keyId);
      if (signer) return signer;
    }
    return this.receipt;
  }

  /** The identity key version the shared keys come from (undefined: per-process keys, or none yet). */
  get identity(): IdentityKeyVersion | undefined {
    return this.identityValue;
  }

  /** Switches to keys derived from an identity version: its OHTTP key becomes current (the previous one in grace). */
  installIdentity(derived: GatewayIdentity): void {
    this.ohttp.install(derived.ohttp);
    this.receiptSigner = derived.receipt;
    this.receiptByKeyId.set(derived.ohttp.config.keyId, derived.receipt);
    this.identityValue = { name: derived.name, version: derived.version };
  }

  /** Forgets the shared keys (the identity key was revoked or refused): nothing decapsulates or signs. */
  dropIdentity(): void {
    this.ohttp.clear();
    this.receiptSigner = undefined;
    this.receiptByKeyId.clear();
    this.identityValue = undefined;
  }
}
