import { CustodyError, equalBytes, isCustodyError, toCustodyError, type Bytes } from '@custody/core';
import {
  MAX_ENTRY_SIZE,
  TileCache,
  TileHashSource,
  cosignatureTimestamp,
  createCosignatureVerifier,
  createEd25519Verifier,
  encodeEvent,
  formatNote,
  integrate,
  openCheckpoint,
  openNote,
  parseCheckpointBody,
  parseNote,
  proveConsistency,
  verifyConsistency,
  proveInclusion,
  quorumSatisfied,
  readEntry,
  requestCosignature,
  rfc6962,
  signCheckpoint,
  type AuditSink,
  type CustodyEvent,
  type FetchLike,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  type ServiceAuditEvent,
  type TlogPolicy,
  type TlogProof,
} from '@custody/ledger';
import type { FsTileStore } from './storage/tile-store.js';
import { nodeTreeHasher } from './hasher.js';
import type { Sequencer, TreeState } from './sequencer/types.js';

export interface WitnessConfig {
  /** Witnesses with URLs (their submission prefixes) and the quorum needed before publishing. */
  policy: TlogPolicy;
  fetch?: FetchLike;
  timeoutMs?: number;
  /**
   * Most seconds a cosignature's timestamp may be from the log's clock, either way (default 60,
   * what clients allow ahead). A witness whose clock is off further is not counted: clients would
   * refuse its cosignature (ahead), or find it older than it is (behind).
   */
  maxClockSkewSeconds?: number;
  /**
   * Once the quorum holds (at once for `quorum none`), how long the witnesses still answering
   * get before the checkpoint is published without them (default QUORUM_GRACE_MS).
   */
  graceMs?: number;
  /** Seconds since the epoch (tests). */
  now?: () => number;
  /**
   * An idle log asks its witnesses to cosign its unchanged checkpoint again this often (seconds,
   * default 300; 0: never), so that clients and monitors that bound a cosignature's age
   * (`maxAgeSeconds`, `--max-age`) keep accepting a log that has had nothing new to log.
   */
  refreshSeconds?: number;
}

/**
 * Once the quorum has cosigned, how long the other witnesses still have before the checkpoint is
 * published without them: a slow or hung witness the quorum does not need does not hold up
 * every publication for its whole timeout.
 */
const QUORUM_GRACE_MS = 200;

export interface TransparencyLogOptions {
  origin: string;
  signer: NoteSigner;
  store: FsTileStore;
  sequencer: Sequencer;
  /** Held while the log is open and released at close (the tile directory's writer lock). */
  lock?: { release(): void };
  witnesses?: WitnessConfig;
  /** Most entries committed in one sequencing transaction (group commit). */
  maxBatch?: number;
  /** How often sequenced entries are integrated into tiles and a checkpoint is signed. */
  integrateIntervalMs?: number;
  /** Most entries integrated per checkpoint. */
  maxIntegrate?: number;
  /** Memory for decoded hash tiles kept for proof generation (default 64 MiB, ~3,900 full tiles). */
  proofCacheBytes?: number;
  /** Called with each published checkpoint (public data only). */
  onPublish?: (note: string, size: number) => void;
  /** Called with operational errors that are retried (never includes key material). */
  onError?: (e: CustodyError) => void;
}

/** How long `entry` waits by default for a checkpoint to include the entry asked for. */
export const ENTRY_WAIT_MS = 10_000;

interface Pending {
  entry: Uint8Array;
  resolve: (index: number) => void;
  reject: (e: unknown) => void;
}

interface Waiter {
  index: number;
  resolve: (note: string) => void;
  reject: (e: unknown) => void;
}

/**
 * A Custody transparency log writer. Appends are acknowledged once durably sequenced (group
 * commit: one transaction per batch); a periodic integrator extends the tiles, signs a
 * checkpoint per batch, asks the configured witnesses to cosign it and publishes the
 * (cosigned) checkpoint. Everything published derives from the committed sequence, so a crash
 * at any point can only delay publication, never change what a size's root is.
 */
export class TransparencyLog implements AuditSink {
  readonly origin: string;
  /** Counters for metrics: committed batches and entries, integrations, published checkpoints. */
  readonly stats = { batches: 0, entries: 0, integrations: 0, published: 0, refreshed: 0 };
  private queue: Pending[] = [];
  private flushing = false;
  private flushScheduled = false;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private integrating: Promise<void> | undefined;
  private published: { size: number; root: Bytes; note: string } | undefined;
  /** When the published checkpoint was last cosigned by a quorum (seconds; 0 until this process has). */
  private lastCosigned = 0;
  private integrated: TreeState = { size: 0, root: rfc6962.emptyRoot() };
  private waiters: Waiter[] = [];
  private readonly cache: TileCache;
  /** `asking`: a request still out from an earlier round (a hung witness is not asked twice at once). */
  private witnessVerifiers: { name: string; url: string; verifier: NoteVerifier; knownSize: number; asking?: Promise<void> }[] = [];
  private logVerifier: NoteVerifier | undefined;

  private constructor(private readonly opts: TransparencyLogOptions) {
    this.origin = opts.origin;
    this.cache = new TileCache({ maxBytes: opts.proofCacheBytes ?? 64 * 2 ** 20 });
  }

  static async open(opts: TransparencyLogOptions): Promise<TransparencyLog> {
    if (opts.signer.name !== opts.origin) throw new CustodyError('ERR_TLOG_ORIGIN', 'the log key name must be the origin');
    const log = new TransparencyLog(opts);
    await opts.store.init();
    if (opts.witnesses) {
      const policy = opts.witnesses.policy;
      for (const [name, w] of policy.witnesses) {
        if (w.url) log.witnessVerifiers.push({ name, url: w.url, verifier: await createCosignatureVerifier(w.key), knownSize: 0 });
      }
      // The log can only ask witnesses it can reach: a quorum that needs others would never be
      // met, and publishing without it would hand out checkpoints clients refuse.
      if (!quorumSatisfied(policy, new Set(log.witnessVerifiers.map((w) => w.name)))) {
        throw new CustodyError('ERR_TLOG_POLICY', 'the witness quorum cannot be met by the witnesses with URLs', {
          detail: { quorum: policy.quorum, withUrl: log.witnessVerifiers.length, witnesses: policy.witnesses.size },
        });
      }
    }
    log.logVerifier = await createEd25519Verifier(opts.signer.vkey);
    const st = await opts.sequencer.state();
    log.integrated = { size: st.size, root: st.root };
    const existing = await opts.store.readCheckpointOrUndefined();
    if (existing) {
      const cp = await openCheckpoint(existing, [log.logVerifier]);
      if (cp.checkpoint.size > st.size) {
        throw new CustodyError('ERR_TLOG_ROLLBACK', 'published checkpoint is ahead of the database; refusing to roll back', {
          detail: { published: cp.checkpoint.size, database: st.size },
        });
      }
      // The database must extend what was published, and the tiles must hold its tree: a
      // database from another run (or a directory another log writes) would otherwise sign a
      // checkpoint that forks the published one.
      const fork = (e?: unknown) =>
        new CustodyError('ERR_TLOG_SPLIT_VIEW', "the database's tree does not extend the published checkpoint in this directory, or its tiles (a database or directory of another log?); refusing to fork it", {
          ...(e !== undefined ? { cause: e } : {}),
          detail: { published: cp.checkpoint.size, database: st.size },
        });
      if (cp.checkpoint.size === st.size && !equalBytes(cp.checkpoint.rootHash, st.root)) throw fork();
      if (cp.checkpoint.size < st.size) {
        let proof: Bytes[];
        try {
          proof = await proveConsistency(new TileHashSource(opts.store.readTile, st.size, rfc6962), cp.checkpoint.size, st.size);
        } catch (e) {
          // Tiles missing for the database's tree: not this directory's database. Other failures (I/O) are what they are.
          if (isCustodyError(e) && e.code === 'ERR_TLOG_TILE') throw fork(e);
          throw e;
        }
        try {
          verifyConsistency(cp.checkpoint.size, st.size, cp.checkpoint.rootHash, st.root, proof);
        } catch (e) {
          throw fork(e);
        }
      }
      log.published = { size: cp.checkpoint.size, root: cp.checkpoint.rootHash, note: new TextDecoder().decode(existing) };
      // The stored cosignatures' age, so a restart does not cosign a fresh checkpoint again at once.
      const times = cp.note.signatures.map((sig) => cosignatureTimestamp(sig.signature)).filter((t) => t !== undefined);
      if (times.length > 0) log.lastCosigned = Math.min(...times.map(Number));
    }
    // Publish the integrated state if a crash happened between integration and publication.
    await log.publishIfBehind().catch((e: unknown) => log.report(e));
    const every = opts.integrateIntervalMs ?? 200;
    log.timer = setInterval(() => void log.integrateNow().catch((e: unknown) => log.report(e)), every);
    log.timer.unref();
    return log;
  }

  private report(e: unknown): void {
    this.opts.onError?.(toCustodyError(e));
  }

  /** Durably sequences one entry; resolves with its index once committed. */
  addEntry(entry: Uint8Array): Promise<{ index: number }> {
    if (this.closed) return Promise.reject(new CustodyError('ERR_TLOG_UNAVAILABLE', 'log is closed'));
    if (entry.length > MAX_ENTRY_SIZE) return Promise.reject(new CustodyError('ERR_TLOG_ENTRY', 'entry is larger than 65535 bytes', { detail: { size: entry.length } }));
    return new Promise<number>((resolve, reject) => {
      this.queue.push({ entry: new Uint8Array(entry), resolve, reject });
      this.scheduleFlush();
    }).then((index) => ({ index }));
  }

  /**
   * AuditSink: validates the event (schema and secrets rule), then appends its canonical JSON.
   * A service audit record (the broker's AuditEvent) is logged as an `audit.recorded` event.
   */
  async append(event: CustodyEvent | ServiceAuditEvent): Promise<{ index: number }> {
    return this.addEntry(encodeEvent(event));
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    // setImmediate lets every append issued in this turn join the same transaction.
    setImmediate(() => {
      this.flushScheduled = false;
      void this.flush();
    });
  }

  /** Commits one batch (one transaction, one fsync), then yields so timers and I/O get a turn. */
  private async flush(): Promise<void> {
    if (this.flushing || this.queue.length === 0) return;
    this.flushing = true;
    const batch = this.queue.splice(0, this.opts.maxBatch ?? 8192);
    try {
      const first = await this.opts.sequencer.sequence(batch.map((p) => p.entry));
      this.stats.batches++;
      this.stats.entries += batch.length;
      batch.forEach((p, i) => p.resolve(first + i));
    } catch (e) {
      const err = toCustodyError(e, 'ERR_TLOG_UNAVAILABLE');
      for (const p of batch) p.reject(err);
    } finally {
      this.flushing = false;
    }
    if (this.queue.length > 0) this.scheduleFlush();
  }

  /** Integrates what is sequenced, signs and publishes a checkpoint. Serialized within the process. */
  integrateNow(): Promise<void> {
    this.integrating ??= this.integrateOnce().finally(() => {
      this.integrating = undefined;
    });
    return this.integrating;
  }

  private async integrateOnce(): Promise<void> {
    const { state } = await this.opts.sequencer.integrate(this.opts.maxIntegrate ?? 65536, async (st, entries) => {
      const r = await integrate({ oldSize: st.size, readTile: this.opts.store.readTile, entries, hasher: nodeTreeHasher });
      await this.opts.store.writeTiles(r.tiles);
      // These bytes are now what the files hold (tiles are deterministic from the committed
      // sequence), so proofs at the new size find the grown right edge without reading it back.
      for (const w of r.tiles) this.cache.prime(w.tile, w.data, rfc6962);
      return { size: r.size, root: r.root };
    });
    this.integrated = state;
    this.stats.integrations++;
    await this.publishIfBehind();
  }

  /** Adopts a checkpoint another writer published (shared directory, PostgreSQL sequencing). */
  private async refreshPublished(): Promise<void> {
    const b = await this.opts.store.readCheckpointOrUndefined();
    if (!b) return;
    const cp = await openCheckpoint(b, [this.logVerifier!]);
    if (!this.published || cp.checkpoint.size > this.published.size) this.setPublished(cp.checkpoint.size, cp.checkpoint.rootHash, new TextDecoder().decode(b));
  }

  private setPublished(size: number, root: Bytes, note: string): void {
    this.published = { size, root, note };
    const still: Waiter[] = [];
    for (const w of this.waiters) {
      if (w.index < size) w.resolve(note);
      else still.push(w);
    }
    this.waiters = still;
  }

  private async publishIfBehind(): Promise<void> {
    await this.refreshPublished();
    const st = this.integrated;
    if (this.published && this.published.size >= st.size) {
      if (this.published.size === st.size && !equalBytes(this.published.root, st.root)) {
        throw new CustodyError('ERR_TLOG_SPLIT_VIEW', 'published root differs from the database root at the same size');
      }
      if (this.published.size === st.size) await this.refreshCosignatures(st);
      return;
    }
    const note = await signCheckpoint({ origin: this.origin, size: st.size, rootHash: st.root, extensions: [] }, [this.opts.signer]);
    const cosigned = await this.cosign(note, st.size);
    if (cosigned === undefined) return; // quorum not met; retried on the next tick
    const wrote = await this.opts.sequencer.publish(st.size, () => this.writeIfNewer(st, cosigned));
    if (!wrote) {
      await this.refreshPublished();
      return;
    }
    this.setPublished(st.size, st.root, cosigned);
    this.lastCosigned = this.nowSeconds();
    this.stats.published++;
    this.opts.onPublish?.(cosigned, st.size);
  }

  private nowSeconds(): number {
    return this.opts.witnesses?.now?.() ?? Math.floor(Date.now() / 1000);
  }

  /**
   * The unchanged checkpoint cosigned again (tlog-witness: old size = size, empty proof) once the
   * last quorum's cosignatures are `refreshSeconds` old, and published with the fresh ones in
   * their place. A quorum not met leaves the published checkpoint as it is, and is tried again
   * 30 s later.
   */
  private async refreshCosignatures(st: TreeState): Promise<void> {
    const cfg = this.opts.witnesses;
    const every = cfg?.refreshSeconds ?? 300;
    if (!cfg || every <= 0 || st.size === 0 || this.witnessVerifiers.length === 0) return;
    const now = this.nowSeconds();
    if (now - this.lastCosigned < every) return;
    this.lastCosigned = now - every + Math.min(every, 30);
    const note = await signCheckpoint({ origin: this.origin, size: st.size, rootHash: st.root, extensions: [] }, [this.opts.signer]);
    const cosigned = await this.cosign(note, st.size);
    if (cosigned === undefined) return;
    const wrote = await this.opts.sequencer.publish(st.size, () => this.writeIfSame(st, cosigned), { sameSize: true });
    if (!wrote) return;
    this.lastCosigned = now;
    this.setPublished(st.size, st.root, cosigned);
    this.stats.refreshed++;
    this.opts.onPublish?.(cosigned, st.size);
  }

  /** Inside the publication lock: replaces the stored checkpoint only if it is still this tree. */
  private async writeIfSame(st: TreeState, note: string): Promise<boolean> {
    const b = await this.opts.store.readCheckpointOrUndefined();
    if (b) {
      const stored = (await openCheckpoint(b, [this.logVerifier!])).checkpoint;
      if (stored.size !== st.size || !equalBytes(stored.rootHash, st.root)) return false;
    }
    await this.opts.store.writeCheckpoint(note);
    return true;
  }

  /**
   * Runs inside the sequencer's publication critical section: re-reads the stored checkpoint
   * and writes ours only if it is larger. Cosigning takes network round trips, and another
   * writer (or an earlier publication whose database commit failed) may have published a
   * larger tree meanwhile; the file must never go back.
   */
  private async writeIfNewer(st: TreeState, note: string): Promise<boolean> {
    const b = await this.opts.store.readCheckpointOrUndefined();
    if (b) {
      const stored = (await openCheckpoint(b, [this.logVerifier!])).checkpoint;
      if (stored.size === st.size && !equalBytes(stored.rootHash, st.root)) {
        throw new CustodyError('ERR_TLOG_SPLIT_VIEW', 'published root differs from the database root at the same size', { detail: { size: st.size } });
      }
      if (stored.size >= st.size) return false;
    }
    await this.opts.store.writeCheckpoint(note);
    return true;
  }

  /**
   * Collects witness cosignatures; undefined if the quorum is not met. Each counted cosignature
   * is fresh by the log's clock (within `maxClockSkewSeconds`). Once the quorum holds, the
   * witnesses still answering get QUORUM_GRACE_MS more; their answers after that are not
   * included, but their sizes are kept for the next round's consistency proofs.
   */
  private async cosign(note: string, size: number): Promise<string | undefined> {
    const cfg = this.opts.witnesses;
    if (!cfg) return note;
    const parsed = parseNote(note);
    const source = new TileHashSource(this.opts.store.readTile, size, rfc6962, this.cache);
    const fetchFn = cfg.fetch ?? ((url, init) => fetch(url, init));
    const skew = cfg.maxClockSkewSeconds ?? 60;
    const got = new Map<string, NoteSignature[]>();
    const ask = async (w: (typeof this.witnessVerifiers)[number]): Promise<void> => {
      for (let attempt = 0; attempt < 2; attempt++) {
        const old = Math.min(w.knownSize, size);
        try {
          const proof = old === 0 || old === size ? [] : await proveConsistency(source, old, size);
          const lines = await requestCosignature(fetchFn, w.url, { oldSize: old, proof, checkpoint: note }, cfg.timeoutMs ?? 5000);
          const opened = await openNote(formatNote(parsed.text, parseNote(parsed.text + '\n' + lines).signatures), [w.verifier]);
          w.knownSize = Math.max(w.knownSize, size);
          const now = this.nowSeconds();
          const off = opened.verified.map((v) => Number(cosignatureTimestamp(v.signature.signature) ?? 0)).find((t) => Math.abs(t - now) > skew);
          if (off !== undefined) throw new CustodyError('ERR_WITNESS_CLOCK', `the witness ${w.name} cosigned with a timestamp ${off - now} s from the log's clock; not counted`, { detail: { witness: w.name, offsetSeconds: off - now, maxSkewSeconds: skew } });
          got.set(w.name, opened.verified.map((v) => v.signature));
          return;
        } catch (e) {
          const err = toCustodyError(e);
          if (err.code === 'ERR_WITNESS_CONFLICT' && typeof err.detail?.size === 'number' && attempt === 0) {
            w.knownSize = err.detail.size;
            continue;
          }
          this.report(err);
          return;
        }
      }
    };
    const asked = this.witnessVerifiers
      .filter((w) => w.asking === undefined)
      .map((w) => {
        const p = ask(w).finally(() => {
          w.asking = undefined;
        });
        w.asking = p;
        return p;
      });
    await new Promise<void>((resolve) => {
      let left = asked.length;
      let grace: ReturnType<typeof setTimeout> | undefined;
      const check = (): void => {
        if (left === 0) {
          clearTimeout(grace);
          resolve();
        } else if (grace === undefined && quorumSatisfied(cfg.policy, new Set(got.keys()))) {
          grace = setTimeout(resolve, cfg.graceMs ?? QUORUM_GRACE_MS);
        }
      };
      for (const p of asked)
        void p.then(() => {
          left--;
          check();
        });
      check();
    });
    const names = new Set(got.keys());
    if (!quorumSatisfied(cfg.policy, names)) {
      this.report(new CustodyError('ERR_TLOG_QUORUM', 'witness quorum not met; checkpoint not published yet', { detail: { size, cosigned: names.size } }));
      return undefined;
    }
    return formatNote(parsed.text, [...parsed.signatures, ...[...got.values()].flat()]);
  }

  /**
   * Resolves with the first published checkpoint that includes `index`. `sequenced`: the caller
   * knows the entry is in the log (it just added it), which the timeout's error then says.
   */
  waitForCheckpoint(index: number, timeoutMs = 30_000, sequenced = false): Promise<string> {
    if (this.published && index < this.published.size) return Promise.resolve(this.published.note);
    return new Promise<string>((resolve, reject) => {
      const w: Waiter = { index, resolve, reject };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        // A sequenced entry stays in the log; no checkpoint that includes it was published in time, e.g. for want of a witness quorum.
        reject(
          sequenced
            ? new CustodyError('ERR_TLOG_UNAVAILABLE', `the entry is sequenced at index ${index}, but no checkpoint including it was published in time (is the witness quorum reachable?)`, { detail: { index, sequenced: true } })
            : new CustodyError('ERR_TLOG_UNAVAILABLE', `no checkpoint including index ${index} was published in time`, { detail: { index } }),
        );
      }, timeoutMs);
      t.unref();
      w.resolve = (n) => {
        clearTimeout(t);
        resolve(n);
      };
      this.waiters.push(w);
    });
  }

  /** The latest published (possibly cosigned) checkpoint. */
  latestCheckpoint(): string | undefined {
    return this.published?.note;
  }

  get publishedSize(): number {
    return this.published?.size ?? 0;
  }

  /**
   * The entry at `index` as published: once a checkpoint includes it (waiting up to `timeoutMs`
   * for the integrator), read back from its entry bundle, the bytes any tile reader sees.
   */
  async entry(index: number, timeoutMs = ENTRY_WAIT_MS): Promise<Bytes> {
    if (!Number.isSafeInteger(index) || index < 0) throw new CustodyError('ERR_TLOG_ENTRY', 'index must be a non-negative integer', { detail: { index } });
    await this.refreshPublished();
    if (!this.published || index >= this.published.size) await this.waitForCheckpoint(index, timeoutMs);
    const store = this.opts.store;
    return readEntry({ readCheckpoint: () => store.readCheckpoint(), readTile: store.readTile }, index, this.published!.size);
  }

  /** An inclusion proof file for `index` against the latest published checkpoint. */
  async proof(index: number): Promise<TlogProof> {
    await this.refreshPublished();
    const p = this.published;
    if (!p || index >= p.size) throw new CustodyError('ERR_TLOG_INCLUSION', 'entry is not in a published checkpoint yet', { detail: { index, size: p?.size ?? 0 } });
    const proof = await proveInclusion(new TileHashSource(this.opts.store.readTile, p.size, rfc6962, this.cache), index, p.size);
    return { index, proof, checkpoint: p.note };
  }

  /** A consistency proof between two published sizes (for witnesses and monitors). */
  async consistency(oldSize: number, newSize: number): Promise<Bytes[]> {
    return proveConsistency(new TileHashSource(this.opts.store.readTile, newSize, rfc6962, this.cache), oldSize, newSize);
  }

  /** Stops the integrator, commits queued appends, integrates and publishes what is sequenced. */
  async close(opts: { integrate?: boolean } = { integrate: true }): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    while (this.flushing || this.flushScheduled || this.queue.length > 0) {
      await this.flush();
      await new Promise((r) => setImmediate(r));
    }
    if (opts.integrate !== false) await this.integrateNow().catch((e: unknown) => this.report(e));
    else await this.integrating?.catch(() => undefined);
    for (const w of this.waiters) w.reject(new CustodyError('ERR_TLOG_UNAVAILABLE', 'log closed'));
    this.waiters = [];
    try {
      await this.opts.sequencer.close();
    } finally {
      this.opts.lock?.release();
    }
  }
}

/** Parses a published checkpoint's size without verifying it (for status displays). */
export function checkpointSize(note: string): number {
  return parseCheckpointBody(parseNote(note).text).size;
}
