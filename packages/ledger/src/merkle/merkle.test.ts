import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { concatBytes, sha256, toHex, utf8, type Bytes } from '@custody/core';
import { Sha256, sha256Node, sha256Sync } from './sha256.js';
import { rfc6962 } from './hasher.js';
import { MemoryTree, merkleRoot } from './tree.js';
import { consistencyProofRanges, inclusionProofRanges, proveConsistency, proveInclusion, rootFromInclusionProof, verifyConsistency, verifyInclusion } from './proof.js';

// Reference RFC 6962 section 2.1 recursion, written as plainly as the RFC states it.
function mth(d: Bytes[]): Bytes {
  if (d.length === 0) return sha256Sync(new Uint8Array(0));
  if (d.length === 1) return sha256Sync(concatBytes(new Uint8Array([0]), d[0]!));
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return sha256Sync(concatBytes(new Uint8Array([1]), mth(d.slice(0, k)), mth(d.slice(k))));
}
function path(m: number, d: Bytes[]): Bytes[] {
  if (d.length <= 1) return [];
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return m < k ? [...path(m, d.slice(0, k)), mth(d.slice(k))] : [...path(m - k, d.slice(k)), mth(d.slice(0, k))];
}
function subproof(m: number, d: Bytes[], b: boolean): Bytes[] {
  if (m === d.length) return b ? [] : [mth(d)];
  let k = 1;
  while (k * 2 < d.length) k *= 2;
  return m <= k ? [...subproof(m, d.slice(0, k), b), mth(d.slice(k))] : [...subproof(m - k, d.slice(k), false), mth(d.slice(0, k))];
}

const entries = Array.from({ length: 70 }, (_, i) => utf8(`entry ${i}`));
const hex = (xs: Uint8Array[]) => xs.map(toHex);

describe('sha256', () => {
  it('matches FIPS 180-4 examples', () => {
    expect(toHex(sha256Sync(utf8('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(toHex(sha256Sync(new Uint8Array(0)))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(toHex(sha256Sync(utf8('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')))).toBe('248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  });

  it('matches WebCrypto for random inputs, whole and in pieces', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), fc.nat(300), async (data, cut) => {
        const want = toHex(await sha256(data));
        expect(toHex(sha256Sync(data))).toBe(want);
        const c = Math.min(cut, data.length);
        expect(toHex(new Sha256().update(data.subarray(0, c)).update(data.subarray(c)).digest())).toBe(want);
      }),
      { numRuns: 200 },
    );
  });

  it('hashes a node without concatenating', async () => {
    const l = sha256Sync(utf8('l'));
    const r = sha256Sync(utf8('r'));
    expect(toHex(sha256Node(l, r))).toBe(toHex(await sha256(concatBytes(new Uint8Array([1]), l, r))));
    expect(() => rfc6962.node(l, r.subarray(1))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
  });
});

describe('Merkle tree and proofs (RFC 6962 / 9162)', () => {
  const leaves = entries.map((e) => rfc6962.leaf(e));
  const tree = new MemoryTree();
  for (const e of entries) tree.appendEntry(e);

  it('computes the same roots as the RFC recursion for every size', async () => {
    expect(toHex(await tree.root(0))).toBe(toHex(mth([])));
    for (let n = 1; n <= entries.length; n++) {
      const want = toHex(mth(entries.slice(0, n)));
      expect(toHex(await tree.root(n))).toBe(want);
      expect(toHex(merkleRoot(leaves.slice(0, n)))).toBe(want);
    }
  });

  it('generates RFC inclusion proofs for every index of every size, and they verify', async () => {
    for (let n = 1; n <= 40; n++) {
      const root = await tree.root(n);
      for (let m = 0; m < n; m++) {
        const p = await proveInclusion(tree, m, n);
        expect(hex(p)).toEqual(hex(path(m, entries.slice(0, n))));
        verifyInclusion(m, n, leaves[m]!, p, root);
        expect(inclusionProofRanges(m, n)).toHaveLength(p.length);
      }
    }
  });

  it('generates RFC consistency proofs for every pair of sizes, and they verify', async () => {
    for (let n = 1; n <= 40; n++) {
      const root = await tree.root(n);
      for (let m = 1; m <= n; m++) {
        const p = await proveConsistency(tree, m, n);
        expect(hex(p)).toEqual(m === n ? [] : hex(subproof(m, entries.slice(0, n), true)));
        verifyConsistency(m, n, await tree.root(m), root, p);
        expect(consistencyProofRanges(m, n)).toHaveLength(p.length);
      }
      verifyConsistency(0, n, rfc6962.emptyRoot(), root, []);
    }
  });

  it('rejects every single-bit change to a proof', async () => {
    const n = 37;
    const root = await tree.root(n);
    for (const m of [0, 5, 36]) {
      const p = await proveInclusion(tree, m, n);
      for (let i = 0; i < p.length; i++) {
        const bad = p.map((h, j) => (j === i ? Uint8Array.from(h, (x, k) => (k === 7 ? x ^ 0x10 : x)) : h));
        expect(() => verifyInclusion(m, n, leaves[m]!, bad, root)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_INCLUSION' }) as Error);
      }
    }
    const c = await proveConsistency(tree, 13, n);
    const oldRoot = await tree.root(13);
    verifyConsistency(13, n, oldRoot, root, c);
    for (let i = 0; i < c.length; i++) {
      const bad = c.map((h, j) => (j === i ? Uint8Array.from(h, (x, k) => (k === 0 ? x ^ 1 : x)) : h));
      expect(() => verifyConsistency(13, n, oldRoot, root, bad)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_CONSISTENCY' }) as Error);
    }
  });

  it('rejects malformed proof inputs with typed errors', () => {
    const h = leaves[0]!;
    expect(() => rootFromInclusionProof(0, 1, h.subarray(1), [])).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_INCLUSION' }) as Error);
    expect(() => rootFromInclusionProof(0, 2, h, [h.subarray(2)])).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_INCLUSION' }) as Error);
    expect(() => rootFromInclusionProof(0, 2, h, new Array<Uint8Array>(64).fill(h))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_INCLUSION' }) as Error);
    expect(() => verifyInclusion(-1, 2, h, [h], h)).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => verifyConsistency(0, 3, h, h, [h])).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_CONSISTENCY' }) as Error);
    expect(() => verifyConsistency(2, 3, h, h, [])).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_CONSISTENCY' }) as Error);
    expect(() => inclusionProofRanges(3, 3)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_INCLUSION' }) as Error);
  });

  it('keeps its hashes packed past every buffer doubling: roots and proofs stay those of the RFC', async () => {
    // Level buffers start at 16 hashes and double; 1100 leaves cross that six times on level 0.
    const many = Array.from({ length: 1100 }, (_, i) => utf8(`entry ${i}`));
    const big = new MemoryTree();
    for (const e of many) big.appendEntry(e);
    const leafHashes = many.map((e) => rfc6962.leaf(e));
    for (const n of [1, 15, 16, 17, 31, 32, 33, 513, 1024, 1025, 1100]) expect(toHex(await big.root(n)), `size ${n}`).toBe(toHex(merkleRoot(leafHashes.slice(0, n))));
    for (const i of [0, 15, 16, 17, 1023, 1024, 1099]) {
      const proof = await proveInclusion(big, i, 1100);
      expect(() => verifyInclusion(i, 1100, leafHashes[i]!, proof, merkleRoot(leafHashes))).not.toThrow();
    }
    // What it hands out is a copy: changing it changes nothing inside.
    const h = big.leafHash(17);
    h.fill(0);
    expect(toHex(big.leafHash(17))).toBe(toHex(leafHashes[17]!));
    expect(toHex(await big.root())).toBe(toHex(merkleRoot(leafHashes)));
    expect(() => big.leafHash(1100)).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    await expect(big.readNodes([{ level: 11, index: 0 }])).rejects.toMatchObject({ code: 'ERR_TLOG_TILE' });
    expect(() => big.appendLeafHash(new Uint8Array(31))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(big.size).toBe(1100);
  });

  it('keeps roots and proofs across its 1 MiB pages (32768 hashes a page)', async () => {
    const n = 70_000;
    const leafHashes = Array.from({ length: n }, (_, i) => rfc6962.leaf(utf8(`e${i}`)));
    const big = new MemoryTree();
    for (const h of leafHashes) big.appendLeafHash(h);
    for (const size of [32767, 32768, 32769, 65536, 65537, n]) expect(toHex(await big.root(size)), `size ${size}`).toBe(toHex(merkleRoot(leafHashes.slice(0, size))));
    const root = merkleRoot(leafHashes);
    for (const i of [0, 32767, 32768, 65535, 65536, n - 1]) {
      const proof = await proveInclusion(big, i, n);
      expect(() => verifyInclusion(i, n, leafHashes[i]!, proof, root)).not.toThrow();
    }
    expect(toHex(big.leafHash(32768))).toBe(toHex(leafHashes[32768]!));
  });

  it('handles indexes beyond 2^32 (no 32-bit shifts)', () => {
    const size = 2 ** 40 + 12345;
    const ranges = inclusionProofRanges(2 ** 35 + 7, size);
    expect(ranges.length).toBeGreaterThan(35);
    for (const [lo, hi] of ranges) expect(lo < hi && hi <= size).toBe(true);
    expect(consistencyProofRanges(2 ** 33 + 1, size).length).toBeGreaterThan(30);
  });
});
