import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, chownSync, closeSync, constants, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CollateralSource, TdxVerifier, withFetchedCollateral, type CollateralSourceOptions } from '@custody/attest';
import { readVector } from '../../../test/vectors.js';
import { DiskCollateralStore } from './collateral-cache.js';

const G = 'attestation/tdx/go-tdx-guest/';
const AT = new Date('2023-07-01T01:00:00Z');
const DAY = 86_400_000;
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

  async function run(fetch: (url: string) => Promise<Response>, now = AT, options: Partial<CollateralSourceOptions> = {}) {
    const source = new CollateralSource({ pcsUrl: 'https://pccs.test', fetch, store: new DiskCollateralStore(join(dir, 'cache')), ...options });
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
    await run(pcs.fetch, AT, { maxAgeMs: 30 * DAY });
    pcs.calls.length = 0;
    const store = new DiskCollateralStore(join(dir, 'cache'));
    const later = new Date('2023-07-10T00:00:00Z');
    expect(await store.get('https://pccs.test/sgx/certification/v4/pckcrl?ca=platform&encoding=der', later)).toBeUndefined();
    expect((await store.get('https://pccs.test/tdx/certification/v4/tcb?fmspc=50806F000000', later))?.headers['tcb-info-issuer-chain']).toBe(chain('tcbinfo_issuer_chain.pem'));
    const f = await new CollateralSource({ pcsUrl: 'https://pccs.test', fetch: pcs.fetch, store, maxAgeMs: 30 * DAY }).fetchFor(QUOTE(), { now: later });
    expect(Object.fromEntries(f.items.map((i) => [i.kind, i.from]))).toEqual({ tcbInfo: 'cache', qeIdentity: 'network', pckCrl: 'network', rootCaCrl: 'cache' });
  });

  const damage: [string, (text: string) => string][] = [
    ['garbage', () => 'not json'],
    ['truncated', (t) => t.slice(0, t.length / 2)],
    ['a body that fails its digest', (t) => t.replace(/"body":"(.)/, (_m, c: string) => `"body":"${c === 'A' ? 'B' : 'A'}`)],
    ['an entry for another URL', (t) => t.replace(/"url":"[^"]*"/, '"url":"https://elsewhere.test/x"')],
    ['an unknown format', (t) => t.replace(/custody-collateral-v\d+/, 'v0')],
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

// Review of f5c4367 (C-A): the cache trusted any file in its directory.
describe('DiskCollateralStore: the directory and each entry are checked before anything is read', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'custody-collateral-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const TCB_URL = 'https://pccs.test/tdx/certification/v4/tcb?fmspc=50806F000000';
  const QE_URL = 'https://pccs.test/tdx/certification/v4/qe/identity';
  const entryPath = (cache: string, url: string) => join(cache, `${createHash('sha256').update(url).digest('hex')}.json`);
  const source = (cache: string, fetch: (url: string) => Promise<Response>, timeoutMs = 10_000) => new CollateralSource({ pcsUrl: 'https://pccs.test', fetch, store: new DiskCollateralStore(cache), timeoutMs });
  const codeOf = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code);

  /** Settles within 3 s or reports that it is still blocked (the old store read a FIFO with no deadline). */
  const within3s = <T,>(p: Promise<T>) =>
    Promise.race([p.then(() => 'finished', (e: { code?: string }) => `failed ${e.code}`), new Promise<string>((r) => setTimeout(() => r('still blocked after 3 s'), 3000))]);
  /** Lets a read still blocked on the FIFO (without the fix) finish, so the worker can exit. */
  const unblock = (fifo: string) => {
    try {
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
    } catch {
      // no reader left
    }
  };

  it('open() creates a missing directory 0700; get() on a missing one is a miss and creates nothing', async () => {
    const cache = join(dir, 'a', 'b');
    expect(await new DiskCollateralStore(cache).get(TCB_URL, AT)).toBeUndefined();
    expect(existsSync(cache)).toBe(false);
    await DiskCollateralStore.open(cache);
    expect(statSync(cache).mode & 0o777).toBe(0o700);
  });

  it('a directory writable by group or others is refused with ERR_COLLATERAL_CACHE_DIR, and a FIFO in it is never opened', async () => {
    const cache = join(dir, 'shared');
    mkdirSync(cache);
    chmodSync(cache, 0o777);
    const fifo = entryPath(cache, TCB_URL);
    execFileSync('mkfifo', [fifo]);
    const outcome = await within3s(source(cache, pcsStandIn().fetch, 500).fetchFor(QUOTE(), { now: AT }));
    unblock(fifo);
    expect(outcome).toBe('failed ERR_COLLATERAL_CACHE_DIR');
    expect(await codeOf(DiskCollateralStore.open(cache))).toBe('ERR_COLLATERAL_CACHE_DIR');
    chmodSync(cache, 0o720);
    expect(await codeOf(DiskCollateralStore.open(cache))).toBe('ERR_COLLATERAL_CACHE_DIR');
    chmodSync(cache, 0o755);
    expect(await codeOf(DiskCollateralStore.open(cache))).toBe('ok');
  });

  it('a path that is not a directory is refused', async () => {
    writeFileSync(join(dir, 'file'), 'x');
    expect(await codeOf(DiskCollateralStore.open(join(dir, 'file')))).toBe('ERR_COLLATERAL_CACHE_DIR');
    expect(await codeOf(new DiskCollateralStore(join(dir, 'file')).get(TCB_URL, AT))).toBe('ERR_COLLATERAL_CACHE_DIR');
  });

  it.runIf(process.getuid?.() === 0)('a directory owned by another user is refused (run as root: chown)', async () => {
    const cache = join(dir, 'theirs');
    mkdirSync(cache, { mode: 0o700 });
    chownSync(cache, 65534, 65534);
    expect(await codeOf(DiskCollateralStore.open(cache))).toBe('ERR_COLLATERAL_CACHE_DIR');
    expect(await codeOf(new DiskCollateralStore(cache).put({ url: TCB_URL, body: new Uint8Array(1), headers: {}, fetchedAt: AT, expiresAt: AT }))).toBe('ERR_COLLATERAL_CACHE_DIR');
  });

  it('a FIFO at an entry path in a proper directory is dropped at once and the item fetched (no wait past the timeout)', async () => {
    const cache = join(dir, 'cache');
    await DiskCollateralStore.open(cache);
    const fifo = entryPath(cache, TCB_URL);
    execFileSync('mkfifo', [fifo]);
    const pcs = pcsStandIn();
    const outcome = await within3s(source(cache, pcs.fetch, 500).fetchFor(QUOTE(), { now: AT }));
    unblock(fifo);
    expect(outcome).toBe('finished');
    expect(pcs.calls).toContain('/tdx/certification/v4/tcb?fmspc=50806F000000');
    expect(existsSync(fifo)).toBe(false);
  });

  it('a symbolic link at an entry path is not followed, even to a well-formed entry', async () => {
    const pcs = pcsStandIn();
    const cache = join(dir, 'cache');
    const f = await source(cache, pcs.fetch).fetchFor(QUOTE(), { now: AT });
    await f.commit();
    const elsewhere = join(dir, 'elsewhere.json');
    copyFileSync(entryPath(cache, TCB_URL), elsewhere);
    rmSync(entryPath(cache, TCB_URL));
    symlinkSync(elsewhere, entryPath(cache, TCB_URL));
    pcs.calls.length = 0;
    const again = await source(cache, pcs.fetch).fetchFor(QUOTE(), { now: AT });
    expect(again.items.find((i) => i.kind === 'tcbInfo')!.from).toBe('network');
    expect(pcs.calls).toEqual(['/tdx/certification/v4/tcb?fmspc=50806F000000']);
  });

  it.runIf(process.getuid?.() === 0)('an entry owned by another user, or writable by others, is dropped and fetched again', async () => {
    const pcs = pcsStandIn();
    const cache = join(dir, 'cache');
    await (await source(cache, pcs.fetch).fetchFor(QUOTE(), { now: AT })).commit();
    chownSync(entryPath(cache, TCB_URL), 65534, 65534);
    chmodSync(entryPath(cache, QE_URL), 0o666);
    pcs.calls.length = 0;
    const again = await source(cache, pcs.fetch).fetchFor(QUOTE(), { now: AT });
    expect(Object.fromEntries(again.items.map((i) => [i.kind, i.from]))).toEqual({ tcbInfo: 'network', qeIdentity: 'network', pckCrl: 'cache', rootCaCrl: 'cache' });
    expect(existsSync(entryPath(cache, TCB_URL))).toBe(false);
  });

  it('a planted entry with a 9999 expiry is served no longer than its own body allows (no nextUpdate: not at all)', async () => {
    const cache = join(dir, 'cache');
    const store = await DiskCollateralStore.open(cache);
    const far = new Date('9999-01-01T00:00:00Z');
    const qeChain = encodeURIComponent(new TextDecoder().decode(readVector(G + 'qeidentity_issuer_chain.pem')));
    await store.put({ url: QE_URL, body: new TextEncoder().encode('{"enclaveIdentity":{},"signature":"00"}'), headers: { 'sgx-enclave-identity-issuer-chain': qeChain }, fetchedAt: AT, expiresAt: far });
    const pcs = pcsStandIn();
    const f = await source(cache, pcs.fetch).fetchFor(QUOTE(), { now: AT });
    expect(f.items.find((i) => i.kind === 'qeIdentity')!.from).toBe('network');
    expect(pcs.calls).toContain('/tdx/certification/v4/qe/identity');
    // The real QE Identity kept with a 9999 expiry: served until its own nextUpdate (2023-07-08T07:24:59Z), then fetched.
    await store.put({ url: QE_URL, body: readVector(G + 'sample_qeIdentity_response'), headers: { 'sgx-enclave-identity-issuer-chain': qeChain }, fetchedAt: new Date('2023-07-08T00:00:00Z'), expiresAt: far });
    const at = (t: string) => source(cache, pcs.fetch).fetchFor(QUOTE(), { now: new Date(t) }).then((x) => x.items.find((i) => i.kind === 'qeIdentity')!.from);
    expect([await at('2023-07-08T07:00:00Z'), await at('2023-07-08T08:00:00Z')]).toEqual(['cache', 'network']);
  });
});
