export { NvidiaVerifier, nvidiaVerifier, gpuAttestationKey } from './verifier.js';
export {
  parseSpdmMeasurementReport,
  SPDM_VERSION_1_1,
  SPDM_GET_MEASUREMENTS,
  SPDM_MEASUREMENTS,
  HOPPER_SIGNATURE_SIZE,
  MAX_SPDM_REPORT_SIZE,
  DMTF_MEASUREMENT_TYPES,
  type SpdmMeasurementReport,
  type SpdmGetMeasurementsRequest,
  type SpdmMeasurementsResponse,
  type SpdmMeasurementBlock,
} from './spdm.js';
export { parseNvidiaOpaqueData, NVIDIA_OPAQUE_FIELD, type NvidiaOpaqueData, type NvidiaOpaqueFieldName } from './opaque.js';
export { readNvidiaEvidence, looksLikeNvidiaEvidence, createNvidiaEvidence, NVIDIA_GPU_FORMAT, MAX_NVIDIA_EVIDENCE_SIZE, type NvidiaGpuEvidence } from './evidence.js';
export { certificateFwid, TCG_DICE_TCB_INFO_OID, type Fwid } from './fwid.js';
export { NVIDIA_DEVICE_ROOT_PEM, NVIDIA_DEVICE_ROOT_SHA256 } from './roots.js';
