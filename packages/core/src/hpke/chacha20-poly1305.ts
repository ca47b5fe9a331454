/**
 * ChaCha20-Poly1305 AEAD (RFC 8439), in portable TypeScript because WebCrypto has no ChaCha20.
 * HPKE AEAD id 0x0003. Poly1305 works on ten 13-bit limbs so every intermediate product stays
 * an exact integer in a double (no BigInt, no data-dependent branches).
 */
import type { Bytes } from '../bytes.js';

const SIGMA = new Uint32Array([0x61707865, 0x3320646e, 0x79622d32, 0x6b206574]);

function rotl(x: number, n: number): number {
  return (x << n) | (x >>> (32 - n));
}

function readU32le(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/** One 64-byte ChaCha20 block for (key, counter, nonce) into `out` (RFC 8439 section 2.3). */
function chachaBlock(init: Uint32Array, counter: number, x: Uint32Array, out: Uint8Array): void {
  init[12] = counter >>> 0;
  let x0 = init[0]!, x1 = init[1]!, x2 = init[2]!, x3 = init[3]!, x4 = init[4]!, x5 = init[5]!, x6 = init[6]!, x7 = init[7]!;
  let x8 = init[8]!, x9 = init[9]!, x10 = init[10]!, x11 = init[11]!, x12 = init[12], x13 = init[13]!, x14 = init[14]!, x15 = init[15]!;
  for (let i = 0; i < 10; i++) {
    // column rounds
    x0 = (x0 + x4) | 0; x12 = rotl(x12 ^ x0, 16); x8 = (x8 + x12) | 0; x4 = rotl(x4 ^ x8, 12);
    x0 = (x0 + x4) | 0; x12 = rotl(x12 ^ x0, 8); x8 = (x8 + x12) | 0; x4 = rotl(x4 ^ x8, 7);
    x1 = (x1 + x5) | 0; x13 = rotl(x13 ^ x1, 16); x9 = (x9 + x13) | 0; x5 = rotl(x5 ^ x9, 12);
    x1 = (x1 + x5) | 0; x13 = rotl(x13 ^ x1, 8); x9 = (x9 + x13) | 0; x5 = rotl(x5 ^ x9, 7);
    x2 = (x2 + x6) | 0; x14 = rotl(x14 ^ x2, 16); x10 = (x10 + x14) | 0; x6 = rotl(x6 ^ x10, 12);
    x2 = (x2 + x6) | 0; x14 = rotl(x14 ^ x2, 8); x10 = (x10 + x14) | 0; x6 = rotl(x6 ^ x10, 7);
    x3 = (x3 + x7) | 0; x15 = rotl(x15 ^ x3, 16); x11 = (x11 + x15) | 0; x7 = rotl(x7 ^ x11, 12);
    x3 = (x3 + x7) | 0; x15 = rotl(x15 ^ x3, 8); x11 = (x11 + x15) | 0; x7 = rotl(x7 ^ x11, 7);
    // diagonal rounds
    x0 = (x0 + x5) | 0; x15 = rotl(x15 ^ x0, 16); x10 = (x10 + x15) | 0; x5 = rotl(x5 ^ x10, 12);
    x0 = (x0 + x5) | 0; x15 = rotl(x15 ^ x0, 8); x10 = (x10 + x15) | 0; x5 = rotl(x5 ^ x10, 7);
    x1 = (x1 + x6) | 0; x12 = rotl(x12 ^ x1, 16); x11 = (x11 + x12) | 0; x6 = rotl(x6 ^ x11, 12);
    x1 = (x1 + x6) | 0; x12 = rotl(x12 ^ x1, 8); x11 = (x11 + x12) | 0; x6 = rotl(x6 ^ x11, 7);
    x2 = (x2 + x7) | 0; x13 = rotl(x13 ^ x2, 16); x8 = (x8 + x13) | 0; x7 = rotl(x7 ^ x8, 12);
    x2 = (x2 + x7) | 0; x13 = rotl(x13 ^ x2, 8); x8 = (x8 + x13) | 0; x7 = rotl(x7 ^ x8, 7);
    x3 = (x3 + x4) | 0; x14 = rotl(x14 ^ x3, 16); x9 = (x9 + x14) | 0; x4 = rotl(x4 ^ x9, 12);
    x3 = (x3 + x4) | 0; x14 = rotl(x14 ^ x3, 8); x9 = (x9 + x14) | 0; x4 = rotl(x4 ^ x9, 7);
  }
  x[0] = x0 + init[0]!; x[1] = x1 + init[1]!; x[2] = x2 + init[2]!; x[3] = x3 + init[3]!;
  x[4] = x4 + init[4]!; x[5] = x5 + init[5]!; x[6] = x6 + init[6]!; x[7] = x7 + init[7]!;
  x[8] = x8 + init[8]!; x[9] = x9 + init[9]!; x[10] = x10 + init[10]!; x[11] = x11 + init[11]!;
  x[12] = x12 + init[12]; x[13] = x13 + init[13]!; x[14] = x14 + init[14]!; x[15] = x15 + init[15]!;
  for (let i = 0; i < 16; i++) {
    const w = x[i]!;
    out[4 * i] = w & 0xff;
    out[4 * i + 1] = (w >>> 8) & 0xff;
    out[4 * i + 2] = (w >>> 16) & 0xff;
    out[4 * i + 3] = (w >>> 24) & 0xff;
  }
}

function initState(key: Uint8Array, nonce: Uint8Array): Uint32Array {
  if (key.length !== 32) throw new RangeError('ChaCha20 key must be 32 bytes');
  if (nonce.length !== 12) throw new RangeError('ChaCha20 nonce must be 12 bytes');
  const s = new Uint32Array(16);
  s.set(SIGMA, 0);
  for (let i = 0; i < 8; i++) s[4 + i] = readU32le(key, 4 * i);
  for (let i = 0; i < 3; i++) s[13 + i] = readU32le(nonce, 4 * i);
  return s;
}

/** ChaCha20 stream cipher (RFC 8439 section 2.4): XORs `data` with the keystream from `counter`. */
export function chacha20(key: Uint8Array, nonce: Uint8Array, counter: number, data: Uint8Array): Bytes {
  const init = initState(key, nonce);
  const out = new Uint8Array(data.length);
  const ks = new Uint8Array(64);
  const x = new Uint32Array(16);
  for (let off = 0, ctr = counter; off < data.length; off += 64, ctr++) {
    if (ctr > 0xffffffff) throw new RangeError('ChaCha20 block counter overflow');
    chachaBlock(init, ctr, x, ks);
    const n = Math.min(64, data.length - off);
    for (let i = 0; i < n; i++) out[off + i] = data[off + i]! ^ ks[i]!;
  }
  return out;
}

/** Splits 16 little-endian bytes (plus bit 128 when `hibit`) into ten 13-bit limbs. */
function limbs(b: Uint8Array, o: number, hibit: number, out: Float64Array | Uint16Array): void {
  const t0 = b[o]! | (b[o + 1]! << 8), t1 = b[o + 2]! | (b[o + 3]! << 8), t2 = b[o + 4]! | (b[o + 5]! << 8), t3 = b[o + 6]! | (b[o + 7]! << 8);
  const t4 = b[o + 8]! | (b[o + 9]! << 8), t5 = b[o + 10]! | (b[o + 11]! << 8), t6 = b[o + 12]! | (b[o + 13]! << 8), t7 = b[o + 14]! | (b[o + 15]! << 8);
  out[0] = t0 & 0x1fff;
  out[1] = ((t0 >>> 13) | (t1 << 3)) & 0x1fff;
  out[2] = ((t1 >>> 10) | (t2 << 6)) & 0x1fff;
  out[3] = ((t2 >>> 7) | (t3 << 9)) & 0x1fff;
  out[4] = ((t3 >>> 4) | (t4 << 12)) & 0x1fff;
  out[5] = (t4 >>> 1) & 0x1fff;
  out[6] = ((t4 >>> 14) | (t5 << 2)) & 0x1fff;
  out[7] = ((t5 >>> 11) | (t6 << 5)) & 0x1fff;
  out[8] = ((t6 >>> 8) | (t7 << 8)) & 0x1fff;
  out[9] = (t7 >>> 5) | (hibit << 11);
}

/** Poly1305 one-time authenticator (RFC 8439 section 2.5) over `msg` with a 32-byte key. */
export function poly1305(key: Uint8Array, msg: Uint8Array): Bytes {
  if (key.length !== 32) throw new RangeError('Poly1305 key must be 32 bytes');
  const rb = key.slice(0, 16);
  rb[3]! &= 15; rb[7]! &= 15; rb[11]! &= 15; rb[15]! &= 15;
  rb[4]! &= 252; rb[8]! &= 252; rb[12]! &= 252;
  const r = new Uint16Array(10);
  limbs(rb, 0, 0, r);
  const r5 = new Float64Array(10);
  for (let i = 0; i < 10; i++) r5[i] = r[i]! * 5;
  const h = new Float64Array(10);
  const m = new Float64Array(10);
  const d = new Float64Array(10);
  const block = new Uint8Array(16);

  for (let off = 0; off < msg.length; off += 16) {
    let src: Uint8Array = msg;
    let so = off;
    let hibit = 1;
    if (msg.length - off < 16) {
      // final partial block: append 0x01 and pad with zeros, no 2^128 bit
      block.fill(0);
      block.set(msg.subarray(off));
      block[msg.length - off] = 1;
      src = block;
      so = 0;
      hibit = 0;
    }
    limbs(src, so, hibit, m);
    for (let i = 0; i < 10; i++) h[i] = h[i]! + m[i]!;
    // d = h * r mod 2^130 - 5, using 2^130 = 5 for the wrapped terms
    let c = 0;
    for (let i = 0; i < 10; i++) {
      let di = c;
      for (let j = 0; j < 10; j++) di += h[j]! * (j <= i ? r[i - j]! : r5[i + 10 - j]!);
      c = Math.floor(di / 8192);
      d[i] = di - c * 8192;
    }
    c = c * 5 + d[0]!;
    d[0] = c % 8192;
    c = Math.floor(c / 8192);
    d[1] = d[1]! + c;
    h.set(d);
  }

  // full carry, then h mod p by trying h + 5 - 2^130
  const hh = new Uint32Array(10);
  for (let i = 0; i < 10; i++) hh[i] = h[i]!;
  let c = hh[1]! >>> 13;
  hh[1]! &= 0x1fff;
  for (let i = 2; i < 10; i++) {
    hh[i]! += c;
    c = hh[i]! >>> 13;
    hh[i]! &= 0x1fff;
  }
  hh[0]! += c * 5;
  c = hh[0]! >>> 13;
  hh[0]! &= 0x1fff;
  hh[1]! += c;
  c = hh[1]! >>> 13;
  hh[1]! &= 0x1fff;
  hh[2]! += c;
  const g = new Uint32Array(10);
  g[0] = hh[0]! + 5;
  c = g[0] >>> 13;
  g[0] &= 0x1fff;
  for (let i = 1; i < 10; i++) {
    g[i] = hh[i]! + c;
    c = g[i]! >>> 13;
    g[i]! &= 0x1fff;
  }
  // c is 1 exactly when h >= p; select g then, h otherwise
  const mask = -c >>> 0;
  for (let i = 0; i < 10; i++) hh[i] = (hh[i]! & ~mask) | (g[i]! & mask);

  const w = new Uint32Array(8);
  w[0] = (hh[0]! | (hh[1]! << 13)) & 0xffff;
  w[1] = ((hh[1]! >>> 3) | (hh[2]! << 10)) & 0xffff;
  w[2] = ((hh[2]! >>> 6) | (hh[3]! << 7)) & 0xffff;
  w[3] = ((hh[3]! >>> 9) | (hh[4]! << 4)) & 0xffff;
  w[4] = ((hh[4]! >>> 12) | (hh[5]! << 1) | (hh[6]! << 14)) & 0xffff;
  w[5] = ((hh[6]! >>> 2) | (hh[7]! << 11)) & 0xffff;
  w[6] = ((hh[7]! >>> 5) | (hh[8]! << 8)) & 0xffff;
  w[7] = ((hh[8]! >>> 8) | (hh[9]! << 5)) & 0xffff;
  const tag = new Uint8Array(16);
  let carry = 0;
  for (let i = 0; i < 8; i++) {
    const f = w[i]! + (key[16 + 2 * i]! | (key[17 + 2 * i]! << 8)) + carry;
    carry = f >>> 16;
    tag[2 * i] = f & 0xff;
    tag[2 * i + 1] = (f >>> 8) & 0xff;
  }
  return tag;
}

function macData(aad: Uint8Array, ct: Uint8Array): Bytes {
  const pad = (n: number): number => (16 - (n % 16)) % 16;
  const aadEnd = aad.length + pad(aad.length);
  const ctEnd = aadEnd + ct.length + pad(ct.length);
  const out = new Uint8Array(ctEnd + 16);
  out.set(aad, 0);
  out.set(ct, aadEnd);
  const v = new DataView(out.buffer);
  v.setUint32(ctEnd, aad.length >>> 0, true);
  v.setUint32(ctEnd + 4, Math.floor(aad.length / 2 ** 32), true);
  v.setUint32(ctEnd + 8, ct.length >>> 0, true);
  v.setUint32(ctEnd + 12, Math.floor(ct.length / 2 ** 32), true);
  return out;
}

function polyKey(key: Uint8Array, nonce: Uint8Array): Bytes {
  return chacha20(key, nonce, 0, new Uint8Array(32));
}

/** AEAD_CHACHA20_POLY1305 encryption (RFC 8439 section 2.8): returns ciphertext || 16-byte tag. */
export function chacha20Poly1305Seal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): Bytes {
  const otk = polyKey(key, nonce);
  const ct = chacha20(key, nonce, 1, plaintext);
  const tag = poly1305(otk, macData(aad, ct));
  otk.fill(0);
  const out = new Uint8Array(ct.length + 16);
  out.set(ct, 0);
  out.set(tag, ct.length);
  return out;
}

/** AEAD_CHACHA20_POLY1305 decryption; returns null when the tag does not verify. */
export function chacha20Poly1305Open(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): Bytes | null {
  if (sealed.length < 16) return null;
  const ct = sealed.subarray(0, sealed.length - 16);
  const tag = sealed.subarray(sealed.length - 16);
  const otk = polyKey(key, nonce);
  const expect = poly1305(otk, macData(aad, ct));
  otk.fill(0);
  let diff = 0;
  for (let i = 0; i < 16; i++) diff |= expect[i]! ^ tag[i]!;
  if (diff !== 0) return null;
  return chacha20(key, nonce, 1, ct);
}
