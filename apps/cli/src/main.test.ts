import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot } from '../../../test/vectors.js';

// The whole CLI (main.ts, every command registered), in child processes run side by side, so
// that exit codes and output are the real ones.
function custody(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', ...args], { cwd: repoRoot, env: { ...process.env, NO_COLOR: '1', CUSTODY_COMMAND: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', rej);
    child.on('close', (code) => res({ code, stdout, stderr }));
  });
}

/** Every line of the output is one JSON value; the last is returned. */
function jsonLines(stdout: string): unknown[] {
  expect(stdout.endsWith('\n'), stdout).toBe(true);
  return stdout
    .slice(0, -1)
    .split('\n')
    .map((l) => JSON.parse(l) as unknown);
}

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'custody-main-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("commander's own usage errors", () => {
  // Errors commander finds before any command runs, in commands of every kind: one document
  // (receipt verify, attest verify, policy test), one JSON line per event (log monitor).
  // Each command is two words; --json goes right after them, or last (`jsonLast`).
  const cases: { what: string; args: string[]; message: RegExp; jsonLast?: boolean }[] = [
    { what: 'an unknown option', args: ['receipt', 'verify', 'r.json', '--bundle', 'b.json', '--bogus'], message: /^unknown option '--bogus'/ },
    { what: 'an unknown option, --json after it (commander stops reading options there)', args: ['attest', 'verify', 'ev.bin', '--bogus'], message: /^unknown option '--bogus'/, jsonLast: true },
    { what: 'a missing required option', args: ['receipt', 'verify', 'r.json'], message: /^required option '--bundle <file>' not specified/ },
    { what: 'a missing required option of a line-oriented command', args: ['log', 'monitor', '--vkey', 'k'], message: /^required option '--log <url\|dir>' not specified/ },
    { what: "a value the option's own parser refuses", args: ['receipt', 'verify', 'r.json', '--bundle', 'b.json', '--min-gpus', '99'], message: /--min-gpus <n>' argument '99' is invalid/ },
    { what: 'an option without its value', args: ['policy', 'test', '--claims'], message: /^option '--claims <file>' argument missing/ },
    { what: 'a missing argument', args: ['attest', 'verify'], message: /^missing required argument 'evidence-file'/ },
    { what: 'too many arguments', args: ['receipt', 'verify', 'a', 'b', '--bundle', 'b.json'], message: /^too many arguments for 'verify'/ },
  ];

  it('with --json: the JSON failure of every command, one line, ERR_USAGE, exit 2, nothing on stderr', async () => {
    const withJson = (c: (typeof cases)[number]) => (c.jsonLast ? [...c.args, '--json'] : [...c.args.slice(0, 2), '--json', ...c.args.slice(2)]);
    const results = await Promise.all(cases.map(async (c) => ({ c, r: await custody(...withJson(c)) })));
    for (const { c, r } of results) {
      expect({ what: c.what, code: r.code, stderr: r.stderr }).toEqual({ what: c.what, code: 2, stderr: '' });
      const lines = jsonLines(r.stdout);
      expect(lines, c.what).toHaveLength(1);
      expect(lines[0], c.what).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE', message: expect.stringMatching(c.message) as string }] });
    }
  }, 180_000);

  it('without --json: the text and help on stderr as before, exit 2', async () => {
    const results = await Promise.all(cases.map(async (c) => ({ c, r: await custody(...c.args) })));
    for (const { c, r } of results) {
      expect({ what: c.what, code: r.code, stdout: r.stdout }).toEqual({ what: c.what, code: 2, stdout: '' });
      expect(r.stderr, c.what).toMatch(/^error: /);
      expect(r.stderr.slice('error: '.length), c.what).toMatch(c.message);
      expect(r.stderr, c.what).toContain('Usage: custody ');
    }
  }, 180_000);

  it('--json counts only as that option of a command that has it: after `--`, or for a command without it, it is text', async () => {
    const [operand, without] = await Promise.all([custody('receipt', 'verify', 'r.json', '--bundle', 'b.json', '--', '--json'), custody('log', 'policy', '--policy', 'p.txt', '--json')]);
    expect(operand.code).toBe(2);
    expect(operand.stdout).toBe('');
    expect(operand.stderr).toMatch(/^error: too many arguments/);
    expect(without.code).toBe(2);
    expect(without.stdout).toBe('');
    expect(without.stderr).toMatch(/^error: unknown option '--json'/);
  }, 60_000);
});

describe('log monitor --json: one JSON object a line, its failure included', () => {
  it('a failure after the findings is one more JSON line (exit 3 for a state file it cannot write)', async () => {
    const vkey = (await custody('log', 'keygen', '--origin', 'main.test/log', '--out', join(dir, 'log.key'))).stdout.trim();
    const event = join(dir, 'event.json');
    writeFileSync(event, JSON.stringify({ v: 1, type: 'operator.event', time: '2025-05-01T12:00:00Z', action: 'drill', subject: 'monitor' }));
    const appended = await custody('log', 'append', '--dir', join(dir, 'public'), '--key', join(dir, 'log.key'), '--event', event, '--json');
    expect(appended.code, appended.stderr).toBe(0);
    const m = await custody('log', 'monitor', '--log', join(dir, 'public'), '--vkey', vkey, '--once', '--state', join(dir, 'missing', 'state.json'), '--json');
    expect(m.code, m.stdout + m.stderr).toBe(3);
    const lines = jsonLines(m.stdout);
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ kind: 'checkpoint', size: 1 });
    expect(lines[1]).toMatchObject({ ok: false, errors: [{ code: 'ERR_FILE_UNWRITABLE' }] });
    // A failure before any finding: the one line alone.
    const bad = await custody('log', 'monitor', '--log', join(dir, 'public'), '--vkey', 'not-a-vkey', '--once', '--json');
    expect(bad.code).toBe(2);
    expect(jsonLines(bad.stdout)).toEqual([{ ok: false, errors: [expect.objectContaining({ code: 'ERR_NOTE_KEY' })] }]);
  }, 120_000);
});
