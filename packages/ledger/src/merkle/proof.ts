import { VerificationError, equalBytes, type Bytes } from '@custody/core';
import { HASH_SIZE, rfc6962, type TreeHasher } from './hasher.js';
import { assertTreeSize, hashRanges, isPowerOfTwo, splitPoint, type HashSource, type LeafRange } from './tree.js';

/** No valid proof in a tree of at most 2^63 leaves has more hashes than this. */
export const MAX_PROOF_HASHES = 63;

/** The leaf ranges whose hashes form the RFC 9162 inclusion path of leaf `index`, leaf's sibling first. */
export function inclusionProofRanges(index: number, size: number): LeafRange[] {
  assertTreeSize(size);
  assertTreeSize(index, 'index');
  if (index >= size) throw new VerificationError('ERR_TLOG_INCLUSION', 'index is not in the tree', { detail: { index, size } });
  const out: LeafRange[] = [];
  let lo = 0;
  let hi = size;
  // Walk down from the root, remembering the sibling subtree at each split; reverse at the end.
  while (hi - lo > 1) {
    const k = splitPoint(hi - lo);
    if (index < lo + k) {
      out.push([lo + k, hi]);
      hi = lo + k;
    } else {
      out.push([lo, lo + k]);
      lo = lo + k;
    }
  }
  return out.reverse();
}

/** The leaf ranges of the RFC 9162 consistency proof from `oldSize` to `newSize` (SUBPROOF). */
export function consistencyProofRanges(oldSize: number, newSize: number): LeafRange[] {
  assertTreeSize(oldSize, 'old size');
  assertTreeSize(newSize, 'new size');
  if (oldSize > newSize) throw new VerificationError('ERR_TLOG_CONSISTENCY', 'old size is larger than new size', { detail: { oldSize, newSize } });
  if (oldSize === 0 || oldSize === newSize) return [];
  const out: LeafRange[] = [];
  let m = oldSize;
  let lo = 0;
  let hi = newSize;
  let complete = true;
  while (m !== hi - lo) {
    const k = splitPoint(hi - lo);
    if (m <= k) {
      out.push([lo + k, hi]);
      hi = lo + k;
    } else {
      out.push([lo, lo + k]);
      m -= k;
      lo = lo + k;
      complete = false;
    }
  }
  if (!complete) out.push([lo, hi]);
  return out.reverse();
}

export async function proveInclusion(source: HashSource, index: number, size: number, hasher: TreeHasher = rfc6962): Promise<Bytes[]> {
  return hashRanges(source, inclusionProofRanges(index, size), hasher);
}

export async function proveConsistency(source: HashSource, oldSize: number, newSize: number, hasher: TreeHasher = rfc6962): Promise<Bytes[]> {
  return hashRanges(source, consistencyProofRanges(oldSize, newSize), hasher);
}

function checkProofShape(proof: readonly Uint8Array[], code: 'ERR_TLOG_INCLUSION' | 'ERR_TLOG_CONSISTENCY'): void {
  if (proof.length > MAX_PROOF_HASHES) throw new VerificationError(code, 'proof has too many hashes', { detail: { hashes: proof.length } });
  for (const p of proof) if (p.length !== HASH_SIZE) throw new VerificationError(code, 'proof hash is not 32 bytes', { detail: { length: p.length } });
}

/** Root implied by an inclusion proof (RFC 9162 section 2.1.3.2); throws if the proof has the wrong shape. */
export function rootFromInclusionProof(index: number, size: number, leafHash: Uint8Array, proof: readonly Uint8Array[], hasher: TreeHasher = rfc6962): Bytes {
  assertTreeSize(size);
  assertTreeSize(index, 'index');
  checkProofShape(proof, 'ERR_TLOG_INCLUSION');
  if (index >= size) throw new VerificationError('ERR_TLOG_INCLUSION', 'index is not in the tree', { detail: { index, size } });
  if (leafHash.length !== HASH_SIZE) throw new VerificationError('ERR_TLOG_INCLUSION', 'leaf hash is not 32 bytes');
  let fn = index;
  let sn = size - 1;
  let r = leafHash as Bytes;
  for (const p of proof) {
    if (sn === 0) throw new VerificationError('ERR_TLOG_INCLUSION', 'inclusion proof is too long', { detail: { index, size } });
    if (fn % 2 === 1 || fn === sn) {
      r = hasher.node(p, r);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      r = hasher.node(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new VerificationError('ERR_TLOG_INCLUSION', 'inclusion proof is too short', { detail: { index, size } });
  return r;
}

/** Verifies that `leafHash` is leaf `index` of the tree of `size` leaves with root `root`. */
export function verifyInclusion(
  index: number,
  size: number,
  leafHash: Uint8Array,
  proof: readonly Uint8Array[],
  root: Uint8Array,
  hasher: TreeHasher = rfc6962,
): void {
  const r = rootFromInclusionProof(index, size, leafHash, proof, hasher);
  if (!equalBytes(r, root)) throw new VerificationError('ERR_TLOG_INCLUSION', 'inclusion proof does not lead to the tree root', { detail: { index, size } });
}

/** Verifies that the tree (oldSize, oldRoot) is a prefix of (newSize, newRoot) (RFC 9162 section 2.1.4.2). */
export function verifyConsistency(
  oldSize: number,
  newSize: number,
  oldRoot: Uint8Array,
  newRoot: Uint8Array,
  proof: readonly Uint8Array[],
  hasher: TreeHasher = rfc6962,
): void {
  const fail = (why: string): never => {
    throw new VerificationError('ERR_TLOG_CONSISTENCY', why, { detail: { oldSize, newSize } });
  };
  assertTreeSize(oldSize, 'old size');
  assertTreeSize(newSize, 'new size');
  checkProofShape(proof, 'ERR_TLOG_CONSISTENCY');
  if (oldRoot.length !== HASH_SIZE || newRoot.length !== HASH_SIZE) fail('root hash is not 32 bytes');
  if (oldSize > newSize) fail('old size is larger than new size');
  if (oldSize === newSize) {
    if (proof.length !== 0) fail('proof between equal sizes must be empty');
    if (!equalBytes(oldRoot, newRoot)) fail('roots differ at the same size');
    return;
  }
  if (oldSize === 0) {
    if (proof.length !== 0) fail('proof from the empty tree must be empty');
    if (!equalBytes(oldRoot, hasher.emptyRoot())) fail('old root is not the empty tree hash');
    return;
  }
  if (proof.length === 0) fail('consistency proof is empty');
  const path: Uint8Array[] = isPowerOfTwo(oldSize) ? [oldRoot, ...proof] : [...proof];
  let fn = oldSize - 1;
  let sn = newSize - 1;
  while (fn % 2 === 1) {
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  let fr = path[0] as Bytes;
  let sr = path[0] as Bytes;
  for (let i = 1; i < path.length; i++) {
    const c = path[i]!;
    if (sn === 0) fail('consistency proof is too long');
    if (fn % 2 === 1 || fn === sn) {
      fr = hasher.node(c, fr);
      sr = hasher.node(c, sr);
      if (fn % 2 === 0) {
        while (fn % 2 === 0 && fn !== 0) {
          fn /= 2;
          sn = Math.floor(sn / 2);
        }
      }
    } else {
      sr = hasher.node(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  if (sn !== 0) fail('consistency proof is too short');
  if (!equalBytes(fr, oldRoot)) fail('consistency proof does not lead to the old root');
  if (!equalBytes(sr, newRoot)) fail('consistency proof does not lead to the new root');
}
