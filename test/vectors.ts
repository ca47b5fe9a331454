// Test-only helper: where the shared conformance vectors live (../shared/vectors by default).
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, resolve } from 'node:path';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..');

export const VECTORS_DIR = process.env.CUSTODY_VECTORS ?? resolve(repoRoot, '..', 'shared', 'vectors');

export function vectorPath(rel: string): string {
  return resolve(VECTORS_DIR, rel);
}

export function readVector(rel: string): Uint8Array<ArrayBuffer> {
  const b = readFileSync(vectorPath(rel));
  return new Uint8Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength));
}

export function readVectorText(rel: string): string {
  return readFileSync(vectorPath(rel), 'utf8');
}

export function hasVectors(): boolean {
  return existsSync(VECTORS_DIR);
}

export { repoRoot };
