import { VerificationError, type Bytes } from '@custody/core';
import { HASH_SIZE, rfc6962, type TreeHasher } from './hasher.js';

/**
 * A perfect subtree of the log: `level` l and `index` n cover the leaves [n * 2^l, (n+1) * 2^l).
 * Every hash a proof needs is a perfect subtree or a right edge made of perfect subtrees, so a
 * store only has to answer for these (tiles store levels 0, 8, 16, ... and derive the rest).
 */
export interface NodeId {
  level: number;
  index: number;
}

/** Where proof generation reads perfect-subtree hashes from (memory, tiles, a database). */
export interface HashSource {
  readNodes(ids: readonly NodeId[]): Promise<Bytes[]>;
  /**
   * Optional memory for hashes of ranges that are not perfect subtrees (the right edge of this
   * source's tree), which proofs otherwise recompute from perfect subtrees every time.
   */
  readonly rangeMemo?: RangeHashMemo;
}

/** Hashes of composite leaf ranges of one tree, bound to the hasher that computed them. */
export interface RangeHashMemo {
  get(lo: number, hi: number, hasher: TreeHasher): Bytes | undefined;
  set(lo: number, hi: number, hasher: TreeHasher, hash: Bytes): void;
}

/** Half-open leaf range [lo, hi). */
export type LeafRange = readonly [lo: number, hi: number];

/** Tree sizes and indexes are JavaScript safe integers (2^53 - 1 leaves is far beyond any log). */
export function assertTreeSize(n: number, what = 'tree size'): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new VerificationError('ERR_INPUT_MALFORMED', `${what} must be a non-negative safe integer`, { detail: { [what]: String(n) } });
  }
}

/** Largest power of two strictly below n (n >= 2). */
export function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

export function isPowerOfTwo(n: number): boolean {
  if (n < 1) return false;
  while (n % 2 === 0) n /= 2;
  return n === 1;
}

function log2Exact(n: number): number {
  let l = 0;
  while (n > 1) {
    n /= 2;
    l++;
  }
  return l;
}

/** How to compute MTH(D[lo:hi]) from perfect subtrees, following RFC 6962's split. */
export type HashPlan = { node: NodeId } | { left: HashPlan; right: HashPlan };

export function rangePlan(lo: number, hi: number): HashPlan {
  const size = hi - lo;
  if (size < 1) throw new VerificationError('ERR_INPUT_MALFORMED', 'empty leaf range', { detail: { lo, hi } });
  if (isPowerOfTwo(size) && lo % size === 0) return { node: { level: log2Exact(size), index: lo / size } };
  const k = splitPoint(size);
  return { left: rangePlan(lo, lo + k), right: rangePlan(lo + k, hi) };
}

function collect(plan: HashPlan, out: Map<string, NodeId>): void {
  if ('node' in plan) out.set(`${plan.node.level}/${plan.node.index}`, plan.node);
  else {
    collect(plan.left, out);
    collect(plan.right, out);
  }
}

function evaluate(plan: HashPlan, got: Map<string, Bytes>, hasher: TreeHasher): Bytes {
  if ('node' in plan) return got.get(`${plan.node.level}/${plan.node.index}`)!;
  return hasher.node(evaluate(plan.left, got, hasher), evaluate(plan.right, got, hasher));
}

/** MTH of each range, reading every needed perfect subtree once, in one batch. */
export async function hashRanges(source: HashSource, ranges: readonly LeafRange[], hasher: TreeHasher = rfc6962): Promise<Bytes[]> {
  const memo = source.rangeMemo;
  const out: Bytes[] = new Array<Bytes>(ranges.length);
  const todo: { i: number; plan: HashPlan }[] = [];
  for (let i = 0; i < ranges.length; i++) {
    const [lo, hi] = ranges[i]!;
    const perfect = hi > lo && isPowerOfTwo(hi - lo) && lo % (hi - lo) === 0;
    const known = memo && !perfect ? memo.get(lo, hi, hasher) : undefined;
    if (known) out[i] = known.slice();
    else todo.push({ i, plan: rangePlan(lo, hi) });
  }
  if (todo.length === 0) return out;
  const need = new Map<string, NodeId>();
  for (const t of todo) collect(t.plan, need);
  const ids = [...need.values()];
  const hashes = await source.readNodes(ids);
  if (hashes.length !== ids.length) throw new VerificationError('ERR_TLOG_TILE', 'hash source returned the wrong number of hashes');
  const got = new Map<string, Bytes>();
  ids.forEach((id, i) => {
    const h = hashes[i]!;
    if (h.length !== 32) throw new VerificationError('ERR_TLOG_TILE', 'hash source returned a hash of the wrong length');
    got.set(`${id.level}/${id.index}`, h);
  });
  for (const { i, plan } of todo) {
    const h = evaluate(plan, got, hasher);
    if (memo && !('node' in plan)) memo.set(ranges[i]![0], ranges[i]![1], hasher, h.slice());
    out[i] = h;
  }
  return out;
}

/** Root hash of the tree of the first `size` leaves. */
export async function treeRoot(source: HashSource, size: number, hasher: TreeHasher = rfc6962): Promise<Bytes> {
  assertTreeSize(size);
  if (size === 0) return hasher.emptyRoot();
  return (await hashRanges(source, [[0, size]], hasher))[0]!;
}

/** MTH over leaf hashes held in memory (RFC 6962 section 2.1), without recursion. */
export function merkleRoot(leafHashes: readonly Uint8Array[], hasher: TreeHasher = rfc6962): Bytes {
  if (leafHashes.length === 0) return hasher.emptyRoot();
  // A stack of perfect subtrees (a compact range); merge equal sizes, then fold right to left.
  const stack: { size: number; hash: Bytes }[] = [];
  for (const h of leafHashes) {
    let cur = { size: 1, hash: h as Bytes };
    while (stack.length > 0 && stack[stack.length - 1]!.size === cur.size) {
      const left = stack.pop()!;
      cur = { size: cur.size * 2, hash: hasher.node(left.hash, cur.hash) };
    }
    stack.push(cur);
  }
  let acc = stack.pop()!.hash;
  while (stack.length > 0) acc = hasher.node(stack.pop()!.hash, acc);
  return acc;
}

/** Hashes a page of a MemoryTree level holds (1 MiB). */
const PAGE_HASHES = 32768;

/**
 * One level of a MemoryTree: its hashes back to back in pages of `PAGE_HASHES` (the first page
 * starts small and doubles up to that), so a hash costs its 32 bytes and not an object of its
 * own (about 150 bytes more, and work for the garbage collector), and a level never needs one
 * buffer larger than a page.
 */
class HashLevel {
  private readonly pages: Uint8Array[] = [new Uint8Array(HASH_SIZE * 16)];
  length = 0;

  push(h: Uint8Array): void {
    if (h.length !== HASH_SIZE) throw new VerificationError('ERR_INPUT_MALFORMED', 'Merkle hashes are 32 bytes', { detail: { length: h.length } });
    const p = Math.floor(this.length / PAGE_HASHES);
    const o = (this.length % PAGE_HASHES) * HASH_SIZE;
    let page = this.pages[p];
    if (!page) this.pages.push((page = new Uint8Array(HASH_SIZE * PAGE_HASHES)));
    else if (o + HASH_SIZE > page.length) {
      const grown = new Uint8Array(Math.min(page.length * 2, HASH_SIZE * PAGE_HASHES));
      grown.set(page);
      this.pages[p] = page = grown;
    }
    page.set(h, o);
    this.length++;
  }

  /** A view of hash `i` (valid until the next push; only for hashing at once). */
  view(i: number): Uint8Array {
    const o = (i % PAGE_HASHES) * HASH_SIZE;
    return this.pages[Math.floor(i / PAGE_HASHES)]!.subarray(o, o + HASH_SIZE);
  }

  /** A copy of hash `i`, or undefined out of range. */
  get(i: number): Bytes | undefined {
    return Number.isInteger(i) && i >= 0 && i < this.length ? this.view(i).slice() : undefined;
  }
}

/**
 * An in-memory tree that keeps every perfect subtree hash (about 2n hashes, 64 bytes a leaf, in
 * 1 MiB pages).
 * For tests, small logs, tools and the gateway's development log; the service keeps tiles
 * instead.
 */
export class MemoryTree implements HashSource {
  private readonly levels: HashLevel[] = [new HashLevel()];

  constructor(private readonly hasher: TreeHasher = rfc6962) {}

  get size(): number {
    return this.levels[0]!.length;
  }

  appendEntry(entry: Uint8Array): number {
    return this.appendLeafHash(this.hasher.leaf(entry));
  }

  appendLeafHash(leafHash: Uint8Array): number {
    const index = this.levels[0]!.length;
    let h = leafHash;
    let l = 0;
    let i = index;
    for (;;) {
      const level = (this.levels[l] ??= new HashLevel());
      level.push(h);
      if (i % 2 === 0) break;
      h = this.hasher.node(level.view(i - 1), level.view(i));
      i = (i - 1) / 2;
      l++;
    }
    return index;
  }

  leafHash(index: number): Bytes {
    const h = this.levels[0]!.get(index);
    if (!h) throw new VerificationError('ERR_INPUT_MALFORMED', 'leaf index out of range', { detail: { index } });
    return h;
  }

  readNodes(ids: readonly NodeId[]): Promise<Bytes[]> {
    const out: Bytes[] = [];
    for (const { level, index } of ids) {
      const h = this.levels[level]?.get(index);
      if (!h) return Promise.reject(new VerificationError('ERR_TLOG_TILE', 'node is not in the tree', { detail: { level, index } }));
      out.push(h);
    }
    return Promise.resolve(out);
  }

  root(size = this.size): Promise<Bytes> {
    return treeRoot(this, size, this.hasher);
  }
}
