import { describe, expect, it } from 'vitest';
import { CustodyError, canonicalize, sha256, sha384, toHex, utf8, type Bytes } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { parseSevSnpReport } from '../sev-snp/index.js';
import { parseTdReport } from '../tdx/index.js';
import { hclAttestationKey, verifyRuntimeDataBinding } from './checks.js';
import { HCL_REQUEST_DATA_OFFSET, looksLikeHclReport, parseHclReport, parseRuntimeData } from './hcl-report.js';
import { A } from './testing/vectors.js';

const SNP_HCL = readVector(`${A}az-snp-vtpm/hcl-report.bin`);
const TDX_HCL = readVector(`${A}az-tdx-vtpm/hcl-report.bin`);

function codeOf(f: () => unknown): string {
  try {
    f();
  } catch (e) {
    if (e instanceof CustodyError) return e.code;
    throw e;
  }
  return 'no error';
}

function setU32(b: Uint8Array, at: number, v: number): Bytes {
  const c = b.slice();
  new DataView(c.buffer).setUint32(at, v, true);
  return c;
}

const u32 = (b: Uint8Array, at: number): number => new DataView(b.buffer, b.byteOffset).getUint32(at, true);

/** The same report in IGVM request data version 2: a 4-byte capability bitmap before the runtime data. */
function asRequestV2(b: Uint8Array, bitmap: number): Bytes {
  const rd = HCL_REQUEST_DATA_OFFSET;
  const vsize = u32(b, rd + 16);
  const out = new Uint8Array(b.length + 4);
  out.set(b.subarray(0, rd + 20));
  new DataView(out.buffer).setUint32(rd + 20, bitmap, true);
  out.set(b.subarray(rd + 20), rd + 24);
  const dv = new DataView(out.buffer);
  dv.setUint32(8, rd + 24 + vsize, true); // report_size
  dv.setUint32(rd, 24 + vsize, true); // data_size
  dv.setUint32(rd + 4, 2, true); // version
  return out;
}

describe('HCL report parser on the vectors', () => {
  const cases = [
    { name: 'az-snp-vtpm/hcl-report.bin', bytes: SNP_HCL, type: 'snp', headerVersion: 1, runtimeSize: 1110, reportSize: 2346, hwSize: 1184 },
    { name: 'az-tdx-vtpm/hcl-report.bin', bytes: TDX_HCL, type: 'tdx', headerVersion: 2, runtimeSize: 1201, reportSize: 2437, hwSize: 1024 },
  ] as const;
  for (const c of cases) {
    it(`${c.name}: layout, runtime data and its binding to the hardware report`, async () => {
      expect(looksLikeHclReport(c.bytes)).toBe(true);
      const h = parseHclReport(c.bytes);
      expect(h.reportType).toBe(c.type);
      expect(h.header).toEqual({ version: c.headerVersion, reportSize: c.reportSize, requestType: 2, requestTypeName: 'AK_CERT_REQUEST', status: 0 });
      expect(h.requestData).toEqual({ dataSize: 20 + c.runtimeSize, version: 1, reportType: c.type === 'snp' ? 2 : 4, hashType: 'SHA-256', hashSize: 32, variableDataSize: c.runtimeSize });
      expect(h.hardwareReport.length).toBe(c.hwSize);
      expect(toHex(h.hardwareReport)).toBe(toHex(c.bytes.subarray(0x20, 0x20 + c.hwSize)));
      expect(h.runtimeDataOffset).toBe(0x4d4);
      expect(h.runtimeData.length).toBe(c.runtimeSize);
      expect(h.trailingBytes).toBe(2600 - c.reportSize);
      expect(h.paddingNonZero).toBe(false);

      const rt = parseRuntimeData(h.runtimeData);
      expect(rt.keys.map((k) => k.kid)).toEqual(['HCLAkPub', 'HCLEkPub']);
      expect(rt.akPub.key_ops).toEqual(['sign']);
      expect(rt.ekPub?.key_ops).toEqual(['encrypt']);
      expect(rt.vmConfiguration?.['secure-boot']).toBe(true);
      expect(rt.vmConfiguration?.['tpm-enabled']).toBe(true);
      expect(rt.userData).toBe('0'.repeat(128));
      const ak = hclAttestationKey(rt.akPub);
      expect(ak.key.kty === 'RSA' && ak.key.bits).toBe(2048);

      const reportData = c.type === 'snp' ? parseSevSnpReport(h.hardwareReport).reportData : parseTdReport(h.hardwareReport).body.reportData;
      expect(toHex(reportData.subarray(0, 32))).toBe(toHex(await sha256(h.runtimeData)));
      expect(toHex(reportData.subarray(32))).toBe('0'.repeat(64));
      await expect(verifyRuntimeDataBinding(h, reportData, 'hardware')).resolves.toMatch(/SHA-256/);
    });
  }

  it('the SEV-SNP runtime data digest is b3fbad65… (the report_data the README names)', async () => {
    const h = parseHclReport(SNP_HCL);
    expect(toHex(await sha256(h.runtimeData))).toBe('b3fbad6514c83caeb0380882145e49f794229ef37c421b91fc47ff93556bafac');
    expect(h.runtimeData[0]).toBe(0x7b);
  });

  it('request data version 2 (capability bitmap before the runtime data) parses to the same runtime data', async () => {
    const v2 = asRequestV2(SNP_HCL, 0b1010);
    const h = parseHclReport(v2);
    expect(h.requestData.version).toBe(2);
    expect(h.requestData.capabilityBitmap).toBe(0b1010);
    expect(h.runtimeDataOffset).toBe(0x4d8);
    expect(toHex(h.runtimeData)).toBe(toHex(parseHclReport(SNP_HCL).runtimeData));
    await expect(verifyRuntimeDataBinding(h, parseSevSnpReport(h.hardwareReport).reportData, 'SEV-SNP')).resolves.toBeTypeOf('string');
  });

  it('the hash type is honoured: SHA-384 over the same runtime data does not match report_data', async () => {
    const h = parseHclReport(setU32(SNP_HCL, HCL_REQUEST_DATA_OFFSET + 12, 2));
    expect(h.requestData.hashType).toBe('SHA-384');
    expect(h.requestData.hashSize).toBe(48);
    expect(toHex(await sha384(h.runtimeData))).not.toBe(toHex(parseSevSnpReport(h.hardwareReport).reportData.subarray(0, 48)));
    await expect(verifyRuntimeDataBinding(h, parseSevSnpReport(h.hardwareReport).reportData, 'SEV-SNP')).rejects.toMatchObject({ code: 'ERR_EVIDENCE_BINDING' });
  });

  it('non-zero padding is reported, not measured', () => {
    const b = SNP_HCL.slice();
    b[b.length - 1] = 1;
    expect(parseHclReport(b).paddingNonZero).toBe(true);
    const t = TDX_HCL.slice();
    t[0x20 + 1100] = 1; // after the 1024-byte TDREPORT, inside the 1184-byte area
    expect(parseHclReport(t).paddingNonZero).toBe(true);
  });
});

describe('HCL report parser: malformed input gives a typed error', () => {
  const rd = HCL_REQUEST_DATA_OFFSET;
  const big = new Uint8Array(64 * 1024 + 1);
  big.set(SNP_HCL);
  const cases: { name: string; bytes: Uint8Array; code: string }[] = [
    { name: 'empty', bytes: new Uint8Array(0), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'wrong signature', bytes: setU32(SNP_HCL, 0, 0x41434c48), code: 'ERR_INPUT_MALFORMED' },
    { name: 'cut inside the hardware report', bytes: SNP_HCL.slice(0, 600), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'cut inside the runtime data', bytes: SNP_HCL.slice(0, 2000), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'header version 3', bytes: setU32(SNP_HCL, 4, 3), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'request data version 3', bytes: setU32(SNP_HCL, rd + 4, 3), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'VBS report type', bytes: setU32(SNP_HCL, rd + 8, 1), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'TVM report type (no hardware report)', bytes: setU32(SNP_HCL, rd + 8, 3), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'invalid hash type 0', bytes: setU32(SNP_HCL, rd + 12, 0), code: 'ERR_INPUT_MALFORMED' },
    { name: 'runtime data size past the end', bytes: setU32(SNP_HCL, rd + 16, 5000), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'runtime data size 0', bytes: setU32(SNP_HCL, rd + 16, 0), code: 'ERR_INPUT_MALFORMED' },
    { name: 'data_size inconsistent', bytes: setU32(SNP_HCL, rd, 1131), code: 'ERR_INPUT_MALFORMED' },
    { name: 'report_size inconsistent', bytes: setU32(SNP_HCL, 8, 2600), code: 'ERR_INPUT_MALFORMED' },
    { name: 'over 64 KiB', bytes: big, code: 'ERR_INPUT_TOO_LARGE' },
  ];
  for (const c of cases) it(c.name, () => expect(codeOf(() => parseHclReport(c.bytes))).toBe(c.code));
});

describe('runtime data parser', () => {
  const rt = JSON.parse(new TextDecoder().decode(parseHclReport(SNP_HCL).runtimeData)) as { keys: Record<string, unknown>[] } & Record<string, unknown>;
  const ak = rt.keys[0]!;
  const ek = rt.keys[1]!;
  const cases: { name: string; doc: unknown; code: string }[] = [
    { name: 'not JSON', doc: '{"keys":', code: 'ERR_INPUT_MALFORMED' },
    { name: 'an array', doc: [], code: 'ERR_INPUT_MALFORMED' },
    { name: 'no keys', doc: { 'vm-configuration': {} }, code: 'ERR_AZURE_AK_MISSING' },
    { name: 'keys without HCLAkPub', doc: { keys: [ek] }, code: 'ERR_AZURE_AK_MISSING' },
    { name: 'two HCLAkPub keys', doc: { keys: [ak, ak] }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'a key without kid', doc: { keys: [{ kty: 'RSA' }, ak] }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'modulus not a string', doc: { keys: [{ ...ak, n: 5 }] }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'key_ops not strings', doc: { keys: [{ ...ak, key_ops: [1] }] }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'vm-configuration not an object', doc: { keys: [ak], 'vm-configuration': 'x' }, code: 'ERR_INPUT_MALFORMED' },
    { name: 'user-data not a string', doc: { keys: [ak], 'user-data': 1 }, code: 'ERR_INPUT_MALFORMED' },
    { name: '17 keys', doc: { keys: Array.from({ length: 17 }, () => ek) }, code: 'ERR_INPUT_TOO_LARGE' },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const bytes = typeof c.doc === 'string' ? utf8(c.doc) : utf8(JSON.stringify(c.doc));
      expect(codeOf(() => parseRuntimeData(bytes))).toBe(c.code);
    });
  }
  it('invalid UTF-8 gives ERR_INPUT_MALFORMED', () => expect(codeOf(() => parseRuntimeData(Uint8Array.of(0x7b, 0xff, 0x7d)))).toBe('ERR_INPUT_MALFORMED'));

  it('HCLAkPub must be an RSA key with a valid modulus', () => {
    expect(codeOf(() => hclAttestationKey({ kid: 'HCLAkPub', kty: 'EC', crv: 'P-256', x: 'AA', y: 'AA' }))).toBe('ERR_INPUT_UNSUPPORTED');
    expect(codeOf(() => hclAttestationKey({ kid: 'HCLAkPub', kty: 'RSA', e: 'AQAB' }))).toMatch(/^ERR_INPUT_/);
    expect(codeOf(() => hclAttestationKey({ kid: 'HCLAkPub', kty: 'RSA', n: '', e: 'AQAB' }))).toMatch(/^ERR_INPUT_/);
  });

  it('keeps the JWK exactly as given (publicKey claims are its canonical JSON)', () => {
    const parsed = parseRuntimeData(parseHclReport(SNP_HCL).runtimeData);
    expect(canonicalize(parsed.akPub)).toBe(canonicalize(ak));
  });
});
