import fc from 'fast-check';

/** Real bytes with a few flipped bytes, a truncation or an insertion (for fuzz tests). */
export function mutationOf(base: Uint8Array): fc.Arbitrary<Uint8Array> {
  const flips = fc.array(fc.tuple(fc.nat(base.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 4 }).map((fs) => {
    const b = base.slice();
    for (const [i, x] of fs) b[i] = b[i]! ^ x;
    return b;
  });
  const truncation = fc.nat(base.length - 1).map((n) => base.slice(0, n));
  const insertion = fc.tuple(fc.nat(base.length), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([at, ins]) => {
    const b = new Uint8Array(base.length + ins.length);
    b.set(base.subarray(0, at));
    b.set(ins, at);
    b.set(base.subarray(at), at + ins.length);
    return b;
  });
  return fc.oneof(flips, truncation, insertion);
}
