/**
 * Command-line options for NVIDIA GPUs in confidential-computing mode, shared by the commands
 * that attest with them (`gateway serve`, `fetch-key`) and those that verify them (`receipt verify`).
 */
import { InvalidArgumentError } from 'commander';
import { CustodyError } from '@custody/core';
import { CommandGpuAttester } from '@custody/attester-service';
import { readInputFile } from './files.js';

/** At most this many GPUs (an HGX board holds 8), as the broker and the SDK accept. */
export const MAX_CLI_GPUS = 8;

export const GPU_EVIDENCE_CMD_HELP =
  "an NVIDIA GPU (confidential-computing mode) to attest with the CPU, repeat once per GPU: a program that prints that GPU's evidence (custody-nvidia-gpu/v1 JSON: SPDM report hex + PEM chain, or the report hex) for the nonce, e.g. \"python3 /opt/gpu-evidence.py 0 {nonce}\" (your wrapper around the NVML confidential-computing attestation report and certificate calls); split on whitespace, run without a shell, {nonce} replaced by 64 hex digits; 30 s timeout, 1 MiB output bound; a GPU that fails stops the attestation";

/** `--gpu-evidence-cmd` values: each one GPU's program, split on whitespace (no shell, no quoting). */
export function gpuCommands(values: readonly string[]): string[][] {
  if (values.length > MAX_CLI_GPUS) throw new CustodyError('ERR_USAGE', `at most ${MAX_CLI_GPUS} --gpu-evidence-cmd (one per GPU)`);
  return values.map((v) => {
    const argv = v.trim().split(/\s+/).filter(Boolean);
    if (argv.length === 0) throw new CustodyError('ERR_USAGE', '--gpu-evidence-cmd is empty');
    if (!argv.some((a) => a.includes('{nonce}'))) throw new CustodyError('ERR_USAGE', '--gpu-evidence-cmd must pass the nonce to the program: put {nonce} in its arguments');
    return argv;
  });
}

/** One CommandGpuAttester per `--gpu-evidence-cmd`. */
export function gpuAttesters(values: readonly string[]): CommandGpuAttester[] {
  return gpuCommands(values).map((argv) => new CommandGpuAttester({ argv }));
}

/** `--gpu-root` files: trust anchors for GPU evidence (PEM or DER). */
export function gpuRoots(files: readonly string[]): Uint8Array[] {
  return files.map((f) => readInputFile(f, 'GPU trust anchor'));
}

/** `--min-gpus` (a commander argument parser: a bad value is a usage error, exit 2): 0 to MAX_CLI_GPUS. */
export function minGpus(s: string): number {
  const n = Number(s);
  if (!/^\d+$/.test(s) || n > MAX_CLI_GPUS) throw new InvalidArgumentError(`ERR_USAGE: --min-gpus must be 0..${MAX_CLI_GPUS}`);
  return n;
}
