import { pino, type Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Hono } from 'hono';
import type { Clock } from '@custody/core';
import { FallbackAuditSink, InterimLocalAuditSink } from './audit/interim-local-audit-sink.js';
import type { AuditSink } from './audit/types.js';
import type { BrokerStorageConfig } from './config.js';
import { createBrokerApp, type BrokerEnv } from './http/app.js';
import { KeyService } from './keys/key-service.js';
import type { ReleasePolicyEvaluator } from './keys/release-policy.js';
import { EmbeddedKeyStore } from './keystore/embedded/embedded-key-store.js';
import { masterKeyFromEnv, masterKeyFromFile } from './keystore/embedded/master-key.js';
import { HpkeKeyWrapper } from './keystore/hpke-key-wrapper.js';
import { Pkcs11KeyStore } from './keystore/pkcs11/pkcs11-key-store.js';
import type { KeyStore, KeyWrapper } from './keystore/types.js';
import { PostgresMetadataStore } from './metadata/postgres/postgres-metadata-store.js';
import { SqliteMetadataStore } from './metadata/sqlite/sqlite-metadata-store.js';
import type { MetadataStore } from './metadata/types.js';

/** What other packages plug into the broker. */
export interface BrokerPlugins {
  /** Wrapping to the TEE key; default HpkeKeyWrapper (@custody/core HPKE). */
  wrapper?: KeyWrapper;
  /** CEL release policies (packages/policy). */
  policy: ReleasePolicyEvaluator;
  /** The transparency ledger's sink. Events fall back to the interim local table when it fails; without it they go there directly. */
  audit?: AuditSink;
  logger?: Logger;
  clock?: Clock;
  metrics?: Registry;
  env?: Record<string, string | undefined>;
}

export interface Broker {
  service: KeyService;
  app: Hono<BrokerEnv>;
  metadata: MetadataStore;
  keystore: KeyStore;
  close(): Promise<void>;
}

export async function openMetadataStore(config: BrokerStorageConfig['metadata']): Promise<MetadataStore> {
  return config.kind === 'sqlite' ? SqliteMetadataStore.open(config.path) : PostgresMetadataStore.open({ connectionString: config.url, maxConnections: config.maxConnections });
}

export async function openKeyStore(config: BrokerStorageConfig['keystore'], metadata: MetadataStore, env: Record<string, string | undefined> = process.env): Promise<KeyStore> {
  if (config.kind === 'pkcs11') return Pkcs11KeyStore.open({ library: config.library, tokenLabel: config.tokenLabel, pin: config.pin });
  const master = config.masterKey.source === 'file' ? masterKeyFromFile(config.masterKey.path) : masterKeyFromEnv(env, config.masterKey.variable);
  return EmbeddedKeyStore.open(master, metadata);
}

/** Opens the stores, wires the key service and the HTTP app. Close it to release pools and the HSM. */
export async function openBroker(config: BrokerStorageConfig, plugins: BrokerPlugins): Promise<Broker> {
  const logger = plugins.logger ?? pino({ level: 'silent' });
  const metadata = await openMetadataStore(config.metadata);
  let keystore: KeyStore;
  try {
    keystore = await openKeyStore(config.keystore, metadata, plugins.env);
  } catch (e) {
    await metadata.close();
    throw e;
  }
  const interim = new InterimLocalAuditSink(metadata);
  const audit = plugins.audit ? new FallbackAuditSink(plugins.audit, interim, (e) => logger.error({ code: (e as { code?: string }).code ?? 'unknown' }, 'audit sink failed; event kept in the interim table')) : interim;
  const service = new KeyService({ metadata, keystore, audit, wrapper: plugins.wrapper ?? new HpkeKeyWrapper(), policy: plugins.policy, logger, ...(plugins.clock ? { clock: plugins.clock } : {}) });
  const app = createBrokerApp({ service, apiKeys: metadata, logger, ...(plugins.metrics ? { metrics: plugins.metrics } : {}) });
  logger.info({ metadata: config.metadata.kind, keystore: config.keystore.kind }, 'broker storage open');
  return {
    service,
    app,
    metadata,
    keystore,
    async close() {
      await keystore.close();
      await metadata.close();
    },
  };
}
