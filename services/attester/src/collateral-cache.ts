import { createHash, randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { mkdir, open, rename, stat, unlink, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { CustodyError, fromBase64, toBase64, type Bytes } from '@custody/core';
import type { CollateralStore, StoredCollateral } from '@custody/attest';

/** Largest cache file read back (a response is bounded at 1 MiB; base64 and JSON add a third). */
const MAX_ENTRY_FILE = 2 * 1024 * 1024;
const FORMAT = 'custody-collateral-v2';
/** Opening an entry never follows a symbolic link and never waits (a FIFO opens at once, then fails the type check). */
const ENTRY_OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

interface EntryFile {
  format: string;
  url: string;
  fetchedAt: string;
  expiresAt: string;
  headers: Record<string, string>;
  body: string;
  /** SHA-256 of the body, hex: a truncated or altered file is detected and fetched again. */
  sha256: string;
}

const hashHex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/** The current user, where the platform has one (not on Windows, where ownership and modes are not checked). */
const currentUid = (): number | undefined => process.getuid?.();

function refused(dir: string, reason: string, message: string, cause?: unknown): CustodyError {
  return new CustodyError('ERR_COLLATERAL_CACHE_DIR', `collateral cache ${dir}: ${message}`, { detail: { dir, reason }, ...(cause === undefined ? {} : { cause }) });
}

/**
 * Fetched collateral on disk, one JSON file per URL (named by the URL's SHA-256), kept until the
 * collateral's own expiry. The directory must be the current user's and not writable by group or
 * others (`open` creates it 0700), or every call fails with ERR_COLLATERAL_CACHE_DIR: entries are
 * only as trustworthy as the directory. An entry is opened without following links or waiting, and
 * read only if it is a regular file of the current user, not writable by others and within the size
 * bound, from the same handle. Writes are atomic (temporary file 0600, fsync, rename), so a reader
 * sees a whole entry or none; an entry that is anything else, does not parse, names another URL or
 * fails its digest is deleted and reported missing, so the caller fetches it again. Contents are
 * public collateral, untrusted: the verifier checks them on every use, and the caller recomputes
 * their life from their bytes.
 */
export class DiskCollateralStore implements CollateralStore {
  constructor(readonly dir: string) {}

  /** The store at `dir`, creating the directory (0700) when missing; ERR_COLLATERAL_CACHE_DIR when it cannot be used. */
  static async open(dir: string): Promise<DiskCollateralStore> {
    const store = new DiskCollateralStore(dir);
    await store.checkDir(true);
    return store;
  }

  private file(url: string): string {
    return join(this.dir, `${hashHex(url)}.json`);
  }

  /**
   * Refuses a directory that is not the current user's, or that group or others may write (they
   * could plant or swap entries). Returns false when it does not exist and `create` is false.
   */
  private async checkDir(create: boolean): Promise<boolean> {
    let st;
    try {
      st = await stat(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw refused(this.dir, 'stat', 'cannot be examined', e);
      if (!create) return false;
      try {
        await mkdir(this.dir, { recursive: true, mode: 0o700 });
        st = await stat(this.dir);
      } catch (e2) {
        throw refused(this.dir, 'create', 'cannot be created', e2);
      }
    }
    if (!st.isDirectory()) throw refused(this.dir, 'type', 'is not a directory');
    const uid = currentUid();
    if (uid !== undefined) {
      if (st.uid !== uid) throw refused(this.dir, 'owner', `is owned by uid ${st.uid}, not by the current user (${uid})`);
      if ((st.mode & 0o022) !== 0) throw refused(this.dir, 'mode', `is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); chmod go-w it`);
    }
    return true;
  }

  async get(url: string, now: Date): Promise<StoredCollateral | undefined> {
    if (!(await this.checkDir(false))) return undefined;
    const file = this.file(url);
    let fh: FileHandle;
    try {
      fh = await open(file, ENTRY_OPEN_FLAGS);
    } catch (e) {
      // ELOOP: a symbolic link where an entry belongs.
      return (e as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : this.discard(file);
    }
    let text: string | undefined;
    try {
      text = await readEntryFile(fh);
    } finally {
      await fh.close().catch(() => undefined);
    }
    const entry = text === undefined ? undefined : readEntry(text, url);
    if (!entry) return this.discard(file);
    if (entry.expiresAt.getTime() <= now.getTime()) return undefined;
    return entry;
  }

  async put(entry: StoredCollateral): Promise<void> {
    await this.checkDir(true);
    const file = this.file(entry.url);
    const doc: EntryFile = {
      format: FORMAT,
      url: entry.url,
      fetchedAt: entry.fetchedAt.toISOString(),
      expiresAt: entry.expiresAt.toISOString(),
      headers: entry.headers,
      body: toBase64(entry.body),
      sha256: hashHex(entry.body),
    };
    const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(JSON.stringify(doc));
      await fh.sync();
    } finally {
      await fh.close();
    }
    try {
      await rename(tmp, file);
    } catch (e) {
      await unlink(tmp).catch(() => undefined);
      throw e;
    }
  }

  async delete(url: string): Promise<void> {
    if (!(await this.checkDir(false))) return;
    await unlink(this.file(url)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
  }

  private async discard(file: string): Promise<undefined> {
    await unlink(file).catch(() => undefined);
    return undefined;
  }
}

/**
 * An entry's text, read from the handle that was checked: a regular file of the current user, not
 * writable by group or others, within the bound. Undefined for anything else (the entry is dropped).
 */
async function readEntryFile(fh: FileHandle): Promise<string | undefined> {
  const st = await fh.stat();
  const uid = currentUid();
  if (!st.isFile() || st.size > MAX_ENTRY_FILE) return undefined;
  if (uid !== undefined && (st.uid !== uid || (st.mode & 0o022) !== 0)) return undefined;
  // One byte more than the size fstat gave: a file that grew since is not read as a whole entry.
  const buf = Buffer.alloc(st.size + 1);
  let n = 0;
  while (n < buf.length) {
    const { bytesRead } = await fh.read(buf, n, buf.length - n, n);
    if (bytesRead === 0) break;
    n += bytesRead;
  }
  if (n > st.size) return undefined;
  return buf.subarray(0, n).toString('utf8');
}

function readEntry(text: string, url: string): StoredCollateral | undefined {
  let doc: Partial<EntryFile>;
  try {
    doc = JSON.parse(text) as Partial<EntryFile>;
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || doc.format !== FORMAT || doc.url !== url) return undefined;
  if (typeof doc.body !== 'string' || typeof doc.sha256 !== 'string' || typeof doc.expiresAt !== 'string' || typeof doc.fetchedAt !== 'string') return undefined;
  if (typeof doc.headers !== 'object' || doc.headers === null || Array.isArray(doc.headers)) return undefined;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc.headers)) {
    if (typeof v !== 'string') return undefined;
    headers[k] = v;
  }
  const expiresAt = new Date(doc.expiresAt);
  const fetchedAt = new Date(doc.fetchedAt);
  if (Number.isNaN(expiresAt.getTime()) || Number.isNaN(fetchedAt.getTime())) return undefined;
  let body: Bytes;
  try {
    body = fromBase64(doc.body);
  } catch {
    return undefined;
  }
  if (hashHex(body) !== doc.sha256) return undefined;
  return { url, body, headers, fetchedAt, expiresAt };
}
