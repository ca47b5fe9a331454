/**
 * A sealed GGUF model (sealed-model.ts) served by the in-process engine: the gateway knows the
 * model's id and digest from the sealed header at start, but the weights stay encrypted until the
 * key broker releases the model key to the attested gateway (the key's release policy names the
 * gateway's measurements). Then, inside the TEE, the weights are decrypted into a memory-backed
 * directory (tmpfs; a disk would hold them in the clear outside the TEE's memory encryption),
 * into a file unlinked before the first byte is written: it has no name at any time, the engine
 * opens it through /proc/self/fd, and the kernel frees it when the process ends however it ends
 * (a signal or a crash mid-load leaves nothing). The weights are checked against the header's
 * digest. Until the key arrives nothing is served, and the gateway publishes no attestation bundle.
 *
 * Every re-attestation asks for the key again, so a revoked key or a refused release closes the
 * gateway's confidential routes (fail closed). A later release of another version (the key was
 * rotated) does not unload the model already loaded: it is logged once, and the model must be
 * resealed under the current version before the gateway restarts.
 */
import { createHash, randomBytes } from 'node:crypto';
import { open, readdir, readFile, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { CustodyError, type Clock } from '@custody/core';
import { LlamaCppBackend, type LlamaCppBackendOptions } from './llama-cpp.js';
import { readSealedModelHeader, unsealModelInto, type SealedModelHeader } from './sealed-model.js';
import type { BackendRequest, BackendResponse, ModelBackend, ModelInfo } from './types.js';

/** statfs(2) magic numbers of memory-backed file systems. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;
export const DEFAULT_PLAINTEXT_DIR = '/dev/shm';

export interface SealedModelBackendOptions {
  sealedPath: string;
  /** Where the weights are decrypted for loading; must be tmpfs or ramfs. Default /dev/shm. */
  plainDir?: string;
  clock: Clock;
  logger?: Logger;
  /** Engine settings (threads, context size...). */
  engine?: Omit<LlamaCppBackendOptions, 'modelPath' | 'modelId' | 'digest' | 'clock'>;
  /** How the decrypted file becomes a backend; default the node-llama-cpp engine. Tests inject a loader. */
  load?: (path: string, modelId: string) => Promise<ModelBackend>;
}

/**
 * Swap devices in use (from /proc/swaps): tmpfs pages can be swapped out, to a disk the host may
 * read. Empty where /proc/swaps cannot be read.
 */
export async function activeSwaps(): Promise<string[]> {
  try {
    return (await readFile('/proc/swaps', 'utf8'))
      .split('\n')
      .slice(1)
      .map((l) => l.split(/\s+/)[0] ?? '')
      .filter((f) => f !== '');
  } catch {
    return [];
  }
}

const PLAINTEXT_PREFIX = 'custody-model-';

/** Refuses a directory that is not memory-backed: decrypted weights must not reach a disk. ERR_MODEL_PLAINTEXT_DIR. */
export async function checkMemoryBacked(dir: string): Promise<void> {
  let type: number;
  try {
    type = (await statfs(dir)).type;
  } catch (e) {
    throw new CustodyError('ERR_MODEL_PLAINTEXT_DIR', 'the directory for the unsealed model cannot be read', { cause: e, detail: { dir } });
  }
  if (type !== TMPFS_MAGIC && type !== RAMFS_MAGIC) throw new CustodyError('ERR_MODEL_PLAINTEXT_DIR', undefined, { detail: { dir, fsType: '0x' + type.toString(16) } });
}

export class SealedModelBackend implements ModelBackend {
  readonly kind = 'llama-cpp';
  private inner: ModelBackend | undefined;
  private loading: Promise<void> | undefined;
  /** SHA-256 of the key the model was unsealed with: a later release of another key is noticed, not used. */
  private keyDigest: Buffer | undefined;
  private warnedOtherKey = false;
  private closed = false;

  private constructor(
    private readonly o: SealedModelBackendOptions,
    readonly header: SealedModelHeader,
    private readonly plainDir: string,
  ) {}

  /**
   * Reads the sealed header and checks the plaintext directory (memory-backed; a warning when
   * swap is on); loads nothing until `onKey`. A name of its prefix left behind (a gateway killed
   * between creating its file and unlinking it, before any byte was written) is removed.
   */
  static async create(o: SealedModelBackendOptions): Promise<SealedModelBackend> {
    const { header } = await readSealedModelHeader(o.sealedPath);
    const plainDir = o.plainDir ?? DEFAULT_PLAINTEXT_DIR;
    await checkMemoryBacked(plainDir);
    for (const f of await readdir(plainDir).catch(() => [] as string[])) if (f.startsWith(PLAINTEXT_PREFIX) && f.endsWith('.gguf')) await rm(join(plainDir, f), { force: true }).catch(() => undefined);
    const swaps = await activeSwaps();
    if (swaps.length > 0) o.logger?.warn({ event: 'model.swap-on', swaps }, 'swap is on: pages of the unsealed model in tmpfs can be written to a swap device; turn swap off in a confidential VM image');
    return new SealedModelBackend(o, header, plainDir);
  }

  /** The broker key the model is sealed under. */
  get keyName(): string {
    return this.header.key.name;
  }

  /** Whether the weights are decrypted and loaded. */
  get loaded(): boolean {
    return this.inner !== undefined;
  }

  models(): readonly ModelInfo[] {
    const { id, label } = this.header.model;
    return [{ id, digest: this.header.digest, label: `${label ?? id} (sealed GGUF, llama.cpp CPU)` }];
  }

  /**
   * The model key, released by the broker to this attested gateway (the caller wipes it after).
   * The first call unseals and loads the model; later calls only compare the key.
   */
  async onKey(key: Uint8Array, version: number | undefined): Promise<void> {
    if (this.closed) throw new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the sealed model backend is closed');
    const digest = createHash('sha256').update(key).digest();
    if (this.inner) {
      if (!this.keyDigest!.equals(digest) && !this.warnedOtherKey) {
        this.warnedOtherKey = true;
        this.o.logger?.warn({ event: 'model.key-changed', key: this.header.key.name, sealedVersion: this.header.key.version, releasedVersion: version }, 'the broker now releases another version of the model key; the loaded model keeps serving, reseal it under the current version before the next restart');
      }
      return;
    }
    if (version !== undefined && version !== this.header.key.version) {
      throw new CustodyError('ERR_MODEL_KEY_VERSION', undefined, { detail: { key: this.header.key.name, sealedVersion: this.header.key.version, releasedVersion: version } });
    }
    this.loading ??= this.load(key, digest).finally(() => (this.loading = undefined));
    await this.loading;
  }

  private async load(key: Uint8Array, keyDigest: Buffer): Promise<void> {
    const named = join(this.plainDir, `${PLAINTEXT_PREFIX}${randomBytes(12).toString('hex')}.gguf`);
    const fh = await open(named, 'wx+', 0o600);
    try {
      // Unlinked before a byte is written: the plaintext never has a name.
      await rm(named, { force: true });
      await unsealModelInto(this.o.sealedPath, key, fh);
      // The plaintext was checked against the header's digest as it was decrypted: the engine does not hash it again.
      const load = this.o.load ?? ((p: string, id: string) => LlamaCppBackend.create({ ...this.o.engine, modelPath: p, modelId: id, digest: this.header.digest, clock: this.o.clock }));
      const inner = await load(`/proc/self/fd/${fh.fd}`, this.header.model.id);
      if (this.closed) {
        await inner.close?.();
        return;
      }
      this.inner = inner;
      this.keyDigest = keyDigest;
      this.o.logger?.info({ event: 'model.unsealed', model: this.header.model.id, digest: this.header.digest, key: this.header.key.name, keyVersion: this.header.key.version }, 'sealed model decrypted inside the TEE and loaded');
    } finally {
      // Loaded (the engine keeps its own mapping and descriptor) or not: this descriptor goes,
      // and with the engine's the kernel frees the plaintext.
      await rm(named, { force: true });
      await fh.close().catch(() => undefined);
    }
  }

  handle(request: BackendRequest): Promise<BackendResponse> {
    if (!this.inner) return Promise.reject(new CustodyError('ERR_GATEWAY_BACKEND_UNAVAILABLE', 'the sealed model is not unsealed: the broker has not released its key'));
    return this.inner.handle(request);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.loading?.catch(() => undefined);
    await this.inner?.close?.();
    this.inner = undefined;
  }
}
