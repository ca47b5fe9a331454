// The broker's EAR key file meets an I/O error (fd exhaustion, EIO) while a rotated version is
// read: the signer fails closed for that moment, but reads that version again on the next look
// (refresh, watch, reload) instead of refusing it until the file changes; a version that fails on
// its contents is still read once only.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type * as FsPromises from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { EarSigner, EAR_KEY_RECHECK_MS } from './ear-signer.js';
import { rotateEarKeyFile } from './ear-key-set.js';

const io = vi.hoisted(() => ({ failOpen: [] as string[], failRead: [] as string[], opens: 0 }));
vi.mock('node:fs/promises', async (original) => {
  const real = await original<typeof FsPromises>();
  const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(`${code}: injected`), { code, errno: -1, syscall: 'open' });
  return {
    ...real,
    open: async (...args: Parameters<typeof real.open>) => {
      io.opens++;
      const openCode = io.failOpen.shift();
      if (openCode !== undefined) throw errno(openCode);
      const fh = await real.open(...args);
      const readCode = io.failRead.shift();
      if (readCode !== undefined) Object.assign(fh, { read: () => Promise.reject(errno(readCode)) });
      return fh;
    },
  };
});

describe('EarSigner on a transient I/O error', () => {
  let dir: string;
  let path: string;
  let mono: number;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'custody-ear-io-'));
    path = join(dir, 'ear.jwk');
    mono = 0;
    io.failOpen = [];
    io.failRead = [];
    io.opens = 0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('one EMFILE while opening a rotated file fails closed once, and the next refresh loads it and serves again', async () => {
    const signer = await EarSigner.open(path, { monotonicMs: () => mono });
    const rotated = await rotateEarKeyFile(path);
    io.failOpen = ['EMFILE'];
    mono += EAR_KEY_RECHECK_MS;
    const first = await signer.refresh('request');
    expect(first).toMatchObject({ changed: false, error: { code: 'ERR_EAR_KEY' } });
    // Fail closed while the rotated version could not be read.
    expect(signer.unusable()?.code).toBe('ERR_EAR_KEY');
    expect(signer.jwks.keys).toHaveLength(0);
    mono += EAR_KEY_RECHECK_MS;
    expect(await signer.refresh('request')).toEqual({ changed: true });
    expect(signer.unusable()).toBeUndefined();
    expect(signer.kid).toBe(rotated.kid);
    expect(signer.jwks.keys.map((k) => k.kid)[0]).toBe(rotated.kid);
  });

  it('a repeated I/O error is reported once and retried on every look; reload() after EIO on read loads the good file', async () => {
    const signer = await EarSigner.open(path, { monotonicMs: () => mono });
    const rotated = await rotateEarKeyFile(path);
    io.failOpen = ['ENFILE', 'ENFILE', 'ENFILE'];
    mono += EAR_KEY_RECHECK_MS;
    expect((await signer.refresh('request')).error?.code).toBe('ERR_EAR_KEY');
    const opensAfterFirst = io.opens;
    for (let i = 0; i < 2; i++) {
      mono += EAR_KEY_RECHECK_MS;
      // Read again each time (an open each), not reported again.
      expect(await signer.refresh('request')).toEqual({ changed: false });
      expect(io.opens).toBe(opensAfterFirst + i + 1);
      expect(signer.unusable()?.code).toBe('ERR_EAR_KEY');
    }
    io.failRead = ['EIO'];
    await expect(signer.reload()).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
    expect(signer.jwks.keys).toHaveLength(0);
    expect(await signer.reload()).toBe(true);
    expect(signer.unusable()).toBeUndefined();
    expect(signer.kid).toBe(rotated.kid);
  });

  it('a version that fails on its contents is still read once only, even after an I/O error on it', async () => {
    const signer = await EarSigner.open(path, { monotonicMs: () => mono });
    const k0 = signer.kid;
    writeFileSync(path, '{"kty":"EC","d":"partial', { mode: 0o600 });
    io.failOpen = ['EMFILE'];
    mono += EAR_KEY_RECHECK_MS;
    expect((await signer.refresh('request')).error?.code).toBe('ERR_EAR_KEY');
    // Read again after the I/O error: now the contents fail, which is a new finding (reported).
    mono += EAR_KEY_RECHECK_MS;
    expect((await signer.refresh('request')).error?.code).toBe('ERR_EAR_KEY');
    const opens = io.opens;
    for (let i = 0; i < 3; i++) {
      mono += EAR_KEY_RECHECK_MS;
      expect(await signer.refresh('request')).toEqual({ changed: false });
      await expect(signer.reload()).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
    }
    expect(io.opens).toBe(opens);
    expect(signer.unusable()?.code).toBe('ERR_EAR_KEY');
    expect(signer.kid).toBe(k0);
  });
});
