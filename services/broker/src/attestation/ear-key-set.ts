import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { closeSync, constants, fchownSync, fstatSync, fsyncSync, linkSync, lstatSync, openSync, readdirSync, readSync, realpathSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { JWK } from 'jose';
import { CustodyError } from '@custody/core';
import { exportEarSigningKey, generateEarSigningKey, importEarSigningKey, type EarSigningKey } from '@custody/policy';

/**
 * The broker's EAR signing key file. Two forms are read:
 *
 * - a single private JWK (EC P-256, ES256): the form a broker writes on its first start, and the
 *   only form before key rotation existed;
 * - a key set, written by `rotateEarKeyFile` (`custody broker rotate-ear-key`):
 *
 *       {"format":"custody-ear-key-set/v1",
 *        "current":{<private JWK>},
 *        "retired":[{"retiredAt":"<RFC 3339>","jwk":{<public JWK with kid>}}, ...]}
 *
 * The broker signs with `current` only. A retired key keeps only its public half: it is published
 * in the JWKS for EAR_KEY_RETENTION_SECONDS after `retiredAt` on every broker, whatever that
 * broker's own settings, so that EARs it signed keep verifying on every replica; then dropped.
 * The file is a regular file, owned by the user reading it and owner-only (0600); anything else is
 * refused. The key path may be a symbolic link (a Kubernetes Secret volume, an operator's link):
 * the checks are made on the file it leads to, through the handle it was opened with.
 */

export const EAR_KEY_SET_FORMAT = 'custody-ear-key-set/v1';
/** Largest key file read (a key set holds at most MAX_RETIRED_EAR_KEYS public keys besides the current private one). */
export const MAX_EAR_KEY_FILE_BYTES = 64 * 1024;
/** Retired keys a key set may list. */
export const MAX_RETIRED_EAR_KEYS = 32;
/** Clock skew allowed for between the writer of `retiredAt`, the brokers and EAR verifiers. */
export const EAR_KEY_CLOCK_SKEW_SECONDS = 60;
/** The longest EAR lifetime a broker can be configured with (AttestationService bounds it to a day). */
export const MAX_EAR_LIFETIME_SECONDS = 86_400;
/** The longest interval at which a broker re-reads the key file (EarSignerOptions.reloadIntervalMs). */
export const MAX_EAR_KEY_RELOAD_SECONDS = 3_600;
/**
 * How long a retired key stays in every broker's JWKS after its `retiredAt`: the longest EAR any
 * broker may issue + the longest reload interval any broker may use + clock skew (25 h 1 min).
 * A fixed bound, not the local replica's settings: the replica that signed an EAR with the key
 * may have a longer EAR lifetime or reload interval than the one verifying it. Publishing a
 * public key longer than needed is harmless (every EAR carries its `exp`); a compromised key is
 * dropped at once with `--no-overlap`. A rotation also drops retired keys older than this.
 */
export const EAR_KEY_RETENTION_SECONDS = MAX_EAR_LIFETIME_SECONDS + MAX_EAR_KEY_RELOAD_SECONDS + EAR_KEY_CLOCK_SKEW_SECONDS;
/** A rotation lock file older than this was left by an interrupted rotation and may be broken. */
export const EAR_KEY_LOCK_STALE_SECONDS = 60;
/** A temporary key file (`.<name>.<hex>.tmp`) older than this was left by a crash and is removed. */
export const EAR_KEY_TEMP_STALE_SECONDS = 60;

/** A retired key: its public JWK (kid, alg ES256, use sig) and when it stopped signing. */
export interface RetiredEarKey {
  readonly kid: string;
  readonly publicJwk: JWK;
  /** Milliseconds since the epoch. */
  readonly retiredAt: number;
}

/** A key file, read and checked: the signing key and the retired keys, newest first. */
export interface EarKeySet {
  readonly current: EarSigningKey;
  readonly retired: readonly RetiredEarKey[];
  /** `jwk` for the single-key form, `set` for a key set. */
  readonly form: 'jwk' | 'set';
}

/** The user and group owning a key file. */
export interface EarKeyFileOwner {
  uid: number;
  gid: number;
}

/** Identifies one version of the file on disk (a rename gives a new inode, a rewrite a new mtime). */
export function fileStamp(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

function keyError(message: string, path: string, cause?: unknown, detail: Record<string, string | number | boolean> = {}): CustodyError {
  return new CustodyError('ERR_EAR_KEY', message, { ...(cause !== undefined ? { cause } : {}), detail: { path, ...detail } });
}

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException | undefined)?.code;
}

export interface ReadEarKeyFileOptions {
  /** Import the current private key extractable (the rotation re-exports nothing, so default false). */
  extractable?: boolean;
  /**
   * The uid the file must belong to. Default: the effective uid of this process (a broker trusts
   * only a key file of its own user). `any`: not checked (a rotation run as root, which keeps the
   * file's owner).
   */
  owner?: number | 'any';
}

/**
 * Reads and checks the key file at `path`: opened once (following symbolic links, so a Kubernetes
 * Secret mount or an operator's link works; O_NONBLOCK, so a FIFO cannot block), and the checks (a
 * regular file, owner-only mode, the expected owner, the size bound) made on that open file, whose
 * bytes are the ones parsed: a file renamed over `path`, or a link swapped, meanwhile cannot slip
 * between check and read. Errors: ERR_EAR_KEY, ERR_EAR_KEY_OWNER.
 */
export async function readEarKeyFile(path: string, options: ReadEarKeyFileOptions = {}): Promise<{ set: EarKeySet; stamp: string; owner: EarKeyFileOwner }> {
  const { text, st } = await readKeyFileText(path, options.owner ?? process.geteuid?.() ?? 'any');
  return { set: await parseEarKeySet(text, path, options), stamp: fileStamp(st), owner: { uid: st.uid, gid: st.gid } };
}

async function readKeyFileText(path: string, owner: number | 'any'): Promise<{ text: string; st: Stats }> {
  let fh: FileHandle;
  try {
    // Links are followed: every check below is on the file this handle holds, not on the name.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    throw keyError('the EAR signing key file cannot be read', path, e);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw keyError('the EAR signing key file is not a regular file', path, undefined, { reason: 'type' });
    if ((st.mode & 0o077) !== 0) throw keyError('the EAR signing key file must not be accessible by group or others (chmod 600)', path, undefined, { reason: 'mode', mode: (st.mode & 0o777).toString(8) });
    if (owner !== 'any' && st.uid !== owner) {
      throw new CustodyError('ERR_EAR_KEY_OWNER', 'the EAR signing key file belongs to another user: run as its owner (or chown it)', { detail: { path, uid: st.uid, expected: owner } });
    }
    if (st.size > MAX_EAR_KEY_FILE_BYTES) throw keyError('the EAR signing key file is too large', path, undefined, { reason: 'size', size: st.size, max: MAX_EAR_KEY_FILE_BYTES });
    // One byte more than allowed tells a file that grew after the fstat.
    const buf = Buffer.alloc(MAX_EAR_KEY_FILE_BYTES + 1);
    try {
      let n = 0;
      for (;;) {
        const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
        if (bytesRead === 0) break;
        n += bytesRead;
        if (n === buf.length) throw keyError('the EAR signing key file is too large', path, undefined, { reason: 'size', max: MAX_EAR_KEY_FILE_BYTES });
      }
      return { text: buf.toString('utf8', 0, n), st };
    } finally {
      buf.fill(0);
    }
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    throw keyError('the EAR signing key file cannot be read', path, e);
  } finally {
    await fh.close();
  }
}

/** Parses the text of a key file (either form). `path` only names the file in errors. */
export async function parseEarKeySet(text: string, path: string, options: { extractable?: boolean } = {}): Promise<EarKeySet> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // No cause: JSON.parse quotes the text it failed on, which is key material.
    throw keyError('the EAR signing key file is not JSON', path);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw keyError('the EAR signing key file is not a JSON object', path);
  const o = value as Record<string, unknown>;
  if ('kty' in o) return { current: await importCurrent(o, path, options), retired: [], form: 'jwk' };
  if (o.format !== EAR_KEY_SET_FORMAT) throw keyError(`the EAR signing key file is neither a private JWK nor a ${EAR_KEY_SET_FORMAT} key set`, path);
  const members = Object.keys(o).sort().join(',');
  if (members !== 'current,format,retired') throw keyError('an EAR key set has exactly the members format, current and retired', path);
  if (typeof o.current !== 'object' || o.current === null || Array.isArray(o.current)) throw keyError('the key set has no current key', path);
  const current = await importCurrent(o.current as Record<string, unknown>, path, options);
  if (!Array.isArray(o.retired)) throw keyError('the key set member retired is not an array', path);
  if (o.retired.length > MAX_RETIRED_EAR_KEYS) throw keyError(`a key set lists at most ${MAX_RETIRED_EAR_KEYS} retired keys`, path, undefined, { retired: o.retired.length });
  const seen = new Set([current.kid]);
  const retired: RetiredEarKey[] = [];
  for (const [i, entry] of (o.retired as unknown[]).entries()) {
    const r = parseRetired(entry, path, i);
    if (seen.has(r.kid)) throw keyError('the key set lists a key twice', path, undefined, { index: i });
    seen.add(r.kid);
    retired.push(r);
  }
  retired.sort((a, b) => b.retiredAt - a.retiredAt);
  return { current, retired, form: 'set' };
}

async function importCurrent(jwk: Record<string, unknown>, path: string, options: { extractable?: boolean }): Promise<EarSigningKey> {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw keyError('the EAR signing key must be an EC P-256 key (ES256)', path);
  if (typeof jwk.d !== 'string') throw keyError('the EAR signing key has no private part', path);
  let key: EarSigningKey;
  try {
    key = await importEarSigningKey(jwk, { extractable: options.extractable ?? false });
  } catch (e) {
    throw keyError('the EAR signing key cannot be imported', path, e);
  }
  if (key.alg !== 'ES256') throw keyError('the EAR signing key must be an ES256 key', path);
  // A kid that is not the key's thumbprint means the file was edited by hand: refuse rather than guess.
  if (jwk.kid !== undefined && jwk.kid !== key.kid) throw keyError('the EAR signing key kid is not its RFC 7638 thumbprint', path);
  return key;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const PUBLIC_MEMBERS = new Set(['kty', 'crv', 'x', 'y', 'kid', 'alg', 'use']);

function parseRetired(entry: unknown, path: string, index: number): RetiredEarKey {
  const bad = (message: string) => keyError(message, path, undefined, { index });
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad('a retired key is not an object');
  const e = entry as Record<string, unknown>;
  if (Object.keys(e).sort().join(',') !== 'jwk,retiredAt') throw bad('a retired key has exactly the members jwk and retiredAt');
  if (typeof e.retiredAt !== 'string' || !RFC3339.test(e.retiredAt) || Number.isNaN(Date.parse(e.retiredAt))) throw bad('a retired key has no RFC 3339 retiredAt');
  const jwk = e.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw bad('a retired key has no JWK');
  const j = jwk as Record<string, unknown>;
  // Only the public half is kept: a retired key never signs again.
  for (const k of Object.keys(j)) if (!PUBLIC_MEMBERS.has(k)) throw bad('a retired key JWK holds a member other than the public ones');
  if (j.kty !== 'EC' || j.crv !== 'P-256' || typeof j.x !== 'string' || typeof j.y !== 'string') throw bad('a retired key is not an EC P-256 public key');
  if ((j.alg !== undefined && j.alg !== 'ES256') || (j.use !== undefined && j.use !== 'sig')) throw bad('a retired key is not an ES256 signing key');
  try {
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: j.x, y: j.y }, format: 'jwk' });
  } catch (cause) {
    throw keyError('a retired key is not a point on P-256', path, cause, { index });
  }
  const kid = ecThumbprint(j.x, j.y);
  if (j.kid !== undefined && j.kid !== kid) throw bad('a retired key kid is not its RFC 7638 thumbprint');
  return { kid, publicJwk: { kty: 'EC', crv: 'P-256', x: j.x, y: j.y, kid, alg: 'ES256', use: 'sig' }, retiredAt: Date.parse(e.retiredAt) };
}

/** RFC 7638 thumbprint (SHA-256, base64url) of a P-256 public key: its required members in lexical order. */
export function ecThumbprint(x: string, y: string): string {
  return createHash('sha256').update(JSON.stringify({ crv: 'P-256', kty: 'EC', x, y })).digest('base64url');
}

/** The key set in its file form. Secret: it holds the current private key. */
export async function serializeEarKeySet(current: EarSigningKey, retired: readonly RetiredEarKey[]): Promise<string> {
  const file = {
    format: EAR_KEY_SET_FORMAT,
    current: await exportEarSigningKey(current),
    retired: retired.map((r) => ({ retiredAt: new Date(r.retiredAt).toISOString(), jwk: r.publicJwk })),
  };
  return JSON.stringify(file, null, 2) + '\n';
}

/**
 * Writes `text` to a new 0600 file beside `path` (exclusive create), flushed to disk, and given
 * to `owner` when that differs from the writing user. Returns the temporary path.
 * Errors: ERR_EAR_KEY, ERR_EAR_KEY_OWNER (`owner` cannot be given the file: nothing is left behind).
 */
function writeTempFile(path: string, text: string, owner: EarKeyFileOwner | undefined): string {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    const bytes = Buffer.from(text, 'utf8');
    try {
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    } finally {
      bytes.fill(0);
    }
    if (owner) giveTo(fd, owner, path);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    return tmp;
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // Never created.
    }
    if (e instanceof CustodyError) throw e;
    throw keyError('the EAR signing key file cannot be written', path, e);
  }
}

/**
 * Gives the open file to `owner`: a rotation run as root (or another user allowed to chown)
 * keeps the key file readable by the broker's user. Without the right to, a file owned by the
 * wrong user is refused rather than put in place (the broker could not read it and would keep
 * signing with the old key); only a different group, which a 0600 file does not need, is let be.
 */
function giveTo(fd: number, owner: EarKeyFileOwner, path: string): void {
  const st = fstatSync(fd);
  if (st.uid === owner.uid && st.gid === owner.gid) return;
  try {
    fchownSync(fd, owner.uid, owner.gid);
  } catch (e) {
    if (st.uid === owner.uid) return;
    throw new CustodyError('ERR_EAR_KEY_OWNER', `the new EAR signing key file cannot be given to the owner of the old one (uid ${owner.uid}): run the rotation as that user or as root`, {
      cause: e,
      detail: { path, uid: owner.uid, gid: owner.gid, writer: st.uid },
    });
  }
}

function fsyncDir(dir: string): void {
  try {
    const d = openSync(dir, 'r');
    try {
      fsyncSync(d);
    } finally {
      closeSync(d);
    }
  } catch {
    // Some file systems cannot fsync a directory; the rename or link itself is atomic.
  }
}

/**
 * Writes `text` to `path` atomically: a new 0600 file beside it (exclusive create), given to
 * `owner` when set, flushed to disk, renamed over `path`, then the directory flushed. A reader
 * sees the old file or the new one, never a partial one; a crash leaves at most a stray `.tmp`
 * file (removed by removeStaleKeyFileLeftovers). `beforeRename` runs once the new file is written,
 * immediately before the rename: a throw leaves `path` untouched (and removes the new file).
 * Errors: ERR_EAR_KEY, ERR_EAR_KEY_OWNER, or what `beforeRename` throws.
 */
export function writeFileAtomic(path: string, text: string, owner?: EarKeyFileOwner, beforeRename?: () => void): void {
  const tmp = writeTempFile(path, text, owner);
  try {
    beforeRename?.();
    renameSync(tmp, path);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // Already gone.
    }
    if (e instanceof CustodyError) throw e;
    throw keyError('the EAR signing key file cannot be written', path, e);
  }
  fsyncDir(dirname(path));
}

/**
 * Removes what a crash may leave beside the key file `path` (in its directory, named after it):
 * temporary key files `.<name>.<hex>.tmp` (0600, they may hold a private key) and rotation locks
 * set aside `<name>.lock.<hex>.stale`, when older than EAR_KEY_TEMP_STALE_SECONDS, regular files
 * (not links) and owned by this process's user. Best effort: returns the names removed.
 */
export function removeStaleKeyFileLeftovers(path: string, nowMs: number = Date.now()): string[] {
  const dir = dirname(path);
  const name = basename(path);
  const euid = process.geteuid?.();
  const removed: string[] = [];
  let entries: string[];
  try {
    entries = readdirSync(dir);
  } catch {
    return removed;
  }
  for (const entry of entries) {
    const leftover =
      (entry.startsWith(`.${name}.`) && /^\.[0-9a-f]{12}\.tmp$/.test(entry.slice(name.length + 1))) ||
      (entry.startsWith(`${name}.lock.`) && /^\.[0-9a-f]{12}\.stale$/.test(entry.slice(name.length + 5)));
    if (!leftover) continue;
    const at = join(dir, entry);
    try {
      const st = lstatSync(at);
      if (!st.isFile() || (euid !== undefined && st.uid !== euid)) continue;
      if (nowMs - st.mtimeMs <= EAR_KEY_TEMP_STALE_SECONDS * 1000) continue;
      unlinkSync(at);
      removed.push(entry);
    } catch {
      // Gone meanwhile, or not ours to remove.
    }
  }
  return removed;
}

/**
 * Creates `path` holding `text` (0600) unless it exists, atomically: the complete file is written
 * and flushed beside it, then hard-linked to `path` (link() fails when `path` exists, so of
 * replicas starting together exactly one creates it, and none ever reads it partly written).
 * Returns whether this call created it. Errors: ERR_EAR_KEY.
 */
export function writeFileExclusive(path: string, text: string): boolean {
  const tmp = writeTempFile(path, text, undefined);
  let created = true;
  try {
    linkSync(tmp, path);
  } catch (e) {
    if (errnoOf(e) !== 'EEXIST') throw keyError('the EAR signing key file cannot be written', path, e);
    created = false;
  } finally {
    try {
      unlinkSync(tmp);
    } catch {
      // Already gone.
    }
  }
  if (created) fsyncDir(dirname(path));
  return created;
}

export interface EarKeyRotationOptions {
  /** The retirement time written for the previous key. Default: now. */
  now?: Date;
  /**
   * true (default): the previous key is retired and stays published for EAR_KEY_RETENTION_SECONDS.
   * false: the previous key and every retired key are dropped at once, so every EAR issued so far
   * stops verifying as soon as the brokers re-read the file (a compromised key).
   */
  overlap?: boolean;
}

export interface EarKeyRotation {
  /** The key path given. */
  path: string;
  /** The file replaced: `path`, or the file it leads to when it is a symbolic link (which is left as it is). */
  file: string;
  /** Whether `path` itself is a symbolic link (`file` is its target); false for a regular file, whatever its directories are. */
  linked: boolean;
  /** The new signing key. */
  kid: string;
  /** The key it replaces: retired (overlap) or dropped. */
  previousKid: string;
  retiredAt: string;
  overlap: boolean;
  /** With overlap: until when brokers publish the previous key (retiredAt + EAR_KEY_RETENTION_SECONDS); null without. */
  publishedUntil: string | null;
  /** Retired keys the file now lists, newest first (the previous key first with overlap). */
  retired: string[];
  /** Keys removed from the file by this rotation. */
  dropped: string[];
  /** Who owns the key file (kept from the previous file): the user the broker must run as. */
  owner: EarKeyFileOwner;
  /** Things the operator should know, e.g. a stale lock of an interrupted rotation was broken. */
  warnings: string[];
}

/**
 * Rotates the key file at `path`: a new ES256 key becomes current, the previous one is retired
 * at `now` (public half only), retired keys past EAR_KEY_RETENTION_SECONDS are dropped, and the
 * set is written atomically (0600, owned by the owner of the previous file). When `path` is a
 * symbolic link the file it leads to (its realpath) is the one replaced, in its own directory, and
 * the link is left as it is. Rotations of one file are serialised by a lock file
 * (`<file>.lock`, see takeRotationLock); the lock, the file's version and what `path` leads to are
 * checked once more after the new file is written, immediately before the rename. Stale
 * temporary files of crashed writers are removed first. Running brokers pick the new file up when
 * they re-read it. Run as the file's owner or as root.
 * Errors: ERR_FILE_NOT_FOUND, ERR_EAR_KEY (unreadable, malformed, too many retired keys),
 * ERR_EAR_KEY_OWNER (the file belongs to another user, or the new file cannot be given to its
 * owner), ERR_KEY_CONFLICT (another rotation holds the lock, or the file changed while rotating:
 * run again).
 */
export async function rotateEarKeyFile(path: string, options: EarKeyRotationOptions = {}): Promise<EarKeyRotation> {
  const now = options.now ?? new Date();
  if (Number.isNaN(now.getTime())) throw new CustodyError('ERR_USAGE', 'the rotation time is not a valid date');
  const overlap = options.overlap ?? true;
  let file: string;
  try {
    file = realpathSync(path);
  } catch (e) {
    throw new CustodyError('ERR_FILE_NOT_FOUND', `EAR signing key file not found: ${path}`, { cause: e, detail: { path } });
  }
  const warnings: string[] = [];
  const lock = takeRotationLock(file, warnings);
  try {
    removeStaleKeyFileLeftovers(file);
    // Root may rotate the file of the broker's user; it keeps that owner (below).
    const euid = process.geteuid?.();
    const { set, stamp, owner } = await readEarKeyFile(file, { owner: euid === 0 || euid === undefined ? 'any' : euid });
    const next = await generateEarSigningKey({ alg: 'ES256', extractable: true });
    const at = now.getTime();
    const previous: RetiredEarKey = { kid: set.current.kid, publicJwk: publicJwkOf(set.current), retiredAt: at };
    const kept = overlap ? [previous, ...set.retired.filter((r) => at < r.retiredAt + EAR_KEY_RETENTION_SECONDS * 1000)] : [];
    if (kept.length > MAX_RETIRED_EAR_KEYS) throw keyError(`more than ${MAX_RETIRED_EAR_KEYS} keys were retired within ${EAR_KEY_RETENTION_SECONDS} s; rotate without overlap or wait`, path, undefined, { retired: kept.length });
    const keptKids = new Set(kept.map((r) => r.kid));
    const dropped = [set.current, ...set.retired].map((k) => k.kid).filter((kid) => !keptKids.has(kid));
    const text = await serializeEarKeySet(next, kept);
    writeFileAtomic(file, text, owner, () => {
      // After the new file is written, immediately before it replaces the old one: the lock is
      // still ours (not broken as stale while this rotation stalled), the file is still the version
      // read (no hand edit, no rotation that ignored the lock) and `path` still leads to it.
      lock.assertHeld();
      if (stampOf(file) !== stamp || realpathOf(path) !== file) throw new CustodyError('ERR_KEY_CONFLICT', 'the EAR signing key file changed during the rotation; run it again', { detail: { path } });
    });
    return {
      path,
      file,
      linked: isSymbolicLink(path),
      kid: next.kid,
      previousKid: set.current.kid,
      retiredAt: now.toISOString(),
      overlap,
      publishedUntil: overlap ? new Date(at + EAR_KEY_RETENTION_SECONDS * 1000).toISOString() : null,
      retired: kept.map((r) => r.kid),
      dropped,
      owner,
      warnings,
    };
  } finally {
    lock.release();
  }
}

function stampOf(path: string): string | undefined {
  try {
    return fileStamp(statSync(path));
  } catch {
    return undefined;
  }
}

function isSymbolicLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

function realpathOf(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

function lockConflict(path: string, lock: string): CustodyError {
  return new CustodyError('ERR_KEY_CONFLICT', `another rotation of this EAR signing key file is running (lock file ${lock}); run again when it has finished`, { detail: { path, lock } });
}

/** A rotation lock this process created. */
export interface RotationLock {
  /** Throws ERR_KEY_CONFLICT unless the lock file at its path is still the one created here. */
  assertHeld(): void;
  /** Removes the lock file if (and only if) it is still the one created here. */
  release(): void;
}

/** The lock file at `lock`, read through one handle: its token (content) and identity; undefined when absent. */
function readLock(lock: string): { token: string; dev: number; ino: number; mtimeMs: number } | undefined {
  let fd: number;
  try {
    fd = openSync(lock, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    if (errnoOf(e) === 'ENOENT') return undefined;
    throw e;
  }
  try {
    const st = fstatSync(fd);
    const buf = Buffer.alloc(256);
    const n = st.isFile() ? readSync(fd, buf, 0, buf.length, 0) : 0;
    return { token: buf.toString('utf8', 0, n), dev: st.dev, ino: st.ino, mtimeMs: st.mtimeMs };
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes the lock file at `lock` if it is the one identified by `held` (token and inode):
 * renamed aside to a name of ours first, and removed only when the file set aside is that one.
 * Another rotation's lock set aside by mistake is linked back; if a third rotation took the lock
 * meanwhile, it is left aside (never unlinked: its holder then finds its lock gone and stops).
 */
function removeLockIf(lock: string, held: { token: string; dev: number; ino: number }): 'removed' | 'other' | 'gone' {
  const aside = `${lock}.${randomBytes(6).toString('hex')}.stale`;
  try {
    renameSync(lock, aside);
  } catch {
    return 'gone';
  }
  const moved = readLock(aside);
  if (moved !== undefined && moved.token === held.token && moved.ino === held.ino && moved.dev === held.dev) {
    unlinkSync(aside);
    return 'removed';
  }
  try {
    linkSync(aside, lock);
  } catch {
    return 'other'; // a third rotation holds the lock now; the one set aside is left for its holder to notice
  }
  unlinkSync(aside); // the lock is back at its path (this name was a second link to it)
  return 'other';
}

/**
 * Takes the rotation lock of the key file `file` (`<file>.lock`, O_CREAT|O_EXCL, holding a random
 * token). A lock older than EAR_KEY_LOCK_STALE_SECONDS was left by an interrupted (or stalled)
 * rotation and is broken, with a warning: only the very file found stale (same token and inode) is
 * removed, by removeLockIf; a lock this process did not create is never unlinked. A stalled
 * rotation whose lock was broken finds out before it writes (assertHeld). Node has no flock: this
 * assumes the lock's mtime and the local clock agree (no concurrent rotations over NFS with clock
 * skew). Errors: ERR_KEY_CONFLICT, ERR_EAR_KEY.
 */
export function takeRotationLock(file: string, warnings: string[], nowMs: () => number = Date.now): RotationLock {
  const lock = `${file}.lock`;
  for (let attempt = 0; attempt < 3; attempt++) {
    const token = `${process.pid} ${randomBytes(16).toString('hex')} ${new Date(nowMs()).toISOString()}\n`;
    let fd: number | undefined;
    try {
      fd = openSync(lock, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      writeSync(fd, token);
      const st = fstatSync(fd);
      closeSync(fd);
      const mine = { token, dev: st.dev, ino: st.ino };
      const held = () => {
        const now = readLock(lock);
        return now !== undefined && now.token === mine.token && now.ino === mine.ino && now.dev === mine.dev;
      };
      return {
        assertHeld() {
          if (!held()) throw new CustodyError('ERR_KEY_CONFLICT', `this rotation's lock file ${lock} was broken as stale by another rotation; run it again`, { detail: { path: file, lock } });
        },
        release() {
          try {
            removeLockIf(lock, mine);
          } catch {
            // Best effort: a lock left behind is broken as stale by the next rotation.
          }
        },
      };
    } catch (e) {
      if (fd !== undefined) closeSync(fd);
      if (errnoOf(e) !== 'EEXIST') throw keyError('the rotation lock file cannot be created', file, e, { lock });
    }
    let found: ReturnType<typeof readLock>;
    try {
      found = readLock(lock);
    } catch (e) {
      throw keyError('the rotation lock file cannot be read', file, e, { lock });
    }
    if (found === undefined) continue; // released meanwhile: try again
    const ageMs = nowMs() - found.mtimeMs;
    if (ageMs < EAR_KEY_LOCK_STALE_SECONDS * 1000) throw lockConflict(file, lock);
    const r = removeLockIf(lock, found);
    if (r === 'other') throw lockConflict(file, lock);
    if (r === 'removed') warnings.push(`broke a stale rotation lock (${lock}, ${Math.floor(ageMs / 1000)} s old): an earlier rotation was interrupted`);
  }
  throw lockConflict(file, lock);
}

function publicJwkOf(key: EarSigningKey): JWK {
  const { kty, crv, x, y } = key.publicJwk;
  return { kty, crv, x, y, kid: key.kid, alg: 'ES256', use: 'sig' };
}
