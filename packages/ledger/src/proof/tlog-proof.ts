import { ParseError, toBase64, type Bytes } from '@custody/core';
import { rfc6962, type TreeHasher } from '../merkle/hasher.js';
import { MAX_PROOF_HASHES, verifyInclusion } from '../merkle/proof.js';
import { decodeStdBase64 } from '../note/base64.js';
import { MAX_NOTE_SIZE } from '../note/note.js';
import { decodeUtf8Exact } from '../note/utf8.js';
import { verifyCheckpointWithPolicy, type PolicyCheckpoint, type PolicyVerifyOptions, type TlogPolicy } from '../policy/policy.js';

export const TLOG_PROOF_HEADER = 'c2sp.org/tlog-proof@v1';

/** A C2SP tlog-proof: an offline-verifiable inclusion proof with the (cosigned) checkpoint it proves against. */
export interface TlogProof {
  extra?: Bytes;
  index: number;
  proof: Bytes[];
  /** The signed checkpoint, verbatim. */
  checkpoint: string;
}

function bad(why: string): ParseError {
  return new ParseError('ERR_TLOG_PROOF', why);
}

export function formatTlogProof(p: TlogProof): string {
  const lines = [TLOG_PROOF_HEADER];
  if (p.extra) lines.push(`extra ${toBase64(p.extra)}`);
  lines.push(`index ${p.index}`);
  for (const h of p.proof) lines.push(toBase64(h));
  return lines.join('\n') + '\n\n' + p.checkpoint;
}

export function parseTlogProof(input: string | Uint8Array): TlogProof {
  const size = input.length;
  if (size > MAX_NOTE_SIZE + 8192) throw new ParseError('ERR_INPUT_TOO_LARGE', 'proof file is too large', { detail: { size } });
  let text: string;
  try {
    text = typeof input === 'string' ? input : decodeUtf8Exact(input);
  } catch (e) {
    throw new ParseError('ERR_TLOG_PROOF', 'proof file is not UTF-8', { cause: e });
  }
  const blank = text.indexOf('\n\n');
  if (blank < 0) throw bad('proof file has no blank line before the checkpoint');
  const head = text.slice(0, blank).split('\n');
  const checkpoint = text.slice(blank + 2);
  if (head[0] !== TLOG_PROOF_HEADER) throw bad('proof file does not start with c2sp.org/tlog-proof@v1');
  let i = 1;
  let extra: Bytes | undefined;
  if (head[i]?.startsWith('extra ')) {
    extra = decodeStdBase64(head[i]!.slice(6));
    if (!extra) throw bad('extra line is not base64');
    i++;
  }
  const m = /^index (0|[1-9][0-9]*)$/.exec(head[i] ?? '');
  if (!m) throw bad('proof file has no valid index line');
  const index = Number(m[1]);
  if (!Number.isSafeInteger(index)) throw new ParseError('ERR_INPUT_UNSUPPORTED', 'index is beyond 2^53 - 1');
  i++;
  const hashes = head.slice(i);
  if (hashes.length > MAX_PROOF_HASHES) throw bad('proof has too many hashes');
  const proof = hashes.map((h) => {
    const b = decodeStdBase64(h);
    if (!b || b.length !== 32) throw bad('proof line is not base64 of a 32-byte hash');
    return b;
  });
  if (checkpoint.length === 0) throw bad('proof file has no checkpoint');
  return extra ? { extra, index, proof, checkpoint } : { index, proof, checkpoint };
}

export interface VerifiedTlogProof extends PolicyCheckpoint {
  index: number;
  extra?: Bytes;
}

export type TlogProofVerifyOptions = PolicyVerifyOptions & { hasher?: TreeHasher };

/**
 * Verifies a proof file for an entry: the checkpoint satisfies the policy (trusted log, a
 * quorum of fresh witness cosignatures at `opts.now`) and the entry is at `index` under its
 * root. Pass the entry bytes, or `leafHash`.
 */
export async function verifyTlogProof(
  input: string | Uint8Array | TlogProof,
  entry: { entry: Uint8Array } | { leafHash: Uint8Array },
  policy: TlogPolicy,
  opts: TlogProofVerifyOptions,
): Promise<VerifiedTlogProof> {
  const p = typeof input === 'object' && 'checkpoint' in input ? input : parseTlogProof(input);
  const hasher = opts.hasher ?? rfc6962;
  const cp = await verifyCheckpointWithPolicy(p.checkpoint, policy, opts);
  const leafHash = 'entry' in entry ? hasher.leaf(entry.entry) : entry.leafHash;
  verifyInclusion(p.index, cp.checkpoint.size, leafHash, p.proof, cp.checkpoint.rootHash, hasher);
  return p.extra ? { ...cp, index: p.index, extra: p.extra } : { ...cp, index: p.index };
}
