import { execFile } from 'node:child_process';
import { CustodyError } from '@custody/core';

export interface Tpm2ToolsOptions {
  /** TCTI string, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`. */
  tcti: string;
  /** Per-command timeout. */
  timeoutMs?: number;
}

/**
 * Runs one tpm2-tools command without a shell. A missing tool or an unreachable TPM is
 * ERR_ATTESTER_UNAVAILABLE; any other failure is ERR_ATTESTER_FAILED with the tool's last
 * stderr line (tpm2-tools prints response codes there, never key material).
 */
export function runTpm2Tool(tool: string, args: string[], opts: Tpm2ToolsOptions): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(
      tool,
      [...args, `--tcti=${opts.tcti}`],
      { timeout: opts.timeoutMs ?? 60_000, maxBuffer: 4 * 1024 * 1024, env: { ...process.env, TPM2TOOLS_TCTI: opts.tcti } },
      (err, stdout, stderr) => {
        if (!err) return resolve(stdout);
        const e = err as NodeJS.ErrnoException & { code?: string | number; killed?: boolean };
        if (e.code === 'ENOENT') {
          return reject(new CustodyError('ERR_ATTESTER_UNAVAILABLE', `${tool} not found: install tpm2-tools`, { detail: { tool } }));
        }
        // Killed at the deadline: the TPM (or its transport) does not answer. Unavailable, like
        // an unreachable one: the caller may try again later, and nothing is retried here.
        // (execFile also kills a tool whose output passes maxBuffer: that is not a timeout.)
        if (e.killed === true && e.code !== 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
          return reject(new CustodyError('ERR_ATTESTER_UNAVAILABLE', `${tool} got no answer from the TPM within ${opts.timeoutMs ?? 60_000} ms`, { detail: { tool, timedOut: true } }));
        }
        const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
        const last = (lines.at(-1) ?? '').slice(0, 200);
        const unreachable = /tcti|Connection refused|No such file or directory|Failed to initialize|Could not load/i.test(stderr);
        reject(
          new CustodyError(unreachable ? 'ERR_ATTESTER_UNAVAILABLE' : 'ERR_ATTESTER_FAILED', `${tool} failed${unreachable ? ': TPM not reachable' : ''}: ${last}`, {
            detail: { tool, exit: typeof e.code === 'number' ? e.code : -1 },
          }),
        );
      },
    );
  });
}
