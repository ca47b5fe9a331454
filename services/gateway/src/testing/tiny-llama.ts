/**
 * A tiny llama-architecture GGUF model made at test time, so that tests run the real GGUF engine
 * (node-llama-cpp / llama.cpp) end to end without downloading weights. Its weights are seeded
 * pseudo-random F32 values: the model is loadable and fast, and it writes gibberish made of the
 * words of its vocabulary. Tests assert structure, never content.
 *
 * Vocabulary: a SentencePiece-style ("llama") vocabulary with byte fallback: <unk>, <s>, </s>,
 * the 256 byte tokens <0x00>..<0xFF>, the printable ASCII characters, `▁` (the SPM space), and a
 * few words with every prefix (`▁t`, `▁th`, `▁the`) so the SPM merge walk can reach them. Any
 * text tokenizes.
 *
 * Generation is steered to whole words: dimension 0 of every token embedding is a constant that
 * no attention or feed-forward output changes (their row 0 is zero), and the output head gives
 * every token that is not a whole word (control tokens, bytes, single characters, word
 * prefixes) a large negative weight on that dimension. So the model never emits an end-of-
 * sequence token and always runs to its token limit, printing words.
 */
import { writeFile } from 'node:fs/promises';
import { encodeGguf, gguf, type GgufMetadataValue, type GgufTensor } from './gguf-writer.js';

export interface TinyLlamaOptions {
  /** PRNG seed for the weights (default 1). */
  seed?: number;
  /** `general.name` (default `custody-tiny-llama`). */
  name?: string;
  embedding?: number;
  layers?: number;
  heads?: number;
  kvHeads?: number;
  feedForward?: number;
  contextLength?: number;
  /** A Jinja chat template for `tokenizer.chat_template`; none by default. */
  chatTemplate?: string;
}

const WORDS = (
  'the of and to in is that for it as with was on be at by this had not are but from or have an they which one you were her all she there ' +
  'would their we him been has when who will more no if out so said what up its about into than them can only other new some could time ' +
  'these two may then do first any my now such like our over man me even most made after also did many before must through back years where ' +
  'much your way well down should because each just those people how too little state good very make world still own see men work long get ' +
  'here between both life being under never day same another know while last might us great old year off come since against go came right used take three'
).split(' ');

export const TINY_LLAMA_UNK = 0;
export const TINY_LLAMA_BOS = 1;
export const TINY_LLAMA_EOS = 2;

const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

export interface TinyVocab {
  tokens: string[];
  scores: number[];
  types: number[];
  /** Token ids the model may emit (whole words). */
  words: Set<number>;
}

export function tinyVocab(): TinyVocab {
  const tokens: string[] = ['<unk>', '<s>', '</s>'];
  const types: number[] = [TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL];
  const scores: number[] = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(TOKEN_BYTE);
    scores.push(0);
  }
  const seen = new Set<string>();
  const words = new Set<number>();
  const add = (piece: string, word: boolean) => {
    if (seen.has(piece)) {
      if (word) words.add(tokens.indexOf(piece));
      return;
    }
    seen.add(piece);
    if (word) words.add(tokens.length);
    tokens.push(piece);
    types.push(TOKEN_NORMAL);
    // SPM merges the highest-scoring pair first; longer pieces score higher.
    scores.push(-1000 + [...piece].length);
  };
  add('▁', false);
  for (let c = 0x21; c < 0x7f; c++) add(String.fromCharCode(c), false);
  for (const w of WORDS) {
    const piece = '▁' + w;
    const chars = [...piece];
    for (let k = 2; k < chars.length; k++) add(chars.slice(0, k).join(''), false);
    add(piece, true);
  }
  return { tokens, scores, types, words };
}

/** mulberry32: a small seeded PRNG (uniform in [0, 1)). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Encodes the tiny model as GGUF bytes (deterministic for a given seed and options). */
export function tinyLlamaGguf(options: TinyLlamaOptions = {}): Uint8Array {
  const nEmbd = options.embedding ?? 64;
  const nLayer = options.layers ?? 2;
  const nHead = options.heads ?? 4;
  const nHeadKv = options.kvHeads ?? 2;
  const nFf = options.feedForward ?? 128;
  const nCtx = options.contextLength ?? 1024;
  const headDim = nEmbd / nHead;
  if (!Number.isInteger(headDim) || headDim % 2 !== 0 || nHead % nHeadKv !== 0) throw new RangeError('tiny llama: embedding/heads must be an even integer and heads a multiple of kvHeads');
  const vocab = tinyVocab();
  const nVocab = vocab.tokens.length;
  const rand = prng(options.seed ?? 1);
  const uniform = (n: number, scale: number) => {
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (rand() * 2 - 1) * scale;
    return a;
  };
  const ones = (n: number) => new Float32Array(n).fill(1);
  /** Zeroes output row 0 of a [inner, outer] matrix (stored outer-major: row r is data[r*inner ...]). */
  const zeroRow0 = (m: Float32Array, inner: number) => {
    m.fill(0, 0, inner);
    return m;
  };

  const tensors: GgufTensor[] = [];
  const embd = uniform(nEmbd * nVocab, 0.5);
  for (let t = 0; t < nVocab; t++) embd[t * nEmbd] = 1; // the constant channel
  tensors.push({ name: 'token_embd.weight', dims: [nEmbd, nVocab], data: embd });
  for (let l = 0; l < nLayer; l++) {
    const p = `blk.${l}.`;
    tensors.push({ name: p + 'attn_norm.weight', dims: [nEmbd], data: ones(nEmbd) });
    tensors.push({ name: p + 'attn_q.weight', dims: [nEmbd, nEmbd], data: uniform(nEmbd * nEmbd, 0.3) });
    tensors.push({ name: p + 'attn_k.weight', dims: [nEmbd, headDim * nHeadKv], data: uniform(nEmbd * headDim * nHeadKv, 0.3) });
    tensors.push({ name: p + 'attn_v.weight', dims: [nEmbd, headDim * nHeadKv], data: uniform(nEmbd * headDim * nHeadKv, 0.3) });
    tensors.push({ name: p + 'attn_output.weight', dims: [nEmbd, nEmbd], data: zeroRow0(uniform(nEmbd * nEmbd, 0.1), nEmbd) });
    tensors.push({ name: p + 'ffn_norm.weight', dims: [nEmbd], data: ones(nEmbd) });
    tensors.push({ name: p + 'ffn_gate.weight', dims: [nEmbd, nFf], data: uniform(nEmbd * nFf, 0.3) });
    tensors.push({ name: p + 'ffn_up.weight', dims: [nEmbd, nFf], data: uniform(nEmbd * nFf, 0.3) });
    tensors.push({ name: p + 'ffn_down.weight', dims: [nFf, nEmbd], data: zeroRow0(uniform(nFf * nEmbd, 0.1), nFf) });
  }
  tensors.push({ name: 'output_norm.weight', dims: [nEmbd], data: ones(nEmbd) });
  const out = uniform(nEmbd * nVocab, 1);
  for (let t = 0; t < nVocab; t++) out[t * nEmbd] = vocab.words.has(t) ? 0 : -50;
  tensors.push({ name: 'output.weight', dims: [nEmbd, nVocab], data: out });

  const name = options.name ?? 'custody-tiny-llama';
  const metadata: [string, GgufMetadataValue][] = [
    ['general.architecture', gguf.string('llama')],
    ['general.name', gguf.string(name)],
    ['general.description', gguf.string('seeded random weights for tests: loadable, writes gibberish')],
    ['general.file_type', gguf.u32(0)],
    ['general.alignment', gguf.u32(32)],
    ['llama.context_length', gguf.u32(nCtx)],
    ['llama.embedding_length', gguf.u32(nEmbd)],
    ['llama.block_count', gguf.u32(nLayer)],
    ['llama.feed_forward_length', gguf.u32(nFf)],
    ['llama.rope.dimension_count', gguf.u32(headDim)],
    ['llama.rope.freq_base', gguf.f32(10000)],
    ['llama.attention.head_count', gguf.u32(nHead)],
    ['llama.attention.head_count_kv', gguf.u32(nHeadKv)],
    ['llama.attention.layer_norm_rms_epsilon', gguf.f32(1e-5)],
    ['llama.vocab_size', gguf.u32(nVocab)],
    ['tokenizer.ggml.model', gguf.string('llama')],
    ['tokenizer.ggml.tokens', gguf.strings(vocab.tokens)],
    ['tokenizer.ggml.scores', gguf.f32s(vocab.scores)],
    ['tokenizer.ggml.token_type', gguf.i32s(vocab.types)],
    ['tokenizer.ggml.unknown_token_id', gguf.u32(TINY_LLAMA_UNK)],
    ['tokenizer.ggml.bos_token_id', gguf.u32(TINY_LLAMA_BOS)],
    ['tokenizer.ggml.eos_token_id', gguf.u32(TINY_LLAMA_EOS)],
    ['tokenizer.ggml.add_bos_token', gguf.bool(true)],
    ['tokenizer.ggml.add_eos_token', gguf.bool(false)],
    ...(options.chatTemplate ? ([['tokenizer.chat_template', gguf.string(options.chatTemplate)]] as [string, GgufMetadataValue][]) : []),
  ];
  return encodeGguf({ metadata, tensors });
}

/** Writes the tiny model to `path` and returns its bytes. */
export async function writeTinyLlamaGguf(path: string, options: TinyLlamaOptions = {}): Promise<Uint8Array> {
  const bytes = tinyLlamaGguf(options);
  await writeFile(path, bytes);
  return bytes;
}
