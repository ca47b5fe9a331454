import type { BrokerStorageConfig } from '../../config.js';
import { masterKeyFromEnv, masterKeyFromFile, type MasterKeyProvider } from './master-key.js';
import { masterKeyFromTpm } from './tpm-master-key.js';

export type MasterKeyConfig = Extract<BrokerStorageConfig['keystore'], { kind: 'embedded' }>['masterKey'];

/** The master key provider a storage configuration names: file, environment variable or TPM. */
export function masterKeyProviderFor(config: MasterKeyConfig, env: Record<string, string | undefined> = process.env): MasterKeyProvider {
  switch (config.source) {
    case 'file':
      return masterKeyFromFile(config.path);
    case 'env':
      return masterKeyFromEnv(env, config.variable);
    case 'tpm':
      return masterKeyFromTpm({
        path: config.path,
        ...(config.tcti !== undefined ? { tcti: config.tcti } : {}),
        ...(config.pcrs !== undefined ? { pcrs: config.pcrs } : {}),
        ...(config.bank !== undefined ? { bank: config.bank } : {}),
      });
  }
}
