/**
 * OHTTP key configurations (RFC 9458 section 3): the single encoding and the
 * application/ohttp-keys list, where each configuration has a 2-byte length prefix.
 *
 *   HPKE Symmetric Algorithms { HPKE KDF ID (16), HPKE AEAD ID (16) }
 *   Key Config {
 *     Key Identifier (8), HPKE KEM ID (16), HPKE Public Key (Npk * 8),
 *     HPKE Symmetric Algorithms Length (16) = 4..65532,
 *     HPKE Symmetric Algorithms (32) ...,
 *   }
 */
import {
  AeadId,
  assertMaxSize,
  ByteReader,
  concatBytes,
  deriveHpkeKeyPair,
  deserializeHpkePrivateKey,
  generateHpkeKeyPair,
  HPKE_AEADS,
  HPKE_KDFS,
  HPKE_KEMS,
  HpkeError,
  KdfId,
  KemId,
  kemParams,
  ParseError,
  type Bytes,
  type HpkeKeyPair,
  type HpkeSuiteIds,
} from '@custody/core';

export interface OhttpSymmetricSuite {
  readonly kdf: number;
  readonly aead: number;
}

export interface KeyConfig {
  readonly keyId: number;
  readonly kem: number;
  readonly publicKey: Bytes;
  /** In the server's order of preference. Unknown ids are kept; selection skips them. */
  readonly suites: readonly OhttpSymmetricSuite[];
}

/** A gateway's key: the public configuration and the private key it decapsulates with. */
export interface OhttpServerKey {
  readonly config: KeyConfig;
  readonly keyPair: HpkeKeyPair;
}

/** The symmetric suites a Custody gateway offers by default, most preferred first. */
export const DEFAULT_OHTTP_SUITES: readonly OhttpSymmetricSuite[] = [
  { kdf: KdfId.HkdfSha256, aead: AeadId.Aes128Gcm },
  { kdf: KdfId.HkdfSha256, aead: AeadId.Aes256Gcm },
  { kdf: KdfId.HkdfSha256, aead: AeadId.ChaCha20Poly1305 },
];

/** Bound on a key configuration list (a few keys, each well under 1 KiB). */
export const MAX_KEY_CONFIGS_SIZE = 64 * 1024;

function checkConfig(c: KeyConfig): void {
  if (!Number.isInteger(c.keyId) || c.keyId < 0 || c.keyId > 255) throw new HpkeError('ERR_INPUT_MALFORMED', 'key id must be 0..255', { detail: { keyId: c.keyId } });
  const kem = kemParams(c.kem);
  if (c.publicKey.length !== kem.nPk) throw new HpkeError('ERR_HPKE_KEY', 'public key has the wrong length for the KEM', { detail: { length: c.publicKey.length, expected: kem.nPk } });
  if (c.suites.length === 0 || c.suites.length > 16383) throw new HpkeError('ERR_INPUT_MALFORMED', 'a key configuration needs 1..16383 symmetric suites', { detail: { count: c.suites.length } });
  for (const s of c.suites) {
    if (!(s.kdf >= 0 && s.kdf <= 0xffff && s.aead >= 0 && s.aead <= 0xffff)) throw new HpkeError('ERR_INPUT_MALFORMED', 'suite id out of range');
  }
}

export function encodeKeyConfig(c: KeyConfig): Bytes {
  checkConfig(c);
  const out = new Uint8Array(3 + c.publicKey.length + 2 + 4 * c.suites.length);
  const v = new DataView(out.buffer);
  v.setUint8(0, c.keyId);
  v.setUint16(1, c.kem);
  out.set(c.publicKey, 3);
  let o = 3 + c.publicKey.length;
  v.setUint16(o, 4 * c.suites.length);
  o += 2;
  for (const s of c.suites) {
    v.setUint16(o, s.kdf);
    v.setUint16(o + 2, s.aead);
    o += 4;
  }
  return out;
}

function readConfig(r: ByteReader): KeyConfig {
  const keyId = r.u8();
  const kem = r.u16be();
  const params = HPKE_KEMS[kem];
  if (!params) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'key configuration uses an unsupported KEM', { detail: { kem } });
  const publicKey = r.take(params.nPk);
  const len = r.u16be();
  if (len < 4 || len % 4 !== 0) throw new ParseError('ERR_INPUT_MALFORMED', 'symmetric algorithms length must be a non-zero multiple of 4', { detail: { length: len } });
  const suites: OhttpSymmetricSuite[] = [];
  const body = new ByteReader(r.bytesView(len), 'symmetric algorithms');
  while (body.remaining > 0) suites.push({ kdf: body.u16be(), aead: body.u16be() });
  return { keyId, kem, publicKey, suites };
}

/** Parses exactly one key configuration (no trailing bytes). */
export function parseKeyConfig(bytes: Uint8Array): KeyConfig {
  assertMaxSize(bytes, MAX_KEY_CONFIGS_SIZE, 'key configuration');
  const r = new ByteReader(bytes, 'key configuration');
  const c = readConfig(r);
  r.end();
  return c;
}

/** application/ohttp-keys: each configuration prefixed with its 2-byte length. */
export function encodeKeyConfigs(configs: readonly KeyConfig[]): Bytes {
  if (configs.length === 0) throw new HpkeError('ERR_INPUT_MALFORMED', 'the list needs at least one key configuration');
  const parts: Uint8Array[] = [];
  for (const c of configs) {
    const e = encodeKeyConfig(c);
    parts.push(new Uint8Array([e.length >> 8, e.length & 0xff]), e);
  }
  return concatBytes(...parts);
}

/**
 * Parses application/ohttp-keys. Configurations whose KEM this client does not support are
 * skipped (RFC 9458 section 3.2); the result can therefore be empty. Structure errors throw.
 */
export function parseKeyConfigs(bytes: Uint8Array): KeyConfig[] {
  assertMaxSize(bytes, MAX_KEY_CONFIGS_SIZE, 'key configuration list');
  if (bytes.length === 0) throw new ParseError('ERR_INPUT_TRUNCATED', 'key configuration list is empty');
  const r = new ByteReader(bytes, 'key configuration list');
  const out: KeyConfig[] = [];
  while (r.remaining > 0) {
    const len = r.u16be();
    const one = r.bytesView(len);
    if (one.length >= 3 && HPKE_KEMS[(one[1]! << 8) | one[2]!] === undefined) continue;
    out.push(parseKeyConfig(one));
  }
  return out;
}

export interface SelectedSuite extends HpkeSuiteIds {
  readonly keyId: number;
}

function usable(kdf: number, aead: number): boolean {
  return HPKE_KDFS[kdf] !== undefined && HPKE_AEADS[aead] !== undefined && aead !== AeadId.ExportOnly;
}

/**
 * The first symmetric suite in the configuration that this client supports, or the first of
 * `preferred` that the configuration offers. ERR_OHTTP_SUITE when there is none.
 */
export function selectSuite(config: KeyConfig, preferred?: readonly OhttpSymmetricSuite[]): SelectedSuite {
  if (HPKE_KEMS[config.kem] === undefined) throw new HpkeError('ERR_OHTTP_SUITE', 'the key configuration uses an unsupported KEM', { detail: { kem: config.kem } });
  const offered = config.suites.filter((s) => usable(s.kdf, s.aead));
  const pick = preferred ? preferred.find((p) => offered.some((s) => s.kdf === p.kdf && s.aead === p.aead)) : offered[0];
  if (!pick) throw new HpkeError('ERR_OHTTP_SUITE', undefined, { detail: { keyId: config.keyId } });
  return { keyId: config.keyId, kem: config.kem, kdf: pick.kdf, aead: pick.aead };
}

export interface CreateServerKeyOptions {
  readonly keyId: number;
  readonly kem?: number;
  readonly suites?: readonly OhttpSymmetricSuite[];
  /** Deterministic key from a seed (DeriveKeyPair); by default a fresh random key. */
  readonly ikm?: Uint8Array;
  /** An existing serialised private key (for example from a sealed store). */
  readonly privateKey?: Uint8Array;
}

/** Creates a gateway key and its configuration (X25519 and DEFAULT_OHTTP_SUITES by default). */
export async function createOhttpServerKey(options: CreateServerKeyOptions): Promise<OhttpServerKey> {
  const kem = options.kem ?? KemId.DhkemX25519HkdfSha256;
  const keyPair = options.privateKey
    ? await deserializeHpkePrivateKey(kem, options.privateKey)
    : options.ikm
      ? await deriveHpkeKeyPair(kem, options.ikm)
      : await generateHpkeKeyPair(kem);
  const config: KeyConfig = { keyId: options.keyId, kem, publicKey: keyPair.publicKey.bytes, suites: options.suites ?? DEFAULT_OHTTP_SUITES };
  checkConfig(config);
  return { config, keyPair };
}
