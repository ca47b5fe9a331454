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
