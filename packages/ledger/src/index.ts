// @custody/ledger: the verify side of Custody's transparency log (browser-safe).
// RFC 6962/9162 Merkle hashing and proofs, C2SP signed-note, tlog-checkpoint, tlog-cosignature,
// tlog-tiles, tlog-witness, tlog-proof and tlog-policy, and the Custody event schema.

export { HASH_SIZE, rfc6962, type TreeHasher } from './merkle/hasher.js';
export { Sha256, sha256Sync } from './merkle/sha256.js';
export {
  MemoryTree,
  hashRanges,
  merkleRoot,
  rangePlan,
  treeRoot,
  type HashPlan,
  type HashSource,
  type LeafRange,
  type NodeId,
} from './merkle/tree.js';
export {
  MAX_PROOF_HASHES,
  consistencyProofRanges,
  inclusionProofRanges,
  proveConsistency,
  proveInclusion,
  rootFromInclusionProof,
  verifyConsistency,
  verifyInclusion,
} from './merkle/proof.js';

export {
  SIG_TYPE_COSIGNATURE_V1,
  SIG_TYPE_ED25519,
  computeKeyId,
  formatVerifierKey,
  generateSignerKey,
  isValidKeyName,
  parseVerifierKey,
  verifierKeyFingerprint,
  verifierKeyOfSigner,
  type SupportedSigType,
  type VerifierKey,
} from './note/keys.js';
export {
  MAX_NOTE_SIGNATURES,
  MAX_NOTE_SIZE,
  cosignatureMessage,
  cosignatureTimestamp,
  createCosignatureVerifier,
  createCosigner,
  createEd25519Signer,
  createEd25519Verifier,
  createVerifier,
  formatNote,
  openNote,
  parseNote,
  signNote,
  signatureLine,
  type NoteSignature,
  type NoteSigner,
  type NoteVerifier,
  type OpenedNote,
  type SignedNote,
  type VerifiedSignature,
} from './note/note.js';

export {
  formatCheckpointBody,
  openCheckpoint,
  parseCheckpointBody,
  signCheckpoint,
  type Checkpoint,
  type Cosignature,
  type OpenedCheckpoint,
} from './checkpoint/checkpoint.js';

export { TILE_HEIGHT, TILE_WIDTH, formatTileIndex, parseTilePath, tilePath, tileWidthAt, tilesForSize, type TileId } from './tiles/paths.js';
export { MAX_BUNDLE_SIZE, MAX_ENTRY_SIZE, encodeEntryBundle, parseEntryBundle } from './tiles/bundle.js';
export { HashTile, TileCache, TileHashSource, buildTileTree, tileHashes, type TileCacheOptions, type TileReader, type TileTree } from './tiles/tile-source.js';
export { integrate, type IntegrateInput, type IntegrateResult, type TileWrite } from './tiles/integrate.js';

export {
  TLOG_PROOF_HEADER,
  formatTlogProof,
  parseTlogProof,
  verifyTlogProof,
  type TlogProof,
  type TlogProofVerifyOptions,
  type VerifiedTlogProof,
} from './proof/tlog-proof.js';
export {
  formatTlogPolicy,
  parseTlogPolicy,
  policyVerifiers,
  quorumSatisfied,
  verifyCheckpointWithPolicy,
  type PolicyCheckpoint,
  type PolicyVerifiers,
  type PolicyVerifyOptions,
  type TlogPolicy,
} from './policy/policy.js';

export {
  MAX_ADD_CHECKPOINT_BODY,
  TLOG_SIZE_CONTENT_TYPE,
  formatAddCheckpoint,
  originHash,
  parseAddCheckpoint,
  parseTlogSize,
  type AddCheckpointRequest,
} from './witness/protocol.js';
export { MemoryWitnessStore, Witness, type WitnessOptions, type WitnessRecord, type WitnessResponse, type WitnessStore } from './witness/witness.js';
export { MAX_WITNESS_RESPONSE, joinUrl, requestCosignature, type FetchLike } from './witness/client.js';

export {
  buildTlogProof,
  consistencyProofFromTiles,
  httpLogSource,
  inclusionProofFromTiles,
  memoizeTileReader,
  readEntry,
  type LogSource,
} from './client/log-source.js';
export { LogMonitor, verifyEntryInLog, type MonitorFinding, type MonitorOptions, type MonitorState } from './monitor/monitor.js';

export {
  EVENT_TYPES,
  EVENT_VERSION,
  codeLooksLikeSecret,
  decodeEvent,
  encodeEvent,
  eventToString,
  looksLikeSecret,
  toCustodyEvent,
  validateEvent,
  type AuditSink,
  type CustodyEvent,
  type CustodyEventOf,
  type EventType,
  type Facts,
  type KeyRef,
  type Principal,
  type ServiceAuditEvent,
} from './events/events.js';
