/**
 * Writes the tiny test model (seeded random weights, llama architecture, ~0.7 MB) to a file, to
 * try the in-process GGUF engine without downloading weights:
 *
 *   node --conditions=source --import tsx services/gateway/src/testing/make-tiny-gguf.ts tiny.gguf [seed]
 *   ./custody gateway serve --model tiny.gguf
 *
 * The model writes gibberish made of English words; it is for tests and demos of the plumbing.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { writeTinyLlamaGguf } from './tiny-llama.js';

const [out, seed] = process.argv.slice(2);
if (!out || (seed !== undefined && !/^\d+$/.test(seed))) {
  process.stderr.write('usage: make-tiny-gguf.ts OUT.gguf [seed]\n');
  process.exit(2);
}
const bytes = await writeTinyLlamaGguf(resolve(out), seed === undefined ? {} : { seed: Number(seed) });
process.stdout.write(`${resolve(out)}  ${bytes.length} bytes  sha256:${createHash('sha256').update(bytes).digest('hex')}\n`);
