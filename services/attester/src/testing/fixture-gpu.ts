// TEST DOUBLE, not a GPU: no GPU on a test machine can produce a report for a new nonce, so
// this takes the REAL Hopper attestation report from the conformance vectors, writes the
// requested nonce into its GET_MEASUREMENTS request and signs it again with a test attestation
// key under a TEST root (packages/attest/src/nvidia/testing/reissue.ts). Its evidence verifies
// only when that root is passed as the verifier's `roots` (`FixtureGpuAttester.testRoot()`); the
// pinned NVIDIA Device Identity CA refuses it. The measurements are the real report's. Use
// CommandGpuAttester on real hardware.
import { reissuedNvidiaEvidence, testGpuRoot } from '../../../../packages/attest/src/nvidia/testing/reissue.js';
import { GPU_NONCE_LENGTH, type DeviceAttester } from '../device-attester.js';

export interface FixtureGpuAttesterOptions {
  /** A report to re-sign instead of the real one (e.g. a copy with a changed measurement). */
  report?: Uint8Array;
  /**
   * Test of a faulty or lying GPU: the nonce actually written into the report instead of the
   * requested one (given the requested nonce).
   */
  answerNonce?: (requested: Uint8Array) => Uint8Array;
  /**
   * Which test GPU (attestation key) signs. Default: a new one per instance, so two instances are
   * two GPUs and one instance asked twice is the same GPU twice.
   */
  gpu?: number;
}

let nextGpu = 0;

export class FixtureGpuAttester implements DeviceAttester {
  readonly platform = 'nvidia' as const;
  /** Every nonce asked for, in order (copies). */
  readonly nonces: Uint8Array[] = [];

  /** The test GPU (attestation key index) this instance stands for. */
  readonly gpu: number;

  constructor(private readonly options: FixtureGpuAttesterOptions = {}) {
    this.gpu = options.gpu ?? nextGpu++;
  }

  /** The test root every FixtureGpuAttester's evidence chains to (one per process). */
  static testRoot(): Promise<Uint8Array> {
    return testGpuRoot();
  }

  async collect(nonce: Uint8Array): Promise<Uint8Array> {
    if (nonce.length !== GPU_NONCE_LENGTH) throw new Error(`a GPU request nonce is ${GPU_NONCE_LENGTH} bytes`);
    this.nonces.push(nonce.slice());
    const answered = this.options.answerNonce ? this.options.answerNonce(nonce) : nonce;
    return (await reissuedNvidiaEvidence(answered, this.options.report, this.gpu)).evidence;
  }
}
