/**
 * HPKE (RFC 9180) for Custody: base, psk, auth and auth_psk modes, single-shot and
 * multi-message contexts, and the secret export interface, over a pluggable primitive provider
 * (provider.ts). The mode follows from the inputs: a psk selects psk modes, a sender key pair
 * (or sender public key) selects auth modes.
 */
import { concatBytes, copyBytes, equalBytes, isAllZero, utf8, type Bytes } from '../bytes.js';
import { BytesKeyedCache } from '../bytes-cache.js';
import type { RandomSource } from '../crypto.js';
import { xorNonce, type AeadKey } from './aead.js';
import { LabeledKdf } from './hkdf.js';
import { AeadId, HpkeError, HpkeMode, kemParams, type HpkeSuiteIds, type KemParams } from './identifiers.js';
import { deriveProviderKeyPair, keyError, kemKdf, privateKeyHandle, publicKeyHandle, type HpkeKeyPair, type HpkePublicKey } from './keys.js';
import { getHpkeProvider, type HpkePrimitives, type ProviderKeyPair } from './provider.js';
import { resolveSuite, type ResolvedSuite } from './suite.js';

/** A pre-shared key and its identifier; both must be non-empty, the key at least 32 bytes. */
export interface HpkePsk {
  readonly id: Uint8Array;
  readonly key: Uint8Array;
}

export interface HpkeSenderParams {
  readonly suite: HpkeSuiteIds;
  readonly recipientPublicKey: HpkePublicKey;
  /** Application-supplied context bound into the key schedule (default empty). */
  readonly info?: Uint8Array;
  readonly psk?: HpkePsk;
  /** Auth modes: the sender's static key pair. */
  readonly senderKeyPair?: HpkeKeyPair;
  /**
   * Source of the ephemeral key: by default the platform generates it; with `random` it is
   * DeriveKeyPair(random(Nsk)) so that tests can be deterministic.
   */
  readonly random?: RandomSource;
  /** Fixes the ephemeral key pair. Only for published test vectors; never reuse one. */
  readonly ephemeralKeyPair?: HpkeKeyPair;
  /** Base mode only: an encapsulation made ahead of time for this recipient (used once). */
  readonly prepared?: HpkePreparedEncap;
  /** The primitive provider for this call; default the process-wide one (getHpkeProvider). */
  readonly provider?: HpkePrimitives;
}

/**
 * Encap done ahead of time for base mode: the ephemeral key pair and the KEM shared secret,
 * which depend on neither `info` nor the message. A client computes it while idle and then
 * spends only the key schedule and the seal when a request is ready. It belongs to one
 * recipient key and KEM and is used once: a second SetupS with it throws ERR_HPKE_PARAMS.
 * Given the suite and `info` the next SetupS will most likely use (`prepareHpkeEncap`'s
 * `expect`), the key schedule for them is run ahead too; a SetupS with another suite or info
 * runs its own from the shared secret, and the expected one is wiped.
 */
export class HpkePreparedEncap {
  readonly kem: number;
  // Private copies: what a caller reads (`enc`, `recipientPublicKey`) is a copy, so the key
  // the secret was made for cannot be changed under it.
  readonly #recipient: Bytes;
  readonly #enc: Bytes;

  /**
   * @internal Made by prepareHpkeEncap only: the shared secret is held where no caller can read
   * or copy it into a second prepared encapsulation (an ephemeral key serves one request).
   */
  constructor(token: typeof PREPARED, kem: number, recipientPublicKey: Bytes, enc: Bytes, sharedSecret: Bytes) {
    if (token !== PREPARED) throw new HpkeError('ERR_HPKE_PARAMS', 'a prepared encapsulation is made by prepareHpkeEncap');
    this.kem = kem;
    this.#recipient = copyBytes(recipientPublicKey);
    this.#enc = copyBytes(enc);
    preparedSecrets.set(this, sharedSecret);
  }

  get recipientPublicKey(): Bytes {
    return copyBytes(this.#recipient);
  }

  get enc(): Bytes {
    return copyBytes(this.#enc);
  }

  get used(): boolean {
    return !preparedSecrets.has(this);
  }

  /** @internal SetupS: whether it is for this KEM and recipient key. */
  isFor(kem: number, recipientPublicKey: Uint8Array): boolean {
    return kem === this.kem && equalBytes(this.#recipient, recipientPublicKey);
  }

  /** Wipes the shared secret without using it (the recipient's key changed, the client closes). */
  discard(): void {
    preparedSecrets.get(this)?.fill(0);
    preparedSecrets.delete(this);
    dropSchedule(this);
  }
}

/** A key schedule run ahead for the suite and info a prepared encapsulation expects. */
interface PreparedSchedule {
  readonly suite: HpkeSuiteIds;
  readonly info: Bytes;
  readonly schedule: Promise<Schedule>;
}
const preparedSchedules = new WeakMap<HpkePreparedEncap, PreparedSchedule>();

/** The schedule run ahead for exactly this suite and info, taken (it is used once); undefined otherwise. */
function takeSchedule(p: HpkePreparedEncap, suite: HpkeSuiteIds, info: Uint8Array): Promise<Schedule> | undefined {
  const s = preparedSchedules.get(p);
  if (!s) return undefined;
  preparedSchedules.delete(p);
  if (s.suite.kem === suite.kem && s.suite.kdf === suite.kdf && s.suite.aead === suite.aead && equalBytes(s.info, info)) return s.schedule;
  wipeSchedule(s.schedule);
  return undefined;
}

function dropSchedule(p: HpkePreparedEncap): void {
  const s = preparedSchedules.get(p);
  preparedSchedules.delete(p);
  if (s) wipeSchedule(s.schedule);
}

function wipeSchedule(schedule: Promise<Schedule>): void {
  schedule.then(
    (x) => {
      x.exporterSecret.fill(0);
      x.baseNonce.fill(0);
    },
    () => undefined,
  );
}

/** Only this module constructs prepared encapsulations. */
const PREPARED: unique symbol = Symbol('HpkePreparedEncap');
/** The unused shared secret of each prepared encapsulation; taken (deleted) by its one SetupS. */
const preparedSecrets = new WeakMap<HpkePreparedEncap, Bytes>();

function takePreparedSecret(p: HpkePreparedEncap): Bytes {
  const s = preparedSecrets.get(p);
  if (!s) throw new HpkeError('ERR_HPKE_PARAMS', 'a prepared encapsulation is used once');
  preparedSecrets.delete(p);
  return s;
}

/** Encap (base mode) now, for a SetupS later: see HpkePreparedEncap. */
export async function prepareHpkeEncap(params: {
  readonly kem: number;
  readonly recipientPublicKey: HpkePublicKey;
  readonly random?: RandomSource;
  /** Only for published test vectors. */
  readonly ephemeralKeyPair?: HpkeKeyPair;
  readonly provider?: HpkePrimitives;
  /** The suite (its KEM is `kem`) and info the SetupS will most likely use: its key schedule is run now too. */
  readonly expect?: { readonly suite: HpkeSuiteIds; readonly info: Uint8Array };
}): Promise<HpkePreparedEncap> {
  const kem = kemParams(params.kem);
  if (params.recipientPublicKey.kem !== kem.id) throw new HpkeError('ERR_HPKE_PARAMS', 'recipient public key is for another KEM', { detail: { kem: params.recipientPublicKey.kem, expected: kem.id } });
  const provider = params.provider ?? getHpkeProvider();
  const expect = params.expect;
  if (expect) checkKem(resolveSuite(expect.suite), kem.id, 'prepared encapsulation');
  const eph = await ephemeral(provider, kem, params);
  const sharedSecret = await encap(provider, kem, params.recipientPublicKey, eph, undefined);
  const prepared = new HpkePreparedEncap(PREPARED, kem.id, params.recipientPublicKey.bytes, eph.publicKey, sharedSecret);
  if (expect) {
    const { kem: k, kdf, aead } = expect.suite;
    // Its own copy of the secret: the key schedule wipes what it is given, and a SetupS with another info still needs it.
    const schedule = keySchedule(provider, resolveSuite(expect.suite), HpkeMode.Base, copyBytes(sharedSecret), expect.info, undefined);
    preparedSchedules.set(prepared, { suite: { kem: k, kdf, aead }, info: copyBytes(expect.info), schedule });
    // A failure here is not this call's: the SetupS that would use it runs its own schedule instead.
    await schedule.catch(() => undefined);
  }
  return prepared;
}

export interface HpkeRecipientParams {
  readonly suite: HpkeSuiteIds;
  readonly recipientKeyPair: HpkeKeyPair;
  /** The encapsulated key from the sender (Nenc bytes). */
  readonly enc: Uint8Array;
  readonly info?: Uint8Array;
  readonly psk?: HpkePsk;
  /** Auth modes: the sender's static public key. */
  readonly senderPublicKey?: HpkePublicKey;
  /** The primitive provider for this call; default the process-wide one (getHpkeProvider). */
  readonly provider?: HpkePrimitives;
}

/** What a context exports: LabeledExpand(exporter_secret, "sec", context, L). */
export interface HpkeExporter {
  readonly suite: HpkeSuiteIds;
  readonly mode: HpkeMode;
  export(exporterContext: Uint8Array, length: number): Promise<Bytes>;
}

export interface HpkeSenderContext extends HpkeExporter {
  readonly enc: Bytes;
  /** Encrypts the next message; each call advances the sequence number. */
  seal(plaintext: Uint8Array, aad?: Uint8Array): Promise<Bytes>;
}

export interface HpkeRecipientContext extends HpkeExporter {
  /** Decrypts the next message in order; ERR_HPKE_OPEN when it does not authenticate. */
  open(ciphertext: Uint8Array, aad?: Uint8Array): Promise<Bytes>;
}

const EMPTY = new Uint8Array(0);
const MIN_PSK = 32;
const LABEL = {
  eaePrk: utf8('eae_prk'),
  sharedSecret: utf8('shared_secret'),
  pskIdHash: utf8('psk_id_hash'),
  infoHash: utf8('info_hash'),
  secret: utf8('secret'),
  key: utf8('key'),
  baseNonce: utf8('base_nonce'),
  exp: utf8('exp'),
  sec: utf8('sec'),
};

function modeOf(psk: HpkePsk | undefined, auth: boolean): HpkeMode {
  if (psk) return auth ? HpkeMode.AuthPsk : HpkeMode.Psk;
  return auth ? HpkeMode.Auth : HpkeMode.Base;
}

/** VerifyPSKInputs (RFC 9180 section 5.1), plus the recommended minimum psk length. */
function checkPsk(psk: HpkePsk | undefined): void {
  if (psk && (psk.id.length === 0 || psk.key.length === 0)) {
    throw new HpkeError('ERR_HPKE_PARAMS', 'psk and psk_id must both be non-empty', { detail: { pskIdLength: psk.id.length, pskLength: psk.key.length } });
  }
  if (psk && psk.key.length < MIN_PSK) throw new HpkeError('ERR_HPKE_PARAMS', 'psk must be at least 32 bytes', { detail: { pskLength: psk.key.length, min: MIN_PSK } });
}

function checkKem(suite: ResolvedSuite, kem: number, what: string): void {
  if (kem !== suite.kem.id) throw new HpkeError('ERR_HPKE_KEY', `${what} belongs to another KEM`, { detail: { kem, expected: suite.kem.id } });
}

// ---------------------------------------------------------------- DHKEM (RFC 9180 section 4.1)

async function dhChecked(provider: HpkePrimitives, kem: KemParams, sk: unknown, pk: unknown, code: 'ERR_HPKE_ENCAP' | 'ERR_HPKE_DECAP'): Promise<Bytes> {
  let dh: Bytes;
  try {
    dh = await provider.dh(kem, sk, pk);
  } catch (e) {
    throw keyError(e, code);
  }
  // X25519 and X448 give all zeros for small-order points (RFC 9180 section 7.1.4).
  if (dh.length === 0 || isAllZero(dh)) throw new HpkeError(code, 'the Diffie-Hellman result is all zero');
  return dh;
}

/** ExtractAndExpand(dh, kem_context); wipes dh. */
async function extractAndExpand(kdf: LabeledKdf, kem: KemParams, dh: Bytes, kemContext: Uint8Array): Promise<Bytes> {
  const prk = await kdf.extract(EMPTY, LABEL.eaePrk, dh);
  dh.fill(0);
  try {
    return await kdf.expand(prk, LABEL.sharedSecret, kemContext, kem.nSecret);
  } finally {
    prk.fill(0);
  }
}

/** Encap / AuthEncap with an ephemeral key already chosen. */
async function encap(provider: HpkePrimitives, kem: KemParams, pkR: HpkePublicKey, eph: ProviderKeyPair, sender: HpkeKeyPair | undefined): Promise<Bytes> {
  const pkRh = await publicKeyHandle(pkR, provider);
  let dh = await dhChecked(provider, kem, eph.privateKey, pkRh, 'ERR_HPKE_ENCAP');
  let kemContext = concatBytes(eph.publicKey, pkR.bytes);
  if (sender) {
    const dhS = await dhChecked(provider, kem, await privateKeyHandle(sender.privateKey, provider), pkRh, 'ERR_HPKE_ENCAP');
    const both = concatBytes(dh, dhS);
    dh.fill(0);
    dhS.fill(0);
    dh = both;
    kemContext = concatBytes(kemContext, sender.publicKey.bytes);
  }
  return extractAndExpand(kemKdf(provider, kem), kem, dh, kemContext);
}

/** Decap / AuthDecap. */
async function decap(provider: HpkePrimitives, kem: KemParams, enc: Uint8Array, recipient: HpkeKeyPair, senderPublicKey: HpkePublicKey | undefined): Promise<Bytes> {
  let pkE: unknown;
  try {
    pkE = await provider.importPublicKey(kem, enc);
  } catch (e) {
    throw keyError(e, 'ERR_HPKE_DECAP');
  }
  const skR = await privateKeyHandle(recipient.privateKey, provider);
  let dh = await dhChecked(provider, kem, skR, pkE, 'ERR_HPKE_DECAP');
  let kemContext = concatBytes(enc, recipient.publicKey.bytes);
  if (senderPublicKey) {
    const dhS = await dhChecked(provider, kem, skR, await publicKeyHandle(senderPublicKey, provider), 'ERR_HPKE_DECAP');
    const both = concatBytes(dh, dhS);
    dh.fill(0);
    dhS.fill(0);
    dh = both;
    kemContext = concatBytes(kemContext, senderPublicKey.bytes);
  }
  return extractAndExpand(kemKdf(provider, kem), kem, dh, kemContext);
}

// ---------------------------------------------------------------- key schedule and contexts

interface Schedule {
  readonly aead: AeadKey | undefined;
  readonly baseNonce: Bytes;
  readonly exporterSecret: Bytes;
  readonly kdf: LabeledKdf;
}

/** KeySchedule<ROLE>(mode, shared_secret, info, psk, psk_id) (RFC 9180 section 5.1); wipes shared_secret. */
/**
 * key_schedule_context by provider, then suite, mode and info, for PSK-less setups (public
 * values: hashes of public inputs). Per provider, so each provider's conformance run computes
 * its own.
 */
const scheduleContexts = new WeakMap<HpkePrimitives, BytesKeyedCache<Bytes>>();

async function keySchedule(provider: HpkePrimitives, suite: ResolvedSuite, mode: HpkeMode, sharedSecret: Bytes, info: Uint8Array, psk: HpkePsk | undefined): Promise<Schedule> {
  const kdf = new LabeledKdf(provider, suite.kdf, suite.suiteId);
  // key_schedule_context depends only on mode, psk_id and info: without a PSK (base and auth
  // modes, every OHTTP request) it is the same for every message to a key configuration.
  const cacheKey = psk ? undefined : [suite.suiteId, Uint8Array.of(mode), info];
  let contexts = scheduleContexts.get(provider);
  if (!contexts) scheduleContexts.set(provider, (contexts = new BytesKeyedCache<Bytes>(64)));
  let context = cacheKey ? contexts.get(cacheKey) : undefined;
  if (!context) {
    const pskIdHash = await kdf.extract(EMPTY, LABEL.pskIdHash, psk?.id ?? EMPTY);
    const infoHash = await kdf.extract(EMPTY, LABEL.infoHash, info);
    context = concatBytes(Uint8Array.of(mode), pskIdHash, infoHash);
    if (cacheKey) contexts.set(cacheKey, context);
  }
  const secret = await kdf.extract(sharedSecret, LABEL.secret, psk?.key ?? EMPTY);
  sharedSecret.fill(0);
  try {
    const exporterSecret = await kdf.expand(secret, LABEL.exp, context, suite.kdf.nH);
    if (suite.aead.id === AeadId.ExportOnly) return { aead: undefined, baseNonce: EMPTY, exporterSecret, kdf };
    const key = await kdf.expand(secret, LABEL.key, context, suite.aead.nK);
    const baseNonce = await kdf.expand(secret, LABEL.baseNonce, context, suite.aead.nN);
    try {
      return { aead: provider.createAead(suite.aead, key), baseNonce, exporterSecret, kdf };
    } finally {
      key.fill(0);
    }
  } finally {
    secret.fill(0);
  }
}

class Context implements HpkeExporter {
  private seq = 0;
  /** Opens run one after another: a failed open must not advance the sequence number. */
  private opening: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly resolved: ResolvedSuite,
    readonly mode: HpkeMode,
    private readonly schedule: Schedule,
  ) {}

  get suite(): HpkeSuiteIds {
    return this.resolved.ids;
  }

  private aead(): AeadKey {
    if (!this.schedule.aead) throw new HpkeError('ERR_HPKE_EXPORT_ONLY');
    return this.schedule.aead;
  }

  protected async sealNext(plaintext: Uint8Array, aad: Uint8Array): Promise<Bytes> {
    const aead = this.aead();
    // The sequence number is taken before the first await, so concurrent seals never share a nonce.
    const nonce = xorNonce(this.schedule.baseNonce, this.seq);
    this.seq++;
    try {
      return await aead.seal(nonce, aad, plaintext);
    } catch (e) {
      throw keyError(e, 'ERR_HPKE_SEAL');
    }
  }

  protected openNext(ciphertext: Uint8Array, aad: Uint8Array): Promise<Bytes> {
    const run = this.opening.then(async () => {
      const aead = this.aead();
      if (ciphertext.length < this.resolved.aead.nT) throw new HpkeError('ERR_HPKE_OPEN', 'ciphertext shorter than the tag', { detail: { length: ciphertext.length } });
      let pt: Bytes;
      try {
        pt = await aead.open(xorNonce(this.schedule.baseNonce, this.seq), aad, ciphertext);
      } catch (e) {
        throw keyError(e, 'ERR_HPKE_OPEN');
      }
      this.seq++;
      return pt;
    });
    this.opening = run.catch(() => undefined);
    return run;
  }

  async export(exporterContext: Uint8Array, length: number): Promise<Bytes> {
    const max = 255 * this.resolved.kdf.nH;
    if (!Number.isInteger(length) || length < 0 || length > max) throw new HpkeError('ERR_HPKE_PARAMS', 'export length out of range', { detail: { length, max } });
    return this.schedule.kdf.expand(this.schedule.exporterSecret, LABEL.sec, exporterContext, length);
  }
}

class SenderContext extends Context implements HpkeSenderContext {
  constructor(
    resolved: ResolvedSuite,
    mode: HpkeMode,
    schedule: Schedule,
    readonly enc: Bytes,
  ) {
    super(resolved, mode, schedule);
  }

  seal(plaintext: Uint8Array, aad: Uint8Array = EMPTY): Promise<Bytes> {
    return this.sealNext(plaintext, aad);
  }
}

class RecipientContext extends Context implements HpkeRecipientContext {
  open(ciphertext: Uint8Array, aad: Uint8Array = EMPTY): Promise<Bytes> {
    return this.openNext(ciphertext, aad);
  }
}

/** The ephemeral key: fixed (vectors), derived from injected randomness (tests), or fresh. */
async function ephemeral(provider: HpkePrimitives, kem: KemParams, params: { readonly random?: RandomSource; readonly ephemeralKeyPair?: HpkeKeyPair }): Promise<ProviderKeyPair> {
  if (params.ephemeralKeyPair) return { privateKey: await privateKeyHandle(params.ephemeralKeyPair.privateKey, provider), publicKey: params.ephemeralKeyPair.publicKey.bytes };
  try {
    if (params.random) {
      const ikm = params.random(kem.nSk);
      try {
        return await deriveProviderKeyPair(provider, kem, ikm);
      } finally {
        ikm.fill(0);
      }
    }
    return await provider.generateKeyPair(kem);
  } catch (e) {
    throw keyError(e, 'ERR_HPKE_ENCAP');
  }
}

/** SetupS for the mode the inputs select (RFC 9180 section 5.1). */
export async function setupHpkeSender(params: HpkeSenderParams): Promise<HpkeSenderContext> {
  const suite = resolveSuite(params.suite);
  checkKem(suite, params.recipientPublicKey.kem, 'recipient public key');
  if (params.senderKeyPair) checkKem(suite, params.senderKeyPair.kem, 'sender key pair');
  if (params.ephemeralKeyPair) checkKem(suite, params.ephemeralKeyPair.kem, 'ephemeral key pair');
  checkPsk(params.psk);
  const provider = params.provider ?? getHpkeProvider();
  const mode = modeOf(params.psk, params.senderKeyPair !== undefined);
  if (params.prepared) {
    const p = params.prepared;
    if (mode !== HpkeMode.Base || params.ephemeralKeyPair || params.random) throw new HpkeError('ERR_HPKE_PARAMS', 'a prepared encapsulation is for base mode with nothing else choosing the ephemeral key');
    if (!p.isFor(suite.kem.id, params.recipientPublicKey.bytes)) throw new HpkeError('ERR_HPKE_PARAMS', 'the prepared encapsulation is for another recipient key');
    const sharedSecret = takePreparedSecret(p);
    const ahead = takeSchedule(p, params.suite, params.info ?? EMPTY);
    let schedule: Schedule | undefined;
    if (ahead) {
      schedule = await ahead.catch(() => undefined);
      if (schedule) sharedSecret.fill(0);
    }
    schedule ??= await keySchedule(provider, suite, mode, sharedSecret, params.info ?? EMPTY, params.psk);
    return new SenderContext(suite, mode, schedule, p.enc);
  }
  const eph = await ephemeral(provider, suite.kem, params);
  const sharedSecret = await encap(provider, suite.kem, params.recipientPublicKey, eph, params.senderKeyPair);
  const schedule = await keySchedule(provider, suite, mode, sharedSecret, params.info ?? EMPTY, params.psk);
  return new SenderContext(suite, mode, schedule, copyBytes(eph.publicKey));
}

/** SetupR for the mode the inputs select (RFC 9180 section 5.1). */
export async function setupHpkeRecipient(params: HpkeRecipientParams): Promise<HpkeRecipientContext> {
  const suite = resolveSuite(params.suite);
  checkKem(suite, params.recipientKeyPair.kem, 'recipient key pair');
  if (params.senderPublicKey) checkKem(suite, params.senderPublicKey.kem, 'sender public key');
  checkPsk(params.psk);
  if (params.enc.length !== suite.kem.nEnc) {
    throw new HpkeError('ERR_HPKE_DECAP', 'encapsulated key has the wrong length', { detail: { length: params.enc.length, expected: suite.kem.nEnc } });
  }
  const provider = params.provider ?? getHpkeProvider();
  const sharedSecret = await decap(provider, suite.kem, params.enc, params.recipientKeyPair, params.senderPublicKey);
  const mode = modeOf(params.psk, params.senderPublicKey !== undefined);
  const schedule = await keySchedule(provider, suite, mode, sharedSecret, params.info ?? EMPTY, params.psk);
  return new RecipientContext(suite, mode, schedule);
}

export interface HpkeSealed {
  readonly enc: Bytes;
  readonly ciphertext: Bytes;
}

/** Single-shot Seal<MODE> (RFC 9180 section 6.1). */
export async function hpkeSeal(params: HpkeSenderParams & { readonly aad?: Uint8Array }, plaintext: Uint8Array): Promise<HpkeSealed> {
  const ctx = await setupHpkeSender(params);
  return { enc: ctx.enc, ciphertext: await ctx.seal(plaintext, params.aad ?? EMPTY) };
}

/** Single-shot Open<MODE>; ERR_HPKE_OPEN (or ERR_HPKE_DECAP for a malformed enc) on any mismatch. */
export async function hpkeOpen(params: HpkeRecipientParams & { readonly aad?: Uint8Array }, ciphertext: Uint8Array): Promise<Bytes> {
  const ctx = await setupHpkeRecipient(params);
  return ctx.open(ciphertext, params.aad ?? EMPTY);
}

/** Single-shot SendExport (RFC 9180 section 6.2): a shared secret of `length` bytes and its enc. */
export async function hpkeSendExport(params: HpkeSenderParams, exporterContext: Uint8Array, length: number): Promise<{ enc: Bytes; exported: Bytes }> {
  const ctx = await setupHpkeSender(params);
  return { enc: ctx.enc, exported: await ctx.export(exporterContext, length) };
}

/** Single-shot ReceiveExport (RFC 9180 section 6.2). */
export async function hpkeReceiveExport(params: HpkeRecipientParams, exporterContext: Uint8Array, length: number): Promise<Bytes> {
  const ctx = await setupHpkeRecipient(params);
  return ctx.export(exporterContext, length);
}
