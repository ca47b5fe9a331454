import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fixedClock, systemClock, utf8, type Clock } from '@custody/core';
import {
  MemoryTree,
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
  createCosigner,
  createEd25519Signer,
  formatTlogProof,
  generateSignerKey,
  proveInclusion,
  signCheckpoint,
} from '@custody/ledger';

// Runs `custody log|witness ...` through these modules' `register`, in a child process, so exit
// codes and output are the real ones.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register: log } = await import('./src/commands/log.ts'); const { register: witness } = await import('./src/commands/witness.ts'); " +
  "const program = new Command().name('custody').exitOverride(); log(program); witness(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];

function custody(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function background(...args: string[]): { child: ChildProcessWithoutNullStreams; ready: Promise<string> } {
  const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1' } });
  const ready = new Promise<string>((res, rej) => {
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      const m = /"url":"(http:\/\/[^"]+)"/.exec(buf);
      if (m) res(m[1]!);
    });
    child.on('exit', (code) => rej(new Error(`exited ${code}: ${buf}`)));
  });
  return { child, ready };
}

let dir: string;
let vkey: string;
const event = { v: 1, type: 'operator.event', time: '2025-05-01T12:00:00Z', action: 'drill', subject: 'recovery' };

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'custody-log-cli-'));
  writeFileSync(join(dir, 'event.json'), JSON.stringify(event, null, 2));
  writeFileSync(join(dir, 'forged.json'), JSON.stringify({ ...event, subject: 'forged' }));
  writeFileSync(join(dir, 'secret.json'), JSON.stringify({ ...event, labels: { password: 'hunter2' } }));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('custody log (local directory)', () => {
  it('keygen prints the verifier key and never overwrites a key', () => {
    const r = custody('log', 'keygen', '--origin', 'log.test/cli', '--out', join(dir, 'log.key'));
    expect(r.code).toBe(0);
    vkey = r.stdout.trim();
    expect(vkey).toMatch(/^log\.test\/cli\+[0-9a-f]{8}\+/);
    expect(statSync(join(dir, 'log.key')).mode & 0o077).toBe(0);
    expect(custody('log', 'keygen', '--origin', 'log.test/cli', '--out', join(dir, 'log.key')).code).toBe(2);
    // The key kept, its vkey lost: `log vkey` gives it again; a witness key likewise.
    expect(custody('log', 'vkey', '--key', join(dir, 'log.key'))).toMatchObject({ code: 0, stdout: vkey + '\n' });
    const w = custody('witness', 'keygen', '--name', 'witness.test/w9', '--out', join(dir, 'w9.key'));
    expect(custody('witness', 'vkey', '--key', join(dir, 'w9.key'))).toMatchObject({ code: 0, stdout: w.stdout });
    // A key file whose key id does not match its key is refused (exit 2).
    const parts = readFileSync(join(dir, 'log.key'), 'utf8').trim().split('+');
    writeFileSync(join(dir, 'bad-id.key'), [...parts.slice(0, 3), '00000000', parts[4]].join('+'), { mode: 0o600 });
    expect(custody('log', 'vkey', '--key', join(dir, 'bad-id.key')).code).toBe(2);
  });

  it('append --wait writes a tlog-proof that verify accepts; a different event or a malformed proof is refused', () => {
    const a = custody('log', 'append', '--dir', join(dir, 'public'), '--key', join(dir, 'log.key'), '--event', join(dir, 'event.json'), '--wait', '--proof-out', join(dir, 'e0.tlog-proof'), '--json');
    expect(a.code, a.stderr).toBe(0);
    expect(JSON.parse(a.stdout)).toMatchObject({ ok: true, index: 0 });
    copyFileSync(join(dir, 'public', 'checkpoint'), join(dir, 'saved-checkpoint'));
    const v = custody('log', 'verify', '--proof', join(dir, 'e0.tlog-proof'), '--event', join(dir, 'event.json'), '--vkey', vkey);
    expect(v.code, v.stdout + v.stderr).toBe(0);
    expect(v.stdout).toContain('PASS checkpoint');
    expect(v.stdout).toContain('PASS inclusion');
    const forged = custody('log', 'verify', '--proof', join(dir, 'e0.tlog-proof'), '--event', join(dir, 'forged.json'), '--vkey', vkey, '--json');
    expect(forged.code).toBe(1);
    expect(JSON.parse(forged.stdout).steps[1]).toMatchObject({ step: 'inclusion', ok: false, code: 'ERR_TLOG_INCLUSION' });
    writeFileSync(join(dir, 'bad.tlog-proof'), 'c2sp.org/tlog-proof@v1\nindex x\n\n');
    expect(custody('log', 'verify', '--proof', join(dir, 'bad.tlog-proof'), '--event', join(dir, 'event.json'), '--vkey', vkey).code).toBe(2);
    const secret = custody('log', 'append', '--dir', join(dir, 'public'), '--key', join(dir, 'log.key'), '--event', join(dir, 'secret.json'), '--json');
    expect(secret.code).toBe(2);
    expect(JSON.parse(secret.stdout).errors[0].code).toBe('ERR_TLOG_EVENT_SECRET');
  });

  it('proof, consistency from a stored checkpoint, and monitor with a state file', () => {
    expect(custody('log', 'append', '--dir', join(dir, 'public'), '--key', join(dir, 'log.key'), '--entry', join(dir, 'forged.json')).code).toBe(0);
    const p = custody('log', 'proof', '1', '--log', join(dir, 'public'), '--vkey', vkey, '--out', join(dir, 'e1.tlog-proof'));
    expect(p.code, p.stderr).toBe(0);
    const v = custody('log', 'verify', '--proof', join(dir, 'e1.tlog-proof'), '--entry', join(dir, 'forged.json'), '--vkey', vkey, '--old', join(dir, 'saved-checkpoint'), '--log', join(dir, 'public'));
    expect(v.code, v.stdout).toBe(0);
    expect(v.stdout).toContain('PASS consistency');
    const m = custody('log', 'monitor', '--log', join(dir, 'public'), '--vkey', vkey, '--once', '--entries', '--state', join(dir, 'monitor.json'), '--json');
    expect(m.code, m.stdout + m.stderr).toBe(0);
    expect(JSON.parse(m.stdout.trim().split('\n')[0]!)).toMatchObject({ kind: 'checkpoint', size: 2 });
    // A log that shows the monitor a smaller tree is a rollback: exit 1.
    writeFileSync(join(dir, 'public', 'checkpoint'), readFileSync(join(dir, 'saved-checkpoint')));
    const r = custody('log', 'monitor', '--log', join(dir, 'public'), '--vkey', vkey, '--once', '--state', join(dir, 'monitor.json'), '--json');
    expect(r.code).toBe(1);
    expect(r.stdout).toContain('ERR_TLOG_ROLLBACK');
  });

  it('prints help and rejects bad usage with exit 2', () => {
    const h = custody('log', 'serve', '--help');
    expect(h.code).toBe(0);
    expect(h.stdout).toContain('--witnesses <file>');
    expect(h.stdout).toContain('must share one tile directory');
    expect(custody('log', 'proof', 'abc', '--log', dir).code).toBe(2);
    expect(custody('log', 'verify', '--checkpoint', join(dir, 'nope')).code).toBe(2);
  });

  it('append to a URL where no log listens says so (exit 3, retry later)', async () => {
    // A port that was free a moment ago: nothing listens there.
    const s = createServer();
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    await new Promise((r) => s.close(r));
    writeFileSync(join(dir, 'event-refused.json'), JSON.stringify({ v: 1, type: 'operator.event', time: '2026-11-27T12:00:00Z', actor: 'ops', action: 'drill', subject: 'demo' }));
    const r = custody('log', 'append', '--url', `http://127.0.0.1:${port}`, '--event', join(dir, 'event-refused.json'));
    expect(r.code).toBe(3);
    expect(r.stderr).toContain(`ERR_TLOG_UNAVAILABLE: nothing listens at http://127.0.0.1:${port} (is \`custody log serve\` running?)`);
  });
});

describe('custody log verify: cosignature freshness', () => {
  it('refuses a future-dated cosignature by default, and applies --max-age to a proof against another checkpoint', async () => {
    const seeded = (b: number) => (n: number) => new Uint8Array(n).fill(b);
    const logKey = await generateSignerKey('log.test/fresh', SIG_TYPE_ED25519, seeded(41));
    const wKey = await generateSignerKey('witness.test/fresh', SIG_TYPE_COSIGNATURE_V1, seeded(42));
    const logSigner = await createEd25519Signer(logKey.skey);
    const tree = new MemoryTree();
    for (let i = 0; i < 5; i++) tree.appendEntry(utf8(`e${i}`));
    const cosigned = async (size: number, clock: Clock) =>
      signCheckpoint({ origin: 'log.test/fresh', size, rootHash: await tree.root(size), extensions: [] }, [logSigner, await createCosigner(wKey.skey, clock)]);
    writeFileSync(join(dir, 'fresh-policy.txt'), `log ${logKey.vkey}\nwitness a ${wKey.vkey}\nquorum a\n`);
    writeFileSync(join(dir, 'future.cp'), await cosigned(5, fixedClock('2099-01-01T00:00:00Z')));
    writeFileSync(join(dir, 'now.cp'), await cosigned(5, systemClock));
    writeFileSync(join(dir, 'now3.cp'), await cosigned(3, systemClock));
    writeFileSync(join(dir, 'old.tlog-proof'), formatTlogProof({ index: 1, proof: await proveInclusion(tree, 1, 3), checkpoint: await cosigned(3, fixedClock('2020-01-01T00:00:00Z')) }));
    writeFileSync(join(dir, 'e1'), 'e1');
    const policy = ['--policy', join(dir, 'fresh-policy.txt')];

    // A witness whose clock says 2099 does not make a checkpoint fresh today (no --at: now).
    const future = custody('log', 'verify', '--checkpoint', join(dir, 'future.cp'), ...policy, '--json');
    expect(future.code, future.stdout + future.stderr).toBe(1);
    expect(JSON.parse(future.stdout).steps[0]).toMatchObject({ step: 'checkpoint', ok: false, code: 'ERR_TLOG_QUORUM' });
    expect(custody('log', 'verify', '--checkpoint', join(dir, 'future.cp'), ...policy, '--at', '2099-01-01T00:00:30Z').code).toBe(0);

    // The proof's own checkpoint (size 3, cosigned in 2020; the same tree as now3.cp, cosigned
    // now) is checked with the same freshness rules.
    const proofArgs = ['log', 'verify', '--checkpoint', join(dir, 'now3.cp'), '--proof', join(dir, 'old.tlog-proof'), '--entry', join(dir, 'e1'), ...policy, '--json'];
    const lax = custody(...proofArgs);
    expect(lax.code, lax.stdout + lax.stderr).toBe(0);
    const strict = custody(...proofArgs, '--max-age', '3600');
    expect(strict.code, strict.stdout + strict.stderr).toBe(1);
    expect(JSON.parse(strict.stdout).steps).toEqual([
      expect.objectContaining({ step: 'checkpoint', ok: true }),
      expect.objectContaining({ step: 'inclusion', ok: false, code: 'ERR_TLOG_QUORUM' }),
    ]);
    expect(custody('log', 'verify', '--checkpoint', join(dir, 'now.cp'), ...policy, '--max-age', 'soon').code).toBe(2);
  });
});

describe('custody log verify: a proof against another checkpoint than --checkpoint', () => {
  // The log (the party a transparency log guards against) signs a fork: another tree of the same
  // size, or a larger one that does not extend the checkpoint the auditor holds.
  let v = '';
  const f = (name: string) => join(dir, 'other-cp', name);
  const verify = (...args: string[]) => {
    const r = custody('log', 'verify', ...args, '--vkey', v, '--json');
    return { code: r.code, out: JSON.parse(r.stdout) as { ok: boolean; steps?: { step: string; ok: boolean; code?: string }[]; errors?: { code: string }[] }, raw: r.stdout + r.stderr };
  };

  beforeAll(() => {
    mkdirSync(join(dir, 'other-cp'));
    const k = custody('log', 'keygen', '--origin', 'log.test/other-cp', '--out', f('log.key'));
    expect(k.code, k.stderr).toBe(0);
    v = k.stdout.trim();
    expect(custody('log', 'append', '--dir', f('log'), '--key', f('log.key'), '--event', join(dir, 'event.json'), '--wait', '--proof-out', f('e0.tlog-proof')).code).toBe(0);
    copyFileSync(join(f('log'), 'checkpoint'), f('cp1'));
    expect(custody('log', 'append', '--dir', f('log'), '--key', f('log.key'), '--entry', join(dir, 'forged.json')).code).toBe(0);
    copyFileSync(join(f('log'), 'checkpoint'), f('cp2'));
    // The fork: the same key, another first entry.
    expect(custody('log', 'append', '--dir', f('fork'), '--key', f('log.key'), '--entry', join(dir, 'forged.json'), '--wait', '--proof-out', f('fork-e0.tlog-proof')).code).toBe(0);
  });

  it('an honest older proof verifies against a newer checkpoint with --log (consistency from its tiles)', () => {
    const r = verify('--checkpoint', f('cp2'), '--proof', f('e0.tlog-proof'), '--event', join(dir, 'event.json'), '--log', f('log'));
    expect(r.code, r.raw).toBe(0);
    expect(r.out.steps).toEqual([expect.objectContaining({ step: 'checkpoint', ok: true }), expect.objectContaining({ step: 'inclusion', ok: true })]);
  });

  it('a fork of the same size is a split view (exit 1), with or without --log', () => {
    for (const extra of [[], ['--log', f('log')]]) {
      const r = verify('--checkpoint', f('cp1'), '--proof', f('fork-e0.tlog-proof'), '--entry', join(dir, 'forged.json'), ...extra);
      expect(r.code, r.raw).toBe(1);
      expect(r.out.steps).toEqual([expect.objectContaining({ step: 'checkpoint', ok: true }), expect.objectContaining({ step: 'inclusion', ok: false, code: 'ERR_TLOG_SPLIT_VIEW' })]);
    }
  });

  it('a proof against a tree of another size is refused without --log (exit 2) and fails consistency with it (exit 1)', () => {
    const args = ['--checkpoint', f('cp2'), '--proof', f('fork-e0.tlog-proof'), '--entry', join(dir, 'forged.json')];
    const usage = verify(...args);
    expect(usage.code, usage.raw).toBe(2);
    expect(usage.out).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE' }] });
    const fork = verify(...args, '--log', f('log'));
    expect(fork.code, fork.raw).toBe(1);
    expect(fork.out.steps).toEqual([expect.objectContaining({ step: 'checkpoint', ok: true }), expect.objectContaining({ step: 'inclusion', ok: false, code: 'ERR_TLOG_CONSISTENCY' })]);
  });

  it('an event file that repeats a member is refused (exit 2), though the last value is the one logged', () => {
    const text = readFileSync(join(dir, 'event.json'), 'utf8').replace('"subject": "recovery"', '"subject": "not-what-was-logged",\n  "subject": "recovery"');
    expect(text).toContain('not-what-was-logged');
    writeFileSync(f('dup-event.json'), text);
    const r = verify('--proof', f('e0.tlog-proof'), '--event', f('dup-event.json'));
    expect(r.code, r.raw).toBe(2);
    expect(r.out).toMatchObject({ ok: false, errors: [{ code: 'ERR_TLOG_EVENT' }] });
    expect(verify('--proof', f('e0.tlog-proof'), '--event', join(dir, 'event.json')).code).toBe(0);
  });
});

describe('custody log verify: nothing given is left unchecked', () => {
  let v = '';
  let log = '';
  const f = (name: string) => join(dir, 'unchecked', name);
  const json = (r: { stdout: string }) => JSON.parse(r.stdout) as { ok: boolean; steps?: { step: string; ok: boolean; code?: string }[]; errors?: { code: string }[] };

  beforeAll(() => {
    mkdirSync(join(dir, 'unchecked'));
    const k = custody('log', 'keygen', '--origin', 'log.test/unchecked', '--out', f('log.key'));
    expect(k.code, k.stderr).toBe(0);
    v = k.stdout.trim();
    log = f('log');
    expect(custody('log', 'append', '--dir', log, '--key', f('log.key'), '--event', join(dir, 'event.json'), '--wait', '--proof-out', f('e0.tlog-proof')).code).toBe(0);
    copyFileSync(join(log, 'checkpoint'), f('cp1'));
    expect(custody('log', 'append', '--dir', log, '--key', f('log.key'), '--entry', join(dir, 'forged.json')).code).toBe(0);
    copyFileSync(join(log, 'checkpoint'), f('cp2'));
    writeFileSync(f('policy.txt'), `log ${v}\nquorum none\n`);
  });

  // Each of these was once (or could be) reported verified while an input was never checked.
  const usage: [string, () => string[]][] = [
    ['--entry without --proof or --index', () => ['--checkpoint', f('cp2'), '--entry', join(dir, 'forged.json')]],
    ['--event without --proof or --index', () => ['--checkpoint', f('cp2'), '--event', join(dir, 'forged.json')]],
    ['--event with --log but no --index (a log cannot be searched by content)', () => ['--log', log, '--event', join(dir, 'event.json')]],
    ['--proof and --index together', () => ['--proof', f('e0.tlog-proof'), '--index', '1', '--log', log, '--event', join(dir, 'event.json')]],
    ['--index without --log', () => ['--checkpoint', f('cp2'), '--index', '0', '--event', join(dir, 'event.json')]],
    ['--index negative', () => ['--log', log, '--index', '-1', '--event', join(dir, 'event.json')]],
    ['--index not a decimal', () => ['--log', log, '--index', '1e0', '--event', join(dir, 'event.json')]],
    ['--index without an entry', () => ['--log', log, '--index', '0']],
    ['--entry and --event together', () => ['--proof', f('e0.tlog-proof'), '--entry', join(dir, 'event.json'), '--event', join(dir, 'event.json')]],
    ['--old without --log', () => ['--checkpoint', f('cp2'), '--old', f('cp1')]],
    ['--policy and --vkey together (the vkey would be ignored)', () => ['--checkpoint', f('cp2'), '--policy', f('policy.txt')]],
  ];
  for (const [name, args] of usage) {
    it(`${name}: exit 2, ERR_USAGE, nothing reported verified`, () => {
      const r = custody('log', 'verify', ...args(), '--vkey', v, '--json');
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(json(r)).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE' }] });
    });
  }

  const proven: [string, () => string[], number, { step: string; ok: boolean; code?: string }[]][] = [
    ['event 0 by --index from the log', () => ['--log', log, '--index', '0', '--event', join(dir, 'event.json')], 0, [{ step: 'checkpoint', ok: true }, { step: 'inclusion', ok: true }]],
    ['raw entry 1 by --index from the log', () => ['--log', log, '--index', '1', '--entry', join(dir, 'forged.json')], 0, [{ step: 'checkpoint', ok: true }, { step: 'inclusion', ok: true }]],
    ['tampered twin: another event at index 0', () => ['--log', log, '--index', '0', '--event', join(dir, 'forged.json')], 1, [{ step: 'checkpoint', ok: true }, { step: 'inclusion', ok: false, code: 'ERR_TLOG_INCLUSION' }]],
    ['tampered twin: the entry at the wrong index', () => ['--log', log, '--index', '0', '--entry', join(dir, 'forged.json')], 1, [{ step: 'checkpoint', ok: true }, { step: 'inclusion', ok: false, code: 'ERR_TLOG_INCLUSION' }]],
    ['the proof file with its event', () => ['--proof', f('e0.tlog-proof'), '--event', join(dir, 'event.json')], 0, [{ step: 'checkpoint', ok: true }, { step: 'inclusion', ok: true }]],
    ['a checkpoint alone (nothing else given)', () => ['--checkpoint', f('cp2')], 0, [{ step: 'checkpoint', ok: true }]],
  ];
  for (const [name, args, code, steps] of proven) {
    it(`${name}: exit ${code}`, () => {
      const r = custody('log', 'verify', ...args(), '--vkey', v, '--json');
      expect(r.code, r.stdout + r.stderr).toBe(code);
      expect(json(r).steps).toEqual(steps.map((s): unknown => expect.objectContaining(s)));
    });
  }

  it('a checkpoint file with a UTF-8 byte-order mark is checked as given and fails (its twin passes)', () => {
    writeFileSync(f('bom.cp'), Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), readFileSync(f('cp2'))]));
    const r = custody('log', 'verify', '--checkpoint', f('bom.cp'), '--vkey', v, '--json');
    expect(r.code, r.stdout + r.stderr).toBe(1);
    expect(json(r).steps).toEqual([expect.objectContaining({ step: 'checkpoint', ok: false })]);
    expect(custody('log', 'verify', '--checkpoint', f('cp2'), '--vkey', v).code).toBe(0);
  });
});

describe('custody log monitor: a saved state is trusted only through its signed checkpoint', () => {
  let v = '';
  let state: { origin: string; size: number; rootHash: string; checkpoint: string };
  let untrusted = '';
  const f = (name: string) => join(dir, 'mstate', name);
  const monitor = (stateFile: string) => custody('log', 'monitor', '--log', f('log'), '--vkey', v, '--once', '--state', stateFile, '--json');

  beforeAll(async () => {
    mkdirSync(join(dir, 'mstate'));
    const k = custody('log', 'keygen', '--origin', 'log.test/mstate', '--out', f('log.key'));
    v = k.stdout.trim();
    for (const e of ['event.json', 'forged.json']) expect(custody('log', 'append', '--dir', f('log'), '--key', f('log.key'), '--entry', join(dir, e)).code).toBe(0);
    const first = monitor(f('state.json'));
    expect(first.code, first.stdout + first.stderr).toBe(0);
    state = JSON.parse(readFileSync(f('state.json'), 'utf8')) as typeof state;
    expect(state.size).toBe(2);
    // A checkpoint signed by a key the monitor does not trust, with the same origin.
    const other = await generateSignerKey('log.test/mstate', SIG_TYPE_ED25519, (n) => new Uint8Array(n).fill(9));
    untrusted = await signCheckpoint({ origin: 'log.test/mstate', size: 1, rootHash: new Uint8Array(32).fill(1), extensions: [] }, [await createEd25519Signer(other.skey)]);
  });

  it('the state the monitor wrote is accepted', () => {
    copyFileSync(f('state.json'), f('ok.json'));
    const r = monitor(f('ok.json'));
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).toContain('"kind":"unchanged"');
  });

  const flip = (cp: string) => {
    const at = cp.length - 10;
    return cp.slice(0, at) + (cp[at] === 'A' ? 'B' : 'A') + cp.slice(at + 1);
  };
  const tampered: [string, () => unknown][] = [
    ['a larger size (a false rollback alarm)', () => ({ ...state, size: state.size + 100 })],
    ['a smaller size (skips the consistency check)', () => ({ ...state, size: 1 })],
    ['another root hash', () => ({ ...state, rootHash: Buffer.alloc(32, 7).toString('base64') })],
    ['another origin', () => ({ ...state, origin: 'log.test/other' })],
    ['no origin, size or root', () => ({ checkpoint: state.checkpoint })],
    ['a flipped signature byte', () => ({ ...state, checkpoint: flip(state.checkpoint) })],
    ['a checkpoint from an untrusted key', () => ({ ...state, checkpoint: untrusted })],
    ['no checkpoint', () => ({ origin: state.origin, size: state.size, rootHash: state.rootHash })],
    ['not an object', () => 'state'],
  ];
  for (const [name, make] of tampered) {
    it(`refuses a state with ${name}: exit 2, ERR_INPUT_MALFORMED`, () => {
      writeFileSync(f('t.json'), JSON.stringify(make()));
      const r = monitor(f('t.json'));
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_INPUT_MALFORMED' }] });
    });
  }

  it('refuses a state file that is not JSON', () => {
    writeFileSync(f('t.json'), '{');
    expect(monitor(f('t.json')).code).toBe(2);
  });

  it('a state it cannot write is ERR_FILE_UNWRITABLE naming the path (exit 3), not an internal error', () => {
    const r = custody('log', 'monitor', '--log', f('log'), '--vkey', v, '--once', '--state', f('no-such-dir/state.json'));
    expect(r.code, r.stdout + r.stderr).toBe(3);
    expect(r.stderr).toContain(`ERR_FILE_UNWRITABLE: cannot write the monitor state ${f('no-such-dir/state.json')}`);
  });

  it('refuses an --interval a timer cannot wait (it would poll every millisecond): exit 2', () => {
    for (const interval of ['3000000', 'Infinity', '0', '1e-9', '']) {
      const r = custody('log', 'monitor', '--log', f('log'), '--vkey', v, '--once', '--interval', interval, '--json');
      expect(r.code, `${interval}: ${r.stdout}${r.stderr}`).toBe(2);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE' }] });
    }
    expect(custody('log', 'monitor', '--log', f('log'), '--vkey', v, '--once', '--interval', '0.5').code).toBe(0);
  });
});

describe('custody log vkey, custody witness vkey', () => {
  it("each prints only its own kind of key: a log's key is not printed as a witness's, nor the reverse (exit 2, ERR_NOTE_KEY)", () => {
    mkdirSync(join(dir, 'vkeys'));
    const logKey = join(dir, 'vkeys', 'log.key');
    const witnessKey = join(dir, 'vkeys', 'w.key');
    const l = custody('log', 'keygen', '--origin', 'log.test/vkeys', '--out', logKey);
    const w = custody('witness', 'keygen', '--name', 'witness.test/vkeys', '--out', witnessKey);
    expect(custody('log', 'vkey', '--key', logKey)).toMatchObject({ code: 0, stdout: l.stdout });
    expect(custody('witness', 'vkey', '--key', witnessKey)).toMatchObject({ code: 0, stdout: w.stdout });
    for (const [cmd, key] of [['log', witnessKey], ['witness', logKey]] as const) {
      const r = custody(cmd, 'vkey', '--key', key, '--json');
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(JSON.parse(r.stdout)).toMatchObject({ ok: false, errors: [{ code: 'ERR_NOTE_KEY' }] });
    }
  });
});

describe('custody log serve + custody witness serve (real processes, loopback HTTP)', () => {
  const procs: ChildProcessWithoutNullStreams[] = [];
  afterAll(() => procs.forEach((p) => p.kill('SIGTERM')));

  it('a served log gets cosignatures from a served witness, and a monitor follows it over HTTP', async () => {
    const w = custody('witness', 'keygen', '--name', 'witness.test/cli', '--out', join(dir, 'w.key'));
    expect(w.code).toBe(0);
    const wvkey = w.stdout.trim();
    const k = custody('log', 'keygen', '--origin', 'log.test/served', '--out', join(dir, 'served.key'));
    const servedVkey = k.stdout.trim();
    const ws = background('witness', 'serve', '--key', join(dir, 'w.key'), '--log', servedVkey, '--db', join(dir, 'w.sqlite'), '--listen', '127.0.0.1:0', '--json');
    procs.push(ws.child);
    const witnessUrl = await ws.ready;
    writeFileSync(join(dir, 'witnesses.txt'), `witness W ${wvkey} ${witnessUrl}\nquorum W\n`);
    writeFileSync(join(dir, 'policy.txt'), `log ${servedVkey}\nwitness W ${wvkey} ${witnessUrl}\nquorum W\n`);
    const ls = background('log', 'serve', '--dir', join(dir, 'served'), '--key', join(dir, 'served.key'), '--witnesses', join(dir, 'witnesses.txt'), '--listen', '127.0.0.1:0', '--interval', '50', '--json');
    procs.push(ls.child);
    const logUrl = await ls.ready;
    const a = custody('log', 'append', '--url', logUrl, '--event', join(dir, 'event.json'), '--wait', '--json');
    expect(a.code, a.stderr).toBe(0);
    const proof = (JSON.parse(a.stdout) as { proof: string }).proof;
    writeFileSync(join(dir, 'served.tlog-proof'), proof);
    const v = custody('log', 'verify', '--proof', join(dir, 'served.tlog-proof'), '--event', join(dir, 'event.json'), '--policy', join(dir, 'policy.txt'), '--json');
    expect(v.code, v.stdout).toBe(0);
    expect(JSON.parse(v.stdout).steps[0].detail).toContain('cosigned by W');
    const m = custody('log', 'monitor', '--log', logUrl, '--policy', join(dir, 'policy.txt'), '--once', '--events', '--json');
    expect(m.code, m.stdout).toBe(0);
    expect(m.stdout).toContain('"kind":"checkpoint"');
  });

  it('writer-key and serve --writers: appends need the key (from $CUSTODY_LEDGER_KEY), the key file is 0600 and printed nowhere', async () => {
    const wk = custody('log', 'writer-key', '--name', 'operator', '--out', join(dir, 'operator.key'));
    expect(wk.code, wk.stderr).toBe(0);
    const line = wk.stdout.trim();
    expect(line).toMatch(/^operator sha256:[0-9a-f]{64}$/);
    const writerKey = readFileSync(join(dir, 'operator.key'), 'utf8').trim();
    expect(statSync(join(dir, 'operator.key')).mode & 0o777).toBe(0o600);
    expect(wk.stdout + wk.stderr).not.toContain(writerKey);
    expect(custody('log', 'writer-key', '--name', 'operator', '--out', join(dir, 'operator.key')).code).toBe(2);
    writeFileSync(join(dir, 'writers.txt'), `# who may append\n${line}\n`);
    writeFileSync(join(dir, 'bad-writers.txt'), 'operator sha256:nothex\n');
    custody('log', 'keygen', '--origin', 'log.test/writers', '--out', join(dir, 'writers-log.key'));
    const bad = custody('log', 'serve', '--dir', join(dir, 'wl-bad'), '--key', join(dir, 'writers-log.key'), '--writers', join(dir, 'bad-writers.txt'), '--listen', '127.0.0.1:0', '--json');
    expect(bad.code).toBe(2);
    expect(bad.stdout).toContain('ERR_USAGE');
    const ls = background('log', 'serve', '--dir', join(dir, 'wl'), '--key', join(dir, 'writers-log.key'), '--writers', join(dir, 'writers.txt'), '--listen', '127.0.0.1:0', '--interval', '50', '--json');
    procs.push(ls.child);
    const logUrl = await ls.ready;
    const refused = custody('log', 'append', '--url', logUrl, '--event', join(dir, 'event.json'), '--json');
    expect(refused.code).toBe(2);
    expect(refused.stdout).toContain('ERR_AUTH_REQUIRED');
    // Beyond loopback, a log without --writers refuses to start unless told writes are open.
    const open = custody('log', 'serve', '--dir', join(dir, 'wl-open'), '--key', join(dir, 'writers-log.key'), '--listen', '0.0.0.0:0', '--json');
    expect(open.code).toBe(2);
    expect(open.stdout).toContain('--writers');
    const r = spawnSync(process.execPath, [...nodeArgs, 'log', 'append', '--url', logUrl, '--event', join(dir, 'event.json'), '--json'], { cwd: cliDir, encoding: 'utf8', env: { ...process.env, NO_COLOR: '1', CUSTODY_LEDGER_KEY: writerKey } });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ ok: true, index: 0 });
  });
});

describe('custody log serve stopping (real process, loopback HTTP)', () => {
  const procs: ChildProcessWithoutNullStreams[] = [];
  afterAll(() => procs.forEach((p) => p.kill('SIGKILL')));

  /**
   * A served log whose next checkpoint is seconds away, and an append (`?wait=1`) that waits for
   * it: in progress when the test signals. `pending()`: whether the append is still unanswered.
   */
  async function servedWithWaitingAppend(name: string) {
    custody('log', 'keygen', '--origin', `log.test/${name}`, '--out', join(dir, `${name}.key`));
    const ls = background('log', 'serve', '--dir', join(dir, name), '--key', join(dir, `${name}.key`), '--listen', '127.0.0.1:0', '--interval', '5000', '--json');
    procs.push(ls.child);
    const exited = new Promise<number | null>((r) => ls.child.once('exit', (code) => r(code)));
    let stdout = '';
    ls.child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const url = await ls.ready;
    const port = Number(new URL(url).port);
    expect((await fetch(`${url}/checkpoint`)).status).toBe(200);
    let settled = false;
    const append = fetch(`${url}/events?wait=1`, { method: 'POST', body: JSON.stringify(event), headers: { 'content-type': 'application/json' } }).finally(() => (settled = true));
    append.catch(() => undefined);
    await sleep(300);
    expect(settled).toBe(false);
    return { child: ls.child, port, append, exited, pending: () => !settled, stdout: () => stdout };
  }

  /** Signals, then waits until the log refuses new connections. */
  async function signalUntilRefused(child: ChildProcessWithoutNullStreams, port: number): Promise<void> {
    child.kill('SIGTERM');
    const until = Date.now() + 3000;
    while ((await codeOfConnect(port)) !== 'ECONNREFUSED') {
      if (Date.now() > until) throw new Error('the log still accepts connections');
      await sleep(20);
    }
  }

  it('on SIGTERM refuses new connections, lets an append waiting for its checkpoint finish and answer, then exits 0', async () => {
    const s = await servedWithWaitingAppend('drain');
    await signalUntilRefused(s.child, s.port);
    await sleep(200);
    expect(s.pending()).toBe(true);
    const res = await s.append;
    expect(res.status).toBe(200);
    expect(((await res.json()) as { proof?: string }).proof).toContain('index 0');
    expect(await s.exited).toBe(0);
    expect(s.stdout()).toContain('"msg":"stopping","drainMs":10000');
  });

  it('on a second signal cuts the append still waiting, and exits 0 without waiting for the drain', async () => {
    const s = await servedWithWaitingAppend('cut');
    await signalUntilRefused(s.child, s.port);
    await sleep(200);
    expect(s.pending()).toBe(true);
    const second = Date.now();
    s.child.kill('SIGTERM');
    await expect(s.append).rejects.toThrow();
    expect(await s.exited).toBe(0);
    // Well before the checkpoint the append waited for, let alone the end of the drain.
    expect(Date.now() - second).toBeLessThan(3000);
    expect(s.stdout()).toContain('stopping now: requests still in progress are cut');
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** 'connected', or the error code of a connection attempt (closed at once when it connects). */
function codeOfConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? String(e)));
  });
}

describe('custody log readers against a log or witness that hangs', () => {
  /** The CLI in a child process, asynchronously (the servers below answer from this process). */
  const run = (env: Record<string, string>, ...args: string[]) =>
    new Promise<{ code: number | null; stdout: string }>((done) => {
      const child = spawn(process.execPath, [...nodeArgs, ...args], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', ...env } });
      let stdout = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.on('exit', (code) => done({ code, stdout }));
    });

  it('a log that accepts and never answers, or trickles its checkpoint, ends in exit 3 (ERR_TLOG_UNAVAILABLE) at the deadline', async () => {
    const sockets = new Set<Socket>();
    const timers: ReturnType<typeof setInterval>[] = [];
    // Accepts, reads, never answers.
    const hang = createServer((s) => void sockets.add(s.on('data', () => undefined)));
    // Answers 200 with a long body, one byte every 200 ms.
    const trickle = createServer((s) => {
      sockets.add(s);
      s.once('data', () => {
        s.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 4000\r\n\r\n');
        timers.push(setInterval(() => s.write('x'), 200));
      });
    });
    const listen = (srv: Server) => new Promise<string>((r) => srv.listen(0, '127.0.0.1', () => r(`http://127.0.0.1:${(srv.address() as { port: number }).port}/`)));
    const [hangUrl, trickleUrl] = [await listen(hang), await listen(trickle)];
    try {
      const env = { CUSTODY_HTTP_TIMEOUT_MS: '800' };
      for (const url of [hangUrl, trickleUrl]) {
        const m = await run(env, 'log', 'monitor', '--once', '--log', url, '--vkey', vkey, '--json');
        expect(m.code).toBe(3);
        expect(m.stdout).toContain('ERR_TLOG_UNAVAILABLE');
        const p = await run(env, 'log', 'proof', '0', '--log', url, '--vkey', vkey, '--json');
        expect(p.code).toBe(3);
      }
    } finally {
      timers.forEach(clearInterval);
      sockets.forEach((s) => s.destroy());
      hang.close();
      trickle.close();
    }
  });
});
