/**
 * Synchronous SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) for the HPKE key schedule.
 * HPKE runs about ten HMACs over tens of bytes per message; through WebCrypto each is an
 * asynchronous thread-pool round trip that costs far more than the hashing itself, so the
 * HKDF-SHA256 path hashes in place. Only add, xor and rotate: no secret-dependent branches
 * or table lookups.
 */
import type { Bytes } from '../bytes.js';

const K = new Uint32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
  0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
  0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
  0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const IV = new Uint32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

const W = new Uint32Array(64);

function compress(h: Uint32Array, b: Uint8Array, o: number): void {
  for (let i = 0; i < 16; i++, o += 4) W[i] = (b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!;
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15]!, w2 = W[i - 2]!;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = h[0]!, bb = h[1]!, c = h[2]!, d = h[3]!, e = h[4]!, f = h[5]!, g = h[6]!, hh = h[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (hh + S1 + ch + K[i]! + W[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & bb) ^ (a & c) ^ (bb & c);
    const t2 = (S0 + maj) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = bb;
    bb = a;
    a = (t1 + t2) | 0;
  }
  h[0] = h[0]! + a;
  h[1] = h[1]! + bb;
  h[2] = h[2]! + c;
  h[3] = h[3]! + d;
  h[4] = h[4]! + e;
  h[5] = h[5]! + f;
  h[6] = h[6]! + g;
  h[7] = h[7]! + hh;
}

/** SHA-256 over the concatenation of `parts` (saves copying the HMAC inputs together). */
export function sha256Sync(...parts: Uint8Array[]): Bytes {
  const h = IV.slice();
  const block = new Uint8Array(64);
  let fill = 0;
  let total = 0;
  for (const p of parts) {
    total += p.length;
    let i = 0;
    if (fill > 0) {
      const n = Math.min(64 - fill, p.length);
      block.set(p.subarray(0, n), fill);
      fill += n;
      i = n;
      if (fill === 64) {
        compress(h, block, 0);
        fill = 0;
      }
    }
    for (; i + 64 <= p.length; i += 64) compress(h, p, i);
    if (i < p.length) {
      block.set(p.subarray(i), 0);
      fill = p.length - i;
    }
  }
  block.fill(0, fill);
  block[fill] = 0x80;
  if (fill >= 56) {
    compress(h, block, 0);
    block.fill(0);
  }
  const bits = total * 8;
  const v = new DataView(block.buffer);
  v.setUint32(56, Math.floor(bits / 2 ** 32));
  v.setUint32(60, bits >>> 0);
  compress(h, block, 0);
  const out = new Uint8Array(32);
  const ov = new DataView(out.buffer);
  for (let i = 0; i < 8; i++) ov.setUint32(4 * i, h[i]!);
  block.fill(0);
  return out;
}

const IPAD = new Uint8Array(64).fill(0x36);
const OPAD = new Uint8Array(64).fill(0x5c);

/** HMAC-SHA256(key, message parts concatenated). */
export function hmacSha256(key: Uint8Array, ...message: Uint8Array[]): Bytes {
  const k = new Uint8Array(64);
  k.set(key.length > 64 ? sha256Sync(key) : key);
  const ik = new Uint8Array(64);
  const ok = new Uint8Array(64);
  for (let i = 0; i < 64; i++) {
    ik[i] = k[i]! ^ IPAD[i]!;
    ok[i] = k[i]! ^ OPAD[i]!;
  }
  const inner = sha256Sync(ik, ...message);
  const out = sha256Sync(ok, inner);
  k.fill(0);
  ik.fill(0);
  ok.fill(0);
  inner.fill(0);
  return out;
}
