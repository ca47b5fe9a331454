import { afterAll, describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { equalBytes, fromUtf8, toBase64 } from '@custody/core';
import { SIG_TYPE_ED25519, createEd25519Verifier, generateSignerKey, openCheckpoint, readEntry, verifyConsistency, consistencyProofFromTiles } from '@custody/ledger';
import { openLog } from './open.js';
import { FsTileStore } from './storage/tile-store.js';
import { tempDir } from './testing/tmp.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = resolve(here, '../../..');
const writer = join(here, 'testing/crash-writer.ts');

/** Seeded xorshift so a failing run can be replayed with CUSTODY_CRASH_SEED. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 2 ** 32;
  };
}

const MAX_KILLS = Number(process.env.CUSTODY_CRASH_KILLS ?? 8);
const MAX_MS = Number(process.env.CUSTODY_CRASH_MS ?? 18_000);
const SEED = Number(process.env.CUSTODY_CRASH_SEED ?? Date.now() % 100000);

describe('crash safety: SIGKILL the writer at random points', () => {
  const t = tempDir('custody-crash-');
  afterAll(() => t.cleanup());

  it(`loses no acknowledged entry and never publishes inconsistent checkpoints (seed ${SEED})`, async () => {
    const key = await generateSignerKey('log.test/crash', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(11));
    const dir = join(t.dir, 'public');
    const random = rng(SEED);
    const acked = new Map<number, string>();
    const published = new Map<string, { size: number; note: string }>();
    const seenFile = new Set<string>();
    const start = Date.now();
    let kills = 0;
    let cyclesWithAcks = 0;

    // At least three cycles (the checks below need two that appended), however slow the machine.
    while (kills < 3 || (kills < MAX_KILLS && Date.now() - start < MAX_MS)) {
      const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', writer, dir], {
        cwd: repoRoot,
        env: { ...process.env, CUSTODY_CRASH_SKEY: key.skey },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let buf = '';
      let stderr = '';
      let onAck: () => void = () => undefined;
      const firstAck = new Promise<void>((r) => (onAck = r));
      let acksThisCycle = 0;
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      child.stdout.on('data', (d: Buffer) => {
        buf += d.toString();
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          if (line.startsWith('A ')) {
            const sp = line.indexOf(' ', 2);
            const index = Number(line.slice(2, sp));
            const entry = line.slice(sp + 1);
            expect(acked.has(index), `index ${index} acknowledged twice`).toBe(false);
            acked.set(index, entry);
            acksThisCycle++;
            onAck();
          } else if (line.startsWith('P ')) {
            const [, size, b64] = line.split(' ');
            const note = Buffer.from(b64!, 'base64').toString();
            published.set(note, { size: Number(size), note });
          }
        }
      });
      const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
      // Watch the published file the way an HTTP client would, while the writer runs.
      const poll = setInterval(() => {
        try {
          seenFile.add(readFileSync(join(dir, 'checkpoint'), 'utf8'));
        } catch {
          /* not yet published */
        }
      }, 5);
      // Every fourth cycle dies during startup (recovery, first publication), at a random time;
      // the others at a random point after the first acknowledged append, while appending,
      // integrating and publishing. (Chosen by count, not by chance: a run whose cycles all died
      // at startup would prove nothing about acknowledged entries.)
      if (kills % 4 === 3) await new Promise((r) => setTimeout(r, 200 + random() * 1000));
      else {
        await Promise.race([firstAck, exited]);
        await new Promise((r) => setTimeout(r, 20 + random() * 600));
      }
      child.kill('SIGKILL');
      const code = await exited;
      clearInterval(poll);
      expect(code, `writer exited on its own: ${stderr}`).toBe(null);
      kills++;
      if (acksThisCycle > 0) cyclesWithAcks++;
    }
    expect(kills).toBeGreaterThanOrEqual(3);
    expect(cyclesWithAcks).toBeGreaterThanOrEqual(2);

    // Recover: a clean writer integrates whatever was sequenced and publishes.
    const { log } = await openLog({ dir, skey: key.skey, integrateIntervalMs: 60_000 });
    await log.integrateNow();
    const finalNote = log.latestCheckpoint()!;
    await log.close();
    const verifier = await createEd25519Verifier(key.vkey);
    const final = (await openCheckpoint(finalNote, [verifier])).checkpoint;
    const store = new FsTileStore(dir);

    // 1. No acknowledged entry is missing, and each is at the index it was acknowledged with.
    // A loop, not Math.max(...keys): a fast writer acknowledges more entries than a call takes arguments.
    let maxAck = -1;
    for (const index of acked.keys()) maxAck = Math.max(maxAck, index);
    expect(final.size).toBeGreaterThan(maxAck);
    for (const [index, entry] of acked) expect(fromUtf8(await readEntry(store, index, final.size)), `entry ${index}`).toBe(entry);

    // 2. Every checkpoint ever published is consistent with the latest, and 3. no two of the
    // same size have different roots.
    const bySize = new Map<number, Uint8Array>();
    const all = [...published.values()].map((p) => p.note).concat([...seenFile], [finalNote]);
    for (const note of all) {
      const cp = (await openCheckpoint(note, [verifier])).checkpoint;
      const prev = bySize.get(cp.size);
      if (prev) expect(toBase64(prev), `two roots for size ${cp.size}`).toBe(toBase64(cp.rootHash));
      bySize.set(cp.size, cp.rootHash);
      expect(cp.size).toBeLessThanOrEqual(final.size);
      if (cp.size < final.size) verifyConsistency(cp.size, final.size, cp.rootHash, final.rootHash, await consistencyProofFromTiles(store, cp.size, final.size));
      else expect(equalBytes(cp.rootHash, final.rootHash)).toBe(true);
    }
    console.log(`crash test: seed ${SEED}, ${kills} kills, ${acked.size} acknowledged entries, ${bySize.size} distinct checkpoints, final size ${final.size}`);
  });
});
