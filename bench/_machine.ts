// Shared by bench scripts: a description of the machine and small statistics helpers.
import { cpus, totalmem } from 'node:os';
import { closeSync, fdatasyncSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export function machine(): string {
  const c = cpus();
  return `${c[0]?.model ?? 'unknown CPU'}, ${c.length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}/${process.arch}, ${new Date().toISOString().slice(0, 10)}`;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Runs `fn` repeatedly for about `ms` milliseconds (after a warm-up) and returns ops/s. */
export async function opsPerSecond(fn: () => unknown, ms = 2000, warmup = 200): Promise<number> {
  const warmEnd = performance.now() + warmup;
  while (performance.now() < warmEnd) await fn();
  let n = 0;
  const start = performance.now();
  const end = start + ms;
  while (performance.now() < end) {
    await fn();
    n++;
  }
  return (n * 1000) / (performance.now() - start);
}

export function writeSection(name: string, markdown: string): void {
  mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
  writeFileSync(new URL(`./results/${name}.md`, import.meta.url), markdown.trim() + '\n');
  console.log(markdown);
}

export interface Rate {
  /** Operations per wall-clock second. */
  wall: number;
  /** Operations per second of process CPU time (all threads): the rate one dedicated core sustains. */
  perCpu: number;
}

/** Runs `fn` in batches for about `ms` milliseconds and returns its wall-clock and per-CPU-second rates. */
export async function rate(fn: () => Promise<void>, ms: number, batch = 10): Promise<Rate> {
  let n = 0;
  const start = performance.now();
  const cpu0 = process.cpuUsage();
  let t = start;
  while (t - start < ms) {
    for (let i = 0; i < batch; i++) await fn();
    n += batch;
    t = performance.now();
  }
  const cpu = process.cpuUsage(cpu0);
  return { wall: (n * 1000) / (t - start), perCpu: (n * 1e6) / (cpu.user + cpu.system) };
}

/** The durable-write floor: 4 KiB writes each followed by fdatasync, in a file under `dir`, per second. */
export function fdatasyncPerSecond(dir: string, ms = 2000): number {
  const fd = openSync(join(dir, 'fsync.bin'), 'w');
  const buf = Buffer.alloc(4096, 7);
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < ms) {
    writeSync(fd, buf, 0, buf.length, (n % 64) * 4096);
    fdatasyncSync(fd);
    n++;
  }
  closeSync(fd);
  return (n * 1000) / (performance.now() - start);
}
