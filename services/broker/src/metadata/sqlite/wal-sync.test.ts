// Group commit: concurrent writes share fdatasyncs, every write resolves only after a sync that
// started after it committed, and a store reopened after its writes were acknowledged has them.
import { mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { SqliteMetadataStore } from './sqlite-metadata-store.js';
import { WalSync } from './wal-sync.js';

describe('WalSync group commit', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'custody-wal-'))));
  afterEach(() => {
    vi.restoreAllMocks();
    rmSync(dir, { recursive: true, force: true });
  });

  it('coalesces concurrent syncs: at most one in flight and one queued', async () => {
    const path = join(dir, 'x-wal');
    await (await open(path, 'w')).close();
    const probe = await open(path, 'r');
    const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
    await probe.close();
    let calls = 0;
    let inflight = 0;
    let maxInflight = 0;
    const real = proto.datasync;
    vi.spyOn(proto, 'datasync').mockImplementation(async function (this: unknown) {
      calls++;
      inflight++;
      maxInflight = Math.max(maxInflight, inflight);
      await new Promise((r) => setTimeout(r, 5));
      inflight--;
      return real.call(this);
    });
    const wal = new WalSync(path);
    await Promise.all(Array.from({ length: 100 }, () => wal.sync()));
    expect(calls).toBeLessThanOrEqual(2);
    expect(maxInflight).toBe(1);
    // A sync requested while one runs waits for a new one.
    const first = wal.sync();
    const second = wal.sync();
    await Promise.all([first, second]);
    expect(calls).toBeLessThanOrEqual(4);
    await wal.close();
    await expect(wal.sync()).rejects.toMatchObject({ code: 'ERR_STORE_UNAVAILABLE' });
  });

  it('acknowledged writes are in the database when it is opened again', async () => {
    const path = join(dir, 'm.db');
    const a = await SqliteMetadataStore.open(path);
    const results = await Promise.all(Array.from({ length: 50 }, (_, i) => a.appendAudit('acme', i, `{"i":${i}}`)));
    expect(results.map((r) => r.index).sort((x, y) => x - y)).toEqual([...Array(50).keys()]);
    await a.close();
    const b = await SqliteMetadataStore.open(path);
    expect(await b.readAudit('acme', -1, 100)).toHaveLength(50);
    await b.close();
  });
});
