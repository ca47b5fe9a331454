// The three anti-replay stores against one contract: a second sighting of an `enc` within twice
// the Date window is refused with ERR_GATEWAY_REPLAY, whichever replica sees it; distinct keys
// pass; a key is forgotten exactly when its window ends; of N concurrent commits of one key
// exactly one wins. Then what is particular to each store (sweeps, bounds, outages).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Clock } from '@custody/core';
import { startPostgres, type PostgresFixture } from '../../../../broker/src/testing/postgres.js';
import { MemoryReplayStore } from './memory-replay-store.js';
import { openReplayStore } from './open-replay-store.js';
import { PostgresReplayStore } from './postgres-replay-store.js';
import { REPLAY_MARGIN_MS, type ReplayStore } from './replay-store.js';
import { SqliteReplayStore } from './sqlite-replay-store.js';

const WINDOW = 1000;

let pgFixture: PostgresFixture;
let dir: string;
let dbSeq = 0;
beforeAll(async () => {
  pgFixture = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'custody-replay-'));
}, 120_000);
afterAll(() => {
  pgFixture?.destroy();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A settable test clock. */
function testClock(start = 1_700_000_000_000): { clock: Clock; set(t: number): void; at: () => number } {
  let t = start;
  return { clock: () => new Date(t), set: (v) => (t = v), at: () => t };
}

function enc(n: number, seed = 0): Uint8Array {
  const b = new Uint8Array(32);
  new DataView(b.buffer).setUint32(0, n);
  new DataView(b.buffer).setUint32(4, seed);
  return b;
}

async function codeOf(p: () => unknown): Promise<string | undefined> {
  try {
    await p();
    return undefined;
  } catch (e) {
    return (e as { code?: string }).code ?? 'not a CustodyError';
  }
}

/**
 * One "deployment": `replica()` opens another handle on the same shared state, as another
 * gateway replica would (the same Map for memory, the same file, the same database).
 */
interface Deployment {
  replica(): Promise<ReplayStore>;
  close(): Promise<void>;
}

type Subject = { name: string; shared: boolean; deploy(clock: Clock): Promise<Deployment> };

function closer(stores: ReplayStore[]) {
  return async () => {
    for (const s of stores) await s.close?.();
  };
}

const subjects: Subject[] = [
  {
    name: 'memory',
    shared: false,
    deploy(clock) {
      const store = new MemoryReplayStore(clock, WINDOW);
      return Promise.resolve({ replica: () => Promise.resolve(store), close: () => Promise.resolve() });
    },
  },
  {
    name: 'sqlite',
    shared: true,
    deploy(clock) {
      const path = join(dir, `replay-${++dbSeq}.db`);
      const stores: ReplayStore[] = [];
      return Promise.resolve({
        replica: () => {
          const s = SqliteReplayStore.open({ path, clock, windowMs: WINDOW });
          stores.push(s);
          return Promise.resolve(s);
        },
        close: closer(stores),
      });
    },
  },
  {
    name: 'postgres',
    shared: true,
    async deploy(clock) {
      const connectionString = await pgFixture.createDatabase(`replay_${++dbSeq}`);
      const stores: ReplayStore[] = [];
      return {
        replica: async () => {
          const s = await PostgresReplayStore.open({ connectionString, clock, windowMs: WINDOW });
          stores.push(s);
          return s;
        },
        close: closer(stores),
      };
    },
  },
];

describe.each(subjects)('$name replay store', (subject) => {
  it('refuses a second sighting with ERR_GATEWAY_REPLAY and accepts distinct keys', async () => {
    const t = testClock();
    const d = await subject.deploy(t.clock);
    try {
      const s = await d.replica();
      await s.commit(enc(1));
      await s.commit(enc(2));
      const oneBitOff = enc(1);
      oneBitOff[31] = 1;
      await s.commit(oneBitOff);
      expect(await codeOf(() => s.commit(enc(1)))).toBe('ERR_GATEWAY_REPLAY');
      expect(await codeOf(() => s.commit(enc(2)))).toBe('ERR_GATEWAY_REPLAY');
      // A non-X25519 length is just another key.
      await s.commit(new Uint8Array(65).fill(4));
      expect(await codeOf(() => s.commit(new Uint8Array(65).fill(4)))).toBe('ERR_GATEWAY_REPLAY');
    } finally {
      await d.close();
    }
  });

  it('forgets a key exactly when twice the window has passed, not before', async () => {
    const t = testClock();
    const start = t.at();
    const d = await subject.deploy(t.clock);
    try {
      const s = await d.replica();
      await s.commit(enc(7));
      t.set(start + WINDOW);
      expect(await codeOf(() => s.commit(enc(7)))).toBe('ERR_GATEWAY_REPLAY');
      t.set(start + 2 * WINDOW + REPLAY_MARGIN_MS - 1);
      expect(await codeOf(() => s.commit(enc(7)))).toBe('ERR_GATEWAY_REPLAY');
      t.set(start + 2 * WINDOW + REPLAY_MARGIN_MS);
      await s.commit(enc(7));
      // Recorded again, for a new window.
      t.set(start + 4 * WINDOW - 1);
      expect(await codeOf(() => s.commit(enc(7)))).toBe('ERR_GATEWAY_REPLAY');
    } finally {
      await d.close();
    }
  });

  it('of 40 concurrent commits of one key (over two replicas), exactly one wins', async () => {
    const t = testClock();
    const d = await subject.deploy(t.clock);
    try {
      const a = await d.replica();
      const b = await d.replica();
      for (let key = 0; key < 5; key++) {
        const results = await Promise.allSettled(Array.from({ length: 40 }, (_, i) => Promise.resolve().then(() => (i % 2 ? a : b).commit(enc(key, 9)))));
        expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
        for (const r of results) if (r.status === 'rejected') expect((r.reason as { code: string }).code).toBe('ERR_GATEWAY_REPLAY');
      }
    } finally {
      await d.close();
    }
  });

});

describe.each(subjects.filter((s) => s.shared))('$name replay store shared by replicas', (subject) => {
  it('a key recorded through one replica is refused through another', async () => {
    const t = testClock();
    const d = await subject.deploy(t.clock);
    try {
      const a = await d.replica();
      const b = await d.replica();
      await a.commit(enc(11));
      expect(await codeOf(() => b.commit(enc(11)))).toBe('ERR_GATEWAY_REPLAY');
      await b.commit(enc(12));
      expect(await codeOf(() => a.commit(enc(12)))).toBe('ERR_GATEWAY_REPLAY');
    } finally {
      await d.close();
    }
  });
});

describe('memory replay store', () => {
  it('refuses new keys with ERR_GATEWAY_OVERLOADED at its bound, and a replay still as a replay', () => {
    const t = testClock();
    const s = new MemoryReplayStore(t.clock, WINDOW, 2);
    s.commit(enc(1));
    s.commit(enc(2));
    expect(() => s.commit(enc(3))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_OVERLOADED' }) as Error);
    expect(() => s.commit(enc(1))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY' }) as Error);
    t.set(t.at() + 2 * WINDOW + REPLAY_MARGIN_MS);
    s.commit(enc(3));
    expect(s.size).toBe(1);
  });
});

describe('sqlite replay store', () => {
  it('sweeps expired rows in bounded batches, catching up one batch per commit, and keeps live rows', () => {
    const t = testClock();
    const start = t.at();
    const s = SqliteReplayStore.open({ path: join(dir, 'sweep.db'), clock: t.clock, windowMs: WINDOW, sweepBatch: 100, sweepIntervalMs: 10 * WINDOW });
    try {
      for (let i = 0; i < 250; i++) s.commit(enc(i));
      t.set(start + WINDOW);
      for (let i = 0; i < 10; i++) s.commit(enc(i, 1));
      expect(s.count()).toBe(260);
      t.set(start + 2 * WINDOW + REPLAY_MARGIN_MS);
      expect(s.sweep()).toBe(100);
      expect(s.count()).toBe(160);
      // The full batch left a sweep due: the next commits each sweep one more batch.
      s.commit(enc(1, 2));
      expect(s.count()).toBe(61);
      s.commit(enc(2, 2));
      expect(s.count()).toBe(12);
      // The 10 keys recorded at start + WINDOW (and the 2 new ones) are still live.
      expect(() => s.commit(enc(3, 1))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY' }) as Error);
    } finally {
      s.close();
    }
  });

  it('four processes committing the same 4000 keys at once: each key is won by exactly one process', async () => {
    const path = join(dir, 'processes.db');
    SqliteReplayStore.open({ path, clock: testClock().clock, windowMs: WINDOW }).close();
    const moduleUrl = new URL('./sqlite-replay-store.ts', import.meta.url).href;
    // Each child opens its own connection, says "ready", waits for "go", then races the others.
    const script = `
      import { SqliteReplayStore } from ${JSON.stringify(moduleUrl)};
      const store = SqliteReplayStore.open({ path: ${JSON.stringify(path)}, clock: () => new Date(1700000000000), windowMs: 60000, busyTimeoutMs: 5000 });
      process.stdout.write('ready\\n');
      process.stdin.once('data', () => {
        const won = [], other = [];
        // Each process starts at its own offset, so they collide all along the way.
        const offset = Number(process.argv.at(-1)) * 1000;
        for (let j = 0; j < 4000; j++) {
          const i = (offset + j) % 4000;
          const enc = new Uint8Array(32); new DataView(enc.buffer).setUint32(0, i);
          try { store.commit(enc); won.push(i); } catch (e) { if (e.code !== 'ERR_GATEWAY_REPLAY') other.push(e.code); }
        }
        store.close();
        process.stdout.write(JSON.stringify({ won, other }) + '\\n');
        process.exit(0);
      });`;
    const children = Array.from({ length: 4 }, (_, k) => spawn(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script, String(k)], { stdio: ['pipe', 'pipe', 'inherit'] }));
    const outputs = children.map((c) => {
      let text = '';
      c.stdout.setEncoding('utf8');
      c.stdout.on('data', (d: string) => (text += d));
      const ready = new Promise<void>((resolve) => c.stdout.on('data', () => text.includes('ready') && resolve()));
      const done = new Promise<string>((resolve) => c.on('exit', () => resolve(text)));
      return { ready, done };
    });
    await Promise.all(outputs.map((o) => o.ready));
    for (const c of children) c.stdin.end('go\n');
    const results = (await Promise.all(outputs.map((o) => o.done))).map((t) => JSON.parse(t.split('\n')[1]!) as { won: number[]; other: string[] });
    expect(results.flatMap((r) => r.other)).toEqual([]);
    const won = results.flatMap((r) => r.won).sort((x, y) => x - y);
    expect(won).toEqual(Array.from({ length: 4000 }, (_, i) => i));
  }, 60_000);

  it('keeps its rows across a restart of the replica', () => {
    const t = testClock();
    const path = join(dir, 'restart.db');
    const a = SqliteReplayStore.open({ path, clock: t.clock, windowMs: WINDOW });
    a.commit(enc(5));
    a.close();
    const b = SqliteReplayStore.open({ path, clock: t.clock, windowMs: WINDOW, synchronous: 'full' });
    try {
      expect(() => b.commit(enc(5))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY' }) as Error);
    } finally {
      b.close();
    }
  });

  it('fails closed with ERR_GATEWAY_REPLAY_STORE while another writer holds the lock beyond the busy timeout', () => {
    const t = testClock();
    const path = join(dir, 'locked.db');
    const s = SqliteReplayStore.open({ path, clock: t.clock, windowMs: WINDOW, busyTimeoutMs: 20 });
    const other = new Database(path);
    try {
      other.exec('BEGIN IMMEDIATE');
      expect(() => s.commit(enc(1))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY_STORE' }) as Error);
      other.exec('ROLLBACK');
      // The refused key was not recorded: the request was refused, not consumed.
      s.commit(enc(1));
    } finally {
      other.close();
      s.close();
    }
  });

  it('fails closed with ERR_GATEWAY_REPLAY_STORE when full, and when closed', () => {
    const t = testClock();
    const s = SqliteReplayStore.open({ path: join(dir, 'full.db'), clock: t.clock, windowMs: WINDOW, maxSizeBytes: 64 * 1024 });
    let code: string | undefined;
    for (let i = 0; i < 100_000 && code === undefined; i++) {
      try {
        s.commit(enc(i));
      } catch (e) {
        code = (e as { code: string }).code;
      }
    }
    expect(code).toBe('ERR_GATEWAY_REPLAY_STORE');
    s.close();
    expect(() => s.commit(enc(1, 1))).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY_STORE' }) as Error);
  });

  it('refuses to open a file that is not a database with ERR_GATEWAY_REPLAY_STORE', () => {
    const path = join(dir, 'not-a-db');
    writeFileSync(path, 'this is not an SQLite database\n'.repeat(200));
    expect(() => SqliteReplayStore.open({ path, clock: testClock().clock, windowMs: WINDOW })).toThrow(expect.objectContaining({ code: 'ERR_GATEWAY_REPLAY_STORE' }) as Error);
  });
});

describe('postgres replay store', () => {
  it('sweeps only expired rows, in bounded statements', async () => {
    const t = testClock();
    const start = t.at();
    const connectionString = await pgFixture.createDatabase(`replay_sweep`);
    const s = await PostgresReplayStore.open({ connectionString, clock: t.clock, windowMs: WINDOW, sweepBatch: 40, sweepIntervalMs: 10 * WINDOW });
    try {
      for (let i = 0; i < 100; i++) await s.commit(enc(i));
      t.set(start + WINDOW);
      for (let i = 0; i < 10; i++) await s.commit(enc(i, 1));
      t.set(start + 2 * WINDOW + REPLAY_MARGIN_MS);
      expect(await s.sweep()).toBe(100);
      expect(await s.count()).toBe(10);
      expect(await codeOf(() => s.commit(enc(4, 1)))).toBe('ERR_GATEWAY_REPLAY');
    } finally {
      await s.close();
    }
  });

  it('fails closed with ERR_GATEWAY_REPLAY_STORE while the server is down, and recovers when it is back', async () => {
    const t = testClock();
    const connectionString = await pgFixture.createDatabase(`replay_outage`);
    const s = await PostgresReplayStore.open({ connectionString, clock: t.clock, windowMs: WINDOW, connectTimeoutMs: 1000 });
    try {
      await s.commit(enc(1));
      pgFixture.stopServer();
      try {
        expect(await codeOf(() => s.commit(enc(2)))).toBe('ERR_GATEWAY_REPLAY_STORE');
        expect(await codeOf(() => s.commit(enc(1)))).toBe('ERR_GATEWAY_REPLAY_STORE');
        await expect(PostgresReplayStore.open({ connectionString, clock: t.clock, windowMs: WINDOW, connectTimeoutMs: 1000 })).rejects.toMatchObject({ code: 'ERR_GATEWAY_REPLAY_STORE' });
      } finally {
        pgFixture.startServer();
      }
      await s.commit(enc(2));
      expect(await codeOf(() => s.commit(enc(1)))).toBe('ERR_GATEWAY_REPLAY');
    } finally {
      await s.close();
    }
    expect(await codeOf(() => s.commit(enc(3)))).toBe('ERR_GATEWAY_REPLAY_STORE');
  }, 60_000);
});

describe('openReplayStore', () => {
  it('opens the store a location names and refuses unknown locations with ERR_GATEWAY_CONFIG', async () => {
    const clock = testClock().clock;
    const m = await openReplayStore('memory', { clock });
    expect(m.kind).toBe('memory');
    const s = await openReplayStore(`sqlite:${join(dir, 'opened.db')}`, { clock });
    expect(s.kind).toBe('sqlite');
    await s.close?.();
    const p = await openReplayStore(await pgFixture.createDatabase('replay_opened'), { clock, windowMs: 5000 });
    expect(p.kind).toBe('postgres');
    await p.close?.();
    for (const bad of ['', 'sqlite:', 'redis://x', 'mysql://x', '/tmp/replay.db']) {
      expect(await codeOf(() => openReplayStore(bad, { clock }))).toBe('ERR_GATEWAY_CONFIG');
    }
    expect(await codeOf(() => openReplayStore('memory', { clock, windowMs: 0 }))).toBe('ERR_GATEWAY_CONFIG');
    expect(await codeOf(() => openReplayStore(`sqlite:${join(dir, 'w.db')}`, { clock, windowMs: -1 }))).toBe('ERR_GATEWAY_CONFIG');
  });
});
