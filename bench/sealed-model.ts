// Sealed models: how fast weights are sealed and unsealed (custody.sealed-model/v1), against the
// floor (one pass of AES-256-GCM and SHA-256 over the same bytes in memory, no files) and a
// baseline (copying the file, what any load from tmpfs costs). Files live in /dev/shm, where the
// gateway decrypts, so the numbers are CPU and memory bandwidth, not a disk.
import { createCipheriv, createHash, randomBytes } from 'node:crypto';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { sealModelFile, unsealModelFile } from '../services/gateway/src/backends/sealed-model.js';
import { machine, writeSection } from './_machine.js';

const MIB = 1 << 20;
const SIZE = Number(process.env.SEALED_MIB ?? 256) * MIB;
const REPS = Number(process.env.SEALED_REPS ?? 5);
const LOAD_AT_START = loadavg();

async function timed(fn: () => Promise<unknown> | void): Promise<{ wallMs: number; cpuMs: number }[]> {
  await fn();
  const out: { wallMs: number; cpuMs: number }[] = [];
  for (let i = 0; i < REPS; i++) {
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    await fn();
    const c = process.cpuUsage(c0);
    out.push({ wallMs: performance.now() - t0, cpuMs: (c.user + c.system) / 1000 });
  }
  return out;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;

const dir = await mkdtemp(join('/dev/shm', 'custody-bench-sealed-'));
try {
  const plainPath = join(dir, 'model.gguf');
  const data = randomBytes(SIZE);
  await writeFile(plainPath, data);
  const key = randomBytes(32);
  let n = 0;
  const rows: [string, { wallMs: number; cpuMs: number }[]][] = [];
  const sealedPath = join(dir, 'model.sealed');
  await sealModelFile(plainPath, sealedPath, { key, keyName: 'bench', keyVersion: 1, modelId: 'bench' });

  rows.push([
    'floor: AES-256-GCM + SHA-256 over the bytes in memory, 1 MiB pieces',
    await timed(() => {
      const k = randomBytes(32);
      const h = createHash('sha256');
      for (let i = 0; i < SIZE; i += MIB) {
        const piece = data.subarray(i, i + MIB);
        h.update(piece);
        const c = createCipheriv('aes-256-gcm', k, Buffer.alloc(12, i / MIB));
        c.update(piece);
        c.final();
        c.getAuthTag();
      }
      h.digest();
    }),
  ]);
  rows.push([
    'baseline: copy the plaintext file (tmpfs to tmpfs)',
    await timed(async () => {
      const to = join(dir, `copy-${n++}`);
      await copyFile(plainPath, to);
      await rm(to);
    }),
  ]);
  rows.push([
    'seal (digest pass, then encrypt and write; 1 MiB chunks)',
    await timed(async () => {
      const to = join(dir, `sealed-${n++}`);
      await sealModelFile(plainPath, to, { key, keyName: 'bench', keyVersion: 1, modelId: 'bench' });
      await rm(to);
    }),
  ]);
  rows.push([
    'unseal (read, decrypt and check every chunk, write, check the digest)',
    await timed(async () => {
      const to = join(dir, `plain-${n++}`);
      await unsealModelFile(sealedPath, key, to);
      await rm(to);
    }),
  ]);

  let md = `## Sealed models (bench/sealed-model.ts)\n\nMachine: ${machine()}; load average ${LOAD_AT_START.map((x) => x.toFixed(2)).join(' ')} at start, ${loadavg().map((x) => x.toFixed(2)).join(' ')} at end. The 2 cores are shared with other jobs.\n\n`;
  md += `A ${SIZE / MIB} MiB weights file in /dev/shm (tmpfs, where the gateway decrypts), ${REPS} timed runs after one warm-up; medians. MiB/s is of plaintext; CPU is this process's user + system time.\n\n`;
  md += '| operation | wall ms | MiB/s | CPU ms |\n|---|---:|---:|---:|\n';
  const floor = median(rows[0]![1].map((r) => r.wallMs));
  for (const [name, rs] of rows) {
    const wall = median(rs.map((r) => r.wallMs));
    md += `| ${name} | ${wall.toFixed(0)} | ${((SIZE / MIB) / (wall / 1000)).toFixed(0)} | ${median(rs.map((r) => r.cpuMs)).toFixed(0)} |\n`;
  }
  const unseal = median(rows[3]![1].map((r) => r.wallMs));
  const copy = median(rows[1]![1].map((r) => r.wallMs));
  md += `\nUnsealing costs ${(unseal / floor).toFixed(2)}x the floor and ${(unseal / copy).toFixed(1)}x a plain copy of the file; it is paid once, when the gateway first attests (the engine takes the digest checked during decryption and does not hash the file again). At this rate an 8 GB (Q8 8B) model unseals in about ${((8e9 / MIB) / ((SIZE / MIB) / (unseal / 1000))).toFixed(0)} s on one of these cores.\n`;
  writeSection('sealed-model', md);
} finally {
  await rm(dir, { recursive: true, force: true });
}
