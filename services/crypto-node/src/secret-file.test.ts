import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { writeNewSecretFile } from './secret-file.js';

describe('writeNewSecretFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'custody-secret-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes a new 0600 file whole, and leaves no temporary file', () => {
    const path = join(dir, 'key');
    writeNewSecretFile(path, 'secret\n');
    expect(readFileSync(path, 'utf8')).toBe('secret\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['key']);
  });

  it('never replaces an existing file (ERR_FILE_EXISTS), and leaves it as it was', () => {
    const path = join(dir, 'kept');
    writeFileSync(path, 'first');
    expect(() => writeNewSecretFile(path, 'second')).toThrow(expect.objectContaining({ code: 'ERR_FILE_EXISTS' }));
    expect(readFileSync(path, 'utf8')).toBe('first');
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a file that cannot be written is ERR_FILE_UNWRITABLE with the system code, and nothing is left', () => {
    expect(() => writeNewSecretFile(join(dir, 'missing-dir', 'key'), 'x')).toThrow(expect.objectContaining({ code: 'ERR_FILE_UNWRITABLE', detail: expect.objectContaining({ errno: 'ENOENT' }) }));
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });
});
