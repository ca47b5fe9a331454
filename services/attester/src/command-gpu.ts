import { spawn, type ChildProcess } from 'node:child_process';
import { CustodyError, ParseError, toHex } from '@custody/core';
import { looksLikeNvidiaEvidence } from '@custody/attest';
import { SerialQueue } from './attester.js';
import { GPU_NONCE_LENGTH, type DeviceAttester } from './device-attester.js';

/** The argument token replaced by the request nonce (64 lowercase hex digits). */
export const GPU_NONCE_TOKEN = '{nonce}';
/** Default bound on the program's stdout: far above a report with its chain (a few tens of KiB). */
export const DEFAULT_GPU_OUTPUT_LIMIT = 1024 * 1024;
export const DEFAULT_GPU_TIMEOUT_MS = 30_000;
const MAX_ARGS = 256;
const MAX_ARG_LENGTH = 4096;

export interface CommandGpuAttesterOptions {
  /**
   * The program and its arguments, run without a shell. Every occurrence of `{nonce}` in any
   * argument is replaced by the 32-byte request nonce as 64 lowercase hex digits; at least one
   * argument must carry it.
   */
  argv: readonly string[];
  /** The program is killed (with its process group) after this long. Default 30 s. */
  timeoutMs?: number;
  /** The program is killed once its stdout exceeds this. Default 1 MiB. */
  maxOutputBytes?: number;
}

/**
 * Evidence of one NVIDIA GPU (Hopper or later, confidential-computing mode) collected by an
 * operator-supplied program: Node has no NVML binding, so the gateway runs the program that
 * talks to the driver, once per nonce, and reads the evidence on its stdout.
 *
 * What such a program does inside an H100 confidential VM: it opens the GPU with NVML and asks
 * for its confidential-computing attestation report for the nonce
 * (`nvmlDeviceGetConfComputeGpuAttestationReport`, whose `nvmlConfComputeGpuAttestationReport_t`
 * takes the 32-byte `nonce` as input and returns `attestationReport`: the SPDM GET_MEASUREMENTS
 * request and the signed MEASUREMENTS response), then reads the GPU's certificates
 * (`nvmlDeviceGetConfComputeGpuCertificate`, whose `attestationCertChain` is the chain of the
 * attestation key that signed the report, up to the NVIDIA Device Identity CA). It prints
 * `{"format":"custody-nvidia-gpu/v1","report":"<hex>","certChain":"<PEM, leaf first>"}`
 * (`createNvidiaEvidence` in @custody/attest writes it), or the report hex alone when the chain
 * is supplied another way. The Python bindings (`cuda.bindings.nvml`), the Go bindings or
 * NVIDIA's attestation SDK tools can serve as that program, behind a wrapper that prints this
 * format for the nonce given on its command line. A program per GPU: give it the GPU's index.
 *
 * What the nonce proves: the report was made, freshly, for this gateway's runtime data (the
 * nonce is its SHA-256). It does not by itself prove that the GPU is attached to this CVM: a
 * program that passed the nonce on to a GPU elsewhere would get an equally valid report. That
 * rests on the attested gateway image collecting the report itself from its own GPU: this
 * program must be part of the measured image (e.g. on its dm-verity root file system), not an
 * unmeasured path, and in confidential-computing mode the driver talks to the GPU over the
 * GPU's SPDM session with this CVM.
 *
 * The program runs with the gateway's environment minus every CUSTODY_* variable (the broker
 * API key, a ledger writer key...): Custody's secrets never reach it. A variable it needs
 * besides can be set in its argv (`/usr/bin/env NAME=value program ...`).
 *
 * Bounds and failure: no shell; output over `maxOutputBytes`, no exit within `timeoutMs` (the
 * program and its process group are killed), a non-zero exit or output that is not NVIDIA GPU
 * evidence is ERR_ATTESTER_FAILED; a program that cannot be started is ERR_ATTESTER_UNAVAILABLE.
 * Error messages never carry the program's output, and its stderr is discarded. One collection
 * runs at a time per attester (a GPU answers one SPDM request at a time). The evidence is not
 * verified here: the caller verifies it with the nonce (the gateway does, before publishing it).
 */
export class CommandGpuAttester implements DeviceAttester {
  readonly platform = 'nvidia' as const;
  private readonly argv: readonly string[];
  private readonly timeoutMs: number;
  private readonly maxOutputBytes: number;
  private readonly queue = new SerialQueue();

  constructor(options: CommandGpuAttesterOptions) {
    const argv: readonly string[] = options.argv;
    const list: unknown = options.argv;
    if (!Array.isArray(list) || argv.length === 0 || argv.length > MAX_ARGS) throw new CustodyError('ERR_USAGE', `the GPU evidence command is 1 to ${MAX_ARGS} arguments`);
    if (argv.some((a) => typeof a !== 'string' || a.length > MAX_ARG_LENGTH || a.includes('\0'))) throw new CustodyError('ERR_USAGE', 'a GPU evidence command argument is not a string of acceptable length');
    if (argv[0]!.length === 0) throw new CustodyError('ERR_USAGE', 'the GPU evidence command names no program');
    if (!argv.some((a) => a.includes(GPU_NONCE_TOKEN))) throw new CustodyError('ERR_USAGE', `the GPU evidence command must take the nonce: put ${GPU_NONCE_TOKEN} in its arguments`);
    const timeoutMs = options.timeoutMs ?? DEFAULT_GPU_TIMEOUT_MS;
    const maxOutputBytes = options.maxOutputBytes ?? DEFAULT_GPU_OUTPUT_LIMIT;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new CustodyError('ERR_USAGE', 'the GPU evidence timeout must be a positive number of milliseconds');
    if (!Number.isInteger(maxOutputBytes) || maxOutputBytes < 1) throw new CustodyError('ERR_USAGE', 'the GPU evidence output limit must be a positive number of bytes');
    this.argv = [...argv];
    this.timeoutMs = timeoutMs;
    this.maxOutputBytes = maxOutputBytes;
  }

  /** The program's name (no arguments), for logs and summaries. */
  get program(): string {
    return this.argv[0]!;
  }

  collect(nonce: Uint8Array): Promise<Uint8Array> {
    if (!(nonce instanceof Uint8Array) || nonce.length !== GPU_NONCE_LENGTH) {
      return Promise.reject(new ParseError('ERR_INPUT_MALFORMED', `a GPU request nonce is ${GPU_NONCE_LENGTH} bytes`, { detail: { length: nonce?.length ?? 0 } }));
    }
    const hex = toHex(nonce);
    const args = this.argv.map((a) => a.split(GPU_NONCE_TOKEN).join(hex));
    return this.queue.run(async () => {
      const out = await this.run(args);
      if (out.length === 0 || !looksLikeNvidiaEvidence(out)) {
        throw new CustodyError('ERR_ATTESTER_FAILED', 'the GPU evidence program printed something that is not NVIDIA GPU evidence', { detail: { program: this.program, bytes: out.length } });
      }
      return out;
    });
  }

  private run(args: readonly string[]): Promise<Uint8Array> {
    const program = this.program;
    return new Promise((resolve, reject) => {
      let settled = false;
      let closed = false;
      let child: ChildProcess | undefined;
      const chunks: Buffer[] = [];
      let size = 0;
      const finish = (err: CustodyError | undefined, out?: Uint8Array) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (err) {
          // After 'close' nothing of the program holds its stdout; before, the group still exists.
          if (!closed) killGroup(child);
          reject(err);
        } else resolve(out!);
      };
      const timer = setTimeout(() => {
        finish(new CustodyError('ERR_ATTESTER_FAILED', `the GPU evidence program did not finish within ${this.timeoutMs} ms`, { detail: { program, timedOut: true } }));
      }, this.timeoutMs);
      try {
        // Its own process group, so that a timeout also stops what the program started.
        child = spawn(args[0]!, args.slice(1), { env: gpuProgramEnv(), stdio: ['ignore', 'pipe', 'ignore'], shell: false, detached: true, windowsHide: true });
      } catch (e) {
        finish(new CustodyError('ERR_ATTESTER_UNAVAILABLE', 'the GPU evidence program could not be started', { cause: e, detail: { program } }));
        return;
      }
      child.stdout!.on('data', (c: Buffer) => {
        if (settled) return;
        size += c.length;
        if (size > this.maxOutputBytes) {
          finish(new CustodyError('ERR_ATTESTER_FAILED', `the GPU evidence program printed more than ${this.maxOutputBytes} bytes`, { detail: { program, limit: this.maxOutputBytes } }));
          return;
        }
        chunks.push(c);
      });
      child.on('error', (e: NodeJS.ErrnoException) => {
        const missing = e.code === 'ENOENT' || e.code === 'EACCES';
        finish(new CustodyError(missing ? 'ERR_ATTESTER_UNAVAILABLE' : 'ERR_ATTESTER_FAILED', missing ? 'the GPU evidence program was not found or is not executable' : 'the GPU evidence program failed', { cause: e, detail: { program } }));
      });
      // 'close': the program exited and its stdout is drained (a descendant still holding it
      // open keeps this waiting, up to the timeout).
      child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
        closed = true;
        if (code === 0) {
          const b = Buffer.concat(chunks, size);
          finish(undefined, new Uint8Array(b.buffer, b.byteOffset, b.byteLength));
          return;
        }
        finish(new CustodyError('ERR_ATTESTER_FAILED', signal ? `the GPU evidence program was stopped by ${signal}` : `the GPU evidence program exited with status ${code ?? -1}`, { detail: { program, exit: code ?? -1, ...(signal ? { signal } : {}) } }));
      });
    });
  }
}

/** Secrets the gateway's environment may hold besides CUSTODY_*: libpq's password (the replay store). */
const SECRET_VARIABLES = new Set(['PGPASSWORD']);

/**
 * The program's environment: the gateway's, without Custody's own variables (CUSTODY_*: the
 * broker API key, a ledger writer key, ...) and other secrets (PGPASSWORD), as for the TPM tools
 * of the broker's master key. The program needs PATH, library paths and the like, never the
 * gateway's secrets; one that needs a variable of its own can be given it in its argv
 * (`/usr/bin/env NAME=value program ...`). A process of the same user can still read the
 * gateway's starting environment (/proc/<pid>/environ): keys are better given as files
 * (`--broker-key-file`, `--ledger-key-file`).
 */
function gpuProgramEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('CUSTODY_') && !SECRET_VARIABLES.has(k)) out[k] = v;
  return out;
}

function killGroup(child: ChildProcess | undefined): void {
  if (!child?.pid) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    child.kill('SIGKILL');
  }
  child.stdout?.destroy();
}
