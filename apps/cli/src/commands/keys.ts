import type { Command } from 'commander';
import { existsSync, lstatSync, rmSync } from 'node:fs';
import { checkServiceUrl, CustodyError, fromBase64, fromHex, fromUtf8, parsePem, toCustodyError, wipe, type Bytes } from '@custody/core';
import { BrokerAdminClient, KEY_TYPES, type ApiKeyView, type KeyType, type KeyView } from '@custody/broker-service/client';
import { writeNewSecretFile } from '@custody/crypto-node';
import { printableLine } from '@custody/sdk';
import type { Register } from './index.js';
import { readInputFile, readSecretFile } from '../files.js';
import { failWith, printJson } from '../output.js';

export const DEFAULT_BROKER_URL = 'http://127.0.0.1:8787';

export interface ConnectionOptions {
  broker?: string;
  apiKeyFile?: string;
  json?: boolean;
}

/**
 * The admin API key comes from a file (--api-key-file) or CUSTODY_API_KEY, never from a flag
 * value, so it does not show up in process listings or shell history.
 */
function apiKey(opts: ConnectionOptions): string {
  if (opts.apiKeyFile) {
    return fromUtf8(readSecretFile(opts.apiKeyFile, 'API key file')).trim();
  }
  const env = process.env.CUSTODY_API_KEY;
  if (env) return env.trim();
  throw new CustodyError('ERR_USAGE', 'an admin API key is needed: --api-key-file <path> or CUSTODY_API_KEY');
}

export function client(opts: ConnectionOptions): BrokerAdminClient {
  const baseUrl = opts.broker ?? process.env.CUSTODY_BROKER_URL ?? DEFAULT_BROKER_URL;
  checkServiceUrl(baseUrl, '--broker');
  return new BrokerAdminClient({ baseUrl, apiKey: apiKey(opts) });
}

function keyType(s: string | undefined): KeyType {
  if (!s || !(KEY_TYPES as readonly string[]).includes(s)) throw new CustodyError('ERR_USAGE', `--type must be one of ${KEY_TYPES.join(', ')}`);
  return s as KeyType;
}

function positiveInt(s: string | undefined, what: string): number | undefined {
  if (s === undefined) return undefined;
  if (!/^[0-9]{1,6}$/.test(s)) throw new CustodyError('ERR_USAGE', `${what} must be a positive integer`);
  return Number(s);
}

export function policyOf(opts: { policy?: string; policyFile?: string }): string | undefined {
  if (opts.policy !== undefined && opts.policyFile !== undefined) throw new CustodyError('ERR_USAGE', 'give --policy or --policy-file, not both');
  if (opts.policyFile !== undefined) return fromUtf8(readInputFile(opts.policyFile, 'policy file')).trim();
  return opts.policy;
}

function exportableOf(opts: { exportable?: boolean; nonExportable?: boolean }): boolean | undefined {
  if (opts.exportable && opts.nonExportable) throw new CustodyError('ERR_USAGE', 'give --exportable or --non-exportable, not both');
  return opts.nonExportable ? false : opts.exportable ? true : undefined;
}

/**
 * Reads key material from a file. Signing keys: PKCS#8 DER or a PEM "PRIVATE KEY" block.
 * AES keys and secrets: the raw bytes, or text in --encoding base64|hex.
 */
export function readMaterial(path: string, type: KeyType, encoding: string | undefined): Bytes {
  const raw = readSecretFile(path, 'key material file');
  if (type === 'ed25519' || type === 'ecdsa-p256') {
    if (raw[0] === 0x30) return raw;
    let text: string;
    try {
      text = fromUtf8(raw);
    } finally {
      wipe(raw);
    }
    const block = parsePem(text).find((b) => b.label === 'PRIVATE KEY');
    if (!block) throw new CustodyError('ERR_KEY_MATERIAL', 'signing keys must be PKCS#8: DER, or PEM with a "PRIVATE KEY" block');
    return block.der;
  }
  if (encoding === undefined || encoding === 'raw') return raw;
  try {
    const text = fromUtf8(raw).trim();
    if (encoding === 'base64') return fromBase64(text);
    if (encoding === 'hex') return fromHex(text);
    throw new CustodyError('ERR_USAGE', '--encoding must be raw, base64 or hex');
  } catch (e) {
    if (e instanceof CustodyError && e.code === 'ERR_USAGE') throw e;
    throw new CustodyError('ERR_KEY_MATERIAL', `key material file is not ${encoding}`);
  } finally {
    wipe(raw);
  }
}

// Text from the broker goes to the terminal through printableLine: a control character in it
// must not move the cursor, clear the screen or forge a row.
function printKey(key: KeyView, json: boolean, verb: string): void {
  if (json) return printJson({ ok: true, key });
  const current = key.versions.find((v) => v.version === key.currentVersion);
  process.stdout.write(printableLine(`${verb} ${key.name} (${key.type}): state ${key.state}, version ${key.currentVersion}${current ? ` (${current.origin})` : ''}, ${key.exportable ? 'exportable' : 'non-exportable'}, ${key.releasePolicy === null ? 'no release policy (never released)' : 'release policy set'}`) + '\n');
  if (current?.publicKey) process.stdout.write(printableLine(`public key (SPKI, base64): ${current.publicKey}`) + '\n');
}

function printApiKey(k: ApiKeyView): void {
  process.stdout.write(printableLine(`${k.id}  ${k.role.padEnd(8)}  ${k.revokedAt ? 'revoked ' + k.revokedAt : 'active  '}  ${k.label}`) + '\n');
}

/** Removes the claim on `path` (the empty file created before the broker was asked) if it is still that. */
function releaseClaim(path: string): void {
  const st = lstatSync(path, { throwIfNoEntry: false });
  if (st?.isFile() && st.size === 0) rmSync(path, { force: true });
}

/**
 * The error for a key file that could not be written after the broker issued the key: the key is
 * revoked (best effort), since nobody holds its token, and the error says whether it was.
 */
async function revokeUnwritten(c: BrokerAdminClient, id: string, path: string, e: unknown): Promise<CustodyError> {
  const err = toCustodyError(e);
  let revoked = true;
  try {
    await c.revokeApiKey(id);
  } catch {
    revoked = false;
  }
  const why = typeof err.detail?.errno === 'string' ? ` (${err.detail.errno})` : err.code === 'ERR_FILE_EXISTS' ? ' (it was replaced meanwhile)' : '';
  const outcome = revoked ? `the new API key ${id} was revoked at the broker` : `the new API key ${id} could not be revoked at the broker: revoke it with \`custody keys api-key revoke ${id}\``;
  return new CustodyError(err.code, `cannot write ${path}${why}; ${outcome}`, { cause: e, detail: { ...err.detail, path, apiKeyId: id, apiKeyRevoked: revoked } });
}

function printList(keys: KeyView[], json: boolean): void {
  if (json) return printJson({ ok: true, keys });
  if (keys.length === 0) return void process.stdout.write('no keys\n');
  const rows = [['NAME', 'TYPE', 'STATE', 'VERSION', 'VERSIONS', 'EXPORTABLE', 'POLICY']];
  for (const k of keys) rows.push([k.name, k.type, k.state, String(k.currentVersion), String(k.versions.length), k.exportable ? 'yes' : 'no', k.releasePolicy === null ? '-' : 'set'].map(printableLine));
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
}

export function connection(cmd: Command): Command {
  return cmd
    .option('--broker <url>', `broker URL (env CUSTODY_BROKER_URL, default ${DEFAULT_BROKER_URL})`)
    .option('--api-key-file <path>', 'file holding an admin API key (else env CUSTODY_API_KEY)')
    .option('--json', 'print JSON');
}

export const register: Register = (program) => {
  const keys = program
    .command('keys')
    .description('Manage keys in a Custody broker: create, import, rotate, revoke, destroy, list.\nTalks to the broker over HTTP with an admin API key of your tenant.');

  connection(keys.command('list'))
    .description("list the tenant's keys (metadata only; key material never leaves the broker this way)")
    .action(async (opts: ConnectionOptions) => {
      try {
        printList(await client(opts).listKeys(), opts.json === true);
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });

  connection(keys.command('create <name>'))
    .description('generate a new key inside the broker key store')
    .requiredOption('--type <type>', `key type: ${KEY_TYPES.join(', ')}`)
    .option('--policy <cel>', 'release policy (CEL over the attestation result); without one the key is never released')
    .option('--policy-file <path>', 'read the release policy from a file')
    .option('--exportable', 'allow release to attested workloads (default for aes-256 and secret)')
    .option('--non-exportable', 'never release; the key is only used inside the store (default for signing keys)')
    .option('--length <bytes>', 'length of a generated secret (default 32, at most 65536)')
    .action(async (name: string, opts: ConnectionOptions & { type?: string; policy?: string; policyFile?: string; exportable?: boolean; nonExportable?: boolean; length?: string }) => {
      try {
        const type = keyType(opts.type);
        const policy = policyOf(opts);
        const exportable = exportableOf(opts);
        const length = positiveInt(opts.length, '--length');
        const key = await client(opts).createKey({ name, type, ...(policy !== undefined ? { releasePolicy: policy } : {}), ...(exportable !== undefined ? { exportable } : {}), ...(length !== undefined ? { length } : {}) });
        printKey(key, opts.json === true, 'created');
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });

  connection(keys.command('import <name>'))
    .description('import existing key material as a new key (raw AES/secret bytes, or PKCS#8 for signing keys)')
    .requiredOption('--type <type>', `key type: ${KEY_TYPES.join(', ')}`)
    .requiredOption('--file <path>', 'file holding the material')
    .option('--encoding <enc>', 'for aes-256 and secret: raw (default), base64 or hex')
    .option('--policy <cel>', 'release policy (CEL over the attestation result)')
    .option('--policy-file <path>', 'read the release policy from a file')
    .option('--exportable', 'allow release to attested workloads')
    .option('--non-exportable', 'never release')
    .action(async (name: string, opts: ConnectionOptions & { type?: string; file: string; encoding?: string; policy?: string; policyFile?: string; exportable?: boolean; nonExportable?: boolean }) => {
      let material: Bytes | undefined;
      try {
        const type = keyType(opts.type);
        const policy = policyOf(opts);
        const exportable = exportableOf(opts);
        const c = client(opts);
        material = readMaterial(opts.file, type, opts.encoding);
        const key = await c.importKey({ name, type, material, ...(policy !== undefined ? { releasePolicy: policy } : {}), ...(exportable !== undefined ? { exportable } : {}) });
        printKey(key, opts.json === true, 'imported');
      } catch (e) {
        failWith(e, opts.json === true);
      } finally {
        if (material) wipe(material);
      }
    });

  connection(keys.command('rotate <name>'))
    .description('add a new current version; older versions stay for decryption only and are never released')
    .option('--file <path>', 'import the new version from a file instead of generating it')
    .option('--encoding <enc>', 'for --file with aes-256 and secret: raw (default), base64 or hex')
    .option('--length <bytes>', 'length of a generated secret (default: the previous length)')
    .action(async (name: string, opts: ConnectionOptions & { file?: string; encoding?: string; length?: string }) => {
      let material: Bytes | undefined;
      try {
        const c = client(opts);
        const length = positiveInt(opts.length, '--length');
        if (opts.file !== undefined) {
          const current = await c.getKey(name);
          material = readMaterial(opts.file, current.type, opts.encoding);
        }
        const key = await c.rotateKey(name, { ...(material ? { material } : {}), ...(length !== undefined ? { length } : {}) });
        printKey(key, opts.json === true, 'rotated');
      } catch (e) {
        failWith(e, opts.json === true);
      } finally {
        if (material) wipe(material);
      }
    });

  connection(keys.command('revoke <name>'))
    .description('revoke now: no release, wrap or unwrap from this moment on, including sessions in flight (irreversible)')
    .option('--reason <text>', 'why, recorded in the audit event')
    .action(async (name: string, opts: ConnectionOptions & { reason?: string }) => {
      try {
        printKey(await client(opts).revokeKey(name, opts.reason), opts.json === true, 'revoked');
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });

  connection(keys.command('destroy <name>'))
    .description('erase the material of every version (irreversible); the metadata stays for audit')
    .option('--yes', 'confirm: data encrypted under this key becomes unrecoverable')
    .action(async (name: string, opts: ConnectionOptions & { yes?: boolean }) => {
      try {
        if (!opts.yes) throw new CustodyError('ERR_USAGE', `destroying ${name} is irreversible; repeat with --yes`);
        printKey(await client(opts).destroyKey(name), opts.json === true, 'destroyed');
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });

  // API keys: who may call the broker. A gateway given `--broker URL` presents a workload key.
  const apiKeys = keys.command('api-key').description("the tenant's broker API keys (admin, auditor, workload): create one into a file, list, revoke");

  connection(apiKeys.command('create'))
    .description('issue an API key and write it to --out (mode 0600); it is shown nowhere else, and the broker keeps only its digest')
    .requiredOption('--role <role>', 'admin, auditor or workload (a gateway or workload attesting with --broker)')
    .requiredOption('--label <text>', 'what the key is for, e.g. "gateway replica 1" (1-128 characters)')
    .requiredOption('--out <file>', 'where to write the key (mode 0600; refuses to overwrite)')
    .action(async (opts: ConnectionOptions & { role: string; label: string; out: string }) => {
      try {
        if (!['admin', 'auditor', 'workload'].includes(opts.role)) throw new CustodyError('ERR_USAGE', '--role must be admin, auditor or workload');
        if (opts.label.length < 1 || opts.label.length > 128) throw new CustodyError('ERR_USAGE', '--label must be 1-128 characters');
        const c = client(opts);
        if (existsSync(opts.out)) throw new CustodyError('ERR_USAGE', `${opts.out} exists; refusing to overwrite a key`);
        // Claim --out (empty, 0600, exclusively) before the broker issues anything: a name that
        // cannot be written, or that a concurrent run took, fails here with no key issued.
        writeNewSecretFile(opts.out, '');
        let created: Awaited<ReturnType<BrokerAdminClient['createApiKey']>>;
        try {
          created = await c.createApiKey(opts.role as 'admin' | 'auditor' | 'workload', opts.label);
        } catch (e) {
          releaseClaim(opts.out);
          throw e;
        }
        const { token, apiKey } = created;
        try {
          writeNewSecretFile(opts.out, token + '\n', { claimed: true });
        } catch (e) {
          releaseClaim(opts.out);
          throw await revokeUnwritten(c, apiKey.id, opts.out, e);
        }
        if (opts.json === true) printJson({ ok: true, apiKey, keyFile: opts.out });
        else process.stdout.write(printableLine(`created ${apiKey.role} API key ${apiKey.id} (${apiKey.label}), written to ${opts.out} (mode 0600)`) + '\n');
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });

  connection(apiKeys.command('list'))
    .description("list the tenant's API keys (ids, roles, labels, dates; never the keys)")
    .action(async (opts: ConnectionOptions) => {
      try {
        const list = await client(opts).listApiKeys();
        if (opts.json === true) printJson({ ok: true, apiKeys: list });
        else for (const k of list) printApiKey(k);
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });

  connection(apiKeys.command('revoke <id>'))
    .description('revoke an API key now (irreversible)')
    .action(async (id: string, opts: ConnectionOptions) => {
      try {
        await client(opts).revokeApiKey(id);
        if (opts.json === true) printJson({ ok: true, revoked: id });
        else process.stdout.write(printableLine(`revoked API key ${id}`) + '\n');
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });
};
