import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { parseTime, readInputFile, readNamedFiles, readSecretFile } from './files.js';

describe('readSecretFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'custody-cli-files-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  afterEach(() => vi.restoreAllMocks());

  const written = (name: string, mode: number) => {
    const path = join(dir, name);
    writeFileSync(path, 'sk-token-value\n');
    chmodSync(path, mode);
    return path;
  };

  it('reads a 0600 file without a word', () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    expect(new TextDecoder().decode(readSecretFile(written('private.key', 0o600), 'API key file'))).toBe('sk-token-value\n');
    expect(err).not.toHaveBeenCalled();
  });

  it('warns, naming the file, who can get at it and the fix, when others can read it; never prints the contents', () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const path = written('shared.key', 0o644);
    expect(new TextDecoder().decode(readSecretFile(path, 'API key file'))).toBe('sk-token-value\n');
    expect(err).toHaveBeenCalledTimes(1);
    const line = String(err.mock.calls[0]![0]);
    expect(line).toBe(`custody: warning: the API key file ${path}: the group and other users can read it (mode 0644); chmod 600 it\n`);
    expect(line).not.toContain('sk-token-value');
  });

  it('a missing file is the same typed error as readInputFile, with no warning', () => {
    const err = vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    const missing = join(dir, 'absent.key');
    expect(() => readSecretFile(missing, 'API key file')).toThrow(expect.objectContaining({ code: 'ERR_FILE_NOT_FOUND' }));
    expect(() => readInputFile(missing, 'API key file')).toThrow(expect.objectContaining({ code: 'ERR_FILE_NOT_FOUND' }));
    expect(err).not.toHaveBeenCalled();
  });
});

describe('parseTime', () => {
  it.each([
    ['2023-06-01T00:00:00Z', '2023-06-01T00:00:00.000Z'],
    ['2023-06-01t12:30:15.25z', '2023-06-01T12:30:15.250Z'],
    ['2023-06-01T02:00:00+02:00', '2023-06-01T00:00:00.000Z'],
    ['2023-06-01T10:00Z', '2023-06-01T10:00:00.000Z'],
    ['2023-06-01 10:00:00Z', '2023-06-01T10:00:00.000Z'],
    ['2024-02-29T00:00:00Z', '2024-02-29T00:00:00.000Z'],
    ['2023-06-01', '2023-06-01T00:00:00.000Z'],
  ])('%s is %s', (text, iso) => {
    expect(parseTime(text)!.toISOString()).toBe(iso);
  });

  it.each(['2026-02-30T00:00:00Z', '2023-02-29', '2023-04-31T00:00:00Z', '2023-13-01T00:00:00Z', '2023-00-10', '2023-06-01T25:00:00Z', '2023-06-01T10:00:00', '2023-06-01T10:00:00+0200', 'June 1 2023', '2023-06-01T00:00:00Zjunk', ''])(
    '%j is a usage error, not another day',
    (text) => {
      expect(() => parseTime(text)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    },
  );

  it('no --at is undefined', () => {
    expect(parseTime(undefined)).toBeUndefined();
  });
});

describe('readNamedFiles', () => {
  it('keys each file by its name without the extension; a file named __proto__ is a member, not the prototype', () => {
    const dir = mkdtempSync(join(tmpdir(), 'custody-cli-named-'));
    try {
      writeFileSync(join(dir, 'tcbInfo.json'), '{}');
      writeFileSync(join(dir, '__proto__.pem'), 'x');
      const files = readNamedFiles(dir, 'collateral');
      expect(Object.getPrototypeOf(files)).toBe(Object.prototype);
      expect(Object.keys(files).sort()).toEqual(['__proto__', 'tcbInfo']);
      expect(new TextDecoder().decode(files.tcbInfo)).toBe('{}');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
