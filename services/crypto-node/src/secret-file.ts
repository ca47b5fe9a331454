import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, mkdirSync, openSync, rmSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { CustodyError } from '@custody/core';

/**
 * Writes a new secret file (mode 0600), all or nothing: the bytes go to a temporary name in the
 * same directory, are synced, and are then hard-linked to `path`, which fails when `path` exists.
 * So a full disk or a crash never leaves an empty or partial key file that a later start would
 * take for the key, and an existing file is never replaced.
 *
 * Errors: ERR_FILE_EXISTS when `path` exists; ERR_FILE_UNWRITABLE (with the system's code in
 * `detail.errno`: ENOSPC, EROFS, EACCES...) when it cannot be written. Nothing is left behind.
 */
export function writeNewSecretFile(path: string, data: Uint8Array | string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const unwritable = (e: unknown) =>
    new CustodyError('ERR_FILE_UNWRITABLE', `cannot write ${path} (${(e as NodeJS.ErrnoException).code ?? 'error'}); nothing was written`, {
      cause: e,
      detail: { path, errno: (e as NodeJS.ErrnoException).code ?? 'unknown' },
    });
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
    linkSync(tmp, path);
    // The new name made durable too: after a power loss the key file is there, or was never written.
    const dir = openSync(dirname(path), 'r');
    try {
      fsyncSync(dir);
    } finally {
      closeSync(dir);
    }
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new CustodyError('ERR_FILE_EXISTS', `${path} exists; it is not replaced`, { detail: { path } });
    throw unwritable(e);
  } finally {
    rmSync(tmp, { force: true });
  }
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
