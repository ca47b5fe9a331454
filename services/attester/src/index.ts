export { type Attester, type AttesterPlatform, MAX_REPORT_DATA, checkReportData } from './attester.js';
export { TpmAttester, type TpmAttesterOptions, type TpmPcrBankName } from './tpm.js';
export { runTpm2Tool, type Tpm2ToolsOptions } from './tpm2-tools.js';
export { ConfigfsTsmAttester, probeTsmProvider, nodeTsmFs, TSM_REPORT_ROOT, type ConfigfsTsmOptions, type TsmFs } from './configfs-tsm.js';
export { SimAttester, type SimAttesterOptions } from './sim.js';
export { detectPlatforms, createAttester, createDetectedAttester, type AttesterEnvironment, type DetectedPlatform, type CreateAttesterOptions, type AttesterChoice } from './detect.js';
export { DiskCollateralStore } from './collateral-cache.js';
export { GPU_NONCE_LENGTH, type DeviceAttester, type DeviceAttesterPlatform } from './device-attester.js';
export { CommandGpuAttester, GPU_NONCE_TOKEN, DEFAULT_GPU_OUTPUT_LIMIT, DEFAULT_GPU_TIMEOUT_MS, type CommandGpuAttesterOptions } from './command-gpu.js';
