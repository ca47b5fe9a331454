import { describe, expect, it } from 'vitest';
import { fromHex, utf8 } from '@custody/core';
import { readVector, readVectorText } from '../../../../test/vectors.js';
import type { VerificationResult } from '../types.js';
import { TdxVerifier, type TdxVerifierOptions } from './verifier.js';
import {
  AT_2023,
  AT_2025,
  AT_2026_V5,
  G,
  NOW,
  T,
  bundleFrom,
  collateral2023,
  collateral2025,
  collateralV5,
  flip,
  parsed,
  pemBlocks,
  quoteBytes,
  rebuildQuote,
} from './testing/sets.js';

interface Case {
  name: string;
  quote: string;
  collateral: () => Record<string, Uint8Array>;
  at: Date;
  options?: TdxVerifierOptions;
  /** Expected outcome at `at`. */
  ok: boolean;
  code?: string;
  failedStep?: string;
  status?: string;
  tcbDate?: string;
  /** Expected typed error at the real current time. */
  nowCode: string;
}

const lenient = { requireCrls: false } satisfies TdxVerifierOptions;

// Expected outcomes from shared/vectors/attestation/README.md.
const cases: Case[] = [
  {
    name: 'go-tdx-guest SPR E4 quote v4, 2023 collateral: signatures OK, no TDX TCB level matches',
    quote: G + 'tdx_prod_quote_SPR_E4.dat',
    collateral: collateral2023,
    at: AT_2023,
    ok: false,
    code: 'ERR_TCB_NO_MATCH',
    failedStep: 'tcb',
    nowCode: 'ERR_CRL_STALE',
  },
  {
    name: 'trustee quote 4 (v4) with the 2023 TCB Info: UpToDate',
    quote: T + 'tdx_quote_4.dat',
    collateral: collateral2023,
    at: AT_2023,
    ok: true,
    status: 'UpToDate',
    tcbDate: '2023-02-15T00:00:00Z',
    nowCode: 'ERR_CRL_STALE',
  },
  {
    name: 'trustee quote 6 (v4, TDX module 3) with the 2025 TCB Info: OutOfDate (PCESVN 11 < 13)',
    quote: T + 'tdx_quote_6.dat',
    collateral: collateral2025,
    at: AT_2025,
    options: lenient,
    ok: true,
    status: 'OutOfDate',
    tcbDate: '2018-01-04T00:00:00Z',
    nowCode: 'ERR_COLLATERAL_STALE',
  },
  {
    name: 'go-tdx-guest quote v5 (TD report 1.5) with the v5 TCB Info: UpToDate',
    quote: G + 'quote_v5_sample.dat',
    collateral: collateralV5,
    at: AT_2026_V5,
    options: { requireCrls: false, requireQeIdentity: false },
    ok: true,
    status: 'UpToDate',
    tcbDate: '2024-11-13T00:00:00Z',
    nowCode: 'ERR_COLLATERAL_STALE',
  },
  {
    name: 'trustee quote 5 (v5) with the v5 TCB Info: no level matches',
    quote: T + 'tdx_quote_5.dat',
    collateral: collateralV5,
    at: AT_2026_V5,
    options: { requireCrls: false, requireQeIdentity: false },
    ok: false,
    code: 'ERR_TCB_NO_MATCH',
    failedStep: 'tcb',
    nowCode: 'ERR_COLLATERAL_STALE',
  },
];

function verify(quote: Uint8Array, collateral: Record<string, Uint8Array> | undefined, now: Date, options?: TdxVerifierOptions, extra: { nonce?: Uint8Array; roots?: Uint8Array[] } = {}): Promise<VerificationResult> {
  return new TdxVerifier(options).verify({ evidence: quote, ...(collateral ? { collateral } : {}), now, ...extra });
}

function firstError(r: VerificationResult): { code?: string; step?: string } {
  const e = r.errors[0];
  return { code: e?.code, step: e?.step };
}

describe('TdxVerifier on real quotes and Intel collateral', () => {
  for (const c of cases) {
    it(`${c.name} (at ${c.at.toISOString()})`, async () => {
      const r = await verify(quoteBytes(c.quote), c.collateral(), c.at, c.options);
      expect(r.platform).toBe('tdx');
      expect(r.ok).toBe(c.ok);
      const passed = r.steps.filter((s) => s.ok).map((s) => s.name);
      expect(passed.slice(0, 5)).toEqual(['parse', 'chain', 'revocation', 'signature', 'collateral']);
      if (c.ok) {
        expect(r.errors).toEqual([]);
        expect(r.steps.map((s) => s.name)).toEqual(['parse', 'chain', 'revocation', 'signature', 'collateral', 'tcb', 'binding', 'debug']);
        expect(r.claims!.tcb!.status).toBe(c.status);
        expect(r.claims!.tcb!.tcbDate).toBe(c.tcbDate);
      } else {
        expect(firstError(r)).toEqual({ code: c.code, step: c.failedStep });
      }
      expect(r.claims!.signer.kind).toBe('PCK');
      expect(r.claims!.signer.rootSha256).toBe('44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3');
      expect(r.claims!.signer.chain.map((s) => s.subject.split(',')[0])).toEqual(['CN=Intel SGX PCK Certificate', 'CN=Intel SGX PCK Platform CA', 'CN=Intel SGX Root CA']);
    });

    it(`${c.name}: at the real current time fails with ${c.nowCode}`, async () => {
      const r = await verify(quoteBytes(c.quote), c.collateral(), NOW, c.options);
      expect(r.ok).toBe(false);
      expect(r.errors[0]!.code).toBe(c.nowCode);
    });

    it(`${c.name}: the one-JSON collateral bundle gives the same outcome`, async () => {
      const col = c.collateral();
      if (!col.pckCrl) {
        // Bundles carry every field; these sets have no CRLs of their time, so add the 2023 ones and let them fail as stale.
        Object.assign(col, { pckCrl: collateral2023().pckCrl, rootCaCrl: collateral2023().rootCaCrl, pckCrlIssuerChain: collateral2023().pckCrlIssuerChain });
        col.qeIdentity ??= readVector(T + 'enclaveIdentity.json');
        col.qeIdentityIssuerChain ??= col.tcbInfoIssuerChain!;
        const r = await verify(quoteBytes(c.quote), { bundle: bundleFrom(col) }, c.at, c.options);
        expect(firstError(r)).toEqual({ code: 'ERR_CRL_STALE', step: 'revocation' });
        return;
      }
      const r = await verify(quoteBytes(c.quote), { bundle: bundleFrom(col) }, c.at, c.options);
      expect(r.ok).toBe(c.ok);
      if (c.ok) expect(r.claims!.tcb!.status).toBe(c.status);
      else expect(firstError(r)).toEqual({ code: c.code, step: c.failedStep });
    });
  }

  it('SPR E4: QE TCB is UpToDate, FMSPC 50806f000000, measurements as published', async () => {
    const r = await verify(quoteBytes(G + 'tdx_prod_quote_SPR_E4.dat'), collateral2023(), AT_2023);
    const pc = r.claims!.platformClaims as Record<string, Record<string, unknown>>;
    expect(pc.qe!.tcbStatus).toBe('UpToDate');
    expect(r.claims!.platformClaims.fmspc).toBe('50806f000000');
    expect(r.claims!.measurements.mrtd!.startsWith('6363b804')).toBe(true);
    expect(r.claims!.reportData.startsWith('6c62dec1')).toBe(true);
    expect(r.steps.find((s) => s.name === 'tcb')!.detail).toContain('no TCB level matches');
    expect(r.claims!.platformClaims.pck).toMatchObject({ sgxTcbComponents: [3, 3, 2, 2, 2, 1, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0], pceSvn: 11 });
  });

  it('trustee quote 6: module TDX_03 UpToDate, QE UpToDate, overall OutOfDate with a warning (not a failure)', async () => {
    const r = await verify(quoteBytes(T + 'tdx_quote_6.dat'), collateral2025(), AT_2025, lenient);
    const pc = r.claims!.platformClaims as Record<string, Record<string, unknown>>;
    expect(pc.tdxModule).toMatchObject({ version: 3, isvSvn: 5, identity: 'TDX_03', tcbStatus: 'UpToDate' });
    expect(pc.qe!.tcbStatus).toBe('UpToDate');
    expect(pc.tcbLevel).toMatchObject({ sgx: 'OutOfDate', tdx: 'OutOfDate' });
    expect(r.claims!.tcb!.components).toMatchObject({ pceSvn: 11, teeTcbSvn: '05030200000000000000000000000000' });
    expect(r.warnings.some((w) => w.includes('OutOfDate'))).toBe(true);
    expect(r.warnings.some((w) => w.includes('revocation not checked'))).toBe(true);
    expect(r.steps.find((s) => s.name === 'revocation')!.detail).toContain('not checked');
  });

  it('quote v5: TD report 1.5 claims (TEE_TCB_SVN2, MRSERVICETD) and module TDX_01 UpToDate', async () => {
    const r = await verify(quoteBytes(G + 'quote_v5_sample.dat'), collateralV5(), AT_2026_V5, { requireCrls: false, requireQeIdentity: false });
    const pc = r.claims!.platformClaims;
    expect(pc.quoteVersion).toBe(5);
    expect(pc.bodyType).toBe('TD_REPORT_1_5');
    expect(pc.teeTcbSvn2).toBe('0d010400000000000000000000000000');
    expect(r.claims!.measurements.mrservicetd).toHaveLength(96);
    expect(pc.tdxModule).toMatchObject({ identity: 'TDX_01', tcbStatus: 'UpToDate' });
    expect(r.warnings.some((w) => w.includes('no QE Identity'))).toBe(true);
  });

  it('trustee quote 4 claims agree with trustee parse_tdx_claims_expected.json', async () => {
    const expected = JSON.parse(readVectorText(T + 'parse_tdx_claims_expected.json')) as {
      quote: { body: Record<string, string>; header: Record<string, string> };
      td_attributes: Record<string, boolean>;
      report_data: string;
    };
    const r = await verify(quoteBytes(T + 'tdx_quote_4.dat'), collateral2023(), AT_2023);
    const b = expected.quote.body;
    const m = r.claims!.measurements;
    expect(m).toMatchObject({
      mrtd: b.mr_td,
      rtmr0: b.rtmr_0,
      rtmr1: b.rtmr_1,
      rtmr2: b.rtmr_2,
      rtmr3: b.rtmr_3,
      mrconfigid: b.mr_config_id,
      mrowner: b.mr_owner,
      mrownerconfig: b.mr_owner_config,
      mrseam: b.mr_seam,
      mrsignerseam: b.mrsigner_seam,
    });
    expect(r.claims!.reportData).toBe(expected.report_data);
    const pc = r.claims!.platformClaims as Record<string, Record<string, unknown> | string | number>;
    expect(pc.teeTcbSvn).toBe(b.tcb_svn);
    expect(pc.xfam).toBe(b.xfam);
    expect(pc.seamAttributes).toBe(b.seam_attributes);
    expect(pc.qeVendorId).toBe(expected.quote.header.vendor_id);
    expect(pc.userData).toBe(expected.quote.header.user_data);
    const attrs = pc.tdAttributes as Record<string, unknown>;
    expect(attrs.raw).toBe(b.td_attributes);
    expect({ debug: attrs.debug, key_locker: attrs.keyLocker, perfmon: attrs.perfmon, protection_keys: attrs.pks, septve_disable: attrs.septVeDisable }).toEqual(expected.td_attributes);
    // A debug TD: reported as a claim and a warning, the policy decides.
    expect(r.claims!.debug).toBe(true);
    expect(r.steps.find((s) => s.name === 'debug')!.detail).toContain('ON');
    expect(r.warnings.some((w) => w.includes('debug mode'))).toBe(true);
  });
});

describe('TdxVerifier tampered twins (trustee quote 4 at 2023-07-01, otherwise UpToDate)', () => {
  const Q4 = T + 'tdx_quote_4.dat';
  const q4 = () => parsed(Q4);
  const run = (evidence: Uint8Array, collateral: Record<string, Uint8Array> = collateral2023(), extra: { nonce?: Uint8Array; roots?: Uint8Array[] } = {}, options?: TdxVerifierOptions) =>
    verify(evidence, collateral, AT_2023, options, extra).then(firstError);

  const twins: { name: string; make: () => Promise<{ code?: string; step?: string }>; code: string; step: string }[] = [
    { name: 'flipped quote signature byte', make: () => run(flip(quoteBytes(Q4), q4().signedData.length + 4 + 10)), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'changed MRTD', make: () => run(flip(quoteBytes(Q4), 48 + 136)), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'changed RTMR3', make: () => run(flip(quoteBytes(Q4), 48 + 472)), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'changed REPORTDATA', make: () => run(flip(quoteBytes(Q4), 48 + 520)), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'changed header user data', make: () => run(flip(quoteBytes(Q4), 30)), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    {
      name: 'QE report tampered (ISVSVN)',
      make: () => {
        const q = q4();
        const rep = q.qeReport.raw.slice();
        rep[258] = rep[258]! + 1;
        return run(rebuildQuote(q, { qeReport: rep }));
      },
      code: 'ERR_EVIDENCE_SIGNATURE',
      step: 'signature',
    },
    { name: 'flipped QE report signature byte', make: () => run(rebuildQuote(q4(), { qeReportSignature: flip(q4().qeReportSignature, 40) })), code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' },
    { name: 'QE authentication data changed (attestation key no longer bound)', make: () => run(rebuildQuote(q4(), { qeAuthData: flip(q4().qeAuthData, 0) })), code: 'ERR_EVIDENCE_BINDING', step: 'signature' },
    {
      name: 'attestation key swapped for another quote\'s (binding fails)',
      make: () => run(rebuildQuote(q4(), { attestationKey: parsed(T + 'tdx_quote_6.dat').attestationKey })),
      code: 'ERR_EVIDENCE_BINDING',
      step: 'signature',
    },
    {
      name: 'PCK intermediate removed from the chain',
      make: () => {
        const [leaf, , root] = pemBlocks(q4());
        return run(rebuildQuote(q4(), { pckCertChain: utf8(leaf! + root!) }));
      },
      code: 'ERR_CERT_CHAIN',
      step: 'chain',
    },
    {
      name: 'PCK leaf swapped for another platform\'s PCK certificate',
      make: () => {
        const [, ca, root] = pemBlocks(q4());
        const [otherLeaf] = pemBlocks(parsed(G + 'tdx_prod_quote_SPR_E4.dat'));
        return run(rebuildQuote(q4(), { pckCertChain: utf8(otherLeaf! + ca! + root!) }));
      },
      code: 'ERR_EVIDENCE_SIGNATURE',
      step: 'signature',
    },
    {
      name: 'chain without the PCK leaf',
      make: () => {
        const [, ca, root] = pemBlocks(q4());
        return run(rebuildQuote(q4(), { pckCertChain: utf8(ca! + root!) }));
      },
      code: 'ERR_TDX_PCK_CERT',
      step: 'parse',
    },
    { name: 'wrong root (AWS Nitro Root-G1)', make: () => run(quoteBytes(Q4), collateral2023(), { roots: [readVector('attestation/nitro/aws_nitro_root_g1.pem')] }), code: 'ERR_CERT_ROOT_UNTRUSTED', step: 'chain' },
    { name: 'the PCK leaf itself supplied as the trust anchor', make: () => run(quoteBytes(Q4), collateral2023(), { roots: [utf8(pemBlocks(q4())[0]!)] }), code: 'ERR_CERT_CHAIN', step: 'chain' },
    { name: 'wrong nonce', make: () => run(quoteBytes(Q4), collateral2023(), { nonce: fromHex('00112233') }), code: 'ERR_EVIDENCE_NONCE', step: 'binding' },
    {
      name: 'TCB Info signature tampered',
      make: () => {
        const c = collateral2023();
        const t = new TextDecoder().decode(c.tcbInfo);
        const sig = (JSON.parse(t) as { signature: string }).signature;
        c.tcbInfo = utf8(t.replace(sig, sig.slice(0, 10) + (sig[10] === '0' ? '1' : '0') + sig.slice(11)));
        return run(quoteBytes(Q4), c);
      },
      code: 'ERR_COLLATERAL_INVALID',
      step: 'collateral',
    },
    {
      name: 'TCB Info body tampered (an OutOfDate level relabelled UpToDate)',
      make: () => {
        const c = collateral2023();
        c.tcbInfo = utf8(new TextDecoder().decode(c.tcbInfo).replace('"tcbStatus":"OutOfDate"', '"tcbStatus":"UpToDate"'));
        return run(quoteBytes(Q4), c);
      },
      code: 'ERR_COLLATERAL_INVALID',
      step: 'collateral',
    },
    {
      name: 'QE Identity signature tampered',
      make: () => {
        const c = collateral2023();
        c.qeIdentity = utf8(new TextDecoder().decode(c.qeIdentity).replace('"signature":"b', '"signature":"c'));
        return run(quoteBytes(Q4), c);
      },
      code: 'ERR_COLLATERAL_INVALID',
      step: 'collateral',
    },
    {
      name: 'TCB Info for another FMSPC (SPR E4 quote with the 2025 TCB Info for 00A06D080000)',
      make: () => verify(quoteBytes(G + 'tdx_prod_quote_SPR_E4.dat'), collateral2025(), AT_2025, lenient).then(firstError),
      code: 'ERR_COLLATERAL_MISMATCH',
      step: 'collateral',
    },
    {
      name: 'the 2018 TCB Signing certificate after its expiry (2025 TCB Info with the 2023 issuer chain)',
      make: () => verify(quoteBytes(T + 'tdx_quote_6.dat'), { ...collateral2025(), tcbInfoIssuerChain: readVector(G + 'tcbinfo_issuer_chain.pem') }, AT_2025, lenient).then(firstError),
      code: 'ERR_CERT_EXPIRED',
      step: 'collateral',
    },
    { name: 'root CA CRL given as the PCK CRL', make: () => run(quoteBytes(Q4), { ...collateral2023(), pckCrl: readVector(G + 'rootcrl.der') }), code: 'ERR_CRL_INVALID', step: 'revocation' },
    { name: 'PCK CRL missing (CRLs required by default)', make: () => run(quoteBytes(Q4), (({ pckCrl: _p, ...rest }) => rest)(collateral2023())), code: 'ERR_COLLATERAL_MISSING', step: 'revocation' },
    { name: 'TCB Info missing', make: () => run(quoteBytes(Q4), (({ tcbInfo: _t, ...rest }) => rest)(collateral2023())), code: 'ERR_COLLATERAL_MISSING', step: 'collateral' },
    { name: 'QE Identity missing (required by default)', make: () => run(quoteBytes(Q4), (({ qeIdentity: _q, ...rest }) => rest)(collateral2023())), code: 'ERR_COLLATERAL_MISSING', step: 'collateral' },
    { name: 'TCB Info issuer chain missing', make: () => run(quoteBytes(Q4), (({ tcbInfoIssuerChain: _a, qeIdentityIssuerChain: _b, ...rest }) => rest)(collateral2023())), code: 'ERR_COLLATERAL_MISSING', step: 'collateral' },
    { name: 'truncated quote', make: () => run(quoteBytes(Q4).subarray(0, 700)), code: 'ERR_INPUT_TRUNCATED', step: 'parse' },
  ];

  for (const t of twins) {
    it(`${t.name} -> ${t.code}`, async () => {
      expect(await t.make()).toEqual({ code: t.code, step: t.step });
    });
  }

  it('the right nonce (all 64 bytes of REPORTDATA, or a prefix with zero padding) binds', async () => {
    const rd = q4().body.reportData;
    const r = await verify(quoteBytes(Q4), collateral2023(), AT_2023, undefined, { nonce: rd.slice() });
    expect(r.ok).toBe(true);
    expect(r.steps.find((s) => s.name === 'binding')!.detail).toContain('64-byte nonce');
    const prefix = await verify(quoteBytes(Q4), collateral2023(), AT_2023, undefined, { nonce: rd.slice(0, 32) });
    expect(firstError(prefix)).toEqual({ code: 'ERR_EVIDENCE_NONCE', step: 'binding' });
  });

  it('a stale CRL is reported, never silently used (v5 quote with the 2023 CRLs)', async () => {
    const c = { ...collateralV5(), pckCrl: readVector(G + 'pckcrl'), rootCaCrl: readVector(G + 'rootcrl.der') };
    const r = await verify(quoteBytes(G + 'quote_v5_sample.dat'), c, AT_2026_V5, { requireQeIdentity: false });
    expect(firstError(r)).toEqual({ code: 'ERR_CRL_STALE', step: 'revocation' });
  });

  it('claims are present even when verification fails, so a person can see what was claimed', async () => {
    const r = await verify(flip(quoteBytes(Q4), q4().signedData.length + 20), collateral2023(), AT_2023);
    expect(r.ok).toBe(false);
    expect(r.claims!.measurements.mrtd).toBe(parsed(Q4).body.mrTd.reduce((s, b) => s + b.toString(16).padStart(2, '0'), ''));
  });
});

describe('TdxVerifier collateral cache', () => {
  it('verified collateral is reused for later quotes without collateral until its nextUpdate', async () => {
    const v = new TdxVerifier();
    const first = await v.verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), collateral: collateral2023(), now: AT_2023 });
    expect(first.ok).toBe(true);
    expect(v.cache.size).toBe(4); // TCB Info, QE Identity, PCK CRL, root CA CRL
    const warm = await v.verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), now: new Date('2023-07-05T00:00:00Z') });
    expect(warm.ok).toBe(true);
    expect(warm.steps[0]!.detail).toContain('none (cache)');
    // The same FMSPC's other quote (SPR E4) reaches the TCB step on cached collateral alone.
    const other = await v.verify({ evidence: quoteBytes(G + 'tdx_prod_quote_SPR_E4.dat'), now: AT_2023 });
    expect(firstError(other)).toEqual({ code: 'ERR_TCB_NO_MATCH', step: 'tcb' });
    // Past the PCK CRL's nextUpdate (2023-07-08) the cached CRL is stale and is dropped.
    const late = await v.verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), now: new Date('2023-07-10T00:00:00Z') });
    expect(firstError(late)).toEqual({ code: 'ERR_CRL_STALE', step: 'revocation' });
    expect(v.cache.size).toBe(3);
    // Past the TCB Info's nextUpdate (2023-07-18) the cached TCB Info is stale too.
    const later = await new TdxVerifier({ cache: v.cache, requireCrls: false }).verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), now: new Date('2023-07-20T00:00:00Z') });
    expect(firstError(later)).toEqual({ code: 'ERR_COLLATERAL_STALE', step: 'collateral' });
  });

  it('a verifier without cached collateral reports it missing', async () => {
    const r = await new TdxVerifier().verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), now: AT_2023 });
    expect(firstError(r)).toEqual({ code: 'ERR_COLLATERAL_MISSING', step: 'revocation' });
  });

  it('repeated verification with the same collateral bytes gives the same result', async () => {
    const v = new TdxVerifier();
    const a = await v.verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), collateral: collateral2023(), now: AT_2023 });
    const b = await v.verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), collateral: collateral2023(), now: AT_2023 });
    expect(b).toEqual(a);
    const tampered = collateral2023();
    tampered.tcbInfo = utf8(new TextDecoder().decode(tampered.tcbInfo).replace('"tcbStatus":"OutOfDate"', '"tcbStatus":"UpToDate"'));
    const c = await v.verify({ evidence: quoteBytes(T + 'tdx_quote_4.dat'), collateral: tampered, now: AT_2023 });
    expect(firstError(c)).toEqual({ code: 'ERR_COLLATERAL_INVALID', step: 'collateral' });
  });
});

describe('TdxVerifier.detect', () => {
  it('recognises TDX quotes v4 and v5 and nothing else', () => {
    const v = new TdxVerifier();
    expect(v.detect(quoteBytes(G + 'tdx_prod_quote_SPR_E4.dat'))).toBe(true);
    expect(v.detect(quoteBytes(G + 'quote_v5_sample.dat'))).toBe(true);
    expect(v.detect(readVector('attestation/sev-snp/go-sev-guest/attestation.bin'))).toBe(false);
    expect(v.detect(readVector('attestation/nitro/eternis_lib_test_attestation.cbor'))).toBe(false);
    expect(v.detect(new Uint8Array(0))).toBe(false);
  });
});
