import { describe, expect, it } from 'vitest';
import { toHex } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { decodeTcbVersion, parseSevSnpReport, productFromCpuid, snpSignatureRaw, SNP_REPORT_SIZE } from './report.js';
import { buildReport, tcbBytes } from './testing/synthetic.js';

const SNP = 'attestation/sev-snp';

describe('parseSevSnpReport on the published reports', () => {
  const cases = [
    {
      name: 'go-sev-guest attestation.bin (v2, Milan, debug policy)',
      file: `${SNP}/go-sev-guest/attestation.bin`,
      version: 2,
      guestSvn: 0,
      policy: 0xb0000n,
      debug: true,
      vmpl: 0,
      signingKey: 'VCEK',
      measurement: 'b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01',
      reportDataPrefix: '0102030405',
      reported: { bootloader: 2, tee: 0, snp: 5, microcode: 68 },
      chipIdPrefix: '3ac3fe21',
      cpuid: undefined,
    },
    {
      name: 'trustee test-report.bin (v2, Milan)',
      file: `${SNP}/trustee/test-report.bin`,
      version: 2,
      guestSvn: 4,
      policy: 0x3001fn,
      debug: false,
      vmpl: 0,
      signingKey: 'VCEK',
      measurement: 'a1f3930413247bb38cfc171579ea3c12d5fe4901f0c792f63fd75d98f1ef827c23500644e0e692e6be917f9050d3d38c',
      reportDataPrefix: undefined,
      reported: { bootloader: 3, tee: 0, snp: 8, microcode: 115 },
      chipIdPrefix: 'c38427a3',
      cpuid: undefined,
    },
    {
      name: 'trustee test-vlek-report.bin (v3, VLEK, VMPL 1)',
      file: `${SNP}/trustee/test-vlek-report.bin`,
      version: 3,
      guestSvn: 0,
      policy: 0x30000n,
      debug: false,
      vmpl: 1,
      signingKey: 'VLEK',
      measurement: undefined,
      reportDataPrefix: undefined,
      reported: { bootloader: 4, tee: 0, snp: 24, microcode: 217 },
      chipIdPrefix: '00000000',
      cpuid: { family: 0x19, model: 0x01, stepping: 0x01 },
    },
  ];

  for (const c of cases) {
    it(c.name, () => {
      const r = parseSevSnpReport(readVector(c.file));
      expect(r.version).toBe(c.version);
      expect(r.guestSvn).toBe(c.guestSvn);
      expect(r.policy).toBe(c.policy);
      expect(r.policyDecoded.debugAllowed).toBe(c.debug);
      expect(r.policyDecoded.smtAllowed).toBe(true);
      expect(r.vmpl).toBe(c.vmpl);
      expect(r.signatureAlgo).toBe(1);
      expect(r.signerInfo.signingKey).toBe(c.signingKey);
      if (c.measurement) expect(toHex(r.measurement)).toBe(c.measurement);
      if (c.reportDataPrefix) {
        expect(toHex(r.reportData).startsWith(c.reportDataPrefix)).toBe(true);
        expect(r.reportData.subarray(c.reportDataPrefix.length / 2).every((b) => b === 0)).toBe(true);
      }
      expect(r.reportedTcb).toMatchObject(c.reported);
      expect(r.reportedTcb.fmc).toBeUndefined();
      expect(toHex(r.chipId).startsWith(c.chipIdPrefix)).toBe(true);
      expect(r.cpuid).toEqual(c.cpuid);
      expect(r.tcbLayout).toBe('legacy');
      expect(r.reservedViolations).toEqual([]);
      expect(r.signedBytes.length).toBe(0x2a0);
      expect(snpSignatureRaw(r)).toHaveLength(96);
    });
  }

  it('reads current_tcb separately from reported_tcb (trustee: microcode differs)', () => {
    const r = parseSevSnpReport(readVector(`${SNP}/trustee/test-report.bin`));
    expect(r.currentTcb.microcode).not.toBe(r.reportedTcb.microcode);
    expect(r.currentTcb.raw).toBe('03000000000008ce');
    expect(r.currentVersion).toEqual({ major: 1, minor: 52, build: 4 });
  });

  it('names the CPUID product of a v3 report and decodes platform info', () => {
    const r = parseSevSnpReport(readVector(`${SNP}/trustee/test-vlek-report.bin`));
    expect(r.cpuidProduct).toBe('Milan');
    expect(r.platformInfoDecoded).toMatchObject({ smtEnabled: true, tsmeEnabled: true, eccEnabled: true, aliasCheckComplete: true, tioEnabled: false });
  });
});

describe('parseSevSnpReport bounds and versions', () => {
  const good = readVector(`${SNP}/go-sev-guest/attestation.bin`);
  const withVersion = (v: number) => {
    const b = good.slice();
    new DataView(b.buffer).setUint32(0, v, true);
    return b;
  };
  const table: [string, Uint8Array, string][] = [
    ['empty', new Uint8Array(0), 'ERR_INPUT_TRUNCATED'],
    ['one byte short', good.subarray(0, SNP_REPORT_SIZE - 1), 'ERR_INPUT_TRUNCATED'],
    ['one byte long', new Uint8Array(SNP_REPORT_SIZE + 1), 'ERR_INPUT_TOO_LARGE'],
    ['version 0', withVersion(0), 'ERR_INPUT_UNSUPPORTED'],
    ['version 1', withVersion(1), 'ERR_INPUT_UNSUPPORTED'],
  ];
  for (const [name, bytes, code] of table) {
    it(`rejects ${name} with ${code}`, () => {
      expect(() => parseSevSnpReport(bytes)).toThrow(expect.objectContaining({ code }));
    });
  }

  it('reports reserved fields that are not zero instead of failing', () => {
    const b = good.slice();
    b[0x4c] = 1; // reserved after signer info
    b[0x200] = 7; // reserved in v2 (mit vector in v5)
    b[0x2a0 + 144] = 1; // after r and s
    new DataView(b.buffer).setBigUint64(8, 0x4000000n | 0x10000n, true); // bit 26 set, bit 17 clear
    const r = parseSevSnpReport(b);
    expect(r.reservedViolations).toEqual(['policy bit 17 (must be one)', 'policy bits 26..63', '0x4c..0x4f', '0x1f8..0x29f', '0x330..0x49f']);
  });

  it('accepts a later version (v5) and reads its mitigation vectors', () => {
    const r = parseSevSnpReport(buildReport({ version: 5, reportedTcb: tcbBytes({ bootloader: 1, tee: 2, snp: 3, microcode: 4 }), launchMitVector: 0x1234n, currentMitVector: 0x5678n, cpuid: { family: 0x19, model: 0x11, stepping: 1 } }));
    expect(r.launchMitVector).toBe(0x1234n);
    expect(r.currentMitVector).toBe(0x5678n);
    expect(r.cpuidProduct).toBe('Genoa');
  });
});

describe('TCB_VERSION layouts', () => {
  it('decodes Milan/Genoa and Turin layouts', () => {
    expect(decodeTcbVersion(Uint8Array.of(2, 0, 0, 0, 0, 0, 5, 68), 'legacy')).toEqual({ bootloader: 2, tee: 0, snp: 5, microcode: 68, raw: '0200000000000544' });
    expect(decodeTcbVersion(Uint8Array.of(1, 2, 3, 4, 0, 0, 0, 9), 'turin')).toEqual({ fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 9, raw: '0102030400000009' });
  });

  it('selects the Turin layout from the CPUID fields of a v3+ report', () => {
    const tcb = tcbBytes({ fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 });
    const r = parseSevSnpReport(buildReport({ version: 3, reportedTcb: tcb, cpuid: { family: 0x1a, model: 0x02, stepping: 0 } }));
    expect(r.cpuidProduct).toBe('Turin');
    expect(r.tcbLayout).toBe('turin');
    expect(r.reportedTcb).toMatchObject({ fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 5 });
    // the same bytes read as a v2 report with the product given from elsewhere
    const v2 = parseSevSnpReport(buildReport({ version: 2, reportedTcb: tcb }), { product: 'Turin' });
    expect(v2.reportedTcb.fmc).toBe(1);
  });

  it('maps CPUID family/model to products', () => {
    expect(productFromCpuid(0x19, 0x01)).toBe('Milan');
    expect(productFromCpuid(0x19, 0x11)).toBe('Genoa');
    expect(productFromCpuid(0x19, 0xa0)).toBe('Genoa');
    expect(productFromCpuid(0x1a, 0x02)).toBe('Turin');
    expect(productFromCpuid(0x1a, 0x50)).toBeUndefined();
    expect(productFromCpuid(0x17, 0x31)).toBeUndefined();
  });
});
