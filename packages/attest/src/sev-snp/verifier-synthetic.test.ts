// Paths no public sample covers (Turin layout and 8-byte hwID, v5 fields, VLEK CSP id, CRLs,
// TCB/chip-id mismatches, product disagreements), on a synthetic AMD-like PKI given as `roots`.
import { beforeAll, describe, expect, it } from 'vitest';
import { KEY_USAGE, utf8 } from '@custody/core';
import type { VerificationResult, VerifyInput } from '../types.js';
import { encodeSnpCertTable, SNP_CERT_GUIDS } from './cert-table.js';
import { createConfigfsTsmEvidence } from './evidence.js';
import { verifySevSnp } from './verifier.js';
import { amdExtensions, buildReport, createCrl, createKeyCertificate, createProductPki, signReport, tcbBytes, type AmdTcb, type ReportFields, type SyntheticKey, type SyntheticProductPki } from './testing/synthetic.js';

const AT = new Date('2025-06-01T00:00:00Z');
const TURIN_TCB: AmdTcb = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 0x4a };
const TURIN_CPUID = { family: 0x1a, model: 0x02, stepping: 1 };
const HWID8 = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
const CHIP_ID = new Uint8Array(64);
CHIP_ID.set(HWID8);

let turin: SyntheticProductPki;
let vcek: SyntheticKey;
let vlek: SyntheticKey;

beforeAll(async () => {
  turin = await createProductPki('Turin');
  vcek = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 0, ca: false, issuer: turin.ask, extensions: amdExtensions({ productName: 'Turin-B0', tcb: TURIN_TCB, hwid: HWID8 }) });
  vlek = await createKeyCertificate({ cn: 'SEV-VLEK', serial: 0, ca: false, issuer: turin.asvk, extensions: amdExtensions({ productName: 'Turin', tcb: TURIN_TCB, cspId: 'CN=csp.example' }) });
});

function turinReport(over: Partial<ReportFields> = {}): Uint8Array {
  return buildReport({ version: 5, reportedTcb: tcbBytes(TURIN_TCB), cpuid: TURIN_CPUID, chipId: CHIP_ID, policy: 0x2030000n, launchMitVector: 3n, currentMitVector: 7n, reportData: utf8('hello'), ...over });
}

async function verify(report: Uint8Array, signer: SyntheticKey, over: Partial<VerifyInput> = {}): Promise<VerificationResult> {
  const signed = await signReport(report, signer.keys.privateKey);
  const ca = signer === vlek ? turin.asvk : turin.ask;
  return verifySevSnp({ evidence: signed, certs: [signer.cert, ca.cert], roots: [turin.ark.cert], now: AT, ...over });
}

const err = (r: VerificationResult) => ({ code: r.errors[0]?.code, step: r.errors[0]?.step });

describe('SEV-SNP on a synthetic Turin PKI', () => {
  it('verifies a v5 Turin report: FMC in the TCB, 8-byte hwID, mitigation vectors, page-swap policy', async () => {
    const r = await verify(turinReport(), vcek);
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    const c = r.claims!;
    expect(c.tcb?.components).toEqual({ fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 0x4a });
    expect(c.platformClaims).toMatchObject({ product: 'Turin', productName: 'Turin-B0', reportVersion: 5, tcbLayout: 'turin', launchMitVector: '0x0000000000000003', currentMitVector: '0x0000000000000007', cpuid: TURIN_CPUID });
    expect(c.platformClaims.policy).toMatchObject({ pageSwapDisabled: true, debugAllowed: false });
    expect(r.steps.find((s) => s.name === 'tcb')!.detail).toContain('fmc=1');
    expect(r.steps.find((s) => s.name === 'chain')!.detail).toContain('caller-supplied root');
  });

  it('verifies a VCEK that carries keyUsage digitalSignature (AMD issues them with no keyUsage at all)', async () => {
    const signer = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 4, ca: false, issuer: turin.ask, keyUsage: KEY_USAGE.digitalSignature, extensions: amdExtensions({ productName: 'Turin-B0', tcb: TURIN_TCB, hwid: HWID8 }) });
    const signed = await signReport(turinReport(), signer.keys.privateKey);
    const r = await verifySevSnp({ evidence: signed, certs: [signer.cert, turin.ask.cert], roots: [turin.ark.cert], now: AT });
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
  });

  it('verifies a VLEK-signed Turin report and reports the CSP id', async () => {
    const r = await verify(turinReport({ signingKey: 1, chipId: new Uint8Array(64) }), vlek);
    expect(r.ok).toBe(true);
    expect(r.claims!.signer.kind).toBe('VLEK');
    expect(r.claims!.platformClaims.cspId).toBe('CN=csp.example');
  });

  it('verifies the configfs-tsm form with a VLEK in its table slot', async () => {
    const signed = await signReport(turinReport({ signingKey: 1 }), vlek.keys.privateKey);
    const aux = encodeSnpCertTable([
      { guid: SNP_CERT_GUIDS.vlek, data: vlek.cert },
      { guid: SNP_CERT_GUIDS.ask, data: turin.asvk.cert },
      { guid: SNP_CERT_GUIDS.ark, data: turin.ark.cert },
    ]);
    const r = await verifySevSnp({ evidence: createConfigfsTsmEvidence(signed, aux), roots: [turin.ark.cert], now: AT });
    expect(r.ok).toBe(true);
  });

  it('decodes a v2 Turin report with the TCB layout of the VCEK product', async () => {
    const r = await verify(turinReport({ version: 2, cpuid: undefined, launchMitVector: undefined, currentMitVector: undefined }), vcek);
    expect(r.ok).toBe(true);
    expect(r.claims!.tcb?.components.fmc).toBe(1);
    // Turin's TCB bytes 2..3 are not reserved: the only warning is the missing CRL.
    expect(r.warnings).toEqual(['revocation of the AMD certificates was not checked: no CRL supplied (collateral "crl")']);
    expect(r.steps.find((s) => s.name === 'revocation')).toMatchObject({ ok: true, checked: false });
  });

  it('warns (does not fail) when MASK_CHIP_KEY hides chip_id', async () => {
    const r = await verify(turinReport({ maskChipKey: true, chipId: new Uint8Array(64) }), vcek);
    expect(r.ok).toBe(true);
    expect(r.warnings.some((w) => w.includes('MASK_CHIP_KEY'))).toBe(true);
  });

  it('reports a debug policy as a claim and a warning, not a failure', async () => {
    const r = await verify(turinReport({ policy: 0xb0000n }), vcek);
    expect(r.ok).toBe(true);
    expect(r.claims!.debug).toBe(true);
    expect(r.warnings.some((w) => w.includes('DEBUG=1'))).toBe(true);
  });

  it('warns about reserved fields that are not zero', async () => {
    const report = turinReport();
    report[0x300 + 0x40] = 0; // inside the signature area, rewritten by signReport
    report[0x20f] = 9; // reserved in v5
    const r = await verify(report, vcek);
    expect(r.ok).toBe(true);
    expect(r.warnings.some((w) => w.includes('0x208..0x29f'))).toBe(true);
    expect(r.claims!.platformClaims.reservedViolations).toEqual(['0x208..0x29f']);
  });

  const failing: { name: string; make: () => Promise<VerificationResult>; code: string; step: string }[] = [
    { name: 'a reported FMC that differs from the VCEK', make: () => verify(turinReport({ reportedTcb: tcbBytes({ ...TURIN_TCB, fmc: 2 }) }), vcek), code: 'ERR_EVIDENCE_TCB_MISMATCH', step: 'tcb' },
    { name: 'a reported microcode that differs from the VCEK', make: () => verify(turinReport({ reportedTcb: tcbBytes({ ...TURIN_TCB, microcode: 0x4b }) }), vcek), code: 'ERR_EVIDENCE_TCB_MISMATCH', step: 'tcb' },
    { name: 'a VLEK whose TCB differs', make: () => verify(turinReport({ signingKey: 1, reportedTcb: tcbBytes({ ...TURIN_TCB, snp: 9 }) }), vlek), code: 'ERR_EVIDENCE_TCB_MISMATCH', step: 'tcb' },
    { name: 'a chip_id that differs from the hwID', make: () => verify(turinReport({ chipId: new Uint8Array(64).fill(9) }), vcek), code: 'ERR_EVIDENCE_CHIP_ID', step: 'tcb' },
    { name: 'a chip_id with the right prefix but trailing bytes', make: () => verify(turinReport({ chipId: Uint8Array.from([...HWID8, 1, ...new Uint8Array(55)]) }), vcek), code: 'ERR_EVIDENCE_CHIP_ID', step: 'tcb' },
    { name: 'CPUID naming Genoa for a Turin VCEK', make: () => verify(turinReport({ cpuid: { family: 0x19, model: 0x11, stepping: 1 } }), vcek), code: 'ERR_SNP_PRODUCT', step: 'chain' },
    { name: 'an unsigned report (SIGNING_KEY none)', make: () => verify(turinReport({ signingKey: 7 }), vcek), code: 'ERR_EVIDENCE_SIGNATURE', step: 'chain' },
    { name: 'a reserved SIGNING_KEY', make: () => verify(turinReport({ signingKey: 3 }), vcek), code: 'ERR_INPUT_UNSUPPORTED', step: 'chain' },
    { name: 'an unknown SIGNATURE_ALGO', make: () => verify(turinReport({ signatureAlgo: 2 }), vcek), code: 'ERR_INPUT_UNSUPPORTED', step: 'signature' },
    { name: 'a signature r with high bytes set', make: async () => {
        const signed = await signReport(turinReport(), vcek.keys.privateKey);
        signed[0x2a0 + 60] = 1;
        return verifySevSnp({ evidence: signed, certs: [vcek.cert, turin.ask.cert], roots: [turin.ark.cert], now: AT });
      }, code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a report signed by another key', make: async () => {
        const other = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 1, ca: false, issuer: turin.ask, extensions: amdExtensions({ productName: 'Turin-B0', tcb: TURIN_TCB, hwid: HWID8 }) });
        const signed = await signReport(turinReport(), other.keys.privateKey);
        return verifySevSnp({ evidence: signed, certs: [vcek.cert, turin.ask.cert], roots: [turin.ark.cert], now: AT });
      }, code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'a VCEK issued by the ASVK', make: async () => {
        const odd = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 2, ca: false, issuer: turin.asvk, extensions: amdExtensions({ productName: 'Turin-B0', tcb: TURIN_TCB, hwid: HWID8 }) });
        const signed = await signReport(turinReport(), odd.keys.privateKey);
        return verifySevSnp({ evidence: signed, certs: [odd.cert, turin.asvk.cert], roots: [turin.ark.cert], now: AT });
      }, code: 'ERR_CERT_CHAIN', step: 'chain' },
    { name: 'a VCEK whose keyUsage lacks digitalSignature (keyCertSign only)', make: async () => {
        const caKey = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 3, ca: false, issuer: turin.ask, keyUsage: KEY_USAGE.keyCertSign, extensions: amdExtensions({ productName: 'Turin-B0', tcb: TURIN_TCB, hwid: HWID8 }) });
        const signed = await signReport(turinReport(), caKey.keys.privateKey);
        return verifySevSnp({ evidence: signed, certs: [caKey.cert, turin.ask.cert], roots: [turin.ark.cert], now: AT });
      }, code: 'ERR_CERT_CHAIN', step: 'chain' },
    { name: 'a root that did not issue the chain', make: async () => {
        const stranger = await createProductPki('Turin');
        return verify(turinReport(), vcek, { roots: [stranger.ark.cert] });
      }, code: 'ERR_CERT_SIGNATURE', step: 'chain' },
    { name: 'a self-signed ARK in the evidence that is not a trust anchor', make: async () => {
        const stranger = await createProductPki('Turin');
        return verify(turinReport(), vcek, { certs: [vcek.cert, turin.ask.cert, stranger.ark.cert] });
      }, code: 'ERR_CERT_ROOT_UNTRUSTED', step: 'chain' },
    { name: 'a look-alike chain against the pinned AMD Turin ARK (issuer names differ)', make: async () => {
        const signed = await signReport(turinReport(), vcek.keys.privateKey);
        return verifySevSnp({ evidence: signed, certs: [vcek.cert, turin.ask.cert], now: AT });
      }, code: 'ERR_CERT_CHAIN', step: 'chain' },
  ];
  for (const f of failing) {
    it(`rejects ${f.name} with ${f.code}`, async () => {
      const r = await f.make();
      expect(r.ok).toBe(false);
      expect(err(r), r.errors[0]?.message).toEqual({ code: f.code, step: f.step });
    });
  }
});

describe('SEV-SNP products without pinned roots', () => {
  it('needs `roots` for an unknown product and verifies with them', async () => {
    const venice = await createProductPki('Venice');
    const leaf = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 0, ca: false, issuer: venice.ask, extensions: amdExtensions({ productName: 'Venice-A0', tcb: { bootloader: 1, tee: 1, snp: 1, microcode: 1 }, hwid: new Uint8Array(64).fill(5) }) });
    const signed = await signReport(buildReport({ version: 3, reportedTcb: tcbBytes({ bootloader: 1, tee: 1, snp: 1, microcode: 1 }), chipId: new Uint8Array(64).fill(5), cpuid: { family: 0x1a, model: 0x50, stepping: 0 } }), leaf.keys.privateKey);
    const without = await verifySevSnp({ evidence: signed, certs: [leaf.cert, venice.ask.cert], now: AT });
    expect(err(without)).toEqual({ code: 'ERR_SNP_PRODUCT', step: 'chain' });
    const withRoots = await verifySevSnp({ evidence: signed, certs: [leaf.cert, venice.ask.cert], roots: [venice.ark.cert], now: AT });
    expect(withRoots.ok).toBe(true);
    expect(withRoots.claims!.platformClaims.product).toBeUndefined();
  });
});

describe('SEV-SNP revocation (CRLs from collateral or the certificate table)', () => {
  const thisUpdate = new Date('2025-05-01T00:00:00Z');
  const nextUpdate = new Date('2025-07-01T00:00:00Z');

  it('applies a current CRL from the ARK that does not list the ASK', async () => {
    const crl = await createCrl(turin.ark, [0x777], thisUpdate, nextUpdate);
    const r = await verify(turinReport(), vcek, { collateral: { crl } });
    expect(r.ok).toBe(true);
    expect(r.steps.find((s) => s.name === 'revocation')!.detail).toContain('does not list "SEV-Turin"');
  });

  it('applies a CRL carried in the certificate table', async () => {
    const crl = await createCrl(turin.ark, [turin.ask.serial], thisUpdate, nextUpdate);
    const signed = await signReport(turinReport(), vcek.keys.privateKey);
    const aux = encodeSnpCertTable([
      { guid: SNP_CERT_GUIDS.vcek, data: vcek.cert },
      { guid: SNP_CERT_GUIDS.ask, data: turin.ask.cert },
      { guid: SNP_CERT_GUIDS.crl, data: crl },
    ]);
    const r = await verifySevSnp({ evidence: createConfigfsTsmEvidence(signed, aux), roots: [turin.ark.cert], now: AT });
    expect(err(r)).toEqual({ code: 'ERR_CERT_REVOKED', step: 'revocation' });
  });

  const cases: { name: string; make: () => Promise<Uint8Array>; now?: Date; code: string }[] = [
    { name: 'an ASK the ARK revoked', make: () => createCrl(turin.ark, [1, turin.ask.serial], thisUpdate, nextUpdate), code: 'ERR_CERT_REVOKED' },
    { name: 'a VCEK its ASK revoked', make: () => createCrl(turin.ask, [vcek.serial], thisUpdate, nextUpdate), code: 'ERR_CERT_REVOKED' },
    { name: 'a stale CRL', make: () => createCrl(turin.ark, [], thisUpdate, nextUpdate), now: new Date('2025-08-01T00:00:00Z'), code: 'ERR_CRL_STALE' },
    { name: 'a CRL not yet valid', make: () => createCrl(turin.ark, [], new Date('2025-06-02T00:00:00Z'), nextUpdate), code: 'ERR_CRL_INVALID' },
    { name: 'a CRL from an unrelated issuer', make: async () => createCrl((await createProductPki('Genoa')).ark, [], thisUpdate, nextUpdate), code: 'ERR_COLLATERAL_MISMATCH' },
    { name: 'a CRL named for the ARK but signed by another key', make: async () => createCrl((await createProductPki('Turin')).ark, [], thisUpdate, nextUpdate), code: 'ERR_CRL_INVALID' },
    { name: 'bytes that are not a CRL', make: () => Promise.resolve(Uint8Array.of(0x30, 0x01, 0x00)), code: 'ERR_CRL_INVALID' },
    { name: 'text that is not a PEM CRL', make: () => Promise.resolve(utf8('not a crl')), code: 'ERR_CRL_INVALID' },
  ];
  for (const c of cases) {
    it(`rejects ${c.name} with ${c.code}`, async () => {
      const crl = await c.make();
      const r = await verify(turinReport(), vcek, { collateral: { crl }, ...(c.now ? { now: c.now } : {}) });
      expect(err(r)).toEqual({ code: c.code, step: 'revocation' });
    });
  }

  it('warns about collateral it does not use', async () => {
    const r = await verify(turinReport(), vcek, { collateral: { tcbInfo: Uint8Array.of(1) } });
    expect(r.ok).toBe(true);
    expect(r.warnings.some((w) => w.includes('"tcbInfo"'))).toBe(true);
  });
});

describe('SEV-SNP chain roles (security review regression)', () => {
  it('refuses a "VCEK" issued by another VCEK: a key without basicConstraints cA cannot sign certificates', async () => {
    const { createProductPki, createKeyCertificate, amdExtensions, buildReport, signReport, tcbBytes } = await import('./testing/synthetic.js');
    const { verifySevSnp } = await import('./verifier.js');
    const pki = await createProductPki('Milan');
    const oldTcb = { bootloader: 1, tee: 0, snp: 5, microcode: 100 };
    const newTcb = { bootloader: 9, tee: 9, snp: 25, microcode: 250 };
    // A genuine VCEK (no basicConstraints, like real ones) whose private key an attacker holds...
    const realVcek = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 0, issuer: pki.ask, ca: false, extensions: amdExtensions({ productName: 'Milan-B0', tcb: oldTcb, hwid: new Uint8Array(64).fill(0xaa) }) });
    // ...mints a VCEK for another chip with the newest TCB.
    const fake = await createKeyCertificate({ cn: 'Attacker VCEK', serial: 1, issuer: realVcek, ca: false, extensions: amdExtensions({ productName: 'Milan-B0', tcb: newTcb, hwid: new Uint8Array(64).fill(0xbb) }) });
    const report = await signReport(buildReport({ version: 2, reportedTcb: tcbBytes(newTcb), chipId: new Uint8Array(64).fill(0xbb) }), fake.keys.privateKey);
    const r = await verifySevSnp({ evidence: report, certs: [fake.cert, realVcek.cert, pki.ask.cert], roots: [pki.ark.cert], now: new Date('2025-01-01T00:00:00Z') });
    expect(r.ok).toBe(false);
    expect(r.errors[0]!.code).toBe('ERR_CERT_CHAIN');
  });
});
