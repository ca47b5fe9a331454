import { KeyObject, sign as nodeSign } from 'node:crypto';
import { lstatSync, realpathSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import type { JSONWebKeySet } from 'jose';
import { CustodyError, systemClock, toCustodyError, type Clock } from '@custody/core';
import { DEFAULT_EAR_TTL_SECONDS, EAR_PROFILE, exportEarSigningKey, generateEarSigningKey, publishJwks, verifyEar, type Ear, type EarSigningKey } from '@custody/policy';
import { EAR_KEY_RETENTION_SECONDS, fileStamp, MAX_EAR_KEY_RELOAD_SECONDS, MAX_EAR_LIFETIME_SECONDS, readEarKeyFile, removeStaleKeyFileLeftovers, writeFileExclusive, type EarKeySet, type RetiredEarKey } from './ear-key-set.js';

/** How often a file-backed signer re-reads its key file when watching it (EarSigner.watch). */
export const DEFAULT_EAR_KEY_RELOAD_MS = 10_000;
/** `refresh` looks at the key file at most this often per trigger (a stat; a read only when it changed). */
export const EAR_KEY_RECHECK_MS = 1_000;

export interface EarSignerOptions {
  /** The time at which the JWKS is computed (retired keys age out of it). Default: the system clock. */
  clock?: Clock;
  /**
   * The longest EAR lifetime (`exp - iat`) this signer signs; `sign` refuses longer ones.
   * Default DEFAULT_EAR_TTL_SECONDS (300); at most MAX_EAR_LIFETIME_SECONDS (a day), which
   * EAR_KEY_RETENTION_SECONDS covers whatever the value.
   */
  maxEarLifetimeSeconds?: number;
  /**
   * How often `watch` re-reads the key file, in ms: 1 to 3 600 000 (MAX_EAR_KEY_RELOAD_SECONDS),
   * default 10 000. A file-backed signer must poll: a replica that never re-read the file would
   * keep signing with (and publishing) a key a rotation retired or dropped. Ignored in memory.
   */
  reloadIntervalMs?: number;
  /** Monotonic milliseconds, for the once-a-second bound of `refresh`. Default `performance.now`. */
  monotonicMs?: () => number;
}

export interface EarKeyReload {
  kid: string;
  /** Retired keys listed in the file, newest first. */
  retired: string[];
}

/** What `refresh` found. */
export interface EarKeyCheck {
  /** The file changed and its keys are now in use. */
  changed: boolean;
  /**
   * The file changed and could not be used (the signer is unusable until it can: see
   * EarSigner.unusable): set the first time a version of the file fails only, so that a caller
   * logging it logs each bad version once. Its code and message carry no key material.
   */
  error?: CustodyError;
}

/** What made `refresh` look: a request (attestation, release), an EAR of an unknown kid, a JWKS fetch. Each is throttled on its own. */
export type EarKeyRefreshTrigger = 'request' | 'unknown-kid' | 'jwks';

/** The JWKS published while the key file is unusable: no key is vouched for. */
const NO_KEYS: JSONWebKeySet = Object.freeze({ keys: Object.freeze([]) as unknown as JSONWebKeySet['keys'] });

interface SignerState {
  readonly key: EarSigningKey;
  readonly header: string;
  readonly signingKey: KeyObject;
  readonly retired: readonly RetiredEarKey[];
  /** The key file version this state was read from. */
  readonly stamp: string | undefined;
}

interface LoadResult {
  changed: boolean;
  error?: CustodyError;
  /** The error is that of a file version that already failed (not read again). */
  repeated?: boolean;
}

/**
 * The broker's EAR signing key (ES256) and the JWKS it publishes at /.well-known/jwks.json.
 *
 * With a path the keys live in that file (mode 0600, owned by this process's user, created
 * atomically on first start as a single private JWK), so EARs stay verifiable across restarts and
 * replicas that share the file verify each other's EARs. `custody broker rotate-ear-key` turns
 * the file into a key set (ear-key-set.ts): this signer signs with its current key only and
 * publishes the current key plus each retired key until EAR_KEY_RETENTION_SECONDS after its
 * retirement, so EARs signed before a rotation, by this replica or any other, keep verifying until
 * they expire. A running signer picks a rotated file up on `reload()`, which `watch()` calls every
 * `reloadIntervalMs`, and on `refresh()`, which the handshake calls before each attestation and
 * release (at most once a second) and when a release presents an unknown kid (likewise). Each is a
 * stat; the file is read only when it changed, and a version that failed is not read again
 * unless it failed on an I/O error (EMFILE, EIO, ...: read again on the next look).
 *
 * Fail closed: once the file has changed (a rotation, a chmod, a removal) and cannot be used, the
 * keys read from the earlier version are no longer vouched for (a `--no-overlap` rotation may have
 * dropped them as compromised): until a usable file loads, or the file is back to the version in
 * use, the signer publishes an empty JWKS, `publishes` nothing, refuses to sign and `unusable`
 * returns the ERR_EAR_KEY that the handshake refuses releases with.
 * Without a path the key lives in memory only.
 */
export class EarSigner {
  /** The longest EAR lifetime this signer signs. */
  readonly maxEarLifetimeSeconds: number;
  readonly reloadIntervalMs: number;
  /** How long a retired key stays in the JWKS after `retiredAt`: EAR_KEY_RETENTION_SECONDS, on every broker. */
  readonly retentionSeconds = EAR_KEY_RETENTION_SECONDS;
  private readonly clock: Clock;
  private readonly monotonicMs: () => number;
  private state: SignerState;
  private published: { ids: string; jwks: JSONWebKeySet } | undefined;
  private loading: Promise<LoadResult> | undefined;
  /**
   * The file version that could not be used, and why: while set, the signer is unusable (fail
   * closed). `retry`: the failure was an I/O error (EMFILE, EIO, EAGAIN, ...) that may not repeat,
   * so that version is read again on the next look; otherwise (parse, form, mode, owner, size, type,
   * self-test) it would fail the same way and is not read again until the file changes.
   */
  private failed: { stamp: string; error: CustodyError; retry: boolean } | undefined;
  private readonly lastRefresh: Record<EarKeyRefreshTrigger, number> = { request: -Infinity, 'unknown-kid': -Infinity, jwks: -Infinity };

  private constructor(
    set: EarKeySet,
    stamp: string | undefined,
    /** Where the keys are kept, or undefined for an in-memory key. */
    readonly path: string | undefined,
    options: EarSignerOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    this.monotonicMs = options.monotonicMs ?? (() => performance.now());
    ({ maxEarLifetimeSeconds: this.maxEarLifetimeSeconds, reloadIntervalMs: this.reloadIntervalMs } = checkOptions(options, path));
    this.state = stateOf(set, stamp);
  }

  /** The current signing key. */
  get key(): EarSigningKey {
    return this.state.key;
  }

  /** The kid of the current signing key. */
  get kid(): string {
    return this.state.key.kid;
  }

  /** Retired keys known from the file, newest first, whether or not still published. */
  get retired(): readonly { kid: string; retiredAt: Date }[] {
    return this.state.retired.map((r) => ({ kid: r.kid, retiredAt: new Date(r.retiredAt) }));
  }

  /** The JWKS at the signer's clock. */
  get jwks(): JSONWebKeySet {
    return this.jwksAt(this.clock().getTime());
  }

  /**
   * ERR_EAR_KEY while the key file has changed and cannot be used (no key is trusted then: see
   * the class comment), else undefined. The error names no path and carries no key material.
   */
  unusable(): CustodyError | undefined {
    if (this.failed === undefined) return undefined;
    return new CustodyError('ERR_EAR_KEY', 'the EAR signing key file changed and cannot be used: no attestation result is signed, verified or released on until a usable file is in place');
  }

  /**
   * The JWKS at `now` (ms): the current key, then every retired key retired less than
   * `retentionSeconds` before `now`, newest first. Public members only. Empty while `unusable`.
   */
  jwksAt(now: number): JSONWebKeySet {
    if (this.failed !== undefined) return NO_KEYS;
    const s = this.state;
    const kept = s.retired.filter((r) => now < r.retiredAt + this.retentionSeconds * 1000);
    const ids = [s.key.kid, ...kept.map((r) => r.kid)].join(' ');
    const cached = this.published;
    if (cached?.ids === ids) return cached.jwks;
    const jwks = publishJwks([s.key, ...kept.map((r) => r.publicJwk)]);
    this.published = { ids, jwks };
    return jwks;
  }

  /** Whether the JWKS at `now` lists `kid`. */
  publishes(kid: string | undefined, now: number): boolean {
    if (kid === undefined || this.failed !== undefined) return false;
    const s = this.state;
    if (kid === s.key.kid) return true;
    return s.retired.some((r) => r.kid === kid && now < r.retiredAt + this.retentionSeconds * 1000);
  }

  /**
   * Signs EAR claims as a compact JWS (RFC 7515) with ES256 and the current key: the same token
   * `signEar` (jose) writes, made synchronously with node:crypto on the attestation path.
   * Verified with `verifyEar` against `jwks` like any other. An EAR living longer than
   * `maxEarLifetimeSeconds` is refused (ERR_USAGE): it could outlive its key's publication.
   * While `unusable`, nothing is signed (ERR_EAR_KEY).
   */
  sign(ear: Ear): string {
    return this.signWithKid(ear).token;
  }

  /** `sign`, also naming the key that signed (the current key may change between two calls). */
  signWithKid(ear: Ear): { token: string; kid: string } {
    if (!(ear.exp - ear.iat <= this.maxEarLifetimeSeconds)) throw new CustodyError('ERR_USAGE', `the EAR lifetime exceeds this signer's maximum of ${this.maxEarLifetimeSeconds} s`);
    const refused = this.unusable();
    if (refused) throw refused;
    const s = this.state;
    return { token: signWith(s, ear), kid: s.key.kid };
  }

  /**
   * Re-reads the key file when it changed since it was last read (a stat otherwise), checks it
   * (owner, permissions, form, a probe EAR verifying against the new JWKS) and switches to it.
   * Returns whether it switched. On any error the signer is unusable (fail closed, see the class
   * comment) until a usable file loads; a version that failed is not read again until it changes,
   * unless it failed on an I/O error (too many open files, EIO, ...), which may not repeat.
   * Always false in memory.
   */
  async reload(): Promise<boolean> {
    const r = await this.load();
    if (r.error) throw r.error;
    return r.changed;
  }

  /**
   * `reload` for the request path, at most once per EAR_KEY_RECHECK_MS for each trigger (so a
   * stream of requests, or of EARs with made-up kids, costs at most a stat a second each), and
   * never throwing: an unusable file is returned as `error` the first time that version fails.
   */
  async refresh(trigger: EarKeyRefreshTrigger): Promise<EarKeyCheck> {
    if (this.path === undefined) return { changed: false };
    const t = this.monotonicMs();
    if (t - this.lastRefresh[trigger] < EAR_KEY_RECHECK_MS) return { changed: false };
    this.lastRefresh[trigger] = t;
    const r = await this.load();
    return r.error && !r.repeated ? { changed: r.changed, error: r.error } : { changed: r.changed };
  }

  private load(): Promise<LoadResult> {
    if (this.path === undefined) return Promise.resolve({ changed: false });
    this.loading ??= this.loadNow(this.path).finally(() => (this.loading = undefined));
    return this.loading;
  }

  private async loadNow(path: string): Promise<LoadResult> {
    let stamp: string;
    try {
      stamp = fileStamp(await stat(path));
    } catch (e) {
      stamp = `unreadable:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
      // The stat runs on every look anyway: the stamp only keeps the error from being reported twice.
      return this.fail(stamp, new CustodyError('ERR_EAR_KEY', 'the EAR signing key file cannot be read', { cause: e, detail: { path } }), false);
    }
    if (stamp === this.state.stamp) {
      this.failed = undefined;
      return { changed: false };
    }
    if (this.failed?.stamp === stamp && !this.failed.retry) return { changed: false, error: this.failed.error, repeated: true };
    try {
      const read = await readEarKeyFile(path);
      const next = stateOf(read.set, read.stamp);
      await selfTest(next, this.clock().getTime());
      this.state = next;
      this.failed = undefined;
      return { changed: true };
    } catch (e) {
      const error = toCustodyError(e, 'ERR_EAR_KEY');
      return this.fail(stamp, error, isIoError(error));
    }
  }

  /** Fails closed on `stamp`; an error of the same kind (I/O or not) for the same version was already reported: repeated. */
  private fail(stamp: string, error: CustodyError, retry: boolean): LoadResult {
    if (this.failed?.stamp === stamp && this.failed.retry === retry) return { changed: false, error: this.failed.error, repeated: true };
    this.failed = { stamp, error, retry };
    return { changed: false, error };
  }

  /**
   * Calls `reload` every `reloadIntervalMs` until the returned function is called; `onError`
   * hears of each bad version of the file once. The timer does not keep the process alive.
   */
  watch(handlers: { onReload?: (r: EarKeyReload) => void; onError?: (e: CustodyError) => void } = {}): () => void {
    if (this.path === undefined) return () => undefined;
    const timer = setInterval(() => {
      this.load().then(
        (r) => {
          if (r.changed) handlers.onReload?.({ kid: this.kid, retired: this.state.retired.map((k) => k.kid) });
          if (r.error && !r.repeated) handlers.onError?.(r.error);
        },
        (e: unknown) => handlers.onError?.(toCustodyError(e, 'ERR_EAR_KEY')),
      );
    }, this.reloadIntervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  static async inMemory(options: EarSignerOptions = {}): Promise<EarSigner> {
    const signer = new EarSigner({ current: await generateEarSigningKey({ alg: 'ES256' }), retired: [], form: 'jwk' }, undefined, undefined, options);
    await selfTest(signer.state, signer.clock().getTime());
    return signer;
  }

  /**
   * Loads the keys at `path` (a private JWK or a key set), creating a single-key file (0600)
   * when none exists: written completely beside it, then linked into place, so a replica
   * starting at the same moment reads the whole file or uses its own.
   */
  static async open(path: string, options: EarSignerOptions = {}): Promise<EarSigner> {
    checkOptions(options, path);
    // Temporary files a crashed creation or rotation left (they may hold a private key).
    removeStaleKeyFileLeftovers(path);
    const target = realpathOr(path);
    if (target !== undefined && target !== path) removeStaleKeyFileLeftovers(target);
    if (!exists(path)) {
      const fresh = await generateEarSigningKey({ alg: 'ES256', extractable: true });
      // Another replica may create it first: then theirs is used.
      writeFileExclusive(path, JSON.stringify(await exportEarSigningKey(fresh)) + '\n');
    }
    const read = await readEarKeyFile(path);
    const signer = new EarSigner(read.set, read.stamp, path, options);
    await selfTest(signer.state, signer.clock().getTime());
    return signer;
  }
}

/**
 * Whether reading the key file failed on an I/O error (the open or a read returned an errno:
 * EMFILE, ENFILE, EIO, EAGAIN, EINTR, ...), which the next attempt may not meet, rather than on
 * what the file holds or how it is kept, which an attempt on the same version would meet again.
 */
function isIoError(e: CustodyError): boolean {
  const code = (e.cause as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && /^E[A-Z0-9]+$/.test(code);
}

function stateOf(set: EarKeySet, stamp: string | undefined): SignerState {
  return {
    key: set.current,
    header: b64url(JSON.stringify({ alg: 'ES256', kid: set.current.kid, typ: 'JWT' })),
    signingKey: KeyObject.from(set.current.privateKey),
    retired: set.retired,
    stamp,
  };
}

function signWith(s: SignerState, ear: Ear): string {
  const input = `${s.header}.${b64url(JSON.stringify(ear))}`;
  const signature = nodeSign('sha256', Buffer.from(input, 'ascii'), { key: s.signingKey, dsaEncoding: 'ieee-p1363' });
  return `${input}.${signature.toString('base64url')}`;
}

/** Signs a probe EAR with the state's key and verifies it with `verifyEar` against that state's JWKS: they agree, or the keys are not used. */
async function selfTest(s: SignerState, nowMs: number): Promise<void> {
  const now = Math.floor(nowMs / 1000);
  const probe: Ear = { eat_profile: EAR_PROFILE, iat: now, exp: now + 1, 'ear.verifier-id': { developer: 'custody', build: 'self-test' }, submods: { cpu0: { 'ear.status': 'none' } } };
  const jwks = publishJwks([s.key, ...s.retired.filter((r) => nowMs < r.retiredAt + EAR_KEY_RETENTION_SECONDS * 1000).map((r) => r.publicJwk)]);
  try {
    await verifyEar(signWith(s, probe), { jwks, now: new Date(now * 1000) });
  } catch (e) {
    throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key does not verify against its own JWKS', { cause: e });
  }
}

function checkOptions(options: EarSignerOptions, path: string | undefined): { maxEarLifetimeSeconds: number; reloadIntervalMs: number } {
  return {
    maxEarLifetimeSeconds: bounded(options.maxEarLifetimeSeconds ?? DEFAULT_EAR_TTL_SECONDS, 1, MAX_EAR_LIFETIME_SECONDS, 'maxEarLifetimeSeconds'),
    // A file-backed signer must poll (0 would never see a rotation); in memory there is no file.
    reloadIntervalMs: bounded(options.reloadIntervalMs ?? (path === undefined ? 0 : DEFAULT_EAR_KEY_RELOAD_MS), path === undefined ? 0 : 1, MAX_EAR_KEY_RELOAD_SECONDS * 1000, 'reloadIntervalMs'),
  };
}

function bounded(v: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new CustodyError('ERR_USAGE', `${what} must be an integer from ${min} to ${max}`);
  return v;
}

function realpathOr(path: string): string | undefined {
  try {
    return realpathSync(path);
  } catch {
    return undefined;
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
