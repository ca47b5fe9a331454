import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CustodyError } from '@custody/core';

/** Largest file the CLI will read as evidence, certificates or collateral. */
export const MAX_INPUT_FILE = 16 * 1024 * 1024;

export function readInputFile(path: string, what = 'file'): Uint8Array<ArrayBuffer> {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    throw new CustodyError('ERR_FILE_NOT_FOUND', `${what} not found: ${path}`);
  }
  if (size > MAX_INPUT_FILE) throw new CustodyError('ERR_INPUT_TOO_LARGE', `${what} is larger than ${MAX_INPUT_FILE} bytes: ${path}`);
  const b = readFileSync(path);
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

/**
 * Every regular file in a directory, keyed by its name without the extension
 * (`tcbInfo.json` → `tcbInfo`), which is how verifiers name their collateral; a single file is
 * keyed `single` (the caller names it, e.g. `bundle`).
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
  const out: Record<string, Uint8Array<ArrayBuffer>> = {};
  for (const name of readdirSync(path).sort()) {
    const p = join(path, name);
    if (statSync(p).isFile()) out[key(name)] = readInputFile(p, what);
  }
  return out;
}

export function parseTime(s: string | undefined): Date | undefined {
  if (s === undefined) return undefined;
  const d = new Date(s);
  if (Number.isNaN(d.getTime()) || !/^\d{4}-\d{2}-\d{2}/.test(s)) throw new CustodyError('ERR_USAGE', `--at must be an RFC 3339 time, got ${JSON.stringify(s)}`);
  return d;
}
