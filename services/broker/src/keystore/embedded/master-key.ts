import { readFileSync, statSync } from 'node:fs';
import { writeNewSecretFile } from '@custody/crypto-node';
import { CustodyError, fromBase64, fromUtf8, secureRandom, subtle, toBase64, wipe, type Bytes } from '@custody/core';

export const MASTER_KEY_ENV = 'CUSTODY_MASTER_KEY';
export const MASTER_KEY_BYTES = 32;

/**
 * Where the embedded key store's master key comes from. The key is imported into a
 * non-extractable WebCrypto AES-GCM key and the raw bytes are wiped immediately.
 *
 * Sources: a file (`masterKeyFromFile`), an environment variable (`masterKeyFromEnv`, base64),
 * and a key sealed to the TPM (`masterKeyFromTpm` in tpm-master-key.ts: tpm2_create under an
 * optional PCR policy, tpm2_unseal at start). `masterKeyProviderFor` picks one from the config.
 */
export interface MasterKeyProvider {
  /** Public description for logs: the source kind and path or variable name, never the key. */
  readonly description: string;
  load(): Promise<CryptoKey>;
}

export function masterKeyFromFile(path: string): MasterKeyProvider {
  return {
    description: `file:${path}`,
    async load() {
      let mode: number;
      let size: number;
      try {
        const st = statSync(path);
        mode = st.mode;
        size = st.size;
      } catch (e) {
        throw new CustodyError('ERR_STORE_MASTER_KEY', 'master key file cannot be read', { cause: e, detail: { path } });
      }
      // A master key readable by group or others is a misconfiguration: refuse to start.
      if ((mode & 0o077) !== 0) {
        throw new CustodyError('ERR_STORE_MASTER_KEY', 'master key file must not be accessible by group or others (chmod 600)', { detail: { path, mode: (mode & 0o777).toString(8) } });
      }
      if (size > 1024) throw new CustodyError('ERR_STORE_MASTER_KEY', 'master key file is too large', { detail: { path, size } });
      const raw = readFileSync(path);
      try {
        return await importMasterKey(decodeMasterKey(new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength)));
      } finally {
        raw.fill(0);
      }
    },
  };
}

export function masterKeyFromEnv(env: Record<string, string | undefined> = process.env, variable = MASTER_KEY_ENV): MasterKeyProvider {
  return {
    description: `env:${variable}`,
    async load() {
      const value = env[variable];
      if (value === undefined || value === '') throw new CustodyError('ERR_STORE_MASTER_KEY', `${variable} is not set`, { detail: { variable } });
      let raw: Bytes;
      try {
        raw = fromBase64(value.trim());
      } catch {
        throw new CustodyError('ERR_STORE_MASTER_KEY', `${variable} is not base64`, { detail: { variable } });
      }
      return importMasterKey(raw);
    },
  };
}

/** A file holds either exactly 32 raw bytes or the base64 text of 32 bytes. */
function decodeMasterKey(content: Uint8Array): Bytes {
  if (content.length === MASTER_KEY_BYTES) return content.slice();
  let text: string;
  try {
    text = fromUtf8(content).trim();
  } catch {
    throw new CustodyError('ERR_STORE_MASTER_KEY', 'master key file must hold 32 raw bytes or their base64');
  }
  try {
    return fromBase64(text);
  } catch {
    throw new CustodyError('ERR_STORE_MASTER_KEY', 'master key file must hold 32 raw bytes or their base64');
  }
}

/** Imports 32 raw bytes as a non-extractable AES-GCM key and wipes `raw` (always). */
export async function importMasterKey(raw: Bytes): Promise<CryptoKey> {
  try {
    if (raw.length !== MASTER_KEY_BYTES) throw new CustodyError('ERR_STORE_MASTER_KEY', 'master key must be 32 bytes', { detail: { length: raw.length } });
    return await subtle.importKey('raw', raw, { name: 'AES-GCM' }, false, ['encrypt', 'decrypt']);
  } finally {
    wipe(raw);
  }
}

/** Writes a new random master key as base64 to `path` with mode 0600 (fails if it exists). */
export function generateMasterKeyFile(path: string): void {
  const raw = secureRandom(MASTER_KEY_BYTES);
  try {
    // All or nothing: a full disk must not leave an empty master key file that every later start refuses.
    writeNewSecretFile(path, toBase64(raw) + '\n');
  } finally {
    wipe(raw);
  }
}
