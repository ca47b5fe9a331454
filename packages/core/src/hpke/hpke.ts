/**
 * HPKE (RFC 9180) for Custody: base, psk, auth and auth_psk modes, single-shot and
 * multi-message contexts, and the secret export interface. The mode follows from the inputs:
 * a psk selects psk modes, a sender key pair (or sender public key) selects auth modes.
 */
import type { Bytes } from '../bytes.js';
import type { RandomSource } from '../crypto.js';
import { AeadId, HpkeError, HpkeMode, type HpkeSuiteIds } from './identifiers.js';
import type { HpkeKeyPair, HpkePublicKey } from './keys.js';
import { mapHpkeError, resolveSuite, type ResolvedSuite } from './suite.js';

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

interface CoreExporter {
  export(ctx: ArrayBufferLike | ArrayBufferView, len: number): Promise<ArrayBuffer>;
}

function modeOf(psk: HpkePsk | undefined, auth: boolean): HpkeMode {
  if (psk) return auth ? HpkeMode.AuthPsk : HpkeMode.Psk;
  return auth ? HpkeMode.Auth : HpkeMode.Base;
}

function checkPsk(psk: HpkePsk | undefined): void {
  if (psk && (psk.id.length === 0 || psk.key.length === 0)) {
    throw new HpkeError('ERR_HPKE_PARAMS', 'psk and psk_id must both be non-empty', { detail: { pskIdLength: psk.id.length, pskLength: psk.key.length } });
  }
}

function checkKem(suite: ResolvedSuite, kem: number, what: string): void {
  if (kem !== suite.kem.id) throw new HpkeError('ERR_HPKE_KEY', `${what} belongs to another KEM`, { detail: { kem, expected: suite.kem.id } });
}

function makeExport(suite: ResolvedSuite, ctx: CoreExporter): (exporterContext: Uint8Array, length: number) => Promise<Bytes> {
  return async (exporterContext, length) => {
    if (!Number.isInteger(length) || length < 0 || length > 255 * suite.kdf.nH) {
      throw new HpkeError('ERR_HPKE_PARAMS', 'export length out of range', { detail: { length, max: 255 * suite.kdf.nH } });
    }
    try {
      return new Uint8Array(await ctx.export(exporterContext, length));
    } catch (e) {
      throw mapHpkeError(e, 'ERR_HPKE_PARAMS');
    }
  };
}

function exportOnly(): Promise<never> {
  return Promise.reject(new HpkeError('ERR_HPKE_EXPORT_ONLY'));
}

/** SetupS for the mode the inputs select (RFC 9180 section 5.1). */
export async function setupHpkeSender(params: HpkeSenderParams): Promise<HpkeSenderContext> {
  const suite = resolveSuite(params.suite);
  checkKem(suite, params.recipientPublicKey.kem, 'recipient public key');
  if (params.senderKeyPair) checkKem(suite, params.senderKeyPair.kem, 'sender key pair');
  if (params.ephemeralKeyPair) checkKem(suite, params.ephemeralKeyPair.kem, 'ephemeral key pair');
  checkPsk(params.psk);
  const ekm = params.ephemeralKeyPair
    ? { privateKey: params.ephemeralKeyPair.privateKey, publicKey: params.ephemeralKeyPair.publicKey.key }
    : params.random
      ? params.random(suite.kem.nSk)
      : undefined;
  let ctx;
  try {
    ctx = await suite.impl.createSenderContext({
      recipientPublicKey: params.recipientPublicKey.key,
      info: params.info ?? EMPTY,
      ...(params.psk ? { psk: { id: params.psk.id, key: params.psk.key } } : {}),
      ...(params.senderKeyPair ? { senderKey: { privateKey: params.senderKeyPair.privateKey, publicKey: params.senderKeyPair.publicKey.key } } : {}),
      ...(ekm ? { ekm } : {}),
    });
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_ENCAP');
  } finally {
    if (ekm instanceof Uint8Array) ekm.fill(0);
  }
  const c = ctx;
  const isExportOnly = suite.aead.id === AeadId.ExportOnly;
  return {
    suite: suite.ids,
    mode: modeOf(params.psk, params.senderKeyPair !== undefined),
    enc: new Uint8Array(c.enc),
    seal: async (plaintext, aad = EMPTY) => {
      if (isExportOnly) return exportOnly();
      try {
        return new Uint8Array(await c.seal(plaintext, aad));
      } catch (e) {
        throw mapHpkeError(e, 'ERR_HPKE_SEAL');
      }
    },
    export: makeExport(suite, c),
  };
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
  let ctx;
  try {
    ctx = await suite.impl.createRecipientContext({
      recipientKey: { privateKey: params.recipientKeyPair.privateKey, publicKey: params.recipientKeyPair.publicKey.key },
      enc: params.enc,
      info: params.info ?? EMPTY,
      ...(params.psk ? { psk: { id: params.psk.id, key: params.psk.key } } : {}),
      ...(params.senderPublicKey ? { senderPublicKey: params.senderPublicKey.key } : {}),
    });
  } catch (e) {
    throw mapHpkeError(e, 'ERR_HPKE_DECAP');
  }
  const c = ctx;
  const isExportOnly = suite.aead.id === AeadId.ExportOnly;
  return {
    suite: suite.ids,
    mode: modeOf(params.psk, params.senderPublicKey !== undefined),
    open: async (ciphertext, aad = EMPTY) => {
      if (isExportOnly) return exportOnly();
      if (ciphertext.length < suite.aead.nT) throw new HpkeError('ERR_HPKE_OPEN', 'ciphertext shorter than the tag', { detail: { length: ciphertext.length } });
      try {
        return new Uint8Array(await c.open(ciphertext, aad));
      } catch (e) {
        throw mapHpkeError(e, 'ERR_HPKE_OPEN');
      }
    },
    export: makeExport(suite, c),
  };
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
