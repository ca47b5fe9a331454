import { beforeAll, describe, expect, it } from 'vitest';
import { toPem, utf8 } from '@custody/core';
import { readVector, readVectorText } from '../../../../test/vectors.js';
import type { VerificationResult } from '../types.js';
import { TdxVerifier } from './verifier.js';
import { bodyOf, createPrivatePcs, type PrivatePcs } from './testing/private-pcs.js';
import { AT_2023, AT_2025, G, INTEL_ROOT_PEM, T, collateral2023, quoteBytes } from './testing/sets.js';

/**
 * TCB outcomes no published collateral shows, driven end to end: real quotes, real PCK chains to
 * the Intel root, and TCB Info / QE Identity bodies edited and re-signed by a private PCS whose
 * root is added with `roots`.
 */
let pcs: PrivatePcs;
let issuerChain: Uint8Array;
beforeAll(async () => {
  pcs = await createPrivatePcs();
  issuerChain = utf8(toPem('CERTIFICATE', pcs.signingCert) + toPem('CERTIFICATE', pcs.root));
});

type Edit = (body: Record<string, unknown>) => void;

async function verifyEdited(quote: string, at: Date, tcbEdit: Edit | undefined, qeEdit: Edit | undefined, base: { tcbInfo: string; qeIdentity: string }, requireCrls = true): Promise<VerificationResult> {
  const edit = (text: string, key: 'tcbInfo' | 'enclaveIdentity', fn: Edit | undefined): Promise<string> => {
    const body = JSON.parse(bodyOf(text, key)) as Record<string, unknown>;
    fn?.(body);
    return pcs.sign(key, JSON.stringify(body));
  };
  const collateral = {
    ...(requireCrls ? collateral2023() : {}),
    tcbInfo: utf8(await edit(base.tcbInfo, 'tcbInfo', tcbEdit)),
    qeIdentity: utf8(await edit(base.qeIdentity, 'enclaveIdentity', qeEdit)),
    tcbInfoIssuerChain: issuerChain,
    qeIdentityIssuerChain: issuerChain,
  };
  return new TdxVerifier({ requireCrls }).verify({ evidence: quoteBytes(quote), collateral, roots: [INTEL_ROOT_PEM, pcs.root], now: at });
}

const base2023 = () => ({ tcbInfo: readVectorText(G + 'sample_tcbInfo_response'), qeIdentity: readVectorText(G + 'sample_qeIdentity_response') });
const base2025 = () => ({ tcbInfo: readVectorText(T + 'tcbInfo.json'), qeIdentity: readVectorText(T + 'enclaveIdentity.json') });

type Level = { tcbStatus: string; advisoryIDs?: string[]; tcb: Record<string, unknown> };
const levels = (b: Record<string, unknown>): Level[] => b.tcbLevels as Level[];
const Q4 = T + 'tdx_quote_4.dat';
const Q6 = T + 'tdx_quote_6.dat';

const outcome = (r: VerificationResult) => ({ ok: r.ok, code: r.errors[0]?.code, step: r.errors[0]?.step, status: r.claims?.tcb?.status });

describe('TDX TCB outcomes through the verifier (collateral re-signed by a private PCS)', () => {
  it('unchanged bodies re-signed by the private PCS verify as before (UpToDate)', async () => {
    expect(outcome(await verifyEdited(Q4, AT_2023, undefined, undefined, base2023()))).toEqual({ ok: true, code: undefined, step: undefined, status: 'UpToDate' });
  });

  const cases: { name: string; quote?: string; base?: () => { tcbInfo: string; qeIdentity: string }; at?: Date; tcb?: Edit; qe?: Edit; crls?: boolean; expect: ReturnType<typeof outcome> }[] = [
    { name: 'matched TDX level Revoked -> ERR_TCB_REVOKED', tcb: (b) => (levels(b)[0]!.tcbStatus = 'Revoked'), expect: { ok: false, code: 'ERR_TCB_REVOKED', step: 'tcb', status: 'Revoked' } },
    {
      name: 'SWHardeningNeeded with an advisory passes with the status for the policy',
      tcb: (b) => Object.assign(levels(b)[0]!, { tcbStatus: 'SWHardeningNeeded', advisoryIDs: ['INTEL-SA-00615'] }),
      expect: { ok: true, code: undefined, step: undefined, status: 'SWHardeningNeeded' },
    },
    { name: 'ConfigurationNeeded level', tcb: (b) => (levels(b)[0]!.tcbStatus = 'ConfigurationNeeded'), expect: { ok: true, code: undefined, step: undefined, status: 'ConfigurationNeeded' } },
    {
      name: 'QE OutOfDate pulls an UpToDate platform to OutOfDate',
      qe: (b) => (levels(b)[0]!.tcbStatus = 'OutOfDate'),
      expect: { ok: true, code: undefined, step: undefined, status: 'OutOfDate' },
    },
    {
      name: 'QE OutOfDate with ConfigurationNeeded gives OutOfDateConfigurationNeeded',
      tcb: (b) => (levels(b)[0]!.tcbStatus = 'ConfigurationNeeded'),
      qe: (b) => (levels(b)[0]!.tcbStatus = 'OutOfDate'),
      expect: { ok: true, code: undefined, step: undefined, status: 'OutOfDateConfigurationNeeded' },
    },
    { name: 'QE Revoked -> ERR_TCB_REVOKED', qe: (b) => (levels(b)[0]!.tcbStatus = 'Revoked'), expect: { ok: false, code: 'ERR_TCB_REVOKED', step: 'tcb', status: 'Revoked' } },
    { name: 'QE MRSIGNER differs -> ERR_TDX_QE_IDENTITY', qe: (b) => (b.mrsigner = '00'.repeat(32)), expect: { ok: false, code: 'ERR_TDX_QE_IDENTITY', step: 'tcb', status: undefined } },
    { name: 'QE ISVPRODID differs -> ERR_TDX_QE_IDENTITY', qe: (b) => (b.isvprodid = 1), expect: { ok: false, code: 'ERR_TDX_QE_IDENTITY', step: 'tcb', status: undefined } },
    { name: 'QE ATTRIBUTES differ under the mask -> ERR_TDX_QE_IDENTITY', qe: (b) => (b.attributes = '13000000000000000000000000000000'), expect: { ok: false, code: 'ERR_TDX_QE_IDENTITY', step: 'tcb', status: undefined } },
    { name: 'QE ISVSVN below every QE level -> ERR_TCB_NO_MATCH', qe: (b) => (levels(b)[0]!.tcb = { isvsvn: 9 }), expect: { ok: false, code: 'ERR_TCB_NO_MATCH', step: 'tcb', status: undefined } },
    { name: 'QE Identity for SGX (id QE) -> ERR_COLLATERAL_MISMATCH', qe: (b) => (b.id = 'QE'), expect: { ok: false, code: 'ERR_COLLATERAL_MISMATCH', step: 'collateral', status: undefined } },
    { name: 'SGX TCB Info -> ERR_COLLATERAL_MISMATCH', tcb: (b) => (b.id = 'SGX'), expect: { ok: false, code: 'ERR_COLLATERAL_MISMATCH', step: 'collateral', status: undefined } },
    { name: 'TCB Info v2 -> ERR_COLLATERAL_MISMATCH', tcb: (b) => (b.version = 2), expect: { ok: false, code: 'ERR_COLLATERAL_MISMATCH', step: 'collateral', status: undefined } },
    { name: 'TCB Info for another PCEID -> ERR_COLLATERAL_MISMATCH', tcb: (b) => (b.pceId = '0001'), expect: { ok: false, code: 'ERR_COLLATERAL_MISMATCH', step: 'collateral', status: undefined } },
    { name: 'TDX module signer differs -> ERR_TDX_MODULE_MISMATCH', tcb: (b) => ((b.tdxModule as Record<string, string>).mrsigner = 'ff'.repeat(48)), expect: { ok: false, code: 'ERR_TDX_MODULE_MISMATCH', step: 'tcb', status: undefined } },
    {
      name: 'TDX module 3 quote, TCB Info without module identities -> ERR_TDX_MODULE_MISMATCH',
      quote: Q6,
      base: base2025,
      at: AT_2025,
      crls: false,
      tcb: (b) => delete b.tdxModuleIdentities,
      expect: { ok: false, code: 'ERR_TDX_MODULE_MISMATCH', step: 'tcb', status: undefined },
    },
    {
      name: 'TDX module identity OutOfDate pulls an UpToDate level to OutOfDate',
      quote: Q6,
      base: base2025,
      at: AT_2025,
      crls: false,
      tcb: (b) => {
        levels(b)[0]!.tcb.pcesvn = 11;
        const ids = b.tdxModuleIdentities as { id: string; tcbLevels: Level[] }[];
        ids.find((m) => m.id === 'TDX_03')!.tcbLevels[0]!.tcbStatus = 'OutOfDate';
      },
      expect: { ok: true, code: undefined, step: undefined, status: 'OutOfDate' },
    },
    {
      name: 'TDX module identity Revoked -> ERR_TCB_REVOKED',
      quote: Q6,
      base: base2025,
      at: AT_2025,
      crls: false,
      tcb: (b) => ((b.tdxModuleIdentities as { id: string; tcbLevels: Level[] }[]).find((m) => m.id === 'TDX_03')!.tcbLevels[0]!.tcbStatus = 'Revoked'),
      expect: { ok: false, code: 'ERR_TCB_REVOKED', step: 'tcb', status: 'Revoked' },
    },
    {
      name: 'quote 6 with PCESVN level lowered to 11: UpToDate',
      quote: Q6,
      base: base2025,
      at: AT_2025,
      crls: false,
      tcb: (b) => (levels(b)[0]!.tcb.pcesvn = 11),
      expect: { ok: true, code: undefined, step: undefined, status: 'UpToDate' },
    },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const r = await verifyEdited(c.quote ?? Q4, c.at ?? AT_2023, c.tcb, c.qe, (c.base ?? base2023)(), c.crls ?? true);
      expect(outcome(r)).toEqual(c.expect);
    });
  }

  it('advisory IDs and the oldest matched date are reported', async () => {
    const r = await verifyEdited(Q4, AT_2023, (b) => Object.assign(levels(b)[0]!, { tcbStatus: 'SWHardeningNeeded', advisoryIDs: ['INTEL-SA-00615', 'INTEL-SA-00657'] }), undefined, base2023());
    expect(r.claims!.tcb!.advisoryIds).toEqual(['INTEL-SA-00615', 'INTEL-SA-00657']);
    expect(r.claims!.tcb!.tcbDate).toBe('2023-02-15T00:00:00Z');
    expect(r.warnings.some((w) => w.includes('SWHardeningNeeded') && w.includes('INTEL-SA-00657'))).toBe(true);
  });

  it('the private root alone does not anchor the Intel PCK chain', async () => {
    const collateral = { ...collateral2023(), tcbInfoIssuerChain: issuerChain, qeIdentityIssuerChain: issuerChain };
    const r = await new TdxVerifier().verify({ evidence: quoteBytes(Q4), collateral, roots: [pcs.root], now: AT_2023 });
    expect(outcome(r)).toMatchObject({ ok: false, code: 'ERR_CERT_ROOT_UNTRUSTED', step: 'chain' });
  });

  it('Intel-signed collateral does not verify under the private signer', async () => {
    const collateral = { ...collateral2023(), tcbInfoIssuerChain: issuerChain, qeIdentityIssuerChain: issuerChain };
    const r = await new TdxVerifier().verify({ evidence: quoteBytes(Q4), collateral, roots: [readVector(G + 'trusted_root.pem'), pcs.root], now: AT_2023 });
    expect(outcome(r)).toMatchObject({ ok: false, code: 'ERR_COLLATERAL_INVALID', step: 'collateral' });
  });
});
