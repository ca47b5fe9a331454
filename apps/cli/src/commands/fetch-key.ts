import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { checkServiceUrl, CustodyError, fromUtf8, toBase64, toCustodyError, wipe } from '@custody/core';
import { createAttester, createDetectedAttester, type Attester } from '@custody/attester-service';
import { fetchKey } from '@custody/broker-service/workload';
import type { Register } from './index.js';
import { readSecretFile } from '../files.js';
import { GPU_EVIDENCE_CMD_HELP, gpuAttesters } from '../gpu.js';
import { exitCodeFor, failWith, printJson } from '../output.js';
import { EXIT_UNAVAILABLE } from '../exit.js';

export const DEFAULT_BROKER_URL = 'http://127.0.0.1:8787';

interface FetchKeyOptions {
  broker?: string;
  tenant?: string;
  platform?: string;
  out?: string;
  print?: boolean;
  json?: boolean;
  tcti?: string;
  akHandle?: string;
  pcrs?: string;
  simMeasurement?: string;
  apiKeyFile?: string;
  gpuEvidenceCmd?: string[];
}

/** Codes that mean "try again later" beyond the shared table (see output.ts). */
const ALSO_UNAVAILABLE = new Set(['ERR_VERIFIER_UNAVAILABLE', 'ERR_ATTESTER_FAILED']);

function fail(e: unknown, json: boolean): never {
  const err = toCustodyError(e);
  if (ALSO_UNAVAILABLE.has(err.code) && exitCodeFor(err.code) !== EXIT_UNAVAILABLE) {
    if (json) printJson({ ok: false, errors: [err.toJSON()] });
    else process.stderr.write(`custody: ${err.code}: ${err.message}\n`);
    process.exit(EXIT_UNAVAILABLE);
  }
  failWith(err, json);
}

function attesterFor(opts: FetchKeyOptions): Promise<Attester> {
  const tcti = opts.tcti ?? process.env.TPM2TOOLS_TCTI;
  const pcrs = opts.pcrs === undefined ? undefined : opts.pcrs.split(',').map((p) => (/^[0-9]{1,2}$/.test(p) ? Number(p) : NaN));
  if (pcrs?.some((p) => Number.isNaN(p))) throw new CustodyError('ERR_USAGE', '--pcrs is a comma-separated list of PCR indices, e.g. 0,1,7');
  let measurement: string | undefined;
  if (opts.simMeasurement !== undefined) {
    if (!/^(?:[0-9a-f]{2}){1,128}$/.test(opts.simMeasurement)) throw new CustodyError('ERR_USAGE', '--sim-measurement must be lowercase hex');
    measurement = opts.simMeasurement;
  }
  const options = {
    tpm: { ...(tcti ? { tcti } : {}), ...(opts.akHandle ? { akHandle: opts.akHandle } : {}), ...(pcrs ? { pcrs } : {}) },
    sim: measurement ? { measurements: { measurement } } : {},
  };
  if (opts.platform === undefined) return createDetectedAttester({ ...(tcti ? { tcti } : {}) }, options);
  if (!['tpm', 'sim', 'snp', 'sev-snp', 'tdx'].includes(opts.platform)) throw new CustodyError('ERR_USAGE', '--platform must be tpm, snp, tdx or sim');
  return Promise.resolve(createAttester(opts.platform, options));
}

/** Writes `data` to `path` with mode 0600: a new file in the same directory, synced, then renamed over `path`. */
export function writeSecretFile(path: string, data: Uint8Array): void {
  try {
    if (statSync(path).isDirectory()) throw new CustodyError('ERR_USAGE', `--out ${path} is a directory`);
  } catch (e) {
    if (e instanceof CustodyError) throw e;
  }
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number;
  try {
    fd = openSync(tmp, 'wx', 0o600);
  } catch (e) {
    throw new CustodyError('ERR_USAGE', `cannot write next to ${path}`, { cause: e });
  }
  try {
    writeSync(fd, data);
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, path);
  } catch (e) {
    try {
      closeSync(fd);
    } catch {
      /* already closed */
    }
    rmSync(tmp, { force: true });
    throw new CustodyError('ERR_USAGE', `cannot write ${path}`, { cause: e });
  }
}

export const register: Register = (program: Command) => {
  program
    .command('fetch-key <name>')
    .description('attest this machine to a Custody broker and receive a key released to it')
    .addHelpText(
      'after',
      '\nRuns the handshake (challenge, evidence over {nonce, TEE public key}, attest, release). The key comes back wrapped\n' +
        'to an ephemeral key that never leaves this process, and is written to --out (mode 0600), or printed as base64 on\n' +
        'stdout only with --print. Exit codes: 0 released, 1 refused, 2 usage, 3 broker, verifier or TPM unavailable.',
    )
    .option('--broker <url>', `broker URL (env CUSTODY_BROKER_URL, default ${DEFAULT_BROKER_URL})`)
    .option('--tenant <name>', 'the tenant whose key this is (env CUSTODY_TENANT, default "default")')
    .option('--platform <p>', 'evidence source: tpm, snp, tdx or sim (SIMULATED; brokers refuse it unless their policy allows it). Default: the TPM or TEE this machine has')
    .option('--out <file>', 'write the key material here (raw bytes, mode 0600)')
    .option('--print', 'print the key material as base64 on stdout (the summary goes to stderr)')
    .option('--json', 'print the result as JSON (with --print, the material is in it)')
    .option('--tcti <tcti>', 'TPM TCTI, e.g. swtpm:host=127.0.0.1,port=2321 (env TPM2TOOLS_TCTI, default device:/dev/tpmrm0)')
    .option('--ak-handle <handle>', 'a persistent TPM attestation key, e.g. 0x81010002 (default: one created under the EK per run)')
    .option('--pcrs <list>', 'TPM PCRs to quote, e.g. 0,1,7 (default 0-23)')
    .option('--sim-measurement <hex>', 'the measurement sim evidence claims (default 48 zero bytes)')
    .option('--api-key-file <path>', 'a workload API key, for brokers that require one on challenges')
    .option('--gpu-evidence-cmd <command>', GPU_EVIDENCE_CMD_HELP, (v: string, prev: string[] = []) => [...prev, v])
    .action(async (name: string, opts: FetchKeyOptions) => {
      const json = opts.json === true;
      let attester: Attester | undefined;
      try {
        if (!opts.out && !opts.print) throw new CustodyError('ERR_USAGE', 'give --out FILE (written 0600) or --print to receive the key');
        const broker = opts.broker ?? process.env.CUSTODY_BROKER_URL ?? DEFAULT_BROKER_URL;
        checkServiceUrl(broker, '--broker');
        const tenant = opts.tenant ?? process.env.CUSTODY_TENANT ?? 'default';
        const apiKey = opts.apiKeyFile ? fromUtf8(readSecretFile(opts.apiKeyFile, 'API key file')).trim() : undefined;
        attester = await attesterFor(opts);
        const devices = gpuAttesters(opts.gpuEvidenceCmd ?? []);
        const got = await fetchKey({ broker, tenant, name, attester, ...(apiKey ? { apiKey } : {}), ...(devices.length > 0 ? { devices } : {}) });
        try {
          if (opts.out) writeSecretFile(opts.out, got.material);
          const facts = {
            key: got.key,
            tenant,
            bytes: got.material.length,
            session: got.session,
            platform: got.platform,
            status: got.status,
            policyId: got.policyId,
            earExpiresAt: got.earExpiresAt,
            ...(got.auditIndex !== undefined ? { auditIndex: got.auditIndex } : {}),
            ...(got.auditInterimIndex !== undefined ? { auditInterimIndex: got.auditInterimIndex } : {}),
            ...(opts.out ? { out: opts.out } : {}),
          };
          if (json) {
            printJson({ ok: true, ...facts, ...(opts.print ? { material: toBase64(got.material) } : {}) });
          } else {
            const summary =
              `released ${got.key.name} version ${got.key.version} (${got.key.type}, ${got.material.length} bytes) to this ${got.platform === 'sim' ? 'SIMULATED ' : ''}${got.platform} workload` +
              `${opts.out ? `, written to ${opts.out} (mode 0600)` : ''}\n` +
              `  attestation ${got.status} under ${got.policyId}; session ${got.session}, EAR valid until ${got.earExpiresAt}\n`;
            if (opts.print) {
              process.stderr.write(summary);
              process.stdout.write(toBase64(got.material) + '\n');
            } else {
              process.stdout.write(summary);
            }
          }
        } finally {
          wipe(got.material);
        }
      } catch (e) {
        await attester?.close?.().catch(() => undefined);
        fail(e, json);
      }
      await attester?.close?.();
    });
};
