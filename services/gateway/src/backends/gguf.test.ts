import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, type Clock } from '@custody/core';
import { encodeGgufMetadata, parseGgufHeader } from './gguf.js';
import { describeGgufFile, LlamaCppBackend } from './llama-cpp.js';

const clock: Clock = () => new Date('2025-06-01T00:00:00Z');
// A tiny GGUF header written by the test: what a llama-architecture file declares.
const META = {
  'general.architecture': 'llama',
  'general.name': 'tiny-test',
  'llama.context_length': 128,
  'llama.embedding_length': 8,
  'general.file_type': 1n,
  'tokenizer.ggml.model': 'llama',
  'tokenizer.ggml.tokens': ['<unk>', '<s>', '</s>', 'a', 'b', 'c', 'd', 'e', 'f', 'g'],
  'general.quantized': false,
};

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  throw new Error('expected a failure');
}

describe('GGUF header', () => {
  it('round-trips metadata written by the encoder', () => {
    const h = parseGgufHeader(encodeGgufMetadata(META, 3));
    expect(h.version).toBe(3);
    expect(h.tensorCount).toBe(3);
    expect(h.architecture).toBe('llama');
    expect(h.name).toBe('tiny-test');
    expect(h.metadata['llama.context_length']).toBe(128);
    expect(h.metadata['general.file_type']).toBe(1n);
    expect(h.metadata['general.quantized']).toBe(false);
    expect(h.metadata['tokenizer.ggml.tokens']).toEqual({ arrayType: 8, length: 10, head: ['<unk>', '<s>', '</s>', 'a', 'b', 'c', 'd', 'e'] });
  });

  it('refuses a wrong magic, an unknown version, truncation, duplicates and absurd counts', () => {
    const good = encodeGgufMetadata(META);
    const magic = good.slice();
    magic[0] = 0x47 ^ 1;
    expect(codeOf(() => parseGgufHeader(magic))).toBe('ERR_GATEWAY_MODEL_FILE');
    const version = good.slice();
    version[4] = 9;
    expect(codeOf(() => parseGgufHeader(version))).toBe('ERR_GATEWAY_MODEL_FILE');
    for (const n of [3, 11, 30, good.length - 1]) expect(codeOf(() => parseGgufHeader(good.subarray(0, n)))).toBe('ERR_GATEWAY_MODEL_FILE');
    const dup = encodeGgufMetadata({ a: 'x' });
    const twice = new Uint8Array([...dup, ...dup.subarray(24)]);
    twice[16] = 2;
    expect(codeOf(() => parseGgufHeader(twice))).toBe('ERR_GATEWAY_MODEL_FILE');
    const huge = good.slice();
    new DataView(huge.buffer).setBigUint64(16, 1n << 40n, true);
    expect(codeOf(() => parseGgufHeader(huge))).toBe('ERR_GATEWAY_MODEL_FILE');
  });
});

describe('GGUF files and the node-llama-cpp backend', () => {
  let dir: string;
  let file: string;
  let bytes: Uint8Array;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'custody-gguf-'));
    file = join(dir, 'tiny.gguf');
    bytes = new Uint8Array([...encodeGgufMetadata(META), ...new Uint8Array(4096).fill(0x5a)]);
    await writeFile(file, bytes);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('describes a file: header and SHA-256 of the whole file', async () => {
    const d = await describeGgufFile(file);
    expect(d.header.name).toBe('tiny-test');
    expect(d.size).toBe(bytes.length);
    expect(d.digest).toBe('sha256:' + createHash('sha256').update(bytes).digest('hex'));
  });

  it('a missing file or a non-GGUF file is ERR_GATEWAY_MODEL_FILE', async () => {
    await expect(describeGgufFile(join(dir, 'absent.gguf'))).rejects.toMatchObject({ code: 'ERR_GATEWAY_MODEL_FILE' });
    const other = join(dir, 'not.gguf');
    await writeFile(other, 'definitely not a model');
    await expect(describeGgufFile(other)).rejects.toMatchObject({ code: 'ERR_GATEWAY_MODEL_FILE' });
  });

  it('a well-formed header without tensors is refused by the engine (ERR_GATEWAY_MODEL_FILE), after the file was hashed', async () => {
    const e = await LlamaCppBackend.create({ modelPath: file, clock, onEngineLog: () => undefined }).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toBe('ERR_GATEWAY_MODEL_FILE');
    expect((e as CustodyError).detail?.digest).toBe('sha256:' + createHash('sha256').update(bytes).digest('hex'));
  });
});
