import type { Bytes } from '@custody/core';

/**
 * Synchronous SHA-256 (FIPS 180-4). Merkle proofs and tiles need many hashes of 33 to 65
 * bytes; WebCrypto's digest is async-only, which costs a promise and a copy per hash and
 * turns a microsecond proof check into a millisecond one. Tests check this against WebCrypto.
 */

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be,
  0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa,
  0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85,
  0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3,
  0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f,
  0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

const IV = new Int32Array([0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]);

// Module-level scratch space: the hash is synchronous and never re-entered.
const W = new Int32Array(64);

function compress(state: Int32Array, block: Uint8Array, off: number): void {
  for (let i = 0; i < 16; i++) {
    const j = off + i * 4;
    W[i] = (block[j]! << 24) | (block[j + 1]! << 16) | (block[j + 2]! << 8) | block[j + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const w15 = W[i - 15]!;
    const w2 = W[i - 2]!;
    const s0 = ((w15 >>> 7) | (w15 << 25)) ^ ((w15 >>> 18) | (w15 << 14)) ^ (w15 >>> 3);
    const s1 = ((w2 >>> 17) | (w2 << 15)) ^ ((w2 >>> 19) | (w2 << 13)) ^ (w2 >>> 10);
    W[i] = (W[i - 16]! + s0 + W[i - 7]! + s1) | 0;
  }
  let a = state[0]!;
  let b = state[1]!;
  let c = state[2]!;
  let d = state[3]!;
  let e = state[4]!;
  let f = state[5]!;
  let g = state[6]!;
  let h = state[7]!;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (h + S1 + ch + K[i]! + W[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const maj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + maj) | 0;
    h = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  state[0] = (state[0]! + a) | 0;
  state[1] = (state[1]! + b) | 0;
  state[2] = (state[2]! + c) | 0;
  state[3] = (state[3]! + d) | 0;
  state[4] = (state[4]! + e) | 0;
  state[5] = (state[5]! + f) | 0;
  state[6] = (state[6]! + g) | 0;
  state[7] = (state[7]! + h) | 0;
}

/** Incremental SHA-256, so a prefix byte and a message can be hashed without concatenating them. */
export class Sha256 {
  private readonly state = new Int32Array(IV);
  private readonly buf = new Uint8Array(64);
  private bufLen = 0;
  private total = 0;

  update(data: Uint8Array): this {
    let i = 0;
    this.total += data.length;
    if (this.bufLen > 0) {
      const n = Math.min(64 - this.bufLen, data.length);
      this.buf.set(data.subarray(0, n), this.bufLen);
      this.bufLen += n;
      i = n;
      if (this.bufLen < 64) return this;
      compress(this.state, this.buf, 0);
      this.bufLen = 0;
    }
    for (; i + 64 <= data.length; i += 64) compress(this.state, data, i);
    if (i < data.length) {
      this.buf.set(data.subarray(i), 0);
      this.bufLen = data.length - i;
    }
    return this;
  }

  updateByte(v: number): this {
    this.total += 1;
    this.buf[this.bufLen++] = v;
    if (this.bufLen === 64) {
      compress(this.state, this.buf, 0);
      this.bufLen = 0;
    }
    return this;
  }

  digest(): Bytes {
    const bits = this.total * 8;
    this.buf[this.bufLen++] = 0x80;
    if (this.bufLen > 56) {
      this.buf.fill(0, this.bufLen);
      compress(this.state, this.buf, 0);
      this.bufLen = 0;
    }
    this.buf.fill(0, this.bufLen, 56);
    // Message length in bits, big-endian 64-bit; inputs here are far below 2^53 bits.
    const hi = Math.floor(bits / 0x100000000);
    const lo = bits >>> 0;
    this.buf[56] = hi >>> 24;
    this.buf[57] = hi >>> 16;
    this.buf[58] = hi >>> 8;
    this.buf[59] = hi;
    this.buf[60] = lo >>> 24;
    this.buf[61] = lo >>> 16;
    this.buf[62] = lo >>> 8;
    this.buf[63] = lo;
    compress(this.state, this.buf, 0);
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) {
      const v = this.state[i]!;
      out[i * 4] = v >>> 24;
      out[i * 4 + 1] = v >>> 16;
      out[i * 4 + 2] = v >>> 8;
      out[i * 4 + 3] = v;
    }
    return out;
  }
}

export function sha256Sync(data: Uint8Array): Bytes {
  return new Sha256().update(data).digest();
}

// Two fixed blocks for the RFC 6962 node hash: 0x01 || left(32) || right(32) is 65 bytes.
const nodeBlock = new Uint8Array(128);
const nodeState = new Int32Array(8);

/** SHA-256(0x01 || left || right) without allocating anything but the output. */
export function sha256Node(left: Uint8Array, right: Uint8Array): Bytes {
  nodeBlock[0] = 0x01;
  nodeBlock.set(left, 1);
  nodeBlock.set(right, 33);
  nodeBlock[65] = 0x80;
  nodeBlock.fill(0, 66, 126);
  // 65 bytes = 520 bits = 0x0208
  nodeBlock[126] = 0x02;
  nodeBlock[127] = 0x08;
  nodeState.set(IV);
  compress(nodeState, nodeBlock, 0);
  compress(nodeState, nodeBlock, 64);
  const out = new Uint8Array(32);
  for (let i = 0; i < 8; i++) {
    const v = nodeState[i]!;
    out[i * 4] = v >>> 24;
    out[i * 4 + 1] = v >>> 16;
    out[i * 4 + 2] = v >>> 8;
    out[i * 4 + 3] = v;
  }
  return out;
}
