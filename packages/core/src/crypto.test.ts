import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { toHex } from './bytes.js';
import { publicNonceRandom, secureRandom } from './crypto.js';

describe('secureRandom', () => {
  it('fills lengths over the 65536-byte limit of one getRandomValues call', () => {
    const b = secureRandom(65536 * 2 + 7);
    expect(b.length).toBe(65536 * 2 + 7);
    // The last piece is filled too (not left zero): 64 zero bytes by chance has probability 2^-512.
    expect(b.subarray(b.length - 64).some((x) => x !== 0)).toBe(true);
  });
});

describe('publicNonceRandom (pooled randomness for values sent in the clear)', () => {
  it('hands out pieces of the requested length that never repeat, across many pool refills', () => {
    const seen = new Set<string>();
    // 2000 pieces of 16 bytes: about eight 4 KiB pools.
    for (let i = 0; i < 2000; i++) {
      const n = publicNonceRandom(16);
      expect(n).toBeInstanceOf(Uint8Array);
      expect(n.length).toBe(16);
      seen.add(toHex(n));
    }
    expect(seen.size).toBe(2000);
    for (const n of [0, 1, 12, 32, 64]) expect(publicNonceRandom(n).length).toBe(n);
  });

  it('gives each caller its own copy, so changing one piece changes no other', () => {
    const a = publicNonceRandom(16);
    const b = publicNonceRandom(16);
    const before = toHex(b);
    a.fill(0xff);
    expect(toHex(b)).toBe(before);
    // Not views into one shared buffer.
    expect(a.buffer).not.toBe(b.buffer);
  });

  it('draws pieces longer than 64 bytes directly, and refuses lengths that are not whole numbers', () => {
    expect(publicNonceRandom(65).length).toBe(65);
    expect(publicNonceRandom(5000).length).toBe(5000);
    for (const bad of [-1, 1.5, Number.NaN]) expect(() => publicNonceRandom(bad)).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
  });

  it('is spread like uniform bytes (every byte value appears in 64 KiB of 16-byte pieces)', () => {
    const counts = new Array<number>(256).fill(0);
    for (let i = 0; i < 4096; i++) for (const x of publicNonceRandom(16)) counts[x]!++;
    // 65536 bytes, 256 values each expected 256 times: a value missing or over 3 times its share would mean a broken pool.
    expect(Math.min(...counts)).toBeGreaterThan(128);
    expect(Math.max(...counts)).toBeLessThan(768);
  });
});

describe('without WebCrypto (a browser page that is not a secure context)', () => {
  it('fails ERR_CRYPTO_UNAVAILABLE, saying why, instead of a TypeError', () => {
    // A fresh process whose global crypto has getRandomValues but no subtle, as on an http:// page.
    const script = [
      "Object.defineProperty(globalThis, 'crypto', { value: { getRandomValues: (a) => a }, configurable: true });",
      `const { sha256, toCustodyError } = await import(${JSON.stringify(fileURLToPath(new URL('./index.ts', import.meta.url)))});`,
      'try { await sha256(new Uint8Array(1)); console.log("no error"); } catch (e) { const c = toCustodyError(e); console.log(JSON.stringify({ code: c.code, message: c.message })); }',
    ].join('\n');
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { encoding: 'utf8' });
    const r = JSON.parse(out.trim()) as { code: string; message: string };
    expect(r.code).toBe('ERR_CRYPTO_UNAVAILABLE');
    expect(r.message).toContain('secure contexts');
  });
});
