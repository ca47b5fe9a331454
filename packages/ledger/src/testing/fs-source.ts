// Test helpers (Node only; excluded from the browser-safe build).
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { CustodyError } from '@custody/core';
import type { LogSource } from '../client/log-source.js';
import { tilePath, type TileId } from '../tiles/paths.js';

/** A tiled log laid out in a directory, as `custody log serve` writes it. */
export function dirLogSource(dir: string): LogSource {
  const read = (p: string): Uint8Array<ArrayBuffer> => {
    try {
      const b = readFileSync(join(dir, p));
      return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
    } catch {
      throw new CustodyError('ERR_TLOG_TILE', 'tile not found', { detail: { path: p } });
    }
  };
  return {
    readCheckpoint: () => new Promise<Uint8Array>((resolve) => resolve(read('checkpoint'))),
    readTile: (t: TileId) => new Promise<Uint8Array>((resolve) => resolve(read(tilePath(t)))),
  };
}

/** Every file under `dir`, keyed by its path relative to `dir`. */
export function readTree(dir: string): Map<string, Uint8Array> {
  const out = new Map<string, Uint8Array>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), new Uint8Array(readFileSync(p)));
    }
  };
  walk(dir);
  return out;
}

/** A LogSource over an in-memory map of paths (tests can tamper with it). */
export function mapLogSource(files: Map<string, Uint8Array>): LogSource {
  const get = (p: string): Promise<Uint8Array> => {
    const b = files.get(p);
    return b ? Promise.resolve(b) : Promise.reject(new CustodyError('ERR_TLOG_TILE', 'tile not found', { detail: { path: p } }));
  };
  return { readCheckpoint: () => get('checkpoint'), readTile: (t) => get(tilePath(t)) };
}
