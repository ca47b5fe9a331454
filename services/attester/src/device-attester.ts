/** Platforms whose evidence rides along a CPU TEE's: NVIDIA GPUs in confidential-computing mode. */
export type DeviceAttesterPlatform = 'nvidia';

/** Length of an NVIDIA SPDM GET_MEASUREMENTS request nonce. */
export const GPU_NONCE_LENGTH = 32;

/**
 * Collects the evidence of a device attached to the TEE (a GPU) for a request nonce. The
 * gateway passes SHA-256 of its runtime data (`runtimeDigest('nvidia', runtimeData)`), so the
 * device's evidence is bound to the same keys as the CPU evidence. The result is the evidence
 * file the platform's verifier reads (for NVIDIA: `custody-nvidia-gpu/v1` JSON, report hex or
 * the binary SPDM report).
 */
export interface DeviceAttester {
  readonly platform: DeviceAttesterPlatform;
  collect(nonce: Uint8Array): Promise<Uint8Array>;
}
