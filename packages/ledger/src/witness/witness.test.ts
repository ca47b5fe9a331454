import { describe, expect, it } from 'vitest';
import { toBase64, utf8 } from '@custody/core';
import { MemoryWitnessStore, Witness } from './witness.js';
import { formatAddCheckpoint, parseAddCheckpoint } from './protocol.js';
import { requestCosignature } from './client.js';
import { openCheckpoint, signCheckpoint } from '../checkpoint/checkpoint.js';
import { MemoryTree } from '../merkle/tree.js';
import { proveConsistency } from '../merkle/proof.js';
import { rfc6962 } from '../merkle/hasher.js';
import { signNote } from '../note/note.js';
import { testLogKey, testWitnessKey } from '../testing/keys.js';

describe('tlog-witness add-checkpoint', async () => {
  const log = await testLogKey('log.example/w', 21);
  const impostor = await testLogKey('log.example/w', 22);
  const wk = await testWitnessKey('witness.example/a', 23);
  const tree = new MemoryTree();
  const fork = new MemoryTree();
  for (let i = 0; i < 20; i++) {
    tree.appendEntry(utf8(`e${i}`));
    fork.appendEntry(utf8(i < 8 ? `e${i}` : `forged${i}`));
  }
  const cp = async (t: MemoryTree, size: number, key = log) => signCheckpoint({ origin: 'log.example/w', size, rootHash: await t.root(size), extensions: [] }, [key.signer]);
  const req = async (old: number, size: number, t = tree, key = log) => formatAddCheckpoint({ oldSize: old, proof: old === 0 ? [] : await proveConsistency(t, old, size), checkpoint: await cp(t, size, key) });
  const fresh = () => new Witness({ cosigners: [wk.signer], logs: new Map([['log.example/w', [log.verifier]]]), store: new MemoryWitnessStore() });

  it('cosigns a first checkpoint and then consistent growth', async () => {
    const w = fresh();
    const r1 = await w.addCheckpoint(await req(0, 5));
    expect(r1.status).toBe(200);
    expect(r1.body).toMatch(/^\u2014 witness\.example\/a [A-Za-z0-9+/=]+\n$/);
    const r2 = await w.addCheckpoint(await req(5, 12));
    expect(r2.status).toBe(200);
    // The cosignature verifies over the checkpoint, and the monitoring view carries both signatures.
    const latest = (await w.latest('log.example/w'))!;
    const opened = await openCheckpoint(latest, [log.verifier], [wk.verifier]);
    expect(opened.checkpoint.size).toBe(12);
    expect(opened.cosignatures).toHaveLength(1);
    // Re-submitting the same size and root is fine.
    expect((await w.addCheckpoint(await req(12, 12))).status).toBe(200);
  });

  it('answers with the spec status codes', async () => {
    const w = fresh();
    expect((await w.addCheckpoint(await req(0, 8))).status).toBe(200);
    // 409 with the witness's size when old size is stale, content type text/x.tlog.size
    const stale = await w.addCheckpoint(await req(0, 10));
    expect(stale).toMatchObject({ status: 409, contentType: 'text/x.tlog.size', body: '8\n' });
    // The fork shares the first 8 entries, so at 8 both views are the same tree.
    expect((await w.addCheckpoint(formatAddCheckpoint({ oldSize: 8, proof: [], checkpoint: await cp(fork, 8) }))).status).toBe(200);
    expect((await w.addCheckpoint(await req(8, 10))).status).toBe(200);
    // 422: the fork grown past 10 is not consistent with what the witness cosigned
    expect((await w.addCheckpoint(await req(10, 12, fork))).status).toBe(422);
    // 409 (tlog-witness): the same size with another root, answered with the stored size
    expect(await w.addCheckpoint(formatAddCheckpoint({ oldSize: 10, proof: [], checkpoint: await cp(fork, 10) }))).toMatchObject({
      status: 409,
      contentType: 'text/x.tlog.size',
      body: '10\n',
      code: 'ERR_WITNESS_CONFLICT',
    });
    const forkBad = formatAddCheckpoint({ oldSize: 10, proof: await proveConsistency(fork, 10, 11), checkpoint: await cp(tree, 11) });
    expect((await w.addCheckpoint(forkBad)).status).toBe(422);
    // 403: signed by an unknown key for a known origin; 404 unknown origin; 400 malformed / old > size
    expect((await w.addCheckpoint(await req(10, 12, tree, impostor))).status).toBe(403);
    const other = await testLogKey('log.example/other', 24);
    const otherCp = formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: await signCheckpoint({ origin: 'log.example/other', size: 0, rootHash: rfc6962.emptyRoot(), extensions: [] }, [other.signer]) });
    expect((await w.addCheckpoint(otherCp)).status).toBe(404);
    expect((await w.addCheckpoint('old 1\n\n')).status).toBe(400);
    expect((await w.addCheckpoint(formatAddCheckpoint({ oldSize: 11, proof: [], checkpoint: await cp(tree, 10) }))).status).toBe(400);
    // 422: old size 0 with a non-empty proof. 400: size 0 with a non-empty root (malformed checkpoint)
    const w2 = fresh();
    const withProof = formatAddCheckpoint({ oldSize: 0, proof: [rfc6962.emptyRoot()], checkpoint: await cp(tree, 3) });
    expect((await w2.addCheckpoint(withProof)).status).toBe(422);
    const zeroText = `log.example/w\n0\n${toBase64(await tree.root(1))}\n`;
    const zeroBad = formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: await signNote(zeroText, [log.signer]) });
    expect(await w2.addCheckpoint(zeroBad)).toMatchObject({ status: 400, code: 'ERR_TLOG_CHECKPOINT' });
    // A rollback attempt: old size matches, but the checkpoint is smaller (400, never cosigned).
    expect((await w.addCheckpoint(formatAddCheckpoint({ oldSize: 10, proof: [], checkpoint: await cp(tree, 5) }))).status).toBe(400);
  });

  it('never rolls back under concurrent requests (atomic compare-and-set)', async () => {
    const w = fresh();
    await w.addCheckpoint(await req(0, 4));
    const results = await Promise.all([await req(4, 10), await req(4, 16), await req(4, 6)].map((b) => w.addCheckpoint(b)));
    const oks = results.filter((r) => r.status === 200);
    expect(oks.length).toBeGreaterThanOrEqual(1);
    const latest = (await openCheckpoint((await w.latest('log.example/w'))!, [log.verifier])).checkpoint.size;
    expect([6, 10, 16]).toContain(latest);
    expect(results.filter((r) => r.status === 409).length).toBe(3 - oks.length);
  });

  it('parses requests strictly and the client maps statuses to codes', async () => {
    expect(parseAddCheckpoint(await req(5, 12)).oldSize).toBe(5);
    for (const b of ['old 01\n\nx', 'new 1\n\nx', 'old 1\nAAAA\n\nx', 'old 1', 'old 1\n' + 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n'.repeat(64) + '\nx']) {
      expect(() => parseAddCheckpoint(b), b.slice(0, 20)).toThrowError(expect.objectContaining({ code: 'ERR_WITNESS_BAD_REQUEST' }) as Error);
    }
    const w = fresh();
    const fetchFn = async (_url: string, init?: { body?: string | Uint8Array }) => {
      const r = await w.addCheckpoint(init!.body as string);
      return new Response(r.body, { status: r.status, headers: { 'content-type': r.contentType } });
    };
    const first = await requestCosignature(fetchFn, 'http://w.example/', parseAddCheckpoint(await req(0, 7)));
    expect(first.startsWith('\u2014 witness.example/a ')).toBe(true);
    await expect(requestCosignature(fetchFn, 'http://w.example', parseAddCheckpoint(await req(0, 9)))).rejects.toMatchObject({ code: 'ERR_WITNESS_CONFLICT', detail: { size: 7 } });
    await requestCosignature(fetchFn, 'http://w.example', parseAddCheckpoint(await req(7, 9)));
    await expect(requestCosignature(fetchFn, 'http://w.example', parseAddCheckpoint(await req(9, 12, fork)))).rejects.toMatchObject({ code: 'ERR_TLOG_CONSISTENCY' });
    const down = () => Promise.reject(new Error('ECONNREFUSED'));
    await expect(requestCosignature(down, 'http://w.example', parseAddCheckpoint(await req(0, 7)))).rejects.toMatchObject({ code: 'ERR_WITNESS_UNAVAILABLE' });
  });
});
