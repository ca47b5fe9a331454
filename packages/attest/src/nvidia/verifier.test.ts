import { describe, expect, it } from 'vitest';
import { CustodyError, KEY_USAGE, X509Certificate, fromHex, readCertificates, toHex, toPem, utf8 } from '@custody/core';
import { readVector, readVectorText } from '../../../../test/vectors.js';
import { createKeyCertificate } from '../../../core/src/testing/certificates.js';
import { createNvidiaEvidence, readNvidiaEvidence } from './evidence.js';
import { TCG_DICE_TCB_INFO_OID, certificateFwid } from './fwid.js';
import { parseNvidiaOpaqueData } from './opaque.js';
import { NVIDIA_DEVICE_ROOT_SHA256 } from './roots.js';
import { parseSpdmMeasurementReport } from './spdm.js';
import { MAX_NVIDIA_CERTIFICATES, nvidiaVerifier } from './verifier.js';

// Provenance: NVIDIA nvtrust test data via the shared vectors (see ../shared/vectors/attestation/README.md).
const REPORT_TEXT = readVector('attestation/nvidia/hopperAttestationReport.txt');
const REPORT = fromHex(readVectorText('attestation/nvidia/hopperAttestationReport.txt').trim());
const CHAIN = (n: number) => readVector(`attestation/nvidia/hopper_cert_chain_case${n}.txt`);
const EXPECTED = JSON.parse(readVectorText('attestation/nvidia/hopperAttestationReport-claims.txt')) as {
  measurements: Record<string, string>;
  config: Record<string, unknown> & { measurement_count: Record<string, number> };
};
const AT = new Date('2024-09-01T00:00:00Z');
const REQUEST_NONCE = REPORT.slice(4, 36);

function flipped(b: Uint8Array, at: number, mask = 0x01): Uint8Array {
  const out = b.slice();
  out[at]! ^= mask;
  return out;
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'no error';
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
}

describe('NVIDIA Hopper: the real SPDM attestation report', () => {
  it('verifies with the case-1 chain and reports every measurement block', async () => {
    const r = await nvidiaVerifier.verify({ evidence: REPORT_TEXT, certs: [CHAIN(1)], now: AT });
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.steps.map((s) => s.name)).toEqual(['parse', 'chain', 'signature', 'binding']);
    const c = r.claims!;
    expect(c.platform).toBe('nvidia');
    expect(c.reportData.startsWith('931d8dd0')).toBe(true);
    expect(c.nonce).toBe(c.reportData);
    expect(c.signer.chain.map((s) => /CN=([^,]+)/.exec(s.subject)![1])).toEqual([
      'GH100 A01 GSP FMC LF',
      'GH100 A01 GSP BROM',
      'NVIDIA GH100 Provisioner ICA 1',
      'NVIDIA GH100 Identity',
      'NVIDIA Device Identity CA',
    ]);
    expect(c.signer.rootSha256).toBe(NVIDIA_DEVICE_ROOT_SHA256);
    expect(c.tcb).toEqual({ components: { driverVersion: '550.90.07', vbiosVersion: '96.00.9f.00.01' } });
    expect(c.platformClaims).toMatchObject({ spdmVersion: '1.1', numberOfBlocks: 64, requestedMeasurements: 'all', slotId: 0, measurementTypes: { 'mutable firmware (digest)': 64 } });
  });

  it('matches the published claims (measurements and decoded opaque data)', async () => {
    const r = await nvidiaVerifier.verify({ evidence: REPORT_TEXT, certs: [CHAIN(1)], now: AT });
    const c = r.claims!;
    const expectedMeasurements = Object.fromEntries(Object.entries(EXPECTED.measurements).map(([i, v]) => [`measurement${i}`, v]));
    expect(c.measurements).toEqual(expectedMeasurements);
    const o = c.platformClaims.opaqueData as Record<string, unknown>;
    const cfg = EXPECTED.config;
    expect(o).toMatchObject({
      driverVersion: cfg.driver_version,
      vbiosVersion: cfg.vbios_version,
      boardId: cfg.board_id,
      chipSku: cfg.chip_sku,
      chipSkuMod: cfg.chip_sku_mod,
      project: cfg.project,
      projectSku: cfg.project_sku,
      projectSkuMod: cfg.project_sku_mod,
      gpuInfo: cfg.gpu_info,
      cprInfo: cfg.cpr_info,
      nvdec0Status: cfg.nvdec0_status,
      protectedPcieStatus: cfg.protected_pcie_status,
      fwid: cfg.fwid,
    });
    const counts = o.measurementCount as number[];
    expect(Object.fromEntries(counts.map((n, i) => [String(i + 1), n]))).toEqual(cfg.measurement_count);
  });

  it('binds the report to the certificate: the opaque FWID equals the leaf FWID extension', () => {
    const leaf = new X509Certificate(readCertificates(CHAIN(1))[0]!);
    const fwid = certificateFwid(leaf)!;
    expect(fwid.hash).toBe('SHA-384');
    expect(toHex(fwid.digest)).toBe(EXPECTED.config.fwid);
    expect(certificateFwid(new X509Certificate(readCertificates(CHAIN(1))[1]!))).toBeUndefined();
  });

  it('checks the request nonce when one is expected', async () => {
    const r = await nvidiaVerifier.verify({ evidence: REPORT_TEXT, certs: [CHAIN(1)], now: AT, nonce: REQUEST_NONCE });
    expect(r.ok).toBe(true);
    expect(r.steps.at(-1)).toMatchObject({ name: 'nonce', ok: true });
  });

  it('verifies at the real current time (NVIDIA device certificates do not expire) and fails before the chain was issued', async () => {
    expect((await nvidiaVerifier.verify({ evidence: REPORT_TEXT, certs: [CHAIN(1)], now: new Date() })).ok).toBe(true);
    const early = await nvidiaVerifier.verify({ evidence: REPORT_TEXT, certs: [CHAIN(1)], now: new Date('2021-06-01T00:00:00Z') });
    expect(early.errors[0]).toMatchObject({ code: 'ERR_CERT_EXPIRED', step: 'chain' });
  });

  it('reads the binary, hex and custody-nvidia-gpu/v1 JSON forms alike', async () => {
    const chainDer = readCertificates(CHAIN(1));
    const json = utf8(createNvidiaEvidence(REPORT, chainDer));
    expect(readNvidiaEvidence(json).certChain).toHaveLength(5);
    for (const [evidence, certs] of [[REPORT, [CHAIN(1)]], [json, undefined], [utf8(`  0x${toHex(REPORT).toUpperCase()}\n`), [CHAIN(1)]]] as const) {
      expect(nvidiaVerifier.detect(evidence)).toBe(true);
      const r = await nvidiaVerifier.verify({ evidence, now: AT, ...(certs ? { certs: [...certs] } : {}) });
      expect(r.ok).toBe(true);
    }
    expect(nvidiaVerifier.detect(readVector('attestation/nitro/eternis_lib_test_attestation.cbor'))).toBe(false);
    expect(nvidiaVerifier.detect(utf8('{"format":"custody-sim/v1"}'))).toBe(false);
  });
});

describe('NVIDIA Hopper: tampered twins and chain cases', () => {
  // Offsets: request 0..36 (nonce 4..35); response at 37, first block value at 52..99, second block index at 100.
  const valueOfBlock2 = 100 + 7 + 10;
  const twins: { name: string; evidence: Uint8Array; certs?: Uint8Array[]; roots?: Uint8Array[]; nonce?: Uint8Array; code: string; step: string }[] = [
    { name: 'one flipped signature byte', evidence: flipped(REPORT, REPORT.length - 20), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'one changed measurement byte (block 2)', evidence: flipped(REPORT, valueOfBlock2), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'one changed request nonce byte', evidence: flipped(REPORT, 10), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'one changed opaque FWID byte', evidence: flipped(REPORT, REPORT.length - 96 - 1 - 4 - 2), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a wrong expected nonce', evidence: REPORT, nonce: flipped(REQUEST_NONCE, 0), code: 'ERR_EVIDENCE_NONCE', step: 'nonce' },
    { name: 'case 2: the root alone', evidence: REPORT, certs: [CHAIN(2)], code: 'ERR_CERT_MISSING', step: 'chain' },
    { name: 'case 3: a missing intermediate (Provisioner ICA)', evidence: REPORT, certs: [CHAIN(3)], code: 'ERR_CERT_CHAIN', step: 'chain' },
    { name: 'case 4: the signing certificate (FWID) missing', evidence: REPORT, certs: [CHAIN(4)], code: 'ERR_CERT_MISSING', step: 'chain' },
    { name: 'no certificates at all', evidence: REPORT, certs: [], code: 'ERR_CERT_MISSING', step: 'chain' },
    {
      name: 'the leaf swapped behind an intermediate',
      evidence: REPORT,
      certs: (() => {
        const d = readCertificates(CHAIN(1));
        return [d[1]!, d[0]!, ...d.slice(2)];
      })(),
      code: 'ERR_CERT_MISSING',
      step: 'chain',
    },
    { name: 'a wrong product root given as `roots`', evidence: REPORT, roots: [readVector('attestation/nitro/aws_nitro_root_g1.pem')], code: 'ERR_CERT_ROOT_UNTRUSTED', step: 'chain' },
    {
      name: 'the leaf certificate with a flipped signature byte',
      evidence: REPORT,
      certs: (() => {
        const d = readCertificates(CHAIN(1));
        return [flipped(d[0]!, d[0]!.length - 5), ...d.slice(1)];
      })(),
      code: 'ERR_CERT_SIGNATURE',
      step: 'chain',
    },
  ];
  for (const t of twins) {
    it(`${t.name} -> ${t.code}`, async () => {
      const r = await nvidiaVerifier.verify({ evidence: t.evidence, certs: t.certs ?? [CHAIN(1)], now: AT, ...(t.roots ? { roots: t.roots } : {}), ...(t.nonce ? { nonce: t.nonce } : {}) });
      expect(r.ok).toBe(false);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatchObject({ code: t.code, step: t.step });
    });
  }

  it('accepts the NVIDIA root given explicitly as `roots`', async () => {
    const r = await nvidiaVerifier.verify({ evidence: REPORT, certs: [CHAIN(1)], roots: [readVector('attestation/nvidia/nvidia_device_root.pem')], now: AT });
    expect(r.ok).toBe(true);
    expect(r.claims!.signer.kind).toBe('NVIDIA GPU (custom root)');
  });
});

describe('NVIDIA Hopper: the attestation certificate must be allowed to sign (keyUsage digitalSignature)', () => {
  const realLeaf = new X509Certificate(readCertificates(CHAIN(1))[0]!);
  const fwidExtension = realLeaf.extension(TCG_DICE_TCB_INFO_OID)!;

  /** The real report re-signed by a test leaf (the real leaf's FWID, the given keyUsage) under a test root. */
  async function reissued(keyUsage: number | undefined): Promise<{ evidence: Uint8Array; roots: Uint8Array[] }> {
    const root = await createKeyCertificate({ cn: 'Test GPU Root', serial: 1, ca: true, keyUsage: KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign });
    const leaf = await createKeyCertificate({
      cn: 'Test GSP FMC LF',
      serial: 2,
      ca: false,
      issuer: root,
      extensions: [[TCG_DICE_TCB_INFO_OID, fwidExtension.value]],
      ...(keyUsage === undefined ? {} : { keyUsage }),
    });
    const report = REPORT.slice();
    const signedEnd = report.length - 96;
    const sig = await globalThis.crypto.subtle.sign({ name: 'ECDSA', hash: 'SHA-384' }, leaf.keys.privateKey, report.slice(0, signedEnd));
    report.set(new Uint8Array(sig), signedEnd);
    return { evidence: utf8(createNvidiaEvidence(report, [leaf.cert])), roots: [root.cert] };
  }

  const cases: { name: string; keyUsage: number | undefined; code?: string }[] = [
    { name: 'digitalSignature, as NVIDIA issues them', keyUsage: KEY_USAGE.digitalSignature },
    { name: 'no keyUsage extension', keyUsage: undefined },
    { name: 'keyCertSign only (a CA key, like the GSP BROM certificate)', keyUsage: KEY_USAGE.keyCertSign, code: 'ERR_CERT_CHAIN' },
  ];
  for (const c of cases) {
    it(`a leaf with ${c.name} -> ${c.code ?? 'verifies'}`, async () => {
      const { evidence, roots } = await reissued(c.keyUsage);
      const r = await nvidiaVerifier.verify({ evidence, roots, now: AT });
      if (!c.code) {
        expect(r.errors).toEqual([]);
        expect(r.ok).toBe(true);
        return;
      }
      expect(r.ok).toBe(false);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatchObject({ code: c.code, step: 'chain' });
    });
  }
});

describe(`NVIDIA Hopper: at most ${MAX_NVIDIA_CERTIFICATES} certificates per evidence (certChain and certs together)`, () => {
  const chain = readCertificates(CHAIN(1));
  /** Self-signed certificates no chain certificate names as its issuer. */
  const unrelated = (n: number) => Promise.all(Array.from({ length: n }, async (_, i) => (await createKeyCertificate({ cn: `Unrelated ${i}`, serial: 100 + i, ca: true })).cert));

  it('the real 5-certificate chain with 3 unrelated certificates (8) verifies, in certs or in certChain', async () => {
    expect(MAX_NVIDIA_CERTIFICATES).toBe(8);
    expect(chain).toHaveLength(5);
    const extra = await unrelated(3);
    for (const input of [{ evidence: REPORT, certs: [...chain, ...extra] }, { evidence: utf8(createNvidiaEvidence(REPORT, chain)), certs: extra }, { evidence: utf8(createNvidiaEvidence(REPORT, [...chain, ...extra])) }]) {
      const r = await nvidiaVerifier.verify({ ...input, now: AT });
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(true);
    }
  });

  it('9 certificates are refused (ERR_INPUT_TOO_LARGE at the chain step), however they are split, although the chain in them is good', async () => {
    const extra = await unrelated(4);
    const inputs = [
      { evidence: REPORT, certs: [...chain, ...extra] },
      { evidence: utf8(createNvidiaEvidence(REPORT, chain)), certs: extra },
      { evidence: utf8(createNvidiaEvidence(REPORT, chain.slice(0, 2))), certs: [...chain.slice(2), ...extra] },
      { evidence: utf8(createNvidiaEvidence(REPORT, [...chain, ...extra])) },
      // One PEM blob holding all nine counts nine.
      { evidence: REPORT, certs: [utf8([...chain, ...extra].map((d) => toPem('CERTIFICATE', d)).join(''))] },
    ];
    for (const input of inputs) {
      const r = await nvidiaVerifier.verify({ ...input, now: AT });
      expect(r.ok).toBe(false);
      expect(r.errors).toEqual([expect.objectContaining({ code: 'ERR_INPUT_TOO_LARGE', step: 'chain' })]);
      expect(r.steps.map((s) => [s.name, s.ok])).toEqual([
        ['parse', true],
        ['chain', false],
      ]);
    }
  });

  it('a pool of junk certificates named as the leaf issuer is refused for its size, before any of them is tried as the issuer', async () => {
    const realLeaf = new X509Certificate(chain[0]!);
    const issuerKey = await createKeyCertificate({ cn: 'Junk Issuer', serial: 1, ca: true, keyUsage: KEY_USAGE.keyCertSign });
    const junkKey = await createKeyCertificate({ cn: 'Junk Issuer', serial: 2, ca: true, keyUsage: KEY_USAGE.keyCertSign });
    const leaf = await createKeyCertificate({ cn: 'leaf', serial: 3, ca: false, issuer: issuerKey, extensions: [[TCG_DICE_TCB_INFO_OID, realLeaf.extension(TCG_DICE_TCB_INFO_OID)!.value]], keyUsage: KEY_USAGE.digitalSignature });
    const junk = async (n: number) => Promise.all(Array.from({ length: n }, async (_, i) => (await createKeyCertificate({ cn: 'Junk Issuer', serial: 10 + i, ca: true, keyUsage: KEY_USAGE.keyCertSign, keys: junkKey.keys })).cert));
    // Within the bound the pool is tried (and fails on a signature); one more is refused outright.
    const within = await nvidiaVerifier.verify({ evidence: utf8(createNvidiaEvidence(REPORT, [leaf.cert, ...(await junk(MAX_NVIDIA_CERTIFICATES - 1))])), now: AT });
    expect(within.errors[0]).toMatchObject({ code: 'ERR_CERT_SIGNATURE', step: 'chain' });
    const over = await nvidiaVerifier.verify({ evidence: utf8(createNvidiaEvidence(REPORT, [leaf.cert, ...(await junk(MAX_NVIDIA_CERTIFICATES))])), now: AT });
    expect(over.errors).toEqual([expect.objectContaining({ code: 'ERR_INPUT_TOO_LARGE', step: 'chain' })]);
  });
});

describe('NVIDIA Hopper: strict SPDM parsing', () => {
  const set = (at: number, v: number) => {
    const b = REPORT.slice();
    b[at] = v;
    return b;
  };
  const cases: { name: string; bytes: Uint8Array; code: string }[] = [
    { name: 'SPDM 1.2 request', bytes: set(0, 0x12), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'not GET_MEASUREMENTS', bytes: set(1, 0xe1), code: 'ERR_INPUT_MALFORMED' },
    { name: 'no signature requested', bytes: set(2, 0x00), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'query of the number of measurements', bytes: set(3, 0x00), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'one index requested, 64 returned', bytes: set(3, 0x05), code: 'ERR_INPUT_MALFORMED' },
    { name: 'response version differs', bytes: set(37, 0x10), code: 'ERR_INPUT_MALFORMED' },
    { name: 'not MEASUREMENTS', bytes: set(38, 0x61), code: 'ERR_INPUT_MALFORMED' },
    { name: 'zero blocks', bytes: set(41, 0), code: 'ERR_INPUT_MALFORMED' },
    { name: 'more blocks than the record holds', bytes: set(41, 65), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'fewer blocks than the record holds', bytes: set(41, 63), code: 'ERR_INPUT_MALFORMED' },
    { name: 'record length past the end', bytes: set(44, 0xff), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'reserved block index 0', bytes: set(45, 0), code: 'ERR_INPUT_MALFORMED' },
    { name: 'duplicate block index', bytes: set(100, 1), code: 'ERR_INPUT_MALFORMED' },
    { name: 'non-DMTF measurement specification', bytes: set(46, 2), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'measurement size not matching its value', bytes: set(47, 52), code: 'ERR_INPUT_MALFORMED' },
    { name: 'trailing byte after the signature', bytes: Uint8Array.from([...REPORT, 0]), code: 'ERR_INPUT_MALFORMED' },
    { name: 'truncated signature', bytes: REPORT.slice(0, -1), code: 'ERR_INPUT_MALFORMED' },
    { name: 'truncated request', bytes: REPORT.slice(0, 20), code: 'ERR_INPUT_TRUNCATED' },
    { name: 'oversized report', bytes: new Uint8Array(70_000), code: 'ERR_INPUT_TOO_LARGE' },
  ];
  for (const c of cases) {
    it(`${c.name} -> ${c.code}`, () => {
      expect(codeOf(() => parseSpdmMeasurementReport(c.bytes))).toBe(c.code);
    });
  }

  it('rejects opaque data over 1 KiB, a repeated field and a bad measurement-count list', () => {
    const opaqueLenAt = 37 + 8 + 3520 + 32;
    const b = REPORT.slice();
    b[opaqueLenAt + 1] = 0x08; // 2048+ bytes
    expect(codeOf(() => parseSpdmMeasurementReport(b))).toBe('ERR_INPUT_TOO_LARGE');
    expect(codeOf(() => parseNvidiaOpaqueData(fromHex('0300010041' + '0300010041')))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => parseNvidiaOpaqueData(fromHex('0c000300010203')))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => parseNvidiaOpaqueData(fromHex('0300ff00')))).toBe('ERR_INPUT_TRUNCATED');
    expect(parseNvidiaOpaqueData(fromHex('03000300ff0000')).fields.driverVersion).toBe('ff0000'); // non-text kept as raw hex
    expect(parseNvidiaOpaqueData(fromHex('63000100aa')).fields.field99).toBe('aa');
  });

  it('rejects malformed evidence containers', () => {
    expect(codeOf(() => readNvidiaEvidence(utf8('{"format":"custody-nvidia-gpu/v1","report":"zz"}')))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => readNvidiaEvidence(utf8('{"format":"custody-nvidia-gpu/v1","report":"11e0","extra":1}')))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => readNvidiaEvidence(utf8('{"format":"other","report":"11e0"}')))).toBe('ERR_INPUT_UNSUPPORTED');
    expect(codeOf(() => readNvidiaEvidence(utf8('{"format":"custody-nvidia-gpu/v1","report":"11e0","certChain":"nope"}')))).toBe('ERR_CERT_PARSE');
    expect(codeOf(() => readNvidiaEvidence(utf8('{"format":')))).toBe('ERR_INPUT_MALFORMED');
    expect(codeOf(() => readNvidiaEvidence(Uint8Array.of(0xff, 0xfe, 0x00)))).toBe('ERR_INPUT_MALFORMED');
  });
});
