import type { Command } from 'commander';
import { CustodyError, fromHex, toCustodyError } from '@custody/core';
import { CollateralSource, collateralAccepted, collateralRefused, defaultRegistry, parseSevSnpProduct, SEV_SNP_PRODUCTS, withFetchedCollateral, type FetchedCollateral, type FetchedItem, type Platform, type TcbClaims, type VerificationResult } from '@custody/attest';
import { DiskCollateralStore } from '@custody/attester-service';
import { printableLine } from '@custody/sdk';
import { readInputFile, readNamedFiles, parseTime } from '../files.js';
import { failWith, mark, printJson } from '../output.js';
import { EXIT_BAD_INPUT, EXIT_NOT_VERIFIED, EXIT_OK } from '../exit.js';
import type { Register } from './index.js';
import { registerCollect } from './collect.js';

interface VerifyOptions {
  platform?: string;
  certs?: string[];
  collateral?: string;
  roots?: string;
  at?: string;
  nonce?: string;
  json?: boolean;
  fetchCollateral?: boolean;
  pcsUrl?: string;
  kdsUrl?: string;
  collateralCache?: string;
  collateralMaxAge?: string;
  snpProduct?: string;
}

/** A verification result, with where fetched collateral came from when --fetch-collateral was given. */
export type VerifyFromFilesResult = VerificationResult & { fetchedCollateral?: FetchedItem[] };

/** Attaches the `attest` command group; area modules add subcommands to the returned command. */
export function attestCommand(program: Command): Command {
  return program.commands.find((c) => c.name() === 'attest') ?? program.command('attest').description('verify and collect TEE attestation evidence');
}

export const register: Register = (program) => {
  const attest = attestCommand(program);
  registerCollect(attest);
  attest
    .command('verify')
    .description('verify TEE evidence (SEV-SNP, TDX, Nitro, TPM, Azure vTPM, NVIDIA GPU, sim) and print each step')
    .argument('<evidence-file>', 'evidence: raw report/quote, configfs-tsm JSON, COSE document, or a Custody evidence JSON')
    .option('--platform <platform>', `evidence format; detected when omitted (${defaultRegistry.platforms.join(', ')})`)
    .option('--certs <file...>', 'extra certificates, PEM or DER (e.g. VCEK, ASK/ARK); repeatable')
    .option('--collateral <file|dir>', 'collateral: a bundle JSON, or a directory of named files (TDX: tcbInfo, qeIdentity, pckCrl, rootCaCrl, ...)')
    .option('--roots <dir>', 'trust anchors (PEM/DER) replacing the pinned vendor roots')
    .option('--at <rfc3339>', 'verification time (default: now); with --collateral-cache, copies fetched in this run are dated at it')
    .option('--nonce <hex>', 'expected nonce / report data; fails unless the evidence carries it')
    .option('--json', 'print one JSON object')
    .option('--fetch-collateral', 'fetch missing vendor collateral (SEV-SNP: VCEK, ASK/ARK, CRL from AMD KDS; TDX: TCB Info, QE Identity, CRLs from Intel PCS); hand-given files win')
    .option('--pcs-url <url>', 'Intel PCS v4 or PCCS base URL for --fetch-collateral (default https://api.trustedservices.intel.com)')
    .option('--kds-url <url>', 'AMD KDS base URL for --fetch-collateral (default https://kdsintf.amd.com)')
    .option('--collateral-cache <dir>', 'keep accepted collateral here (a directory of yours, not group/other-writable; created 0700); a warm cache needs no network')
    .option('--collateral-max-age <duration>', 'reuse a cached item at most this long after it was fetched, and never past its nextUpdate (default 24h; e.g. 30m, 12h, 7d; 0 reuses nothing)')
    .option('--snp-product <name>', 'SEV-SNP product (Milan, Genoa, Turin) for reports that do not name it (v2)')
    .addHelpText(
      'after',
      `
Exit codes: 0 verified, 1 not verified, 2 bad input or usage (an unsafe --collateral-cache included), 3 collateral service unavailable.

Examples:
  custody attest verify samples/sev-snp/attestation.bin --certs samples/sev-snp/vcek.der --at 2023-06-01T00:00:00Z
  custody attest verify quote.dat --platform tdx --collateral collateral/ --json
  custody attest verify quote.dat --fetch-collateral --collateral-cache ~/.cache/custody/collateral`,
    )
    .action(async (file: string, opts: VerifyOptions) => {
      const json = opts.json ?? false;
      try {
        const result = await verifyFromFiles(file, opts);
        if (json) printJson(result);
        else printHuman(file, result);
        process.exitCode = result.ok ? EXIT_OK : EXIT_NOT_VERIFIED;
      } catch (e) {
        failVerify(e, json);
      }
    });
};

/** Like failWith, but a refused cache directory is bad input (exit 2): fix its owner or mode, or choose another. */
function failVerify(e: unknown, json: boolean): never {
  const err = toCustodyError(e);
  if (err.code !== 'ERR_COLLATERAL_CACHE_DIR') failWith(err, json);
  if (json) printJson({ ok: false, errors: [err.toJSON()] });
  else process.stderr.write(`custody: ${err.code}: ${printableLine(err.message)}\n`);
  process.exit(EXIT_BAD_INPUT);
}

const DURATION_UNITS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_COLLATERAL_AGE_MS = 366 * 86_400_000;

/** `--collateral-max-age`: a whole number and a unit (s, m, h, d), at most a year; `0` alone too. */
export function parseCollateralMaxAge(value: string): number {
  const m = /^(\d{1,6})([smhd])?$/.exec(value.trim());
  const ms = m && (m[2] ? Number(m[1]) * DURATION_UNITS[m[2]]! : Number(m[1]) === 0 ? 0 : undefined);
  if (ms === null || ms === undefined || ms > MAX_COLLATERAL_AGE_MS) {
    throw new CustodyError('ERR_USAGE', `--collateral-max-age must be a duration such as 30m, 24h or 7d (at most 366d), or 0; got ${JSON.stringify(value.slice(0, 32))}`);
  }
  return ms;
}

export async function verifyFromFiles(file: string, opts: VerifyOptions): Promise<VerifyFromFilesResult> {
  const evidence = readInputFile(file, 'evidence');
  const certs = (opts.certs ?? []).map((c) => readInputFile(c, 'certificate file'));
  const collateral = opts.collateral ? readNamedFiles(opts.collateral, 'collateral') : undefined;
  const roots = opts.roots ? Object.values(readNamedFiles(opts.roots, 'roots')) : undefined;
  const now = parseTime(opts.at) ?? new Date();
  let nonce: Uint8Array | undefined;
  if (opts.nonce !== undefined) {
    try {
      nonce = fromHex(opts.nonce);
    } catch {
      throw new CustodyError('ERR_USAGE', '--nonce must be hex');
    }
  }
  const base = { evidence, now, ...(opts.platform && { platform: opts.platform }), ...(roots && { roots }), ...(nonce && { nonce }) };
  if (!opts.fetchCollateral) {
    if (opts.pcsUrl || opts.kdsUrl || opts.collateralCache || opts.collateralMaxAge || opts.snpProduct) {
      throw new CustodyError('ERR_USAGE', '--pcs-url, --kds-url, --collateral-cache, --collateral-max-age and --snp-product go with --fetch-collateral');
    }
    return defaultRegistry.verify({ ...base, certs, ...(collateral && { collateral }) });
  }
  if (opts.collateralMaxAge !== undefined && !opts.collateralCache) throw new CustodyError('ERR_USAGE', '--collateral-max-age goes with --collateral-cache');
  const maxAgeMs = opts.collateralMaxAge === undefined ? undefined : parseCollateralMaxAge(opts.collateralMaxAge);
  const source = new CollateralSource({
    ...(opts.pcsUrl && { pcsUrl: opts.pcsUrl }),
    ...(opts.kdsUrl && { kdsUrl: opts.kdsUrl }),
    ...(opts.collateralCache && { store: await DiskCollateralStore.open(opts.collateralCache) }),
    ...(maxAgeMs !== undefined && { maxAgeMs }),
  });
  let fetched = await source.fetchFor(evidence, {
    now,
    certs,
    ...(collateral && { collateral }),
    ...(opts.platform && { platform: opts.platform as Platform }),
    ...(opts.snpProduct && { product: parseSevSnpProduct(opts.snpProduct) }),
  }).catch((e: unknown) => {
    const err = toCustodyError(e);
    // The report does not say which product's KDS path its VCEK is under: name the flag that says it.
    if (err.code === 'ERR_USAGE' && err.detail?.missing === 'product') {
      throw new CustodyError('ERR_USAGE', `the SEV-SNP report (v${String(err.detail.version)}) does not name its product: give --snp-product ${SEV_SNP_PRODUCTS.slice(0, -1).join(', ')} or ${SEV_SNP_PRODUCTS.at(-1)!}`, { cause: e });
    }
    throw e;
  });
  const verifyWith = (f: FetchedCollateral): Promise<VerifyFromFilesResult> => defaultRegistry.verify({ ...base, ...withFetchedCollateral({ certs, ...(collateral && { collateral }) }, f) });
  let result = await verifyWith(fetched);
  if (collateralRefused(fetched.platform, result)) {
    // The refusal may be the evidence's own (anyone can send a quote with a broken certificate), so
    // kept copies are never dropped for it: they are fetched again, and only fresh copies that
    // differ are verified again and, if accepted, replace them. Offline, the kept copies stay.
    const fresh = await fetched.refresh();
    if (fresh) {
      fetched = fresh;
      result = await verifyWith(fresh);
    }
  }
  if (collateralAccepted(fetched.platform, result)) {
    try {
      await fetched.commit();
    } catch {
      result.warnings.push(`fetched collateral could not be kept in ${opts.collateralCache ?? 'the cache'}`);
    }
  }
  result.fetchedCollateral = fetched.items;
  return result;
}

const PLATFORM_NAMES: Record<string, string> = {
  'sev-snp': 'AMD SEV-SNP',
  tdx: 'Intel TDX',
  nitro: 'AWS Nitro Enclaves',
  tpm: 'TPM 2.0',
  'azure-vtpm': 'Azure confidential VM (vTPM)',
  nvidia: 'NVIDIA Hopper GPU',
  sim: 'SIMULATED TEE (development only, no hardware)',
};

function printHuman(file: string, r: VerifyFromFilesResult): void {
  const out: string[] = [];
  out.push(`Custody attestation verification: ${PLATFORM_NAMES[r.platform] ?? r.platform}`);
  out.push(`evidence: ${file}`);
  out.push(`verified at: ${r.verifiedAt}`);
  for (const f of r.fetchedCollateral ?? []) out.push(`collateral: ${f.kind.padEnd(10)} ${f.from === 'cache' ? 'from cache' : 'fetched'} ${f.url}${f.partlyGiven ? ' (part given by hand; not kept)' : ''}`);
  if (r.claims?.simulated) out.push('WARNING: SIMULATED evidence. No hardware TEE stands behind it; default policies reject it.');
  out.push('');
  // Details and messages quote the evidence (a certificate subject, say): one line each, whatever they hold.
  for (const s of r.steps) out.push(`  ${s.checked === false ? 'SKIP' : mark(s.ok)}  ${s.name.padEnd(13)} ${printableLine(s.detail)}${s.code ? ` [${s.code}]` : ''}`);
  const c = r.claims;
  if (c) {
    out.push('', 'claims:');
    for (const [k, v] of Object.entries(c.measurements)) out.push(`  ${k.padEnd(16)} ${v}`);
    out.push(`  ${'reportData'.padEnd(16)} ${c.reportData || '(none)'}`);
    if (c.tcb) {
      out.push(`  ${'tcb'.padEnd(16)} ${tcbText(c.tcb)}`);
      if (c.tcb.advisoryIds?.length) out.push(`  ${'advisories'.padEnd(16)} ${c.tcb.advisoryIds.join(', ')}`);
    }
    out.push(`  ${'debug'.padEnd(16)} ${c.debug}`);
    const cn = (dn: string) => /(?:^|, )CN=([^,]+)/.exec(dn)?.[1] ?? dn;
    if (c.signer.chain.length) out.push(`  ${'signer'.padEnd(16)} ${c.signer.kind ? c.signer.kind + ': ' : ''}${printableLine(c.signer.chain.map((x) => cn(x.subject)).join(' -> '))}`);
    if (c.signer.rootSha256) out.push(`  ${'root sha256'.padEnd(16)} ${c.signer.rootSha256}`);
  }
  for (const w of r.warnings) out.push(`warning: ${printableLine(w)}`);
  out.push('');
  out.push(r.ok ? 'result: VERIFIED' : `result: NOT VERIFIED (${r.errors.map((e) => e.code).join(', ')})`);
  for (const e of r.errors) out.push(`  ${e.code}: ${printableLine(e.message)}`);
  process.stdout.write(out.join('\n') + '\n');
}

/** A TCB on one line: the status when the platform gives one (TDX), its components (at most six, else a count) and date. */
export function tcbText(tcb: TcbClaims): string {
  const entries = Object.entries(tcb.components);
  const comps = entries.length <= 6 ? entries.map(([k, v]) => `${k}=${v}`).join(' ') : `(${entries.length} components, see --json)`;
  return `${tcb.status ? tcb.status + ' ' : ''}${comps}${tcb.tcbDate ? ` (tcbDate ${tcb.tcbDate})` : ''}`.trim() || '-';
}
