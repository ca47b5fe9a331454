import { afterAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toHex, utf8 } from '@custody/core';
import { MemoryTree, SIG_TYPE_ED25519, createEd25519Signer, generateSignerKey, proveInclusion, verifyInclusion, type TileId } from '@custody/ledger';
import { TransparencyLog } from '../log.js';
import { SqliteSequencer } from '../sequencer/sqlite.js';
import { tempDir } from '../testing/tmp.js';
import { FsTileStore } from './tile-store.js';

describe('FsTileStore hash tile reads', () => {
  const t = tempDir();
  afterAll(() => t.cleanup());

  it('reads a hash tile synchronously, with typed errors for missing and oversized files', async () => {
    const store = new FsTileStore(join(t.dir, 'a'));
    await store.init();
    const data = new Uint8Array(17 * 32).fill(5);
    await store.writeTiles([{ tile: { level: 0, index: 1234, width: 17 }, data }]);
    expect(toHex(store.readHashTileSync({ level: 0, index: 1234, width: 17 }))).toBe(toHex(data));
    expect(toHex(await store.readTile({ level: 0, index: 1234, width: 17 }))).toBe(toHex(data));
    expect(() => store.readHashTileSync({ level: 0, index: 1234, width: 18 })).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_TILE' }) as Error);
    await expect(store.readTile({ level: 1, index: 0, width: 256 })).rejects.toMatchObject({ code: 'ERR_TLOG_TILE' });
    mkdirSync(join(store.dir, 'tile/2'), { recursive: true });
    writeFileSync(join(store.dir, 'tile/2/000'), new Uint8Array(256 * 32 + 1));
    expect(() => store.readHashTileSync({ level: 2, index: 0, width: 256 })).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TOO_LARGE' }) as Error);
  });

  it('in a directory someone handed over: an oversized file is refused without being read whole; a FIFO or device is refused without waiting or reading', async () => {
    const store = new FsTileStore(join(t.dir, 'handed'));
    await store.init();
    // 1.5 GiB, sparse: reading it whole took 1.6 GB of memory.
    writeFileSync(join(store.dir, 'checkpoint'), '');
    truncateSync(join(store.dir, 'checkpoint'), 1536 * 1024 * 1024);
    const before = process.memoryUsage().rss;
    await expect(store.readCheckpoint()).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(process.memoryUsage().rss - before).toBeLessThan(64 * 1024 * 1024);
    rmSync(join(store.dir, 'checkpoint'));
    expect(spawnSync('mkfifo', [join(store.dir, 'checkpoint')]).status).toBe(0);
    await expect(store.readCheckpoint()).rejects.toMatchObject({ code: 'ERR_INPUT_MALFORMED' });
    mkdirSync(join(store.dir, 'tile/entries'), { recursive: true });
    symlinkSync('/dev/zero', join(store.dir, 'tile/entries/000'));
    await expect(store.readTile({ level: 'entries', index: 0, width: 256 })).rejects.toMatchObject({ code: 'ERR_INPUT_MALFORMED' });
    mkdirSync(join(store.dir, 'tile/0'), { recursive: true });
    symlinkSync('/dev/zero', join(store.dir, 'tile/0/000'));
    expect(() => store.readHashTileSync({ level: 0, index: 0, width: 256 })).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
  });
});

describe('TransparencyLog proof cache', () => {
  const t = tempDir();
  afterAll(() => t.cleanup());

  it('proves at each new size from the tiles it just wrote, without reading them back', async () => {
    const key = await generateSignerKey('log.test/cache', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(9));
    const reads: string[] = [];
    const store = new FsTileStore(join(t.dir, 'log'));
    const read = store.readTile;
    store.readTile = (tile: TileId) => {
      reads.push(`${tile.level}/${tile.index}/${tile.width}`);
      return read(tile);
    };
    const sequencer = await SqliteSequencer.open(join(t.dir, 'log.sqlite'), 'log.test/cache');
    const log = await TransparencyLog.open({ origin: 'log.test/cache', signer: await createEd25519Signer(key.skey), store, sequencer, integrateIntervalMs: 60_000, proofCacheBytes: 1 << 20 });
    const mem = new MemoryTree();
    try {
      let n = 0;
      for (const batch of [3, 300, 1, 70]) {
        const entries = Array.from({ length: batch }, () => utf8(`entry ${n++}`));
        await Promise.all(entries.map((e) => log.addEntry(e)));
        for (const e of entries) mem.appendEntry(e);
        await log.integrateNow();
        expect(log.publishedSize).toBe(n);
        const hashReadsBefore = reads.filter((r) => !r.startsWith('entries')).length;
        const root = await mem.root(n);
        for (const i of [0, n - 1, Math.floor(n / 2)]) {
          const p = await log.proof(i);
          expect(p.proof.map(toHex)).toEqual((await proveInclusion(mem, i, n)).map(toHex));
          verifyInclusion(i, n, mem.leafHash(i), p.proof, root);
        }
        if (n > 3) expect((await log.consistency(3, n)).length).toBeGreaterThan(0);
        // Everything a proof at the new size needs was written (and primed) by this integration or an earlier one.
        expect(reads.filter((r) => !r.startsWith('entries')).length).toBe(hashReadsBefore);
      }
    } finally {
      await log.close();
    }
  });
});

describe('FsTileStore write failures', () => {
  const t = tempDir();
  afterAll(() => t.cleanup());

  it('a file-system failure is ERR_TLOG_UNAVAILABLE naming the step and the system code, not an internal error', async () => {
    // `tile` is a file where the store needs a directory: the write fails as a full or read-only disk would.
    const dir = join(t.dir, 'blocked');
    mkdirSync(dir);
    writeFileSync(join(dir, 'tile'), 'not a directory');
    const store = new FsTileStore(dir);
    const e = await store.writeTiles([{ tile: { level: 0, index: 0, width: 1 }, data: new Uint8Array(32) }]).catch((x: unknown) => x);
    expect(e).toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE', detail: { storage: 'tiles', errno: expect.stringMatching(/^E[A-Z]+$/) } });
    expect((e as Error).message).toMatch(/could not write its tiles \(E[A-Z]+\)/);
    // The checkpoint beside it is still written.
    await store.writeCheckpoint('origin\n0\nAAAA\n');
    expect(new TextDecoder().decode(await store.readCheckpoint())).toBe('origin\n0\nAAAA\n');
  });
});
