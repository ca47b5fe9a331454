// @custody/gateway-service: the confidential inference gateway (Node) and its OHTTP relay.
export { Gateway, type GatewayOptions } from './gateway.js';
export { createGatewayApp, type GatewayAppDeps } from './http/app.js';
export { listen, MAX_CONNECTIONS, type CloseOptions, type ListenOptions, type NodeIntercept, type RunningServer } from './http/serve.js';
export { statusFor, toProblem, problemResponse, type GatewayProblem } from './http/problem.js';
export { AttestationManager, type AttestationState, type AttestationSnapshot, type AttestationManagerOptions, type AttestedDevice } from './attestation/attestation-manager.js';
export { isRefusal, isIdentityRefusal, releasedKeyName, releasedKeyVersion, type BrokerClient, type BrokerChallenge, type BrokerAttestRequest, type BrokerAttestResult, type ReleasedKeyEnvelope } from './attestation/broker-client.js';
export { LocalAppraisalBroker, type LocalAppraisalBrokerOptions } from './attestation/local-broker.js';
export { HttpBrokerClient, type HttpBrokerClientOptions } from './attestation/http-broker-client.js';
export { InMemoryLedgerSink, type InMemoryLedgerOptions, type LedgerSink } from './ledger/ledger-sink.js';
export { GatewayKeys, OhttpKeyRing, ReceiptSigner, deriveGatewayIdentity, identityKeyId, IDENTITY_DERIVATION_SALT, MIN_IDENTITY_SECRET, type GatewayIdentity, type IdentityKeyVersion } from './keys/gateway-keys.js';
export { TenantDirectory, parseGatewayPolicy, apiKeyDigest, type Tenant, type TenantConfig, type GatewayPolicyDocument } from './pipeline/tenants.js';
export { applyInputPolicy, restoreJson, restoreSseStream, type InferenceRoute, type InputPolicyResult } from './pipeline/policy.js';
export { InferencePipeline, type InnerResponse } from './pipeline/inference.js';
export {
  ReplayGuard,
  MemoryReplayStore,
  SqliteReplayStore,
  PostgresReplayStore,
  openReplayStore,
  replayKey,
  type ReplayStore,
  type SqliteReplayStoreOptions,
  type PostgresReplayStoreOptions,
  type ReplayStoreSettings,
} from './pipeline/replay-guard.js';
export type { ModelBackend, ModelInfo, BackendRequest, BackendResponse } from './backends/types.js';
export { UpstreamBackend, type UpstreamBackendOptions } from './backends/upstream.js';
export { DemoBackend, DEMO_MODEL_ID, DEMO_MODEL_LABEL, demoReply, demoEmbedding } from './backends/demo.js';
export { LlamaCppBackend, describeGgufFile, readGgufHeader, type LlamaCppBackendOptions } from './backends/llama-cpp.js';
export { parseGgufHeader, encodeGgufMetadata, GGUF_MAGIC, type GgufHeader, type GgufValue } from './backends/gguf.js';
export { sealModelFile, unsealModelFile, unsealModelInto, openModelFile, readSealedModelHeader, isSealedModelFile, parseSealedModelPrefix, SEALED_MODEL_FORMAT, SEALED_MODEL_MAGIC, DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE, MAX_CHUNK_SIZE, SEALED_KEY_NAME, type SealedModelHeader, type SealedModelInfo, type SealOptions } from './backends/sealed-model.js';
export { SealedModelBackend, checkMemoryBacked, DEFAULT_PLAINTEXT_DIR, type SealedModelBackendOptions } from './backends/sealed-backend.js';
export { createRelayApp, type RelayOptions } from './relay/relay.js';
export { GatewayMetrics } from './observability/metrics.js';
export { createGatewayLogger, gatewayLogDestination } from './observability/logger.js';
export { launchGateway, launchRelay, runConfidentialRequest, DEV_SIM_MEASUREMENT, type LaunchGatewayConfig, type LaunchedGateway } from './launch.js';
