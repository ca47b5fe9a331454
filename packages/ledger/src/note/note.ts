import { ParseError, VerificationError, concatBytes, subtle, toBase64, utf8, type Bytes, type Clock } from '@custody/core';
import { decodeStdBase64 } from './base64.js';
import {
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
  computeKeyId,
  formatVerifierKey,
  importEd25519PublicKey,
  importEd25519Seed,
  isValidKeyName,
  keyIdHex,
  parseSignerKey,
  parseVerifierKey,
  type SupportedSigType,
  type VerifierKey,
} from './keys.js';
import { decodeUtf8Exact } from './utf8.js';

/** Notes are small; this also bounds the work a hostile note can cause. */
export const MAX_NOTE_SIZE = 1 << 20;
/** Go's x/mod/sumdb/note uses the same limit; the spec requires at least 16. */
export const MAX_NOTE_SIGNATURES = 100;

const SIG_PREFIX = '\u2014 ';

export interface NoteSignature {
  name: string;
  keyId: number;
  /** Signature bytes after the 4-byte key ID. */
  signature: Bytes;
  /** The line as it appeared, without the trailing newline. */
  line: string;
}

/** A signed note split into its text (including the final newline) and signature lines. */
export interface SignedNote {
  text: string;
  textBytes: Bytes;
  signatures: NoteSignature[];
}

export interface NoteVerifier {
  readonly name: string;
  readonly keyId: number;
  readonly type: SupportedSigType;
  readonly vkey: string;
  verify(text: Uint8Array, signature: Uint8Array): Promise<boolean>;
}

export interface NoteSigner {
  readonly name: string;
  readonly keyId: number;
  readonly type: SupportedSigType;
  /** The matching verifier key, public. */
  readonly vkey: string;
  /** Returns the signature bytes that follow the key ID in the signature line. */
  sign(text: Uint8Array): Promise<Bytes>;
}

function malformed(why: string, detail?: Record<string, number>): ParseError {
  return new ParseError('ERR_NOTE_MALFORMED', why, detail ? { detail } : undefined);
}

/** Text rules from C2SP signed-note: valid UTF-8, no ASCII control characters except newline. */
export function checkNoteText(s: string): void {
  if (/\p{Cs}/u.test(s)) throw malformed('note is not valid UTF-8');
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 && c !== 0x0a) throw malformed('note contains a control character', { offset: i });
  }
}

/**
 * Splits a signed note; checks its syntax, not its signatures. Bytes are decoded exactly (a
 * leading byte-order mark stays part of the text), so bytes and the string they encode parse
 * and verify alike.
 */
export function parseNote(input: Uint8Array | string): SignedNote {
  const bytes = typeof input === 'string' ? utf8(input) : input;
  if (bytes.length > MAX_NOTE_SIZE) throw new ParseError('ERR_INPUT_TOO_LARGE', 'note is too large', { detail: { size: bytes.length } });
  let s: string;
  try {
    s = typeof input === 'string' ? input : decodeUtf8Exact(bytes);
  } catch (e) {
    throw new ParseError('ERR_NOTE_MALFORMED', 'note is not valid UTF-8', { cause: e });
  }
  checkNoteText(s);
  const split = s.lastIndexOf('\n\n');
  if (split < 0) throw malformed('note has no blank line before its signatures');
  const text = s.slice(0, split + 1);
  const sigBlock = s.slice(split + 2);
  if (sigBlock.length === 0 || !sigBlock.endsWith('\n')) throw malformed('note signatures must end in a newline');
  const lines = sigBlock.slice(0, -1).split('\n');
  if (lines.length > MAX_NOTE_SIGNATURES) throw malformed('note has too many signatures', { count: lines.length });
  const signatures = lines.map((line, i) => {
    if (!line.startsWith(SIG_PREFIX)) throw malformed('signature line must start with an em dash and a space', { line: i });
    const rest = line.slice(SIG_PREFIX.length);
    const sp = rest.indexOf(' ');
    if (sp < 0) throw malformed('signature line has no key name', { line: i });
    const name = rest.slice(0, sp);
    const b64 = rest.slice(sp + 1);
    if (!isValidKeyName(name)) throw malformed('signature line has an invalid key name', { line: i });
    const raw = decodeStdBase64(b64);
    if (!raw || raw.length < 5) throw malformed('signature is not base64 of a key ID and a signature', { line: i });
    const keyId = ((raw[0]! << 24) | (raw[1]! << 16) | (raw[2]! << 8) | raw[3]!) >>> 0;
    return { name, keyId, signature: raw.slice(4), line };
  });
  return { text, textBytes: utf8(text), signatures };
}

export function formatNote(text: string, signatures: readonly NoteSignature[]): string {
  if (!text.endsWith('\n')) throw malformed('note text must end in a newline');
  return text + '\n' + signatures.map((s) => s.line + '\n').join('');
}

export function signatureLine(name: string, keyId: number, signature: Uint8Array): NoteSignature {
  const raw = new Uint8Array(4 + signature.length);
  raw[0] = keyId >>> 24;
  raw[1] = (keyId >>> 16) & 0xff;
  raw[2] = (keyId >>> 8) & 0xff;
  raw[3] = keyId & 0xff;
  raw.set(signature, 4);
  return { name, keyId, signature: raw.slice(4), line: `${SIG_PREFIX}${name} ${toBase64(raw)}` };
}

export interface VerifiedSignature {
  signature: NoteSignature;
  verifier: NoteVerifier;
}

export interface OpenedNote {
  note: SignedNote;
  verified: VerifiedSignature[];
  /** Signatures from keys the caller does not know (ignored, per the spec). */
  unknown: NoteSignature[];
}

/**
 * Verifies a note per C2SP signed-note: unknown keys are ignored; a signature from a known
 * (name, key ID) that fails rejects the whole note; at least one known signature must verify.
 */
export async function openNote(input: Uint8Array | string | SignedNote, verifiers: readonly NoteVerifier[]): Promise<OpenedNote> {
  const note = typeof input === 'object' && 'signatures' in input ? input : parseNote(input);
  const byId = new Map<string, NoteVerifier>();
  for (const v of verifiers) byId.set(`${v.name}\u0000${v.keyId}`, v);
  const verified: VerifiedSignature[] = [];
  const unknown: NoteSignature[] = [];
  const seen = new Set<NoteVerifier>();
  for (const sig of note.signatures) {
    const v = byId.get(`${sig.name}\u0000${sig.keyId}`);
    if (!v) {
      unknown.push(sig);
      continue;
    }
    if (seen.has(v)) continue;
    seen.add(v);
    if (!(await v.verify(note.textBytes, sig.signature))) {
      throw new VerificationError('ERR_NOTE_SIGNATURE', 'note signature from a known key does not verify', {
        detail: { key: `${sig.name}+${keyIdHex(sig.keyId)}` },
      });
    }
    verified.push({ signature: sig, verifier: v });
  }
  if (verified.length === 0) throw new VerificationError('ERR_NOTE_UNVERIFIED', 'note has no signature from a trusted key');
  return { note, verified, unknown };
}

/** Signs note text with each signer, appending to any existing signatures (replacing the same key's). */
export async function signNote(text: string, signers: readonly NoteSigner[], existing: readonly NoteSignature[] = []): Promise<string> {
  if (!text.endsWith('\n')) throw malformed('note text must end in a newline');
  checkNoteText(text);
  const bytes = utf8(text);
  const mine = new Set(signers.map((s) => `${s.name}\u0000${s.keyId}`));
  const sigs = existing.filter((s) => !mine.has(`${s.name}\u0000${s.keyId}`));
  for (const s of signers) sigs.push(signatureLine(s.name, s.keyId, await s.sign(bytes)));
  return formatNote(text, sigs);
}

// --- Ed25519 (type 0x01) ---

export async function createEd25519Verifier(vkey: string | VerifierKey): Promise<NoteVerifier> {
  const vk = typeof vkey === 'string' ? parseVerifierKey(vkey) : vkey;
  if (vk.type !== SIG_TYPE_ED25519) throw new ParseError('ERR_NOTE_KEY', 'not an Ed25519 note verifier key (type 0x01)');
  const key = await importEd25519PublicKey(vk.publicKey);
  return {
    name: vk.name,
    keyId: vk.keyId,
    type: SIG_TYPE_ED25519,
    vkey: vk.vkey,
    async verify(text, signature) {
      if (signature.length !== 64) return false;
      return subtle.verify('Ed25519', key, new Uint8Array(signature), new Uint8Array(text));
    },
  };
}

async function openSignerKey(skey: string, want: SupportedSigType) {
  const parts = parseSignerKey(skey);
  try {
    if (parts.type !== want) throw new ParseError('ERR_NOTE_KEY', `signer key has type ${parts.type}, expected ${want}`);
    const pair = await importEd25519Seed(parts.seed);
    if (computeKeyId(parts.name, parts.type, pair.publicKey) !== parts.keyId) throw new ParseError('ERR_NOTE_KEY', 'signer key ID does not match the key');
    return { name: parts.name, keyId: parts.keyId, pair, vkey: formatVerifierKey(parts.name, parts.type, pair.publicKey) };
  } finally {
    parts.seed.fill(0);
  }
}

/** A log's note signer from a `PRIVATE+KEY+...` string with type 0x01. */
export async function createEd25519Signer(skey: string): Promise<NoteSigner> {
  const k = await openSignerKey(skey, SIG_TYPE_ED25519);
  return {
    name: k.name,
    keyId: k.keyId,
    type: SIG_TYPE_ED25519,
    vkey: k.vkey,
    async sign(text) {
      return new Uint8Array(await subtle.sign('Ed25519', k.pair.privateKey, new Uint8Array(text)));
    },
  };
}

// --- cosignature/v1 (type 0x04) ---

/** The message a cosignature/v1 signs: header, time line, then the whole checkpoint note text. */
export function cosignatureMessage(timestamp: bigint, text: Uint8Array): Bytes {
  return concatBytes(utf8(`cosignature/v1\ntime ${timestamp.toString()}\n`), text);
}

const MAX_TIMESTAMP = (1n << 63n) - 1n;

/** The timestamp of a cosignature/v1 signature (8-byte big-endian seconds before the Ed25519 signature). */
export function cosignatureTimestamp(signature: Uint8Array): bigint | undefined {
  if (signature.length !== 72) return undefined;
  const t = new DataView(signature.buffer, signature.byteOffset, 8).getBigUint64(0, false);
  return t > MAX_TIMESTAMP ? undefined : t;
}

export async function createCosignatureVerifier(vkey: string | VerifierKey): Promise<NoteVerifier> {
  const vk = typeof vkey === 'string' ? parseVerifierKey(vkey) : vkey;
  if (vk.type !== SIG_TYPE_COSIGNATURE_V1) throw new ParseError('ERR_NOTE_KEY', 'not a cosignature/v1 verifier key (type 0x04)');
  const key = await importEd25519PublicKey(vk.publicKey);
  return {
    name: vk.name,
    keyId: vk.keyId,
    type: SIG_TYPE_COSIGNATURE_V1,
    vkey: vk.vkey,
    async verify(text, signature) {
      const ts = cosignatureTimestamp(signature);
      if (ts === undefined) return false;
      return subtle.verify('Ed25519', key, signature.slice(8), cosignatureMessage(ts, text));
    },
  };
}

/** A witness's cosigner; the timestamp comes from the injected clock. */
export async function createCosigner(skey: string, clock: Clock): Promise<NoteSigner> {
  const k = await openSignerKey(skey, SIG_TYPE_COSIGNATURE_V1);
  return {
    name: k.name,
    keyId: k.keyId,
    type: SIG_TYPE_COSIGNATURE_V1,
    vkey: k.vkey,
    async sign(text) {
      const ts = BigInt(Math.floor(clock().getTime() / 1000));
      if (ts <= 0n) throw new VerificationError('ERR_INTERNAL', 'clock is before the epoch');
      const sig = new Uint8Array(await subtle.sign('Ed25519', k.pair.privateKey, cosignatureMessage(ts, text)));
      const out = new Uint8Array(72);
      new DataView(out.buffer).setBigUint64(0, ts, false);
      out.set(sig, 8);
      return out;
    },
  };
}

/** A verifier for either type, chosen by the vkey's type byte. */
export async function createVerifier(vkey: string | VerifierKey): Promise<NoteVerifier> {
  const vk = typeof vkey === 'string' ? parseVerifierKey(vkey) : vkey;
  return vk.type === SIG_TYPE_ED25519 ? createEd25519Verifier(vk) : createCosignatureVerifier(vk);
}
