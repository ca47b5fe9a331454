import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../bytes.js';
import { CustodyError } from '../errors.js';
import { decodeCbor } from './decode.js';
import { encodeCbor } from './encode.js';
import { CborFloat, CborSimple, CborTag, type CborValue } from './types.js';

const f = (v: number) => new CborFloat(v);
const tag = (t: number, v: CborValue) => new CborTag(t, v);
const map = (...entries: [string | number, CborValue][]) => new Map<string | number, CborValue>(entries);
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);

/**
 * RFC 8949 Appendix A, every row. `canonical`: re-encoding gives the same bytes (the row is in
 * deterministic encoding). `indefinite`: the row uses indefinite lengths, rejected by default.
 */
const APPENDIX_A: { hex: string; value: CborValue; canonical: boolean; indefinite?: boolean }[] = [
  { hex: '00', value: 0, canonical: true },
  { hex: '01', value: 1, canonical: true },
  { hex: '0a', value: 10, canonical: true },
  { hex: '17', value: 23, canonical: true },
  { hex: '1818', value: 24, canonical: true },
  { hex: '1819', value: 25, canonical: true },
  { hex: '1864', value: 100, canonical: true },
  { hex: '1903e8', value: 1000, canonical: true },
  { hex: '1a000f4240', value: 1000000, canonical: true },
  { hex: '1b000000e8d4a51000', value: 1000000000000, canonical: true },
  { hex: '1bffffffffffffffff', value: 18446744073709551615n, canonical: true },
  { hex: 'c249010000000000000000', value: tag(2, fromHex('010000000000000000')), canonical: true },
  { hex: '3bffffffffffffffff', value: -18446744073709551616n, canonical: true },
  { hex: 'c349010000000000000000', value: tag(3, fromHex('010000000000000000')), canonical: true },
  { hex: '20', value: -1, canonical: true },
  { hex: '29', value: -10, canonical: true },
  { hex: '3863', value: -100, canonical: true },
  { hex: '3903e7', value: -1000, canonical: true },
  { hex: 'f90000', value: f(0), canonical: true },
  { hex: 'f98000', value: f(-0), canonical: true },
  { hex: 'f93c00', value: f(1), canonical: true },
  { hex: 'fb3ff199999999999a', value: f(1.1), canonical: true },
  { hex: 'f93e00', value: f(1.5), canonical: true },
  { hex: 'f97bff', value: f(65504), canonical: true },
  { hex: 'fa47c35000', value: f(100000), canonical: true },
  { hex: 'fa7f7fffff', value: f(3.4028234663852886e38), canonical: true },
  { hex: 'fb7e37e43c8800759c', value: f(1.0e300), canonical: true },
  { hex: 'f90001', value: f(5.960464477539063e-8), canonical: true },
  { hex: 'f90400', value: f(0.00006103515625), canonical: true },
  { hex: 'f9c400', value: f(-4), canonical: true },
  { hex: 'fbc010666666666666', value: f(-4.1), canonical: true },
  { hex: 'f97c00', value: f(Infinity), canonical: true },
  { hex: 'f97e00', value: f(NaN), canonical: true },
  { hex: 'f9fc00', value: f(-Infinity), canonical: true },
  { hex: 'fa7f800000', value: f(Infinity), canonical: false },
  { hex: 'fa7fc00000', value: f(NaN), canonical: false },
  { hex: 'faff800000', value: f(-Infinity), canonical: false },
  { hex: 'fb7ff0000000000000', value: f(Infinity), canonical: false },
  { hex: 'fb7ff8000000000000', value: f(NaN), canonical: false },
  { hex: 'fbfff0000000000000', value: f(-Infinity), canonical: false },
  { hex: 'f4', value: false, canonical: true },
  { hex: 'f5', value: true, canonical: true },
  { hex: 'f6', value: null, canonical: true },
  { hex: 'f7', value: undefined, canonical: true },
  { hex: 'f0', value: new CborSimple(16), canonical: true },
  { hex: 'f8ff', value: new CborSimple(255), canonical: true },
  { hex: 'c074323031332d30332d32315432303a30343a30305a', value: tag(0, '2013-03-21T20:04:00Z'), canonical: true },
  { hex: 'c11a514b67b0', value: tag(1, 1363896240), canonical: true },
  { hex: 'c1fb41d452d9ec200000', value: tag(1, f(1363896240.5)), canonical: true },
  { hex: 'd74401020304', value: tag(23, fromHex('01020304')), canonical: true },
  { hex: 'd818456449455446', value: tag(24, fromHex('6449455446')), canonical: true },
  { hex: 'd82076687474703a2f2f7777772e6578616d706c652e636f6d', value: tag(32, 'http://www.example.com'), canonical: true },
  { hex: '40', value: new Uint8Array(0), canonical: true },
  { hex: '4401020304', value: fromHex('01020304'), canonical: true },
  { hex: '60', value: '', canonical: true },
  { hex: '6161', value: 'a', canonical: true },
  { hex: '6449455446', value: 'IETF', canonical: true },
  { hex: '62225c', value: '"\\', canonical: true },
  { hex: '62c3bc', value: '\u00fc', canonical: true },
  { hex: '63e6b0b4', value: '\u6c34', canonical: true },
  { hex: '64f0908591', value: '\ud800\udd51', canonical: true },
  { hex: '80', value: [], canonical: true },
  { hex: '83010203', value: [1, 2, 3], canonical: true },
  { hex: '8301820203820405', value: [1, [2, 3], [4, 5]], canonical: true },
  { hex: '98190102030405060708090a0b0c0d0e0f101112131415161718181819', value: range(1, 25), canonical: true },
  { hex: 'a0', value: new Map(), canonical: true },
  { hex: 'a201020304', value: map([1, 2], [3, 4]), canonical: true },
  { hex: 'a26161016162820203', value: map(['a', 1], ['b', [2, 3]]), canonical: true },
  { hex: '826161a161626163', value: ['a', map(['b', 'c'])], canonical: true },
  { hex: 'a56161614161626142616361436164614461656145', value: map(['a', 'A'], ['b', 'B'], ['c', 'C'], ['d', 'D'], ['e', 'E']), canonical: true },
  { hex: '5f42010243030405ff', value: fromHex('0102030405'), canonical: false, indefinite: true },
  { hex: '7f657374726561646d696e67ff', value: 'streaming', canonical: false, indefinite: true },
  { hex: '9fff', value: [], canonical: false, indefinite: true },
  { hex: '9f018202039f0405ffff', value: [1, [2, 3], [4, 5]], canonical: false, indefinite: true },
  { hex: '9f01820203820405ff', value: [1, [2, 3], [4, 5]], canonical: false, indefinite: true },
  { hex: '83018202039f0405ff', value: [1, [2, 3], [4, 5]], canonical: false, indefinite: true },
  { hex: '83019f0203ff820405', value: [1, [2, 3], [4, 5]], canonical: false, indefinite: true },
  { hex: '9f0102030405060708090a0b0c0d0e0f101112131415161718181819ff', value: range(1, 25), canonical: false, indefinite: true },
  { hex: 'bf61610161629f0203ffff', value: map(['a', 1], ['b', [2, 3]]), canonical: false, indefinite: true },
  { hex: '826161bf61626163ff', value: ['a', map(['b', 'c'])], canonical: false, indefinite: true },
  { hex: 'bf6346756ef563416d7421ff', value: map(['Fun', true], ['Amt', -2]), canonical: false, indefinite: true },
];

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
  return 'no error';
}

describe('CBOR: RFC 8949 Appendix A', () => {
  for (const row of APPENDIX_A) {
    it(`decodes ${row.hex}`, () => {
      const opts = row.indefinite ? { allowIndefinite: true } : {};
      expect(decodeCbor(fromHex(row.hex), opts)).toStrictEqual(row.value);
      if (row.canonical) {
        expect(toHex(encodeCbor(row.value))).toBe(row.hex);
        expect(decodeCbor(fromHex(row.hex), { deterministic: true })).toStrictEqual(row.value);
      } else if (!row.indefinite) {
        // Non-preferred float widths decode in the default mode but fail the deterministic check.
        expect(codeOf(() => decodeCbor(fromHex(row.hex), { deterministic: true }))).toBe('ERR_CBOR_NOT_DETERMINISTIC');
      }
      if (row.indefinite) {
        expect(codeOf(() => decodeCbor(fromHex(row.hex)))).toBe('ERR_CBOR_INDEFINITE_LENGTH');
        expect(codeOf(() => decodeCbor(fromHex(row.hex), { allowIndefinite: true, deterministic: true }))).toBe('ERR_CBOR_NOT_DETERMINISTIC');
        // Re-encoding gives the definite-length deterministic form, which decodes to the same value.
        expect(decodeCbor(encodeCbor(row.value), { deterministic: true })).toStrictEqual(row.value);
      }
    });
  }
});

describe('CBOR: rejects what is not well-formed or not valid', () => {
  const cases: { name: string; hex: string; code: string; opts?: Parameters<typeof decodeCbor>[1] }[] = [
    { name: 'empty input', hex: '', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'missing one-byte argument', hex: '18', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'missing eight-byte argument', hex: '1b000000', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'text shorter than its length', hex: '6261', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'array shorter than its length', hex: '830102', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'byte string claiming 2^64-1 bytes', hex: '5bffffffffffffffff00', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'array claiming 2^32-1 items', hex: '9affffffff00', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'map claiming more pairs than bytes', hex: 'a30102', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'reserved additional information 28', hex: '1c', code: 'ERR_INPUT_MALFORMED' },
    { name: 'reserved additional information 30 on major 7', hex: 'fe', code: 'ERR_INPUT_MALFORMED' },
    { name: 'stray break', hex: 'ff', code: 'ERR_INPUT_MALFORMED' },
    { name: 'indefinite unsigned integer', hex: '1f', code: 'ERR_INPUT_MALFORMED' },
    { name: 'indefinite tag', hex: 'df', code: 'ERR_INPUT_MALFORMED' },
    { name: 'two-byte simple value below 32', hex: 'f818', code: 'ERR_INPUT_MALFORMED' },
    { name: 'invalid UTF-8 in text', hex: '61ff', code: 'ERR_INPUT_MALFORMED' },
    { name: 'UTF-16 surrogate encoded in UTF-8', hex: '63eda080', code: 'ERR_INPUT_MALFORMED' },
    { name: 'trailing bytes', hex: '0000', code: 'ERR_INPUT_MALFORMED' },
    { name: 'duplicate integer key', hex: 'a201020103', code: 'ERR_CBOR_DUPLICATE_KEY' },
    { name: 'duplicate key in non-shortest form', hex: 'a20102180103', code: 'ERR_CBOR_DUPLICATE_KEY' },
    { name: 'duplicate text key', hex: 'a2616101616102', code: 'ERR_CBOR_DUPLICATE_KEY' },
    { name: 'array as map key', hex: 'a18001', code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'byte string as map key', hex: 'a14001', code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'indefinite array by default', hex: '9fff', code: 'ERR_CBOR_INDEFINITE_LENGTH' },
    { name: 'indefinite string without break', hex: '5f4101', code: 'ERR_INPUT_TRUNCATED', opts: { allowIndefinite: true } },
    { name: 'indefinite byte string with a text chunk', hex: '5f6161ff', code: 'ERR_INPUT_MALFORMED', opts: { allowIndefinite: true } },
    { name: 'nested indefinite string chunk', hex: '5f5fffff', code: 'ERR_INPUT_MALFORMED', opts: { allowIndefinite: true } },
    { name: 'text chunk splitting a UTF-8 character', hex: '7f62c3a061bcff', code: 'ERR_INPUT_MALFORMED', opts: { allowIndefinite: true } },
    { name: 'break inside a definite array', hex: '81ff', code: 'ERR_INPUT_MALFORMED' },
    { name: 'non-shortest argument (deterministic)', hex: '1817', code: 'ERR_CBOR_NOT_DETERMINISTIC', opts: { deterministic: true } },
    { name: 'non-shortest length (deterministic)', hex: '5900014101', code: 'ERR_CBOR_NOT_DETERMINISTIC', opts: { deterministic: true } },
    { name: 'unsorted map keys (deterministic)', hex: 'a202000100', code: 'ERR_CBOR_NOT_DETERMINISTIC', opts: { deterministic: true } },
    { name: 'longer key sorted first (deterministic)', hex: 'a21864000a00', code: 'ERR_CBOR_NOT_DETERMINISTIC', opts: { deterministic: true } },
    { name: 'float32 holding a float16 value (deterministic)', hex: 'fa3f800000', code: 'ERR_CBOR_NOT_DETERMINISTIC', opts: { deterministic: true } },
    { name: 'NaN with a payload (deterministic)', hex: 'f97e01', code: 'ERR_CBOR_NOT_DETERMINISTIC', opts: { deterministic: true } },
    { name: 'nesting deeper than maxDepth', hex: '8181818100', code: 'ERR_INPUT_TOO_LARGE', opts: { maxDepth: 3 } },
    { name: 'more items than maxItems', hex: '83010203', code: 'ERR_INPUT_TOO_LARGE', opts: { maxItems: 3 } },
    { name: 'input over maxSize', hex: '4401020304', code: 'ERR_INPUT_TOO_LARGE', opts: { maxSize: 4 } },
    { name: 'tags nested deeper than maxDepth', hex: 'c1c1c1c100', code: 'ERR_INPUT_TOO_LARGE', opts: { maxDepth: 3 } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      expect(codeOf(() => decodeCbor(fromHex(c.hex), c.opts))).toBe(c.code);
    });
  }

  it('bounds the default nesting depth on 100k nested arrays without a stack overflow', () => {
    const deep = new Uint8Array(100_001).fill(0x81);
    deep[100_000] = 0;
    expect(codeOf(() => decodeCbor(deep))).toBe('ERR_INPUT_TOO_LARGE');
  });

  it('keeps a leading U+FEFF as text (no byte-order-mark stripping)', () => {
    expect(decodeCbor(fromHex('63efbbbf'))).toBe('\ufeff');
  });

  it('decodes integers beyond 2^53 as bigint and within it as number', () => {
    expect(decodeCbor(fromHex('1b001fffffffffffff'))).toBe(Number.MAX_SAFE_INTEGER);
    expect(decodeCbor(fromHex('1b0020000000000000'))).toBe(2n ** 53n);
    expect(decodeCbor(fromHex('3b001ffffffffffffe'))).toBe(-Number.MAX_SAFE_INTEGER);
    expect(decodeCbor(fromHex('3b001fffffffffffff'))).toBe(-(2n ** 53n));
  });

  it('returns byte strings as copies, not views of the input', () => {
    const input = fromHex('4401020304');
    const out = decodeCbor(input) as Uint8Array;
    input[1] = 0xff;
    expect(toHex(out)).toBe('01020304');
  });
});

describe('CBOR: deterministic encoder', () => {
  it('sorts map keys by their encoded bytes (RFC 8949 §4.2.1)', () => {
    const m = new Map<string | number, CborValue>([['b', 1], ['a', 2], [100, 3], [-1, 4], [10, 5]]);
    expect(toHex(encodeCbor(m))).toBe('a50a0518640320046161026162' + '01');
  });

  it('encodes integers in the shortest form at every boundary', () => {
    const rows: [number | bigint, string][] = [
      [23, '17'], [24, '1818'], [255, '18ff'], [256, '190100'], [65535, '19ffff'], [65536, '1a00010000'],
      [4294967295, '1affffffff'], [4294967296, '1b0000000100000000'], [-24, '37'], [-25, '3818'], [-256, '38ff'], [-257, '390100'],
      [2 ** 60, '1b1000000000000000'], [-(2n ** 64n) - 1n, 'c349010000000000000000'], [2n ** 64n, 'c249010000000000000000'],
    ];
    for (const [v, hex] of rows) expect(toHex(encodeCbor(v))).toBe(hex);
  });

  it('picks the shortest float width that keeps the value', () => {
    expect(toHex(encodeCbor(1.5))).toBe('f93e00');
    expect(toHex(encodeCbor(f(1)))).toBe('f93c00');
    expect(toHex(encodeCbor(-0))).toBe('f98000');
    expect(toHex(encodeCbor(f(2 ** -24)))).toBe('f90001');
    expect(toHex(encodeCbor(f(2 ** -25)))).toBe('fa33000000');
    expect(toHex(encodeCbor(f(65504)))).toBe('f97bff');
    expect(toHex(encodeCbor(f(65505)))).toBe('fa477fe100');
    expect(toHex(encodeCbor(f(0.1)))).toBe('fb3fb999999999999a');
    expect(toHex(encodeCbor(f(NaN)))).toBe('f97e00');
  });

  it('refuses values with no encoding', () => {
    expect(codeOf(() => encodeCbor('\ud800'))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => encodeCbor(new Map<number | bigint, CborValue>([[1, 1], [1n, 2]])))).toBe('ERR_CBOR_DUPLICATE_KEY');
    expect(codeOf(() => encodeCbor({} as unknown as CborValue))).toBe('ERR_INPUT_UNSUPPORTED');
    const cyclic: CborValue[] = [];
    cyclic.push(cyclic);
    expect(codeOf(() => encodeCbor(cyclic))).toBe('ERR_INPUT_TOO_LARGE');
  });
});
