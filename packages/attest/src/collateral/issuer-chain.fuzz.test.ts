// Fuzzing the issuer-chain header decoding (percent-encoded PEM from Intel PCS / PCCS): any string
// gives PEM certificates or ERR_COLLATERAL_RESPONSE, never another exception; real chains round-trip.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, readCertificates } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { decodeIssuerChainHeader } from './issuer-chain.js';

const REAL = ['tcbinfo_issuer_chain.pem', 'qeidentity_issuer_chain.pem', 'pckcrl_issuer_chain.pem'].map((f) => new TextDecoder().decode(readVector(`attestation/tdx/go-tdx-guest/${f}`)));

function outcome(value: string): 'ok' | 'refused' {
  try {
    const pem = decodeIssuerChainHeader(value, 'TCB-Info-Issuer-Chain');
    expect(readCertificates(pem).length).toBeGreaterThan(0);
    return 'ok';
  } catch (e) {
    if (!(e instanceof CustodyError) || e.code !== 'ERR_COLLATERAL_RESPONSE') throw e;
    return 'refused';
  }
}

describe('decodeIssuerChainHeader', () => {
  it('round-trips the real Intel issuer chains as PCS encodes them, certificate bytes unchanged', () => {
    for (const pem of REAL) {
      const out = decodeIssuerChainHeader(encodeURIComponent(pem), 'h');
      expect(readCertificates(out)).toEqual(readCertificates(new TextEncoder().encode(pem)));
    }
  });

  it('random strings: certificates or ERR_COLLATERAL_RESPONSE', () => {
    fc.assert(fc.property(fc.string({ maxLength: 2000 }), (s) => void outcome(s)), { numRuns: 500 });
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 500 }), (s) => void outcome(encodeURIComponent(s))), { numRuns: 300 });
  });

  it('mutated real headers: certificates or ERR_COLLATERAL_RESPONSE', () => {
    const encoded = REAL.map((p) => encodeURIComponent(p));
    const mutation = fc.record({
      which: fc.nat(encoded.length - 1),
      at: fc.nat(),
      len: fc.nat(8),
      insert: fc.constantFrom('', '%', '%2', '%ZZ', '%0A', '-----BEGIN CERTIFICATE-----', '-----END CERTIFICATE-----', '%E0%A4', '+', '\u0000', 'A'),
    });
    fc.assert(
      fc.property(mutation, ({ which, at, len, insert }) => {
        const v = encoded[which]!;
        const i = at % (v.length + 1);
        void outcome(v.slice(0, i) + insert + v.slice(i + len));
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses oversize values, non-certificate blocks and empty text', () => {
    expect(outcome('A'.repeat(64 * 1024 + 1))).toBe('refused');
    expect(outcome(encodeURIComponent('-----BEGIN X509 CRL-----\nMAA=\n-----END X509 CRL-----\n'))).toBe('refused');
    expect(outcome('')).toBe('refused');
    expect(outcome(encodeURIComponent(REAL[0]!.repeat(5)))).toBe('refused'); // 10 certificates: over the bound
  });
});
