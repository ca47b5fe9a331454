// The structural bound on JSON request bodies: a linear scan before JSON.parse refuses bodies
// with more values or deeper nesting than any broker route takes, and is not fooled by brackets,
// commas and escaped quotes inside strings.
import { describe, expect, it } from 'vitest';
import { checkJsonShape, parseJsonBody, REQUEST_JSON_BOUNDS } from './json-body.js';

const bounds = { maxDepth: 3, maxValues: 5 };
const codeOf = (f: () => unknown): string => {
  try {
    f();
    return 'ok';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
};

describe('checkJsonShape', () => {
  it('counts containers and commas outside strings, and nesting', () => {
    expect(codeOf(() => checkJsonShape('{"a":[1,2],"b":{}}', bounds))).toBe('ok');
    expect(codeOf(() => checkJsonShape('[1,2,3,4,5,6]', bounds))).toBe('ERR_INPUT_TOO_LARGE');
    expect(codeOf(() => checkJsonShape('[[[1]]]', bounds))).toBe('ok');
    expect(codeOf(() => checkJsonShape('[[[[1]]]]', bounds))).toBe('ERR_INPUT_TOO_LARGE');
    // Closing brackets bring the depth down again.
    expect(codeOf(() => checkJsonShape('[[[]],[[]]]', { maxDepth: 3, maxValues: 10 }))).toBe('ok');
  });

  it('names the bound crossed', () => {
    try {
      checkJsonShape('['.repeat(100), bounds);
    } catch (e) {
      expect(e).toMatchObject({ code: 'ERR_INPUT_TOO_LARGE', detail: { bound: 'depth', max: 3 } });
    }
    try {
      checkJsonShape(`[${'0,'.repeat(100)}0]`, bounds);
    } catch (e) {
      expect(e).toMatchObject({ code: 'ERR_INPUT_TOO_LARGE', detail: { bound: 'values', max: 5 } });
    }
    expect.assertions(2);
  });

  it('skips strings, whatever they hold: brackets, commas, escaped quotes, runs of backslashes', () => {
    for (const s of ['[[[[,,,,,,]]]]', 'a\\"[[[[[,,,,,', '\\\\', '\\\\\\"[[[[[[', '\u2028,,,,,,,,']) {
      const text = JSON.stringify({ s });
      expect(JSON.parse(text)).toEqual({ s });
      expect(codeOf(() => checkJsonShape(text, bounds)), text).toBe('ok');
    }
    // A string closed after an even run of backslashes: what follows is structure again.
    expect(codeOf(() => checkJsonShape('["\\\\",[[[1]]]]', bounds))).toBe('ERR_INPUT_TOO_LARGE');
  });

  it('is linear in long strings of escapes and in unterminated strings', () => {
    const escapes = `{"s":"${'\\"'.repeat(1_000_000)}"}`;
    const backslashes = `{"s":"${'\\\\'.repeat(1_000_000)}"}`;
    const started = performance.now();
    checkJsonShape(escapes, bounds);
    checkJsonShape(backslashes, bounds);
    checkJsonShape(`{"s":"${'x'.repeat(2_000_000)}`, bounds);
    expect(performance.now() - started).toBeLessThan(1000);
  });

  it('parseJsonBody: the bound first, then JSON.parse (ERR_INPUT_MALFORMED)', () => {
    expect(parseJsonBody('{"a":[1,{"b":"]"}]}')).toEqual({ a: [1, { b: ']' }] });
    expect(codeOf(() => parseJsonBody('{"a":'))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => parseJsonBody(`{"c":{${Array.from({ length: 2000 }, (_, i) => `"k${i}":""`).join(',')}}}`))).toBe('ERR_INPUT_TOO_LARGE');
    expect(codeOf(() => parseJsonBody(`${'['.repeat(1_000_000)}${']'.repeat(1_000_000)}`))).toBe('ERR_INPUT_TOO_LARGE');
  });

  it('takes the largest legitimate attestation body (16 certificates, 32 collateral entries, 8 devices of 8 certificates)', () => {
    const body = JSON.stringify({
      session: `ses_${'0'.repeat(36)}`,
      evidence: 'AA==',
      runtimeData: JSON.stringify({ nonce: 'n', 'tee-pubkey': { crv: 'X25519', kty: 'OKP', x: 'x' } }),
      platform: 'tdx',
      certs: Array.from({ length: 16 }, () => 'AA=='),
      collateral: Object.fromEntries(Array.from({ length: 32 }, (_, i) => [`c${i}`, 'AA=='])),
      devices: Array.from({ length: 8 }, () => ({ platform: 'nvidia', evidence: 'AA==', certs: Array.from({ length: 8 }, () => 'AA==') })),
    });
    expect(codeOf(() => checkJsonShape(body, REQUEST_JSON_BOUNDS))).toBe('ok');
    // With room to spare: it passes a quarter of the bound, and half the depth.
    expect(codeOf(() => checkJsonShape(body, { maxDepth: REQUEST_JSON_BOUNDS.maxDepth / 2, maxValues: REQUEST_JSON_BOUNDS.maxValues / 4 }))).toBe('ok');
  });
});
