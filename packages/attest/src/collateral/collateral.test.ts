// The collateral fetcher against a loopback STAND-IN for AMD KDS and Intel PCS (a test double
// serving the real vendor bytes from shared/vectors): URL mapping, equal outcomes with fetched and
// hand-given collateral (tampered twins included), typed transport errors, and the store.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { toHex, X509Certificate, type Bytes, type CustodyError } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { readAmdKeyExtensions } from '../sev-snp/amd-certs.js';
import { verifySevSnp } from '../sev-snp/verifier.js';
import { amdExtensions, buildReport, createCrl, createKeyCertificate, createProductPki, signReport, tcbBytes, type AmdTcb, type SyntheticKey, type SyntheticProductPki } from '../sev-snp/testing/synthetic.js';
import { TdxVerifier } from '../tdx/verifier.js';
import type { VerificationResult, VerifyInput } from '../types.js';
import { fetchBounded, type FetchLike } from './http.js';
import { CollateralSource, collateralAccepted, collateralRefused, withFetchedCollateral, type CollateralSourceOptions, type FetchedCollateral } from './source.js';
import { MemoryCollateralStore } from './store.js';
import { AMD_KDS_URL, INTEL_PCS_URL, INTEL_ROOT_CA_CRL_URL } from './urls.js';
import { PCS_PATHS, TDX_QUOTE_4, TDX_SPR_E4, VendorServiceStandIn, amdMilan, encodeChainHeader, handGiven2023, intel2023, servePcs2023 } from './testing/vendor-stand-in.js';

const AT_2023 = new Date('2023-07-01T01:00:00Z');
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const AT_SNP = new Date('2023-06-01T00:00:00Z');
const MILAN_HWID = '3ac3fe21e13fb0990eb28a802e3fb6a29483a6b0753590c951bdd3b8e53786184ca39e359669a2b76a1936776b564ea464cdce40c05f63c9b610c5068b006b5d';

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p;
    return undefined;
  } catch (e) {
    return (e as CustodyError).code;
  }
}

function summary(r: VerificationResult): unknown {
  return { ok: r.ok, codes: r.errors.map((e) => [e.code, e.step]), steps: r.steps.map((s) => [s.name, s.ok, s.code]), claims: r.claims, warnings: r.warnings };
}

/**
 * One run as the CLI does it: fetch, verify; on a refusal, fetch the kept copies again and verify
 * again if they differ; keep what was accepted. `first` is the verdict before any refresh.
 */
async function cliLikeRun(
  source: CollateralSource,
  evidence: Uint8Array,
  hand: Record<string, Uint8Array> = {},
  now = AT_2023,
  verify: (input: VerifyInput) => Promise<VerificationResult> = (i) => new TdxVerifier().verify(i),
  extra: Partial<VerifyInput> = {},
): Promise<{ r: VerificationResult; f: FetchedCollateral; first: VerificationResult; firstFetched: FetchedCollateral }> {
  const firstFetched = await source.fetchFor(evidence, { now, collateral: hand });
  const run = (f: FetchedCollateral) => verify({ evidence, now, ...extra, ...withFetchedCollateral({ collateral: hand }, f) });
  const first = await run(firstFetched);
  let f = firstFetched;
  let r = first;
  if (collateralRefused(f.platform, r)) {
    const fresh = await f.refresh();
    if (fresh) {
      f = fresh;
      r = await run(fresh);
    }
  }
  if (collateralAccepted(f.platform, r)) await f.commit();
  return { r, f, first, firstFetched };
}

/** Every entry of a memory store, by URL (body bytes as hex). */
async function storeContents(store: MemoryCollateralStore, urls: string[], now: Date): Promise<Record<string, string | undefined>> {
  return Object.fromEntries(await Promise.all(urls.map(async (u) => [u, (await store.get(u, now)) && toHex((await store.get(u, now))!.body)] as const)));
}

// ---------- synthetic Turin PKI (no public Turin sample or AMD CRL exists in the vectors) ----------
const AT_TURIN = new Date('2025-06-01T00:00:00Z');
const TURIN_TCB: AmdTcb = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 0x4a };
const HWID8 = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
let turin: SyntheticProductPki;
let turinVcek: SyntheticKey;
let turinReport: Uint8Array;
let turinChainPem: string;
let turinCrl: Uint8Array;
let turinStaleCrl: Uint8Array;
let otherChipVcek: SyntheticKey;

const pem = (der: Uint8Array): string => `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;

beforeAll(async () => {
  turin = await createProductPki('Turin');
  turinVcek = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 0, ca: false, issuer: turin.ask, extensions: amdExtensions({ productName: 'Turin-B0', tcb: TURIN_TCB, hwid: HWID8 }) });
  const chipId = new Uint8Array(64);
  chipId.set(HWID8);
  turinReport = await signReport(buildReport({ version: 5, reportedTcb: tcbBytes(TURIN_TCB), cpuid: { family: 0x1a, model: 0x02, stepping: 1 }, chipId, policy: 0x30000n, launchMitVector: 0n, currentMitVector: 0n }), turinVcek.keys.privateKey);
  turinChainPem = pem(turin.ask.cert) + pem(turin.ark.cert);
  turinCrl = await createCrl(turin.ark, [], new Date('2025-05-01T00:00:00Z'), new Date('2025-07-01T00:00:00Z'));
  otherChipVcek = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 1, ca: false, issuer: turin.ask, extensions: amdExtensions({ productName: 'Turin-B0', tcb: TURIN_TCB, hwid: Uint8Array.of(9, 9, 9, 9, 9, 9, 9, 9) }) });
  turinStaleCrl = await createCrl(turin.ark, [], new Date('2025-04-01T00:00:00Z'), new Date('2025-05-01T00:00:00Z'));
});

describe('the URL each piece of evidence maps to', () => {
  const source = new CollateralSource();
  const milanVcekExt = () => readAmdKeyExtensions(new X509Certificate(amdMilan().vcek));

  it('SEV-SNP Milan (v2 report, product given): the VCEK for CHIP_ID and REPORTED_TCB, the cert_chain and the crl', () => {
    const plan = source.plan(amdMilan().report, { product: 'Milan' });
    // The hwid and SPLs are the ones AMD put in the real VCEK KDS issued for this chip.
    const ext = milanVcekExt();
    expect(plan.platform === 'sev-snp' && plan.hwid).toBe(toHex(ext.hwid!));
    expect(plan.requests.map((r) => [r.kind, r.url])).toEqual([
      ['vcek', `${AMD_KDS_URL}/vcek/v1/Milan/${MILAN_HWID}?blSPL=02&teeSPL=00&snpSPL=05&ucodeSPL=68`],
      ['certChain', `${AMD_KDS_URL}/vcek/v1/Milan/cert_chain`],
      ['crl', `${AMD_KDS_URL}/vcek/v1/Milan/crl`],
    ]);
    expect([ext.tcb.bootloader, ext.tcb.tee, ext.tcb.snp, ext.tcb.microcode]).toEqual([2, 0, 5, 68]);
  });

  const table: { name: string; evidence: () => Uint8Array; options?: CollateralSourceOptions; product?: 'Milan' | 'Genoa' | 'Turin'; platform?: 'tdx'; urls?: string[]; code?: string }[] = [
    {
      name: 'trustee Milan report: three-digit ucodeSPL',
      evidence: () => readVector('attestation/sev-snp/trustee/test-report.bin'),
      product: 'Milan',
      urls: [expect.stringMatching(/^https:\/\/kdsintf\.amd\.com\/vcek\/v1\/Milan\/c38427a30d4c[0-9a-f]{116}\?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115$/), `${AMD_KDS_URL}/vcek/v1/Milan/cert_chain`, `${AMD_KDS_URL}/vcek/v1/Milan/crl`],
    },
    {
      name: 'Turin v5 report: product from CPUID, 8-byte hwid, fmcSPL, another KDS base',
      evidence: () => turinReport,
      options: { kdsUrl: 'https://kds.example/prefix/' },
      urls: ['https://kds.example/prefix/vcek/v1/Turin/0102030405060708?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=74', 'https://kds.example/prefix/vcek/v1/Turin/cert_chain', 'https://kds.example/prefix/vcek/v1/Turin/crl'],
    },
    { name: 'Turin report said to be Milan', evidence: () => turinReport, product: 'Milan', code: 'ERR_SNP_PRODUCT' },
    { name: 'v2 report without a product', evidence: () => amdMilan().report, code: 'ERR_USAGE' },
    { name: 'VLEK-signed report', evidence: () => readVector('attestation/sev-snp/trustee/test-vlek-report.bin'), code: 'ERR_SNP_VLEK_NOT_FETCHABLE' },
    {
      name: 'TDX SPR E4 quote: FMSPC and Platform CA from the PCK chain in the quote; Intel PCS v4 and the root CA CRL distribution point',
      evidence: TDX_SPR_E4,
      urls: [
        'https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806F000000',
        'https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity',
        'https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der',
        INTEL_ROOT_CA_CRL_URL,
      ],
    },
    {
      name: 'TDX trustee quote 6 through a PCCS: its rootcacrl endpoint',
      evidence: () => readVector('attestation/tdx/trustee/tdx_quote_6.dat'),
      options: { pcsUrl: 'https://pccs.example:8081' },
      urls: [
        'https://pccs.example:8081/tdx/certification/v4/tcb?fmspc=00A06D080000',
        'https://pccs.example:8081/tdx/certification/v4/qe/identity',
        'https://pccs.example:8081/sgx/certification/v4/pckcrl?ca=platform&encoding=der',
        'https://pccs.example:8081/sgx/certification/v4/rootcacrl',
      ],
    },
    {
      // Review C-D: naming Intel's PCS explicitly must not switch the root CA CRL to a rootcacrl path PCS does not serve.
      name: 'TDX SPR E4 with Intel PCS given explicitly (any spelling): still the root CA CRL distribution point',
      evidence: TDX_SPR_E4,
      options: { pcsUrl: 'https://API.trustedservices.intel.com/' },
      urls: [
        'https://api.trustedservices.intel.com/tdx/certification/v4/tcb?fmspc=50806F000000',
        'https://api.trustedservices.intel.com/tdx/certification/v4/qe/identity',
        'https://api.trustedservices.intel.com/sgx/certification/v4/pckcrl?ca=platform&encoding=der',
        INTEL_ROOT_CA_CRL_URL,
      ],
    },
    {
      name: 'TDX SPR E4 through a PCCS with the root CA CRL URL given: that URL',
      evidence: TDX_SPR_E4,
      options: { pcsUrl: 'https://pccs.example', rootCaCrlUrl: 'https://crl.example/root.der' },
      urls: [
        'https://pccs.example/tdx/certification/v4/tcb?fmspc=50806F000000',
        'https://pccs.example/tdx/certification/v4/qe/identity',
        'https://pccs.example/sgx/certification/v4/pckcrl?ca=platform&encoding=der',
        'https://crl.example/root.der',
      ],
    },
    { name: 'Nitro evidence has no collateral service', evidence: () => readVector('attestation/nitro/eternis_lib_test_attestation.cbor'), code: 'ERR_FORMAT_UNKNOWN' },
    { name: 'a truncated quote', evidence: () => TDX_SPR_E4().subarray(0, 600), platform: 'tdx', code: 'ERR_INPUT_TRUNCATED' },
    { name: 'bytes that are no evidence', evidence: () => new Uint8Array(100), code: 'ERR_FORMAT_UNKNOWN' },
  ];
  for (const c of table) {
    it(c.name, () => {
      const s = new CollateralSource(c.options);
      const run = () => s.plan(c.evidence(), { ...(c.product && { product: c.product }), ...(c.platform && { platform: c.platform }) });
      if (c.code) expect(() => run()).toThrow(expect.objectContaining({ code: c.code }) as Error);
      else expect(run().requests.map((r) => r.url)).toEqual(c.urls);
    });
  }

  it('refuses base URLs with credentials, queries or other schemes', () => {
    for (const bad of ['ftp://kds.example', 'https://u:p@kds.example', 'https://kds.example/?x=1', 'not a url']) {
      expect(() => new CollateralSource({ kdsUrl: bad })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    }
  });
});

describe('fetching from the stand-in gives exactly what hand-given files give', () => {
  let s: VendorServiceStandIn;
  beforeEach(async () => {
    s = await VendorServiceStandIn.start();
  });
  afterEach(async () => {
    await s.stop();
  });

  const tdx = (evidence: Uint8Array, input: Partial<VerifyInput>, now = AT_2023) => new TdxVerifier().verify({ evidence, now, ...input });
  async function fetchTdx(evidence: Uint8Array, now = AT_2023, options: Partial<CollateralSourceOptions> = {}): Promise<{ r: VerificationResult; f: FetchedCollateral }> {
    const f = await new CollateralSource({ pcsUrl: s.url, ...options }).fetchFor(evidence, { now });
    return { r: await tdx(evidence, withFetchedCollateral({}, f), now), f };
  }

  it('TDX quote 4: UpToDate, with every step and claim equal to the hand-given run', async () => {
    servePcs2023(s);
    const { r, f } = await fetchTdx(TDX_QUOTE_4());
    expect(r.ok).toBe(true);
    expect(r.claims!.tcb!.status).toBe('UpToDate');
    expect(summary(r)).toEqual(summary(await tdx(TDX_QUOTE_4(), { collateral: handGiven2023() })));
    expect(Object.keys(f.collateral).sort()).toEqual(['pckCrl', 'pckCrlIssuerChain', 'qeIdentity', 'qeIdentityIssuerChain', 'rootCaCrl', 'tcbInfo', 'tcbInfoIssuerChain']);
    expect(f.items.map((i) => i.from)).toEqual(['network', 'network', 'network', 'network']);
    expect(s.requests.sort()).toEqual([PCS_PATHS.pckCrl('platform'), PCS_PATHS.qeIdentity, PCS_PATHS.rootCaCrl, PCS_PATHS.tcbInfo('50806F000000')].sort());
    expect(collateralAccepted('tdx', r)).toBe(true);
  });

  it('TDX SPR E4: the same ERR_TCB_NO_MATCH as hand-given, and the collateral still counts as accepted', async () => {
    servePcs2023(s);
    const { r } = await fetchTdx(TDX_SPR_E4());
    expect(r.errors[0]!.code).toBe('ERR_TCB_NO_MATCH');
    expect(summary(r)).toEqual(summary(await tdx(TDX_SPR_E4(), { collateral: handGiven2023() })));
    expect(collateralAccepted('tdx', r)).toBe(true);
  });

  it('reads the v3-era SGX-TCB-Info-Issuer-Chain header name when the v4 one is absent (older PCCS)', async () => {
    servePcs2023(s);
    const route = s.routes.get(PCS_PATHS.tcbInfo('50806F000000'))!;
    route.headers = { 'SGX-TCB-Info-Issuer-Chain': encodeChainHeader(intel2023().tcbChain) };
    expect((await fetchTdx(TDX_QUOTE_4())).r.ok).toBe(true);
  });

  /** The byte just after `needle` changed to another digit: the JSON still parses (a broken one is an unusable answer, not collateral). */
  const flipAfter = (b: Uint8Array, needle: string): Uint8Array => {
    const c = b.slice();
    const at = new TextDecoder().decode(b).indexOf(needle) + needle.length;
    c[at] = c[at] === 0x30 ? 0x31 : 0x30;
    return c;
  };
  const tdxTwins: { name: string; over: () => Partial<ReturnType<typeof intel2023>>; code: string; now?: Date }[] = [
    { name: 'TCB Info with a changed byte in its signed body', over: () => ({ tcbInfo: flipAfter(intel2023().tcbInfo, '"tcbEvaluationDataNumber":1') }), code: 'ERR_COLLATERAL_INVALID' },
    { name: 'QE Identity with a changed signature byte', over: () => ({ qeIdentity: flipAfter(intel2023().qeIdentity, '"signature":"') }), code: 'ERR_COLLATERAL_INVALID' },
    { name: 'the root CA CRL served as the PCK CRL', over: () => ({ pckCrl: intel2023().rootCaCrl }), code: 'ERR_CRL_INVALID' },
    { name: 'the PCK CRL, stale at 2023-07-09', over: () => ({}), code: 'ERR_CRL_STALE', now: new Date('2023-07-09T00:00:00Z') },
    { name: 'a TCB Info issuer chain that is the PCK CRL chain (wrong signer)', over: () => ({ tcbChain: intel2023().crlChain, qeChain: intel2023().crlChain }), code: 'ERR_COLLATERAL_INVALID' },
  ];
  for (const t of tdxTwins) {
    it(`TDX tampered twin, ${t.name}: ${t.code}, as hand-given; not accepted for keeping`, async () => {
      servePcs2023(s, t.over());
      const { r } = await fetchTdx(TDX_QUOTE_4(), t.now);
      const hand = await tdx(TDX_QUOTE_4(), { collateral: handGiven2023(t.over()) }, t.now);
      expect(hand.errors[0]!.code).toBe(t.code);
      expect(summary(r)).toEqual(summary(hand));
      expect(collateralAccepted('tdx', r)).toBe(false); // so the CLI keeps none of it
    });
  }

  it('SEV-SNP Milan: the fetched real VCEK and ASK/ARK verify to the pinned ARK; the CRL the stand-in serves is applied as a hand-given one', async () => {
    const m = amdMilan();
    s.serve(`/vcek/v1/Milan/${MILAN_HWID}?blSPL=02&teeSPL=00&snpSPL=05&ucodeSPL=68`, { body: m.vcek }).serve('/vcek/v1/Milan/cert_chain', { body: m.chain }).serve('/vcek/v1/Milan/crl', { body: turinCrl });
    const f = await new CollateralSource({ kdsUrl: s.url }).fetchFor(m.report, { now: AT_SNP, product: 'Milan' });
    expect(f.certs).toEqual([m.vcek, m.chain]);
    const r = await verifySevSnp({ evidence: m.report, now: AT_SNP, ...withFetchedCollateral({}, f) });
    // No real AMD CRL is among the vectors: this one is from an unrelated (synthetic) ARK.
    expect(summary(r)).toEqual(summary(await verifySevSnp({ evidence: m.report, now: AT_SNP, certs: [m.vcek, m.chain], collateral: { crl: turinCrl } })));
    expect(r.steps.slice(0, 2).map((x) => [x.name, x.ok])).toEqual([['parse', true], ['chain', true]]);
    expect(r.errors[0]!.code).toBe('ERR_COLLATERAL_MISMATCH');
  });

  const turinPaths = { vcek: '/vcek/v1/Turin/0102030405060708?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=74', chain: '/vcek/v1/Turin/cert_chain', crl: '/vcek/v1/Turin/crl' };
  const turinTwins: { name: string; crl: () => Uint8Array; vcek?: () => Uint8Array; ok: boolean; code?: string }[] = [
    { name: 'a current CRL: verified, revocation checked', crl: () => turinCrl, ok: true },
    { name: 'a stale CRL', crl: () => turinStaleCrl, ok: false, code: 'ERR_CRL_STALE' },
    { name: 'a VCEK for another chip (same ASK, same TCB)', crl: () => turinCrl, vcek: () => otherChipVcek.cert, ok: false, code: 'ERR_EVIDENCE_SIGNATURE' },
    { name: 'a CRL with a flipped signature byte', crl: () => Uint8Array.from(turinCrl, (b, i) => (i === turinCrl.length - 3 ? b ^ 1 : b)), ok: false, code: 'ERR_CRL_INVALID' },
  ];
  for (const t of turinTwins) {
    it(`SEV-SNP Turin (synthetic PKI as roots), ${t.name}`, async () => {
      const vcek = t.vcek?.() ?? turinVcek.cert;
      s.serve(turinPaths.vcek, { body: vcek }).serve(turinPaths.chain, { body: turinChainPem }).serve(turinPaths.crl, { body: t.crl() });
      const f = await new CollateralSource({ kdsUrl: s.url }).fetchFor(turinReport, { now: AT_TURIN });
      const r = await verifySevSnp({ evidence: turinReport, now: AT_TURIN, roots: [turin.ark.cert], ...withFetchedCollateral({}, f) });
      const hand = await verifySevSnp({ evidence: turinReport, now: AT_TURIN, roots: [turin.ark.cert], certs: [vcek, new TextEncoder().encode(turinChainPem)], collateral: { crl: t.crl() } });
      expect(r.ok).toBe(t.ok);
      if (t.ok) expect(r.claims!.platformClaims.revocationChecked).toBe(true);
      else expect(r.errors[0]!.code).toBe(t.code);
      expect(summary(r)).toEqual(summary(hand));
      expect(collateralAccepted('sev-snp', r)).toBe(t.ok);
    });
  }

  it('a VLEK-signed report with its VLEK supplied needs nothing from KDS', async () => {
    const report = readVector('attestation/sev-snp/trustee/test-vlek-report.bin');
    const f = await new CollateralSource({ kdsUrl: s.url }).fetchFor(report, { now: AT_SNP, certs: [readVector('attestation/sev-snp/trustee/test-vlek.der')] });
    expect(f.items).toEqual([]);
    expect(await codeOf(new CollateralSource({ kdsUrl: s.url }).fetchFor(report, { now: AT_SNP }))).toBe('ERR_SNP_VLEK_NOT_FETCHABLE');
    expect(s.requests).toEqual([]);
  });

  it('hand-given TDX collateral wins: only what is missing is fetched (named files or a bundle)', async () => {
    servePcs2023(s);
    const hand = handGiven2023();
    const f = await new CollateralSource({ pcsUrl: s.url }).fetchFor(TDX_QUOTE_4(), { now: AT_2023, collateral: { tcbInfo: hand.tcbInfo!, tcbInfoIssuerChain: hand.tcbInfoIssuerChain! } });
    expect(f.items.map((i) => i.kind)).toEqual(['qeIdentity', 'pckCrl', 'rootCaCrl']);
    expect(s.count('/tdx/certification/v4/tcb')).toBe(0);
  });
});

describe('transport failures are typed', () => {
  let s: VendorServiceStandIn;
  beforeAll(async () => {
    s = await VendorServiceStandIn.start();
  });
  afterAll(async () => {
    await s.stop();
  });

  const cases: { name: string; route?: Parameters<VendorServiceStandIn['serve']>[1]; options?: Partial<CollateralSourceOptions>; code: string }[] = [
    { name: '404', route: { status: 404 }, code: 'ERR_COLLATERAL_NOT_FOUND' },
    { name: '410', route: { status: 410 }, code: 'ERR_COLLATERAL_NOT_FOUND' },
    { name: '500', route: { status: 500 }, code: 'ERR_COLLATERAL_UNAVAILABLE' },
    { name: '503', route: { status: 503 }, code: 'ERR_COLLATERAL_UNAVAILABLE' },
    { name: '429', route: { status: 429, headers: { 'retry-after': '10' } }, code: 'ERR_COLLATERAL_UNAVAILABLE' },
    { name: '400', route: { status: 400 }, code: 'ERR_COLLATERAL_RESPONSE' },
    { name: 'a timeout', route: { delayMs: 1500, body: intel2023().tcbInfo }, options: { timeoutMs: 150 }, code: 'ERR_COLLATERAL_UNAVAILABLE' },
    { name: 'an oversized body with Content-Length', route: { body: new Uint8Array(5000) }, options: { maxResponseBytes: 4096 }, code: 'ERR_COLLATERAL_RESPONSE' },
    { name: 'an oversized chunked body', route: { body: new Uint8Array(5000), chunked: true }, options: { maxResponseBytes: 4096 }, code: 'ERR_COLLATERAL_RESPONSE' },
    { name: 'no issuer-chain header', route: { body: intel2023().tcbInfo }, code: 'ERR_COLLATERAL_RESPONSE' },
    { name: 'an issuer-chain header that is not percent-encoded PEM', route: { body: intel2023().tcbInfo, headers: { 'TCB-Info-Issuer-Chain': '%E0%A4%A' } }, code: 'ERR_COLLATERAL_RESPONSE' },
  ];
  for (const c of cases) {
    it(`TCB Info answered with ${c.name}: ${c.code}`, async () => {
      servePcs2023(s);
      if (c.route) s.serve(PCS_PATHS.tcbInfo('50806F000000'), c.route);
      const e = await new CollateralSource({ pcsUrl: s.url, ...c.options }).fetchFor(TDX_QUOTE_4(), { now: AT_2023 }).catch((x: unknown) => x as CustodyError);
      expect((e as CustodyError).code).toBe(c.code);
      if (c.name === 'a timeout') expect((e as CustodyError).detail?.reason).toBe('timeout');
    });
  }

  it('a service that cannot be reached: ERR_COLLATERAL_UNAVAILABLE (network)', async () => {
    const closed = await VendorServiceStandIn.start();
    const url = closed.url;
    await closed.stop();
    const e = (await new CollateralSource({ pcsUrl: url }).fetchFor(TDX_QUOTE_4(), { now: AT_2023 }).catch((x: unknown) => x)) as CustodyError;
    expect([e.code, e.detail?.reason]).toEqual(['ERR_COLLATERAL_UNAVAILABLE', 'network']);
  });

  it('an injected fetch that throws is a network failure, never another exception', async () => {
    const e = (await new CollateralSource({ fetch: () => Promise.reject(new TypeError('boom')) }).fetchFor(TDX_QUOTE_4(), { now: AT_2023 }).catch((x: unknown) => x)) as CustodyError;
    expect(e.code).toBe('ERR_COLLATERAL_UNAVAILABLE');
  });
});

describe('the store: reuse until nextUpdate, offline with a warm store', () => {
  let s: VendorServiceStandIn;
  beforeEach(async () => {
    s = await VendorServiceStandIn.start();
    servePcs2023(s);
  });
  afterEach(async () => {
    await s.stop();
  });

  it('a second run is served from the store with the stand-in stopped; with a long maximum age, expiries are the collateral nextUpdates', async () => {
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ pcsUrl: s.url, store, maxAgeMs: 365 * DAY });
    const first = await source.fetchFor(TDX_QUOTE_4(), { now: AT_2023 });
    expect(Object.fromEntries(first.items.map((i) => [i.kind, i.expiresAt]))).toEqual({
      tcbInfo: '2023-07-18T08:42:58.000Z',
      qeIdentity: '2023-07-08T07:24:59.000Z',
      pckCrl: '2023-07-08T07:27:52.000Z',
      rootCaCrl: '2024-04-02T10:22:51.000Z',
    });
    expect(store.size).toBe(0); // nothing is kept before the verifier accepted it
    await first.commit();
    expect(store.size).toBe(4);
    await s.stop();
    const second = await source.fetchFor(TDX_QUOTE_4(), { now: AT_2023 });
    expect(second.items.map((i) => i.from)).toEqual(['cache', 'cache', 'cache', 'cache']);
    const r = await new TdxVerifier().verify({ evidence: TDX_QUOTE_4(), now: AT_2023, ...withFetchedCollateral({}, second) });
    expect(r.ok).toBe(true);
    s = await VendorServiceStandIn.start(); // for afterEach
  });

  it('refetches exactly what passed its nextUpdate (injected clock)', async () => {
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ pcsUrl: s.url, store, maxAgeMs: 30 * DAY });
    await (await source.fetchFor(TDX_QUOTE_4(), { now: AT_2023 })).commit();
    s.requests.length = 0;
    const later = await source.fetchFor(TDX_QUOTE_4(), { now: new Date('2023-07-09T00:00:00Z') });
    expect(Object.fromEntries(later.items.map((i) => [i.kind, i.from]))).toEqual({ tcbInfo: 'cache', qeIdentity: 'network', pckCrl: 'network', rootCaCrl: 'cache' });
    expect(s.requests.sort()).toEqual([PCS_PATHS.pckCrl('platform'), PCS_PATHS.qeIdentity].sort());
  });

  it('the VCEK and chains are kept for the fixed TTL', async () => {
    const m = amdMilan();
    s.serve(`/vcek/v1/Milan/${MILAN_HWID}?blSPL=02&teeSPL=00&snpSPL=05&ucodeSPL=68`, { body: m.vcek }).serve('/vcek/v1/Milan/cert_chain', { body: m.chain });
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ kdsUrl: s.url, store, fixedTtlMs: 60_000 });
    const f = await source.fetchFor(m.report, { now: AT_SNP, product: 'Milan', collateral: { crl: turinCrl } });
    expect(f.items.map((i) => i.expiresAt)).toEqual(['2023-06-01T00:01:00.000Z', '2023-06-01T00:01:00.000Z']);
    await f.commit();
    expect((await source.fetchFor(m.report, { now: new Date(AT_SNP.getTime() + 59_000), product: 'Milan', collateral: { crl: turinCrl } })).items.map((i) => i.from)).toEqual(['cache', 'cache']);
    expect((await source.fetchFor(m.report, { now: new Date(AT_SNP.getTime() + 60_000), product: 'Milan', collateral: { crl: turinCrl } })).items.map((i) => i.from)).toEqual(['network', 'network']);
  });

  it('a stale CRL is passed to the verifier but never kept', async () => {
    const store = new MemoryCollateralStore();
    const f = await new CollateralSource({ pcsUrl: s.url, store }).fetchFor(TDX_QUOTE_4(), { now: new Date('2023-07-09T00:00:00Z') });
    expect(f.collateral.pckCrl).toEqual(intel2023().pckCrl);
    await f.commit();
    expect(store.size).toBe(2); // tcbInfo and rootCaCrl; the expired QE Identity and PCK CRL are not kept
  });
});

describe('review of f5c4367: hand-given parts, eviction, freshness, redirects', () => {
  let s: VendorServiceStandIn;
  beforeEach(async () => {
    s = await VendorServiceStandIn.start();
  });
  afterEach(async () => {
    await s.stop();
  });

  const verifyRun = (source: CollateralSource, hand: Record<string, Uint8Array> = {}, now = AT_2023) => cliLikeRun(source, TDX_QUOTE_4(), hand, now);
  const tcbItem = (f: FetchedCollateral) => f.items.find((i) => i.kind === 'tcbInfo')!;

  it('C-B: an item whose issuer chain is given by hand is fetched but not kept, so later runs fetch it afresh and verify', async () => {
    // The service sends the TCB Info with a wrong (well-formed) issuer chain header; the operator hands in the right chain.
    servePcs2023(s, { tcbChain: intel2023().crlChain });
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ pcsUrl: s.url, store });
    const one = await verifyRun(source, { tcbInfoIssuerChain: intel2023().tcbChain });
    expect(one.r.ok).toBe(true);
    expect(tcbItem(one.f)).toEqual({ kind: 'tcbInfo', url: `${s.url}${PCS_PATHS.tcbInfo('50806F000000')}`, from: 'network', partlyGiven: true });
    expect(one.f.collateral.tcbInfoIssuerChain).toBeUndefined(); // the unchecked header chain is not even offered
    expect(store.size).toBe(3); // QE Identity and both CRLs
    servePcs2023(s); // the service is fixed
    const two = await verifyRun(source);
    expect([two.r.ok, tcbItem(two.f).from]).toEqual([true, 'network']);
  });

  it('C-B: an issuer chain in a hand-given bundle wins over the fetched header chain, and that item is not kept', async () => {
    servePcs2023(s, { tcbChain: intel2023().crlChain });
    const store = new MemoryCollateralStore();
    const bundle = new TextEncoder().encode(JSON.stringify({ tcb_info_issuer_chain: new TextDecoder().decode(intel2023().tcbChain) }));
    const { r, f } = await verifyRun(new CollateralSource({ pcsUrl: s.url, store }), { bundle });
    expect(r.ok).toBe(true);
    expect(tcbItem(f).partlyGiven).toBe(true);
    expect(await store.get(`${s.url}${PCS_PATHS.tcbInfo('50806F000000')}`, AT_2023)).toBeUndefined();
  });

  it('C-A: a kept copy the verifier refuses is fetched again and, as the fresh one verifies, replaced in the same run (an accepted one is kept)', async () => {
    servePcs2023(s);
    const store = new MemoryCollateralStore();
    const url = `${s.url}${PCS_PATHS.tcbInfo('50806F000000')}`;
    // A kept TCB Info that no longer verifies (flipped byte in its signed body; its nextUpdate intact).
    const bad = intel2023().tcbInfo.slice();
    bad[40] = bad[40]! ^ 0x01;
    await store.put({ url, body: bad, headers: { 'tcb-info-issuer-chain': encodeChainHeader(intel2023().tcbChain) }, fetchedAt: AT_2023, expiresAt: new Date(AT_2023.getTime() + HOUR) });
    const source = new CollateralSource({ pcsUrl: s.url, store });
    const one = await verifyRun(source);
    expect([one.first.errors[0]?.code, tcbItem(one.firstFetched).from, collateralRefused('tdx', one.first)]).toEqual(['ERR_COLLATERAL_INVALID', 'cache', true]);
    expect([one.r.ok, tcbItem(one.f).from]).toEqual([true, 'network']);
    expect((await store.get(url, AT_2023))!.body).toEqual(intel2023().tcbInfo);
    const two = await verifyRun(source);
    expect([two.r.ok, tcbItem(two.f).from]).toEqual([true, 'cache']);
  });

  it('collateralRefused: a collateral step failed (not a TCB level that does not match, not an accepted run)', async () => {
    servePcs2023(s);
    const e4 = await new TdxVerifier().verify({ evidence: TDX_SPR_E4(), now: AT_2023, collateral: handGiven2023() });
    const stale = await new TdxVerifier().verify({ evidence: TDX_QUOTE_4(), now: new Date('2023-07-09T00:00:00Z'), collateral: handGiven2023() });
    const ok = await new TdxVerifier().verify({ evidence: TDX_QUOTE_4(), now: AT_2023, collateral: handGiven2023() });
    expect([e4, stale, ok].map((r) => [r.errors[0]?.code, collateralRefused('tdx', r)])).toEqual([
      ['ERR_TCB_NO_MATCH', false],
      ['ERR_CRL_STALE', true],
      [undefined, false],
    ]);
  });

  it('C-A: a kept entry is not trusted beyond its own bytes: a far expiresAt is cut to the body nextUpdate, a body with none is dropped', async () => {
    servePcs2023(s);
    const store = new MemoryCollateralStore();
    const qeUrl = `${s.url}${PCS_PATHS.qeIdentity}`;
    const pckUrl = `${s.url}${PCS_PATHS.pckCrl('platform')}`;
    const far = new Date('9999-01-01T00:00:00Z');
    const headers = { 'sgx-enclave-identity-issuer-chain': encodeChainHeader(intel2023().qeChain) };
    // The real QE Identity (nextUpdate 2023-07-08T07:24:59Z) and PCK CRL (2023-07-08T07:27:52Z), kept with a 9999 expiry.
    await store.put({ url: qeUrl, body: intel2023().qeIdentity.slice(), headers, fetchedAt: new Date('2023-07-08T00:00:00Z'), expiresAt: far });
    await store.put({ url: pckUrl, body: intel2023().pckCrl.slice(), headers: { 'sgx-pck-crl-issuer-chain': encodeChainHeader(intel2023().crlChain) }, fetchedAt: new Date('2023-07-08T00:00:00Z'), expiresAt: far });
    const source = new CollateralSource({ pcsUrl: s.url, store, maxAgeMs: 30 * DAY });
    const before = await source.fetchFor(TDX_QUOTE_4(), { now: new Date('2023-07-08T07:00:00Z') });
    expect(Object.fromEntries(before.items.map((i) => [i.kind, [i.from, i.expiresAt]]))).toMatchObject({ qeIdentity: ['cache', '2023-07-08T07:24:59.000Z'], pckCrl: ['cache', '2023-07-08T07:27:52.000Z'] });
    const after = await source.fetchFor(TDX_QUOTE_4(), { now: new Date('2023-07-08T08:00:00Z') });
    expect(Object.fromEntries(after.items.map((i) => [i.kind, i.from]))).toMatchObject({ qeIdentity: 'network', pckCrl: 'network' });
    // A body that names no nextUpdate (not Intel's) gives the copy no life at all: dropped, fetched again.
    await store.put({ url: qeUrl, body: new TextEncoder().encode('{"enclaveIdentity":{},"signature":"00"}'), headers, fetchedAt: AT_2023, expiresAt: far });
    const planted = await source.fetchFor(TDX_QUOTE_4(), { now: AT_2023 });
    expect(planted.items.find((i) => i.kind === 'qeIdentity')!.from).toBe('network');
    expect(await store.get(qeUrl, AT_2023)).toBeUndefined();
  });

  it('C-C: by default each entry lives min(its nextUpdate, fetched + 24 h); maxAgeMs changes that, and a lower one also cuts copies kept earlier', async () => {
    servePcs2023(s);
    const store = new MemoryCollateralStore();
    const first = await new CollateralSource({ pcsUrl: s.url, store }).fetchFor(TDX_QUOTE_4(), { now: AT_2023 });
    const dayLater = new Date(AT_2023.getTime() + DAY).toISOString();
    expect(first.items.map((i) => [i.kind, i.expiresAt])).toEqual([
      ['tcbInfo', dayLater],
      ['qeIdentity', dayLater],
      ['pckCrl', dayLater],
      ['rootCaCrl', dayLater], // its nextUpdate is 2024-04-02: nine months of hidden revocations otherwise
    ]);
    await first.commit();
    s.requests.length = 0;
    const fresh = await new CollateralSource({ pcsUrl: s.url, store }).fetchFor(TDX_QUOTE_4(), { now: new Date(AT_2023.getTime() + DAY - 1000) });
    expect(fresh.items.map((i) => i.from)).toEqual(['cache', 'cache', 'cache', 'cache']);
    const old = await new CollateralSource({ pcsUrl: s.url, store }).fetchFor(TDX_QUOTE_4(), { now: new Date(AT_2023.getTime() + DAY) });
    expect(old.items.map((i) => i.from)).toEqual(['network', 'network', 'network', 'network']);

    const longer = new MemoryCollateralStore();
    const longLived = await new CollateralSource({ pcsUrl: s.url, store: longer, maxAgeMs: 8 * DAY }).fetchFor(TDX_QUOTE_4(), { now: AT_2023 });
    expect(Object.fromEntries(longLived.items.map((i) => [i.kind, i.expiresAt]))).toEqual({
      tcbInfo: new Date(AT_2023.getTime() + 8 * DAY).toISOString(),
      qeIdentity: '2023-07-08T07:24:59.000Z',
      pckCrl: '2023-07-08T07:27:52.000Z',
      rootCaCrl: new Date(AT_2023.getTime() + 8 * DAY).toISOString(),
    });
    await longLived.commit();
    // Kept for 8 days, read with a one-hour maximum: an hour after it was fetched it is fetched again.
    const hourly = new CollateralSource({ pcsUrl: s.url, store: longer, maxAgeMs: HOUR });
    expect((await hourly.fetchFor(TDX_QUOTE_4(), { now: new Date(AT_2023.getTime() + HOUR) })).items.map((i) => i.from)).toEqual(['network', 'network', 'network', 'network']);
    // 0 keeps nothing.
    const none = new MemoryCollateralStore();
    await (await new CollateralSource({ pcsUrl: s.url, store: none, maxAgeMs: 0 }).fetchFor(TDX_QUOTE_4(), { now: AT_2023 })).commit();
    expect(none.size).toBe(0);
    expect(() => new CollateralSource({ maxAgeMs: -1 })).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
  });

  /**
   * A fetch that behaves as WHATWG fetch does with redirects: `follow` follows them itself (as
   * undici and browsers do), `manual` hands back the 3xx. Every URL it is asked for is recorded.
   */
  function redirectingFetch(routes: Record<string, { status: number; location?: string; body?: Uint8Array<ArrayBuffer> }>): { fetch: FetchLike; requested: string[] } {
    const requested: string[] = [];
    const fetch: FetchLike = (input, init) => {
      let url = input;
      for (let i = 0; i < 20; i++) {
        requested.push(url);
        const r = routes[url];
        if (!r) return Promise.resolve(new Response(null, { status: 404 }));
        if (r.location && init?.redirect !== 'manual') {
          url = new URL(r.location, url).href;
          continue;
        }
        return Promise.resolve(new Response(r.body ?? null, { status: r.status, headers: r.location ? { location: r.location } : {} }));
      }
      return Promise.reject(new TypeError('redirect count exceeded'));
    };
    return { fetch, requested };
  }
  const crl = intel2023().rootCaCrl.slice();
  const bounded = (fetch: FetchLike, url: string) => fetchBounded(url, { fetch, timeoutMs: 5000, maxBytes: 1 << 20 }).catch((e: CustodyError) => e);

  it('redirects: https to http is refused before the http URL is requested (ERR_COLLATERAL_RESPONSE, downgrade)', async () => {
    const f = redirectingFetch({ 'https://pcs.test/crl': { status: 302, location: 'http://pcs.test/crl' }, 'http://pcs.test/crl': { status: 200, body: crl } });
    const e = (await bounded(f.fetch, 'https://pcs.test/crl')) as CustodyError;
    expect([e.code, e.detail?.reason]).toEqual(['ERR_COLLATERAL_RESPONSE', 'downgrade']);
    expect(f.requested).toEqual(['https://pcs.test/crl']);
  });

  it('br3 C3: a redirect to a URL with credentials is refused before it is requested (ERR_COLLATERAL_RESPONSE, redirect), not reported as unreachable', async () => {
    const f = redirectingFetch({ 'https://pcs.test/crl': { status: 302, location: 'https://user:pw@cdn.test/crl' }, 'http://pccs.test/crl': { status: 307, location: 'http://:secret@pccs.test/other' } });
    for (const url of ['https://pcs.test/crl', 'http://pccs.test/crl']) {
      const e = (await bounded(f.fetch, url)) as CustodyError;
      expect([e.code, e.detail?.reason]).toEqual(['ERR_COLLATERAL_RESPONSE', 'redirect']);
    }
    expect(f.requested).toEqual(['https://pcs.test/crl', 'http://pccs.test/crl']);
    // The real fetch, which would itself refuse such a URL with a TypeError.
    const s2 = await VendorServiceStandIn.start();
    s2.serve('/x', { status: 302, headers: { location: 'http://user:pw@127.0.0.1:1/y' } });
    const real = (await bounded((u, i) => fetch(u, i), `${s2.url}/x`)) as CustodyError;
    await s2.stop();
    expect([real.code, real.detail?.reason]).toEqual(['ERR_COLLATERAL_RESPONSE', 'redirect']);
  });

  it('redirects: https to https and http to http(s) are followed (relative Location too), at most MAX_REDIRECTS', async () => {
    const f = redirectingFetch({
      'https://pcs.test/a': { status: 301, location: '/b' },
      'https://pcs.test/b': { status: 308, location: 'https://cdn.test/crl' },
      'https://cdn.test/crl': { status: 200, body: crl },
      'http://pccs.test/a': { status: 307, location: 'https://pccs.test/a' },
      'https://pccs.test/a': { status: 200, body: crl },
      'https://loop.test/x': { status: 302, location: '/x' },
      'http://pccs.test/ftp': { status: 302, location: 'ftp://pccs.test/crl' },
    });
    expect(((await bounded(f.fetch, 'https://pcs.test/a')) as { body: Uint8Array }).body).toEqual(crl);
    expect(((await bounded(f.fetch, 'http://pccs.test/a')) as { body: Uint8Array }).body).toEqual(crl);
    const loop = (await bounded(f.fetch, 'https://loop.test/x')) as CustodyError;
    expect([loop.code, loop.detail?.reason]).toEqual(['ERR_COLLATERAL_RESPONSE', 'redirect']);
    expect(f.requested.filter((u) => u === 'https://loop.test/x')).toHaveLength(6);
    expect(((await bounded(f.fetch, 'http://pccs.test/ftp')) as CustodyError).code).toBe('ERR_COLLATERAL_RESPONSE');
  });

  it('redirects: the real fetch against the stand-in follows a 302 within the service', async () => {
    servePcs2023(s);
    s.serve('/moved/rootcacrl', { status: 302, headers: { location: PCS_PATHS.rootCaCrl } });
    const r = await fetchBounded(`${s.url}/moved/rootcacrl`, { fetch: (i, init) => fetch(i, init), timeoutMs: 5000, maxBytes: 1 << 20 });
    expect(r.body).toEqual(intel2023().rootCaCrl);
    expect(s.requests).toEqual(['/moved/rootcacrl', PCS_PATHS.rootCaCrl]);
  });

  it('C-D: Intel PCS named explicitly fetches the root CA CRL from its distribution point, never from PCS', () => {
    const explicit = new CollateralSource({ pcsUrl: INTEL_PCS_URL }).plan(TDX_SPR_E4());
    expect(explicit.requests.find((r) => r.kind === 'rootCaCrl')!.url).toBe(INTEL_ROOT_CA_CRL_URL);
    expect(new CollateralSource({ pcsUrl: 'http://api.trustedservices.intel.com' }).plan(TDX_SPR_E4()).requests.find((r) => r.kind === 'rootCaCrl')!.url).toBe('http://api.trustedservices.intel.com/sgx/certification/v4/rootcacrl');
  });
});

describe('review br3 of f4f51bd: refusals never empty the store (C4); a 200 that is not collateral is unusable (C2)', () => {
  let s: VendorServiceStandIn;
  beforeEach(async () => {
    s = await VendorServiceStandIn.start();
  });
  afterEach(async () => {
    await s.stop();
  });

  const tdxUrls = (base: string) => [PCS_PATHS.tcbInfo('50806F000000'), PCS_PATHS.qeIdentity, PCS_PATHS.pckCrl('platform'), PCS_PATHS.rootCaCrl].map((p) => base + p);
  /** Quote 4 with one letter changed in the base64 of its embedded PCK certificate (its signature, near the end). */
  function quoteWithBrokenPck(): Uint8Array {
    const q = TDX_QUOTE_4().slice();
    const end = Buffer.from(q).indexOf('-----END CERTIFICATE-----');
    let i = end - 20;
    while (!/[A-Za-z]/.test(String.fromCharCode(q[i]!))) i--;
    q[i] = q[i] === 0x41 ? 0x42 : 0x41;
    return q;
  }

  it('C4: a quote with a broken certificate of its own (anyone can send one) leaves every kept copy; offline, a good quote still verifies from the store', async () => {
    servePcs2023(s);
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ pcsUrl: s.url, store });
    expect((await cliLikeRun(source, TDX_QUOTE_4())).r.ok).toBe(true);
    const before = await storeContents(store, tdxUrls(s.url), AT_2023);
    expect(Object.values(before).every((v) => v !== undefined)).toBe(true);
    s.requests.length = 0;
    const bad = await cliLikeRun(source, quoteWithBrokenPck());
    expect([bad.r.ok, bad.r.steps.find((x) => !x.ok)?.name, collateralRefused('tdx', bad.r)]).toEqual([false, 'chain', true]);
    expect(s.requests).toHaveLength(4); // the kept copies were fetched again: the same bytes, so the refusal is the quote's
    expect(bad.f).toBe(bad.firstFetched);
    expect(await storeContents(store, tdxUrls(s.url), AT_2023)).toEqual(before);
    // Offline: the kept copies stay too, and a good quote verifies from them.
    await s.stop();
    const offline = await cliLikeRun(source, quoteWithBrokenPck());
    expect(offline.r.ok).toBe(false);
    expect(await storeContents(store, tdxUrls(s.url), AT_2023)).toEqual(before);
    const good = await cliLikeRun(source, TDX_QUOTE_4());
    expect([good.r.ok, good.f.items.map((i) => i.from)]).toEqual([true, ['cache', 'cache', 'cache', 'cache']]);
    s = await VendorServiceStandIn.start(); // for afterEach
  });

  it('C4: a kept copy the verifier refuses, with the service offline or answering the same bytes, is kept (the refusal stands); an out-of-date quote (ERR_TCB_NO_MATCH) refetches nothing', async () => {
    servePcs2023(s);
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ pcsUrl: s.url, store });
    await cliLikeRun(source, TDX_QUOTE_4());
    // An out-of-date platform: a TCB step result, not a refusal of the collateral.
    s.requests.length = 0;
    const e4 = await cliLikeRun(source, TDX_SPR_E4());
    expect([e4.r.errors[0]?.code, collateralRefused('tdx', e4.r), s.requests]).toEqual(['ERR_TCB_NO_MATCH', false, []]);
    // A kept TCB Info that no longer verifies, and the service now serves exactly those bytes.
    const bad = flipDigitAfter(intel2023().tcbInfo, '"tcbEvaluationDataNumber":1');
    const url = tdxUrls(s.url)[0]!;
    await store.put({ url, body: bad, headers: { 'tcb-info-issuer-chain': encodeChainHeader(intel2023().tcbChain) }, fetchedAt: AT_2023, expiresAt: new Date(AT_2023.getTime() + HOUR) });
    servePcs2023(s, { tcbInfo: bad });
    const same = await cliLikeRun(source, TDX_QUOTE_4());
    expect([same.r.errors[0]?.code, same.f === same.firstFetched]).toEqual(['ERR_COLLATERAL_INVALID', true]);
    expect((await store.get(url, AT_2023))!.body).toEqual(bad);
    await s.stop();
    const offline = await cliLikeRun(source, TDX_QUOTE_4());
    expect([offline.r.errors[0]?.code, (await store.get(url, AT_2023))!.body]).toEqual(['ERR_COLLATERAL_INVALID', bad]);
    s = await VendorServiceStandIn.start();
  });

  it('C4: SEV-SNP, a report with a broken signature leaves the kept VCEK, chain and CRL', async () => {
    const paths = { vcek: '/vcek/v1/Turin/0102030405060708?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=74', chain: '/vcek/v1/Turin/cert_chain', crl: '/vcek/v1/Turin/crl' };
    s.serve(paths.vcek, { body: turinVcek.cert }).serve(paths.chain, { body: turinChainPem }).serve(paths.crl, { body: turinCrl });
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ kdsUrl: s.url, store });
    const snp = (i: VerifyInput) => verifySevSnp(i);
    const extra = { roots: [turin.ark.cert] };
    expect((await cliLikeRun(source, turinReport, {}, AT_TURIN, snp, extra)).r.ok).toBe(true);
    const urls = Object.values(paths).map((p) => s.url + p);
    const before = await storeContents(store, urls, AT_TURIN);
    expect(Object.values(before).every((v) => v !== undefined)).toBe(true);
    const forged = turinReport.slice();
    forged[0x2a0] = forged[0x2a0]! ^ 0x01; // in the signature's r
    const bad = await cliLikeRun(source, forged, {}, AT_TURIN, snp, extra);
    expect([bad.r.errors[0]?.code, collateralRefused('sev-snp', bad.r)]).toEqual(['ERR_EVIDENCE_SIGNATURE', true]);
    expect(await storeContents(store, urls, AT_TURIN)).toEqual(before);
  });

  it('r4: after a refusal, a fresh CRL older than the kept one (a stale mirror without the revocation) is not used: the refusal stands and the kept CRL stays; a newer one is used', async () => {
    const paths = { vcek: '/vcek/v1/Turin/0102030405060708?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=74', chain: '/vcek/v1/Turin/cert_chain', crl: '/vcek/v1/Turin/crl' };
    // The kept CRL (2025-05-15) revokes the ASK; the mirror serves the older turinCrl (2025-05-01) without it.
    const revoking = await createCrl(turin.ark, [0x10001], new Date('2025-05-15T00:00:00Z'), new Date('2025-07-01T00:00:00Z'));
    s.serve(paths.vcek, { body: turinVcek.cert }).serve(paths.chain, { body: turinChainPem }).serve(paths.crl, { body: turinCrl });
    const store = new MemoryCollateralStore();
    const kept = { vcek: turinVcek.cert, chain: new TextEncoder().encode(turinChainPem), crl: revoking };
    for (const [k, body] of Object.entries(kept)) await store.put({ url: s.url + paths[k as keyof typeof paths], body, headers: {}, fetchedAt: AT_TURIN, expiresAt: new Date(AT_TURIN.getTime() + HOUR) });
    const source = new CollateralSource({ kdsUrl: s.url, store });
    const snp = (i: VerifyInput) => verifySevSnp(i);
    const extra = { roots: [turin.ark.cert] };
    const run = await cliLikeRun(source, turinReport, {}, AT_TURIN, snp, extra);
    expect([run.first.ok, run.first.steps.find((x) => !x.ok)?.name, collateralRefused('sev-snp', run.first)]).toEqual([false, 'revocation', true]);
    expect(s.requests).toHaveLength(3); // the kept copies were fetched again
    expect([run.r.ok, run.f === run.firstFetched]).toEqual([false, true]);
    expect((await store.get(s.url + paths.crl, AT_TURIN))!.body).toEqual(revoking);
    // A CRL newer than the kept one (the revocation lifted, say) is used and, accepted, kept.
    const newer = await createCrl(turin.ark, [], new Date('2025-05-20T00:00:00Z'), new Date('2025-07-01T00:00:00Z'));
    s.serve(paths.crl, { body: newer });
    const later = await cliLikeRun(source, turinReport, {}, AT_TURIN, snp, extra);
    expect([later.first.ok, later.r.ok, later.f.items.find((i) => i.kind === 'crl')?.from]).toEqual([false, true, 'network']);
    expect((await store.get(s.url + paths.crl, AT_TURIN))!.body).toEqual(newer);
  });

  it('C4: refresh() is undefined when nothing came from the store, and a fresh copy that is not even collateral keeps the kept one', async () => {
    servePcs2023(s);
    const store = new MemoryCollateralStore();
    const source = new CollateralSource({ pcsUrl: s.url, store });
    const cold = await source.fetchFor(TDX_QUOTE_4(), { now: AT_2023 });
    expect(await cold.refresh()).toBeUndefined();
    await cold.commit();
    s.serve(PCS_PATHS.rootCaCrl, { body: '<html>log in</html>', headers: { 'content-type': 'text/html' } });
    const warm = await source.fetchFor(TDX_QUOTE_4(), { now: AT_2023 });
    expect(await warm.refresh()).toBeUndefined();
    expect((await store.get(tdxUrls(s.url)[3]!, AT_2023))!.body).toEqual(intel2023().rootCaCrl);
  });

  const notCollateral: { name: string; path: string; route: Parameters<VendorServiceStandIn['serve']>[1] }[] = [
    { name: 'a captive-portal HTML page for the root CA CRL', path: PCS_PATHS.rootCaCrl, route: { body: '<html>Please log in to the Wi-Fi</html>', headers: { 'content-type': 'text/html' } } },
    { name: 'a real CRL sent as text/html', path: PCS_PATHS.rootCaCrl, route: { body: intel2023().rootCaCrl, headers: { 'content-type': 'Text/HTML; charset=utf-8' } } },
    { name: 'a PCK CRL that is neither DER, PEM nor hex', path: PCS_PATHS.pckCrl('platform'), route: { body: 'Service temporarily degraded', headers: { 'SGX-PCK-CRL-Issuer-Chain': encodeChainHeader(intel2023().crlChain) } } },
    { name: 'a TCB Info that is not the signed JSON', path: PCS_PATHS.tcbInfo('50806F000000'), route: { body: '{"error":"maintenance"}', headers: { 'content-type': 'application/json', 'TCB-Info-Issuer-Chain': encodeChainHeader(intel2023().tcbChain) } } },
    { name: 'a QE Identity that is not JSON at all', path: PCS_PATHS.qeIdentity, route: { body: 'OK', headers: { 'SGX-Enclave-Identity-Issuer-Chain': encodeChainHeader(intel2023().qeChain) } } },
  ];
  for (const c of notCollateral) {
    it(`C2: ${c.name} is an unusable answer (ERR_COLLATERAL_RESPONSE, content), not collateral the verifier refuses`, async () => {
      servePcs2023(s);
      s.serve(c.path, c.route);
      const e = (await new CollateralSource({ pcsUrl: s.url }).fetchFor(TDX_QUOTE_4(), { now: AT_2023 }).catch((x: unknown) => x)) as CustodyError;
      expect([e.code, e.detail?.reason]).toEqual(['ERR_COLLATERAL_RESPONSE', 'content']);
    });
  }

  it('C2: SEV-SNP, a VCEK or cert_chain that is no certificate is an unusable answer; a CRL that parses but does not verify is still the verifier\'s', async () => {
    const paths = { vcek: '/vcek/v1/Turin/0102030405060708?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=74', chain: '/vcek/v1/Turin/cert_chain', crl: '/vcek/v1/Turin/crl' };
    const source = new CollateralSource({ kdsUrl: s.url });
    const codeFor = async () => ((await source.fetchFor(turinReport, { now: AT_TURIN }).catch((x: unknown) => x)) as CustodyError).code;
    s.serve(paths.vcek, { body: 'not found, try again' }).serve(paths.chain, { body: turinChainPem }).serve(paths.crl, { body: turinCrl });
    expect(await codeFor()).toBe('ERR_COLLATERAL_RESPONSE');
    s.serve(paths.vcek, { body: turinVcek.cert }).serve(paths.chain, { body: '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n' });
    expect(await codeFor()).toBe('ERR_COLLATERAL_RESPONSE');
    const tampered = Uint8Array.from(turinCrl, (b, i) => (i === turinCrl.length - 3 ? b ^ 1 : b));
    s.serve(paths.chain, { body: turinChainPem }).serve(paths.crl, { body: tampered });
    const f = await source.fetchFor(turinReport, { now: AT_TURIN });
    const r = await verifySevSnp({ evidence: turinReport, now: AT_TURIN, roots: [turin.ark.cert], ...withFetchedCollateral({}, f) });
    expect(r.errors[0]!.code).toBe('ERR_CRL_INVALID');
  });
});

/** The byte just after `needle` changed to another digit (the JSON still parses). */
function flipDigitAfter(b: Uint8Array, needle: string): Bytes {
  const c = b.slice();
  const at = new TextDecoder().decode(b).indexOf(needle) + needle.length;
  c[at] = c[at] === 0x30 ? 0x31 : 0x30;
  return c;
}
