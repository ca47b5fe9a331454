/** IEEE 754 half precision, which DataView in Node 20 cannot read or write. */

export function decodeFloat16(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 31) return mant === 0 ? sign * Infinity : NaN;
  return sign * (mant + 1024) * 2 ** (exp - 25);
}

const scratch = new DataView(new ArrayBuffer(8));

/** The half-precision bits that hold `v` exactly, or undefined when no half equals it. */
export function encodeFloat16Exact(v: number): number | undefined {
  if (Number.isNaN(v)) return 0x7e00;
  if (Math.fround(v) !== v) return undefined;
  scratch.setFloat32(0, v);
  const bits = scratch.getUint32(0);
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  const mant = bits & 0x7fffff;
  let h: number;
  if (exp === 0xff) h = sign | 0x7c00; // infinity (NaN handled above)
  else if (exp === 0 && mant === 0) h = sign;
  else {
    const e = exp - 127;
    if (e >= -14 && e <= 15) {
      if ((mant & 0x1fff) !== 0) return undefined;
      h = sign | ((e + 15) << 10) | (mant >>> 13);
    } else if (e >= -24 && e < -14) {
      // Half subnormal: value = m * 2^-24 with the implicit leading one shifted in.
      const full = 0x800000 | mant;
      const shift = -e - 1;
      if (full % 2 ** shift !== 0) return undefined;
      h = sign | (full / 2 ** shift);
    } else return undefined;
  }
  return decodeFloat16(h) === v ? h : undefined;
}
