import { afterAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { utf8 } from '@custody/core';
import {
  MemoryTree,
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
  createCosignatureVerifier,
  createCosigner,
  createEd25519Signer,
  createEd25519Verifier,
  formatAddCheckpoint,
  generateSignerKey,
  openCheckpoint,
  originHash,
  parseVerifierKey,
  proveConsistency,
  signCheckpoint,
} from '@custody/ledger';
import { SqliteWitnessStore, createWitnessApp, witnessLogs } from './witness-service.js';
import { listen } from '../open.js';
import { tempDir } from '../testing/tmp.js';

describe('witness service (SQLite, real HTTP on loopback)', async () => {
  const t = tempDir();
  afterAll(() => t.cleanup());
  const logKey = await generateSignerKey('log.test/ws', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(21));
  const wKey = await generateSignerKey('witness.test/ws', SIG_TYPE_COSIGNATURE_V1, (n) => new Uint8Array(n).fill(22));
  const signer = await createEd25519Signer(logKey.skey);
  const tree = new MemoryTree();
  for (let i = 0; i < 50; i++) tree.appendEntry(utf8(`e${i}`));
  const body = async (old: number, size: number) =>
    formatAddCheckpoint({
      oldSize: old,
      proof: old === 0 ? [] : await proveConsistency(tree, old, size),
      checkpoint: await signCheckpoint({ origin: 'log.test/ws', size, rootHash: await tree.root(size), extensions: [] }, [signer]),
    });
  const start = async () => {
    const store = new SqliteWitnessStore(join(t.dir, 'witness.sqlite'));
    const app = createWitnessApp({ cosigners: [await createCosigner(wKey.skey, () => new Date('2025-06-01T00:00:00Z'))], logs: await witnessLogs([parseVerifierKey(logKey.vkey)]), store });
    const server = await listen(app, '127.0.0.1', 0);
    return { store, server };
  };

  it('a database file that is not a database (or is damaged) is ERR_WITNESS_UNAVAILABLE naming it, not an internal error', () => {
    const junk = join(t.dir, 'junk.sqlite');
    writeFileSync(junk, Buffer.alloc(8192, 0x5a));
    expect(() => new SqliteWitnessStore(junk)).toThrow(
      expect.objectContaining({ code: 'ERR_WITNESS_UNAVAILABLE', message: `cannot open the witness database ${junk} (it is not a SQLite database, or it is damaged)`, detail: { path: junk, sqlite: 'SQLITE_NOTADB' } }),
    );
    expect(() => new SqliteWitnessStore(join(t.dir, 'no-such-dir', 'w.sqlite'))).toThrow(expect.objectContaining({ code: 'ERR_WITNESS_UNAVAILABLE' }));
  });

  it('persists the latest cosigned checkpoint across restarts and serves it for monitors', async () => {
    let { store, server } = await start();
    const post = async (b: string) => fetch(`${server.url}/add-checkpoint`, { method: 'POST', body: b });
    expect((await post(await body(0, 10))).status).toBe(200);
    expect((await post(await body(10, 30))).status).toBe(200);
    await server.close();
    store.close();
    ({ store, server } = await start());
    const conflict = await fetch(`${server.url}/add-checkpoint`, { method: 'POST', body: await body(10, 40) });
    expect(conflict.status).toBe(409);
    expect(conflict.headers.get('content-type')).toBe('text/x.tlog.size');
    expect(await conflict.text()).toBe('30\n');
    expect((await fetch(`${server.url}/add-checkpoint`, { method: 'POST', body: await body(30, 40) })).status).toBe(200);
    const latest = await fetch(`${server.url}/${originHash('log.test/ws')}/checkpoint`);
    expect(latest.status).toBe(200);
    const cp = await openCheckpoint(await latest.text(), [await createEd25519Verifier(logKey.vkey)], [await createCosignatureVerifier(wKey.vkey)]);
    expect(cp.checkpoint.size).toBe(40);
    expect(cp.cosignatures).toHaveLength(1);
    expect((await fetch(`${server.url}/${originHash('other')}/checkpoint`)).status).toBe(404);
    const big = await fetch(`${server.url}/add-checkpoint`, { method: 'POST', body: 'x'.repeat(2 << 20) });
    expect(big.status).toBe(413);
    await server.close();
    store.close();
  });
});
