import { describe, expect, it } from 'vitest';
import { fromUtf8, readCertificates, toBase64Url, utf8 } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { encodeSnpCertTable, guidToBytes, parseSnpCertTable, SNP_CERT_GUIDS } from './cert-table.js';
import { createConfigfsTsmEvidence, detectSevSnpEvidence, readSevSnpEvidence } from './evidence.js';

const SNP = 'attestation/sev-snp';
const vcek = readVector(`${SNP}/go-sev-guest/vcek.testcer`);
const [ask, ark] = readCertificates(readVector(`${SNP}/amd-roots/ask_ark_milan.pem`));
const report = readVector(`${SNP}/go-sev-guest/attestation.bin`);

describe('SNP certificate table (configfs-tsm auxblob)', () => {
  it('round-trips VCEK, ASK and ARK by GUID', () => {
    const blob = encodeSnpCertTable([
      { guid: SNP_CERT_GUIDS.vcek, data: vcek },
      { guid: SNP_CERT_GUIDS.ask, data: ask! },
      { guid: SNP_CERT_GUIDS.ark, data: ark! },
    ]);
    // header: three entries + zero terminator, 24 bytes each
    expect(blob.subarray(0, 16)).toEqual(Uint8Array.from([0x63, 0xda, 0x75, 0x8d, 0xe6, 0x64, 0x45, 0x64, 0xad, 0xc5, 0xf4, 0xb9, 0x3b, 0xe8, 0xac, 0xcd]));
    expect(new DataView(blob.buffer).getUint32(16, true)).toBe(96);
    expect(blob.subarray(72, 96).every((b) => b === 0)).toBe(true);
    const t = parseSnpCertTable(blob);
    expect(t.map((e) => e.kind)).toEqual(['vcek', 'ask', 'ark']);
    expect(t[0]!.data).toEqual(vcek);
    expect(t[2]!.data).toEqual(ark);
  });

  it('keeps unknown GUIDs as `other` and reads the VLEK and CRL slots', () => {
    const t = parseSnpCertTable(encodeSnpCertTable([
      { guid: SNP_CERT_GUIDS.vlek, data: Uint8Array.of(1) },
      { guid: SNP_CERT_GUIDS.crl, data: Uint8Array.of(2) },
      { guid: 'ecae0c0f-9502-43b1-afa2-0ae2e0d565b6', data: Uint8Array.of(3, 4) },
    ]));
    expect(t.map((e) => [e.kind, e.guid])).toEqual([
      ['vlek', SNP_CERT_GUIDS.vlek],
      ['crl', SNP_CERT_GUIDS.crl],
      ['other', 'ecae0c0f-9502-43b1-afa2-0ae2e0d565b6'],
    ]);
  });

  it('reads an empty blob as an empty table', () => {
    expect(parseSnpCertTable(new Uint8Array(0))).toEqual([]);
    expect(parseSnpCertTable(new Uint8Array(24))).toEqual([]);
  });

  const entry = (guid: string, offset: number, length: number) => {
    const b = new Uint8Array(24);
    b.set(guidToBytes(guid));
    new DataView(b.buffer).setUint32(16, offset, true);
    new DataView(b.buffer).setUint32(20, length, true);
    return b;
  };
  const cat = (...parts: Uint8Array[]) => Uint8Array.from(parts.flatMap((p) => [...p]));
  const bad: [string, Uint8Array, string][] = [
    ['no terminator', entry(SNP_CERT_GUIDS.vcek, 24, 1), 'ERR_INPUT_TRUNCATED'],
    ['a header cut short', new Uint8Array(10), 'ERR_INPUT_TRUNCATED'],
    ['offset inside the header', cat(entry(SNP_CERT_GUIDS.vcek, 0, 4), new Uint8Array(24), new Uint8Array(4)), 'ERR_INPUT_MALFORMED'],
    ['data past the end', cat(entry(SNP_CERT_GUIDS.vcek, 48, 100), new Uint8Array(24), new Uint8Array(4)), 'ERR_INPUT_MALFORMED'],
    ['a huge length', cat(entry(SNP_CERT_GUIDS.vcek, 48, 0xffffffff), new Uint8Array(24)), 'ERR_INPUT_MALFORMED'],
    ['a zero length', cat(entry(SNP_CERT_GUIDS.vcek, 48, 0), new Uint8Array(24)), 'ERR_INPUT_MALFORMED'],
    ['a duplicate GUID', cat(entry(SNP_CERT_GUIDS.vcek, 72, 1), entry(SNP_CERT_GUIDS.vcek, 72, 1), new Uint8Array(24), Uint8Array.of(1)), 'ERR_INPUT_MALFORMED'],
    ['two GUIDs on the same bytes', cat(entry(SNP_CERT_GUIDS.vcek, 72, 2), entry(SNP_CERT_GUIDS.ask, 72, 2), new Uint8Array(24), Uint8Array.of(1, 2)), 'ERR_INPUT_MALFORMED'],
    ['overlapping entries', cat(entry(SNP_CERT_GUIDS.vcek, 72, 2), entry(SNP_CERT_GUIDS.ask, 73, 2), new Uint8Array(24), Uint8Array.of(1, 2, 3)), 'ERR_INPUT_MALFORMED'],
    ['a terminator with an offset', cat(entry('00000000-0000-0000-0000-000000000000', 5, 0)), 'ERR_INPUT_MALFORMED'],
    ['too many entries', cat(...Array.from({ length: 70 }, (_, i) => entry(`00000000-0000-0000-0000-${String(i + 1).padStart(12, '0')}`, 0, 0))), 'ERR_INPUT_TOO_LARGE'],
    ['an oversized blob', new Uint8Array(600 * 1024).fill(1), 'ERR_INPUT_TOO_LARGE'],
  ];
  for (const [name, blob, code] of bad) {
    it(`rejects ${name} with ${code}`, () => {
      expect(() => parseSnpCertTable(blob)).toThrow(expect.objectContaining({ code }));
    });
  }
});

describe('SEV-SNP evidence forms', () => {
  const aux = encodeSnpCertTable([{ guid: SNP_CERT_GUIDS.vcek, data: vcek }]);

  it('reads the configfs-tsm JSON form and the raw report', () => {
    const json = createConfigfsTsmEvidence(report, aux);
    expect(JSON.parse(fromUtf8(json))).toEqual({ provider: 'sev_guest', outblob: toBase64Url(report), auxblob: toBase64Url(aux) });
    const ev = readSevSnpEvidence(json);
    expect(ev.form).toBe('configfs-tsm');
    expect(ev.report).toEqual(report);
    expect(ev.certTable.map((e) => e.kind)).toEqual(['vcek']);
    expect(readSevSnpEvidence(report)).toMatchObject({ form: 'raw', certTable: [] });
    expect(readSevSnpEvidence(createConfigfsTsmEvidence(report)).certTable).toEqual([]);
  });

  it('detects both forms and nothing else', () => {
    expect(detectSevSnpEvidence(report)).toBe(true);
    expect(detectSevSnpEvidence(createConfigfsTsmEvidence(report, aux))).toBe(true);
    expect(detectSevSnpEvidence(utf8('{"provider":"tdx_guest","outblob":"AA"}'))).toBe(false);
    expect(detectSevSnpEvidence(readVector('attestation/tdx/go-tdx-guest/report.dat'))).toBe(false);
    expect(detectSevSnpEvidence(new Uint8Array(1184))).toBe(false);
    expect(detectSevSnpEvidence(utf8('{not json'))).toBe(false);
  });

  const bad: [string, Uint8Array, string][] = [
    ['another provider', utf8('{"provider":"tdx_guest","outblob":"AA"}'), 'ERR_INPUT_UNSUPPORTED'],
    ['broken JSON', utf8('{"provider":'), 'ERR_INPUT_MALFORMED'],
    ['a JSON array (read as a too-short report)', utf8(' [1]'), 'ERR_INPUT_TRUNCATED'],
    ['no outblob', utf8('{"provider":"sev_guest"}'), 'ERR_INPUT_MALFORMED'],
    ['a non-string auxblob', utf8('{"provider":"sev_guest","outblob":"AA","auxblob":5}'), 'ERR_INPUT_MALFORMED'],
    ['bad base64', utf8('{"provider":"sev_guest","outblob":"!!!"}'), 'ERR_INPUT_MALFORMED'],
    ['a short report', new Uint8Array(100), 'ERR_INPUT_TRUNCATED'],
    ['a long report', new Uint8Array(2000), 'ERR_INPUT_TOO_LARGE'],
  ];
  for (const [name, input, code] of bad) {
    it(`rejects ${name} with ${code}`, () => {
      expect(() => readSevSnpEvidence(input)).toThrow(expect.objectContaining({ code }));
    });
  }
});
