import { closeSync, constants, fstatSync, openSync, readSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CustodyError } from '@custody/core';
import { secretFileWarning } from '@custody/crypto-node';

/** Largest file the CLI will read as evidence, certificates or collateral. */
export const MAX_INPUT_FILE = 16 * 1024 * 1024;

/**
 * A regular file's bytes, at most MAX_INPUT_FILE of them. Anything else is refused before a byte
 * is read: a directory, and a FIFO, device or socket, whose reads would wait for ever or never
 * end (opened without blocking, so a FIFO with no writer is refused too). The read stops past the
 * bound even when the file grows while it is read.
 */
export function readInputFile(path: string, what = 'file'): Uint8Array<ArrayBuffer> {
  return readRegularFile(path, what).bytes;
}

/**
 * A secret file (a key, an API key) as readInputFile reads it, with a warning on stderr when
 * users other than its owner can read or write it (judged on the file that was read). Warned,
 * not refused: a Kubernetes Secret volume is group- or world-readable unless its defaultMode
 * says otherwise.
 */
export function readSecretFile(path: string, what: string): Uint8Array<ArrayBuffer> {
  const { bytes, mode } = readRegularFile(path, what);
  const warning = secretFileWarning(path, what, mode);
  if (warning) process.stderr.write(`custody: warning: ${warning}\n`);
  return bytes;
}

function readRegularFile(path: string, what: string): { bytes: Uint8Array<ArrayBuffer>; mode: number } {
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP') throw new CustodyError('ERR_FILE_NOT_FOUND', `${what} not found: ${path}`);
    throw new CustodyError('ERR_FILE_UNREADABLE', `${what} cannot be read (${code ?? 'error'}): ${path}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new CustodyError('ERR_FILE_NOT_REGULAR', `${what} is not a regular file (${st.isDirectory() ? 'a directory' : 'a FIFO, device or socket'}): ${path}`);
    if (st.size > MAX_INPUT_FILE) throw tooLarge(what, path);
    const buf = new Uint8Array(new ArrayBuffer(st.size + 1));
    let n = 0;
    for (;;) {
      if (n === buf.length) throw tooLarge(what, path);
      const got = readSync(fd, buf, n, buf.length - n, null);
      if (got === 0) break;
      n += got;
    }
    return { bytes: n === buf.length ? buf : new Uint8Array(buf.buffer.slice(0, n)), mode: st.mode };
  } catch (e) {
    if (e instanceof CustodyError) throw e;
    throw new CustodyError('ERR_FILE_UNREADABLE', `${what} cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'}): ${path}`);
  } finally {
    closeSync(fd);
  }
}

function tooLarge(what: string, path: string): CustodyError {
  return new CustodyError('ERR_INPUT_TOO_LARGE', `${what} is larger than ${MAX_INPUT_FILE} bytes: ${path}`);
}

/**
 * Every regular file in a directory, keyed by its name without the extension
 * (`tcbInfo.json` → `tcbInfo`), which is how verifiers name their collateral; a single file is
 * keyed `single` (the caller names it, e.g. `bundle`). Entries that are not regular files (or
 * links to them), dangling links included, are passed over.
 */
export function readNamedFiles(path: string, what: string, single = 'bundle'): Record<string, Uint8Array<ArrayBuffer>> {
  let isDir: boolean;
  try {
    isDir = statSync(path).isDirectory();
  } catch {
    throw new CustodyError('ERR_FILE_NOT_FOUND', `${what} not found: ${path}`);
  }
  const key = (name: string): string => name.replace(/\.[A-Za-z0-9]+$/, '');
  if (!isDir) return { [single]: readInputFile(path, what) };
  // Entries, not assignments: a file named __proto__.pem is a member of that name, not the object's prototype.
  const out: [string, Uint8Array<ArrayBuffer>][] = [];
  for (const name of readdirSync(path).sort()) {
    const p = join(path, name);
    if (statSync(p, { throwIfNoEntry: false })?.isFile()) out.push([key(name), readInputFile(p, what)]);
  }
  return Object.fromEntries(out);
}

/**
 * RFC 3339: a date and a time with its offset (`2023-06-01T00:00:00Z`, `...+02:00`, seconds
 * optional, fractions allowed), or a date alone (midnight UTC). A day the month does not have
 * (`2026-02-30`, which Date rolls over into March) and a time without an offset (read in the
 * machine's own zone, so another instant on another machine) are refused.
 */
export function parseTime(s: string | undefined): Date | undefined {
  if (s === undefined) return undefined;
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(\.\d{1,9})?)?([Zz]|[+-]\d{2}:\d{2}))?$/.exec(s);
  const bad = () => new CustodyError('ERR_USAGE', `--at must be an RFC 3339 time such as 2023-06-01T00:00:00Z, got ${JSON.stringify(s.slice(0, 100))}`);
  if (!m) throw bad();
  const [year, month, day] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const daysInMonth = new Date(Date.UTC(year, month, 0)).getUTCDate();
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth) throw bad();
  const d = new Date(m[4] === undefined ? `${m[1]}-${m[2]}-${m[3]}T00:00:00Z` : s.replace(' ', 'T'));
  if (Number.isNaN(d.getTime())) throw bad();
  return d;
}
