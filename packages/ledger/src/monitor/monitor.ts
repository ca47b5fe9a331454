import { CustodyError, equalBytes, fromBase64, readBodyLimited, toBase64, toCustodyError, type Bytes, type Clock } from '@custody/core';
import { rfc6962 } from '../merkle/hasher.js';
import { proveInclusion, verifyConsistency, verifyInclusion } from '../merkle/proof.js';
import { treeRoot } from '../merkle/tree.js';
import { consistencyProofFromTiles, inclusionProofFromTiles, memoizeTileReader, type LogSource } from '../client/log-source.js';
import { MAX_NOTE_SIZE } from '../note/note.js';
import { decodeUtf8Exact } from '../note/utf8.js';
import { decodeEvent } from '../events/events.js';
import { parseEntryBundle } from '../tiles/bundle.js';
import { TILE_WIDTH, tileWidthAt } from '../tiles/paths.js';
import { TileCache, TileHashSource, tileHashes, type TileReader } from '../tiles/tile-source.js';
import { policyVerifiers, verifyCheckpointWithPolicy, type PolicyCheckpoint, type PolicyVerifiers, type TlogPolicy } from '../policy/policy.js';
import { joinUrl, type FetchLike } from '../witness/client.js';
import { originHash } from '../witness/origin-hash.js';

/** What a monitor remembers between runs: the latest checkpoint it verified. */
export interface MonitorState {
  origin: string;
  size: number;
  rootHash: string;
  checkpoint: string;
}

export type MonitorFinding =
  | { kind: 'checkpoint'; size: number; rootHash: string; witnesses: string[]; newEntries: number }
  | { kind: 'unchanged'; size: number }
  | { kind: 'rollback'; code: 'ERR_TLOG_ROLLBACK'; seenSize: number; size: number }
  | { kind: 'split-view'; code: 'ERR_TLOG_SPLIT_VIEW'; size: number; otherSize: number; source: string; detail: string }
  | { kind: 'invalid'; code: string; source: string; detail: string }
  | { kind: 'unavailable'; code: string; source: string; detail: string };

export interface MonitorOptions {
  source: LogSource;
  policy: TlogPolicy;
  /** Origin to follow; defaults to the one policy log when there is exactly one. */
  origin?: string;
  state?: MonitorState;
  /** Also fetch new entry bundles, check them against the tiles and the root. */
  verifyEntries?: boolean;
  /** Also decode each new entry as a Custody event. */
  verifyEvents?: boolean;
  /** Compare with the latest checkpoint each policy witness with a URL serves. */
  fetch?: FetchLike;
  /** The time each poll verifies at: cosignatures dated in the future do not count. */
  clock: Clock;
  /** Cosignatures older than this do not count either (a frozen log surfaces as `invalid`). */
  maxAgeSeconds?: number;
}

/**
 * Follows one log: every new checkpoint must verify under the policy (log signature, witness
 * quorum), its tiles must hash to its root, and it must be consistent with the last checkpoint
 * seen; a smaller size is a rollback and an unprovable history is a split view. Witnesses'
 * own latest checkpoints are compared too, which is how a split view shown to others surfaces.
 */
export class LogMonitor {
  private state: MonitorState | undefined;
  private verifiers: PolicyVerifiers | undefined;
  private readonly cache = new TileCache(256);

  constructor(private readonly opts: MonitorOptions) {
    if (typeof (opts as Partial<MonitorOptions>).clock !== 'function') throw new CustodyError('ERR_USAGE', 'LogMonitor needs a clock');
    this.state = opts.state;
  }

  get current(): MonitorState | undefined {
    return this.state;
  }

  private async verify(text: Uint8Array | string): Promise<PolicyCheckpoint> {
    this.verifiers ??= await policyVerifiers(this.opts.policy);
    const origin = this.opts.origin ?? this.state?.origin ?? (this.opts.policy.logs.length === 1 ? this.opts.policy.logs[0]!.key.name : undefined);
    return verifyCheckpointWithPolicy(text, this.opts.policy, {
      now: this.opts.clock(),
      verifiers: this.verifiers,
      ...(origin === undefined ? {} : { origin }),
      ...(this.opts.maxAgeSeconds === undefined ? {} : { maxAgeSeconds: this.opts.maxAgeSeconds }),
    });
  }

  async poll(): Promise<MonitorFinding[]> {
    const findings: MonitorFinding[] = [];
    const source: LogSource = { readCheckpoint: () => this.opts.source.readCheckpoint(), readTile: memoizeTileReader(this.opts.source.readTile) };
    let text: Uint8Array;
    try {
      text = await source.readCheckpoint();
    } catch (e) {
      const err = toCustodyError(e, 'ERR_TLOG_UNAVAILABLE');
      return [{ kind: 'unavailable', code: err.code, source: 'log', detail: err.message }];
    }
    let cp: PolicyCheckpoint;
    try {
      cp = await this.verify(text);
    } catch (e) {
      const err = toCustodyError(e);
      return [{ kind: 'invalid', code: err.code, source: 'log', detail: err.message }];
    }
    const { size, rootHash } = cp.checkpoint;
    const prev = this.state;
    const prevRoot = prev ? fromBase64(prev.rootHash) : undefined;
    if (prev && size < prev.size) {
      findings.push({ kind: 'rollback', code: 'ERR_TLOG_ROLLBACK', seenSize: prev.size, size });
      return findings;
    }
    if (prev && size === prev.size) {
      if (!equalBytes(prevRoot!, rootHash)) {
        findings.push({ kind: 'split-view', code: 'ERR_TLOG_SPLIT_VIEW', size, otherSize: prev.size, source: 'log', detail: 'same size, different root' });
        return findings;
      }
      findings.push({ kind: 'unchanged', size });
    } else {
      // The tiles must describe the signed tree before they can prove anything about it.
      try {
        const root = await treeRoot(new TileHashSource(source.readTile, size, rfc6962, this.cache), size);
        if (!equalBytes(root, rootHash)) throw new CustodyError('ERR_TLOG_TILE', 'tiles do not hash to the checkpoint root');
      } catch (e) {
        const err = toCustodyError(e, 'ERR_TLOG_TILE');
        findings.push(err.code === 'ERR_TLOG_UNAVAILABLE' ? { kind: 'unavailable', code: err.code, source: 'log', detail: err.message } : { kind: 'invalid', code: err.code, source: 'log', detail: err.message });
        return findings;
      }
      if (prev) {
        try {
          const proof = await consistencyProofFromTiles(source, prev.size, size, rfc6962, this.cache);
          verifyConsistency(prev.size, size, prevRoot!, rootHash, proof);
        } catch (e) {
          const err = toCustodyError(e);
          if (err.code === 'ERR_TLOG_UNAVAILABLE') findings.push({ kind: 'unavailable', code: err.code, source: 'log', detail: err.message });
          else findings.push({ kind: 'split-view', code: 'ERR_TLOG_SPLIT_VIEW', size, otherSize: prev.size, source: 'log', detail: `not consistent with the last checkpoint seen (${err.code})` });
          return findings;
        }
      }
      // Every new level-0 tile is bound to the root (its entries too with verifyEntries): a
      // damaged tile the right edge does not use would leave its entries unprovable.
      const bad = await this.verifyEntries(source, prev?.size ?? 0, size, rootHash, this.opts.verifyEntries === true || this.opts.verifyEvents === true);
      if (bad) {
        findings.push(bad);
        return findings;
      }
      findings.push({ kind: 'checkpoint', size, rootHash: toBase64(rootHash), witnesses: cp.witnesses, newEntries: size - (prev?.size ?? 0) });
      this.state = { origin: cp.checkpoint.origin, size, rootHash: toBase64(rootHash), checkpoint: decodeUtf8Exact(text) };
    }
    if (this.opts.fetch) findings.push(...(await this.compareWitnesses(source, cp)));
    return findings;
  }

  /**
   * Checks the level-0 tiles over [from, to), each bound to the root; with `entries`, also that
   * the entry bundles hash to them.
   */
  private async verifyEntries(source: LogSource, from: number, to: number, root: Bytes, entries: boolean): Promise<MonitorFinding | undefined> {
    const hashSource = new TileHashSource(source.readTile, to, rfc6962, this.cache);
    try {
      for (let n = Math.floor(from / TILE_WIDTH); n * TILE_WIDTH < to; n++) {
        const width = tileWidthAt(0, n, to);
        const hashes = tileHashes(await source.readTile({ level: 0, index: n, width }), width);
        if (entries) {
          const bundle = parseEntryBundle(await source.readTile({ level: 'entries', index: n, width }), width);
          for (let i = 0; i < width; i++) {
            if (!equalBytes(rfc6962.leaf(bundle[i]!), hashes[i]!)) throw new CustodyError('ERR_TLOG_ENTRY', 'entry does not hash to its tile', { detail: { index: n * TILE_WIDTH + i } });
            if (this.opts.verifyEvents && n * TILE_WIDTH + i >= from) decodeEvent(bundle[i]!);
          }
        }
        // The first leaf's path uses every hash of the tile, so this binds the whole tile to the root.
        const first = n * TILE_WIDTH;
        verifyInclusion(first, to, hashes[0]!, await proveInclusion(hashSource, first, to), root);
      }
    } catch (e) {
      const err = toCustodyError(e);
      if (err.code === 'ERR_TLOG_UNAVAILABLE') return { kind: 'unavailable', code: err.code, source: 'log', detail: err.message };
      return { kind: 'invalid', code: err.code, source: 'log', detail: err.message + (err.detail?.index !== undefined ? ` (index ${err.detail.index})` : '') };
    }
    return undefined;
  }

  private async compareWitnesses(source: LogSource, ours: PolicyCheckpoint): Promise<MonitorFinding[]> {
    const out: MonitorFinding[] = [];
    const fetchFn = this.opts.fetch!;
    for (const [name, w] of this.opts.policy.witnesses) {
      if (!w.url) continue;
      const where = `witness ${name}`;
      // Not getting the witness's answer (no answer, an error status, a body past a note's size)
      // is "unavailable"; an answer that is not a checkpoint the log signed for this origin (not
      // UTF-8, a malformed note or body, another origin, a bad signature) is "invalid", whatever
      // its code.
      let body: Uint8Array;
      try {
        const res = await fetchFn(joinUrl(w.url, `${originHash(ours.checkpoint.origin)}/checkpoint`));
        if (res.status === 404) {
          await res.body?.cancel();
          continue;
        }
        if (res.status !== 200) {
          await res.body?.cancel();
          throw new CustodyError('ERR_WITNESS_UNAVAILABLE', `status ${res.status}`);
        }
        body = await readBodyLimited(res, MAX_NOTE_SIZE, 'witness checkpoint');
      } catch (e) {
        const err = toCustodyError(e, 'ERR_WITNESS_UNAVAILABLE');
        out.push({ kind: 'unavailable', code: err.code, source: where, detail: err.message });
        continue;
      }
      let theirs: PolicyCheckpoint;
      try {
        // Accept the witness's view if the log signed it; the quorum applies to what clients accept, not to evidence.
        theirs = await verifyCheckpointWithPolicy(decodeUtf8Exact(body), { ...this.opts.policy, quorum: 'none' }, { now: this.opts.clock(), origin: ours.checkpoint.origin, verifiers: this.verifiers! });
      } catch (e) {
        const err = toCustodyError(e);
        out.push({ kind: 'invalid', code: err.code, source: where, detail: err.message });
        continue;
      }
      const a = ours.checkpoint;
      const b = theirs.checkpoint;
      const [small, big] = a.size <= b.size ? [a, b] : [b, a];
      // A tile the log did not serve (timeout, 404, error status) means the views could not be
      // compared, not that they differ: only a proof that fails to verify is an alarm.
      const failed: { read?: CustodyError } = {};
      const readTile: TileReader = async (tile) => {
        try {
          return await source.readTile(tile);
        } catch (e) {
          const err = toCustodyError(e, 'ERR_TLOG_UNAVAILABLE');
          failed.read ??= err;
          throw err;
        }
      };
      try {
        if (small.size === big.size) {
          if (!equalBytes(small.rootHash, big.rootHash)) throw new CustodyError('ERR_TLOG_SPLIT_VIEW', 'same size, different root');
        } else {
          const proof = await consistencyProofFromTiles({ readCheckpoint: () => source.readCheckpoint(), readTile }, small.size, big.size, rfc6962, this.cache);
          verifyConsistency(small.size, big.size, small.rootHash, big.rootHash, proof);
        }
      } catch (e) {
        const err = toCustodyError(e);
        if (failed.read) {
          out.push({ kind: 'unavailable', code: failed.read.code, source: where, detail: `cannot compare with the witness's checkpoint of size ${b.size}: the log's tiles are unavailable (${failed.read.message})` });
        } else {
          out.push({ kind: 'split-view', code: 'ERR_TLOG_SPLIT_VIEW', size: a.size, otherSize: b.size, source: where, detail: `the witness's checkpoint is not consistent with the log's (${err.code})` });
        }
      }
    }
    return out;
  }
}

/** Verifies an inclusion proof read from tiles against a checkpoint's root; a convenience for tools. */
export async function verifyEntryInLog(source: LogSource, index: number, size: number, root: Uint8Array, entry: Uint8Array): Promise<void> {
  verifyInclusion(index, size, rfc6962.leaf(entry), await inclusionProofFromTiles(source, index, size), root);
}
