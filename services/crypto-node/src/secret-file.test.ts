import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { modeExposure, privateDirWarning, secretFileWarning, writeNewSecretFile } from './secret-file.js';

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

  it('writes a file whose name is as long as the file system allows (the temporary name is bounded)', () => {
    for (const name of ['k'.repeat(240), 'é'.repeat(127)]) {
      const path = join(dir, name);
      writeNewSecretFile(path, 'secret');
      expect(readFileSync(path, 'utf8')).toBe('secret');
      rmSync(path);
    }
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('claimed: replaces the caller\'s empty claim whole, and nothing else', () => {
    const path = join(dir, 'claimed');
    writeNewSecretFile(path, '');
    expect(() => writeNewSecretFile(path, 'token')).toThrow(expect.objectContaining({ code: 'ERR_FILE_EXISTS' }));
    writeNewSecretFile(path, 'token\n', { claimed: true });
    expect(readFileSync(path, 'utf8')).toBe('token\n');
    expect(statSync(path).mode & 0o777).toBe(0o600);
    // No longer an empty claim: not replaced again. No claim at all: nothing is created.
    expect(() => writeNewSecretFile(path, 'other', { claimed: true })).toThrow(expect.objectContaining({ code: 'ERR_FILE_EXISTS' }));
    expect(readFileSync(path, 'utf8')).toBe('token\n');
    expect(() => writeNewSecretFile(join(dir, 'unclaimed'), 'x', { claimed: true })).toThrow(expect.objectContaining({ code: 'ERR_FILE_EXISTS' }));
    expect(readdirSync(dir).filter((f) => f === 'unclaimed' || f.endsWith('.tmp'))).toEqual([]);
  });
});

describe('modeExposure, secretFileWarning and privateDirWarning', () => {
  const dir = mkdtempSync(join(tmpdir(), 'custody-exposed-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    [0o600, undefined],
    [0o400, undefined],
    [0o700, undefined],
    [0o611, undefined],
    [0o640, 'the group can read it (mode 0640)'],
    [0o644, 'the group and other users can read it (mode 0644)'],
    [0o602, 'other users can write it (mode 0602)'],
    [0o666, 'the group and other users can read and write it (mode 0666)'],
    [0o100644, 'the group and other users can read it (mode 0644)'],
  ])('mode %s: %s', (mode, expected) => {
    expect(modeExposure(mode)).toBe(expected);
  });

  it('warns for a key file others can read, not for a 0600 one, a missing one or a directory', () => {
    const key = join(dir, 'admin.key');
    writeNewSecretFile(key, 'token');
    expect(secretFileWarning(key, 'admin key file')).toBeUndefined();
    chmodSync(key, 0o644);
    expect(secretFileWarning(key, 'admin key file')).toBe(`the admin key file ${key}: the group and other users can read it (mode 0644); chmod 600 it`);
    expect(secretFileWarning(join(dir, 'absent'), 'key file')).toBeUndefined();
    expect(secretFileWarning(dir, 'key file')).toBeUndefined();
  });

  it('warns for a state directory others can write into, sticky or not, not for 0700 or 0755', () => {
    const state = join(dir, 'state');
    mkdirSync(state, { mode: 0o700 });
    expect(privateDirWarning(state, 'state directory')).toBeUndefined();
    chmodSync(state, 0o755);
    expect(privateDirWarning(state, 'state directory')).toBeUndefined();
    chmodSync(state, 0o1777);
    expect(privateDirWarning(state, 'state directory')).toBe(`the state directory ${state}: the group and other users can create files in it (mode 01777); chmod 700 it`);
    chmodSync(state, 0o770);
    expect(privateDirWarning(state, 'state directory')).toMatch(/: the group can create and remove files in it \(mode 0770\)/);
    expect(privateDirWarning(join(dir, 'absent'), 'state directory')).toBeUndefined();
  });
});
