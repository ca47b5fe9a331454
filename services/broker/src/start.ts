import { existsSync, rmSync } from 'node:fs';
import { makePrivateDir, privateDirWarning, secretFileWarning, writeNewSecretFile } from '@custody/crypto-node';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { CustodyError, isCustodyError, type Clock } from '@custody/core';
import { AppraisalPolicies, type PolicySource } from './attestation/appraisal-policies.js';
import { DEFAULT_EAR_KEY_RELOAD_MS, EarSigner } from './attestation/ear-signer.js';
import { earLifetimeBound } from './attestation/handshake.js';
import type { AuditSink } from './audit/types.js';
import { openBroker, type AttestationPlugin, type Broker } from './broker.js';
import { parseChallengeRateLimit, parseStorageConfig, type BrokerStorageConfig } from './config.js';
import type { ReleasePolicyEvaluator } from './keys/release-policy.js';
import { assertTenant } from './keys/types.js';
import { generateMasterKeyFile } from './keystore/embedded/master-key.js';
import type { KeyWrapper } from './keystore/types.js';
import type { ArrivingBodyLimits } from './http/request-body.js';
import { DRAIN_MS, serveBroker, type CloseOptions } from './serve.js';

export interface StartBrokerOptions {
  /** State directory (created 0700): broker.db (SQLite metadata), master.key, ear-signing-key.jwk. */
  dataDir: string;
  /** Default 0: a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  hostname?: string;
  /**
   * Appraisal policy for every tenant without its own: compiled, `{file}`, `{text}` or a file path. Default: deny everything.
   * Precedence per tenant, first match wins: the policy set through the API (`PUT /v1/policy`,
   * `custody policy set`, kept in the metadata store), then `tenantPolicies[tenant]`, then this,
   * then DEFAULT_DENY_POLICY_YAML (see TenantPolicies).
   */
  policy?: PolicySource | string;
  tenantPolicies?: Record<string, PolicySource | string>;
  /** Tenant of the bootstrap admin key. Default `default`. */
  tenant?: string;
  /**
   * `memory` (default): a fresh admin key for `tenant` on every start, returned and never written.
   * `file`: on the first start of a tenant without API keys, an admin key written to
   * `<dataDir>/admin-<tenant>.key` (0600); later starts issue none.
   */
  bootstrap?: 'memory' | 'file';
  /** Default: the embedded key store with `<dataDir>/master.key` (created on first start). */
  keystore?: 'embedded' | { kind: 'pkcs11'; library: string; tokenLabel: string; pin: string };
  /**
   * Master key of the embedded key store. `file` (default): `<dataDir>/master.key`, created on
   * first start. `tpm`: sealed to the TPM at `tcti` (default device:/dev/tpmrm0), optionally bound
   * to `pcrs` (default [0, 7]; [] = unbound); only the sealed blobs are kept, in
   * `<dataDir>/master-key.tpm.json`. An unseal failure stops the start (ERR_MASTER_KEY_TPM).
   */
  masterKey?: 'file' | { source: 'tpm'; tcti?: string; pcrs?: number[] };
  /** PostgreSQL connection string: metadata there (replicas) instead of `<dataDir>/broker.db`. */
  postgres?: string;
  /** The ledger's sink; events fall back to the interim table when it fails, and are forwarded when it is back. Default: the interim table. */
  audit?: AuditSink;
  /** After the ledger fails, how long events go straight to the interim table, and how often kept ones are offered again (default 30 s). */
  auditRetryMs?: number;
  /** Handshake settings besides the policies and the signer (verifier, roots, lifetimes). */
  attestation?: Omit<AttestationPlugin, 'policies' | 'signer'>;
  /** EAR signing key file; default `<dataDir>/ear-signing-key.jwk`. Replicas share one. */
  earKeyFile?: string;
  /**
   * How often the EAR key file is checked for a rotation (`custody broker rotate-ear-key`), in ms:
   * a stat, and a re-read only when it changed. 1 to 3 600 000, default 10 000 (0 is refused:
   * a replica that never looks would keep a dropped key). Besides, `reloadEarKey()` (SIGHUP in
   * `custody broker serve`) checks at once, and attestations and releases check at most once a
   * second. Retired keys stay published EAR_KEY_RETENTION_SECONDS whatever this is.
   */
  earKeyReloadMs?: number;
  /** Bounds on the request bodies held while they arrive, all clients together and per client address (createBrokerApp). */
  arrivingBodies?: ArrivingBodyLimits;
  /** Connections open at once; default MAX_CONNECTIONS. */
  maxConnections?: number;
  /**
   * Connections one client address may hold open; default MAX_CONNECTIONS_PER_CLIENT, and no
   * bound when `attestation.challengeRateLimit.trustProxy` says the broker is reached through
   * reverse proxies (the TCP peer is then a proxy; bodies are still shared per forwarded address).
   */
  maxConnectionsPerClient?: number | false;
  /**
   * How long `close()` lets requests in progress finish before it cuts their connections (it
   * stops accepting at once); default DRAIN_MS. `custody broker serve` closes on SIGTERM and SIGINT.
   */
  drainMs?: number;
  logger?: Logger;
  clock?: Clock;
  metrics?: Registry;
  wrapper?: KeyWrapper;
  releasePolicy?: ReleasePolicyEvaluator;
}

export interface StartedBroker {
  url: string;
  port: number;
  jwksUrl: string;
  tenant: string;
  /** An admin API key of `tenant` issued at this start (held in memory only; absent when none was issued). */
  adminKey?: string;
  /** The bootstrap admin key file (`bootstrap: 'file'`), whether written now or at an earlier start. */
  adminKeyFile?: string;
  /**
   * What in the state directory users other than its owner can get at: the directory if they can
   * write into it (they could put files of their own in place), the admin key file if they can
   * read or write it. Warned (and logged), not refused: the operator decides (a Kubernetes Secret
   * volume is group-readable unless its defaultMode says otherwise). The master key and EAR
   * signing key files are stricter: refused when group or others can get at them.
   */
  warnings: string[];
  /** True when `adminKeyFile` was written at this start. */
  adminKeyCreated: boolean;
  /** Policy ids loaded from files at start (policies set through the API override these per tenant: `broker.policies`). */
  policies: { default: string; tenants: Record<string, string> };
  storage: { metadata: 'sqlite' | 'postgres'; keystore: 'embedded' | 'pkcs11' };
  broker: Broker;
  /** Re-reads the EAR key file now; true when it changed (a rotation) and is now in use. Errors: ERR_EAR_KEY (the broker then signs, verifies and releases nothing until a usable file loads). */
  reloadEarKey(): Promise<boolean>;
  /**
   * Stops accepting connections, lets requests in progress finish for `drainMs` (default: the
   * start option, else DRAIN_MS; 0 cuts them at once), then closes the stores. Answers given
   * meanwhile carry `Connection: close`; idle connections are closed at once.
   */
  close(options?: CloseOptions): Promise<void>;
}

/**
 * Starts a broker with embedded defaults: state in `dataDir`, the handshake mounted, served on
 * loopback. For `custody broker serve` and `custody up` (composed with the ledger and gateway).
 */
export async function startBroker(options: StartBrokerOptions): Promise<StartedBroker> {
  const tenant = options.tenant ?? 'default';
  assertTenant(tenant);
  makePrivateDir(options.dataDir);
  const keystore = options.keystore ?? 'embedded';
  let keystoreConfig: BrokerStorageConfig['keystore'];
  if (keystore === 'embedded') {
    const mk = options.masterKey ?? 'file';
    if (mk === 'file') {
      const masterKey = join(options.dataDir, 'master.key');
      if (!existsSync(masterKey)) generateMasterKeyFile(masterKey);
      keystoreConfig = { kind: 'embedded', masterKey: { source: 'file', path: masterKey } };
    } else {
      keystoreConfig = {
        kind: 'embedded',
        masterKey: { source: 'tpm', path: join(options.dataDir, 'master-key.tpm.json'), ...(mk.tcti !== undefined ? { tcti: mk.tcti } : {}), ...(mk.pcrs !== undefined ? { pcrs: mk.pcrs } : {}) },
      };
    }
  } else {
    keystoreConfig = keystore;
  }
  const config = parseStorageConfig({
    metadata: options.postgres ? { kind: 'postgres', url: options.postgres } : { kind: 'sqlite', path: join(options.dataDir, 'broker.db') },
    keystore: keystoreConfig,
  });
  const tenants: Record<string, PolicySource> = {};
  for (const [t, p] of Object.entries(options.tenantPolicies ?? {})) tenants[t] = source(p);
  const policies = await AppraisalPolicies.load({ ...(options.policy !== undefined ? { defaultPolicy: source(options.policy) } : {}), tenants });
  const earKeyFile = options.earKeyFile ?? join(options.dataDir, 'ear-signing-key.jwk');
  const signer = await EarSigner.open(earKeyFile, {
    maxEarLifetimeSeconds: earLifetimeBound(options.attestation),
    reloadIntervalMs: options.earKeyReloadMs ?? DEFAULT_EAR_KEY_RELOAD_MS,
    ...(options.clock ? { clock: options.clock } : {}),
  });
  const broker = await openBroker(config, {
    attestation: { ...options.attestation, policies, signer },
    ...(options.releasePolicy ? { policy: options.releasePolicy } : {}),
    ...(options.audit ? { audit: options.audit } : {}),
    ...(options.auditRetryMs !== undefined ? { auditRetryMs: options.auditRetryMs } : {}),
    ...(options.logger ? { logger: options.logger } : {}),
    ...(options.clock ? { clock: options.clock } : {}),
    ...(options.metrics ? { metrics: options.metrics } : {}),
    ...(options.wrapper ? { wrapper: options.wrapper } : {}),
    ...(options.arrivingBodies ? { arrivingBodies: options.arrivingBodies } : {}),
  });
  // Mtime polling rather than a signal: replicas converge on a rotated file without anyone
  // signalling each one, and the poll interval bounds how long an idle one keeps signing with
  // (and publishing) a retired or dropped key.
  const stopWatching = signer.watch({
    onReload: (r) => options.logger?.info({ op: 'ear-key.reload', kid: r.kid, retired: r.retired }, 'EAR signing key file re-read: signing with the current key'),
    // Once per bad version of the file (the code and a fixed reason, never its contents).
    onError: (e) => options.logger?.error({ op: 'ear-key.reload', code: e.code, reason: e.message }, 'the EAR signing key file changed and cannot be used: no EAR is signed, verified or released on until a usable file is in place'),
  });
  try {
    let adminKey: string | undefined;
    let adminKeyFile: string | undefined;
    let adminKeyCreated = false;
    if ((options.bootstrap ?? 'memory') === 'memory') {
      adminKey = (await broker.service.bootstrapAdminKey(tenant, 'start')).token;
    } else {
      adminKeyFile = join(options.dataDir, `admin-${tenant}.key`);
      if (!existsSync(adminKeyFile) && (await broker.metadata.listApiKeys(tenant)).length === 0) {
        // The key file is written before the key is stored: a full disk or a crash never leaves a
        // stored key that nobody holds (which would stop every later bootstrap).
        const file = adminKeyFile;
        let wrote = false;
        try {
          const issued = await broker.service.bootstrapAdminKey(tenant, 'bootstrap', (token) => {
            writeNewSecretFile(file, token + '\n');
            wrote = true;
          });
          adminKey = issued.token;
        } catch (e) {
          // Not stored (the audit event comes after the key is stored): the file names no key, and goes.
          if (wrote && !(isCustodyError(e) && e.code === 'ERR_STORE_AUDIT_UNAVAILABLE')) rmSync(file, { force: true });
          throw e;
        }
        adminKeyCreated = true;
      } else if (!existsSync(adminKeyFile)) {
        adminKeyFile = undefined;
      } else if ((await broker.metadata.listApiKeys(tenant)).length === 0) {
        // A key file from an earlier start, and a store that never issued a key: the database was
        // emptied or replaced. Starting would serve an empty broker that no key in hand can manage.
        throw new CustodyError('ERR_STORE_CONFIG', `${adminKeyFile} was issued by this broker, but its metadata store holds no API key: the database was emptied or replaced; restore it, or move the key file away to start anew`, {
          detail: { adminKeyFile },
        });
      }
    }
    // Behind reverse proxies every connection comes from one of them: no bound per TCP peer then.
    const behindProxies = parseChallengeRateLimit(options.attestation?.challengeRateLimit).trustProxy !== false;
    const maxConnectionsPerClient = options.maxConnectionsPerClient ?? (behindProxies ? false : undefined);
    const server = await serveBroker(broker.app, {
      ...(options.port !== undefined ? { port: options.port } : {}),
      ...(options.hostname ? { hostname: options.hostname } : {}),
      ...(options.maxConnections !== undefined ? { maxConnections: options.maxConnections } : {}),
      ...(maxConnectionsPerClient !== undefined ? { maxConnectionsPerClient } : {}),
    });
    const warnings = [
      privateDirWarning(options.dataDir, 'broker state directory'),
      adminKeyFile !== undefined ? secretFileWarning(adminKeyFile, 'admin key file') : undefined,
    ].filter((w): w is string => w !== undefined);
    for (const w of warnings) options.logger?.warn({ op: 'broker.start' }, w);
    let closed: Promise<void> | undefined;
    return {
      warnings,
      url: server.url,
      port: server.port,
      jwksUrl: `${server.url}/.well-known/jwks.json`,
      tenant,
      ...(adminKey !== undefined ? { adminKey } : {}),
      ...(adminKeyFile !== undefined ? { adminKeyFile } : {}),
      adminKeyCreated,
      policies: policies.describe(),
      storage: { metadata: config.metadata.kind, keystore: config.keystore.kind },
      broker,
      reloadEarKey: () => signer.reload(),
      close(o: CloseOptions = {}) {
        stopWatching();
        const drainMs = o.drainMs ?? options.drainMs ?? DRAIN_MS;
        // A second call with a shorter drain (0: a second signal) cuts what is still in progress.
        const stopped = server.close({ drainMs });
        closed ??= stopped.finally(() => broker.close());
        return closed;
      },
    };
  } catch (e) {
    stopWatching();
    await broker.close();
    throw e;
  }
}

function source(p: PolicySource | string): PolicySource {
  return typeof p === 'string' ? { file: p } : p;
}
