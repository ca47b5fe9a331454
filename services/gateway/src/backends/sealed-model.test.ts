import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalBytes, toCustodyError } from '@custody/core';
import { isSealedModelFile, readSealedModelHeader, sealModelFile, SEALED_MODEL_MAGIC, unsealModelFile } from './sealed-model.js';

let dir: string;
let n = 0;
const fresh = (name: string) => join(dir, `${n++}-${name}`);
const key = randomBytes(32);
const plain = randomBytes(10_000);
let sealedPath: string;
let sealed: Buffer;

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return toCustodyError(e).code;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'custody-sealed-'));
  const input = fresh('model.gguf');
  await writeFile(input, plain);
  sealedPath = fresh('model.sealed');
  await sealModelFile(input, sealedPath, { key, keyName: 'model-key', keyVersion: 3, modelId: 'tiny-llama', label: 'Tiny llama (test)', chunkSize: 4096 });
  sealed = await readFile(sealedPath);
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sealed models (custody.sealed-model/v1)', () => {
  it('round-trips: the header is public metadata, the weights come back byte for byte', async () => {
    const info = await readSealedModelHeader(sealedPath);
    expect(info.header).toMatchObject({ format: 'custody.sealed-model/v1', cipher: 'AES-256-GCM', key: { name: 'model-key', version: 3 }, model: { id: 'tiny-llama', label: 'Tiny llama (test)' }, size: 10_000, chunkSize: 4096 });
    expect(info.chunks).toBe(3);
    // Magic, length, header, then three chunks of ciphertext and tag: nothing else.
    expect(sealed.length).toBe(12 + info.headerBytes.length + 10_000 + 3 * 16);
    expect(sealed.subarray(0, 8)).toEqual(Buffer.from(SEALED_MODEL_MAGIC));
    // No plaintext stretch survives in the sealed file.
    expect(sealed.includes(plain.subarray(5000, 5032))).toBe(false);
    const out = fresh('plain');
    const got = await unsealModelFile(sealedPath, key, out);
    expect(await readFile(out)).toEqual(plain);
    expect(got.header.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('seals a file whose size is a multiple of the chunk size (the last chunk is full)', async () => {
    const input = fresh('even');
    const bytes = randomBytes(8192);
    await writeFile(input, bytes);
    const s = fresh('even.sealed');
    await sealModelFile(input, s, { key, keyName: 'k', keyVersion: 1, modelId: 'even', chunkSize: 4096 });
    const out = fresh('even.plain');
    expect((await unsealModelFile(s, key, out)).chunks).toBe(2);
    expect(await readFile(out)).toEqual(bytes);
  });

  it('two seals of the same file differ (fresh salt), both open', async () => {
    const input = fresh('same');
    await writeFile(input, plain);
    const a = fresh('a.sealed');
    const b = fresh('b.sealed');
    await sealModelFile(input, a, { key, keyName: 'k', keyVersion: 1, modelId: 'm', chunkSize: 4096 });
    await sealModelFile(input, b, { key, keyName: 'k', keyVersion: 1, modelId: 'm', chunkSize: 4096 });
    expect((await readFile(a)).equals(await readFile(b))).toBe(false);
  });

  it('tells a sealed model from a GGUF file and from a missing one', async () => {
    expect(await isSealedModelFile(sealedPath)).toBe(true);
    const gguf = fresh('x.gguf');
    await writeFile(gguf, Buffer.concat([Buffer.from('GGUF'), randomBytes(64)]));
    expect(await isSealedModelFile(gguf)).toBe(false);
    expect(await isSealedModelFile(fresh('absent'))).toBe(false);
    expect(await codeOf(readSealedModelHeader(gguf))).toBe('ERR_MODEL_SEALED');
    expect(await codeOf(readSealedModelHeader(fresh('absent')))).toBe('ERR_GATEWAY_MODEL_FILE');
  });

  // Tampered twins of the positive vector above: every one fails with a stable code and leaves no plaintext behind.
  const headerLength = () => sealed.readUInt32BE(8);
  const chunkAt = (i: number) => 12 + headerLength() + i * (4096 + 16);
  const flip = (at: number) => (b: Buffer) => {
    const c = Buffer.from(b);
    c[at] = c[at]! ^ 0x01;
    return c;
  };
  const twins: [string, (b: Buffer) => Buffer, string][] = [
    ['magic changed', flip(0), 'ERR_MODEL_SEALED'],
    ['header length changed', flip(11), 'ERR_MODEL_SEALED'],
    ['a digit of the header digest changed (header bound into the key)', (b) => {
      const c = Buffer.from(b);
      const at = c.indexOf('"digest":"sha256:') + '"digest":"sha256:'.length;
      c[at] = c[at] === 0x30 ? 0x31 : 0x30;
      return c;
    }, 'ERR_MODEL_UNSEAL'],
    ['the model id in the header changed', (b) => Buffer.from(b.toString('latin1').replace('"id":"tiny-llama"', '"id":"tiny-llamb"'), 'latin1'), 'ERR_MODEL_UNSEAL'],
    ['first ciphertext byte', (b) => flip(chunkAt(0))(b), 'ERR_MODEL_UNSEAL'],
    ['tag of the middle chunk', (b) => flip(chunkAt(1) + 4096 + 3)(b), 'ERR_MODEL_UNSEAL'],
    ['last byte of the file (last tag)', (b) => flip(b.length - 1)(b), 'ERR_MODEL_UNSEAL'],
    ['truncated by one byte', (b) => b.subarray(0, b.length - 1), 'ERR_MODEL_UNSEAL'],
    ['one byte appended', (b) => Buffer.concat([b, Buffer.of(0)]), 'ERR_MODEL_UNSEAL'],
    ['first two chunks swapped', (b) => {
      const c = Buffer.from(b);
      const one = b.subarray(chunkAt(0), chunkAt(1));
      const two = b.subarray(chunkAt(1), chunkAt(2));
      two.copy(c, chunkAt(0));
      one.copy(c, chunkAt(1));
      return c;
    }, 'ERR_MODEL_UNSEAL'],
    ['header not in canonical form (a space added)', (b) => {
      const h = b.subarray(12, 12 + headerLength()).toString('utf8').replace('{"chunkSize"', '{ "chunkSize"');
      const len = Buffer.alloc(4);
      len.writeUInt32BE(Buffer.byteLength(h));
      return Buffer.concat([b.subarray(0, 8), len, Buffer.from(h), b.subarray(12 + headerLength())]);
    }, 'ERR_MODEL_SEALED'],
    ['header with an unknown member', (b) => {
      const header = JSON.parse(b.subarray(12, 12 + headerLength()).toString('utf8')) as Record<string, unknown>;
      const h = Buffer.from(canonicalBytes({ ...header, extra: 1 }));
      const len = Buffer.alloc(4);
      len.writeUInt32BE(h.length);
      return Buffer.concat([b.subarray(0, 8), len, h, b.subarray(12 + headerLength())]);
    }, 'ERR_MODEL_SEALED'],
  ];

  it.each(twins)('refuses a sealed model with %s', async (_name, tamper, code) => {
    const bad = fresh('tampered.sealed');
    await writeFile(bad, tamper(sealed));
    const out = fresh('tampered.plain');
    expect(await codeOf(unsealModelFile(bad, key, out))).toBe(code);
    expect(existsSync(out)).toBe(false);
  });

  it('refuses a wrong key, and a key of the wrong length, keeping no plaintext', async () => {
    const out = fresh('wrong.plain');
    expect(await codeOf(unsealModelFile(sealedPath, randomBytes(32), out))).toBe('ERR_MODEL_UNSEAL');
    expect(existsSync(out)).toBe(false);
    expect(await codeOf(unsealModelFile(sealedPath, randomBytes(16), out))).toBe('ERR_MODEL_UNSEAL');
    expect(existsSync(out)).toBe(false);
  });

  it('never overwrites an existing file, with either operation', async () => {
    const existing = fresh('existing');
    await writeFile(existing, 'keep me');
    expect(await codeOf(unsealModelFile(sealedPath, key, existing))).not.toBe('resolved');
    const input = fresh('in');
    await writeFile(input, plain);
    expect(await codeOf(sealModelFile(input, existing, { key, keyName: 'k', keyVersion: 1, modelId: 'm' }))).not.toBe('resolved');
    expect(await readFile(existing, 'utf8')).toBe('keep me');
  });

  it('refuses to seal an empty file or under a bad key name or model id', async () => {
    const empty = fresh('empty');
    await writeFile(empty, '');
    expect(await codeOf(sealModelFile(empty, fresh('o'), { key, keyName: 'k', keyVersion: 1, modelId: 'm' }))).toBe('ERR_GATEWAY_MODEL_FILE');
    const input = fresh('in2');
    await writeFile(input, plain);
    const out = fresh('o2');
    expect(await codeOf(sealModelFile(input, out, { key, keyName: 'bad name', keyVersion: 1, modelId: 'm' }))).toBe('ERR_MODEL_SEALED');
    expect(await codeOf(sealModelFile(input, out, { key, keyName: 'k', keyVersion: 1, modelId: 'a b' }))).toBe('ERR_MODEL_SEALED');
    expect(await codeOf(sealModelFile(input, out, { key, keyName: 'k', keyVersion: 0, modelId: 'm' }))).toBe('ERR_MODEL_SEALED');
    expect(existsSync(out)).toBe(false);
  });

  // Before: open(path, 'r') on a FIFO with no writer waited for one forever.
  it('refuses a FIFO, or a link to one, at once (ERR_GATEWAY_MODEL_FILE), creating nothing', async () => {
    const fifo = fresh('fifo');
    execFileSync('mkfifo', [fifo]);
    const link = fresh('fifo-link');
    await symlink(fifo, link);
    for (const input of [fifo, link]) {
      const out = fresh('fifo.sealed');
      const err = await sealModelFile(input, out, { key, keyName: 'k', keyVersion: 1, modelId: 'm' }).then(() => undefined, (e: unknown) => toCustodyError(e));
      expect(err).toMatchObject({ code: 'ERR_GATEWAY_MODEL_FILE', message: expect.stringContaining('not a regular file') as unknown });
      expect(existsSync(out)).toBe(false);
    }
  }, 10_000);

  it('names why the sealed file cannot be created (a file where its directory should be)', async () => {
    const input = fresh('in3');
    await writeFile(input, plain);
    const notDir = fresh('not-a-dir');
    await writeFile(notDir, 'x');
    const err = await sealModelFile(input, join(notDir, 'o'), { key, keyName: 'k', keyVersion: 1, modelId: 'm' }).then(() => undefined, (e: unknown) => toCustodyError(e));
    expect(err).toMatchObject({ code: 'ERR_GATEWAY_MODEL_FILE', detail: { reason: 'ENOTDIR' } });
  });
});
