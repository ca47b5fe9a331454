import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, utf8 } from '@custody/core';
import { readVector, readVectorText } from '../../../../test/vectors.js';
import { parseCollateralBundle, parseQeIdentity, parseTdxTcbInfo, readCrl, readSignedResponse, readTdxCollateral } from './collateral.js';
import { topLevelMembers } from './signed-json.js';
import { G, T, bundleFrom, collateral2023 } from './testing/sets.js';

function typedOrOk(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toMatch(/^ERR_(COLLATERAL_INVALID|COLLATERAL_MISMATCH|CRL_INVALID|CERT_PARSE|INPUT_TOO_LARGE|INPUT_MALFORMED|INPUT_TRUNCATED|INPUT_UNSUPPORTED)$/);
  }
}

const texts = [G + 'sample_tcbInfo_response', G + 'sample_qeIdentity_response', G + 'sample_tcbinfo_response_v5', T + 'tcbInfo.json', T + 'enclaveIdentity.json'].map(readVectorText);
const JSON_CHARS = ['{', '}', '[', ']', '"', ',', ':', '\\', ' ', '0', '9', '-', 'e', '.', 'n', 't', 'f', 'a'];

/** Real PCS responses with characters replaced, inserted or deleted (JSON-structural characters favoured). */
const mutatedText = fc
  .tuple(
    fc.constantFrom(...texts),
    fc.array(fc.tuple(fc.nat(), fc.constantFrom('replace', 'insert', 'delete'), fc.oneof(fc.constantFrom(...JSON_CHARS), fc.string({ maxLength: 2 }))), { minLength: 1, maxLength: 5 }),
  )
  .map(([t, edits]) => {
    let s = t;
    for (const [pos, op, ch] of edits) {
      const i = pos % (s.length + 1);
      s = op === 'insert' ? s.slice(0, i) + ch + s.slice(i) : op === 'delete' ? s.slice(0, i) + s.slice(i + 1) : s.slice(0, i) + ch + s.slice(i + 1);
    }
    return s;
  });

describe('collateral JSON readers fuzz', () => {
  it('topLevelMembers agrees with JSON.parse: both accept or the scanner gives ERR_COLLATERAL_INVALID', () => {
    fc.assert(
      fc.property(fc.oneof(mutatedText, fc.json(), fc.string({ maxLength: 200 })), (s) => {
        let parsed: unknown;
        let jsonOk = true;
        try {
          parsed = JSON.parse(s);
        } catch {
          jsonOk = false;
        }
        try {
          const spans = topLevelMembers(s, 'fuzz');
          // The scanner accepts only objects, and only what JSON.parse also accepts.
          expect(jsonOk).toBe(true);
          expect(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed)).toBe(true);
          for (const [k, { start, end }] of spans) expect(JSON.parse(s.slice(start, end))).toEqual((parsed as Record<string, unknown>)[k]);
        } catch (e) {
          expect(e).toBeInstanceOf(CustodyError);
          expect((e as CustodyError).code).toBe('ERR_COLLATERAL_INVALID');
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('signed-response and body readers give a value or a typed error', () => {
    fc.assert(
      fc.property(mutatedText, (s) => {
        typedOrOk(() => {
          const key = s.includes('"enclaveIdentity"') ? 'enclaveIdentity' : 'tcbInfo';
          const signed = readSignedResponse(utf8(s), key, 'fuzz');
          return key === 'tcbInfo' ? parseTdxTcbInfo(signed.body) : parseQeIdentity(signed.body);
        });
      }),
      { numRuns: 2000 },
    );
  });

  it('body parsers take arbitrary JSON values without crashing', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        const s = JSON.stringify(v) ?? 'null';
        typedOrOk(() => parseTdxTcbInfo(s));
        typedOrOk(() => parseQeIdentity(s));
      }),
      { numRuns: 1000 },
    );
  });

  it('bundle reader: mutated bundles and random bytes give a value or a typed error', () => {
    const bundle = new TextDecoder().decode(bundleFrom(collateral2023()));
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(), fc.oneof(fc.constantFrom(...JSON_CHARS), fc.string({ maxLength: 2 }))), { minLength: 1, maxLength: 4 }),
        (edits) => {
          let s = bundle;
          for (const [pos, ch] of edits) {
            const i = pos % s.length;
            s = s.slice(0, i) + ch + s.slice(i + 1);
          }
          typedOrOk(() => parseCollateralBundle(utf8(s)));
        },
      ),
      { numRuns: 500 },
    );
    fc.assert(fc.property(fc.uint8Array({ maxLength: 500 }), (b) => typedOrOk(() => parseCollateralBundle(b))), { numRuns: 500 });
  });

  it('CRL reader: mutated DER, hex and random bytes give a CRL or a typed error', () => {
    const der = readVector(G + 'pckcrl');
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.option(fc.nat()), (edits, cut) => {
        const b = der.slice();
        for (const [pos, val] of edits) b[pos % b.length] = val;
        typedOrOk(() => readCrl(cut === null ? b : b.subarray(0, cut % (b.length + 1)), 'fuzz'));
      }),
      { numRuns: 1000 },
    );
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => typedOrOk(() => readCrl(b, 'fuzz'))), { numRuns: 500 });
  });

  it('the named-file reader maps every bad blob to a typed error', () => {
    const names = ['tcbInfo', 'qeIdentity', 'pckCrl', 'rootCaCrl', 'tcbInfoIssuerChain', 'qeIdentityIssuerChain', 'pckCrlIssuerChain', 'bundle'];
    fc.assert(
      fc.property(fc.constantFrom(...names), fc.oneof(fc.uint8Array({ maxLength: 300 }), mutatedText.map(utf8)), (name, blob) => {
        typedOrOk(() => readTdxCollateral({ [name]: blob }));
      }),
      { numRuns: 1000 },
    );
  });
});
