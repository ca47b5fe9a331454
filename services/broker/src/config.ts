import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { CustodyError } from '@custody/core';

/**
 * Broker storage configuration. Metadata: SQLite file (default) or PostgreSQL (replicas).
 * Key store: embedded (master key from a file, an environment variable, or sealed to the TPM) or PKCS#11.
 */
export const BrokerStorageConfig = z
  .object({
    metadata: z.discriminatedUnion('kind', [
      z.object({ kind: z.literal('sqlite'), path: z.string().min(1) }).strict(),
      z.object({ kind: z.literal('postgres'), url: z.string().min(1), maxConnections: z.number().int().min(1).max(200).optional() }).strict(),
    ]),
    keystore: z.discriminatedUnion('kind', [
      z
        .object({
          kind: z.literal('embedded'),
          masterKey: z.discriminatedUnion('source', [
            z.object({ source: z.literal('file'), path: z.string().min(1) }).strict(),
            z.object({ source: z.literal('env'), variable: z.string().min(1).optional() }).strict(),
            z
              .object({
                source: z.literal('tpm'),
                /** The sealed-blob file (public/private parts of the TPM data object, never the key). */
                path: z.string().min(1),
                tcti: z.string().min(1).max(512).optional(),
                /** PCRs the key is bound to when sealed; [] = no PCR policy. Default [0, 7]. */
                pcrs: z.array(z.number().int().min(0).max(23)).max(24).optional(),
                bank: z.enum(['sha1', 'sha256', 'sha384', 'sha512']).optional(),
              })
              .strict(),
          ]),
        })
        .strict(),
      z.object({ kind: z.literal('pkcs11'), library: z.string().min(1), tokenLabel: z.string().min(1), pin: z.string().min(1) }).strict(),
    ]),
  })
  .strict();

export type BrokerStorageConfig = z.infer<typeof BrokerStorageConfig>;

/**
 * Reads the storage configuration from the environment:
 *   CUSTODY_DATABASE_URL          postgres://... : metadata in PostgreSQL (else SQLite)
 *   CUSTODY_BROKER_DB             SQLite path (default ./custody-broker.db)
 *   CUSTODY_PKCS11_LIBRARY        PKCS#11 module path : keys in the HSM (else embedded)
 *   CUSTODY_PKCS11_TOKEN          token label
 *   CUSTODY_PKCS11_PIN or CUSTODY_PKCS11_PIN_FILE
 *   CUSTODY_MASTER_KEY_FILE       master key file (0600), else CUSTODY_MASTER_KEY (base64)
 */
export function storageConfigFromEnv(env: Record<string, string | undefined> = process.env): BrokerStorageConfig {
  const metadata = env.CUSTODY_DATABASE_URL
    ? { kind: 'postgres' as const, url: env.CUSTODY_DATABASE_URL }
    : { kind: 'sqlite' as const, path: env.CUSTODY_BROKER_DB ?? './custody-broker.db' };
  let keystore: BrokerStorageConfig['keystore'];
  if (env.CUSTODY_PKCS11_LIBRARY) {
    const pin = env.CUSTODY_PKCS11_PIN ?? (env.CUSTODY_PKCS11_PIN_FILE ? readPinFile(env.CUSTODY_PKCS11_PIN_FILE) : undefined);
    if (!env.CUSTODY_PKCS11_TOKEN || !pin) throw new CustodyError('ERR_STORE_CONFIG', 'CUSTODY_PKCS11_TOKEN and CUSTODY_PKCS11_PIN (or _PIN_FILE) are required with CUSTODY_PKCS11_LIBRARY');
    keystore = { kind: 'pkcs11', library: env.CUSTODY_PKCS11_LIBRARY, tokenLabel: env.CUSTODY_PKCS11_TOKEN, pin };
  } else {
    keystore = { kind: 'embedded', masterKey: env.CUSTODY_MASTER_KEY_FILE ? { source: 'file', path: env.CUSTODY_MASTER_KEY_FILE } : { source: 'env' } };
  }
  return parseStorageConfig({ metadata, keystore });
}

export function parseStorageConfig(value: unknown): BrokerStorageConfig {
  const parsed = BrokerStorageConfig.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CustodyError('ERR_STORE_CONFIG', `invalid storage configuration at ${issue?.path.join('.') || '(root)'}`);
  }
  return parsed.data;
}

function readPinFile(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (e) {
    throw new CustodyError('ERR_STORE_CONFIG', 'PKCS#11 PIN file cannot be read', { cause: e, detail: { path } });
  }
}

const TokenBucketRate = z
  .object({
    /** Challenges a client may make at once (the bucket's size). */
    burst: z.number().int().min(1).max(100_000),
    /** Tokens added back per second (the sustained rate). */
    perSecond: z.number().positive().max(100_000),
  })
  .strict();

/**
 * Limits on `POST /v1/attest/challenge`, the handshake's one unauthenticated write (each
 * challenge is a session row). A token bucket per client address and one per workload API key
 * (when one is presented); both must have a token. Plus a cap on the sessions this replica has
 * opened that have not yet expired (session TTL), which bounds the rows a flood from many
 * addresses can add. Refusals: 429 ERR_RATE_LIMITED with Retry-After.
 */
export const ChallengeRateLimitConfig = z
  .object({
    /** Default true. */
    enabled: z.boolean(),
    perAddress: TokenBucketRate,
    perApiKey: TokenBucketRate,
    /**
     * Buckets kept per kind (addresses, API keys). A bucket idle long enough to be full again is
     * dropped (it is the same as a new one); past the bound the least recently used goes.
     */
    maxBuckets: z.number().int().min(16).max(1_000_000),
    /** Sessions opened by this replica and not yet expired; a challenge beyond it is refused. */
    maxOutstandingSessions: z.number().int().min(1).max(10_000_000),
    /**
     * Whether the client address comes from X-Forwarded-For. false (default): the TCP peer.
     * true, or a number N of trusted reverse proxies in front of the broker: the N-th address
     * from the right of X-Forwarded-For (true = 1). Only when every request reaches the broker
     * through those proxies, since the header is otherwise whatever the client wrote.
     */
    trustProxy: z.union([z.boolean(), z.number().int().min(1).max(16)]),
  })
  .strict();

export type ChallengeRateLimitConfig = z.infer<typeof ChallengeRateLimitConfig>;

/** Partial settings: whatever is left out keeps its default. */
export type ChallengeRateLimitInput = Partial<Omit<ChallengeRateLimitConfig, 'perAddress' | 'perApiKey'>> & {
  perAddress?: Partial<ChallengeRateLimitConfig['perAddress']>;
  perApiKey?: Partial<ChallengeRateLimitConfig['perApiKey']>;
};

/**
 * Defaults: a workload (or a NAT in front of a few) may open 60 sessions at once and 10 a
 * second after that, per address and per API key; a replica holds at most 20 000 live sessions
 * (with the default 300 s session TTL, about 66 new handshakes a second sustained); no proxy.
 */
export const DEFAULT_CHALLENGE_RATE_LIMIT: ChallengeRateLimitConfig = Object.freeze({
  enabled: true,
  perAddress: Object.freeze({ burst: 60, perSecond: 10 }),
  perApiKey: Object.freeze({ burst: 60, perSecond: 10 }),
  maxBuckets: 10_000,
  maxOutstandingSessions: 20_000,
  trustProxy: false,
});

/** Validates `input` over the defaults; ERR_USAGE names the first bad field. */
export function parseChallengeRateLimit(input: ChallengeRateLimitInput | undefined = {}): ChallengeRateLimitConfig {
  const d = DEFAULT_CHALLENGE_RATE_LIMIT;
  const merged = {
    ...d,
    ...input,
    perAddress: { ...d.perAddress, ...input.perAddress },
    perApiKey: { ...d.perApiKey, ...input.perApiKey },
  };
  const parsed = ChallengeRateLimitConfig.safeParse(merged);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CustodyError('ERR_USAGE', `invalid challenge rate limit at ${issue?.path.join('.') || '(root)'}`);
  }
  return parsed.data;
}

/**
 * Rate-limit settings from the environment (each optional, over the defaults):
 *   CUSTODY_BROKER_TRUST_PROXY             false | true | <number of trusted proxies>
 *   CUSTODY_BROKER_CHALLENGE_BURST         per address and per API key
 *   CUSTODY_BROKER_CHALLENGE_PER_SECOND    per address and per API key
 *   CUSTODY_BROKER_MAX_SESSIONS            live sessions per replica
 *   CUSTODY_BROKER_CHALLENGE_LIMIT=off     disables the limits (tests, a broker behind its own limiter)
 */
export function challengeRateLimitFromEnv(env: Record<string, string | undefined> = process.env): ChallengeRateLimitConfig {
  const input: ChallengeRateLimitInput = {};
  const num = (name: string): number | undefined => {
    const v = env[name];
    if (v === undefined || v === '') return undefined;
    if (!/^[0-9]+(\.[0-9]+)?$/.test(v)) throw new CustodyError('ERR_USAGE', `${name} must be a number`);
    return Number(v);
  };
  const proxy = env.CUSTODY_BROKER_TRUST_PROXY;
  if (proxy !== undefined && proxy !== '') {
    if (proxy === 'true' || proxy === 'false') input.trustProxy = proxy === 'true';
    else input.trustProxy = num('CUSTODY_BROKER_TRUST_PROXY')!;
  }
  const burst = num('CUSTODY_BROKER_CHALLENGE_BURST');
  const perSecond = num('CUSTODY_BROKER_CHALLENGE_PER_SECOND');
  const rate = { ...(burst !== undefined ? { burst } : {}), ...(perSecond !== undefined ? { perSecond } : {}) };
  input.perAddress = rate;
  input.perApiKey = rate;
  const maxSessions = num('CUSTODY_BROKER_MAX_SESSIONS');
  if (maxSessions !== undefined) input.maxOutstandingSessions = maxSessions;
  const limit = env.CUSTODY_BROKER_CHALLENGE_LIMIT;
  if (limit !== undefined && limit !== '') {
    if (limit !== 'on' && limit !== 'off') throw new CustodyError('ERR_USAGE', 'CUSTODY_BROKER_CHALLENGE_LIMIT must be on or off');
    input.enabled = limit === 'on';
  }
  return parseChallengeRateLimit(input);
}
