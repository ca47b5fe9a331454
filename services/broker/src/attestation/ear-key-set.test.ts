// The EAR key file on disk (ear-key-set.ts): what readEarKeyFile accepts (one open file, checked
// and read through the same handle: no special file, owner-only, this user's; a symbolic link is
// followed and the file it leads to checked), the atomic first-start creation, rotations that keep
// the file's owner (and replace a link's target, keeping the link), the rotation lock, and the
// removal of temporary files a crash left.
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, statSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Worker } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EarSigner } from './ear-signer.js';
import { EAR_KEY_LOCK_STALE_SECONDS, readEarKeyFile, rotateEarKeyFile, writeFileExclusive } from './ear-key-set.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const isRoot = process.geteuid?.() === 0;
const NOBODY = 65534;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

describe('EAR key file', () => {
  let dir: string;
  let path: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'custody-ear-file-'));
    path = join(dir, 'ear-signing-key.jwk');
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  describe('readEarKeyFile refuses what is not an owner-only regular file of this user', () => {
    const cases: Array<{ name: string; make: (good: string, at: string) => void; code: string; root?: boolean }> = [
      // A link is followed, and the file it leads to checked like any other.
      { name: 'a symbolic link to a group-readable key file', make: (good, at) => (copyFileSync(good, `${at}.target`), chmodSync(`${at}.target`, 0o640), symlinkSync(`${at}.target`, at)), code: 'ERR_EAR_KEY' },
      { name: 'a symbolic link to a FIFO', make: (_good, at) => (execFileSync('mkfifo', ['-m', '600', `${at}.fifo`]), symlinkSync(`${at}.fifo`, at)), code: 'ERR_EAR_KEY' },
      { name: 'a directory', make: (_good, at) => execFileSync('mkdir', ['-m', '700', at]), code: 'ERR_EAR_KEY' },
      // Opened without blocking (O_NONBLOCK), then refused as not a regular file.
      { name: 'a FIFO', make: (_good, at) => execFileSync('mkfifo', ['-m', '600', at]), code: 'ERR_EAR_KEY' },
      { name: 'a group-readable file', make: (good, at) => (copyFileSync(good, at), chmodSync(at, 0o640)), code: 'ERR_EAR_KEY' },
      { name: 'a file of another user (0600)', make: (good, at) => (copyFileSync(good, at), chownSync(at, NOBODY, NOBODY)), code: 'ERR_EAR_KEY_OWNER', root: true },
    ];
    for (const c of cases) {
      it.skipIf(c.root === true && !isRoot)(c.name, async () => {
        const good = join(dir, 'good.jwk');
        await EarSigner.open(good);
        const at = join(dir, 'candidate.jwk');
        c.make(good, at);
        expect(await codeOf(readEarKeyFile(at))).toBe(c.code);
        expect(await codeOf(EarSigner.open(at))).toBe(c.code);
        // The good file itself is accepted.
        expect(await codeOf(readEarKeyFile(good))).toBe('resolved');
      });
    }
  });

  describe('a key path that is a symbolic link', () => {
    /** The layout of a Kubernetes Secret volume: name -> ..data/name, ..data -> ..<timestamp>/. */
    function secretVolume(mount: string, stampDir: string, keyText: Buffer): string {
      mkdirSync(join(mount, stampDir), { recursive: true });
      writeFileSync(join(mount, stampDir, 'ear-signing-key.jwk'), keyText, { mode: 0o400 });
      const data = join(mount, '..data');
      // The kubelet's atomic update: a new link renamed over ..data.
      symlinkSync(stampDir, `${data}.tmp`);
      renameSync(`${data}.tmp`, data);
      if (!existsSync(join(mount, 'ear-signing-key.jwk'))) symlinkSync('..data/ear-signing-key.jwk', join(mount, 'ear-signing-key.jwk'));
      return join(mount, 'ear-signing-key.jwk');
    }

    it('loads a key from a Kubernetes Secret volume, and a Secret update (the ..data link swapped) on reload', async () => {
      const a = join(dir, 'a.jwk');
      const b = join(dir, 'b.jwk');
      const kidA = (await EarSigner.open(a)).kid;
      const kidB = (await EarSigner.open(b)).kid;
      const mount = join(dir, 'secret');
      const keyPath = secretVolume(mount, '..2030_01_01_12_00_00.1', readFileSync(a));
      const signer = await EarSigner.open(keyPath);
      expect(signer.kid).toBe(kidA);
      secretVolume(mount, '..2030_01_01_12_05_00.2', readFileSync(b));
      expect(await signer.reload()).toBe(true);
      expect(signer.kid).toBe(kidB);
      expect(signer.unusable()).toBeUndefined();
    });

    it('rotates the file an operator link leads to, in its own directory, and keeps the link', async () => {
      const real = join(dir, 'real');
      mkdirSync(real, { mode: 0o700 });
      const target = join(real, 'ear-signing-key.jwk');
      const first = (await EarSigner.open(target)).kid;
      const link = join(dir, 'ear.jwk');
      symlinkSync(target, link);
      const signer = await EarSigner.open(link);
      const r = await rotateEarKeyFile(link, { now: new Date(T0) });
      expect(r).toMatchObject({ path: link, file: realpathSync(target), linked: true, previousKid: first });
      expect(lstatSync(link).isSymbolicLink()).toBe(true);
      expect((await readEarKeyFile(target)).set.current.kid).toBe(r.kid);
      expect(statSync(target).mode & 0o777).toBe(0o600);
      // No temporary file or lock left, in either directory.
      expect(readdirSync(real)).toEqual(['ear-signing-key.jwk']);
      expect(readdirSync(dir).sort()).toEqual(['ear.jwk', 'real']);
      expect(await signer.reload()).toBe(true);
      expect(signer.kid).toBe(r.kid);
    });

    it('refuses (ERR_KEY_CONFLICT) to replace a file the link stopped leading to during the rotation', async () => {
      const a = join(dir, 'a.jwk');
      const b = join(dir, 'b.jwk');
      await EarSigner.open(a);
      await EarSigner.open(b);
      const link = join(dir, 'ear.jwk');
      symlinkSync(a, link);
      const textA = readFileSync(a, 'utf8');
      const rotation = rotateEarKeyFile(link, { now: new Date(T0) });
      // Re-pointed while the rotation reads the file.
      symlinkSync(b, `${link}.new`);
      renameSync(`${link}.new`, link);
      expect(await codeOf(rotation)).toBe('ERR_KEY_CONFLICT');
      expect(readFileSync(a, 'utf8')).toBe(textA);
      expect(readdirSync(dir).sort()).toEqual(['a.jwk', 'b.jwk', 'ear.jwk']);
    });
  });

  describe('temporary files a crash left', () => {
    const name = 'ear-signing-key.jwk';
    const old = (Date.now() - 600_000) / 1000;
    function leftover(file: string, aged: boolean): string {
      const at = join(dir, file);
      writeFileSync(at, '{"kty":"EC","d":"c2VjcmV0"}', { mode: 0o600 });
      if (aged) utimesSync(at, old, old);
      return at;
    }

    it('removes ours older than 60 s at start and at rotation, and leaves fresh ones, other names and links alone', async () => {
      leftover(`.${name}.0123456789ab.tmp`, true);
      leftover(`${name}.lock.0123456789ab.stale`, true);
      const fresh = leftover(`.${name}.0123456789ac.tmp`, false);
      leftover(`.other.jwk.0123456789ab.tmp`, true);
      leftover(`.${name}.notours.tmp`, true);
      symlinkSync(join(dir, '.other.jwk.0123456789ab.tmp'), join(dir, `.${name}.0123456789ad.tmp`));
      await EarSigner.open(path);
      expect(readdirSync(dir).sort()).toEqual([`.${name}.0123456789ac.tmp`, `.${name}.0123456789ad.tmp`, `.${name}.notours.tmp`, '.other.jwk.0123456789ab.tmp', name]);
      utimesSync(fresh, old, old);
      await rotateEarKeyFile(path, { now: new Date(T0) });
      expect(readdirSync(dir).sort()).toEqual([`.${name}.0123456789ad.tmp`, `.${name}.notours.tmp`, '.other.jwk.0123456789ab.tmp', name]);
    });

    it.skipIf(!isRoot)('leaves one of another user alone', async () => {
      const theirs = leftover(`.${name}.0123456789ab.tmp`, true);
      chownSync(theirs, NOBODY, NOBODY);
      utimesSync(theirs, old, old);
      await EarSigner.open(path);
      expect(existsSync(theirs)).toBe(true);
    });
  });

  it('checks and reads one open file: a group/world-readable key renamed over the path in between is never accepted', async () => {
    const good = join(dir, 'good.jwk');
    const exposed = join(dir, 'exposed.jwk');
    await EarSigner.open(good);
    await EarSigner.open(exposed);
    chmodSync(exposed, 0o644);
    copyFileSync(good, path);
    chmodSync(path, 0o600);
    const goodKid = (await readEarKeyFile(path)).set.current.kid;
    // Another thread swaps the two files in and out by rename as fast as it can.
    const w = new Worker(
      `const fs = require('node:fs'); const { workerData: d } = require('node:worker_threads');
       const end = Date.now() + 3000; let i = 0;
       while (Date.now() < end) { for (const src of [d.good, d.exposed]) { const t = d.path + '.' + (i++) + '.t'; fs.linkSync(src, t); fs.renameSync(t, d.path); } }`,
      { eval: true, workerData: { good, exposed, path } },
    );
    let accepted = 0;
    let exposedAccepted = 0;
    let refused = 0;
    const end = Date.now() + 2000;
    while (Date.now() < end && exposedAccepted === 0) {
      try {
        const r = await readEarKeyFile(path);
        accepted++;
        if (r.set.current.kid !== goodKid) exposedAccepted++;
      } catch (e) {
        expect((e as { code: string }).code).toBe('ERR_EAR_KEY');
        refused++;
      }
    }
    await w.terminate();
    expect(exposedAccepted).toBe(0);
    // Both sides of the race were exercised.
    expect(accepted).toBeGreaterThan(0);
    expect(refused).toBeGreaterThan(0);
  });

  it('creates the key file on first start complete or not at all: a reader racing the creation never sees a partial file', async () => {
    // A reader in another thread reads the path in a loop; the main thread creates it again and again.
    const w = new Worker(
      `const fs = require('node:fs'); const { workerData: d, parentPort } = require('node:worker_threads');
       let partial = 0, whole = 0, stop = false;
       parentPort.on('message', () => { stop = true; });
       const spin = () => { for (let i = 0; i < 2000; i++) { try { const t = fs.readFileSync(d.path, 'utf8'); try { JSON.parse(t); whole++; } catch { partial++; } } catch {} }
         if (stop) parentPort.postMessage({ partial, whole }); else setImmediate(spin); };
       spin();`,
      { eval: true, workerData: { path } },
    );
    const kids = new Set<string>();
    for (let i = 0; i < 150; i++) {
      rmSync(path, { force: true });
      kids.add((await EarSigner.open(path)).kid);
    }
    const seen = await new Promise<{ partial: number; whole: number }>((res) => {
      w.once('message', res);
      w.postMessage('stop');
    });
    await w.terminate();
    expect(kids.size).toBe(150);
    expect(seen.whole).toBeGreaterThan(0);
    expect(seen.partial).toBe(0);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['ear-signing-key.jwk']); // no temporary file left
  });

  it('writeFileExclusive never replaces an existing file: the first writer wins', () => {
    expect(writeFileExclusive(path, '{"first":1}\n')).toBe(true);
    expect(writeFileExclusive(path, '{"second":2}\n')).toBe(false);
    expect(readFileSync(path, 'utf8')).toBe('{"first":1}\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['ear-signing-key.jwk']);
  });

  it.skipIf(!isRoot)('a rotation run as root keeps the owner of the key file, so the broker (another user) can still read it', async () => {
    await EarSigner.open(path);
    chownSync(path, NOBODY, NOBODY);
    const before = statSync(path);
    const r = await rotateEarKeyFile(path, { now: new Date(T0) });
    const after = statSync(path);
    expect(after.ino).not.toBe(before.ino);
    expect([after.uid, after.gid, after.mode & 0o777]).toEqual([NOBODY, NOBODY, 0o600]);
    expect(r.owner).toEqual({ uid: NOBODY, gid: NOBODY });
    // The broker's user reads it (and the previous key is retired in it).
    expect((await readEarKeyFile(path, { owner: NOBODY })).set.retired.map((k) => k.kid)).toEqual([r.previousKid]);
    // As root, the broker itself still refuses a file that is not its own.
    expect(await codeOf(readEarKeyFile(path))).toBe('ERR_EAR_KEY_OWNER');
    expect(readdirSync(dir)).toEqual(['ear-signing-key.jwk']);
  });

  describe('rotation lock', () => {
    it('refuses to rotate while another rotation holds the lock, and leaves the file and the lock alone', async () => {
      await EarSigner.open(path);
      const text = readFileSync(path, 'utf8');
      writeFileSync(`${path}.lock`, `${process.pid + 1} now\n`, { mode: 0o600 });
      expect(await codeOf(rotateEarKeyFile(path, { now: new Date(T0) }))).toBe('ERR_KEY_CONFLICT');
      expect(readFileSync(path, 'utf8')).toBe(text);
      expect(existsSync(`${path}.lock`)).toBe(true);
      unlinkSync(`${path}.lock`);
      const r = await rotateEarKeyFile(path, { now: new Date(T0) });
      expect(r.warnings).toEqual([]);
      expect(readdirSync(dir)).toEqual(['ear-signing-key.jwk']);
    });

    it('breaks a stale lock of an interrupted rotation, with a warning', async () => {
      await EarSigner.open(path);
      const lock = `${path}.lock`;
      writeFileSync(lock, 'crashed\n', { mode: 0o600 });
      const old = (Date.now() - (EAR_KEY_LOCK_STALE_SECONDS + 60) * 1000) / 1000;
      utimesSync(lock, old, old);
      const r = await rotateEarKeyFile(path, { now: new Date(T0) });
      expect(r.warnings).toHaveLength(1);
      expect(r.warnings[0]).toMatch(/stale rotation lock/);
      expect(readdirSync(dir)).toEqual(['ear-signing-key.jwk']);
      expect((await readEarKeyFile(path)).set.current.kid).toBe(r.kid);
    });

    it('a rotation whose stale-looking lock was broken by another writes nothing (ERR_KEY_CONFLICT) and leaves the new holder\'s lock alone', async () => {
      await EarSigner.open(path);
      const text = readFileSync(path, 'utf8');
      const lock = `${path}.lock`;
      const rotation = rotateEarKeyFile(path, { now: new Date(T0) });
      // The rotation has its lock and is reading the file (it stalled, as far as others can tell):
      // another rotation finds the lock older than the stale bound, breaks it and takes its own.
      const aside = `${lock}.broken`;
      renameSync(lock, aside);
      unlinkSync(aside);
      writeFileSync(lock, 'the other rotation\n', { mode: 0o600, flag: 'wx' });
      expect(await codeOf(rotation)).toBe('ERR_KEY_CONFLICT');
      expect(readFileSync(path, 'utf8')).toBe(text);
      expect(readFileSync(lock, 'utf8')).toBe('the other rotation\n');
      expect(readdirSync(dir).sort()).toEqual(['ear-signing-key.jwk', 'ear-signing-key.jwk.lock']);
    });

    it('loses no key when rotations run at once in several processes', async () => {
      await EarSigner.open(path);
      const first = (await readEarKeyFile(path)).set.current.kid;
      const brokerDir = resolve(fileURLToPath(import.meta.url), '../../..');
      // Each process rotates until it has succeeded `n` times, retrying when the lock is held.
      const script =
        "const { rotateEarKeyFile } = await import('./src/attestation/ear-key-set.ts'); const [path, n] = process.argv.slice(1); const kids = [];" +
        'while (kids.length < Number(n)) { try { kids.push((await rotateEarKeyFile(path)).kid); } catch (e) { if (e.code !== "ERR_KEY_CONFLICT") throw e; await new Promise((r) => setTimeout(r, Math.random() * 5)); } }' +
        'process.stdout.write(JSON.stringify(kids));';
      const run = () =>
        new Promise<string[]>((res, rej) => {
          const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', '--input-type=module', '-e', script, '--', path, '8'], { cwd: brokerDir });
          let out = '';
          let err = '';
          child.stdout.on('data', (d: Buffer) => (out += d.toString()));
          child.stderr.on('data', (d: Buffer) => (err += d.toString()));
          child.on('exit', (code) => (code === 0 ? res(JSON.parse(out) as string[]) : rej(new Error(`rotation process exited ${code}: ${err}`))));
        });
      const made = (await Promise.all([run(), run(), run()])).flat();
      expect(made).toHaveLength(24);
      const { set } = await readEarKeyFile(path);
      // Every key any rotation made is in the file (current or retired), and so is the first one.
      const inFile = new Set([set.current.kid, ...set.retired.map((k) => k.kid)]);
      for (const kid of [first, ...made]) expect(inFile.has(kid), kid).toBe(true);
      expect(set.retired).toHaveLength(24);
      expect(readdirSync(dir)).toEqual(['ear-signing-key.jwk']);
    });
  });
});
