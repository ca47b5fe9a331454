import { describe, expect, it } from 'vitest';
import { ByteReader, fromUtf8 } from '@custody/core';
import { parseGgufHeader } from '../backends/gguf.js';
import { encodeGguf, gguf } from './gguf-writer.js';
import { TINY_LLAMA_BOS, TINY_LLAMA_EOS, tinyLlamaGguf, tinyVocab } from './tiny-llama.js';

interface TensorInfo {
  name: string;
  dims: bigint[];
  type: number;
  offset: bigint;
}

/** Reads the tensor infos that follow the metadata (parseGgufHeader stops there). */
function tensorInfos(bytes: Uint8Array): { infos: TensorInfo[]; end: number } {
  const h = parseGgufHeader(bytes);
  const r = new ByteReader(bytes, 'test');
  r.skip(h.headerBytes);
  const infos: TensorInfo[] = [];
  for (let i = 0; i < h.tensorCount; i++) {
    const name = fromUtf8(r.bytesView(Number(r.u64le())));
    const n = r.u32le();
    const dims: bigint[] = [];
    for (let d = 0; d < n; d++) dims.push(r.u64le());
    infos.push({ name, dims, type: r.u32le(), offset: r.u64le() });
  }
  return { infos, end: r.offset };
}

describe('GGUF writer', () => {
  it('writes the v3 header, typed metadata and aligned F32 tensor data byte for byte', () => {
    const bytes = encodeGguf({
      metadata: [
        ['general.architecture', gguf.string('llama')],
        ['a.u32', gguf.u32(7)],
        ['a.f32', gguf.f32(0.5)],
        ['a.bool', gguf.bool(true)],
        ['a.u64', gguf.u64(1n << 40n)],
        ['a.strs', gguf.strings(['x', 'yz'])],
        ['a.i32s', gguf.i32s([-1, 2])],
      ],
      tensors: [
        { name: 't0', dims: [3], data: new Float32Array([1, 2, 3]) },
        { name: 't1', dims: [2, 2], data: new Float32Array([-1, 0.25, 4, 8]) },
      ],
    });
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    expect([...bytes.subarray(0, 4)]).toEqual([0x47, 0x47, 0x55, 0x46]); // "GGUF"
    expect(dv.getUint32(4, true)).toBe(3);
    expect(dv.getBigUint64(8, true)).toBe(2n);
    expect(dv.getBigUint64(16, true)).toBe(7n);
    // First key: u64 length 20, "general.architecture", type 8 (string), u64 length 5, "llama".
    expect(dv.getBigUint64(24, true)).toBe(20n);
    expect(fromUtf8(bytes.subarray(32, 52))).toBe('general.architecture');
    expect(dv.getUint32(52, true)).toBe(8);
    expect(dv.getBigUint64(56, true)).toBe(5n);
    expect(fromUtf8(bytes.subarray(64, 69))).toBe('llama');

    const h = parseGgufHeader(bytes);
    expect(h.version).toBe(3);
    expect(h.architecture).toBe('llama');
    expect(h.metadata['a.u32']).toBe(7);
    expect(h.metadata['a.f32']).toBe(0.5);
    expect(h.metadata['a.bool']).toBe(true);
    expect(h.metadata['a.u64']).toBe(1n << 40n);
    expect(h.metadata['a.strs']).toEqual({ arrayType: 8, length: 2, head: ['x', 'yz'] });
    expect(h.metadata['a.i32s']).toEqual({ arrayType: 5, length: 2, head: [-1, 2] });

    const { infos, end } = tensorInfos(bytes);
    expect(infos).toEqual([
      { name: 't0', dims: [3n], type: 0, offset: 0n },
      { name: 't1', dims: [2n, 2n], type: 0, offset: 32n }, // 12 bytes of t0, padded to 32
    ]);
    const dataStart = Math.ceil(end / 32) * 32;
    expect(bytes.subarray(end, dataStart).every((b) => b === 0)).toBe(true);
    expect(dv.getFloat32(dataStart + 8, true)).toBe(3);
    expect(bytes.subarray(dataStart + 12, dataStart + 32).every((b) => b === 0)).toBe(true);
    expect(dv.getFloat32(dataStart + 32 + 4, true)).toBe(0.25);
    expect(bytes.length).toBe(dataStart + 64);
  });

  it('honours general.alignment and refuses malformed input', () => {
    const bytes = encodeGguf({ metadata: [['general.alignment', gguf.u32(64)]], tensors: [{ name: 'a', dims: [1], data: new Float32Array([1]) }, { name: 'b', dims: [1], data: new Float32Array([2]) }] });
    const { infos, end } = tensorInfos(bytes);
    expect(infos.map((t) => t.offset)).toEqual([0n, 64n]);
    expect(bytes.length).toBe(Math.ceil(end / 64) * 64 + 128);
    expect(() => encodeGguf({ metadata: [['general.alignment', gguf.u32(12)]], tensors: [] })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => encodeGguf({ metadata: [], tensors: [{ name: 'a', dims: [2], data: new Float32Array(3) }] })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => encodeGguf({ metadata: [['k', gguf.u32(1)], ['k', gguf.u32(2)]], tensors: [] })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
    expect(() => encodeGguf({ metadata: [], tensors: [{ name: 'x'.repeat(65), dims: [1], data: new Float32Array(1) }] })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }));
  });
});

describe('tiny llama model', () => {
  it('has the llama metadata, a byte-fallback vocabulary and every tensor of its blocks, aligned', () => {
    const bytes = tinyLlamaGguf();
    expect(bytes.length).toBeLessThan(2 * 1024 * 1024);
    const h = parseGgufHeader(bytes);
    expect(h.architecture).toBe('llama');
    expect(h.name).toBe('custody-tiny-llama');
    const vocab = tinyVocab();
    expect(h.metadata['llama.embedding_length']).toBe(64);
    expect(h.metadata['llama.block_count']).toBe(2);
    expect(h.metadata['llama.rope.dimension_count']).toBe(16);
    expect(h.metadata['tokenizer.ggml.model']).toBe('llama');
    expect(h.metadata['tokenizer.ggml.bos_token_id']).toBe(TINY_LLAMA_BOS);
    expect(h.metadata['tokenizer.ggml.eos_token_id']).toBe(TINY_LLAMA_EOS);
    expect(h.metadata['tokenizer.ggml.tokens']).toMatchObject({ arrayType: 8, length: vocab.tokens.length, head: ['<unk>', '<s>', '</s>', '<0x00>', '<0x01>', '<0x02>', '<0x03>', '<0x04>'] });
    expect(h.metadata['tokenizer.ggml.scores']).toMatchObject({ arrayType: 6, length: vocab.tokens.length });
    expect(h.metadata['tokenizer.ggml.token_type']).toMatchObject({ arrayType: 5, length: vocab.tokens.length, head: [2, 3, 3, 6, 6, 6, 6, 6] });
    expect(vocab.tokens[3 + 0x41]).toBe('<0x41>');
    expect(vocab.tokens).toContain('▁the');
    expect(vocab.tokens).toContain('▁th');
    const nVocab = BigInt(vocab.tokens.length);
    const { infos } = tensorInfos(bytes);
    const byName = new Map(infos.map((t) => [t.name, t]));
    expect(byName.get('token_embd.weight')!.dims).toEqual([64n, nVocab]);
    expect(byName.get('output.weight')!.dims).toEqual([64n, nVocab]);
    expect(byName.get('blk.1.attn_k.weight')!.dims).toEqual([64n, 32n]);
    expect(byName.get('blk.0.ffn_down.weight')!.dims).toEqual([128n, 64n]);
    for (const l of [0, 1]) for (const t of ['attn_norm', 'attn_q', 'attn_k', 'attn_v', 'attn_output', 'ffn_norm', 'ffn_gate', 'ffn_up', 'ffn_down']) expect(byName.has(`blk.${l}.${t}.weight`)).toBe(true);
    expect(infos).toHaveLength(h.tensorCount);
    for (const t of infos) {
      expect(t.type).toBe(0);
      expect(t.offset % 32n).toBe(0n);
    }
  });

  it('is deterministic for a seed and differs across seeds', () => {
    const a = Buffer.from(tinyLlamaGguf({ seed: 7 }));
    expect(a.equals(Buffer.from(tinyLlamaGguf({ seed: 7 })))).toBe(true);
    expect(a.equals(Buffer.from(tinyLlamaGguf({ seed: 8 })))).toBe(false);
  });
});
