// Untrusted inputs of the client: runtime data, attestation bundles, receipts. Random and
// mutated inputs must fail with a CustodyError (stable code), never another exception.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, toBase64Url } from '@custody/core';
import { createOhttpServerKey, encodeKeyConfigs } from '../ohttp/key-config.js';
import { parseReceipt } from '../receipt/receipt.js';
import { parseAttestationBundle, parseAttestationBundleText } from './bundle.js';
import { buildRuntimeData, parseRuntimeData } from './runtime-data.js';

function outcome(f: () => unknown): string {
  try {
    f();
    return 'ok';
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    return e.code;
  }
}

const key = await createOhttpServerKey({ keyId: 1, ikm: new Uint8Array(32).fill(1) });
const rd = buildRuntimeData({ nonce: new Uint8Array(16).fill(2), keyConfigs: [key.config], receiptKey: new Uint8Array(32).fill(3), teePublicKey: new Uint8Array(32).fill(4) });
const bundle = {
  format: 'custody.dev/attestation-bundle/v1',
  platform: 'sim',
  simulated: true,
  evidence: toBase64Url(new Uint8Array(40)),
  runtimeData: rd,
  ohttpKeys: toBase64Url(encodeKeyConfigs([key.config])),
  receiptKey: { kty: 'OKP', crv: 'Ed25519', x: toBase64Url(new Uint8Array(32).fill(3)) },
  issuedAt: '2025-06-01T00:00:00Z',
};

const mutate = (s: string) =>
  fc.array(fc.tuple(fc.nat(s.length - 1), fc.integer({ min: 32, max: 126 })), { minLength: 1, maxLength: 6 }).map((muts) => {
    const a = [...s];
    for (const [i, c] of muts) a[i] = String.fromCharCode(c);
    return a.join('');
  });

describe('client parsers (fuzz)', () => {
  it('runtime data: random and mutated text', () => {
    expect(outcome(() => parseRuntimeData(rd))).toBe('ok');
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => void outcome(() => parseRuntimeData(s))), { numRuns: 1000 });
    fc.assert(fc.property(mutate(rd), (s) => void outcome(() => parseRuntimeData(s))), { numRuns: 2000 });
  });

  it('attestation bundles: random JSON values and mutated bundles', () => {
    expect(outcome(() => parseAttestationBundle(bundle))).toBe('ok');
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      expect(outcome(() => parseAttestationBundle(v))).not.toBe('ok');
    }), { numRuns: 500 });
    const text = JSON.stringify(bundle);
    fc.assert(fc.property(mutate(text), (s) => void outcome(() => parseAttestationBundleText(s))), { numRuns: 2000 });
  });

  it('receipts: random strings and JSON values', () => {
    fc.assert(fc.property(fc.string({ maxLength: 400 }), (s) => {
      expect(outcome(() => parseReceipt(s))).toBe('ERR_RECEIPT_MALFORMED');
    }), { numRuns: 1000 });
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      expect(outcome(() => parseReceipt(v))).toBe('ERR_RECEIPT_MALFORMED');
    }), { numRuns: 500 });
  });
});
