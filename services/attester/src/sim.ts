import { systemClock, type Clock } from '@custody/core';
import { createSimEvidence } from '@custody/attest';
import { checkReportData, type Attester } from './attester.js';

export interface SimAttesterOptions {
  /** Named measurements (hex or bytes). Default: one all-zero 48-byte `measurement`. */
  measurements?: Record<string, string | Uint8Array>;
  debug?: boolean;
  /** 32-byte Ed25519 seed; the published development seed by default. */
  seed?: Uint8Array;
  clock?: Clock;
}

/** Software-signed custody-sim/v1 evidence for machines without a TEE. Labelled SIMULATED. */
export class SimAttester implements Attester {
  readonly platform = 'sim' as const;

  constructor(private readonly options: SimAttesterOptions = {}) {}

  async collect(reportData: Uint8Array): Promise<Uint8Array> {
    checkReportData(reportData);
    const o = this.options;
    return createSimEvidence({
      measurements: o.measurements ?? { measurement: '00'.repeat(48) },
      reportData,
      debug: o.debug ?? false,
      issuedAt: (o.clock ?? systemClock)(),
      ...(o.seed ? { seed: o.seed } : {}),
    });
  }
}
