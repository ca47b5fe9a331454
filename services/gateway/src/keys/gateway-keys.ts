/**
 * The keys a gateway creates inside its TEE and binds into its evidence:
 * - OHTTP keys (X25519 HPKE) with key ids 0..255, rotated; a retired key stays usable for a
 *   grace period, after which requests naming it get ERR_OHTTP_KEY_ID (the SDK refreshes);
 * - the receipt key (Ed25519, non-extractable) that signs every receipt;
 * - the TEE key (X25519) a broker wraps model keys to (key-release protocol).
 * No private key ever leaves this module.
 */
import { generateKeyPairSync, sign as signMessage, type KeyObject } from 'node:crypto';
import { KemId, generateHpkeKeyPair, type Clock, type HpkeKeyPair } from '@custody/core';
import { createOhttpServerKey, type KeyConfig, type OhttpServerKey } from '@custody/sdk';

interface RingEntry {
  key: OhttpServerKey;
  createdAt: number;
  /** When set, the key is retired and removed at this time. */
  removeAt?: number;
}

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

  /** Creates a new current key; the previous one is retired (usable until the grace period ends). */
  async rotate(): Promise<OhttpServerKey> {
    const now = this.clock().getTime();
    this.prune();
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

  /** Drops retired keys whose grace period ended; returns their ids. */
  prune(): number[] {
    const now = this.clock().getTime();
    const gone = this.entries.filter((e) => e.removeAt !== undefined && e.removeAt <= now).map((e) => e.key.config.keyId);
    if (gone.length > 0) this.entries = this.entries.filter((e) => !(e.removeAt !== undefined && e.removeAt <= now));
    return gone;
  }

  /** Removes a key at once (compromise, or a test of the refresh path). */
  remove(keyId: number): void {
    this.entries = this.entries.filter((e) => e.key.config.keyId !== keyId);
  }

  /** Keys that decapsulate: current first, then retired ones still in grace. */
  get active(): OhttpServerKey[] {
    this.prune();
    return this.entries.map((e) => e.key);
  }

  /** Key configurations to publish and bind, current first. */
  get configs(): KeyConfig[] {
    return this.active.map((k) => k.config);
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

  /** Signs a message (the receipt's canonical bytes). */
  readonly sign = (message: Uint8Array): Uint8Array => new Uint8Array(signMessage(null, message, this.key));
}

/** All keys of one gateway instance. */
export class GatewayKeys {
  private constructor(
    readonly ohttp: OhttpKeyRing,
    readonly receipt: ReceiptSigner,
    readonly tee: HpkeKeyPair,
  ) {}

  static async create(clock: Clock, options: { graceMs?: number; firstKeyId?: number } = {}): Promise<GatewayKeys> {
    const ring = new OhttpKeyRing(clock, options.graceMs ?? 10 * 60_000, options.firstKeyId ?? 1);
    await ring.rotate();
    return new GatewayKeys(ring, await ReceiptSigner.create(), await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256));
  }
}
