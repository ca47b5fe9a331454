import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalFromMembers, canonicalize, canonicalMembers, parseJsonUnique } from './canonical-json.js';

describe('canonicalize (RFC 8785)', () => {
  // Examples from RFC 8785 section 3.2.2 and 3.2.3.
  it('sorts keys by UTF-16 code units and serialises numbers the ECMAScript way', () => {
    const input = { '\u20ac': 'Euro Sign', '\r': 'Carriage Return', '\ufb33': 'Hebrew Letter Dalet With Dagesh', '1': 'One', '\ud83d\ude00': 'Emoji: Grinning Face', '\u0080': 'Control', '\u00f6': 'Latin Small Letter O With Diaeresis' };
    expect(canonicalize(input)).toBe(
      '{"\\r":"Carriage Return","1":"One","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign","\ud83d\ude00":"Emoji: Grinning Face","\ufb33":"Hebrew Letter Dalet With Dagesh"}',
    );
    expect(canonicalize({ numbers: [333333333.3333333, 1e30, 4.5, 2e-3, 0.000000000000000000000000001], literals: [null, true, false] })).toBe(
      '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27]}',
    );
  });

  it('rejects values JSON cannot carry', () => {
    expect(() => canonicalize({ a: Number.NaN })).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => canonicalize({ a: 1n })).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
  });

  it('drops undefined members and maps -0 to 0', () => {
    expect(canonicalize({ b: undefined, a: -0 })).toBe('{"a":0}');
  });

  // The serialiser builds its text by appending and sorts small objects by insertion; this
  // reference is RFC 8785 written the plain way (sort, map, join), for any JSON value.
  const reference = (v: unknown): string => {
    if (v === null || typeof v !== 'object') return typeof v === 'number' ? (Object.is(v, -0) ? '0' : String(v)) : JSON.stringify(v);
    if (Array.isArray(v)) return '[' + v.map((x) => reference(x === undefined ? null : x)).join(',') + ']';
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o).filter((k) => o[k] !== undefined);
    keys.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    return '{' + keys.map((k) => JSON.stringify(k) + ':' + reference(o[k])).join(',') + '}';
  };

  it('gives the same text as a plain RFC 8785 serialiser, for objects small and large (insertion sort and Array#sort)', () => {
    // Keys from the whole UTF-16 range, lone surrogates and astral pairs included (RFC 8785 orders by code units).
    const key = fc.string({ unit: 'binary', maxLength: 4 });
    const value = fc.jsonValue({ maxDepth: 3 });
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 40 }), fc.array(fc.dictionary(key, fc.option(value, { nil: undefined }), { maxKeys: 30 }), { maxLength: 3 }), (big, list) => {
        expect(canonicalize(big)).toBe(reference(big));
        expect(canonicalize(list)).toBe(reference(list));
        expect(canonicalize({ nested: big, list })).toBe(reference({ nested: big, list }));
      }),
      { numRuns: 400 },
    );
    // Exactly at and around the insertion-sort bound, in reverse order.
    for (const n of [23, 24, 25, 60]) {
      const o = Object.fromEntries(Array.from({ length: n }, (_, i) => [`k${String(n - i).padStart(3, '0')}`, i]));
      expect(canonicalize(o)).toBe(reference(o));
      expect(JSON.parse(canonicalize(o))).toEqual(o);
    }
  });
});

describe('base64', () => {
  it('round-trips standard and URL-safe forms, with and without padding and whitespace', async () => {
    const { fromBase64, toBase64, toBase64Url } = await import('./bytes.js');
    for (let n = 0; n < 70; n++) {
      const b = Uint8Array.from({ length: n }, (_, i) => (i * 73 + n) & 0xff);
      expect(fromBase64(toBase64(b))).toEqual(b);
      expect(fromBase64(toBase64Url(b))).toEqual(b);
      expect(fromBase64(toBase64(b).replace(/(.{10})/g, '$1\n'))).toEqual(b);
    }
    expect(() => fromBase64('ab$d')).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => fromBase64('abcde')).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    expect(() => fromBase64('ab==cd')).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    // "QQ" and "QR" would both decode to "A": only the canonical spelling is accepted.
    expect(fromBase64('QQ')).toEqual(Uint8Array.of(0x41));
    expect(() => fromBase64('QR')).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
  });
});

describe('canonical members', () => {
  it('assemble to exactly the canonical form of the object, with members left out and added', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 3 }), { maxKeys: 8 }), fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 3 }), (obj, omit, extra) => {
        const o = Object.fromEntries(Object.entries(obj)) as Record<string, unknown>;
        const expected: Record<string, unknown> = Object.fromEntries(Object.entries(o).filter(([k]) => !omit.includes(k)));
        const extraTexts: Record<string, string> = {};
        for (const [k, v] of Object.entries(extra)) {
          expected[k] = v;
          extraTexts[k] = canonicalize(v);
        }
        expect(canonicalFromMembers(canonicalMembers(o), { omit, extra: extraTexts })).toBe(canonicalize(expected));
      }),
      { numRuns: 500 },
    );
  });

  it('refuses anything but a plain object', () => {
    expect(() => canonicalMembers([] as never)).toThrow(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }));
    expect(() => canonicalMembers(new Map() as never)).toThrow(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }));
  });
});

describe('parseJsonUnique', () => {
  it.each([
    ['{"a":1,"a":2}', 'a'],
    ['{"tenant":"evil","tenant":"demo"}', 'tenant'],
    // The same name spelt with an escape is the same member.
    ['{"tenant":1,"\\u0074enant":2}', 'tenant'],
    ['[{"x":{"y":1,"z":[1,{"q":1,"q":2}]}}]', 'q'],
    ['{"a":{"b":1},"c":{"b":2},"a":3}', 'a'],
    ['{"a\\"b":1,"a\\"b":2}', 'a"b'],
  ])('refuses %s, naming %s', (text, member) => {
    expect(() => parseJsonUnique(text)).toThrow(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED', detail: { member } }));
  });

  it.each([
    '{"a":1,"b":{"a":2},"c":[{"a":3},{"a":4}]}',
    '{"a":"{\\"a\\":1,\\"a\\":2}","b":"a,a"}',
    '[["a","a"],{"a":["a","a"]}]',
    '"a"',
    '{}',
    ' { "x" : [ ] , "y" : { } } ',
  ])('parses %s as JSON.parse does', (text) => {
    expect(parseJsonUnique(text)).toEqual(JSON.parse(text));
  });

  it('parses any JSON text without repeated members (what JSON.stringify writes) as JSON.parse does', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (v, pretty) => {
        const text = JSON.stringify(v, null, pretty ? 2 : undefined);
        expect(parseJsonUnique(text)).toEqual(JSON.parse(text));
      }),
    );
  });

  it('throws the syntax error JSON.parse throws for text that is not JSON', () => {
    expect(() => parseJsonUnique('{"a":1,')).toThrow(SyntaxError);
  });
});
