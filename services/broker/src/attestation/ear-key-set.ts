import { createHash, createPublicKey, randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync, type Stats } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { JWK } from 'jose';
import { CustodyError } from '@custody/core';
import { exportEarSigningKey, generateEarSigningKey, importEarSigningKey, type EarSigningKey } from '@custody/policy';

/**
 * The broker's EAR signing key file. Two forms are read:
 *
 * - a single private JWK (EC P-256, ES256): the form a broker writes on its first start, and the
 *   only form before key rotation existed;
 * - a key set, written by `rotateEarKeyFile` (`custody broker rotate-ear-key`):
 *
 *       {"format":"custody-ear-key-set/v1",
 *        "current":{<private JWK>},
 *        "retired":[{"retiredAt":"<RFC 3339>","jwk":{<public JWK with kid>}}, ...]}
 *
 * The broker signs with `current` only. A retired key keeps only its public half: it is published
 * in the JWKS while EARs it signed can still be valid (EarSigner.retentionSeconds after
 * `retiredAt`) so that they keep verifying, then dropped. The file is owner-only (0600), and
 * refused when group or others can access it.
 */

export const EAR_KEY_SET_FORMAT = 'custody-ear-key-set/v1';
/** Largest key file read (a key set holds at most MAX_RETIRED_EAR_KEYS public keys besides the current private one). */
export const MAX_EAR_KEY_FILE_BYTES = 64 * 1024;
/** Retired keys a key set may list. */
export const MAX_RETIRED_EAR_KEYS = 32;
/** Clock skew allowed for between the writer of `retiredAt`, the brokers and EAR verifiers. */
export const EAR_KEY_CLOCK_SKEW_SECONDS = 60;
/** The longest EAR lifetime a broker can be configured with (AttestationService bounds it to a day). */
export const MAX_EAR_LIFETIME_SECONDS = 86_400;
/** The longest interval at which a broker re-reads the key file. */
export const MAX_EAR_KEY_RELOAD_SECONDS = 3_600;
/**
 * A rotation drops retired keys older than this from the file: no broker configuration keeps
 * one published that long (longest EAR lifetime + longest reload interval + skew).
 */
export const EAR_KEY_PRUNE_SECONDS = MAX_EAR_LIFETIME_SECONDS + MAX_EAR_KEY_RELOAD_SECONDS + EAR_KEY_CLOCK_SKEW_SECONDS;

/** A retired key: its public JWK (kid, alg ES256, use sig) and when it stopped signing. */
export interface RetiredEarKey {
  readonly kid: string;
  readonly publicJwk: JWK;
  /** Milliseconds since the epoch. */
  readonly retiredAt: number;
}

/** A key file, read and checked: the signing key and the retired keys, newest first. */
export interface EarKeySet {
  readonly current: EarSigningKey;
  readonly retired: readonly RetiredEarKey[];
  /** `jwk` for the single-key form, `set` for a key set. */
  readonly form: 'jwk' | 'set';
}

/** Identifies one version of the file on disk (a rename gives a new inode, a rewrite a new mtime). */
export function fileStamp(st: Stats): string {
  return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}:${st.ctimeMs}`;
}

function keyError(message: string, path: string, cause?: unknown, detail: Record<string, string | number | boolean> = {}): CustodyError {
  return new CustodyError('ERR_EAR_KEY', message, { ...(cause !== undefined ? { cause } : {}), detail: { path, ...detail } });
}

/** Reads and checks the key file at `path` (owner-only, bounded, either form). Errors: ERR_EAR_KEY. */
export async function readEarKeyFile(path: string, options: { extractable?: boolean } = {}): Promise<{ set: EarKeySet; stamp: string }> {
  let st: Stats;
  try {
    st = statSync(path);
  } catch (e) {
    throw keyError('the EAR signing key file cannot be read', path, e);
  }
  if (!st.isFile()) throw keyError('the EAR signing key file is not a regular file', path);
  if ((st.mode & 0o077) !== 0) throw keyError('the EAR signing key file must not be accessible by group or others (chmod 600)', path, undefined, { mode: (st.mode & 0o777).toString(8) });
  if (st.size > MAX_EAR_KEY_FILE_BYTES) throw keyError('the EAR signing key file is too large', path, undefined, { size: st.size, max: MAX_EAR_KEY_FILE_BYTES });
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw keyError('the EAR signing key file cannot be read', path, e);
  }
  // Checked again on what was read: the file may have been replaced between stat and read.
  if (text.length > MAX_EAR_KEY_FILE_BYTES) throw keyError('the EAR signing key file is too large', path, undefined, { max: MAX_EAR_KEY_FILE_BYTES });
  return { set: await parseEarKeySet(text, path, options), stamp: fileStamp(st) };
}

/** Parses the text of a key file (either form). `path` only names the file in errors. */
export async function parseEarKeySet(text: string, path: string, options: { extractable?: boolean } = {}): Promise<EarKeySet> {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // No cause: JSON.parse quotes the text it failed on, which is key material.
    throw keyError('the EAR signing key file is not JSON', path);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw keyError('the EAR signing key file is not a JSON object', path);
  const o = value as Record<string, unknown>;
  if ('kty' in o) return { current: await importCurrent(o, path, options), retired: [], form: 'jwk' };
  if (o.format !== EAR_KEY_SET_FORMAT) throw keyError(`the EAR signing key file is neither a private JWK nor a ${EAR_KEY_SET_FORMAT} key set`, path);
  const members = Object.keys(o).sort().join(',');
  if (members !== 'current,format,retired') throw keyError('an EAR key set has exactly the members format, current and retired', path);
  if (typeof o.current !== 'object' || o.current === null || Array.isArray(o.current)) throw keyError('the key set has no current key', path);
  const current = await importCurrent(o.current as Record<string, unknown>, path, options);
  if (!Array.isArray(o.retired)) throw keyError('the key set member retired is not an array', path);
  if (o.retired.length > MAX_RETIRED_EAR_KEYS) throw keyError(`a key set lists at most ${MAX_RETIRED_EAR_KEYS} retired keys`, path, undefined, { retired: o.retired.length });
  const seen = new Set([current.kid]);
  const retired: RetiredEarKey[] = [];
  for (const [i, entry] of (o.retired as unknown[]).entries()) {
    const r = parseRetired(entry, path, i);
    if (seen.has(r.kid)) throw keyError('the key set lists a key twice', path, undefined, { index: i });
    seen.add(r.kid);
    retired.push(r);
  }
  retired.sort((a, b) => b.retiredAt - a.retiredAt);
  return { current, retired, form: 'set' };
}

async function importCurrent(jwk: Record<string, unknown>, path: string, options: { extractable?: boolean }): Promise<EarSigningKey> {
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw keyError('the EAR signing key must be an EC P-256 key (ES256)', path);
  if (typeof jwk.d !== 'string') throw keyError('the EAR signing key has no private part', path);
  let key: EarSigningKey;
  try {
    key = await importEarSigningKey(jwk, { extractable: options.extractable ?? false });
  } catch (e) {
    throw keyError('the EAR signing key cannot be imported', path, e);
  }
  if (key.alg !== 'ES256') throw keyError('the EAR signing key must be an ES256 key', path);
  // A kid that is not the key's thumbprint means the file was edited by hand: refuse rather than guess.
  if (jwk.kid !== undefined && jwk.kid !== key.kid) throw keyError('the EAR signing key kid is not its RFC 7638 thumbprint', path);
  return key;
}

const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const PUBLIC_MEMBERS = new Set(['kty', 'crv', 'x', 'y', 'kid', 'alg', 'use']);

function parseRetired(entry: unknown, path: string, index: number): RetiredEarKey {
  const bad = (message: string) => keyError(message, path, undefined, { index });
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) throw bad('a retired key is not an object');
  const e = entry as Record<string, unknown>;
  if (Object.keys(e).sort().join(',') !== 'jwk,retiredAt') throw bad('a retired key has exactly the members jwk and retiredAt');
  if (typeof e.retiredAt !== 'string' || !RFC3339.test(e.retiredAt) || Number.isNaN(Date.parse(e.retiredAt))) throw bad('a retired key has no RFC 3339 retiredAt');
  const jwk = e.jwk;
  if (typeof jwk !== 'object' || jwk === null || Array.isArray(jwk)) throw bad('a retired key has no JWK');
  const j = jwk as Record<string, unknown>;
  // Only the public half is kept: a retired key never signs again.
  for (const k of Object.keys(j)) if (!PUBLIC_MEMBERS.has(k)) throw bad('a retired key JWK holds a member other than the public ones');
  if (j.kty !== 'EC' || j.crv !== 'P-256' || typeof j.x !== 'string' || typeof j.y !== 'string') throw bad('a retired key is not an EC P-256 public key');
  if ((j.alg !== undefined && j.alg !== 'ES256') || (j.use !== undefined && j.use !== 'sig')) throw bad('a retired key is not an ES256 signing key');
  try {
    createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: j.x, y: j.y }, format: 'jwk' });
  } catch (cause) {
    throw keyError('a retired key is not a point on P-256', path, cause, { index });
  }
  const kid = ecThumbprint(j.x, j.y);
  if (j.kid !== undefined && j.kid !== kid) throw bad('a retired key kid is not its RFC 7638 thumbprint');
  return { kid, publicJwk: { kty: 'EC', crv: 'P-256', x: j.x, y: j.y, kid, alg: 'ES256', use: 'sig' }, retiredAt: Date.parse(e.retiredAt) };
}

/** RFC 7638 thumbprint (SHA-256, base64url) of a P-256 public key: its required members in lexical order. */
export function ecThumbprint(x: string, y: string): string {
  return createHash('sha256').update(JSON.stringify({ crv: 'P-256', kty: 'EC', x, y })).digest('base64url');
}

/** The key set in its file form. Secret: it holds the current private key. */
export async function serializeEarKeySet(current: EarSigningKey, retired: readonly RetiredEarKey[]): Promise<string> {
  const file = {
    format: EAR_KEY_SET_FORMAT,
    current: await exportEarSigningKey(current),
    retired: retired.map((r) => ({ retiredAt: new Date(r.retiredAt).toISOString(), jwk: r.publicJwk })),
  };
  return JSON.stringify(file, null, 2) + '\n';
}

/**
 * Writes `text` to `path` atomically: a new 0600 file beside it (exclusive create), flushed to
 * disk, renamed over `path`, then the directory flushed. A reader sees the old file or the new
 * one, never a partial one; a crash leaves at most a stray `.tmp` file.
 */
export function writeFileAtomic(path: string, text: string): void {
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(tmp, 'wx', 0o600);
    const bytes = Buffer.from(text, 'utf8');
    let off = 0;
    while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(tmp, path);
  } catch (e) {
    if (fd !== undefined) closeSync(fd);
    try {
      unlinkSync(tmp);
    } catch {
      // Already renamed, or never created.
    }
    throw keyError('the EAR signing key file cannot be written', path, e);
  }
  try {
    const d = openSync(dir, 'r');
    try {
      fsyncSync(d);
    } finally {
      closeSync(d);
    }
  } catch {
    // Some file systems cannot fsync a directory; the rename itself is atomic.
  }
}

export interface EarKeyRotationOptions {
  /** The retirement time written for the previous key. Default: now. */
  now?: Date;
  /**
   * true (default): the previous key is retired and stays published while its EARs can be valid.
   * false: the previous key and every retired key are dropped at once, so every EAR issued so far
   * stops verifying as soon as the brokers re-read the file (a compromised key).
   */
  overlap?: boolean;
}

export interface EarKeyRotation {
  path: string;
  /** The new signing key. */
  kid: string;
  /** The key it replaces: retired (overlap) or dropped. */
  previousKid: string;
  retiredAt: string;
  overlap: boolean;
  /** Retired keys the file now lists, newest first (the previous key first with overlap). */
  retired: string[];
  /** Keys removed from the file by this rotation. */
  dropped: string[];
}

/**
 * Rotates the key file at `path`: a new ES256 key becomes current, the previous one is retired
 * at `now` (public half only), retired keys past EAR_KEY_PRUNE_SECONDS are dropped, and the set
 * is written atomically (0600). Running brokers pick it up when they re-read the file.
 * Errors: ERR_FILE_NOT_FOUND, ERR_EAR_KEY (unreadable, malformed, too many retired keys),
 * ERR_KEY_CONFLICT (the file changed while rotating: run again).
 */
export async function rotateEarKeyFile(path: string, options: EarKeyRotationOptions = {}): Promise<EarKeyRotation> {
  const now = options.now ?? new Date();
  if (Number.isNaN(now.getTime())) throw new CustodyError('ERR_USAGE', 'the rotation time is not a valid date');
  const overlap = options.overlap ?? true;
  try {
    statSync(path);
  } catch (e) {
    throw new CustodyError('ERR_FILE_NOT_FOUND', `EAR signing key file not found: ${path}`, { cause: e, detail: { path } });
  }
  const { set, stamp } = await readEarKeyFile(path);
  const next = await generateEarSigningKey({ alg: 'ES256', extractable: true });
  const at = now.getTime();
  const previous: RetiredEarKey = { kid: set.current.kid, publicJwk: publicJwkOf(set.current), retiredAt: at };
  const kept = overlap ? [previous, ...set.retired.filter((r) => at < r.retiredAt + EAR_KEY_PRUNE_SECONDS * 1000)] : [];
  if (kept.length > MAX_RETIRED_EAR_KEYS) throw keyError(`more than ${MAX_RETIRED_EAR_KEYS} keys were retired within ${EAR_KEY_PRUNE_SECONDS} s; rotate without overlap or wait`, path, undefined, { retired: kept.length });
  const keptKids = new Set(kept.map((r) => r.kid));
  const dropped = [set.current, ...set.retired].map((k) => k.kid).filter((kid) => !keptKids.has(kid));
  const text = await serializeEarKeySet(next, kept);
  // Optimistic concurrency: another rotation between our read and our rename would lose a key.
  let again: string | undefined;
  try {
    again = fileStamp(statSync(path));
  } catch {
    again = undefined;
  }
  if (again !== stamp) throw new CustodyError('ERR_KEY_CONFLICT', 'the EAR signing key file changed during the rotation; run it again', { detail: { path } });
  writeFileAtomic(path, text);
  return { path, kid: next.kid, previousKid: set.current.kid, retiredAt: now.toISOString(), overlap, retired: kept.map((r) => r.kid), dropped };
}

function publicJwkOf(key: EarSigningKey): JWK {
  const { kty, crv, x, y } = key.publicJwk;
  return { kty, crv, x, y, kid: key.kid, alg: 'ES256', use: 'sig' };
}
