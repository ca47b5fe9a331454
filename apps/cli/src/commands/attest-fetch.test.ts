// `custody attest verify --fetch-collateral` end to end, against a loopback STAND-IN for Intel PCS
// and AMD KDS (a test double serving the real vendor bytes from shared/vectors; no internet here).
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { repoRoot, vectorPath } from '../../../../test/vectors.js';
import { DiskCollateralStore } from '@custody/attester-service';
import { PCS_PATHS, VendorServiceStandIn, encodeChainHeader, handGiven2023, intel2023, servePcs2023 } from '../../../../packages/attest/src/collateral/testing/vendor-stand-in.js';
import { parseCollateralMaxAge } from './attest.js';
import { amdExtensions, buildReport, createCrl, createKeyCertificate, createProductPki, signReport, tcbBytes } from '../../../../packages/attest/src/sev-snp/testing/synthetic.js';

/** Runs the real `custody` program (from source) without blocking this process, which serves the stand-in. */
function custody(...args: string[]): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--conditions=source', '--import', 'tsx', 'apps/cli/src/main.ts', ...args], { cwd: repoRoot });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
}

const AT = '2023-07-01T01:00:00Z';
const QUOTE_4 = vectorPath('attestation/tdx/trustee/tdx_quote_4.dat');
const SPR_E4 = vectorPath('attestation/tdx/go-tdx-guest/tdx_prod_quote_SPR_E4.dat');
const json = (r: { stdout: string }) => JSON.parse(r.stdout) as { ok: boolean; errors: { code: string; message?: string }[]; steps: unknown[]; claims: unknown; fetchedCollateral?: { kind: string; from: string }[] };

let dir: string;
let s: VendorServiceStandIn;

function handDir(name: string, over: Parameters<typeof handGiven2023>[0] = {}): string {
  const d = join(dir, name);
  mkdirSync(d);
  for (const [k, v] of Object.entries(handGiven2023(over))) writeFileSync(join(d, k), v);
  return d;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'custody-fetch-cli-'));
  s = await VendorServiceStandIn.start();
});
afterAll(async () => {
  await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('custody attest verify --fetch-collateral (TDX, Intel PCS stand-in)', () => {
  it('verifies exactly as with hand-given files, then again from the cache with the stand-in stopped', async () => {
    const own = await VendorServiceStandIn.start();
    servePcs2023(own);
    const cache = join(dir, 'cache');
    const [fetched, hand] = await Promise.all([
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', cache, '--at', AT, '--json'),
      custody('attest', 'verify', QUOTE_4, '--collateral', handDir('quote4'), '--at', AT, '--json'),
    ]);
    expect([fetched.status, hand.status]).toEqual([0, 0]);
    const f = json(fetched);
    const h = json(hand);
    expect(f.fetchedCollateral!.map((i) => [i.kind, i.from])).toEqual([['tcbInfo', 'network'], ['qeIdentity', 'network'], ['pckCrl', 'network'], ['rootCaCrl', 'network']]);
    delete f.fetchedCollateral;
    expect(f).toEqual(h);
    expect(readdirSync(cache)).toHaveLength(4);
    expect(own.requests).toHaveLength(4);

    await own.stop(); // nothing listens on own.url any more: a second run must not need it
    const again = await custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', cache, '--at', AT);
    expect(again.status).toBe(0);
    expect(again.stdout).toContain('result: VERIFIED');
    expect(again.stdout.match(/from cache/g)).toHaveLength(4);
    const unreachable = await custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--at', AT, '--json');
    expect(unreachable.status).toBe(3);
    expect(json(unreachable).errors[0]!.code).toBe('ERR_COLLATERAL_UNAVAILABLE');
  });

  it('SPR E4 fails with the same ERR_TCB_NO_MATCH (exit 1) both ways; a tampered TCB Info fails with the same code as the hand-given one', async () => {
    servePcs2023(s);
    const [fetched, hand] = await Promise.all([
      custody('attest', 'verify', SPR_E4, '--fetch-collateral', '--pcs-url', s.url, '--at', AT, '--json'),
      custody('attest', 'verify', SPR_E4, '--collateral', handDir('e4'), '--at', AT, '--json'),
    ]);
    expect([fetched.status, hand.status]).toEqual([1, 1]);
    expect([json(fetched).errors[0]!.code, json(hand).errors[0]!.code]).toEqual(['ERR_TCB_NO_MATCH', 'ERR_TCB_NO_MATCH']);

    const tampered = intel2023().tcbInfo.slice();
    tampered[40] = tampered[40]! ^ 0x01;
    servePcs2023(s, { tcbInfo: tampered });
    const cache = join(dir, 'cache-tampered');
    const [tf, th] = await Promise.all([
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', s.url, '--collateral-cache', cache, '--at', AT, '--json'),
      custody('attest', 'verify', QUOTE_4, '--collateral', handDir('tampered', { tcbInfo: tampered }), '--at', AT, '--json'),
    ]);
    expect([tf.status, th.status]).toEqual([1, 1]);
    expect(json(tf).errors[0]!.code).toBe(json(th).errors[0]!.code);
    expect(json(tf).errors[0]!.code).toBe('ERR_COLLATERAL_INVALID');
    expect(readdirSync(cache)).toEqual([]); // nothing the verifier refused is kept (the directory is made 0700 up front)
  });

  it('exit 3 for a 500 and a 404 from the service; exit 2 for bad usage', async () => {
    servePcs2023(s);
    s.serve('/tdx/certification/v4/qe/identity', { status: 500 });
    const r500 = await custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', s.url, '--at', AT, '--json');
    expect([r500.status, json(r500).errors[0]!.code]).toEqual([3, 'ERR_COLLATERAL_UNAVAILABLE']);
    s.routes.delete('/tdx/certification/v4/qe/identity');
    const r404 = await custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', s.url, '--at', AT, '--json');
    expect([r404.status, json(r404).errors[0]!.code]).toEqual([3, 'ERR_COLLATERAL_NOT_FOUND']);
    const usage = await Promise.all([
      custody('attest', 'verify', QUOTE_4, '--pcs-url', s.url, '--json'),
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', 'ftp://x', '--json'),
      custody('attest', 'verify', vectorPath('attestation/sev-snp/trustee/test-vlek-report.bin'), '--fetch-collateral', '--kds-url', s.url, '--json'),
      // A v2 report does not name its product: the answer names the flag that gives it.
      custody('attest', 'verify', vectorPath('attestation/sev-snp/go-sev-guest/attestation.bin'), '--fetch-collateral', '--kds-url', s.url, '--json'),
    ]);
    expect(usage.map((u) => [u.status, json(u).errors[0]!.code])).toEqual([
      [2, 'ERR_USAGE'],
      [2, 'ERR_USAGE'],
      [2, 'ERR_SNP_VLEK_NOT_FETCHABLE'],
      [2, 'ERR_USAGE'],
    ]);
    expect(json(usage[3]).errors[0]!.message).toMatch(/does not name its product: give --snp-product Milan, Genoa or Turin$/);
  });
});

// Review of f5c4367: the cache directory, eviction of refused copies, hand-given parts, the maximum age.
describe('custody attest verify --fetch-collateral: the cache after review', () => {
  it('a --collateral-cache directory writable by others is refused: exit 2, ERR_COLLATERAL_CACHE_DIR, nothing fetched', async () => {
    const own = await VendorServiceStandIn.start();
    servePcs2023(own);
    const cache = join(dir, 'cache-shared');
    mkdirSync(cache);
    chmodSync(cache, 0o777);
    const [j, text] = await Promise.all([
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', cache, '--at', AT, '--json'),
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', cache, '--at', AT),
    ]);
    await own.stop();
    expect([j.status, json(j).errors[0]!.code]).toEqual([2, 'ERR_COLLATERAL_CACHE_DIR']);
    expect([text.status, text.stderr]).toEqual([2, expect.stringContaining('ERR_COLLATERAL_CACHE_DIR')]);
    expect(own.requests).toEqual([]);
  });

  it('a kept copy the verifier refuses is fetched again in the same run: the fresh one differs and verifies (exit 0) and replaces it', async () => {
    const own = await VendorServiceStandIn.start();
    servePcs2023(own);
    const cache = join(dir, 'cache-evict');
    const args = ['attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', cache, '--at', AT, '--json'];
    // A kept TCB Info that no longer verifies (one flipped byte in its signed body).
    const bad = intel2023().tcbInfo.slice();
    bad[40] = bad[40]! ^ 0x01;
    const store = await DiskCollateralStore.open(cache);
    await store.put({ url: `${own.url}${PCS_PATHS.tcbInfo('50806F000000')}`, body: bad, headers: { 'tcb-info-issuer-chain': encodeChainHeader(intel2023().tcbChain) }, fetchedAt: new Date(AT), expiresAt: new Date('2023-07-01T02:00:00Z') });
    const one = await custody(...args);
    expect([one.status, json(one).fetchedCollateral!.map((i) => i.from)]).toEqual([0, ['network', 'network', 'network', 'network']]);
    expect(own.count(PCS_PATHS.tcbInfo(''))).toBe(1); // served from the cache, refused, then fetched once
    await own.stop();
    const two = await custody(...args);
    expect([two.status, json(two).fetchedCollateral!.map((i) => i.from)]).toEqual([0, ['cache', 'cache', 'cache', 'cache']]);
  });

  it('an item of which only the issuer chain is given by hand is not kept; --collateral-max-age 0 keeps nothing; bad durations are usage errors', async () => {
    const own = await VendorServiceStandIn.start();
    servePcs2023(own, { tcbChain: intel2023().crlChain }); // the service's TCB Info header chain is wrong
    const hand = join(dir, 'chain-only');
    mkdirSync(hand);
    writeFileSync(join(hand, 'tcbInfoIssuerChain.pem'), intel2023().tcbChain);
    const cache = join(dir, 'cache-partial');
    const zero = join(dir, 'cache-zero');
    const [partial, none, bad, alone] = await Promise.all([
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral', hand, '--collateral-cache', cache, '--at', AT, '--json'),
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral', hand, '--collateral-cache', zero, '--collateral-max-age', '0', '--at', AT, '--json'),
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', zero, '--collateral-max-age', '24 hours', '--json'),
      custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-max-age', '1h', '--json'),
    ]);
    expect([partial.status, none.status]).toEqual([0, 0]);
    expect(readdirSync(cache)).toHaveLength(3); // QE Identity and the two CRLs, not the TCB Info
    expect(readdirSync(zero)).toHaveLength(0);
    expect([bad, alone].map((r) => [r.status, json(r).errors[0]!.code])).toEqual([
      [2, 'ERR_USAGE'],
      [2, 'ERR_USAGE'],
    ]);
    servePcs2023(own); // the service is fixed: the next run fetches the TCB Info and verifies
    const later = await custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', cache, '--at', AT, '--json');
    await own.stop();
    expect([later.status, json(later).fetchedCollateral!.map((i) => [i.kind, i.from])]).toEqual([0, [['tcbInfo', 'network'], ['qeIdentity', 'cache'], ['pckCrl', 'cache'], ['rootCaCrl', 'cache']]]);
  });

  it('parseCollateralMaxAge: a whole number and s, m, h or d, up to 366 days, or 0', () => {
    expect(['0', '0s', '90s', '30m', '24h', '7d', '366d'].map(parseCollateralMaxAge)).toEqual([0, 0, 90_000, 1_800_000, 86_400_000, 7 * 86_400_000, 366 * 86_400_000]);
    for (const bad of ['', '5', '-1h', '1.5h', '1w', '367d', 'forever', '1h30m']) expect(() => parseCollateralMaxAge(bad)).toThrow(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
  });
});

describe('custody attest verify --fetch-collateral (SEV-SNP, AMD KDS stand-in)', () => {
  it('fetches the VCEK, ASK/ARK and CRL of a Turin report (synthetic PKI given as --roots) and verifies, as with hand-given files', async () => {
    const pki = await createProductPki('Turin');
    const tcb = { fmc: 1, bootloader: 2, tee: 3, snp: 4, microcode: 0x4a };
    const hwid = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const vcek = await createKeyCertificate({ cn: 'SEV-VCEK', serial: 0, ca: false, issuer: pki.ask, extensions: amdExtensions({ productName: 'Turin-B0', tcb, hwid }) });
    const chipId = new Uint8Array(64);
    chipId.set(hwid);
    const report = await signReport(buildReport({ version: 5, reportedTcb: tcbBytes(tcb), cpuid: { family: 0x1a, model: 2, stepping: 1 }, chipId, policy: 0x30000n, launchMitVector: 0n, currentMitVector: 0n }), vcek.keys.privateKey);
    const crl = await createCrl(pki.ark, [], new Date('2025-05-01T00:00:00Z'), new Date('2025-07-01T00:00:00Z'));
    const toPem = (der: Uint8Array) => `-----BEGIN CERTIFICATE-----\n${Buffer.from(der).toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE-----\n`;
    s.serve('/vcek/v1/Turin/0102030405060708?fmcSPL=01&blSPL=02&teeSPL=03&snpSPL=04&ucodeSPL=74', { body: vcek.cert })
      .serve('/vcek/v1/Turin/cert_chain', { body: toPem(pki.ask.cert) + toPem(pki.ark.cert) })
      .serve('/vcek/v1/Turin/crl', { body: crl });
    const files = { report: join(dir, 'turin.bin'), roots: join(dir, 'turin-roots'), vcek: join(dir, 'turin-vcek.der'), chain: join(dir, 'turin-chain.pem'), col: join(dir, 'turin-col') };
    writeFileSync(files.report, report);
    mkdirSync(files.roots);
    writeFileSync(join(files.roots, 'ark.der'), pki.ark.cert);
    writeFileSync(files.vcek, vcek.cert);
    writeFileSync(files.chain, toPem(pki.ask.cert) + toPem(pki.ark.cert));
    mkdirSync(files.col);
    writeFileSync(join(files.col, 'crl.der'), crl);
    const at = '2025-06-01T00:00:00Z';
    const [fetched, hand] = await Promise.all([
      custody('attest', 'verify', files.report, '--fetch-collateral', '--kds-url', s.url, '--roots', files.roots, '--at', at, '--json'),
      custody('attest', 'verify', files.report, '--certs', files.vcek, files.chain, '--collateral', files.col, '--roots', files.roots, '--at', at, '--json'),
    ]);
    expect([fetched.status, hand.status]).toEqual([0, 0]);
    const f = json(fetched);
    expect(f.fetchedCollateral!.map((i) => i.kind)).toEqual(['vcek', 'certChain', 'crl']);
    delete f.fetchedCollateral;
    expect(f).toEqual(json(hand));
  });
});

// Review br3 of f4f51bd: evidence anyone can send must not empty the cache (C4); a 200 that is not collateral is "unavailable" (C2).
describe('custody attest verify --fetch-collateral: refusals and unusable answers (review br3)', () => {
  it('C4: a quote with a flipped byte in its own PCK certificate fails (exit 1) but leaves the cache: offline, a good quote then verifies (exit 0)', async () => {
    const own = await VendorServiceStandIn.start();
    servePcs2023(own);
    const cache = join(dir, 'cache-br3-c4');
    const args = (file: string) => ['attest', 'verify', file, '--fetch-collateral', '--pcs-url', own.url, '--collateral-cache', cache, '--at', AT, '--json'];
    expect((await custody(...args(QUOTE_4))).status).toBe(0);
    const entries = readdirSync(cache).sort();
    const q = readFileSync(QUOTE_4);
    const end = q.indexOf('-----END CERTIFICATE-----');
    let i = end - 20;
    while (!/[A-Za-z]/.test(String.fromCharCode(q[i]!))) i--;
    q[i] = q[i] === 0x41 ? 0x42 : 0x41;
    const bad = join(dir, 'br3-broken-pck.dat');
    writeFileSync(bad, q);
    const crafted = await custody(...args(bad));
    expect([crafted.status, json(crafted).errors[0]!.code]).toEqual([1, 'ERR_CERT_SIGNATURE']);
    expect(readdirSync(cache).sort()).toEqual(entries);
    await own.stop();
    const offlineBad = await custody(...args(bad));
    expect(offlineBad.status).toBe(1);
    const good = await custody(...args(QUOTE_4));
    expect([good.status, json(good).fetchedCollateral!.map((x) => x.from)]).toEqual([0, ['cache', 'cache', 'cache', 'cache']]);
  });

  it('C2: a captive-portal HTML page (200) for the root CA CRL is "unavailable" (exit 3, ERR_COLLATERAL_RESPONSE), not "not verified"', async () => {
    const own = await VendorServiceStandIn.start();
    servePcs2023(own);
    own.serve(PCS_PATHS.rootCaCrl, { body: '<html>Please log in to the Wi-Fi</html>', headers: { 'content-type': 'text/html' } });
    const r = await custody('attest', 'verify', QUOTE_4, '--fetch-collateral', '--pcs-url', own.url, '--at', AT, '--json');
    await own.stop();
    expect([r.status, json(r).errors[0]!.code]).toEqual([3, 'ERR_COLLATERAL_RESPONSE']);
  });
});
