import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { parseSealedModelPrefix, sealModelFile, SEALED_MODEL_MAGIC, unsealModelFile } from './sealed-model.js';

let dir: string;
let sealed: Buffer;
const key = randomBytes(32);
const plain = randomBytes(9000);

function code(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    return e.code;
  }
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'custody-sealed-fuzz-'));
  await writeFile(join(dir, 'in'), plain);
  await sealModelFile(join(dir, 'in'), join(dir, 'sealed'), { key, keyName: 'fuzz-key', keyVersion: 1, modelId: 'fuzz', chunkSize: 4096 });
  sealed = await readFile(join(dir, 'sealed'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('sealed model parser and decryption (fuzz)', () => {
  it('random prefixes (with and without the magic) give a stable code, never another exception', () => {
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 600 }), fc.nat(1 << 20), (magic, tail, size) => {
        const b = magic ? Buffer.concat([SEALED_MODEL_MAGIC, tail]) : Buffer.from(tail);
        expect(['ok', 'ERR_MODEL_SEALED', 'ERR_MODEL_UNSEAL']).toContain(code(() => parseSealedModelPrefix(b, size)));
      }),
      { numRuns: 3000 },
    );
  });

  it('mutated headers parse or fail with the stable code', () => {
    const prefix = sealed.subarray(0, 12 + sealed.readUInt32BE(8));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(prefix.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), (muts) => {
        const b = Buffer.from(prefix);
        for (const [i, v] of muts) b[i] = v;
        expect(['ok', 'ERR_MODEL_SEALED', 'ERR_MODEL_UNSEAL']).toContain(code(() => parseSealedModelPrefix(b, sealed.length)));
      }),
      { numRuns: 3000 },
    );
  });

  it('a mutated or cut sealed file never yields plaintext other than the original, nor leaves a partial file', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(sealed.length - 1), fc.integer({ min: 1, max: 255 })), { maxLength: 3 }), fc.option(fc.nat(sealed.length - 1), { nil: undefined }), async (muts, cut) => {
        const b = Buffer.from(cut === undefined ? sealed : sealed.subarray(0, cut));
        for (const [i, x] of muts) if (i < b.length) b[i] = b[i]! ^ x;
        const path = join(dir, `m${run}`);
        const out = join(dir, `p${run++}`);
        await writeFile(path, b);
        try {
          await unsealModelFile(path, key, out);
          expect(await readFile(out)).toEqual(plain);
          expect(b.equals(sealed)).toBe(true);
        } catch (e) {
          if (!(e instanceof CustodyError)) throw e;
          expect(['ERR_MODEL_SEALED', 'ERR_MODEL_UNSEAL']).toContain(e.code);
          expect(existsSync(out)).toBe(false);
        }
        await rm(path, { force: true });
        await rm(out, { force: true });
      }),
      { numRuns: 300 },
    );
  });
});
