/**
 * The gateway's runtime data: what its evidence binds (docs/key-release-protocol.md section 2).
 *
 * The key-release convention is `{"nonce", "tee-pubkey"}` serialised with RFC 8785; the
 * gateway adds the two keys a client relies on, so that one hash in the report data covers
 * them all:
 *
 * ```json
 * {"nonce":"<base64url>",                                 // broker challenge or client nonce; optional
 *  "ohttp-keys":"<base64url of application/ohttp-keys>",   // RFC 9458 key configurations, current first
 *  "receipt-key":{"crv":"Ed25519","kty":"OKP","x":"..."},  // signs every receipt
 *  "tee-pubkey":{"crv":"X25519","kty":"OKP","x":"..."}}    // the key a broker wraps model keys to
 * ```
 *
 * The digest carried by each platform follows the protocol's table: SHA-256 where a TPM
 * quote's qualifying data holds it (tpm, azure-vtpm), SHA-512 everywhere else.
 */
import { canonicalize, digest, fromBase64Url, fromUtf8, ParseError, toBase64Url, utf8, type Bytes, type HashName } from '@custody/core';
import { parseKeyConfigs, encodeKeyConfigs, type KeyConfig } from '../ohttp/key-config.js';

export interface OkpPublicJwk {
  readonly kty: 'OKP';
  readonly crv: 'X25519' | 'Ed25519';
  readonly x: string;
}

export interface GatewayRuntimeData {
  readonly nonce?: string;
  readonly 'ohttp-keys': string;
  readonly 'receipt-key': OkpPublicJwk & { readonly crv: 'Ed25519' };
  readonly 'tee-pubkey': OkpPublicJwk & { readonly crv: 'X25519' };
}

/** The parsed form: the JCS text as bound, and the typed values it carries. */
export interface ParsedRuntimeData {
  readonly text: string;
  readonly value: GatewayRuntimeData;
  readonly nonce?: Bytes;
  readonly keyConfigs: KeyConfig[];
  /** The application/ohttp-keys bytes exactly as bound. */
  readonly keyConfigBytes: Bytes;
}

export const MAX_RUNTIME_DATA = 64 * 1024;
const FIELDS = new Set(['nonce', 'ohttp-keys', 'receipt-key', 'tee-pubkey']);

/**
 * Which digest of the runtime data a platform's evidence carries (key-release-protocol table):
 * SHA-256 in a TPM quote's qualifying data and in an NVIDIA GPU's 32-byte SPDM request nonce
 * (GPU evidence rides along the CPU TEE's, bound to the same runtime data), SHA-512 elsewhere.
 */
export function runtimeDigestAlgorithm(platform: string): HashName {
  return platform === 'tpm' || platform === 'azure-vtpm' || platform === 'nvidia' ? 'SHA-256' : 'SHA-512';
}

/** The digest the evidence of `platform` must carry for this runtime data. */
export function runtimeDigest(platform: string, runtimeDataText: string): Promise<Bytes> {
  return digest(runtimeDigestAlgorithm(platform), utf8(runtimeDataText));
}

export interface BuildRuntimeDataInput {
  readonly nonce?: Uint8Array;
  readonly keyConfigs: readonly KeyConfig[];
  readonly receiptKey: Uint8Array;
  readonly teePublicKey: Uint8Array;
}

/** Builds the canonical runtime data text (RFC 8785) the gateway binds into its evidence. */
export function buildRuntimeData(input: BuildRuntimeDataInput): string {
  if (input.receiptKey.length !== 32 || input.teePublicKey.length !== 32) throw new ParseError('ERR_INPUT_MALFORMED', 'runtime data keys must be 32-byte raw public keys');
  const value: GatewayRuntimeData = {
    ...(input.nonce ? { nonce: toBase64Url(input.nonce) } : {}),
    'ohttp-keys': toBase64Url(encodeKeyConfigs(input.keyConfigs)),
    'receipt-key': { crv: 'Ed25519', kty: 'OKP', x: toBase64Url(input.receiptKey) },
    'tee-pubkey': { crv: 'X25519', kty: 'OKP', x: toBase64Url(input.teePublicKey) },
  };
  return canonicalize(value);
}

function okp(v: unknown, crv: 'X25519' | 'Ed25519', what: string): OkpPublicJwk {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ParseError('ERR_INPUT_MALFORMED', `runtime data ${what} is not a JWK`);
  const o = v as Record<string, unknown>;
  const keys = Object.keys(o).sort().join(',');
  if (keys !== 'crv,kty,x' || o.kty !== 'OKP' || o.crv !== crv || typeof o.x !== 'string' || o.x.length > 64) {
    throw new ParseError('ERR_INPUT_MALFORMED', `runtime data ${what} is not an ${crv} public JWK`);
  }
  if (fromBase64Url(o.x).length !== 32) throw new ParseError('ERR_INPUT_MALFORMED', `runtime data ${what} is not a 32-byte key`);
  return { kty: 'OKP', crv, x: o.x };
}

/**
 * Parses runtime data text. It must be exactly the RFC 8785 form of its value (so one digest
 * means one object), with only the known members.
 */
export function parseRuntimeData(text: string): ParsedRuntimeData {
  if (typeof text !== 'string' || text.length > MAX_RUNTIME_DATA) throw new ParseError('ERR_INPUT_TOO_LARGE', 'runtime data is too large');
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ParseError('ERR_INPUT_MALFORMED', 'runtime data is not JSON', { cause: e });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new ParseError('ERR_INPUT_MALFORMED', 'runtime data is not a JSON object');
  const o = v as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!FIELDS.has(k)) throw new ParseError('ERR_INPUT_MALFORMED', 'runtime data has an unknown member', { detail: { member: k.slice(0, 32) } });
  if (canonicalize(o) !== text) throw new ParseError('ERR_INPUT_MALFORMED', 'runtime data is not in RFC 8785 canonical form');
  let nonce: Bytes | undefined;
  if (o.nonce !== undefined) {
    if (typeof o.nonce !== 'string' || o.nonce.length > 128) throw new ParseError('ERR_INPUT_MALFORMED', 'runtime data nonce is not base64url');
    nonce = fromBase64Url(o.nonce);
  }
  if (typeof o['ohttp-keys'] !== 'string') throw new ParseError('ERR_INPUT_MALFORMED', 'runtime data has no ohttp-keys');
  const keyConfigBytes = fromBase64Url(o['ohttp-keys']);
  const keyConfigs = parseKeyConfigs(keyConfigBytes);
  if (keyConfigs.length === 0) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'runtime data has no key configuration this client supports');
  const value: GatewayRuntimeData = {
    ...(o.nonce !== undefined ? { nonce: o.nonce } : {}),
    'ohttp-keys': o['ohttp-keys'],
    'receipt-key': okp(o['receipt-key'], 'Ed25519', 'receipt-key') as GatewayRuntimeData['receipt-key'],
    'tee-pubkey': okp(o['tee-pubkey'], 'X25519', 'tee-pubkey') as GatewayRuntimeData['tee-pubkey'],
  };
  return { text, value, keyConfigs, keyConfigBytes, ...(nonce ? { nonce } : {}) };
}

/** True when two runtime data objects bind the same keys (they may differ in nonce). */
export function sameRuntimeKeys(a: GatewayRuntimeData, b: GatewayRuntimeData): boolean {
  return a['ohttp-keys'] === b['ohttp-keys'] && a['receipt-key'].x === b['receipt-key'].x && a['tee-pubkey'].x === b['tee-pubkey'].x;
}

/** Decodes runtime data bytes (UTF-8) for callers holding bytes. */
export function runtimeDataFromBytes(b: Uint8Array): ParsedRuntimeData {
  return parseRuntimeData(fromUtf8(b));
}
