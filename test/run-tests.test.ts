// scripts/run-tests.mjs (what `npm test` runs) on the tiny vitest project in test/fixtures/hang:
// a file that never finishes loading must end in a rerun or a clear failure, never a hang, with
// the summary line last and no process left behind.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const runner = join(root, 'scripts', 'run-tests.mjs');
const fixture = join(root, 'test', 'fixtures', 'hang');
const MARK = 'CUSTODY_RUN_TESTS_FIXTURE_MARK';

interface Outcome {
  code: number | null;
  lines: string[];
  output: string;
  marker: string;
}

/** Runs the runner in the fixture project; every process it starts inherits a unique marker. */
function runRunner(args: string[], stallSeconds: number): Promise<Outcome> {
  const marker = randomUUID();
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    // Not the outer vitest's worker variables, nor the outer runner's progress file.
    if (v === undefined || k.startsWith('VITEST') || k.startsWith('CUSTODY_TEST_') || k === 'FORCE_COLOR') continue;
    env[k] = v;
  }
  Object.assign(env, { CUSTODY_TEST_STALL_SECONDS: String(stallSeconds), NO_COLOR: '1', [MARK]: marker });
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [runner, ...args], { cwd: fixture, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const guard = setTimeout(() => {
      // Clean up after a broken runner so nothing outlives this test.
      for (const pid of [...(child.pid ? [child.pid] : []), ...processesWith(marker)]) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
      reject(new Error(`run-tests.mjs did not end (or left its output open):\n${output}`));
    }, 60_000);
    child.on('error', reject);
    // 'close': the runner exited and nothing it started still holds its stdout or stderr.
    child.on('close', (code) => {
      clearTimeout(guard);
      const lines = output.split('\n').filter((l) => l.trim() !== '');
      resolve({ code, lines, output, marker });
    });
  });
}

/** Live (non-zombie) processes carrying the marker in their environment. */
function processesWith(marker: string): number[] {
  const found: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      if (/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3))) continue;
      if (readFileSync(`/proc/${name}/environ`, 'utf8').split('\0').includes(`${MARK}=${marker}`)) found.push(Number(name));
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** How many times vitest reported `file` as finished (its "✓ file" or "❯ file" line). */
function reportedTimes(output: string, file: string): number {
  const name = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return output.split('\n').filter((l) => new RegExp(`^\\s*[✓❯×] ${name} `).test(l)).length;
}

describe.skipIf(process.platform !== 'linux')('run-tests.mjs watchdog', () => {
  it('reruns a file that stalled once, counts it once by its rerun result, and passes', async () => {
    const r = await runRunner(['passes', 'hangs-once'], 15);
    expect(r.lines.at(-1)).toBe('3 passed, 0 failed, 1 skipped');
    expect(r.code).toBe(0);
    const stall = r.lines.find((l) => l.startsWith('watchdog: no test file finished in 15 seconds; stopping vitest; rerunning the '));
    expect(stall).toBeDefined();
    expect(r.output).toContain('watchdog: rerunning hangs-once.fixture.ts');
    const rerunLine = r.lines.find((l) => l.startsWith('rerun after the watchdog (counted once, by the rerun): '));
    expect(rerunLine).toContain('hangs-once.fixture.ts (passed)');
    // passes.fixture.ts runs again only if it had not finished before the stall (a slow start).
    const passesRerun = rerunLine!.includes('passes.fixture.ts');
    expect(stall).toMatch(passesRerun ? /rerunning the 2 unfinished files once$/ : /rerunning the 1 unfinished file once$/);
    expect(reportedTimes(r.output, 'passes.fixture.ts')).toBe(passesRerun ? 2 : 1);
    expect(reportedTimes(r.output, 'hangs-once.fixture.ts')).toBe(1);
    expect(processesWith(r.marker)).toEqual([]);
  }, 90_000);

  it('fails clearly, naming the file, when the rerun stalls too', async () => {
    const r = await runRunner(['passes', 'hangs.fixture'], 15);
    expect(r.lines.at(-1)).toBe('2 passed, 1 failed, 1 skipped');
    expect(r.code).toBe(1);
    expect(r.output).toMatch(/^watchdog: no test file finished in 15 seconds; stopping vitest; rerunning the [12] unfinished files? once$/m);
    expect(r.output).toContain('watchdog: no test file finished in 15 seconds on the rerun; stopping vitest; these files never finished: hangs.fixture.ts\n');
    expect(r.output).toContain('these test files never reported a result (counted as failed): hangs.fixture.ts\n');
    expect(r.output).toMatch(/^rerun after the watchdog \(counted once, by the rerun\): .*hangs\.fixture\.ts \(never finished\)/m);
    expect(reportedTimes(r.output, 'hangs.fixture.ts')).toBe(0);
    expect(processesWith(r.marker)).toEqual([]);
  }, 90_000);

  it('changes nothing when no file stalls: a file that fails to load counts as one failure', async () => {
    const r = await runRunner(['passes', 'broken'], 120);
    expect(r.lines.at(-1)).toBe('2 passed, 1 failed, 1 skipped');
    expect(r.code).toBe(1);
    expect(r.output).not.toContain('watchdog');
    expect(r.output).not.toContain('rerun');
    expect(reportedTimes(r.output, 'passes.fixture.ts')).toBe(1);
    expect(reportedTimes(r.output, 'broken.fixture.ts')).toBe(1);
    expect(processesWith(r.marker)).toEqual([]);
  }, 90_000);

  it('passes with exit code 0 when every file passes', async () => {
    const r = await runRunner(['passes'], 120);
    expect(r.lines.at(-1)).toBe('2 passed, 0 failed, 1 skipped');
    expect(r.code).toBe(0);
    expect(processesWith(r.marker)).toEqual([]);
  }, 90_000);
});
