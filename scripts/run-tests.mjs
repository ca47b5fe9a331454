// Runs vitest with a watchdog and prints the plain closing line CI reads:
// "N passed, N failed[, N skipped]" (always the last line; exit code 1 when anything failed).
//
//   node scripts/run-tests.mjs [vitest run arguments...]      (scripts/test.sh passes "$@")
//
// vitest runs with its default reporter plus scripts/vitest-progress-reporter.mjs, which appends
// one line to a progress file whenever a test file finishes. If no test file finishes for
// CUSTODY_TEST_STALL_MINUTES (default 10; CUSTODY_TEST_STALL_SECONDS wins when set), the
// watchdog stops vitest and every process it started, then reruns exactly the files that had
// not finished, once, in a fresh vitest with the same watchdog. A stall in the rerun fails the
// run and names the files. A rerun file counts once, by its rerun result. Each vitest run gets
// CUSTODY_TEST_ATTEMPT=1 (first run) or 2 (rerun) in its environment.
//
// The run fails (exit 1) when a test or a test file failed, vitest reported unhandled errors,
// vitest exited non-zero for a reason of its own (not the watchdog), or a listed test file never
// reported a result.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { clearInterval, setInterval, setTimeout } from 'node:timers';
import { dirname, join, relative, resolve } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { fileURLToPath } from 'node:url';

const REPORTER = join(dirname(fileURLToPath(import.meta.url)), 'vitest-progress-reporter.mjs');
const GRACE_MS = 5_000; // SIGTERM first; SIGKILL what is still alive after this long

const args = process.argv.slice(2);
const cwd = process.cwd();

/** @param {string} line */
const say = (line) => console.log(line);

/** @param {string} moduleId */
const show = (moduleId) => relative(cwd, moduleId).split('\\').join('/') || moduleId;

function summaryLine({ passed, failed, skipped }) {
  return `${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`;
}

/** Ends the script: the summary line is the very last line printed. */
function finish(counts, code) {
  say(summaryLine(counts));
  process.exitCode = code;
}

function stallLimit() {
  const seconds = process.env.CUSTODY_TEST_STALL_SECONDS;
  const minutes = process.env.CUSTODY_TEST_STALL_MINUTES;
  const [raw, unit] = seconds ? [seconds, 1_000] : minutes ? [minutes, 60_000] : ['10', 60_000];
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    throw new Error(`${seconds ? 'CUSTODY_TEST_STALL_SECONDS' : 'CUSTODY_TEST_STALL_MINUTES'} must be a positive number, got "${raw}"`);
  }
  return Math.round(n * unit);
}

/** @param {number} ms */
function describeDuration(ms) {
  if (ms % 60_000 === 0) return `${ms / 60_000} minute${ms === 60_000 ? '' : 's'}`;
  return `${ms / 1_000} second${ms === 1_000 ? '' : 's'}`;
}

function vitestBin() {
  for (const base of [join(cwd, 'package.json'), fileURLToPath(import.meta.url)]) {
    try {
      return join(dirname(createRequire(base).resolve('vitest/package.json')), 'vitest.mjs');
    } catch {
      // try the next base
    }
  }
  throw new Error('vitest is not installed (run npm ci)');
}

// ---- processes -------------------------------------------------------------------------------

/**
 * Live processes on this machine as pid -> { ppid, pgid, start } (Linux /proc; empty elsewhere).
 * Zombies count as gone: they hold no resources and, orphaned in a container, may never be reaped.
 */
function processTable() {
  const table = new Map();
  let entries;
  try {
    entries = readdirSync('/proc');
  } catch {
    return table;
  }
  for (const name of entries) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (fields[0] === 'Z' || fields[0] === 'X') continue;
      table.set(Number(name), { ppid: Number(fields[1]), pgid: Number(fields[2]), start: fields[19] });
    } catch {
      // the process ended while we looked
    }
  }
  return table;
}

/** Every live descendant of `pid` (any process group), as pid -> start time. */
function descendants(pid) {
  const table = processTable();
  const children = new Map();
  for (const [p, info] of table) {
    if (!children.has(info.ppid)) children.set(info.ppid, []);
    children.get(info.ppid).push(p);
  }
  const found = new Map();
  const queue = [pid];
  while (queue.length > 0) {
    for (const c of children.get(queue.shift()) ?? []) {
      if (found.has(c)) continue;
      found.set(c, table.get(c).start);
      queue.push(c);
    }
  }
  return found;
}

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Stops a detached child, its whole process group and every descendant it had (also ones that
 * left the group), SIGTERM first, SIGKILL after GRACE_MS. Resolves to the pids still alive.
 * @param {{ child: import('node:child_process').ChildProcess, exited: boolean }} run
 */
async function stopTree(run) {
  const pgid = run.child.pid;
  const known = descendants(pgid);
  const alive = () => {
    const table = processTable();
    const left = [];
    for (const [p, info] of table) if (info.pgid === pgid) left.push(p);
    for (const [p, start] of known) if (table.get(p)?.start === start && !left.includes(p)) left.push(p);
    if (!run.exited && !left.includes(pgid)) left.push(pgid);
    return left;
  };
  const signal = (sig) => {
    try {
      process.kill(-pgid, sig);
    } catch {
      // the group is gone
    }
    for (const p of alive()) {
      try {
        process.kill(p, sig);
      } catch {
        // already gone
      }
    }
  };
  signal('SIGTERM');
  for (const [sig, waitMs] of [[null, GRACE_MS], ['SIGKILL', GRACE_MS]]) {
    if (sig) signal(sig);
    const until = Date.now() + waitMs;
    while (alive().length > 0 && Date.now() < until) await sleep(100);
    if (alive().length === 0) return [];
  }
  return alive();
}

/** The run in progress, so a signal to this script stops it too. */
let current = null;
/** The signal that interrupted this script, if one did. */
let interrupted = null;
const SIGNAL_CODES = { SIGHUP: 1, SIGINT: 2, SIGTERM: 15 };

for (const sig of Object.keys(SIGNAL_CODES)) {
  process.on(sig, () => {
    // A second signal, or one between runs, ends this script at once.
    if (interrupted || !current) process.exit(128 + SIGNAL_CODES[sig]);
    interrupted = sig;
    say(`run-tests: ${sig} received; stopping vitest`);
    void stopTree(current);
  });
}

// ---- progress --------------------------------------------------------------------------------

const malformed = new Set();

/** Complete NDJSON records in `file` (a line still being written is left for the next read). */
function readRecords(file) {
  if (!existsSync(file)) return [];
  const text = readFileSync(file, 'utf8');
  const end = text.lastIndexOf('\n');
  if (end < 0) return [];
  const records = [];
  for (const line of text.slice(0, end).split('\n')) {
    if (!line.trim()) continue;
    try {
      records.push(JSON.parse(line));
    } catch {
      if (!malformed.has(line)) say(`run-tests: ignoring a malformed progress line: ${line.slice(0, 200)}`);
      malformed.add(line);
    }
  }
  return records;
}

/**
 * Spawns `node vitest.mjs <argv>` detached (its own process group) and watches `progressFile`:
 * when no test file has finished for `stallMs`, `onStall` is told and the whole tree is stopped.
 * Resolves to { code, signal, stalled, records, leftover }; after a stall `records` holds only
 * what was reported before the watchdog acted.
 */
function runWatched({ bin, argv, env, progressFile, stallMs, onStall }) {
  return new Promise((resolveRun) => {
    const child = spawn(process.execPath, [bin, ...argv], {
      cwd,
      env,
      detached: true,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    const run = { child, exited: false };
    current = run;
    let last = Date.now();
    let seenModules = 0;
    let stalled = false;
    let frozen = null;
    let exitInfo = null;
    let done = false;

    const complete = (leftover) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      current = null;
      resolveRun({
        code: exitInfo?.code ?? null,
        signal: exitInfo?.signal ?? null,
        stalled,
        records: frozen ?? (progressFile ? readRecords(progressFile) : []),
        leftover,
      });
    };

    const timer = setInterval(() => {
      if (stalled || run.exited) return;
      if (progressFile) {
        const modules = readRecords(progressFile).filter((r) => r.type === 'module').length;
        if (modules !== seenModules) {
          seenModules = modules;
          last = Date.now();
        }
      }
      if (Date.now() - last < stallMs) return;
      stalled = true;
      frozen = progressFile ? readRecords(progressFile) : [];
      onStall(frozen);
      void stopTree(run).then((left) => {
        if (left.length > 0) say(`watchdog: processes still alive after SIGKILL: ${left.join(', ')}`);
        if (run.exited) return complete(left);
        child.once('exit', () => complete(left));
        // A child that even SIGKILL did not end (stuck in the kernel) must not hang us.
        setTimeout(() => complete(left), GRACE_MS).unref();
      });
    }, Math.max(50, Math.min(1_000, Math.floor(stallMs / 10))));

    child.on('error', (err) => {
      say(`run-tests: could not start vitest: ${err.message}`);
      run.exited = true;
      exitInfo = { code: 1, signal: null };
      complete([]);
    });
    child.on('exit', (code, signal) => {
      run.exited = true;
      exitInfo = { code, signal };
      // Anything it started and left behind (a worker, a server) goes too.
      if (!stalled) {
        void stopTree(run).then((left) => {
          if (left.length > 0) say(`run-tests: processes left by vitest still alive after SIGKILL: ${left.join(', ')}`);
          complete(left);
        });
      }
    });
  });
}

// ---- test files ------------------------------------------------------------------------------

/** The test files vitest would run with these arguments (absolute paths), via `vitest list`. */
async function listFiles(bin, workDir, stallMs) {
  const out = join(workDir, 'files.json');
  const result = await runWatched({
    bin,
    argv: ['list', '--filesOnly', `--json=${out}`, ...args],
    env: process.env,
    progressFile: null,
    stallMs,
    onStall: () => say(`watchdog: listing the test files took over ${describeDuration(stallMs)}; stopping vitest`),
  });
  if (result.stalled || result.code !== 0 || !existsSync(out)) return null;
  return [...new Set(JSON.parse(readFileSync(out, 'utf8')).map((entry) => resolve(cwd, entry.file)))];
}

/**
 * `args` without its positional test filters, so a rerun runs exactly the files it names (vitest
 * ORs filters). Each candidate token is dropped only if vitest's own parser then sees one filter
 * fewer and the same options; null when that does not work out.
 */
async function optionsOnly() {
  try {
    const { parseCLI } = await import('vitest/node');
    const parse = (a) => parseCLI(['vitest', 'run', ...a]);
    const base = parse(args);
    let rest = [...args];
    for (const filter of base.filter) {
      const before = parse(rest).filter.length;
      let dropped = false;
      for (let i = rest.length - 1; i >= 0 && !dropped; i--) {
        if (rest[i] !== String(filter)) continue;
        const trial = [...rest.slice(0, i), ...rest.slice(i + 1)];
        const parsed = parse(trial);
        if (parsed.filter.length === before - 1 && isDeepStrictEqual(parsed.options, base.options)) {
          rest = trial;
          dropped = true;
        }
      }
      if (!dropped) return null;
    }
    return rest;
  } catch {
    return null;
  }
}

// ---- main ------------------------------------------------------------------------------------

function tally(records) {
  const modules = new Map();
  let started = [];
  let end = null;
  let unhandledSoFar = 0;
  for (const r of records) {
    if (r.type === 'start') started = r.files.map((f) => f.moduleId);
    else if (r.type === 'module') {
      modules.set(r.moduleId, r);
      unhandledSoFar = Math.max(unhandledSoFar, r.unhandledSoFar ?? 0);
    } else if (r.type === 'end') end = r;
  }
  // A run stopped before its end counts the unhandled errors it had caught by its last file.
  const unhandled = end ? end.unhandledErrors : unhandledSoFar;
  return { modules, started, end, unhandled };
}

async function main() {
  let stallMs;
  let bin;
  try {
    stallMs = stallLimit();
    bin = vitestBin();
  } catch (err) {
    say(`run-tests: ${err.message}`);
    return finish({ passed: 0, failed: 1, skipped: 0 }, 1);
  }
  const workDir = mkdtempSync(join(tmpdir(), 'custody-tests-'));
  try {
    const listed = await listFiles(bin, workDir, stallMs);
    if (!listed) {
      say(interrupted ? `run-tests: interrupted by ${interrupted}` : 'run-tests: could not list the test files (vitest list failed; see above)');
      return finish({ passed: 0, failed: 1, skipped: 0 }, interrupted ? 128 + SIGNAL_CODES[interrupted] : 1);
    }

    const attempt = async (n, extraArgs, stallNote) => {
      const progressFile = join(workDir, `progress-${n}.ndjson`);
      const result = await runWatched({
        bin,
        argv: ['run', '--reporter=default', `--reporter=${REPORTER}`, ...extraArgs],
        env: { ...process.env, CUSTODY_TEST_PROGRESS: progressFile, CUSTODY_TEST_ATTEMPT: String(n) },
        progressFile,
        stallMs,
        onStall: stallNote,
      });
      return { ...result, ...tally(result.records) };
    };

    const unfinishedOf = (expected, run) => expected.filter((f) => !run.modules.has(f));
    const stalledFor = `no test file finished in ${describeDuration(stallMs)}`;

    // First run: everything.
    const first = await attempt(1, args, (records) => {
      const t = tally(records);
      const left = unfinishedOf([...new Set([...listed, ...t.started])], t);
      say(
        left.length > 0
          ? `watchdog: ${stalledFor}; stopping vitest; rerunning the ${left.length} unfinished file${left.length === 1 ? '' : 's'} once`
          : `watchdog: ${stalledFor} and vitest did not exit after every test file had reported; stopping vitest`,
      );
    });
    const expected1 = [...new Set([...listed, ...first.started])];
    const unfinished1 = unfinishedOf(expected1, first);

    const results = new Map(first.modules);
    let unhandled = first.unhandled;
    const problems = [];
    let neverReported = [];
    let rerun = null;

    if (first.stalled && unfinished1.length > 0 && !interrupted) {
      for (const f of unfinished1) say(`watchdog: rerunning ${show(f)}`);
      let options = await optionsOnly();
      if (!options) {
        say('run-tests: could not separate the test filters from the other vitest arguments; rerunning the files with no other arguments');
        options = [];
      }
      rerun = await attempt(2, [...options, ...unfinished1], (records) => {
        const t = tally(records);
        const left = unfinishedOf(unfinished1, t);
        say(
          left.length > 0
            ? `watchdog: ${stalledFor} on the rerun; stopping vitest; these files never finished: ${left.map(show).join(', ')}`
            : `watchdog: ${stalledFor} on the rerun and vitest did not exit after every test file had reported; stopping vitest`,
        );
      });
      for (const [id, r] of rerun.modules) results.set(id, r);
      unhandled += rerun.unhandled;
      neverReported = unfinishedOf([...new Set([...unfinished1, ...rerun.started])], rerun);
    } else {
      neverReported = unfinished1;
    }

    // How each vitest run ended.
    for (const [name, run] of [['vitest', first], ['the vitest rerun', rerun]]) {
      if (!run) continue;
      if (interrupted) {
        problems.push(`interrupted by ${interrupted}`);
        break;
      }
      if (run.stalled) {
        if (run.end) say(`run-tests: ${name} hung after its run had ended; its results are complete`);
        else if (unfinishedOf(run === first ? expected1 : unfinished1, run).length === 0) {
          problems.push(`${name} stopped by the watchdog after every file had reported, before its run ended`);
        }
      } else if (run.signal) problems.push(`${name} was killed by ${run.signal}`);
      else if (run.code !== 0) problems.push(`${name} exited with code ${run.code}`);
      if (run.leftover.length > 0) problems.push(`${name} left processes that did not die: ${run.leftover.join(', ')}`);
    }

    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const r of results.values()) {
      passed += r.passed;
      failed += r.failed + (r.moduleFailed ? 1 : 0);
      skipped += r.skipped;
    }
    failed += unhandled + neverReported.length;

    if (rerun) {
      const outcome = (f) => {
        const r = rerun.modules.get(f);
        if (!r) return 'never finished';
        return r.failed > 0 || r.moduleFailed ? 'failed' : 'passed';
      };
      say(`rerun after the watchdog (counted once, by the rerun): ${unfinished1.map((f) => `${show(f)} (${outcome(f)})`).join(', ')}`);
    }
    if (neverReported.length > 0) {
      say(`these test files never reported a result (counted as failed): ${neverReported.map(show).join(', ')}`);
    }
    if (unhandled > 0) say(`${unhandled} unhandled error${unhandled === 1 ? '' : 's'} (counted as failed)`);
    // vitest's own non-zero exit is expected when tests failed; otherwise it must be explained.
    const unexplained = problems.filter((p) => failed === 0 || !/ exited with code 1$/.test(p));
    for (const p of unexplained) say(`run-tests: ${p}`);
    if (failed === 0 && unexplained.length > 0) failed = 1;

    return finish({ passed, failed, skipped }, interrupted ? 128 + SIGNAL_CODES[interrupted] : failed > 0 ? 1 : 0);
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
