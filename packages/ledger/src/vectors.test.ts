import { describe, expect, it } from 'vitest';
import { fromBase64, toBase64, utf8 } from '@custody/core';
import { readVectorText, vectorPath } from '../../../test/vectors.js';
import {
  TileHashSource,
  consistencyProofFromTiles,
  createCosignatureVerifier,
  createEd25519Verifier,
  generateSignerKey,
  inclusionProofFromTiles,
  integrate,
  openCheckpoint,
  parseEntryBundle,
  parseTilePath,
  parseTlogPolicy,
  parseVerifierKey,
  readEntry,
  rfc6962,
  tileHashes,
  tilePath,
  treeRoot,
  verifyCheckpointWithPolicy,
  verifyConsistency,
  verifyInclusion,
  type TileReader,
} from './index.js';
import { mapLogSource, readTree } from './testing/fs-source.js';

interface Vectors {
  vkey: string;
  wvkey: string;
  checkpoint: string;
  oldCheckpoint: string;
  index: number;
  leaf: string;
  inclusion: string[];
  oldSize: number;
  consistency: string[];
}

const v = JSON.parse(readVectorText('tlog/vectors.json')) as Vectors;
const tiles = readTree(vectorPath('tlog/tiles'));
const b64 = (xs: string[]) => xs.map((x) => fromBase64(x));
const flip = (b: Uint8Array, i = 0) => {
  const c = b.slice();
  c[i]! ^= 1;
  return c;
};
/** Flips one bit inside the base64 signature of signature line `line` (0-based from the first). */
function tamperSignature(note: string, line: number): string {
  const [text, sigs] = [note.slice(0, note.lastIndexOf('\n\n') + 2), note.slice(note.lastIndexOf('\n\n') + 2)];
  const lines = sigs.split('\n');
  const [prefix, sig] = [lines[line]!.slice(0, lines[line]!.lastIndexOf(' ') + 1), lines[line]!.slice(lines[line]!.lastIndexOf(' ') + 1)];
  const raw = fromBase64(sig);
  raw[raw.length - 1]! ^= 1;
  lines[line] = prefix + toBase64(raw);
  return text + lines.join('\n');
}

describe('shared tlog vectors', () => {
  it('parses the log and witness verifier keys', () => {
    const log = parseVerifierKey(v.vkey);
    expect(log.name).toBe('example.com/audit-log');
    expect(log.type).toBe(0x01);
    expect(log.vkey).toBe(v.vkey);
    const w = parseVerifierKey(v.wvkey);
    expect(w.type).toBe(0x04);
    expect(w.keyId.toString(16)).toBe('adbbf1d1');
  });

  it('opens the cosigned checkpoint and its older sibling', async () => {
    const log = await createEd25519Verifier(v.vkey);
    const wit = await createCosignatureVerifier(v.wvkey);
    const cp = await openCheckpoint(v.checkpoint, [log], [wit]);
    expect(cp.checkpoint.origin).toBe('example.com/audit-log');
    expect(cp.checkpoint.size).toBe(1000);
    expect(cp.cosignatures).toHaveLength(1);
    expect(cp.cosignatures[0]!.timestamp).toBe(1700000000);
    const old = await openCheckpoint(v.oldCheckpoint, [log]);
    expect(old.checkpoint.size).toBe(v.oldSize);
  });

  it('checks the checkpoint against a tlog-policy with a witness quorum', async () => {
    const policy = parseTlogPolicy(`log ${v.vkey}\nwitness w1 ${v.wvkey}\nquorum w1\n`);
    const at = new Date(1700000000_000);
    const ok = await verifyCheckpointWithPolicy(v.checkpoint, policy, { now: at });
    expect(ok.witnesses).toEqual(['w1']);
    await expect(verifyCheckpointWithPolicy(v.oldCheckpoint, policy, { now: at })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    // Freshness: at the cosignature's time it counts; a day later with a one-hour window it does not.
    await expect(verifyCheckpointWithPolicy(v.checkpoint, policy, { now: new Date(1700000000_000), maxAgeSeconds: 3600 })).resolves.toBeTruthy();
    await expect(verifyCheckpointWithPolicy(v.checkpoint, policy, { now: new Date(), maxAgeSeconds: 3600 })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    // A cosignature dated after the verification time (beyond 60 s of clock skew) does not count.
    await expect(verifyCheckpointWithPolicy(v.checkpoint, policy, { now: new Date(1700000000_000 - 61_000) })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    await expect(verifyCheckpointWithPolicy(v.checkpoint, policy, { now: new Date(1700000000_000 - 60_000) })).resolves.toBeTruthy();
  });

  it('verifies the inclusion and consistency proofs', async () => {
    const log = await createEd25519Verifier(v.vkey);
    const cp = (await openCheckpoint(v.checkpoint, [log])).checkpoint;
    const old = (await openCheckpoint(v.oldCheckpoint, [log])).checkpoint;
    verifyInclusion(v.index, cp.size, rfc6962.leaf(fromBase64(v.leaf)), b64(v.inclusion), cp.rootHash);
    verifyConsistency(old.size, cp.size, old.rootHash, cp.rootHash, b64(v.consistency));
  });

  it('rebuilds the same root and proofs from the tiles', async () => {
    const log = await createEd25519Verifier(v.vkey);
    const cp = (await openCheckpoint(v.checkpoint, [log])).checkpoint;
    const src = mapLogSource(tiles);
    expect(toBase64(await treeRoot(new TileHashSource(src.readTile, 1000), 1000))).toBe(toBase64(cp.rootHash));
    expect((await inclusionProofFromTiles(src, v.index, 1000)).map(toBase64)).toEqual(v.inclusion);
    expect((await consistencyProofFromTiles(src, v.oldSize, 1000)).map(toBase64)).toEqual(v.consistency);
    expect(toBase64(await readEntry(src, v.index, 1000))).toBe(v.leaf);
  });

  it('has entry bundles that hash to the level-0 tiles', () => {
    for (const [path, data] of tiles) {
      const t = path === 'checkpoint' ? undefined : parseTilePath(path);
      if (!t || t.level !== 'entries') continue;
      const entries = parseEntryBundle(data, t.width);
      const hashes = tileHashes(tiles.get(tilePath({ ...t, level: 0 }))!, t.width);
      entries.forEach((e, i) => expect(toBase64(rfc6962.leaf(e))).toBe(toBase64(hashes[i]!)));
      expect(new TextDecoder().decode(entries[0])).toBe(`{"seq":${t.index * 256},"event":"audit"}\n`);
    }
  });

  it('parses and re-formats every tile path in the vector tree', () => {
    for (const path of tiles.keys()) if (path !== 'checkpoint') expect(tilePath(parseTilePath(path))).toBe(path);
  });

  it('integrates the 1000 entries in uneven batches into byte-identical tiles', async () => {
    const entries = Array.from({ length: 1000 }, (_, i) => utf8(`{"seq":${i},"event":"audit"}\n`));
    const files = new Map<string, Uint8Array>();
    const reader: TileReader = (t) => {
      const b = files.get(tilePath(t));
      return b ? Promise.resolve(b) : Promise.reject(new Error('missing ' + tilePath(t)));
    };
    let size = 0;
    let root = new Uint8Array();
    for (const n of [1, 255, 1, 300, 443]) {
      const r = await integrate({ oldSize: size, readTile: reader, entries: entries.slice(size, size + n) });
      for (const w of r.tiles) files.set(tilePath(w.tile), w.data);
      size = r.size;
      root = r.root;
    }
    expect(size).toBe(1000);
    const cpRoot = v.checkpoint.split('\n')[2]!;
    expect(toBase64(root)).toBe(cpRoot);
    // Every tile the vector tree has at size 1000 is byte-identical (partials of older sizes may differ in set).
    for (const [path, data] of tiles) {
      if (path === 'checkpoint') continue;
      expect(files.get(path), path).toEqual(data);
    }
  });
});

describe('shared tlog vectors: tampered twins', () => {
  it('rejects a flipped log signature byte', async () => {
    const log = await createEd25519Verifier(v.vkey);
    await expect(openCheckpoint(tamperSignature(v.checkpoint, 0), [log])).rejects.toMatchObject({ code: 'ERR_NOTE_SIGNATURE' });
  });

  it('rejects a flipped witness cosignature byte when the witness is known', async () => {
    const log = await createEd25519Verifier(v.vkey);
    const wit = await createCosignatureVerifier(v.wvkey);
    const bad = tamperSignature(v.checkpoint, 1);
    await expect(openCheckpoint(bad, [log], [wit])).rejects.toMatchObject({ code: 'ERR_NOTE_SIGNATURE' });
    // Unknown to the verifier, the same signature is ignored (C2SP signed-note).
    await expect(openCheckpoint(bad, [log])).resolves.toBeTruthy();
  });

  it('rejects a changed root hash, size or origin', async () => {
    const log = await createEd25519Verifier(v.vkey);
    const lines = v.checkpoint.split('\n');
    const root = fromBase64(lines[2]!);
    const wrongRoot = [lines[0], lines[1], toBase64(flip(root)), ...lines.slice(3)].join('\n');
    await expect(openCheckpoint(wrongRoot, [log])).rejects.toMatchObject({ code: 'ERR_NOTE_SIGNATURE' });
    const wrongSize = [lines[0], '1001', ...lines.slice(2)].join('\n');
    await expect(openCheckpoint(wrongSize, [log])).rejects.toMatchObject({ code: 'ERR_NOTE_SIGNATURE' });
    await expect(openCheckpoint(v.checkpoint, [log], [], 'example.com/other-log')).rejects.toMatchObject({ code: 'ERR_TLOG_ORIGIN' });
  });

  it('rejects a checkpoint signed by a different key under the same name', async () => {
    const other = await createEd25519Verifier('example.com/audit-log+1a2b3c4d+AQ' + 'A'.repeat(42) + '=').catch((e: unknown) => e);
    expect(other).toMatchObject({ code: 'ERR_NOTE_KEY' });
    const k = await generateSignerKey('example.com/audit-log', 0x01, (n) => new Uint8Array(n).fill(9));
    await expect(openCheckpoint(v.checkpoint, [await createEd25519Verifier(k.vkey)])).rejects.toMatchObject({ code: 'ERR_NOTE_UNVERIFIED' });
  });

  it('rejects tampered inclusion proofs', () => {
    const root = fromBase64(v.checkpoint.split('\n')[2]!);
    const leaf = rfc6962.leaf(fromBase64(v.leaf));
    const proof = b64(v.inclusion);
    const cases: [string, () => void][] = [
      ['wrong leaf', () => verifyInclusion(v.index, 1000, rfc6962.leaf(utf8('{"seq":777,"event":"forged"}\n')), proof, root)],
      ['wrong index', () => verifyInclusion(v.index + 1, 1000, leaf, proof, root)],
      ['wrong size', () => verifyInclusion(v.index, 2000, leaf, proof, root)],
      ['flipped hash', () => verifyInclusion(v.index, 1000, leaf, [flip(proof[0]!), ...proof.slice(1)], root)],
      ['missing hash', () => verifyInclusion(v.index, 1000, leaf, proof.slice(0, -1), root)],
      ['extra hash', () => verifyInclusion(v.index, 1000, leaf, [...proof, proof[0]!], root)],
      ['wrong root', () => verifyInclusion(v.index, 1000, leaf, proof, flip(root))],
      ['index beyond size', () => verifyInclusion(1000, 1000, leaf, proof, root)],
    ];
    for (const [name, f] of cases) expect(f, name).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_INCLUSION' }) as Error);
  });

  it('rejects tampered consistency proofs', () => {
    const root = fromBase64(v.checkpoint.split('\n')[2]!);
    const oldRoot = fromBase64(v.oldCheckpoint.split('\n')[2]!);
    const proof = b64(v.consistency);
    const cases: [string, () => void][] = [
      ['flipped hash', () => verifyConsistency(500, 1000, oldRoot, root, [...proof.slice(0, 3), flip(proof[3]!), ...proof.slice(4)])],
      ['swapped roots', () => verifyConsistency(500, 1000, root, oldRoot, proof)],
      ['wrong old size', () => verifyConsistency(501, 1000, oldRoot, root, proof)],
      ['truncated', () => verifyConsistency(500, 1000, oldRoot, root, proof.slice(1))],
      ['old larger than new', () => verifyConsistency(1000, 500, root, oldRoot, proof)],
      ['same size different roots', () => verifyConsistency(1000, 1000, root, oldRoot, [])],
    ];
    for (const [name, f] of cases) expect(f, name).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_CONSISTENCY' }) as Error);
  });

  it('detects a tampered tile or entry bundle', async () => {
    const root = fromBase64(v.checkpoint.split('\n')[2]!);
    const bad = new Map(tiles);
    bad.set('tile/0/001', flip(tiles.get('tile/0/001')!, 100));
    const src = mapLogSource(bad);
    // The right edge does not read tile 0/001, but a proof for a leaf in it does, and fails.
    const proof = await inclusionProofFromTiles(src, 300, 1000);
    const leaf = rfc6962.leaf(await readEntry(src, 300, 1000));
    expect(() => verifyInclusion(300, 1000, leaf, proof, root)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_INCLUSION' }) as Error);
    const badEdge = new Map(tiles);
    badEdge.set('tile/1/000.p/3', flip(tiles.get('tile/1/000.p/3')!, 5));
    const r = await treeRoot(new TileHashSource(mapLogSource(badEdge).readTile, 1000), 1000);
    expect(toBase64(r)).not.toBe(toBase64(root));
    const badBundle = new Map(tiles);
    badBundle.set('tile/entries/000', tiles.get('tile/entries/000')!.slice(0, -3));
    await expect(readEntry(mapLogSource(badBundle), 3, 1000)).rejects.toMatchObject({ code: 'ERR_TLOG_ENTRY' });
  });
});
