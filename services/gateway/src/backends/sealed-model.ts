/**
 * Sealed models: model weights encrypted at rest under a key the key broker holds, so they are
 * readable only inside a gateway whose attestation the broker accepted (the key's release
 * policy). The format, `custody.sealed-model/v1` (docs/sealed-models.md):
 *
 *   file    = magic || u32be(len(header)) || header || chunk_0 || ... || chunk_(n-1)
 *   magic   = 89 43 53 4D 0D 0A 1A 0A          ("\x89CSM\r\n\x1a\n")
 *   header  = RFC 8785 JSON, 2..4096 bytes: format, cipher, key {name, version}, model {id,
 *             label?}, size, digest (sha256: of the plaintext), chunkSize, salt (32 bytes)
 *   n       = ceil(size / chunkSize)
 *   K       = HKDF-SHA256(model key, salt, "custody.sealed-model/v1 key" || 0x00 || SHA-256(magic || u32be(len) || header), 32)
 *   chunk_i = AES-256-GCM(K, nonce = 0^4 || u64be(i), aad = u64be(i) || u8(i == n-1), plaintext piece i) || tag
 *
 * The header is bound into the key, every chunk to its place and the last one as the last, so a
 * changed header, a reordered, dropped, truncated or appended chunk and a wrong key all fail the
 * same way (ERR_MODEL_UNSEAL), and the plaintext written so far is removed. Node-only (files).
 */
import { createCipheriv, createDecipheriv, createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import { open, rm, stat, type FileHandle } from 'node:fs/promises';
import { basename } from 'node:path';
import { canonicalBytes, CustodyError, fromBase64Url, toBase64Url } from '@custody/core';

export const SEALED_MODEL_FORMAT = 'custody.sealed-model/v1';
export const SEALED_MODEL_MAGIC = Uint8Array.of(0x89, 0x43, 0x53, 0x4d, 0x0d, 0x0a, 0x1a, 0x0a);
const CIPHER = 'AES-256-GCM';
const KEY_INFO = new TextEncoder().encode('custody.sealed-model/v1 key');
const MAX_HEADER = 4096;
const TAG = 16;
const KEY_BYTES = 32;
const SALT_BYTES = 32;
export const DEFAULT_CHUNK_SIZE = 1 << 20;
/** The chunk sizes a sealed model may have. */
export const MIN_CHUNK_SIZE = 4096;
export const MAX_CHUNK_SIZE = 1 << 24;
/** What a sealed model's key name may be. */
export const SEALED_KEY_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const MODEL_ID = /^[A-Za-z0-9._:/@+-]{1,128}$/;
const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** Largest plaintext (256 TiB): far past any model, and exact in a double with room for the lengths added to it. */
const MAX_SIZE = 2 ** 48;

export interface SealedModelHeader {
  readonly format: typeof SEALED_MODEL_FORMAT;
  readonly cipher: typeof CIPHER;
  /** The broker key the model is sealed under, and its version. */
  readonly key: { readonly name: string; readonly version: number };
  /** The id clients send as `model`, and an optional label. */
  readonly model: { readonly id: string; readonly label?: string };
  /** Plaintext bytes. */
  readonly size: number;
  /** `sha256:` of the plaintext: the model digest receipts name. */
  readonly digest: string;
  readonly chunkSize: number;
  /** base64url of 32 random bytes. */
  readonly salt: string;
}

export interface SealedModelInfo {
  readonly header: SealedModelHeader;
  /** The header bytes as stored (canonical JSON). */
  readonly headerBytes: Uint8Array;
  /** Where the first chunk starts. */
  readonly offset: number;
  readonly chunks: number;
}

function malformed(message: string, detail?: Record<string, string | number | boolean>): CustodyError {
  return new CustodyError('ERR_MODEL_SEALED', message, detail ? { detail } : {});
}

function u64be(n: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
}

const printable = (s: string): boolean => !/[\p{Cc}\p{Cf}]/u.test(s);

/** Checks a decoded header member by member; returns it typed. */
function checkHeader(v: unknown): SealedModelHeader {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw malformed('the sealed model header is not a JSON object');
  const h = v as Record<string, unknown>;
  const known = ['format', 'cipher', 'key', 'model', 'size', 'digest', 'chunkSize', 'salt'];
  for (const k of Object.keys(h)) if (!known.includes(k)) throw malformed('the sealed model header has an unknown member', { member: k.slice(0, 32) });
  if (h.format !== SEALED_MODEL_FORMAT) throw malformed(`the file is not in the ${SEALED_MODEL_FORMAT} format`, { format: String(h.format).slice(0, 40) });
  if (h.cipher !== CIPHER) throw malformed(`the sealed model cipher is not ${CIPHER}`);
  const key = h.key as Record<string, unknown> | undefined;
  if (typeof key !== 'object' || key === null || Object.keys(key).some((k) => k !== 'name' && k !== 'version')) throw malformed('the sealed model header names no key');
  if (typeof key.name !== 'string' || !SEALED_KEY_NAME.test(key.name)) throw malformed('the sealed model key name is not a key name');
  if (typeof key.version !== 'number' || !Number.isSafeInteger(key.version) || key.version < 1) throw malformed('the sealed model key version is not a positive integer');
  const model = h.model as Record<string, unknown> | undefined;
  if (typeof model !== 'object' || model === null || Object.keys(model).some((k) => k !== 'id' && k !== 'label')) throw malformed('the sealed model header names no model');
  if (typeof model.id !== 'string' || !MODEL_ID.test(model.id)) throw malformed('the sealed model id is not a model id');
  if (model.label !== undefined && (typeof model.label !== 'string' || model.label.length === 0 || model.label.length > 256 || !printable(model.label))) throw malformed('the sealed model label is not 1..256 printable characters');
  if (typeof h.size !== 'number' || !Number.isSafeInteger(h.size) || h.size < 1 || h.size > MAX_SIZE) throw malformed(`the sealed model size is not 1..${MAX_SIZE}`);
  if (typeof h.digest !== 'string' || !DIGEST.test(h.digest)) throw malformed('the sealed model digest is not sha256: and 64 lowercase hex digits');
  if (typeof h.chunkSize !== 'number' || !Number.isSafeInteger(h.chunkSize) || h.chunkSize < MIN_CHUNK_SIZE || h.chunkSize > MAX_CHUNK_SIZE) throw malformed(`the sealed model chunk size is not ${MIN_CHUNK_SIZE}..${MAX_CHUNK_SIZE}`);
  if (typeof h.salt !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(h.salt) || fromBase64Url(h.salt).length !== SALT_BYTES) throw malformed('the sealed model salt is not 32 bytes of base64url');
  return h as unknown as SealedModelHeader;
}

/** Parses the start of a sealed model (magic, header) and checks that the file has exactly the length the header implies. ERR_MODEL_SEALED. */
export function parseSealedModelPrefix(prefix: Uint8Array, fileSize: number): SealedModelInfo {
  if (prefix.length < 12 || !SEALED_MODEL_MAGIC.every((b, i) => prefix[i] === b)) throw malformed('the file is not a sealed model (no sealed model magic)');
  const len = Buffer.from(prefix.buffer, prefix.byteOffset, prefix.byteLength).readUInt32BE(8);
  if (len < 2 || len > MAX_HEADER) throw malformed(`the sealed model header length is not 2..${MAX_HEADER}`, { length: len });
  if (prefix.length < 12 + len) throw malformed('the sealed model header is truncated', { length: len });
  const headerBytes = prefix.slice(12, 12 + len);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (e) {
    throw new CustodyError('ERR_MODEL_SEALED', 'the sealed model header is not JSON', { cause: e });
  }
  const header = checkHeader(value);
  if (!Buffer.from(canonicalBytes(header)).equals(headerBytes)) throw malformed('the sealed model header is not in canonical JSON form');
  const chunks = Math.ceil(header.size / header.chunkSize);
  const expected = 12 + len + header.size + chunks * TAG;
  if (fileSize !== expected) throw new CustodyError('ERR_MODEL_UNSEAL', 'the sealed model has another length than its header implies (truncated or extended)', { detail: { size: fileSize, expected } });
  return { header, headerBytes, offset: 12 + len, chunks };
}

function contentKey(modelKey: Uint8Array, info: SealedModelInfo): Buffer {
  if (modelKey.length !== KEY_BYTES) throw new CustodyError('ERR_MODEL_UNSEAL', 'the model key is not 32 bytes', { detail: { length: modelKey.length } });
  const len = Buffer.alloc(4);
  len.writeUInt32BE(info.headerBytes.length);
  const headerDigest = createHash('sha256').update(SEALED_MODEL_MAGIC).update(len).update(info.headerBytes).digest();
  const label = Buffer.concat([KEY_INFO, Buffer.of(0), headerDigest]);
  return Buffer.from(hkdfSync('sha256', modelKey, fromBase64Url(info.header.salt), label, KEY_BYTES));
}

function nonceOf(i: number): Buffer {
  return Buffer.concat([Buffer.alloc(4), u64be(i)]);
}

function aadOf(i: number, last: boolean): Buffer {
  return Buffer.concat([u64be(i), Buffer.of(last ? 1 : 0)]);
}

async function readExactly(fh: FileHandle, into: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < into.length) {
    const { bytesRead } = await fh.read(into, done, into.length - done, position + done);
    if (bytesRead === 0) throw new CustodyError('ERR_MODEL_UNSEAL', 'the sealed model ended early (truncated while being read)');
    done += bytesRead;
  }
}

async function writeAll(fh: FileHandle, data: Uint8Array): Promise<void> {
  let done = 0;
  while (done < data.length) done += (await fh.write(data, done, data.length - done)).bytesWritten;
}

/** Opens a model file for reading, with its stat: a regular file, or ERR_GATEWAY_MODEL_FILE (GGUF and sealed files alike). */
export async function openModelFile(path: string): Promise<{ fh: FileHandle; stat: Stats }> {
  let fh: FileHandle;
  try {
    // Without blocking: a FIFO with no writer would hold open() itself, before the check below.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (e) {
    const reason = (e as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new CustodyError('ERR_GATEWAY_MODEL_FILE', `the model file ${basename(path)} cannot be opened (${reason === 'ENOENT' ? 'no such file' : reason})`, { cause: e, detail: { file: basename(path), reason } });
  }
  const s = await fh.stat().catch(async (e: unknown) => {
    await fh.close().catch(() => undefined);
    throw e;
  });
  if (!s.isFile()) {
    await fh.close().catch(() => undefined);
    throw new CustodyError('ERR_GATEWAY_MODEL_FILE', 'the model path is not a regular file', { detail: { file: basename(path) } });
  }
  return { fh, stat: s };
}

/** Reads a sealed model's header (no key needed: it is public metadata). ERR_MODEL_SEALED. */
export async function readSealedModelHeader(path: string): Promise<SealedModelInfo> {
  const { fh, stat: s } = await openModelFile(path);
  try {
    const prefix = Buffer.alloc(Math.min(s.size, 12 + MAX_HEADER));
    await readExactly(fh, prefix, 0);
    return parseSealedModelPrefix(prefix, s.size);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Whether a file starts with the sealed model magic (and so is not a GGUF file). */
export async function isSealedModelFile(path: string): Promise<boolean> {
  let fh: FileHandle | undefined;
  try {
    // Without blocking: a FIFO with no writer would hold open() itself, before the check below.
    fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK);
    const head = Buffer.alloc(SEALED_MODEL_MAGIC.length);
    const { bytesRead } = await fh.read(head, 0, head.length, 0);
    return bytesRead === head.length && head.equals(SEALED_MODEL_MAGIC);
  } catch {
    return false;
  } finally {
    await fh?.close().catch(() => undefined);
  }
}

export interface SealOptions {
  /** The 32-byte model key (an aes-256 key the broker holds). */
  key: Uint8Array;
  keyName: string;
  keyVersion: number;
  modelId: string;
  label?: string;
  chunkSize?: number;
}

/**
 * Seals a model file to `outPath` (created, never overwritten; mode 0600). The plaintext is read
 * twice, to digest it for the header and to encrypt it, and must not change in between
 * (ERR_GATEWAY_MODEL_FILE). Returns the header.
 */
export async function sealModelFile(inPath: string, outPath: string, o: SealOptions): Promise<SealedModelHeader> {
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  // Everything but the digest and size is checked before the file is read (a bad name fails at once).
  checkHeader({ format: SEALED_MODEL_FORMAT, cipher: CIPHER, key: { name: o.keyName, version: o.keyVersion }, model: { id: o.modelId, ...(o.label !== undefined ? { label: o.label } : {}) }, size: 1, digest: 'sha256:' + '0'.repeat(64), chunkSize, salt: toBase64Url(new Uint8Array(SALT_BYTES)) });
  // A regular file, opened without blocking: a FIFO (or a link to one) is refused instead of waiting for a writer.
  const { fh: input, stat: s } = await openModelFile(inPath);
  let out: FileHandle | undefined;
  let ok = false;
  try {
    if (s.size === 0) throw new CustodyError('ERR_GATEWAY_MODEL_FILE', 'the model file is empty', { detail: { file: basename(inPath) } });
    const first = createHash('sha256');
    for await (const piece of input.createReadStream({ start: 0, highWaterMark: chunkSize, autoClose: false })) first.update(piece as Buffer);
    const header = checkHeader({
      format: SEALED_MODEL_FORMAT,
      cipher: CIPHER,
      key: { name: o.keyName, version: o.keyVersion },
      model: { id: o.modelId, ...(o.label !== undefined ? { label: o.label } : {}) },
      size: s.size,
      digest: 'sha256:' + first.digest('hex'),
      chunkSize,
      salt: toBase64Url(randomBytes(SALT_BYTES)),
    });
    const headerBytes = canonicalBytes(header);
    if (headerBytes.length > MAX_HEADER) throw malformed('the sealed model header would exceed 4096 bytes');
    const chunks = Math.ceil(s.size / chunkSize);
    const info: SealedModelInfo = { header, headerBytes, offset: 12 + headerBytes.length, chunks };
    const k = contentKey(o.key, info);
    try {
      out = await open(outPath, 'wx', 0o600);
    } catch (e) {
      const reason = (e as NodeJS.ErrnoException).code ?? 'error';
      throw new CustodyError('ERR_GATEWAY_MODEL_FILE', `the sealed model file cannot be created (${reason === 'EEXIST' ? 'it exists' : reason === 'ENOENT' ? 'its directory does not exist' : reason})`, { cause: e, detail: { file: basename(outPath), reason } });
    }
    const len = Buffer.alloc(4);
    len.writeUInt32BE(headerBytes.length);
    await writeAll(out, Buffer.concat([SEALED_MODEL_MAGIC, len, headerBytes]));
    const second = createHash('sha256');
    const piece = Buffer.alloc(Math.min(chunkSize, s.size));
    try {
      for (let i = 0; i < chunks; i++) {
        const n = Math.min(chunkSize, s.size - i * chunkSize);
        const plain = piece.subarray(0, n);
        await readExactly(input, plain, i * chunkSize);
        second.update(plain);
        const c = createCipheriv('aes-256-gcm', k, nonceOf(i), { authTagLength: TAG });
        c.setAAD(aadOf(i, i === chunks - 1));
        await writeAll(out, Buffer.concat([c.update(plain), c.final(), c.getAuthTag()]));
      }
    } finally {
      k.fill(0);
      piece.fill(0);
    }
    const after = await stat(inPath);
    if ('sha256:' + second.digest('hex') !== header.digest || after.size !== s.size || after.mtimeMs !== s.mtimeMs) {
      throw new CustodyError('ERR_GATEWAY_MODEL_FILE', 'the model file changed while it was being sealed', { detail: { file: basename(inPath) } });
    }
    await out.sync();
    ok = true;
    return header;
  } finally {
    await input.close().catch(() => undefined);
    await out?.close().catch(() => undefined);
    // Never throws over the error being reported.
    if (out && !ok) await rm(outPath, { force: true }).catch(() => undefined);
  }
}

/** A write error of the plaintext: a full tmpfs is the operator's to fix, typed as such. */
function writeFailure(e: unknown): CustodyError {
  const code = (e as { code?: unknown }).code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return new CustodyError('ERR_MODEL_PLAINTEXT_DIR', 'no space left for the unsealed model in its directory (tmpfs size)', { cause: e });
  return new CustodyError('ERR_MODEL_UNSEAL', 'the unsealed model could not be written', { cause: e });
}

/**
 * Decrypts a sealed model into `outPath` (created exclusively, mode 0600) with the model key,
 * checking every chunk, its place, the last one, and the plaintext digest against the header.
 * On any failure the partial plaintext is removed and nothing is returned (ERR_MODEL_UNSEAL).
 */
export async function unsealModelFile(sealedPath: string, key: Uint8Array, outPath: string): Promise<SealedModelInfo> {
  // The header first: a file that is no sealed model creates nothing.
  await readSealedModelHeader(sealedPath);
  let out: FileHandle;
  try {
    out = await open(outPath, 'wx', 0o600);
  } catch (e) {
    throw new CustodyError('ERR_MODEL_UNSEAL', 'the file for the unsealed model cannot be created (it exists, or its directory does not)', { cause: e });
  }
  let ok = false;
  try {
    const info = await unsealModelInto(sealedPath, key, out);
    ok = true;
    return info;
  } finally {
    await out.close().catch(() => undefined);
    if (!ok) await rm(outPath, { force: true });
  }
}

/**
 * Decrypts a sealed model into an open, empty file (the caller's to close; on failure it is
 * truncated to nothing). The gateway passes a file it has already unlinked, so the plaintext has
 * no name at any moment and is freed when the process ends, however it ends.
 */
export async function unsealModelInto(sealedPath: string, key: Uint8Array, out: FileHandle): Promise<SealedModelInfo> {
  const info = await readSealedModelHeader(sealedPath);
  let ok = false;
  try {
    await unsealInto(sealedPath, info, key, out);
    ok = true;
    return info;
  } finally {
    if (!ok) await out.truncate(0).catch(() => undefined);
  }
}

async function unsealInto(sealedPath: string, info: SealedModelInfo, key: Uint8Array, out: FileHandle): Promise<void> {
  const { header, offset, chunks } = info;
  const k = contentKey(key, info);
  let input: FileHandle | undefined;
  const sealedChunk = Buffer.alloc(Math.min(header.chunkSize, header.size) + TAG);
  try {
    input = await open(sealedPath, 'r');
    const hash = createHash('sha256');
    for (let i = 0; i < chunks; i++) {
      const n = Math.min(header.chunkSize, header.size - i * header.chunkSize);
      const sealed = sealedChunk.subarray(0, n + TAG);
      await readExactly(input, sealed, offset + i * (header.chunkSize + TAG));
      const d = createDecipheriv('aes-256-gcm', k, nonceOf(i), { authTagLength: TAG });
      d.setAAD(aadOf(i, i === chunks - 1));
      d.setAuthTag(sealed.subarray(n));
      let plain: Buffer;
      try {
        plain = Buffer.concat([d.update(sealed.subarray(0, n)), d.final()]);
      } catch (e) {
        throw new CustodyError('ERR_MODEL_UNSEAL', 'the sealed model does not decrypt with this key: a wrong key, or a tampered, reordered or truncated file', { cause: e, detail: { chunk: i } });
      }
      hash.update(plain);
      try {
        await writeAll(out, plain);
      } catch (e) {
        throw writeFailure(e);
      } finally {
        plain.fill(0);
      }
    }
    const digest = Buffer.from(hash.digest('hex'));
    if (!timingSafeEqual(digest, Buffer.from(header.digest.slice('sha256:'.length)))) throw new CustodyError('ERR_MODEL_UNSEAL', 'the unsealed model does not have the digest its header names');
    await out.sync().catch((e: unknown) => {
      throw writeFailure(e);
    });
  } finally {
    k.fill(0);
    sealedChunk.fill(0);
    await input?.close().catch(() => undefined);
  }
}
