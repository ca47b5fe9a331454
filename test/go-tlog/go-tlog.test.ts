// Cross-checks Custody's log with an independent implementation: Go's golang.org/x/mod/sumdb/note
// and sumdb/tlog (Debian golang-go + golang-golang-x-mod-dev). Custody writes a log; the Go
// program verifies its checkpoint signature and witness cosignature, every tile and entry
// bundle, and Custody's inclusion and consistency proofs (which must equal x/mod's own).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { toBase64, utf8 } from '@custody/core';
import { SIG_TYPE_COSIGNATURE_V1, SIG_TYPE_ED25519, createCosigner, generateSignerKey, parseTlogPolicy, parseVerifierKey, type FetchLike } from '@custody/ledger';
import { SqliteWitnessStore, createWitnessApp, openLog, witnessLogs } from '@custody/ledger-service';
import { tempDir } from '../../services/ledger/src/testing/tmp.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const GOPATH = '/usr/share/gocode';
const goMissing = spawnSync('go', ['version']).status !== 0 ? 'the go toolchain is not installed (Debian golang-go)' : !existsSync(join(GOPATH, 'src/golang.org/x/mod/sumdb/tlog')) ? 'golang.org/x/mod is not in /usr/share/gocode (Debian golang-golang-x-mod-dev)' : undefined;
if (goMissing) console.warn(`SKIPPED Go cross-check: ${goMissing}`);

describe.skipIf(goMissing !== undefined)('Go x/mod sumdb cross-check', () => {
  const t = tempDir('custody-go-');
  const bin = join(t.dir, 'go-tlog');
  const dir = join(t.dir, 'log');
  let vkey = '';
  let wvkey = '';
  const proofs: { oldCheckpoint: string; inclusion: { index: number; proof: string[] }[]; consistency: string[] } = { oldCheckpoint: '', inclusion: [], consistency: [] };
  let store: SqliteWitnessStore | undefined;
  afterAll(() => {
    store?.close();
    t.cleanup();
  });

  let runs = 0;
  const goRun = (logDir: string, p: unknown, w = wvkey, v = vkey) => {
    const pf = join(t.dir, `proofs-${++runs}.json`);
    writeFileSync(pf, JSON.stringify(p));
    return spawnSync(bin, ['-dir', logDir, '-vkey', v, '-wvkey', w, '-proofs', pf], { encoding: 'utf8' });
  };

  beforeAll(async () => {
    const build = spawnSync('go', ['build', '-o', bin, '.'], {
      cwd: here,
      encoding: 'utf8',
      env: { ...process.env, GO111MODULE: 'off', GOPATH, GOFLAGS: '', GOCACHE: process.env.GOCACHE ?? join(t.dir, 'gocache') },
    });
    expect(build.status, build.stderr).toBe(0);

    // A Custody log past 65,536 entries (level-2 tiles), integrated in uneven batches, with a witness.
    const key = await generateSignerKey('log.test/go', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(41));
    const wk = await generateSignerKey('witness.test/go', SIG_TYPE_COSIGNATURE_V1, (n) => new Uint8Array(n).fill(42));
    vkey = key.vkey;
    wvkey = wk.vkey;
    store = new SqliteWitnessStore(join(t.dir, 'w.sqlite'));
    const wapp = createWitnessApp({ cosigners: [await createCosigner(wk.skey, () => new Date('2025-06-01T00:00:00Z'))], logs: await witnessLogs([parseVerifierKey(vkey)]), store });
    const fetchW: FetchLike = (url, init) => Promise.resolve(wapp.request(new URL(url).pathname, init as RequestInit));
    const policy = parseTlogPolicy(`witness W ${wvkey} http://w.test\nquorum W\n`);
    // The witness signs at a fixed time: the log judges its cosignatures by the same clock.
    const { log } = await openLog({ dir, skey: key.skey, witnessPolicy: policy, fetch: fetchW, witnessNow: () => Date.parse('2025-06-01T00:00:00Z') / 1000, integrateIntervalMs: 60_000 });
    let n = 0;
    for (const batch of [1, 1232, 40000, 25000, 1]) {
      await Promise.all(Array.from({ length: batch }, () => log.addEntry(utf8(`{"seq":${n++},"event":"go-cross-check"}`))));
      await log.integrateNow();
      if (n === 1233) proofs.oldCheckpoint = log.latestCheckpoint()!;
    }
    const size = log.publishedSize;
    expect(size).toBe(66234);
    for (const i of [0, 1, 255, 256, 1232, 65535, 65536, size - 1]) proofs.inclusion.push({ index: i, proof: (await log.proof(i)).proof.map(toBase64) });
    proofs.consistency = (await log.consistency(1233, size)).map(toBase64);
    await log.close();
  }, 120_000);

  it('verifies the checkpoint, cosignature, tiles, entries and proofs with x/mod', () => {
    const r = goRun(dir, proofs);
    expect(r.status, r.stderr + r.stdout).toBe(0);
    expect(r.stdout).toContain('ok checkpoint log.test/go size 66234 signed by the log and cosigned by witness.test/go');
    expect(r.stdout).toContain('ok tiles hash to the checkpoint root');
    expect(r.stdout).toContain('ok 66234 entries match the tiles');
    expect(r.stdout).toContain('ok 8 inclusion proofs verify and equal');
    expect(r.stdout).toContain('ok consistency 1233 -> 66234 verifies and equals');
  });

  it('fails on tampered twins: a tile byte, an entry byte, a signature, the witness key, a proof hash', () => {
    const twin = (name: string, mutate: (d: string) => void) => {
      const d = join(t.dir, name);
      cpSync(dir, d, { recursive: true });
      mutate(d);
      return d;
    };
    const flipFile = (path: string, at: number) => {
      const b = readFileSync(path);
      b[at]! ^= 1;
      writeFileSync(path, b);
    };
    const tile = twin('tile', (d) => flipFile(join(d, 'tile/0/100'), 77));
    expect(goRun(tile, proofs).stderr).toMatch(/FAIL/);
    const upper = twin('upper', (d) => flipFile(join(d, 'tile/1/000'), 3));
    expect(goRun(upper, proofs).status).toBe(1);
    const entry = twin('entry', (d) => flipFile(join(d, 'tile/entries/007'), 20));
    expect(goRun(entry, proofs).stderr).toContain('does not hash to its tile leaf');
    const sig = twin('sig', (d) => {
      const cp = readFileSync(join(d, 'checkpoint'), 'utf8');
      writeFileSync(join(d, 'checkpoint'), cp.replace('log.test/go\n66234\n', 'log.test/go\n66233\n'));
    });
    expect(goRun(sig, proofs).stderr).toMatch(/FAIL: checkpoint/);
    const otherWitness = 'witness.test/go+00000000+BA' + 'A'.repeat(42) + '=';
    expect(goRun(dir, proofs, otherWitness).status).toBe(1);
    const badProof = structuredClone(proofs);
    badProof.inclusion[3]!.proof[2] = toBase64(new Uint8Array(32));
    expect(goRun(dir, badProof).stderr).toContain('inclusion of 256');
    const badCons = structuredClone(proofs);
    badCons.consistency.reverse();
    expect(goRun(dir, badCons).stderr).toContain('consistency');
  });
});
