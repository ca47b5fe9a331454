/**
 * Where the gateway records receipts and policy decisions: the transparency ledger's
 * `append(event) -> {index}` (services/ledger's TransparencyLog implements it), plus an
 * optional inclusion proof so clients can check entries offline.
 */
import { SIG_TYPE_ED25519, MemoryTree, createEd25519Signer, encodeEvent, generateSignerKey, proveInclusion, signCheckpoint, type AuditSink, type CustodyEvent, type NoteSigner, type TlogProof } from '@custody/ledger';
import { CustodyError, secureRandom, type RandomSource } from '@custody/core';
import { nodeTreeHasher } from '@custody/ledger-service';

export interface LedgerSink extends AuditSink {
  /** A C2SP tlog-proof for an appended entry, against a checkpoint that covers it. */
  proof?(index: number): Promise<TlogProof>;
  /** The entry bytes (canonical event) at an index, waiting up to `waitMs` for the log to publish it (a log that publishes at once ignores it). */
  entry?(index: number, waitMs?: number): Promise<Uint8Array>;
}

export interface InMemoryLedgerOptions {
  /** Keep the bytes and events of only this many most recent entries (at most twice as many between drops). Default: all. */
  retain?: number;
}

/**
 * In-memory append-only log: a DEVELOPMENT AND TEST DOUBLE of the transparency ledger, not the
 * ledger. Entries are validated and encoded exactly as the ledger does (canonical Custody
 * events), hashed into an RFC 6962 tree, and proved against a checkpoint signed with an
 * ephemeral key; nothing is persisted or witnessed. The real ledger replaces it through
 * `LedgerSink`.
 *
 * With `retain`, only the most recent entries' bytes and events stay (a long-running
 * development gateway does not grow by them); the tree keeps every hash, 64 bytes an entry, so
 * an inclusion proof of any index still works.
 */
export class InMemoryLedgerSink implements LedgerSink {
  /** The retained entries' bytes: `entries[i]` is the entry at index `firstRetained + i`. */
  readonly entries: Uint8Array[] = [];
  /** The retained events, as `entries`. */
  readonly events: CustodyEvent[] = [];
  /** The index of `entries[0]` (0 unless `retain` has dropped older entries). */
  firstRetained = 0;
  /** Leaf hashes on the native digest, as the ledger service hashes them (byte-identical to RFC 6962's). */
  private readonly tree = new MemoryTree(nodeTreeHasher);
  private failing = false;

  private constructor(
    readonly origin: string,
    private readonly signer: NoteSigner,
    /** The log's verifier key (C2SP vkey), for a tlog-policy `log` line. */
    readonly vkey: string,
    private readonly retain: number | undefined,
  ) {}

  static async create(origin = 'custody.dev/dev-ledger', random: RandomSource = secureRandom, options: InMemoryLedgerOptions = {}): Promise<InMemoryLedgerSink> {
    const { retain } = options;
    if (retain !== undefined && (!Number.isSafeInteger(retain) || retain < 1)) throw new CustodyError('ERR_USAGE', 'retain must be a positive whole number of entries', { detail: { retain: String(retain) } });
    const k = await generateSignerKey(origin, SIG_TYPE_ED25519, random);
    return new InMemoryLedgerSink(origin, await createEd25519Signer(k.skey), k.vkey, retain);
  }

  /** How many entries the log holds (retained or not). */
  get size(): number {
    return this.tree.size;
  }

  /** A tlog-policy that trusts this log alone (no witnesses). */
  get tlogPolicyText(): string {
    return `log ${this.vkey}\nquorum none\n`;
  }

  /** Makes appends fail (tests of the fail-closed path). */
  setFailing(failing: boolean): void {
    this.failing = failing;
  }

  /** Also hands back the entry bytes it stored, so the caller digests them without encoding the event again. */
  append(event: CustodyEvent): Promise<{ index: number; entry: Uint8Array }> {
    if (this.failing) return Promise.reject(new Error('ledger unavailable (test switch)'));
    let entry: Uint8Array;
    try {
      entry = encodeEvent(event);
    } catch (e) {
      return Promise.reject(e instanceof Error ? e : new Error('invalid event'));
    }
    const index = this.tree.appendEntry(entry);
    this.entries.push(entry);
    this.events.push(event);
    // Dropped in batches of `retain`, so an append stays O(1) on average.
    if (this.retain !== undefined && this.entries.length >= 2 * this.retain) {
      const drop = this.entries.length - this.retain;
      this.entries.splice(0, drop);
      this.events.splice(0, drop);
      this.firstRetained += drop;
    }
    return Promise.resolve({ index, entry: entry.slice() });
  }

  entry(index: number): Promise<Uint8Array> {
    const e = this.entries[index - this.firstRetained];
    if (e) return Promise.resolve(e);
    const dropped = Number.isSafeInteger(index) && index >= 0 && index < this.firstRetained;
    return Promise.reject(new CustodyError('ERR_TLOG_ENTRY', dropped ? 'entry no longer retained by this development log' : 'no such entry in this development log', { detail: { index: Number.isSafeInteger(index) ? index : String(index).slice(0, 20) } }));
  }

  async proof(index: number): Promise<TlogProof> {
    const size = this.tree.size;
    const checkpoint = await signCheckpoint({ origin: this.origin, size, rootHash: await this.tree.root(size), extensions: [] }, [this.signer]);
    return { index, proof: await proveInclusion(this.tree, index, size, nodeTreeHasher), checkpoint };
  }
}
