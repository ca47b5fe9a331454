import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, lstatSync, mkdirSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CustodyError } from '@custody/core';

export interface NewSecretFileOptions {
  /**
   * `path` is the caller's claim on the name: an empty file it created with
   * `writeNewSecretFile(path, '')` before the secret existed (a token a server issues only once,
   * asked after the name was known to be free). The claim is replaced, all or nothing; anything
   * else at `path` (bytes, a link, a directory) is ERR_FILE_EXISTS and is left as it is.
   */
  claimed?: boolean;
}

/**
 * Writes a new secret file (mode 0600), all or nothing: the bytes go to a temporary name in the
 * same directory, are synced, and are then hard-linked to `path`, which fails when `path` exists.
 * So a full disk or a crash never leaves an empty or partial key file that a later start would
 * take for the key, and an existing file is never replaced (but for the caller's own empty claim,
 * with `claimed`).
 *
 * Errors: ERR_FILE_EXISTS when `path` exists; ERR_FILE_UNWRITABLE (with the system's code in
 * `detail.errno`: ENOSPC, EROFS, EACCES...) when it cannot be written. Nothing is left behind.
 */
export function writeNewSecretFile(path: string, data: Uint8Array | string, options: NewSecretFileOptions = {}): void {
  const tmp = hiddenSiblingPath(path, '.tmp');
  const unwritable = (e: unknown) =>
    new CustodyError('ERR_FILE_UNWRITABLE', `cannot write ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}); nothing was written`, {
      cause: e,
      detail: { path, errno: (e as NodeJS.ErrnoException).code ?? 'unknown' },
    });
  const exists = () => new CustodyError('ERR_FILE_EXISTS', `${path} exists; it is not replaced`, { detail: { path } });
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o600);
  } catch (e) {
    throw unwritable(e);
  }
  try {
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
      for (let n = 0; n < bytes.length; ) n += writeSync(fd, bytes, n, bytes.length - n);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (options.claimed) {
      const claim = lstatSync(path, { throwIfNoEntry: false });
      if (!claim?.isFile() || claim.size !== 0) throw exists();
      renameSync(tmp, path);
    } else linkSync(tmp, path);
    // The new name made durable too: after a power loss the key file is there, or was never written.
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw exists();
    throw unwritable(e);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/** Longest part of a file's name that a hidden name beside it repeats, in UTF-8 bytes. */
const HIDDEN_NAME_PREFIX_BYTES = 200;

/**
 * A hidden name beside `path` for work in progress: `.<name>.<random><suffix>`, where <name> is
 * cut (at a character) to HIDDEN_NAME_PREFIX_BYTES, so that any name the file system takes (255
 * bytes) has a hidden sibling it takes too. In the same directory, so a link or rename to `path`
 * stays on one file system.
 */
export function hiddenSiblingPath(path: string, suffix: string): string {
  let prefix = '';
  let bytes = 0;
  for (const ch of basename(path)) {
    bytes += Buffer.byteLength(ch, 'utf8');
    if (bytes > HIDDEN_NAME_PREFIX_BYTES) break;
    prefix += ch;
  }
  return join(dirname(path), `.${prefix}.${randomBytes(6).toString('hex')}${suffix}`);
}

/**
 * Creates a private state directory (0700, parents as needed), or accepts one that exists. A path
 * that is a file (ERR_FILE_NOT_REGULAR: not a directory) or cannot be created (ERR_FILE_UNWRITABLE,
 * with the system's code) is a typed error naming it, not a bare system error.
 */
export function makePrivateDir(path: string): void {
  try {
    mkdirSync(path, { recursive: true, mode: 0o700 });
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code ?? 'unknown';
    if (errno === 'EEXIST' || errno === 'ENOTDIR') throw new CustodyError('ERR_FILE_NOT_REGULAR', `${path} (or a parent of it) is a file, not a directory`, { detail: { path, errno } });
    throw new CustodyError('ERR_FILE_UNWRITABLE', `cannot create the directory ${path} (${errno})`, { cause: e, detail: { path, errno } });
  }
}

/**
 * Who else a secret file's mode lets in: undefined for a file only its owner can read or write,
 * else a phrase such as "group and other users can read it (mode 0644)". Mode bits only: owner,
 * ACLs and the directories above are not judged.
 */
export function modeExposure(mode: number): string | undefined {
  const perm = mode & 0o777;
  if ((perm & 0o066) === 0) return undefined;
  const can = [perm & 0o044 ? 'read' : '', perm & 0o022 ? 'write' : ''].filter(Boolean).join(' and ');
  return `${whoBesidesOwner(perm & 0o066)} can ${can} it (mode ${octal(perm)})`;
}

/** "the group", "other users" or both, for the permission bits set in `bits`. */
function whoBesidesOwner(bits: number): string {
  return [bits & 0o070 ? 'the group' : '', bits & 0o007 ? 'other users' : ''].filter(Boolean).join(' and ');
}

const octal = (mode: number) => `0${mode.toString(8).padStart(3, '0')}`;

/**
 * A warning for a secret file (a key, a token) that users other than its owner can read or
 * write, or undefined. Warned, not refused: a Kubernetes Secret volume is group- or
 * world-readable unless its defaultMode says otherwise. A file that cannot be examined gives
 * undefined (whoever reads it reports that). `mode`: the mode of the file as it was read (its
 * fstat), instead of a stat of `path` now.
 */
export function secretFileWarning(path: string, what: string, mode?: number): string | undefined {
  let exposed: string | undefined;
  if (mode !== undefined) exposed = modeExposure(mode);
  else {
    const st = statSync(path, { throwIfNoEntry: false });
    exposed = st?.isFile() ? modeExposure(st.mode) : undefined;
  }
  return exposed && `the ${what} ${path}: ${exposed}; chmod 600 it`;
}

/**
 * A warning for a state directory that users other than its owner can write into (they could
 * put their own key or database in place, or remove it), or undefined. A sticky world-writable
 * directory (/tmp) is still one: others can create the names the owner has not created yet.
 */
export function privateDirWarning(path: string, what: string): string | undefined {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st?.isDirectory() || (st.mode & 0o022) === 0) return undefined;
  const can = st.mode & 0o1000 ? 'create files' : 'create and remove files';
  return `the ${what} ${path}: ${whoBesidesOwner(st.mode & 0o022)} can ${can} in it (mode ${octal(st.mode & 0o7777)}); chmod 700 it`;
}
