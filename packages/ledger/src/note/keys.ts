import { ParseError, concatBytes, subtle, toBase64, toHex, utf8, wipe, type Bytes, type RandomSource } from '@custody/core';
import { sha256Sync } from '../merkle/sha256.js';
import { decodeStdBase64 } from './base64.js';

/** Signature type bytes from C2SP signed-note. */
export const SIG_TYPE_ED25519 = 0x01;
/** Timestamped Ed25519 checkpoint cosignature (C2SP tlog-cosignature, cosignature/v1). */
export const SIG_TYPE_COSIGNATURE_V1 = 0x04;

export type SupportedSigType = typeof SIG_TYPE_ED25519 | typeof SIG_TYPE_COSIGNATURE_V1;

/** A parsed verifier key (`name+keyid+base64(type || public key)`). */
export interface VerifierKey {
  name: string;
  keyId: number;
  type: SupportedSigType;
  publicKey: Bytes;
  /** The canonical vkey string. */
  vkey: string;
}

const MAX_KEY_STRING = 1024;

/**
 * Exactly the characters Go's unicode.IsSpace reports (Unicode White_Space): TAB, LF, VT, FF, CR,
 * space, NEL, NBSP, U+1680, U+2000-U+200A, LINE/PARAGRAPH SEPARATOR, U+202F, U+205F, U+3000.
 * JS `\s` differs both ways (it lacks U+0085 and includes U+FEFF), so it must not be used here.
 */
const GO_SPACE = /[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u;
const ASCII_SPACE_EDGES = /^[\t\n\v\f\r ]+|[\t\n\v\f\r ]+$/g;

/**
 * Key names are non-empty valid UTF-8 with no space (as Go's unicode.IsSpace defines it) and no
 * plus sign: x/mod/sumdb/note's isValidName. Names also have a length bound here.
 */
export function isValidKeyName(name: string): boolean {
  return name.length > 0 && name.length <= 512 && !name.includes('+') && !GO_SPACE.test(name) && !/\p{Cs}/u.test(name);
}

/** Trims only ASCII whitespace around a key string (a line from a file); other characters stay and are judged. */
function trimKey(s: string): string {
  return s.replace(ASCII_SPACE_EDGES, '');
}

/** key ID = SHA-256(key name || 0x0A || signature type || public key)[:4], big-endian uint32. */
export function computeKeyId(name: string, type: number, publicKey: Uint8Array): number {
  const h = sha256Sync(concatBytes(utf8(name), new Uint8Array([0x0a, type]), publicKey));
  return ((h[0]! << 24) | (h[1]! << 16) | (h[2]! << 8) | h[3]!) >>> 0;
}

export function keyIdHex(keyId: number): string {
  return keyId.toString(16).padStart(8, '0');
}

export function formatVerifierKey(name: string, type: SupportedSigType, publicKey: Uint8Array): string {
  if (!isValidKeyName(name)) throw new ParseError('ERR_NOTE_KEY', 'invalid key name');
  if (publicKey.length !== 32) throw new ParseError('ERR_NOTE_KEY', 'Ed25519 public keys are 32 bytes');
  return `${name}+${keyIdHex(computeKeyId(name, type, publicKey))}+${toBase64(concatBytes(new Uint8Array([type]), publicKey))}`;
}

/** Splits at the first parts-1 plus signs; the last part is base64 and may itself contain '+'. */
function splitKey(s: string, parts: number, what: string): string[] {
  if (s.length > MAX_KEY_STRING) throw new ParseError('ERR_NOTE_KEY', `${what} is too long`);
  const out: string[] = [];
  let rest = s;
  for (let i = 0; i < parts - 1; i++) {
    const at = rest.indexOf('+');
    if (at < 0) throw new ParseError('ERR_NOTE_KEY', `${what} must have ${parts} plus-separated parts`);
    out.push(rest.slice(0, at));
    rest = rest.slice(at + 1);
  }
  out.push(rest);
  return out;
}

function parseKeyMaterial(name: string, idHex: string, b64: string, what: string): { keyId: number; type: SupportedSigType; material: Bytes } {
  if (!isValidKeyName(name)) throw new ParseError('ERR_NOTE_KEY', `${what} has an invalid key name`);
  if (!/^[0-9a-fA-F]{8}$/.test(idHex)) throw new ParseError('ERR_NOTE_KEY', `${what} key ID must be 8 hex digits`);
  const raw = decodeStdBase64(b64);
  if (!raw || raw.length < 1) throw new ParseError('ERR_NOTE_KEY', `${what} key is not base64`);
  const type = raw[0]!;
  if (type !== SIG_TYPE_ED25519 && type !== SIG_TYPE_COSIGNATURE_V1) {
    throw new ParseError('ERR_INPUT_UNSUPPORTED', `${what} uses an unsupported signature type`, { detail: { type } });
  }
  const material = raw.slice(1);
  wipe(raw);
  if (material.length !== 32) throw new ParseError('ERR_NOTE_KEY', `${what} key must be 32 bytes`);
  return { keyId: parseInt(idHex, 16) >>> 0, type, material };
}

export function parseVerifierKey(vkey: string): VerifierKey {
  const [name, idHex, b64] = splitKey(trimKey(vkey), 3, 'verifier key') as [string, string, string];
  const { keyId, type, material } = parseKeyMaterial(name, idHex, b64, 'verifier key');
  if (computeKeyId(name, type, material) !== keyId) throw new ParseError('ERR_NOTE_KEY', 'verifier key ID does not match the key');
  return { name, keyId, type, publicKey: material, vkey: formatVerifierKey(name, type, material) };
}

// PKCS#8 wrapping of a raw Ed25519 seed (RFC 8410): WebCrypto imports private keys only this way.
const PKCS8_ED25519_PREFIX = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

export interface Ed25519KeyPair {
  privateKey: CryptoKey;
  publicKey: Bytes;
}

/** Imports a 32-byte Ed25519 seed as a non-extractable signing key and derives its public key. */
export async function importEd25519Seed(seed: Uint8Array): Promise<Ed25519KeyPair> {
  if (seed.length !== 32) throw new ParseError('ERR_NOTE_KEY', 'Ed25519 seeds are 32 bytes');
  const pkcs8 = concatBytes(PKCS8_ED25519_PREFIX, seed);
  try {
    // WebCrypto cannot derive the public key from a non-extractable key, so import once
    // extractable, read only the public half (JWK "x"), then import again non-extractable.
    const tmp = await subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
    const jwk = await subtle.exportKey('jwk', tmp);
    const publicKey = decodeBase64Url(jwk.x ?? '');
    jwk.d = '';
    const privateKey = await subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']);
    return { privateKey, publicKey };
  } finally {
    wipe(pkcs8);
  }
}

function decodeBase64Url(s: string): Bytes {
  const std = s.replace(/-/g, '+').replace(/_/g, '/');
  const padded = std + '='.repeat((4 - (std.length % 4)) % 4);
  const b = decodeStdBase64(padded);
  if (!b || b.length !== 32) throw new ParseError('ERR_NOTE_KEY', 'could not derive the Ed25519 public key');
  return b;
}

export async function importEd25519PublicKey(publicKey: Uint8Array): Promise<CryptoKey> {
  return subtle.importKey('raw', new Uint8Array(publicKey), { name: 'Ed25519' }, false, ['verify']);
}

/** A parsed signer key (`PRIVATE+KEY+name+keyid+base64(type || seed)`). The seed is wiped by `open`. */
export interface SignerKeyParts {
  name: string;
  keyId: number;
  type: SupportedSigType;
  seed: Bytes;
}

export function parseSignerKey(skey: string): SignerKeyParts {
  const parts = splitKey(trimKey(skey), 5, 'signer key');
  if (parts[0] !== 'PRIVATE' || parts[1] !== 'KEY') throw new ParseError('ERR_NOTE_KEY', 'signer key must start with PRIVATE+KEY+');
  const { keyId, type, material } = parseKeyMaterial(parts[2]!, parts[3]!, parts[4]!, 'signer key');
  return { name: parts[2]!, keyId, type, seed: material };
}

export function formatSignerKey(name: string, type: SupportedSigType, seed: Uint8Array, publicKey: Uint8Array): string {
  const material = concatBytes(new Uint8Array([type]), seed);
  try {
    return `PRIVATE+KEY+${name}+${keyIdHex(computeKeyId(name, type, publicKey))}+${toBase64(material)}`;
  } finally {
    wipe(material);
  }
}

/** Generates a new signer key (and its verifier key) from injected randomness. */
export async function generateSignerKey(name: string, type: SupportedSigType, random: RandomSource): Promise<{ skey: string; vkey: string }> {
  if (!isValidKeyName(name)) throw new ParseError('ERR_NOTE_KEY', 'invalid key name');
  const seed = random(32);
  try {
    const { publicKey } = await importEd25519Seed(seed);
    return { skey: formatSignerKey(name, type, seed, publicKey), vkey: formatVerifierKey(name, type, publicKey) };
  } finally {
    wipe(seed);
  }
}

/**
 * The verifier key (vkey) of a signer key, for an operator who kept the key file but not what
 * `keygen` printed. The seed is wiped; only the public key is derived.
 */
export async function verifierKeyOfSigner(skey: string): Promise<string> {
  const parts = parseSignerKey(skey);
  try {
    const { publicKey } = await importEd25519Seed(parts.seed);
    const vkey = formatVerifierKey(parts.name, parts.type, publicKey);
    // The key id in the file must be the one its name, type and key give.
    if (computeKeyId(parts.name, parts.type, publicKey) !== parts.keyId) throw new ParseError('ERR_NOTE_KEY', 'the signer key file names another key id than its key gives');
    return vkey;
  } finally {
    wipe(parts.seed);
  }
}

/** Short human-readable fingerprint of a vkey's public key, for logs and reports (not secret). */
export function verifierKeyFingerprint(vk: VerifierKey): string {
  return `${vk.name}+${keyIdHex(vk.keyId)} sha256:${toHex(sha256Sync(vk.publicKey)).slice(0, 16)}`;
}
