// @custody/ledger-service: the Node side of Custody's transparency log.
export { TransparencyLog, checkpointSize, type TransparencyLogOptions, type WitnessConfig } from './log.js';
export { FsTileStore } from './storage/tile-store.js';
export { nodeTreeHasher } from './hasher.js';
export { SqliteSequencer } from './sequencer/sqlite.js';
export { PostgresSequencer } from './sequencer/postgres.js';
export type { Sequencer, TreeState } from './sequencer/types.js';
export { createEventsNodeHandler, createLogApp } from './http/log-app.js';
export { controlConnections, peerAddressKey, type ConnectionControl, type ConnectionControlOptions, type PerClientLimit } from './http/connection-control.js';
export { BodyBudget, endWhole, readNodeBody, type DrainBounds, type NodeIntercept } from './http/node-server.js';
export { newWriterKey, parseWriters, writerKeyFrom, type Writers } from './http/writers.js';
export { problem, readBodyLimited, statusFor } from './http/problem.js';
export { SqliteWitnessStore, createWitnessApp, witnessLogs } from './witness/witness-service.js';
export { CLEARTEXT_KEY_WARNING, DRAIN_MS, HttpAuditSink, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_CLIENT, listen, openLog, type CloseOptions, type ListenOptions, type OpenLogConfig, type RunningServer } from './open.js';
// The interface the key broker and gateway write to; TransparencyLog and HttpAuditSink implement it.
export type { AuditSink, CustodyEvent, ServiceAuditEvent } from '@custody/ledger';
