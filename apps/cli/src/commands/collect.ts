import { writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CustodyError, fromHex, sha256, toHex } from '@custody/core';
import { createAttester, createDetectedAttester, MAX_REPORT_DATA, type Attester, type CreateAttesterOptions } from '@custody/attester-service';
import { failWith, printJson } from '../output.js';
import { EXIT_OK } from '../exit.js';

interface CollectOptions {
  platform?: string;
  nonce: string;
  out?: string;
  json?: boolean;
  tcti?: string;
  ak?: string;
  akHandle?: string;
  pcrs?: string;
  tsmRoot?: string;
  measurement?: string[];
  debug?: boolean;
}

function parsePcrList(s: string): number[] {
  const out: number[] = [];
  for (const part of s.split(',')) {
    const m = /^(\d{1,2})(?:-(\d{1,2}))?$/.exec(part.trim());
    if (!m) throw new CustodyError('ERR_USAGE', `--pcrs must look like 0-7,14; got ${JSON.stringify(s)}`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (a > b || b > 23) throw new CustodyError('ERR_USAGE', '--pcrs indices must be 0..23, ranges ascending');
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

function parseMeasurements(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const m = /^([A-Za-z][A-Za-z0-9_.-]{0,63})=((?:[0-9a-fA-F]{2})+)$/.exec(item);
    if (!m) throw new CustodyError('ERR_USAGE', `--measurement must be NAME=HEX; got ${JSON.stringify(item.slice(0, 80))}`);
    out[m[1]!] = m[2]!.toLowerCase();
  }
  return out;
}

function buildAttester(opts: CollectOptions): Promise<Attester> {
  // As tpm2-tools and `fetch-key`: the TCTI from the flag, else from $TPM2TOOLS_TCTI.
  const tcti = opts.tcti ?? process.env.TPM2TOOLS_TCTI;
  const options: CreateAttesterOptions = {
    tpm: {
      ...(tcti ? { tcti } : {}),
      ...(opts.ak ? { keyAlgorithm: opts.ak === 'ecc' ? 'ecc' : 'rsa' } : {}),
      ...(opts.akHandle ? { akHandle: opts.akHandle } : {}),
      ...(opts.pcrs ? { pcrs: parsePcrList(opts.pcrs) } : {}),
    },
    sim: {
      ...(opts.measurement?.length ? { measurements: parseMeasurements(opts.measurement) } : {}),
      ...(opts.debug ? { debug: true } : {}),
    },
    ...(opts.tsmRoot ? { tsmRoot: opts.tsmRoot } : {}),
  };
  if (opts.ak !== undefined && opts.ak !== 'rsa' && opts.ak !== 'ecc') throw new CustodyError('ERR_USAGE', '--ak must be rsa or ecc');
  if (opts.platform === undefined) return createDetectedAttester({ ...(tcti ? { tcti } : {}), ...(opts.tsmRoot ? { tsmRoot: opts.tsmRoot } : {}) }, options);
  return Promise.resolve(createAttester(opts.platform, options));
}

/** Adds `custody attest collect` to the `attest` command group. */
export function registerCollect(attest: Command): void {
  attest
    .command('collect')
    .description('collect attestation evidence on this machine (TPM via tpm2-tools, SEV-SNP/TDX via configfs-tsm, or sim) bound to a nonce')
    .option('--platform <platform>', 'tpm | snp | tdx | sim; detected when omitted (hardware only: sim must be asked for)')
    .requiredOption('--nonce <hex>', `report data to bind, hex, at most ${MAX_REPORT_DATA} bytes (TPM qualifying data, SNP/TDX report_data)`)
    .option('--out <file>', 'write the evidence to this file instead of standard output')
    .option('--json', 'print one JSON object describing the result (the evidence goes to --out, or inline)')
    .option('--tcti <tcti>', 'TPM: TCTI, e.g. device:/dev/tpmrm0 or swtpm:host=127.0.0.1,port=2321 (env TPM2TOOLS_TCTI, default device:/dev/tpmrm0)')
    .option('--ak <alg>', 'TPM: algorithm of the AK to create under the EK: rsa (default) or ecc')
    .option('--ak-handle <handle>', 'TPM: use this persistent AK instead of creating one, e.g. 0x81000003')
    .option('--pcrs <list>', 'TPM: SHA-256 PCRs to quote, e.g. 0-7,14 (default 0-23)')
    .option('--tsm-root <dir>', 'SNP/TDX: configfs-tsm report directory (default /sys/kernel/config/tsm/report)')
    .option('--measurement <name=hex...>', 'sim: a measurement to claim (repeatable; default one zero "measurement")')
    .option('--debug', 'sim: claim a debug-mode TEE')
    .addHelpText(
      'after',
      `
Output formats: TPM custody-tpm-quote/v1 JSON; SNP/TDX {"provider","outblob","auxblob"} JSON
(base64url, as configfs-tsm returns them); sim custody-sim/v1 JSON (SIMULATED, rejected by
default policies). Each is what \`custody attest verify\` reads.

Exit codes: 0 collected, 1 collection failed, 2 bad input or usage, 3 no such device here.

Examples:
  custody attest collect --platform tpm --nonce $(openssl rand -hex 32) --out quote.json
  custody attest collect --platform sim --nonce 00112233 --json`,
    )
    .action(async (opts: CollectOptions) => {
      const json = opts.json ?? false;
      let attester: Attester | undefined;
      try {
        let nonce: Uint8Array;
        try {
          nonce = fromHex(opts.nonce);
        } catch {
          throw new CustodyError('ERR_USAGE', '--nonce must be hex');
        }
        if (nonce.length > MAX_REPORT_DATA) throw new CustodyError('ERR_USAGE', `--nonce is longer than ${MAX_REPORT_DATA} bytes`);
        attester = await buildAttester(opts);
        const evidence = await attester.collect(nonce);
        if (opts.out) writeFileSync(opts.out, evidence);
        if (json) {
          const text = new TextDecoder().decode(evidence);
          printJson({
            ok: true,
            platform: attester.platform,
            simulated: attester.platform === 'sim',
            nonce: toHex(nonce),
            bytes: evidence.length,
            sha256: toHex(await sha256(evidence)),
            ...(opts.out ? { out: opts.out } : { evidence: JSON.parse(text) as unknown }),
          });
        } else if (!opts.out) {
          process.stdout.write(evidence);
        } else {
          process.stderr.write(`custody: wrote ${evidence.length} bytes of ${attester.platform}${attester.platform === 'sim' ? ' (SIMULATED)' : ''} evidence to ${opts.out}\n`);
        }
        process.exitCode = EXIT_OK;
      } catch (e) {
        await attester?.close?.();
        failWith(e, json);
      }
      await attester?.close?.();
    });
}
