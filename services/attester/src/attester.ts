import { ParseError } from '@custody/core';

/** Evidence sources an attester can collect from. */
export type AttesterPlatform = 'tpm' | 'sev-snp' | 'tdx' | 'sim';

/** The largest report data any TEE binds: SNP and TDX report_data, TPM qualifying data. */
export const MAX_REPORT_DATA = 64;

/**
 * Collects evidence on this machine that binds `reportData` (a nonce, or a hash of a nonce and
 * a TEE-held public key). The result is the evidence file the matching verifier reads.
 */
export interface Attester {
  readonly platform: AttesterPlatform;
  collect(reportData: Uint8Array): Promise<Uint8Array>;
  /** Releases files and handles the attester holds (idempotent). */
  close?(): Promise<void>;
}

export function checkReportData(reportData: Uint8Array): void {
  if (reportData.length > MAX_REPORT_DATA) {
    throw new ParseError('ERR_INPUT_TOO_LARGE', `report data is longer than ${MAX_REPORT_DATA} bytes`, { detail: { length: reportData.length } });
  }
}

/** Runs async jobs one at a time: a TPM or a configfs entry serves one request at a time. */
export class SerialQueue {
  private tail: Promise<unknown> = Promise.resolve();

  run<T>(job: () => Promise<T>): Promise<T> {
    const next = this.tail.then(job, job);
    this.tail = next.catch(() => undefined);
    return next;
  }
}
