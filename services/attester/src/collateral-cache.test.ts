import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CollateralSource, TdxVerifier, withFetchedCollateral } from '@custody/attest';
import { readVector } from '../../../test/vectors.js';
import { DiskCollateralStore } from './collateral-cache.js';

const G = 'attestation/tdx/go-tdx-guest/';
const AT = new Date('2023-07-01T01:00:00Z');
const QUOTE = () => readVector('attestation/tdx/trustee/tdx_quote_4.dat');
const chain = (f: string) => encodeURIComponent(new TextDecoder().decode(readVector(G + f)));

/** An injected fetch standing in for Intel PCS (the vendor service is not reachable from tests): real 2023 Intel bytes. */
function pcsStandIn(): { fetch: (url: string) => Promise<Response>; calls: string[] } {
  const calls: string[] = [];
  const routes: Record<string, () => Response> = {
    '/tdx/certification/v4/tcb?fmspc=50806F000000': () => new Response(readVector(G + 'sample_tcbInfo_response'), { headers: { 'TCB-Info-Issuer-Chain': chain('tcbinfo_issuer_chain.pem') } }),
    '/tdx/certification/v4/qe/identity': () => new Response(readVector(G + 'sample_qeIdentity_response'), { headers: { 'SGX-Enclave-Identity-Issuer-Chain': chain('qeidentity_issuer_chain.pem') } }),
    '/sgx/certification/v4/pckcrl?ca=platform&encoding=der': () => new Response(readVector(G + 'pckcrl'), { headers: { 'SGX-PCK-CRL-Issuer-Chain': chain('pckcrl_issuer_chain.pem') } }),
    '/sgx/certification/v4/rootcacrl': () => new Response(readVector(G + 'rootcrl.der')),
  };
  return {
    calls,
    fetch: (url: string) => {
      const u = new URL(url);
      calls.push(u.pathname + u.search);
      return Promise.resolve(routes[u.pathname + u.search]?.() ?? new Response(null, { status: 404 }));
    },
  };
}

describe('DiskCollateralStore', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'custody-collateral-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  async function run(fetch: (url: string) => Promise<Response>, now = AT) {
    const source = new CollateralSource({ pcsUrl: 'https://pccs.test', fetch, store: new DiskCollateralStore(join(dir, 'cache')) });
    const f = await source.fetchFor(QUOTE(), { now });
    const r = await new TdxVerifier().verify({ evidence: QUOTE(), now, ...withFetchedCollateral({}, f) });
    expect(r.ok).toBe(true);
    await f.commit();
    return f;
  }

  it('keeps entries atomically, one file per URL, and serves a second run with no network at all', async () => {
    const pcs = pcsStandIn();
    expect((await run(pcs.fetch)).items.map((i) => i.from)).toEqual(['network', 'network', 'network', 'network']);
    const files = readdirSync(join(dir, 'cache'));
    expect(files).toHaveLength(4);
    expect(files.every((f) => /^[0-9a-f]{64}\.json$/.test(f))).toBe(true); // no temporary files left
    const offline = () => Promise.reject(new TypeError('network is off'));
    expect((await run(offline)).items.map((i) => i.from)).toEqual(['cache', 'cache', 'cache', 'cache']);
  });

  it('refetches after nextUpdate (injected clock) and keeps the fresh copy', async () => {
    const pcs = pcsStandIn();
    await run(pcs.fetch);
    pcs.calls.length = 0;
    const store = new DiskCollateralStore(join(dir, 'cache'));
    const later = new Date('2023-07-10T00:00:00Z');
    expect(await store.get('https://pccs.test/sgx/certification/v4/pckcrl?ca=platform&encoding=der', later)).toBeUndefined();
    expect((await store.get('https://pccs.test/tdx/certification/v4/tcb?fmspc=50806F000000', later))?.headers['tcb-info-issuer-chain']).toBe(chain('tcbinfo_issuer_chain.pem'));
    const f = await new CollateralSource({ pcsUrl: 'https://pccs.test', fetch: pcs.fetch, store }).fetchFor(QUOTE(), { now: later });
    expect(Object.fromEntries(f.items.map((i) => [i.kind, i.from]))).toEqual({ tcbInfo: 'cache', qeIdentity: 'network', pckCrl: 'network', rootCaCrl: 'cache' });
  });

  const damage: [string, (text: string) => string][] = [
    ['garbage', () => 'not json'],
    ['truncated', (t) => t.slice(0, t.length / 2)],
    ['a body that fails its digest', (t) => t.replace(/"body":"(.)/, (_m, c: string) => `"body":"${c === 'A' ? 'B' : 'A'}`)],
    ['an entry for another URL', (t) => t.replace(/"url":"[^"]*"/, '"url":"https://elsewhere.test/x"')],
    ['an unknown format', (t) => t.replace('custody-collateral-v1', 'v0')],
    ['headers that are not strings', (t) => t.replace(/"headers":\{[^}]*\}/, '"headers":{"x":1}')],
  ];
  for (const [name, spoil] of damage) {
    it(`a damaged entry (${name}) is deleted and fetched again`, async () => {
      const pcs = pcsStandIn();
      await run(pcs.fetch);
      const cache = join(dir, 'cache');
      const victim = readdirSync(cache).map((f) => join(cache, f)).find((f) => readFileSync(f, 'utf8').includes('"url":"https://pccs.test/tdx/certification/v4/tcb'))!;
      writeFileSync(victim, spoil(readFileSync(victim, 'utf8')));
      pcs.calls.length = 0;
      const f = await run(pcs.fetch);
      expect(pcs.calls).toEqual(['/tdx/certification/v4/tcb?fmspc=50806F000000']);
      expect(f.items.find((i) => i.kind === 'tcbInfo')!.from).toBe('network');
    });
  }

  it('a missing directory is an empty cache', async () => {
    expect(await new DiskCollateralStore(join(dir, 'nope')).get('https://x.test/a', AT)).toBeUndefined();
  });
});
