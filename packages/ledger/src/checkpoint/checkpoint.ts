import { ParseError, VerificationError, equalBytes, toBase64, type Bytes } from '@custody/core';
import { rfc6962 } from '../merkle/hasher.js';
import { decodeStdBase64 } from '../note/base64.js';
import {
  cosignatureTimestamp,
  openNote,
  parseNote,
  signNote,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  type OpenedNote,
  type SignedNote,
} from '../note/note.js';
import { SIG_TYPE_COSIGNATURE_V1 } from '../note/keys.js';

/** A C2SP tlog-checkpoint body: origin, tree size, root hash, optional extension lines. */
export interface Checkpoint {
  origin: string;
  size: number;
  rootHash: Bytes;
  extensions: string[];
}

const MAX_EXTENSION_LINES = 64;

function bad(why: string): ParseError {
  return new ParseError('ERR_TLOG_CHECKPOINT', why);
}

/** Parses checkpoint note text (the part before the blank line, ending in a newline). */
export function parseCheckpointBody(text: string): Checkpoint {
  if (!text.endsWith('\n')) throw bad('checkpoint text must end in a newline');
  const lines = text.slice(0, -1).split('\n');
  if (lines.length < 3) throw bad('checkpoint needs origin, size and root hash lines');
  if (lines.length > 3 + MAX_EXTENSION_LINES) throw bad('checkpoint has too many extension lines');
  const [origin, sizeStr, rootStr] = lines as [string, string, string];
  if (origin.length === 0) throw bad('checkpoint origin is empty');
  if (!/^(0|[1-9][0-9]*)$/.test(sizeStr)) throw bad('checkpoint size is not a decimal without leading zeroes');
  const size = Number(sizeStr);
  if (!Number.isSafeInteger(size)) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'checkpoint size is beyond 2^53 - 1');
  const rootHash = decodeStdBase64(rootStr);
  if (!rootHash || rootHash.length !== 32) throw bad('checkpoint root hash is not base64 of 32 bytes');
  // The empty tree has exactly one root (RFC 6962: the hash of the empty string).
  if (size === 0 && !equalBytes(rootHash, rfc6962.emptyRoot())) throw bad('a checkpoint of size 0 must carry the empty tree root');
  const extensions = lines.slice(3);
  if (extensions.some((l) => l.length === 0)) throw bad('checkpoint extension lines must be non-empty');
  return { origin, size, rootHash, extensions };
}

export function formatCheckpointBody(c: Checkpoint): string {
  if (c.origin.length === 0 || c.origin.includes('\n')) throw bad('invalid origin');
  if (!Number.isSafeInteger(c.size) || c.size < 0) throw bad('invalid size');
  if (c.rootHash.length !== 32) throw bad('root hash must be 32 bytes');
  if (c.size === 0 && !equalBytes(c.rootHash, rfc6962.emptyRoot())) throw bad('a checkpoint of size 0 must carry the empty tree root');
  if (c.extensions.some((l) => l.length === 0 || l.includes('\n'))) throw bad('invalid extension line');
  return [c.origin, String(c.size), toBase64(c.rootHash), ...c.extensions].join('\n') + '\n';
}

/** Signs a checkpoint with the log's key(s); returns the signed note. */
export async function signCheckpoint(c: Checkpoint, signers: readonly NoteSigner[], existing: readonly NoteSignature[] = []): Promise<string> {
  return signNote(formatCheckpointBody(c), signers, existing);
}

export interface Cosignature {
  /** Witness key name as in the signature line. */
  name: string;
  keyId: number;
  vkey: string;
  /** POSIX seconds the witness signed at. */
  timestamp: number;
}

export interface OpenedCheckpoint {
  checkpoint: Checkpoint;
  note: SignedNote;
  /** Log signatures that verified. */
  logSignatures: NoteSignature[];
  /** Witness cosignatures that verified. */
  cosignatures: Cosignature[];
}

/**
 * Verifies a signed checkpoint: at least one signature from `logVerifiers` whose name is the
 * origin (the tlog-policy rule), every known witness cosignature valid. Unknown signatures are
 * ignored. Quorum decisions are the policy's job.
 */
export async function openCheckpoint(
  input: string | Uint8Array | SignedNote,
  logVerifiers: readonly NoteVerifier[],
  witnessVerifiers: readonly NoteVerifier[] = [],
  expectedOrigin?: string,
): Promise<OpenedCheckpoint> {
  const note = typeof input === 'object' && 'signatures' in input ? input : parseNote(input);
  const checkpoint = parseCheckpointBody(note.text);
  if (expectedOrigin !== undefined && checkpoint.origin !== expectedOrigin) {
    throw new VerificationError('ERR_TLOG_ORIGIN', 'checkpoint is from another log', { detail: { origin: checkpoint.origin.slice(0, 200) } });
  }
  const logs = logVerifiers.filter((v) => v.name === checkpoint.origin);
  if (logs.length === 0) throw new VerificationError('ERR_TLOG_ORIGIN', 'no trusted log key for this checkpoint origin', { detail: { origin: checkpoint.origin.slice(0, 200) } });
  const opened: OpenedNote = await openNote(note, [...logs, ...witnessVerifiers]);
  const logSignatures = opened.verified.filter((v) => logs.includes(v.verifier)).map((v) => v.signature);
  if (logSignatures.length === 0) throw new VerificationError('ERR_NOTE_UNVERIFIED', 'checkpoint is not signed by the log');
  const cosignatures = opened.verified
    .filter((v) => v.verifier.type === SIG_TYPE_COSIGNATURE_V1 && !logs.includes(v.verifier))
    .map((v) => ({ name: v.signature.name, keyId: v.signature.keyId, vkey: v.verifier.vkey, timestamp: Number(cosignatureTimestamp(v.signature.signature)!) }));
  return { checkpoint, note, logSignatures, cosignatures };
}
