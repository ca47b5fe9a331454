import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromBase64Url, toBase64, toBase64Url, toHex } from '@custody/core';
import { DEFAULT_EAR_KEY_RELOAD_MS, EAR_KEY_RETENTION_SECONDS, EarSigner, MAX_CONNECTIONS, SMALL_BODY_BUDGET_BYTES, type EarKeyRotation } from '@custody/broker-service';
import { describeRotation, formatSeconds, startupLines } from './broker.js';

// `custody broker rotate-ear-key` in a child process (real exit codes and output): the key set
// it writes (0600, renamed into place), what it prints (kids, never key material: every private
// key involved is searched for in stdout and stderr in hex, base64 and base64url, whole and as a
// 12-byte prefix), its typed refusals, and a running `custody broker serve` re-reading the
// rotated file on SIGHUP.
const cliDir = resolve(fileURLToPath(import.meta.url), '../../..');
const runner =
  "import { Command } from 'commander'; const { register } = await import('./src/commands/broker.ts'); " +
  "const program = new Command().name('custody').exitOverride(); register(program); " +
  "try { await program.parseAsync(process.argv.slice(1), { from: 'user' }); } catch (e) { if (e && e.code === 'commander.helpDisplayed') process.exit(0); process.exit(2); }";
const nodeArgs = ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', runner, '--'];

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const isRoot = process.geteuid?.() === 0;
const NOBODY = 65534;

function custody(...args: string[]): Promise<Run> {
  return run(process.execPath, [...nodeArgs, ...args]);
}

/** `custody` as root without the right to chown (CAP_CHOWN dropped), as in a restricted container. */
function custodyWithoutChown(...args: string[]): Promise<Run> {
  const quoted = [process.execPath, ...nodeArgs, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return run('capsh', ['--drop=cap_chown', '--', '-c', `exec ${quoted}`]);
}

function run(command: string, args: string[]): Promise<Run> {
  return new Promise((res) => {
    const child = spawn(command, args, { cwd: cliDir, env: { ...process.env, NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => res({ code, stdout, stderr }));
  });
}

function encodings(secret: Uint8Array): string[] {
  const out: string[] = [];
  for (const part of [secret, secret.subarray(0, 12)]) {
    if (part.length < 8) continue;
    const hex = toHex(part);
    out.push(hex, hex.toUpperCase(), toBase64(part).replace(/=+$/, ''), toBase64Url(part));
  }
  return out;
}

/** The private scalars in a key file (either form), for the secret scan. */
function privateKeys(path: string): Uint8Array[] {
  const o = JSON.parse(readFileSync(path, 'utf8')) as { d?: string; current?: { d: string } };
  return [fromBase64Url(o.d ?? o.current!.d)];
}

function expectNoSecrets(runs: Run[], secrets: Uint8Array[]): void {
  const text = runs.map((r) => r.stdout + '\n' + r.stderr).join('\n');
  for (const s of secrets) for (const e of encodings(s)) expect(text.includes(e), `key material (${e.slice(0, 6)}…) printed`).toBe(false);
}

const json = (r: Run) =>
  JSON.parse(r.stdout) as {
    ok: boolean;
    kid?: string;
    retiredKid?: string | null;
    retiredAt?: string;
    publishedUntil?: string | null;
    overlap?: boolean;
    retired?: string[];
    dropped?: string[];
    owner?: { uid: number; gid: number };
    warnings?: string[];
    errors?: Array<{ code: string }>;
  };

let root: string;
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), 'custody-broker-cli-'));
});
afterAll(() => rmSync(root, { recursive: true, force: true }));

describe('custody broker rotate-ear-key', () => {
  let data: string;
  let keyFile: string;
  beforeEach(async (ctx) => {
    data = join(root, ctx.task.id);
    mkdirSync(data, { mode: 0o700 });
    keyFile = join(data, 'ear-signing-key.jwk');
    await EarSigner.open(keyFile);
  });

  it('writes a new key set atomically and owner-only, prints the new and the retired kid and no key material', async () => {
    const first = (await EarSigner.open(keyFile)).kid;
    const secrets = privateKeys(keyFile);
    const ino = statSync(keyFile).ino;
    const r = await custody('broker', 'rotate-ear-key', '--data', data);
    expect(r.code).toBe(0);
    const st = statSync(keyFile);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.ino).not.toBe(ino);
    expect(readdirSync(data)).toEqual(['ear-signing-key.jwk']);
    const signer = await EarSigner.open(keyFile);
    expect(signer.retired.map((k) => k.kid)).toEqual([first]);
    expect(r.stdout).toContain(`new kid      ${signer.kid}`);
    expect(r.stdout).toContain(`retired kid  ${first}`);
    secrets.push(...privateKeys(keyFile));

    // --ear-key and --json: the second rotation retires the second key and keeps the first published.
    const j = await custody('broker', 'rotate-ear-key', '--ear-key', keyFile, '--json');
    expect(j.code).toBe(0);
    const out = json(j);
    expect(out).toMatchObject({ ok: true, retiredKid: signer.kid, overlap: true, retired: [signer.kid, first], dropped: [] });
    expect(out.kid).toBe((await EarSigner.open(keyFile)).kid);
    secrets.push(...privateKeys(keyFile));
    expectNoSecrets([r, j], secrets);
  });

  it('--no-overlap drops the previous and the retired keys', async () => {
    const first = (await EarSigner.open(keyFile)).kid;
    const a = await custody('broker', 'rotate-ear-key', '--data', data, '--json');
    const b = await custody('broker', 'rotate-ear-key', '--data', data, '--no-overlap', '--json');
    expect([a.code, b.code]).toEqual([0, 0]);
    expect(json(b)).toMatchObject({ ok: true, retiredKid: null, overlap: false, retired: [], dropped: [json(a).kid, first] });
    expect((await EarSigner.open(keyFile)).retired).toEqual([]);
    const text = await custody('broker', 'rotate-ear-key', '--data', data, '--no-overlap');
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`dropped kid  ${json(b).kid}`);
  });

  it('refuses a missing, malformed or exposed key file with a typed error and exit 2, without printing its contents', async () => {
    const secrets = privateKeys(keyFile);
    const legacy = readFileSync(keyFile, 'utf8');
    const runs: Run[] = [];
    const missing = await custody('broker', 'rotate-ear-key', '--data', join(root, 'nowhere'));
    runs.push(missing);
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringMatching(/^custody: ERR_FILE_NOT_FOUND: /)]);

    // Truncated JSON (JSON.parse would quote it), a public key only, an unknown format.
    const contents = [legacy.slice(0, legacy.length - 20), JSON.stringify({ ...JSON.parse(legacy), d: undefined }), JSON.stringify({ format: 'custody-ear-key-set/v9', current: JSON.parse(legacy), retired: [] })];
    for (const [i, content] of contents.entries()) {
      writeFileSync(keyFile, content, { mode: 0o600 });
      const t = await custody('broker', 'rotate-ear-key', '--data', data, ...(i === 0 ? ['--json'] : []));
      runs.push(t);
      if (i === 0) expect([t.code, json(t).errors?.[0]?.code]).toEqual([2, 'ERR_EAR_KEY']);
      else expect([t.code, t.stderr]).toEqual([2, expect.stringMatching(/^custody: ERR_EAR_KEY: /)]);
      expect(readFileSync(keyFile, 'utf8')).toBe(content); // nothing written
    }
    writeFileSync(keyFile, legacy, { mode: 0o600 });
    chmodSync(keyFile, 0o644);
    const exposed = await custody('broker', 'rotate-ear-key', '--data', data);
    runs.push(exposed);
    expect([exposed.code, exposed.stderr]).toEqual([2, expect.stringMatching(/^custody: ERR_EAR_KEY: /)]);
    expect(readFileSync(keyFile, 'utf8')).toBe(legacy);
    expectNoSecrets(runs, secrets);
  });
});

describe('custody broker rotate-ear-key: ownership and concurrency', () => {
  let data: string;
  let keyFile: string;
  beforeEach(async (ctx) => {
    data = join(root, ctx.task.id);
    mkdirSync(data, { mode: 0o700 });
    keyFile = join(data, 'ear-signing-key.jwk');
    await EarSigner.open(keyFile);
  });

  it.skipIf(!isRoot)('run as root on the broker user\'s file: the new file keeps that owner, and the output says whose it is', async () => {
    chownSync(keyFile, NOBODY, NOBODY);
    const r = await custody('broker', 'rotate-ear-key', '--data', data);
    expect([r.code, r.stderr]).toEqual([0, '']);
    const st = statSync(keyFile);
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([NOBODY, NOBODY, 0o600]);
    expect(r.stdout).toContain(`owner        uid ${NOBODY}, gid ${NOBODY}`);
    const j = await custody('broker', 'rotate-ear-key', '--data', data, '--json');
    expect(json(j)).toMatchObject({ ok: true, owner: { uid: NOBODY, gid: NOBODY } });
    expect(statSync(keyFile).uid).toBe(NOBODY);
  });

  it.skipIf(!isRoot)('refuses (exit 2, ERR_EAR_KEY_OWNER) rather than leave a file the broker user cannot read when it may not chown', async () => {
    chownSync(keyFile, NOBODY, NOBODY);
    const before = readFileSync(keyFile, 'utf8');
    const ino = statSync(keyFile).ino;
    const r = await custodyWithoutChown('broker', 'rotate-ear-key', '--data', data);
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/^custody: ERR_EAR_KEY_OWNER: /)]);
    expect(r.stdout).toBe('');
    expect(readFileSync(keyFile, 'utf8')).toBe(before);
    expect([statSync(keyFile).ino, statSync(keyFile).uid]).toEqual([ino, NOBODY]);
    expect(readdirSync(data)).toEqual(['ear-signing-key.jwk']); // no temporary file, no lock left
    expectNoSecrets([r], privateKeys(keyFile));
  });

  it('refuses while another rotation holds the lock (exit 3, ERR_KEY_CONFLICT), and breaks a stale lock with a warning', async () => {
    const lock = `${keyFile}.lock`;
    writeFileSync(lock, 'held\n', { mode: 0o600 });
    const held = await custody('broker', 'rotate-ear-key', '--data', data, '--json');
    expect([held.code, json(held).errors?.[0]?.code]).toEqual([3, 'ERR_KEY_CONFLICT']);
    const old = Date.now() / 1000 - 3600;
    utimesSync(lock, old, old);
    const r = await custody('broker', 'rotate-ear-key', '--data', data, '--json');
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^custody: warning: broke a stale rotation lock/);
    expect(json(r).warnings).toHaveLength(1);
    expect(readdirSync(data)).toEqual(['ear-signing-key.jwk']);
  });
});

describe('describeRotation', () => {
  it.each([
    [1, '1 s'],
    [10, '10 s'],
    [60, '1 min'],
    [61, '1 min 1 s'],
    [3600, '1 h'],
    [90_060, '25 h 1 min'],
  ])('formatSeconds(%i) is %s', (seconds, text) => expect(formatSeconds(seconds)).toBe(text));

  const base: EarKeyRotation = {
    path: '/data/ear-signing-key.jwk',
    file: '/data/ear-signing-key.jwk',
    linked: false,
    kid: 'new-kid',
    previousKid: 'old-kid',
    retiredAt: '2030-01-01T00:00:00.000Z',
    overlap: true,
    publishedUntil: '2030-01-02T01:01:00.000Z',
    retired: ['old-kid'],
    dropped: [],
    owner: { uid: 1001, gid: 1002 },
    warnings: [],
  };

  it('states the publication end, the owner and the reload interval from their settings, not fixed numbers', () => {
    const text = describeRotation(base).join('\n');
    expect(text).toContain(`retired kid  old-kid (retired 2030-01-01T00:00:00.000Z; every broker publishes it until 2030-01-02T01:01:00.000Z, ${formatSeconds(EAR_KEY_RETENTION_SECONDS)}`);
    expect(text).toContain('owner        uid 1001, gid 1002');
    expect(text).toContain(`(default ${formatSeconds(DEFAULT_EAR_KEY_RELOAD_MS / 1000)})`);
    const dropped = describeRotation({ ...base, overlap: false, publishedUntil: null, retired: [], dropped: ['old-kid', 'older'] }).join('\n');
    expect(dropped).toContain('dropped kid  old-kid');
    expect(dropped).toContain('dropped      older');
    expect(dropped).toContain('max-age 300 s');
  });

  it('names a symbolic link only when the path given is one (a relative --data is not)', () => {
    const relative = describeRotation({ ...base, path: 'custody-data/ear-signing-key.jwk', file: '/srv/custody-data/ear-signing-key.jwk' })[0]!;
    expect(relative).toBe('EAR signing key rotated in custody-data/ear-signing-key.jwk');
    const linked = describeRotation({ ...base, path: '/data/ear.jwk', file: '/keys/ear.jwk', linked: true })[0]!;
    expect(linked).toContain('/keys/ear.jwk (the target of the symbolic link /data/ear.jwk, which is left as it is)');
  });
});

describe('custody broker serve with a rotated EAR key', () => {
  let child: ChildProcess | undefined;
  afterAll(() => {
    if (child && child.exitCode === null) child.kill('SIGKILL');
  });

  it('re-reads the key file on SIGHUP and publishes the new and the retired key', async () => {
    const data = join(root, 'serve');
    child = spawn(process.execPath, [...nodeArgs, 'broker', 'serve', '--port', '0', '--data', data, '--json', '--log-level', 'info'], { cwd: cliDir, env: { ...process.env, NO_COLOR: '1', CUSTODY_DATABASE_URL: '', CUSTODY_BROKER_CHALLENGE_LIMIT: 'off' } });
    let out = '';
    let err = '';
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const started = await new Promise<{ jwks: string }>((res, rej) => {
      child!.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) res(JSON.parse(line) as { jwks: string });
      });
      child!.on('exit', (code) => rej(new Error(`broker exited ${code}: ${err}`)));
    });
    const kids = async () => ((await (await fetch(started.jwks)).json()) as { keys: Array<{ kid: string }> }).keys.map((k) => k.kid);
    const before = await kids();
    expect(before).toHaveLength(1);
    const r = await custody('broker', 'rotate-ear-key', '--data', data, '--json');
    expect(r.code).toBe(0);
    const newKid = json(r).kid!;
    child.kill('SIGHUP');
    let now: string[] = [];
    for (let i = 0; i < 100; i++) {
      now = await kids();
      if (now[0] === newKid) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    expect(now).toEqual([newKid, before[0]]);
    expect(child.exitCode).toBeNull();
    // Re-read on the signal (the default SIGHUP action would have ended the process). Polled: a
    // JWKS fetch may pick the new key up first, before the signal's log line reaches stderr.
    await expect.poll(() => err, { timeout: 10_000 }).toMatch(/"signal":"SIGHUP","op":"ear-key.reload"/);
    const secrets = privateKeys(join(data, 'ear-signing-key.jwk'));
    expectNoSecrets([{ code: 0, stdout: out, stderr: err }, r], secrets);
    const exited = new Promise((res) => child!.once('exit', res));
    child.kill('SIGTERM');
    await exited;
  });
});

describe('broker serve start-up lines', () => {
  const started = { url: 'http://127.0.0.1:8443', jwksUrl: 'http://127.0.0.1:8443/.well-known/jwks.json', tenant: 'acme corp', adminKeyFile: '/tmp/d/admin-acme corp.key', adminKeyCreated: true, storage: { metadata: 'sqlite', keystore: 'embedded' }, policies: { default: 'custody:policy:dev:1', tenants: {} } };
  it('name the command as it was invoked (a checkout runs ./custody), with paths quoted for the shell', () => {
    const saved = process.env.CUSTODY_COMMAND;
    try {
      process.env.CUSTODY_COMMAND = './custody';
      const text = startupLines(started as never, '/tmp/d', undefined, false, undefined).join('\n');
      expect(text).toContain("  ./custody keys list --broker http://127.0.0.1:8443 --api-key-file '/tmp/d/admin-acme corp.key'");
      expect(text).toContain("  ./custody fetch-key <name> --broker http://127.0.0.1:8443 --tenant 'acme corp' --out key.bin");
      delete process.env.CUSTODY_COMMAND;
      expect(startupLines(started as never, '/tmp/d', undefined, false, undefined).join('\n')).toContain('  custody fetch-key <name>');
    } finally {
      if (saved === undefined) delete process.env.CUSTODY_COMMAND;
      else process.env.CUSTODY_COMMAND = saved;
    }
  });
});

// The connection, body and drain bounds of `custody broker serve`, over loopback with real peer
// addresses (127.0.0.x): each flag changes what the running broker does, and a bad value is a
// usage error before anything starts.
describe('custody broker serve bounds', () => {
  const children: ChildProcess[] = [];
  const sockets: Socket[] = [];
  afterAll(() => {
    for (const s of sockets) s.destroy();
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });

  /** `broker serve` on a free port with `args`, once it printed its start-up line. */
  async function serve(name: string, ...args: string[]): Promise<{ child: ChildProcess; port: number; exited: Promise<number | null> }> {
    const child = spawn(process.execPath, [...nodeArgs, 'broker', 'serve', '--port', '0', '--data', join(root, name), '--json', ...args], {
      cwd: cliDir,
      env: { ...process.env, NO_COLOR: '1', CUSTODY_DATABASE_URL: '', CUSTODY_BROKER_CHALLENGE_LIMIT: 'off', CUSTODY_BROKER_TRUST_PROXY: '' },
    });
    children.push(child);
    const exited = new Promise<number | null>((res) => child.once('exit', res));
    let out = '';
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const url = await new Promise<string>((res, rej) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        const line = out.split('\n').find((l) => l.startsWith('{'));
        if (line) res((JSON.parse(line) as { url: string }).url);
      });
      void exited.then((code) => rej(new Error(`broker exited ${code}: ${out}${err}`)));
    });
    return { child, port: Number(new URL(url).port), exited };
  }

  function open(port: number, localAddress: string): Promise<Socket> {
    return new Promise((res, rej) => {
      const s = connect({ port, host: '127.0.0.1', localAddress }, () => res(s));
      sockets.push(s);
      s.once('error', rej);
    });
  }

  /** Sends `request`; resolves with the first whole answer (head and Content-Length body), or what came before the connection closed. */
  function ask(socket: Socket, request: string): Promise<string> {
    return new Promise((res) => {
      let text = '';
      socket.on('data', (d: Buffer) => {
        text += d.toString('latin1');
        const end = text.indexOf('\r\n\r\n');
        const length = /content-length: (\d+)/i.exec(text.slice(0, end));
        if (end !== -1 && length && text.length >= end + 4 + Number(length[1])) res(text);
      });
      socket.on('error', () => undefined);
      socket.once('close', () => res(text));
      socket.write(request, () => undefined);
    });
  }

  const healthz = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';
  /** A key release whose body stops one byte short of its Content-Length (16 KiB, the most a release may send). */
  const HELD = 16 * 1024 - 1;
  const heldRelease = `POST /v1/keys/dk/release HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer held\r\nContent-Type: application/json\r\nContent-Length: ${HELD + 1}\r\n\r\n${' '.repeat(HELD)}`;

  it('--max-connections-per-client and --max-connections: connections past them are closed as they are accepted', async () => {
    const b = await serve('connections', '--max-connections', '2', '--max-connections-per-client', '1');
    expect(await ask(await open(b.port, '127.0.0.1'), healthz)).toMatch(/^HTTP\/1\.1 200/);
    // A second connection of the same address, while the first is open: closed, nothing answered.
    expect(await ask(await open(b.port, '127.0.0.1'), healthz)).toBe('');
    expect(await ask(await open(b.port, '127.0.0.2'), healthz)).toMatch(/^HTTP\/1\.1 200/);
    // A third address: past the bound of all clients together.
    expect(await ask(await open(b.port, '127.0.0.3'), healthz)).toBe('');
    b.child.kill('SIGTERM');
    expect(await b.exited).toBe(0);
  });

  it('--max-arriving-small-body-bytes-per-client bounds an address\'s release bodies (503, per client); --drain bounds the wait on SIGTERM', async () => {
    const b = await serve('bodies', '--max-arriving-small-body-bytes-per-client', String(16 * 1024), '--drain', '1');
    const held = await open(b.port, '127.0.0.2');
    const cut = ask(held, heldRelease);
    await expect.poll(async () => (await (await fetch(`http://127.0.0.1:${b.port}/metrics`)).text()).match(/^custody_broker_arriving_body_bytes\{budget="small"\} (\d+)$/m)?.[1], { timeout: 10_000 }).toBe(String(HELD));
    // A second one from that address would cross its share (the default share holds 64 of them).
    const refused = await ask(await open(b.port, '127.0.0.2'), heldRelease);
    expect(refused).toMatch(/^HTTP\/1\.1 503/);
    expect(JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4))).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', facts: { bound: 'arriving-bodies-per-client' } });

    // The held release is in progress: the drain waits for it 1 s (not the default 10 s), then cuts it.
    const signalled = Date.now();
    b.child.kill('SIGTERM');
    expect(await cut).toBe('');
    expect(await b.exited).toBe(0);
    expect(Date.now() - signalled).toBeGreaterThanOrEqual(900);
    expect(Date.now() - signalled).toBeLessThan(5000);
  });

  it('refuses a value out of range, not a whole number, or a per-client bound above the total: exit 2, ERR_USAGE (one JSON line with --json), before anything starts', async () => {
    const bad = [
      ['--max-connections', '0'],
      ['--max-connections', '1.5'],
      ['--max-connections', ''],
      ['--max-connections', '10', '--max-connections-per-client', '11'],
      ['--max-connections-per-client', String(MAX_CONNECTIONS + 1)],
      ['--max-arriving-body-bytes', '1024'],
      ['--max-arriving-small-body-bytes-per-client', String(SMALL_BODY_BUDGET_BYTES + 1)],
      ['--drain=-1'],
    ];
    const runs = await Promise.all(bad.map((args, i) => custody('broker', 'serve', '--port', '0', '--data', join(root, `bad-${i}`), ...args, ...(i === 0 ? [] : ['--json']))));
    for (const [i, r] of runs.entries()) {
      expect(r.code, bad[i]!.join(' ')).toBe(2);
      expect(existsSync(join(root, `bad-${i}`)), bad[i]!.join(' ')).toBe(false);
      if (i === 0) {
        expect([r.stdout, r.stderr]).toEqual(['', expect.stringMatching(/^custody: ERR_USAGE: [^\n]*\n$/)]);
        continue;
      }
      expect(r.stdout.endsWith('\n') && r.stdout.split('\n').length, bad[i]!.join(' ')).toBe(2);
      expect(json(r), bad[i]!.join(' ')).toMatchObject({ ok: false, errors: [{ code: 'ERR_USAGE' }] });
    }
  }, 120_000);

  it('lists the bounds with their defaults in --help', async () => {
    const h = await custody('broker', 'serve', '--help');
    expect(h.code).toBe(0);
    expect(h.stdout).toContain(`--max-connections <n>`);
    expect(h.stdout).toContain(`(default: "${MAX_CONNECTIONS}")`);
    for (const flag of ['--max-connections-per-client <n>', '--max-arriving-body-bytes <n>', '--max-arriving-body-bytes-per-client <n>', '--max-arriving-small-body-bytes <n>', '--max-arriving-small-body-bytes-per-client <n>', '--drain <seconds>']) expect(h.stdout).toContain(flag);
  });
});
