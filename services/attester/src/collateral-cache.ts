import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readFile, rename, stat, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { fromBase64, toBase64, type Bytes } from '@custody/core';
import type { CollateralStore, StoredCollateral } from '@custody/attest';

/** Largest cache file read back (a response is bounded at 1 MiB; base64 and JSON add a third). */
const MAX_ENTRY_FILE = 2 * 1024 * 1024;
const FORMAT = 'custody-collateral-v1';

interface EntryFile {
  format: string;
  url: string;
  expiresAt: string;
  headers: Record<string, string>;
  body: string;
  /** SHA-256 of the body, hex: a truncated or altered file is detected and fetched again. */
  sha256: string;
}

const hashHex = (b: Uint8Array | string): string => createHash('sha256').update(b).digest('hex');

/**
 * Fetched collateral on disk, one JSON file per URL (named by the URL's SHA-256), kept until the
 * collateral's own expiry. Writes are atomic (temporary file, fsync, rename), so a reader sees a
 * whole entry or none; an entry that does not parse, names another URL or fails its digest is
 * deleted and reported missing, so the caller fetches it again. Contents are public collateral,
 * untrusted: the verifier checks them on every use.
 */
export class DiskCollateralStore implements CollateralStore {
  constructor(readonly dir: string) {}

  private file(url: string): string {
    return join(this.dir, `${hashHex(url)}.json`);
  }

  async get(url: string, now: Date): Promise<StoredCollateral | undefined> {
    const file = this.file(url);
    let text: string;
    try {
      if ((await stat(file)).size > MAX_ENTRY_FILE) return await this.discard(file);
      text = await readFile(file, 'utf8');
    } catch {
      return undefined;
    }
    const entry = readEntry(text, url);
    if (!entry) return this.discard(file);
    if (entry.expiresAt.getTime() <= now.getTime()) return undefined;
    return entry;
  }

  async put(entry: StoredCollateral): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = this.file(entry.url);
    const doc: EntryFile = { format: FORMAT, url: entry.url, expiresAt: entry.expiresAt.toISOString(), headers: entry.headers, body: toBase64(entry.body), sha256: hashHex(entry.body) };
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

  private async discard(file: string): Promise<undefined> {
    await unlink(file).catch(() => undefined);
    return undefined;
  }
}

function readEntry(text: string, url: string): StoredCollateral | undefined {
  let doc: Partial<EntryFile>;
  try {
    doc = JSON.parse(text) as Partial<EntryFile>;
  } catch {
    return undefined;
  }
  if (typeof doc !== 'object' || doc === null || doc.format !== FORMAT || doc.url !== url) return undefined;
  if (typeof doc.body !== 'string' || typeof doc.sha256 !== 'string' || typeof doc.expiresAt !== 'string') return undefined;
  if (typeof doc.headers !== 'object' || doc.headers === null || Array.isArray(doc.headers)) return undefined;
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(doc.headers)) {
    if (typeof v !== 'string') return undefined;
    headers[k] = v;
  }
  const expiresAt = new Date(doc.expiresAt);
  if (Number.isNaN(expiresAt.getTime())) return undefined;
  let body: Bytes;
  try {
    body = fromBase64(doc.body);
  } catch {
    return undefined;
  }
  if (hashHex(body) !== doc.sha256) return undefined;
  return { url, body, headers, expiresAt };
}
