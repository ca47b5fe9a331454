import { describe, expect, it } from 'vitest';
import { concatBytes, encodeTlv, readCertificates, toPem, utf8 } from '@custody/core';
import { parseTdxQuote } from '../tdx/quote.js';
import { rebuildQuote } from '../tdx/testing/sets.js';
import { TDX_SPR_E4 } from './testing/vendor-stand-in.js';
import { planTdxCollateral } from './urls.js';

/** DER with every text string `from` replaced by `to`, lengths re-encoded (the signature no longer verifies; planning never checks it). */
function replaceText(der: Uint8Array, from: string, to: string): Uint8Array {
  const out: Uint8Array[] = [];
  for (let at = 0; at < der.length; ) {
    const tag = der[at]!;
    let len = der[at + 1]!;
    let head = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + der[at + 2 + i]!;
      head += n;
    }
    const value = der.subarray(at + head, at + head + len);
    if (tag & 0x20) out.push(encodeTlv(tag, replaceText(value, from, to)));
    else if ((tag === 0x0c || tag === 0x13) && new TextDecoder().decode(value) === from) out.push(encodeTlv(tag, utf8(to)));
    else out.push(der.subarray(at, at + head + len));
    at += head + len;
  }
  return concatBytes(...out);
}

/** The SPR E4 quote with its PCK certificate naming `issuerCn` as its issuer. */
function quoteIssuedBy(issuerCn: string): Uint8Array {
  const q = parseTdxQuote(TDX_SPR_E4());
  const [leaf, ...rest] = readCertificates(q.pckCertChain);
  const chain = [replaceText(leaf!, 'Intel SGX PCK Platform CA', issuerCn), ...rest].map((d) => toPem('CERTIFICATE', d)).join('');
  return rebuildQuote(q, { pckCertChain: utf8(chain) });
}

describe('planTdxCollateral', () => {
  it('asks for the PCK CRL of the CA that issued the PCK certificate', () => {
    expect(planTdxCollateral(quoteIssuedBy('Intel SGX PCK Processor CA')).ca).toBe('processor');
  });

  // The CA name is read from the quote: a name Object.prototype has must not find its member.
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    it(`refuses a PCK certificate issued by "${name}" (ERR_TDX_PCK_CERT)`, () => {
      expect(() => planTdxCollateral(quoteIssuedBy(name))).toThrowError(expect.objectContaining({ code: 'ERR_TDX_PCK_CERT' }));
    });
  }
});
