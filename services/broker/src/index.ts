// @custody/broker-service: key management foundation of the attestation-gated key broker.

// key model and service
export type { KeyType, KeyState, KeyVersionState, KeyOrigin, KeyRecord, KeyVersionRecord, MaterialRef } from './keys/types.js';
export { KEY_TYPES, MAX_SECRET_BYTES, MAX_POLICY_CHARS } from './keys/types.js';
export { KeyService, releaseBinding } from './keys/key-service.js';
export type {
  KeyServiceOptions,
  KeyView,
  KeyVersionView,
  CreateKeyInput,
  ImportKeyInput,
  RotateKeyInput,
  ReleaseAttestation,
  ReleaseRequest,
  ReleasedKey,
  GeneratedDataKey,
  ApiKeyView,
} from './keys/key-service.js';
export type { ReleasePolicyEvaluator, ReleasePolicyInput, ReleasePolicyDecision } from './keys/release-policy.js';
export { encodeWrappedDataKey, decodeWrappedDataKey, envelopeAad } from './keys/envelope.js';
export type { WrappedDataKey, EncryptionContext } from './keys/envelope.js';

// key stores
export type { KeyStore, KeyStoreCapabilities, KeyWrapper, ReleaseContext, WrappedKey, RecipientKey, RecipientCurve, MaterialSpec, MaterialInfo, AeadCiphertext } from './keystore/types.js';
export { HpkeKeyWrapper, HPKE_KEY_WRAP_SCHEME, HPKE_SUITES } from './keystore/hpke-key-wrapper.js';
export { EmbeddedKeyStore } from './keystore/embedded/embedded-key-store.js';
export { masterKeyFromFile, masterKeyFromEnv, generateMasterKeyFile, MASTER_KEY_ENV } from './keystore/embedded/master-key.js';
export type { MasterKeyProvider } from './keystore/embedded/master-key.js';
export { masterKeyFromTpm, DEFAULT_TPM_TCTI, DEFAULT_SEAL_PCRS, type TpmMasterKeyOptions, type TpmSealBank } from './keystore/embedded/tpm-master-key.js';
export { masterKeyProviderFor, type MasterKeyConfig } from './keystore/embedded/master-key-source.js';
export { Pkcs11KeyStore } from './keystore/pkcs11/pkcs11-key-store.js';
export type { Pkcs11KeyStoreOptions } from './keystore/pkcs11/pkcs11-key-store.js';
export { PKCS11_RELEASE_SCHEME, openPkcs11Release } from './keystore/pkcs11/release-scheme.js';

// metadata
export type {
  MetadataStore,
  KeyRepository,
  SealedMaterialRepository,
  SessionRepository,
  SessionRecord,
  SessionState,
  ApiKeyRepository,
  ApiKeyRecord,
  AuditRepository,
  StoredAuditEvent,
  TenantPolicyRecord,
  TenantPolicyRepository,
  TenantPolicyStamp,
  ReleaseCheck,
  Role,
} from './metadata/types.js';
export { ROLES } from './metadata/types.js';
export { SqliteMetadataStore } from './metadata/sqlite/sqlite-metadata-store.js';
export { PostgresMetadataStore } from './metadata/postgres/postgres-metadata-store.js';
export type { PostgresMetadataStoreOptions } from './metadata/postgres/postgres-metadata-store.js';

// audit
export type { AuditSink, AuditEvent, AuditActor, AuditAction, AuditVerdict } from './audit/types.js';
export { InterimLocalAuditSink, FallbackAuditSink } from './audit/interim-local-audit-sink.js';

// auth
export type { Principal, Permission } from './auth/roles.js';
export { authorize, isAllowed } from './auth/roles.js';
export { issueApiKey, authenticateApiKey } from './auth/api-keys.js';
export type { IssuedApiKey } from './auth/api-keys.js';

// HTTP
export { createBrokerApp, apiKeyAuth } from './http/app.js';
export type { BrokerEnv, BrokerAppOptions } from './http/app.js';
export { ArrivingBodyBudget, BODY_BUDGET_BYTES, SMALL_BODY_BUDGET_BYTES, CLIENT_SHARE_DIVISOR, type ArrivingBodyLimits, type ArrivingBodyBound, type BodyLease } from './http/request-body.js';
export { statusFor, toProblem, problemResponse } from './http/problem.js';
export type { Problem } from './http/problem.js';
export { BrokerAdminClient } from './http/client.js';
export type { BrokerAdminClientOptions, CreateKeyRequest } from './http/client.js';

// assembly
export { BrokerStorageConfig, storageConfigFromEnv, parseStorageConfig } from './config.js';
export { ChallengeRateLimitConfig, DEFAULT_CHALLENGE_RATE_LIMIT, parseChallengeRateLimit, challengeRateLimitFromEnv, type ChallengeRateLimitInput } from './config.js';
export { ChallengeLimiter, TokenBuckets, clientAddressKey, type ChallengeLimiterOptions, type ChallengeLimitScope, type SessionSlot, type TokenBucketRate } from './attestation/challenge-limits.js';
export { openBroker, openMetadataStore, openKeyStore } from './broker.js';
export type { Broker, BrokerPlugins, AttestationPlugin } from './broker.js';
export { serveBroker, REQUEST_TIMEOUT_MS, HEADERS_TIMEOUT_MS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, DRAIN_MS } from './serve.js';
export type { RunningServer, ServeBrokerOptions, CloseOptions } from './serve.js';

// attestation-gated key release handshake (docs/key-release-protocol.md)
export { AttestationService, earLifetimeBound, HANDSHAKE_PLATFORMS, DEFAULT_NONCE_TTL_SECONDS, DEFAULT_SESSION_TTL_SECONDS, EAR_ISSUER, primaryMeasurement, DEVICE_PLATFORMS, MAX_DEVICES, MAX_COLLATERAL_ENTRIES } from './attestation/handshake.js';
export type { AttestationServiceOptions, EvidenceVerification, ChallengeResponse, AttestRequest, EncodedAttestRequest, AttestResponse, DeviceEvidenceInput, DevicePlatform, ReleaseRequest as HandshakeReleaseRequest, ReleaseResponse } from './attestation/handshake.js';
export { AppraisalPolicies, DEFAULT_DENY_POLICY_YAML } from './attestation/appraisal-policies.js';
export { TenantPolicies, type AppraisalPolicyResolver, type TenantPoliciesOptions, type TenantPolicyView, type TenantPolicyDeletion } from './attestation/tenant-policies.js';
export type { PolicySource } from './attestation/appraisal-policies.js';
export { EarSigner, DEFAULT_EAR_KEY_RELOAD_MS, EAR_KEY_RECHECK_MS, type EarSignerOptions, type EarKeyReload, type EarKeyCheck, type EarKeyRefreshTrigger } from './attestation/ear-signer.js';
export {
  rotateEarKeyFile,
  readEarKeyFile,
  EAR_KEY_SET_FORMAT,
  EAR_KEY_CLOCK_SKEW_SECONDS,
  EAR_KEY_RETENTION_SECONDS,
  EAR_KEY_LOCK_STALE_SECONDS,
  MAX_EAR_KEY_RELOAD_SECONDS,
  MAX_RETIRED_EAR_KEYS,
  type EarKeyRotation,
  type EarKeyRotationOptions,
  type EarKeySet,
  type EarKeyFileOwner,
  type ReadEarKeyFileOptions,
  type RetiredEarKey,
} from './attestation/ear-key-set.js';
export { CelReleasePolicyEvaluator, releasePolicyVariables } from './attestation/cel-release-policy.js';
export { buildRuntimeData, parseRuntimeData, runtimeDigest, runtimeDigestAlgorithm, teeKeyJwk, teeKeySpki, teeKeyFromSpki, MAX_RUNTIME_DATA } from './attestation/runtime-data.js';
export type { RuntimeData, TeeKeyJwk } from './attestation/runtime-data.js';
export { mountAttestationRoutes, isWorkloadRoute, MAX_ATTEST_BODY, MAX_SMALL_BODY } from './attestation/routes.js';
export { BrokerWorkloadClient, generateTeeKeyPair, openReleasedKey, fetchKey } from './attestation/workload-client.js';
export type { WorkloadClientOptions, TeeKeyPair, WorkloadAttester, WorkloadDeviceAttester, FetchKeyOptions, FetchedKey } from './attestation/workload-client.js';
export { startBroker } from './start.js';
export type { StartBrokerOptions, StartedBroker } from './start.js';
