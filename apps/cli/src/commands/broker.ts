import { join } from 'node:path';
import type { Command } from 'commander';
import { CustodyError, toCustodyError } from '@custody/core';
import { CLEARTEXT_KEY_WARNING, HttpAuditSink, writerKeyFrom } from '@custody/ledger-service';
import {
  BODY_BUDGET_BYTES,
  challengeRateLimitFromEnv,
  CLIENT_SHARE_DIVISOR,
  DEFAULT_EAR_KEY_RELOAD_MS,
  DRAIN_MS,
  EAR_KEY_RETENTION_SECONDS,
  MAX_ATTEST_BODY,
  MAX_CONNECTIONS,
  MAX_CONNECTIONS_PER_CLIENT,
  MAX_SMALL_BODY,
  rotateEarKeyFile,
  SMALL_BODY_BUDGET_BYTES,
  startBroker,
  storageConfigFromEnv,
  type EarKeyRotation,
  type PolicySource,
  type StartBrokerOptions,
  type StartedBroker,
} from '@custody/broker-service';
import type { Register } from './index.js';
import { EXIT_BAD_INPUT, EXIT_UNAVAILABLE } from '../exit.js';
import { MAX_CONNECTIONS_BOUND, parseCount, parseSeconds } from '../numbers.js';
import { commandName, failWith, printJson, shellWord } from '../output.js';

/** How long the broker waits for the ledger to take an audit event before keeping it in its interim table. */
const BROKER_LEDGER_TIMEOUT_MS = 4000;

export const DEFAULT_BROKER_PORT = 8787;
export const DEFAULT_DATA_DIR = './custody-data';
/** The EAR signing key file's name in the data directory. */
export const EAR_KEY_FILE = 'ear-signing-key.jwk';

interface ServeOptions {
  port?: string;
  host?: string;
  data?: string;
  policy?: string[];
  keystore?: string;
  masterKey?: string;
  masterKeyPcrs?: string;
  postgres?: string;
  tenant?: string;
  earKey?: string;
  logLevel?: string;
  requireWorkloadKey?: boolean;
  ledger?: string;
  ledgerKeyEnv?: string;
  maxConnections?: string;
  maxConnectionsPerClient?: string;
  maxArrivingBodyBytes?: string;
  maxArrivingBodyBytesPerClient?: string;
  maxArrivingSmallBodyBytes?: string;
  maxArrivingSmallBodyBytesPerClient?: string;
  drain?: string;
  json?: boolean;
}

interface RotateEarKeyOptions {
  data?: string;
  earKey?: string;
  overlap?: boolean;
  json?: boolean;
}

/** A duration in seconds as the CLI prints it: `10 s`, `25 h 1 min`. */
export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds} s`;
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  return [h ? `${h} h` : '', m ? `${m} min` : '', s ? `${s} s` : ''].filter(Boolean).join(' ');
}

const RELOAD_INTERVAL = formatSeconds(DEFAULT_EAR_KEY_RELOAD_MS / 1000);

/** What `broker rotate-ear-key` prints: kids, times and the file's owner, never key material. */
export function describeRotation(r: EarKeyRotation): string[] {
  const lines = [`EAR signing key rotated in ${r.linked ? `${r.file} (the target of the symbolic link ${r.path}, which is left as it is)` : r.path}`, `  new kid      ${r.kid} (signs every EAR from the brokers' next re-read of the file)`];
  if (r.overlap) {
    lines.push(`  retired kid  ${r.previousKid} (retired ${r.retiredAt}; every broker publishes it until ${r.publishedUntil}, ${formatSeconds(EAR_KEY_RETENTION_SECONDS)}: the longest EAR lifetime and reload interval any broker may use, + clock skew)`);
  } else {
    lines.push(`  dropped kid  ${r.previousKid} (no overlap: its EARs stop verifying at the brokers' next re-read)`);
  }
  const others = r.dropped.filter((k) => k !== r.previousKid);
  if (others.length > 0) lines.push(`  dropped      ${others.join(', ')} (retired keys no broker publishes any more)`);
  lines.push(`  owner        uid ${r.owner.uid}, gid ${r.owner.gid} (kept from the previous file, mode 0600: the brokers must run as uid ${r.owner.uid})`);
  lines.push(
    '',
    `Running brokers sharing the file re-read it within their reload interval (default ${RELOAD_INTERVAL}), at once on SIGHUP, and within a second when they attest or release.`,
  );
  if (!r.overlap) lines.push('A broker re-reads the file on each JWKS fetch too (at most once a second), so the dropped key leaves its JWKS at once; verifiers that cached the JWKS (max-age 300 s) may trust it until they fetch it again.');
  return lines;
}

/** Errors of `rotate-ear-key`: an unusable key file is bad input (exit 2), a concurrent rotation is worth retrying (exit 3). */
function failRotation(e: unknown, json: boolean): never {
  const err = toCustodyError(e);
  const exit = err.code === 'ERR_EAR_KEY' || err.code === 'ERR_EAR_KEY_OWNER' ? EXIT_BAD_INPUT : err.code === 'ERR_KEY_CONFLICT' ? EXIT_UNAVAILABLE : undefined;
  if (exit === undefined) failWith(err, json);
  if (json) printJson({ ok: false, errors: [err.toJSON()] });
  else process.stderr.write(`custody: ${err.code}: ${err.message}\n`);
  process.exit(exit);
}

/** `--policy FILE` sets the default policy; `--policy TENANT=FILE` a tenant's (repeatable). */
export function parsePolicyOptions(values: readonly string[]): { policy?: PolicySource; tenantPolicies: Record<string, PolicySource> } {
  const out: { policy?: PolicySource; tenantPolicies: Record<string, PolicySource> } = { tenantPolicies: {} };
  for (const v of values) {
    const m = /^([a-z0-9][a-z0-9-]{0,62})=(.+)$/.exec(v);
    if (m) {
      if (out.tenantPolicies[m[1]!]) throw new CustodyError('ERR_USAGE', `--policy names tenant ${m[1]} twice`);
      out.tenantPolicies[m[1]!] = { file: m[2]! };
    } else {
      if (out.policy) throw new CustodyError('ERR_USAGE', 'give one default --policy FILE (and TENANT=FILE for tenant policies)');
      out.policy = { file: v };
    }
  }
  return out;
}

function port(s: string | undefined): number {
  if (s === undefined) return DEFAULT_BROKER_PORT;
  if (!/^[0-9]{1,5}$/.test(s) || Number(s) > 65535) throw new CustodyError('ERR_USAGE', '--port must be 0..65535 (0 picks a free port)');
  return Number(s);
}

/** A per-client bound, refused when above the bound of all clients together (`of`, given or default). */
function perClient(s: string | undefined, name: string, min: number, max: number, of: number, ofName: string): number | undefined {
  if (s === undefined) return undefined;
  const n = parseCount(s, name, min, max);
  if (n > of) throw new CustodyError('ERR_USAGE', `${name} (${n}) must not exceed ${ofName} (${of})`);
  return n;
}

type ServeLimits = Pick<StartBrokerOptions, 'maxConnections' | 'maxConnectionsPerClient' | 'arrivingBodies' | 'drainMs'>;

/**
 * The connection, body and drain bounds of `broker serve`, checked before anything starts. A body
 * budget or share is at least one body of the largest size it serves: below that, such a body
 * would be refused (503, retry later) however long its sender retried.
 */
function serveLimits(opts: ServeOptions): ServeLimits {
  const maxConnections = parseCount(opts.maxConnections ?? String(MAX_CONNECTIONS), '--max-connections', 1, MAX_CONNECTIONS_BOUND);
  const maxConnectionsPerClient = perClient(opts.maxConnectionsPerClient, '--max-connections-per-client', 1, MAX_CONNECTIONS_BOUND, maxConnections, '--max-connections');
  const large = parseCount(opts.maxArrivingBodyBytes ?? String(BODY_BUDGET_BYTES), '--max-arriving-body-bytes', MAX_ATTEST_BODY);
  const largePerClient = perClient(opts.maxArrivingBodyBytesPerClient, '--max-arriving-body-bytes-per-client', MAX_ATTEST_BODY, Number.MAX_SAFE_INTEGER, large, '--max-arriving-body-bytes');
  const small = parseCount(opts.maxArrivingSmallBodyBytes ?? String(SMALL_BODY_BUDGET_BYTES), '--max-arriving-small-body-bytes', MAX_SMALL_BODY);
  const smallPerClient = perClient(opts.maxArrivingSmallBodyBytesPerClient, '--max-arriving-small-body-bytes-per-client', MAX_SMALL_BODY, Number.MAX_SAFE_INTEGER, small, '--max-arriving-small-body-bytes');
  return {
    maxConnections,
    ...(maxConnectionsPerClient !== undefined ? { maxConnectionsPerClient } : {}),
    arrivingBodies: {
      maxArrivingBodyBytes: large,
      ...(largePerClient !== undefined ? { maxArrivingBodyBytesPerClient: largePerClient } : {}),
      maxArrivingSmallBodyBytes: small,
      ...(smallPerClient !== undefined ? { maxArrivingSmallBodyBytesPerClient: smallPerClient } : {}),
    },
    drainMs: parseSeconds(opts.drain ?? String(DRAIN_MS / 1000), '--drain', 0),
  };
}

function keystore(kind: string | undefined): StartBrokerOptions['keystore'] {
  if (kind === undefined || kind === 'embedded') return 'embedded';
  if (kind !== 'pkcs11') throw new CustodyError('ERR_USAGE', '--keystore must be embedded or pkcs11');
  if (!process.env.CUSTODY_PKCS11_LIBRARY) throw new CustodyError('ERR_STORE_CONFIG', '--keystore pkcs11 needs CUSTODY_PKCS11_LIBRARY, CUSTODY_PKCS11_TOKEN and CUSTODY_PKCS11_PIN (or CUSTODY_PKCS11_PIN_FILE)');
  const config = storageConfigFromEnv({ ...process.env, CUSTODY_DATABASE_URL: undefined }).keystore;
  if (config.kind !== 'pkcs11') throw new CustodyError('ERR_STORE_CONFIG', 'the PKCS#11 configuration is incomplete');
  return config;
}

/** `--master-key file|tpm[:TCTI]` and `--master-key-pcrs 0,7|none` into startBroker's option. */
export function masterKeyOption(source: string | undefined, pcrs: string | undefined): NonNullable<StartBrokerOptions['masterKey']> {
  const s = source ?? 'file';
  if (s === 'file') {
    if (pcrs !== undefined) throw new CustodyError('ERR_USAGE', '--master-key-pcrs applies to --master-key tpm only');
    return 'file';
  }
  const m = /^tpm(?::(.+))?$/.exec(s);
  if (!m) throw new CustodyError('ERR_USAGE', '--master-key must be file or tpm[:TCTI] (e.g. tpm:device:/dev/tpmrm0, tpm:swtpm:host=127.0.0.1,port=2321)');
  let list: number[] | undefined;
  if (pcrs !== undefined) {
    if (pcrs === 'none') list = [];
    else if (/^([0-9]{1,2})(,[0-9]{1,2})*$/.test(pcrs) && pcrs.split(',').every((p) => Number(p) <= 23)) list = pcrs.split(',').map(Number);
    else throw new CustodyError('ERR_USAGE', '--master-key-pcrs must be a list of PCR indices 0..23 (e.g. 0,7) or none');
  }
  return { source: 'tpm', ...(m[1] !== undefined ? { tcti: m[1] } : {}), ...(list !== undefined ? { pcrs: list } : {}) };
}

/**
 * The ledger writer key from environment variable `name`, checked (ERR_USAGE when malformed) and
 * removed from the environment, so processes this one starts do not inherit it.
 */
export function takeWriterKey(name: string): string | undefined {
  const value = process.env[name];
  delete process.env[name];
  return value === undefined || value === '' ? undefined : writerKeyFrom(value);
}

/** A connection string without its password, for printing. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}

/** What `broker serve` prints at start: where everything is, and the next commands to run (as this CLI was invoked). */
export function startupLines(b: StartedBroker, dataDir: string, postgres: string | undefined, tpmMasterKey: boolean, ledger: HttpAuditSink | undefined): string[] {
  const lines = [`custody broker listening on ${b.url}`];
  const embedded = tpmMasterKey ? 'embedded key store with its master key sealed to the TPM (master-key.tpm.json), ' : 'embedded key store with master.key, ';
  lines.push(`  data       ${dataDir} (${b.storage.metadata === 'sqlite' ? 'SQLite metadata, ' : ''}${b.storage.keystore === 'embedded' ? embedded : ''}EAR signing key)`);
  if (postgres) lines.push(`  metadata   PostgreSQL ${redactUrl(postgres)}`);
  if (b.storage.keystore === 'pkcs11') lines.push(`  keys       PKCS#11 token ${process.env.CUSTODY_PKCS11_TOKEN ?? ''} (${process.env.CUSTODY_PKCS11_LIBRARY ?? ''})`);
  lines.push(`  JWKS       ${b.jwksUrl}`);
  lines.push(ledger ? `  ledger     ${ledger.location} (every audit event; kept in the local interim table only while the ledger fails)` : `  audit      local interim table in ${dataDir} (hash-chained; give --ledger URL to log to the transparency ledger)`);
  if (ledger?.sendsKeyInClear) lines.push(`  WARNING    ${CLEARTEXT_KEY_WARNING}`);
  const deny = b.policies.default.startsWith('custody:policy:default-deny:');
  lines.push(`  policy     ${deny ? 'none configured: every workload is refused (give --policy FILE)' : b.policies.default}`);
  for (const [t, id] of Object.entries(b.policies.tenants)) lines.push(`             tenant ${t}: ${id}`);
  if (b.adminKeyCreated) lines.push(`  admin key  tenant ${b.tenant}: written to ${b.adminKeyFile} (mode 0600; it is not shown anywhere else)`);
  else if (b.adminKeyFile) lines.push(`  admin key  tenant ${b.tenant}: in ${b.adminKeyFile} (created at the first start)`);
  else lines.push(`  admin key  tenant ${b.tenant} already has API keys; no bootstrap key was issued`);
  const custody = commandName();
  if (b.adminKeyFile) lines.push('', `  ${custody} keys list --broker ${b.url} --api-key-file ${shellWord(b.adminKeyFile)}`);
  lines.push(`  ${custody} fetch-key <name> --broker ${b.url} --tenant ${shellWord(b.tenant)} --out key.bin`);
  return lines;
}

export const register: Register = (program: Command) => {
  const broker = program.command('broker').description('Run the attestation-gated key broker');

  broker
    .command('serve')
    .description('serve the key broker: the key release handshake (challenge, attest, release) and the admin API')
    .addHelpText(
      'after',
      '\nState lives in --data: SQLite metadata, the embedded key store and its master key, the EAR signing key.\n' +
        'On the first start of a tenant its bootstrap admin key is written to <data>/admin-<tenant>.key (mode 0600);\n' +
        'it is never printed or logged. Stop with Ctrl-C (SIGINT) or SIGTERM: requests in progress may finish for up to --drain\n' +
        'seconds (new connections are refused meanwhile); a second signal stops at once.\n' +
        'Past --max-connections (or a client address\'s --max-connections-per-client: an IPv4 address, an IPv6 /64) a new\n' +
        'connection is closed as it is accepted. Request bodies still arriving are bounded all together and per client address,\n' +
        'attestations and admin bodies apart from challenges and key releases; past a bound a body is refused with 503 (retry later).\n' +
        `The EAR key file is re-read when it changes (checked every ${RELOAD_INTERVAL}, within a second of an attestation or release, at once on SIGHUP): see \`custody broker rotate-ear-key\`.`,
    )
    .option('--port <n>', `TCP port (0 picks a free one)`, String(DEFAULT_BROKER_PORT))
    .option('--host <addr>', 'address to listen on', '127.0.0.1')
    .option('--data <dir>', 'state directory (created 0700)', DEFAULT_DATA_DIR)
    .option('--policy <[tenant=]file>', 'appraisal policy (YAML or JSON): the default, or one tenant\'s as TENANT=FILE; repeatable. None: every workload is refused', (v: string, prev: string[] = []) => [...prev, v])
    .option('--keystore <kind>', 'embedded (default) or pkcs11 (CUSTODY_PKCS11_LIBRARY, _TOKEN, _PIN or _PIN_FILE)', 'embedded')
    .option('--master-key <source>', 'master key of the embedded key store: file (<data>/master.key) or tpm[:TCTI] (sealed to the TPM, default TCTI device:/dev/tpmrm0)', 'file')
    .option('--master-key-pcrs <list>', 'with --master-key tpm: PCRs (sha256) the key is sealed to when first created, e.g. 0,7 (default), or none')
    .option('--postgres <url>', 'PostgreSQL for metadata, shared by replicas (else env CUSTODY_DATABASE_URL, else SQLite in --data)')
    .option('--tenant <name>', 'tenant of the bootstrap admin key', 'default')
    .option('--ear-key <file>', 'EAR signing key file (default <data>/ear-signing-key.jwk; replicas share one; rotate with `custody broker rotate-ear-key`)')
    .option('--require-workload-key', 'challenges need a workload API key of the tenant (default: the attestation is the only credential)')
    .option('--log-level <level>', 'log level of the JSON logs on stderr: debug, info, warn, error', 'info')
    .option('--ledger <url>', 'transparency ledger (`custody log serve`) for every audit event: appraisals, releases, refusals, admin changes (default: the local interim table only)')
    .option('--ledger-key-env <name>', 'environment variable holding the broker\'s writer key for --ledger (`custody log writer-key`), when the log admits its writers only', 'CUSTODY_LEDGER_KEY')
    .option('--max-connections <n>', 'connections open at once, all clients together', String(MAX_CONNECTIONS))
    .option('--max-connections-per-client <n>', `connections one client address may hold open (default ${MAX_CONNECTIONS_PER_CLIENT}; behind proxies, CUSTODY_BROKER_TRUST_PROXY, none unless given, and then per proxy)`)
    .option('--max-arriving-body-bytes <n>', `bytes of attestation and admin bodies held while they arrive, all clients together (at least ${MAX_ATTEST_BODY})`, String(BODY_BUDGET_BYTES))
    .option('--max-arriving-body-bytes-per-client <n>', `one client address's share of it (default 1/${CLIENT_SHARE_DIVISOR}, at least ${MAX_ATTEST_BODY})`)
    .option('--max-arriving-small-body-bytes <n>', `bytes of challenge and key release bodies held while they arrive, all clients together (at least ${MAX_SMALL_BODY})`, String(SMALL_BODY_BUDGET_BYTES))
    .option('--max-arriving-small-body-bytes-per-client <n>', `one client address's share of it (default 1/${CLIENT_SHARE_DIVISOR}, at least ${MAX_SMALL_BODY})`)
    .option('--drain <seconds>', 'on SIGTERM or SIGINT, how long requests in progress may finish before their connections are cut (0: at once)', String(DRAIN_MS / 1000))
    .option('--json', 'print the startup facts as one JSON line')
    .action(async (opts: ServeOptions) => {
      const json = opts.json === true;
      try {
        const limits = serveLimits(opts);
        const { pino } = await import('pino');
        const { Registry, collectDefaultMetrics } = await import('prom-client');
        if (!['debug', 'info', 'warn', 'error'].includes(opts.logLevel ?? 'info')) throw new CustodyError('ERR_USAGE', '--log-level must be debug, info, warn or error');
        const logger = pino({ level: opts.logLevel ?? 'info', base: { service: 'custody-broker' } }, pino.destination(2));
        const metrics = new Registry();
        collectDefaultMetrics({ register: metrics });
        const policies = parsePolicyOptions(opts.policy ?? []);
        const dataDir = opts.data ?? DEFAULT_DATA_DIR;
        const postgres = opts.postgres ?? (process.env.CUSTODY_DATABASE_URL || undefined);
        const masterKey = masterKeyOption(opts.masterKey, opts.masterKeyPcrs);
        const writerKey = opts.ledger !== undefined ? takeWriterKey(opts.ledgerKeyEnv ?? 'CUSTODY_LEDGER_KEY') : undefined;
        // A ledger that hangs costs an audited call at most 4 s (then its event waits in the
        // interim table), within the 10 s that clients give the broker.
        const audit = opts.ledger !== undefined ? await HttpAuditSink.connect(opts.ledger, undefined, { ...(writerKey ? { writerKey } : {}), timeoutMs: BROKER_LEDGER_TIMEOUT_MS }) : undefined;
        if (masterKey !== 'file' && (opts.keystore ?? 'embedded') !== 'embedded') throw new CustodyError('ERR_USAGE', '--master-key tpm applies to the embedded key store only');
        const started = await startBroker({
          dataDir,
          port: port(opts.port),
          hostname: opts.host ?? '127.0.0.1',
          tenant: opts.tenant ?? 'default',
          bootstrap: 'file',
          keystore: keystore(opts.keystore),
          masterKey,
          ...(postgres ? { postgres } : {}),
          ...(policies.policy ? { policy: policies.policy } : {}),
          tenantPolicies: policies.tenantPolicies,
          ...(opts.earKey ? { earKeyFile: opts.earKey } : {}),
          ...(audit ? { audit } : {}),
          // Challenge rate limits from CUSTODY_BROKER_TRUST_PROXY, _CHALLENGE_BURST,
          // _CHALLENGE_PER_SECOND and _MAX_SESSIONS (defaults when unset).
          attestation: { challengeRateLimit: challengeRateLimitFromEnv(), ...(opts.requireWorkloadKey ? { requireWorkloadApiKey: true } : {}) },
          ...limits,
          logger,
          metrics,
        });
        if (json) {
          process.stdout.write(
            JSON.stringify({
              ok: true,
              url: started.url,
              jwks: started.jwksUrl,
              tenant: started.tenant,
              adminKeyFile: started.adminKeyFile ?? null,
              adminKeyCreated: started.adminKeyCreated,
              policies: started.policies,
              storage: started.storage,
              ledger: audit?.location ?? null,
            }) + '\n',
          );
        } else {
          process.stdout.write(startupLines(started, dataDir, postgres, masterKey !== 'file', audit).join('\n') + '\n');
        }
        for (const w of started.warnings) process.stderr.write(`custody: warning: ${w}\n`);
        logger.info({ url: started.url, metadata: started.storage.metadata, keystore: started.storage.keystore, policy: started.policies.default }, 'broker listening');
        let stopping = false;
        // The first signal drains (requests in progress, a key release among them, may finish for
        // --drain; new connections are refused); a second one cuts what is left at once.
        const stop = (signal: string) => {
          if (stopping) {
            logger.warn({ signal }, 'broker stopping now: requests still in progress are cut');
            void started.close({ drainMs: 0 });
            return;
          }
          stopping = true;
          logger.info({ signal }, 'broker stopping: requests in progress may finish');
          void started.close().then(
            () => process.exit(0),
            () => process.exit(1),
          );
        };
        process.on('SIGINT', () => stop('SIGINT'));
        process.on('SIGTERM', () => stop('SIGTERM'));
        // SIGHUP: re-read the EAR key file now (after `custody broker rotate-ear-key`) instead of at the next check.
        process.on('SIGHUP', () => {
          started.reloadEarKey().then(
            (changed) => logger.info({ signal: 'SIGHUP', op: 'ear-key.reload', changed }, changed ? 'EAR signing key file re-read: signing with the current key' : 'EAR signing key file unchanged'),
            (e: unknown) => logger.error({ signal: 'SIGHUP', op: 'ear-key.reload', code: toCustodyError(e).code }, 'the EAR signing key file changed and cannot be used: no EAR is signed, verified or released on until a usable file is in place'),
          );
        });
      } catch (e) {
        failWith(e, json);
      }
    });

  broker
    .command('rotate-ear-key')
    .description('rotate the broker\'s EAR signing key: a new key signs from now on, the previous one stays published while EARs it signed can be valid')
    .addHelpText(
      'after',
      '\nThe key file becomes a key set: the new private key, and the retired keys\' public halves with their retirement time.\n' +
        'It is replaced atomically (a 0600 file renamed over it, owned by the owner of the old one: run this as that user or root;\n' +
        'one rotation at a time, by a lock file beside it). Running brokers sharing it (replicas) pick it up within their reload\n' +
        `interval (default ${RELOAD_INTERVAL}), at once on SIGHUP, and within a second when they attest or release. A retired key stays\n` +
        `published ${formatSeconds(EAR_KEY_RETENTION_SECONDS)}. Only kids are printed.\n` +
        'With --no-overlap the previous key and all retired keys are dropped: every EAR issued so far stops verifying\n' +
        '(a broker re-reads the file on each JWKS fetch too, at most once a second; verifiers caching the JWKS, max-age 300 s,\n' +
        'may trust the dropped key that much longer). A symbolic link given as the key file is followed: the file it leads to\n' +
        'is replaced (beside it) and the link kept. If a broker meets a changed key file it cannot use, it fails closed: it\n' +
        'signs, verifies and releases nothing (ERR_EAR_KEY) and publishes an empty JWKS until a usable file is in place.',
    )
    .option('--data <dir>', 'the broker\'s state directory', DEFAULT_DATA_DIR)
    .option('--ear-key <file>', `EAR signing key file (default <data>/${EAR_KEY_FILE})`)
    .option('--no-overlap', 'drop the previous and every retired key at once (a compromised key): outstanding EARs stop verifying')
    .option('--json', 'print the result as JSON')
    .action(async (opts: RotateEarKeyOptions) => {
      const json = opts.json === true;
      try {
        const path = opts.earKey ?? join(opts.data ?? DEFAULT_DATA_DIR, EAR_KEY_FILE);
        const r = await rotateEarKeyFile(path, { overlap: opts.overlap !== false });
        for (const w of r.warnings) process.stderr.write(`custody: warning: ${w}\n`);
        if (json) {
          printJson({
            ok: true,
            file: r.path,
            target: r.file,
            kid: r.kid,
            retiredKid: r.overlap ? r.previousKid : null,
            retiredAt: r.retiredAt,
            publishedUntil: r.publishedUntil,
            overlap: r.overlap,
            retired: r.retired,
            dropped: r.dropped,
            owner: r.owner,
            warnings: r.warnings,
          });
        } else {
          process.stdout.write(describeRotation(r).join('\n') + '\n');
        }
      } catch (e) {
        failRotation(e, json);
      }
    });
};
