import { describe, expect, it } from 'vitest';
import { X509Certificate, concatBytes, readCertificates, toHex } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { decodeTdAttributes, tdMeasurements } from './claims.js';
import { parsePckExtensions } from './pck-extensions.js';
import { looksLikeTdxQuote, parseTdxQuote } from './quote.js';
import { parseTdReport } from './td-report.js';
import { G, T, quoteBytes } from './testing/sets.js';

const table = [
  { file: G + 'tdx_prod_quote_SPR_E4.dat', version: 4, type: 2, size: 4974, teeTcbSvn: '03000400000000000000000000000000', mrtd: '6363b804', reportData: '6c62dec1', qeIsvSvn: 4, fmspc: '50806f000000', pceSvn: 11, trailing: 39 },
  { file: G + 'quote_v5_sample.dat', version: 5, type: 3, size: 5006, teeTcbSvn: '0b010400000000000000000000000000', mrtd: '7348651a', reportData: '945eaacf', qeIsvSvn: 7, fmspc: '90c06f000000', pceSvn: 13, trailing: 0 },
  { file: T + 'tdx_quote_4.dat', version: 4, type: 2, size: 4936, teeTcbSvn: '03000500000000000000000000000000', mrtd: '705ee938', reportData: '7c71fe2c', qeIsvSvn: 4, fmspc: '50806f000000', pceSvn: 11, trailing: 0 },
  { file: T + 'tdx_quote_5.dat', version: 5, type: 3, size: 5006, teeTcbSvn: '05010200000000000000000000000000', mrtd: 'dfba221b', reportData: '6d6ab13b', qeIsvSvn: 6, fmspc: '90c06f000000', pceSvn: 13, trailing: 0 },
  { file: T + 'tdx_quote_6.dat', version: 4, type: 2, size: 5006, teeTcbSvn: '05030200000000000000000000000000', mrtd: '21e8dead', reportData: '26cae1c7', qeIsvSvn: 7, fmspc: '00a06d080000', pceSvn: 11, trailing: 70 },
  { file: 'attestation/azure-vtpm/az-tdx-vtpm/td-quote.bin', version: 4, type: 2, size: undefined, teeTcbSvn: '02010600000000000000000000000000', mrtd: '024a32b0', reportData: '9734504f', qeIsvSvn: 5, fmspc: '00806f050000', pceSvn: 11, trailing: 70 },
];

describe('parseTdxQuote on real quotes', () => {
  for (const t of table) {
    it(`${t.file}: v${t.version}, body type ${t.type}`, () => {
      const b = quoteBytes(t.file);
      if (t.size !== undefined) expect(b.length).toBe(t.size);
      const q = parseTdxQuote(b);
      expect(looksLikeTdxQuote(b)).toBe(true);
      expect(q.header.version).toBe(t.version);
      expect(q.header.attestationKeyType).toBe(2);
      expect(q.header.teeType).toBe(0x81);
      expect(toHex(q.header.qeVendorId)).toBe('939a7233f79c4ca9940a0db3957f0607');
      expect(q.body.type).toBe(t.type);
      expect(toHex(q.body.teeTcbSvn)).toBe(t.teeTcbSvn);
      expect(toHex(q.body.mrTd).startsWith(t.mrtd)).toBe(true);
      expect(toHex(q.body.reportData).startsWith(t.reportData)).toBe(true);
      // header 48 + body (v5: + 6-byte descriptor) is what the attestation key signs
      expect(q.signedData.length).toBe(t.version === 4 ? 632 : 48 + 6 + 648);
      expect(q.signature).toHaveLength(64);
      expect(q.attestationKey).toHaveLength(64);
      expect(q.qeReport.raw).toHaveLength(384);
      expect(q.qeReport.isvSvn).toBe(t.qeIsvSvn);
      expect(q.qeReport.isvProdId).toBe(2);
      expect(toHex(q.qeReport.mrSigner)).toBe('dc9e2a7c6f948f17474e34a7fc43ed030f7c1563f1babddf6340c82e0e54a8c5');
      expect(q.qeAuthData).toHaveLength(32);
      expect(q.certificationDataType).toBe(5);
      expect(q.trailingBytes).toBe(t.trailing);
      const certs = readCertificates(q.pckCertChain).map((d) => new X509Certificate(d));
      expect(certs).toHaveLength(3);
      const ext = parsePckExtensions(certs[0]!);
      expect(toHex(ext.fmspc)).toBe(t.fmspc);
      expect(toHex(ext.pceId)).toBe('0000');
      expect(ext.pceSvn).toBe(t.pceSvn);
      expect(ext.sgxTcbComponents).toHaveLength(16);
      expect(ext.cpuSvn).toHaveLength(16);
      if (t.type === 3) {
        expect(q.body.teeTcbSvn2).toHaveLength(16);
        expect(q.body.mrServiceTd).toHaveLength(48);
      } else {
        expect(q.body.teeTcbSvn2).toBeUndefined();
      }
    });
  }

  it('reads every TD report field at its spec offset (trustee quote 4)', () => {
    const b = quoteBytes(T + 'tdx_quote_4.dat');
    const q = parseTdxQuote(b);
    const at = (off: number, len: number) => toHex(b.subarray(48 + off, 48 + off + len));
    const m = tdMeasurements(q.body);
    expect(m.mrseam).toBe(at(16, 48));
    expect(m.mrsignerseam).toBe(at(64, 48));
    expect(toHex(q.body.seamAttributes)).toBe(at(112, 8));
    expect(toHex(q.body.tdAttributes)).toBe(at(120, 8));
    expect(toHex(q.body.xfam)).toBe(at(128, 8));
    expect(m.mrtd).toBe(at(136, 48));
    expect(m.mrconfigid).toBe(at(184, 48));
    expect(m.mrowner).toBe(at(232, 48));
    expect(m.mrownerconfig).toBe(at(280, 48));
    expect([m.rtmr0, m.rtmr1, m.rtmr2, m.rtmr3]).toEqual([at(328, 48), at(376, 48), at(424, 48), at(472, 48)]);
    expect(toHex(q.body.reportData)).toBe(at(520, 64));
    expect(decodeTdAttributes(q.body.tdAttributes)).toMatchObject({ debug: true, septVeDisable: true, pks: false, keyLocker: false, perfmon: false });
  });

  const bad: { name: string; make: (b: Uint8Array) => Uint8Array; code: string }[] = [
    { name: 'empty', make: () => new Uint8Array(0), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'header only', make: (b) => b.subarray(0, 48), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'version 3 (SGX quote)', make: (b) => Object.assign(b.slice(), { 0: 3 }), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'version 6', make: (b) => Object.assign(b.slice(), { 0: 6 }), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'attestation key type 3 (ECDSA P-384)', make: (b) => Object.assign(b.slice(), { 2: 3 }), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'TEE type SGX', make: (b) => Object.assign(b.slice(), { 4: 0 }), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'signature data length past the end', make: (b) => Object.assign(b.slice(), { 632: 0xff, 633: 0xff }), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'certification data type 5 at the top (no QE report)', make: (b) => Object.assign(b.slice(), { [636 + 128]: 5 }), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'QE auth data size past its container', make: (b) => Object.assign(b.slice(), { [636 + 134 + 448]: 0xff, [636 + 134 + 449]: 0x0f }), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'truncated in the PCK chain', make: (b) => b.subarray(0, b.length - 100), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'over 64 KiB', make: (b) => concatBytes(b, new Uint8Array(65536)), code: 'ERR_INPUT_TOO_LARGE' },
  ];
  for (const t of bad) {
    it(`rejects ${t.name} with ${t.code}`, () => {
      expect(() => parseTdxQuote(t.make(quoteBytes(T + 'tdx_quote_4.dat')))).toThrow(expect.objectContaining({ code: t.code }));
    });
  }

  it('rejects a v5 quote whose body is an SGX enclave report or whose size disagrees with its type', () => {
    const b = quoteBytes(G + 'quote_v5_sample.dat');
    expect(() => parseTdxQuote(Object.assign(b.slice(), { 48: 1 }))).toThrow(expect.objectContaining({ code: 'ERR_INPUT_UNSUPPORTED' }));
    expect(() => parseTdxQuote(Object.assign(b.slice(), { 48: 2 }))).toThrow(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }));
    expect(() => parseTdxQuote(Object.assign(b.slice(), { 48: 9 }))).toThrow(expect.objectContaining({ code: 'ERR_INPUT_UNSUPPORTED' }));
  });
});

describe('parseTdReport (raw 1024-byte TDREPORT)', () => {
  it('parses the TDREPORT inside the Azure TDX HCL report; it agrees with that VM\'s TD quote', () => {
    const hcl = readVector('attestation/azure-vtpm/az-tdx-vtpm/hcl-report.bin');
    const r = parseTdReport(hcl.subarray(0x20, 0x20 + 1024));
    const q = parseTdxQuote(readVector('attestation/azure-vtpm/az-tdx-vtpm/td-quote.bin'));
    expect(r.reportType.type).toBe(0x81);
    expect(tdMeasurements(r.body)).toMatchObject(tdMeasurements({ ...q.body, mrServiceTd: undefined }));
    expect(toHex(r.body.reportData)).toBe(toHex(q.body.reportData));
    expect(toHex(r.body.teeTcbSvn)).toBe(toHex(q.body.teeTcbSvn));
    expect(toHex(r.body.tdAttributes)).toBe(toHex(q.body.tdAttributes));
    expect(r.mac).toHaveLength(32);
  });

  it('go-tdx-guest report.dat is not a well-formed TDREPORT: its first 48 bytes are missing', () => {
    const raw = readVector(G + 'report.dat');
    expect(raw).toHaveLength(1024);
    // TEE_TCB_INFO (VALID = 0x1ff, TEE_TCB_SVN 03 00 05, MRSEAM 2fd279c1...) sits at 0xD0 instead of 0x100,
    // so REPORTTYPE.TYPE reads 0x0f, not 0x81: a typed error, not a misparse.
    expect(toHex(raw.subarray(0xd0, 0xd0 + 8))).toBe('ff01000000000000');
    expect(toHex(raw.subarray(0xe8, 0xe8 + 4))).toBe('2fd279c1');
    expect(() => parseTdReport(raw)).toThrow(expect.objectContaining({ code: 'ERR_INPUT_UNSUPPORTED' }));
    // Realigned, the same bytes parse and show the platform's MRSEAM and TEE_TCB_SVN.
    const realigned = concatBytes(Uint8Array.of(0x81, 0, 0, 0), new Uint8Array(44), raw.subarray(0, 976));
    const r = parseTdReport(realigned);
    expect(toHex(r.body.mrSeam).startsWith('2fd279c1')).toBe(true);
    expect(toHex(r.body.teeTcbSvn)).toBe('03000500000000000000000000000000');
  });

  it('rejects wrong sizes with typed errors', () => {
    expect(() => parseTdReport(new Uint8Array(1023))).toThrow(expect.objectContaining({ code: 'ERR_INPUT_TRUNCATED' }));
    expect(() => parseTdReport(new Uint8Array(1025))).toThrow(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }));
  });
});

describe('parsePckExtensions', () => {
  it('reads the SGX extensions of real PCK certificates', () => {
    const q = parseTdxQuote(quoteBytes(G + 'tdx_prod_quote_SPR_E4.dat'));
    const [leaf] = readCertificates(q.pckCertChain).map((d) => new X509Certificate(d));
    const x = parsePckExtensions(leaf!);
    expect(x.sgxTcbComponents).toEqual([3, 3, 2, 2, 2, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(x.pceSvn).toBe(11);
    expect(toHex(x.fmspc)).toBe('50806f000000');
    expect(x.ppid).toHaveLength(16);
    expect(x.sgxType).toBe(1);
    expect(x.configuration).toEqual({ dynamicPlatform: true, cachedKeys: false, smtEnabled: true });
  });

  it('a certificate without SGX extensions is not a PCK certificate', () => {
    const [, ca] = readCertificates(parseTdxQuote(quoteBytes(G + 'tdx_prod_quote_SPR_E4.dat')).pckCertChain).map((d) => new X509Certificate(d));
    expect(() => parsePckExtensions(ca!)).toThrow(expect.objectContaining({ code: 'ERR_TDX_PCK_CERT' }));
  });
});
