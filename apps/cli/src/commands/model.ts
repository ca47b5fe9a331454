import { randomBytes } from 'node:crypto';
import { existsSync, linkSync, rmSync, statSync } from 'node:fs';
import { constants } from 'node:os';
import { basename, dirname } from 'node:path';
import { CustodyError, wipe } from '@custody/core';
import { hiddenSiblingPath } from '@custody/crypto-node';
import { MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, readGgufHeader, readSealedModelHeader, SEALED_KEY_NAME, sealModelFile, type SealedModelHeader } from '@custody/gateway-service';
import { compileCondition } from '@custody/policy';
import type { Register } from './index.js';
import { client, connection, policyOf, readMaterial, type ConnectionOptions } from './keys.js';
import { printableLine } from '@custody/sdk';
import { failWith, printJson } from '../output.js';

const MODEL_ID = /^[A-Za-z0-9._:/@+-]{1,128}$/;
const KEY_ENCODINGS = ['raw', 'base64', 'hex'];
/** The longest file name (NAME_MAX on Linux and the BSDs), in bytes. */
const NAME_MAX = 255;

interface SealOptions extends ConnectionOptions {
  out: string;
  key: string;
  keyFile?: string;
  keyEncoding?: string;
  keyVersion?: string;
  policy?: string;
  policyFile?: string;
  modelId?: string;
  label?: string;
  chunkSize?: string;
}

function integer(s: string | undefined, what: string, min: number, max: number): number | undefined {
  if (s === undefined) return undefined;
  if (!/^[0-9]{1,9}$/.test(s) || Number(s) < min || Number(s) > max) throw new CustodyError('ERR_USAGE', `${what} must be an integer from ${min} to ${max}`);
  return Number(s);
}

/** The options that go into the sealed header or pick the key, checked before any file is read or the broker asked. */
function checkSealOptions(opts: SealOptions): void {
  if (!SEALED_KEY_NAME.test(opts.key)) throw new CustodyError('ERR_KEY_NAME', '--key must be 1-128 of A-Z a-z 0-9 . _ -, starting with a letter or digit');
  if (opts.label !== undefined && (opts.label.length === 0 || opts.label.length > 256 || /[\p{Cc}\p{Cf}]/u.test(opts.label))) throw new CustodyError('ERR_USAGE', '--label must be 1-256 printable characters');
  if (opts.keyEncoding !== undefined && !KEY_ENCODINGS.includes(opts.keyEncoding)) throw new CustodyError('ERR_USAGE', '--key-encoding must be raw, base64 or hex');
}

/** Refuses an --out that could never be created, before the model is read: its directory must be one, its name fit NAME_MAX. */
function checkOutPath(out: string): void {
  if (existsSync(out)) throw new CustodyError('ERR_USAGE', `${out} exists; the sealed model is never written over another file`);
  const name = basename(out);
  if (Buffer.byteLength(name) > NAME_MAX) throw new CustodyError('ERR_GATEWAY_MODEL_FILE', `--out: the file name is longer than ${NAME_MAX} bytes`, { detail: { bytes: Buffer.byteLength(name) } });
  let isDirectory: boolean;
  try {
    isDirectory = statSync(dirname(out)).isDirectory();
  } catch (e) {
    throw new CustodyError('ERR_GATEWAY_MODEL_FILE', `${out} cannot be created: its directory cannot be read (${(e as NodeJS.ErrnoException).code ?? 'error'})`, { cause: e });
  }
  if (!isDirectory) throw new CustodyError('ERR_GATEWAY_MODEL_FILE', `${out} cannot be created: ${dirname(out)} is not a directory`);
}


/** Removes a file if it is there. Cleanup on a failure path: it never throws over the error being reported. */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // ENOTDIR, EACCES, ...: there is no file to remove, or nothing more this process can do.
  }
}

/**
 * While a model is sealed, SIGINT, SIGTERM and SIGHUP remove the hidden partial file (ciphertext)
 * and wipe the key here, then the signal is raised again with its default action: the process
 * ends by it, which a shell reports as 128 + its number (130, 143, 129). (process.exit could wait
 * on a file system call that does not return.) Returns the function that removes the handlers.
 */
function onInterrupt(partial: string, material: () => Uint8Array | undefined): () => void {
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  const restore = (): void => {
    for (const s of signals) process.off(s, stop);
  };
  function stop(signal: (typeof signals)[number]): void {
    restore();
    removeQuietly(partial);
    const m = material();
    if (m) wipe(m);
    process.stderr.write(`custody: interrupted (${signal})\n`);
    process.kill(process.pid, signal);
    // Only if something else in this process still listens for the signal.
    setImmediate(() => process.exit(128 + constants.signals[signal]));
  }
  for (const s of signals) process.on(s, stop);
  return restore;
}

/** The model id and label: from the options, else from the GGUF header (read, not the whole file), else the file name. */
async function describe(file: string, opts: SealOptions): Promise<{ id: string; label?: string }> {
  let name: string | undefined;
  let arch: string | undefined;
  try {
    ({ name, architecture: arch } = await readGgufHeader(file));
  } catch {
    // Not a GGUF file (or none at all: sealing says so): sealing works on any weights file, with --model-id.
  }
  const id = opts.modelId ?? (name ?? basename(file).replace(/\.gguf$/, '')).replace(/[^A-Za-z0-9._:/@+-]/g, '-').slice(0, 128);
  if (!MODEL_ID.test(id)) throw new CustodyError('ERR_USAGE', '--model-id must be 1-128 of A-Z a-z 0-9 . _ : / @ + -');
  // A label from the file is cut to fit the header's 256 characters; one given with --label is checked as given.
  const label = opts.label ?? (name ? `${name}${arch ? ` (GGUF ${arch})` : ''}`.replace(/[\p{Cc}\p{Cf}]/gu, ' ').slice(0, 256) : undefined);
  return { id, ...(label !== undefined ? { label } : {}) };
}

/** Gives the sealed file its name, never over another file (a hard link fails when the name exists). */
function publish(partial: string, out: string): void {
  try {
    linkSync(partial, out);
  } catch (e) {
    const errno = (e as NodeJS.ErrnoException).code ?? 'error';
    if (errno === 'EEXIST') throw new CustodyError('ERR_USAGE', `${out} exists; the sealed model is never written over another file`, { cause: e });
    throw new CustodyError('ERR_FILE_UNWRITABLE', `cannot write ${out} (${errno})`, { cause: e, detail: { path: out, errno } });
  } finally {
    removeQuietly(partial);
  }
}

function printHeader(h: SealedModelHeader, json: boolean, verb: string, path: string): void {
  if (json) return printJson({ ok: true, file: path, header: h });
  process.stdout.write(
    [
      `${verb} ${printableLine(path)} (${h.format})`,
      `  model    ${printableLine(h.model.id)}${h.model.label ? ` (${printableLine(h.model.label)})` : ''}`,
      `  digest   ${h.digest} (${h.size} bytes of weights; receipts name this digest)`,
      `  key      broker key ${printableLine(h.key.name)} v${h.key.version} (${h.cipher}, ${h.chunkSize}-byte chunks)`,
      '',
    ].join('\n'),
  );
}

export const register: Register = (program) => {
  const model = program.command('model').description('Sealed models: weights encrypted at rest, decrypted only inside a gateway the key broker released the key to.');

  connection(model.command('seal <file>'))
    .description(
      'encrypt a model file (custody.sealed-model/v1) under a key the broker holds. By default a fresh 32-byte key is made in this process, the file is sealed, and the key is imported into the broker as a new aes-256 key with your release policy, then wiped here; with --key-file the material you give is used and the broker is not contacted. Serve it with `custody gateway serve --model FILE --broker URL`.',
    )
    .requiredOption('--out <file>', 'where to write the sealed model (must not exist)')
    .requiredOption('--key <name>', 'the broker key to seal under (created, unless --key-file)')
    .option('--policy <cel>', "the key's release policy, e.g. \"status == 'affirming' && claims.measurements.measurement == '<hex>'\"")
    .option('--policy-file <path>', 'read the release policy from a file')
    .option('--key-file <path>', 'seal with this 32-byte key (an aes-256 key the broker already holds, e.g. one you gave `keys import` or `keys rotate --file`) instead of creating one')
    .option('--key-encoding <enc>', 'with --key-file: raw (default), base64 or hex')
    .option('--key-version <n>', 'with --key-file: the version of that key at the broker (default 1)')
    .option('--model-id <id>', 'the id clients send as `model` (default: the GGUF general.name, else the file name)')
    .option('--label <text>', 'a label for the model (default from the GGUF header)')
    .option('--chunk-size <bytes>', 'bytes of weights per authenticated chunk (4096 to 16777216, default 1048576)')
    .action(async (file: string, opts: SealOptions) => {
      const json = opts.json === true;
      let material: Uint8Array | undefined;
      // Sealed beside --out, then hard-linked to it: a model is never seen half-written under its name.
      const partial = hiddenSiblingPath(opts.out, '.partial');
      const restoreSignals = onInterrupt(partial, () => material);
      try {
        checkSealOptions(opts);
        const chunkSize = integer(opts.chunkSize, '--chunk-size', MIN_CHUNK_SIZE, MAX_CHUNK_SIZE);
        checkOutPath(opts.out);
        const described = await describe(file, opts);
        const common = { keyName: opts.key, modelId: described.id, ...(described.label !== undefined ? { label: described.label } : {}), ...(chunkSize !== undefined ? { chunkSize } : {}) };
        let header: SealedModelHeader;
        if (opts.keyFile !== undefined) {
          if (opts.policy !== undefined || opts.policyFile !== undefined) throw new CustodyError('ERR_USAGE', '--policy is for a key this command creates; with --key-file the key and its policy already are at the broker');
          if (opts.broker !== undefined || opts.apiKeyFile !== undefined) throw new CustodyError('ERR_USAGE', 'with --key-file the broker is not contacted: leave out --broker and --api-key-file');
          material = readMaterial(opts.keyFile, 'aes-256', opts.keyEncoding);
          if (material.length !== 32) throw new CustodyError('ERR_KEY_MATERIAL', 'the key file must hold exactly 32 raw bytes (an aes-256 key)');
          header = await sealModelFile(file, partial, { ...common, key: material, keyVersion: integer(opts.keyVersion, '--key-version', 1, 1_000_000) ?? 1 });
        } else {
          if (opts.keyVersion !== undefined || opts.keyEncoding !== undefined) throw new CustodyError('ERR_USAGE', '--key-version and --key-encoding are for --key-file; a created key is version 1');
          const policy = policyOf(opts);
          if (policy === undefined) throw new CustodyError('ERR_USAGE', "a sealed model's key needs a release policy naming the gateway's measurements: --policy or --policy-file");
          // The broker compiles release policies the same way (CEL): one it would refuse fails here, before the model is encrypted.
          compileCondition(policy, 'release policy');
          const broker = client(opts);
          // Fails early (before reading gigabytes) when the name is taken or the broker is unreachable.
          const existing = await broker.getKey(opts.key).then(
            () => true,
            (e: unknown) => {
              if (e instanceof CustodyError && e.code === 'ERR_KEY_NOT_FOUND') return false;
              throw e;
            },
          );
          if (existing) throw new CustodyError('ERR_USAGE', `the broker already holds a key named ${opts.key}: choose another --key, or seal with --key-file`);
          material = new Uint8Array(randomBytes(32));
          header = await sealModelFile(file, partial, { ...common, key: material, keyVersion: 1 });
          // The sealed file is in place before the key exists at the broker: a key is never left
          // without its file. If the import fails the file goes (no one could open it).
          publish(partial, opts.out);
          try {
            const key = await broker.importKey({ name: opts.key, type: 'aes-256', material, releasePolicy: policy, exportable: true });
            if (key.currentVersion !== 1) throw new CustodyError('ERR_KEY_MATERIAL', 'the broker stored the key under another version than the sealed header names');
          } catch (e) {
            removeQuietly(opts.out);
            throw e;
          }
          printHeader(header, json, 'sealed', opts.out);
          return;
        }
        publish(partial, opts.out);
        printHeader(header, json, 'sealed', opts.out);
      } catch (e) {
        removeQuietly(partial);
        failWith(e, json);
      } finally {
        restoreSignals();
        if (material) wipe(material);
      }
    });

  model
    .command('inspect <file>')
    .description("print a sealed model's public header (model id, weights digest, broker key and version); needs no key")
    .option('--json', 'print JSON')
    .action(async (file: string, opts: { json?: boolean }) => {
      try {
        printHeader((await readSealedModelHeader(file)).header, opts.json === true, 'sealed model', file);
      } catch (e) {
        failWith(e, opts.json === true);
      }
    });
};
