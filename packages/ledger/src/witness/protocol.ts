import { ParseError, toBase64, type Bytes } from '@custody/core';
import { decodeUtf8Exact } from '../note/utf8.js';
import { MAX_PROOF_HASHES } from '../merkle/proof.js';
import { decodeStdBase64 } from '../note/base64.js';
import { MAX_NOTE_SIZE } from '../note/note.js';

/** C2SP tlog-witness `add-checkpoint` request: old size, consistency proof, then the checkpoint. */
export interface AddCheckpointRequest {
  oldSize: number;
  proof: Bytes[];
  /** The signed checkpoint note, verbatim. */
  checkpoint: string;
}

export const TLOG_SIZE_CONTENT_TYPE = 'text/x.tlog.size';
export const MAX_ADD_CHECKPOINT_BODY = MAX_NOTE_SIZE + 16 + MAX_PROOF_HASHES * 45;

function bad(why: string): ParseError {
  return new ParseError('ERR_WITNESS_BAD_REQUEST', why);
}

export function formatAddCheckpoint(r: AddCheckpointRequest): string {
  return `old ${r.oldSize}\n` + r.proof.map((h) => toBase64(h) + '\n').join('') + '\n' + r.checkpoint;
}

export function parseAddCheckpoint(body: Uint8Array | string): AddCheckpointRequest {
  if (body.length > MAX_ADD_CHECKPOINT_BODY) throw new ParseError('ERR_INPUT_TOO_LARGE', 'add-checkpoint body is too large');
  let text: string;
  try {
    text = typeof body === 'string' ? body : decodeUtf8Exact(body);
  } catch (e) {
    throw new ParseError('ERR_WITNESS_BAD_REQUEST', 'request is not UTF-8', { cause: e });
  }
  const blank = text.indexOf('\n\n');
  if (blank < 0) throw bad('request has no blank line before the checkpoint');
  const head = text.slice(0, blank).split('\n');
  const m = /^old (0|[1-9][0-9]*)$/.exec(head[0]!);
  if (!m) throw bad('first line must be "old <size>"');
  const oldSize = Number(m[1]);
  if (!Number.isSafeInteger(oldSize)) throw bad('old size is too large');
  const lines = head.slice(1);
  if (lines.length > MAX_PROOF_HASHES) throw bad('more than 63 consistency proof lines');
  const proof = lines.map((l) => {
    const h = decodeStdBase64(l);
    if (!h || h.length !== 32) throw bad('consistency proof line is not base64 of a 32-byte hash');
    return h;
  });
  return { oldSize, proof, checkpoint: text.slice(blank + 2) };
}

/** Parses the 409 body: the witness's latest cosigned size. */
export function parseTlogSize(body: string): number {
  const m = /^(0|[1-9][0-9]*)\n?$/.exec(body);
  if (!m || !Number.isSafeInteger(Number(m[1]))) throw new ParseError('ERR_WITNESS_UNAVAILABLE', 'witness sent a malformed size');
  return Number(m[1]);
}

/** Hex SHA-256 of the origin, as in the witness monitoring path `<prefix>/<origin hash>/checkpoint`. */
export { originHash } from './origin-hash.js';
