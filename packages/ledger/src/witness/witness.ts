import { CustodyError, equalBytes, isCustodyError, type Bytes } from '@custody/core';
import { parseCheckpointBody, type Checkpoint } from '../checkpoint/checkpoint.js';
import { verifyConsistency } from '../merkle/proof.js';
import { formatNote, openNote, parseNote, signatureLine, type NoteSigner, type NoteVerifier } from '../note/note.js';
import { TLOG_SIZE_CONTENT_TYPE, parseAddCheckpoint } from './protocol.js';

/** The latest checkpoint a witness cosigned for one log. */
export interface WitnessRecord {
  size: number;
  rootHash: Bytes;
  /** The checkpoint with the log signatures the witness verified and its own cosignature. */
  checkpoint: string;
}

/**
 * Persistent witness state. `compareAndSet` must be atomic: it stores `next` only if the stored
 * size for the origin is still `expectedSize` (0 when none), otherwise returns false. This is
 * the spec's guard against two concurrent requests rolling the witness back.
 */
export interface WitnessStore {
  get(origin: string): Promise<WitnessRecord | undefined>;
  compareAndSet(origin: string, expectedSize: number, next: WitnessRecord): Promise<boolean>;
}

export interface WitnessResponse {
  status: 200 | 400 | 403 | 404 | 409 | 422;
  contentType: string;
  body: string;
  /** Stable code for logs and tests (absent on success). */
  code?: string;
}

export interface WitnessOptions {
  /** cosignature/v1 signer(s) of this witness. */
  cosigners: readonly NoteSigner[];
  /** Trusted log keys by origin. */
  logs: ReadonlyMap<string, readonly NoteVerifier[]>;
  store: WitnessStore;
}

function reply(status: WitnessResponse['status'], code: string, body = `${code}\n`): WitnessResponse {
  return { status, contentType: 'text/plain; charset=utf-8', body, code };
}

/**
 * A C2SP tlog-witness: cosigns a log's checkpoint only if it is consistent with the last one it
 * cosigned for that origin, so a log cannot show two histories to clients that require the
 * witness's cosignature. Statuses follow the spec: 400 malformed, 403 bad log signature,
 * 404 unknown origin, 409 old size mismatch or the same size with another root (body: our
 * size, text/x.tlog.size), 422 inconsistent.
 */
export class Witness {
  constructor(private readonly opts: WitnessOptions) {
    if (opts.cosigners.length === 0) throw new CustodyError('ERR_USAGE', 'a witness needs at least one cosigner key');
  }

  async addCheckpoint(body: Uint8Array | string): Promise<WitnessResponse> {
    let req;
    let checkpoint: Checkpoint;
    let note;
    try {
      req = parseAddCheckpoint(body);
      note = parseNote(req.checkpoint);
      checkpoint = parseCheckpointBody(note.text);
    } catch (e) {
      return reply(400, isCustodyError(e) ? e.code : 'ERR_WITNESS_BAD_REQUEST');
    }
    const verifiers = this.opts.logs.get(checkpoint.origin);
    if (!verifiers || verifiers.length === 0) return reply(404, 'ERR_WITNESS_UNKNOWN_LOG');
    let opened;
    try {
      opened = await openNote(note, verifiers);
    } catch (e) {
      return reply(403, isCustodyError(e) ? e.code : 'ERR_WITNESS_FORBIDDEN');
    }
    if (req.oldSize > checkpoint.size) return reply(400, 'ERR_WITNESS_BAD_REQUEST');
    const stored = await this.opts.store.get(checkpoint.origin);
    const storedSize = stored?.size ?? 0;
    if (req.oldSize !== storedSize) {
      return { status: 409, contentType: TLOG_SIZE_CONTENT_TYPE, body: `${storedSize}\n`, code: 'ERR_WITNESS_CONFLICT' };
    }
    // The parser already refused a size-0 checkpoint with another root than the empty tree's.
    if (stored && checkpoint.size === stored.size && !equalBytes(checkpoint.rootHash, stored.rootHash)) {
      // tlog-witness: same size, different root is a conflict, answered with our size.
      return { status: 409, contentType: TLOG_SIZE_CONTENT_TYPE, body: `${storedSize}\n`, code: 'ERR_WITNESS_CONFLICT' };
    }
    try {
      if (req.oldSize === 0) {
        if (req.proof.length !== 0) return reply(422, 'ERR_TLOG_CONSISTENCY');
      } else {
        verifyConsistency(req.oldSize, checkpoint.size, stored!.rootHash, checkpoint.rootHash, req.proof);
      }
    } catch (e) {
      return reply(422, isCustodyError(e) ? e.code : 'ERR_TLOG_CONSISTENCY');
    }
    const lines = [];
    for (const c of this.opts.cosigners) lines.push(signatureLine(c.name, c.keyId, await c.sign(note.textBytes)));
    const record: WitnessRecord = {
      size: checkpoint.size,
      rootHash: checkpoint.rootHash,
      checkpoint: formatNote(note.text, [...opened.verified.map((v) => v.signature), ...lines]),
    };
    if (!(await this.opts.store.compareAndSet(checkpoint.origin, storedSize, record))) {
      const now = await this.opts.store.get(checkpoint.origin);
      return { status: 409, contentType: TLOG_SIZE_CONTENT_TYPE, body: `${now?.size ?? 0}\n`, code: 'ERR_WITNESS_CONFLICT' };
    }
    return { status: 200, contentType: 'text/plain; charset=utf-8', body: lines.map((l) => l.line + '\n').join('') };
  }

  /** The monitoring endpoint's body for an origin, if the witness ever cosigned it. */
  async latest(origin: string): Promise<string | undefined> {
    return (await this.opts.store.get(origin))?.checkpoint;
  }
}

/** In-memory store for tests and tools; the service persists to SQLite. */
export class MemoryWitnessStore implements WitnessStore {
  private readonly map = new Map<string, WitnessRecord>();
  get(origin: string): Promise<WitnessRecord | undefined> {
    return Promise.resolve(this.map.get(origin));
  }
  compareAndSet(origin: string, expectedSize: number, next: WitnessRecord): Promise<boolean> {
    if ((this.map.get(origin)?.size ?? 0) !== expectedSize) return Promise.resolve(false);
    this.map.set(origin, next);
    return Promise.resolve(true);
  }
}
