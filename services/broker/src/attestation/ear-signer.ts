import { KeyObject, sign as nodeSign } from 'node:crypto';
import { statSync, writeFileSync } from 'node:fs';
import type { JSONWebKeySet } from 'jose';
import { CustodyError, systemClock, toCustodyError, type Clock } from '@custody/core';
import { DEFAULT_EAR_TTL_SECONDS, EAR_PROFILE, exportEarSigningKey, generateEarSigningKey, publishJwks, verifyEar, type Ear, type EarSigningKey } from '@custody/policy';
import { EAR_KEY_CLOCK_SKEW_SECONDS, fileStamp, MAX_EAR_KEY_RELOAD_SECONDS, MAX_EAR_LIFETIME_SECONDS, readEarKeyFile, type EarKeySet, type RetiredEarKey } from './ear-key-set.js';

/** How often a file-backed signer re-reads its key file when watching it (EarSigner.watch). */
export const DEFAULT_EAR_KEY_RELOAD_MS = 10_000;

export interface EarSignerOptions {
  /** The time at which the JWKS is computed (retired keys age out of it). Default: the system clock. */
  clock?: Clock;
  /**
   * The longest EAR lifetime (`exp - iat`) this signer signs; `sign` refuses longer ones. A retired
   * key stays published this long after its retirement, plus the reload interval and
   * EAR_KEY_CLOCK_SKEW_SECONDS. Default DEFAULT_EAR_TTL_SECONDS (300); at most a day.
   */
  maxEarLifetimeSeconds?: number;
  /**
   * How often `watch` re-reads the key file, in ms (default 10 000; 0: only on `reload()`). Part
   * of the retention window, since a replica that has not yet re-read a rotated file still signs
   * with the retired key. Replicas sharing the file should use the same settings.
   */
  reloadIntervalMs?: number;
}

export interface EarKeyReload {
  kid: string;
  /** Retired keys listed in the file, newest first. */
  retired: string[];
}

interface SignerState {
  readonly key: EarSigningKey;
  readonly header: string;
  readonly signingKey: KeyObject;
  readonly retired: readonly RetiredEarKey[];
  /** The key file version this state was read from. */
  readonly stamp: string | undefined;
}

/**
 * The broker's EAR signing key (ES256) and the JWKS it publishes at /.well-known/jwks.json.
 *
 * With a path the keys live in that file (mode 0600, created on first start as a single private
 * JWK, refused when group or others can access it), so EARs stay verifiable across restarts and
 * replicas that share the file verify each other's EARs. `custody broker rotate-ear-key` turns
 * the file into a key set (ear-key-set.ts): this signer signs with its current key only and
 * publishes the current key plus each retired key until `retentionSeconds` after its
 * retirement, so EARs signed before a rotation keep verifying until they expire. A running
 * signer picks a rotated file up on `reload()`, which `watch()` calls every `reloadIntervalMs`
 * (a stat; the file is read only when it changed). Without a path the key lives in memory only.
 */
export class EarSigner {
  /** The longest EAR lifetime this signer signs. */
  readonly maxEarLifetimeSeconds: number;
  readonly reloadIntervalMs: number;
  /** How long a retired key stays in the JWKS after `retiredAt`: EAR lifetime + reload interval + skew. */
  readonly retentionSeconds: number;
  private readonly clock: Clock;
  private state: SignerState;
  private published: { ids: string; jwks: JSONWebKeySet } | undefined;
  private reloading: Promise<boolean> | undefined;

  private constructor(
    set: EarKeySet,
    stamp: string | undefined,
    /** Where the keys are kept, or undefined for an in-memory key. */
    readonly path: string | undefined,
    options: EarSignerOptions,
  ) {
    this.clock = options.clock ?? systemClock;
    ({ maxEarLifetimeSeconds: this.maxEarLifetimeSeconds, reloadIntervalMs: this.reloadIntervalMs } = checkOptions(options, path));
    this.retentionSeconds = this.maxEarLifetimeSeconds + Math.ceil(this.reloadIntervalMs / 1000) + EAR_KEY_CLOCK_SKEW_SECONDS;
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
   * The JWKS at `now` (ms): the current key, then every retired key retired less than
   * `retentionSeconds` before `now`, newest first. Public members only.
   */
  jwksAt(now: number): JSONWebKeySet {
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
    if (kid === undefined) return false;
    const s = this.state;
    if (kid === s.key.kid) return true;
    return s.retired.some((r) => r.kid === kid && now < r.retiredAt + this.retentionSeconds * 1000);
  }

  /**
   * Signs EAR claims as a compact JWS (RFC 7515) with ES256 and the current key: the same token
   * `signEar` (jose) writes, made synchronously with node:crypto on the attestation path.
   * Verified with `verifyEar` against `jwks` like any other. An EAR living longer than
   * `maxEarLifetimeSeconds` is refused (ERR_USAGE): it could outlive its key's publication.
   */
  sign(ear: Ear): string {
    return this.signWithKid(ear).token;
  }

  /** `sign`, also naming the key that signed (the current key may change between two calls). */
  signWithKid(ear: Ear): { token: string; kid: string } {
    if (!(ear.exp - ear.iat <= this.maxEarLifetimeSeconds)) throw new CustodyError('ERR_USAGE', `the EAR lifetime exceeds this signer's maximum of ${this.maxEarLifetimeSeconds} s`);
    const s = this.state;
    return { token: signWith(s, ear), kid: s.key.kid };
  }

  /**
   * Re-reads the key file when it changed since it was last read (a stat otherwise), checks it
   * (permissions, form, a probe EAR verifying against the new JWKS) and switches to it. Returns
   * whether it switched. On any error the keys in use stay in use. Always false in memory.
   */
  reload(): Promise<boolean> {
    if (this.path === undefined) return Promise.resolve(false);
    this.reloading ??= this.reloadNow(this.path).finally(() => (this.reloading = undefined));
    return this.reloading;
  }

  private async reloadNow(path: string): Promise<boolean> {
    let stamp: string;
    try {
      stamp = fileStamp(statSync(path));
    } catch (e) {
      throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key file cannot be read', { cause: e, detail: { path } });
    }
    if (stamp === this.state.stamp) return false;
    const read = await readEarKeyFile(path);
    const next = stateOf(read.set, read.stamp);
    await selfTest(next, this.retentionSeconds, this.clock().getTime());
    this.state = next;
    return true;
  }

  /**
   * Calls `reload` every `reloadIntervalMs` (not at all when 0) until the returned function is
   * called. The timer does not keep the process alive.
   */
  watch(handlers: { onReload?: (r: EarKeyReload) => void; onError?: (e: CustodyError) => void } = {}): () => void {
    if (this.path === undefined || this.reloadIntervalMs === 0) return () => undefined;
    const timer = setInterval(() => {
      this.reload().then(
        (changed) => {
          if (changed) handlers.onReload?.({ kid: this.kid, retired: this.state.retired.map((r) => r.kid) });
        },
        (e: unknown) => handlers.onError?.(toCustodyError(e, 'ERR_EAR_KEY')),
      );
    }, this.reloadIntervalMs);
    timer.unref();
    return () => clearInterval(timer);
  }

  static async inMemory(options: EarSignerOptions = {}): Promise<EarSigner> {
    const signer = new EarSigner({ current: await generateEarSigningKey({ alg: 'ES256' }), retired: [], form: 'jwk' }, undefined, undefined, options);
    await selfTest(signer.state, signer.retentionSeconds, signer.clock().getTime());
    return signer;
  }

  /**
   * Loads the keys at `path` (a private JWK or a key set), creating a single-key file (0600,
   * exclusive create) when the file does not exist.
   */
  static async open(path: string, options: EarSignerOptions = {}): Promise<EarSigner> {
    checkOptions(options, path);
    if (!exists(path)) {
      const fresh = await generateEarSigningKey({ alg: 'ES256', extractable: true });
      const jwk = await exportEarSigningKey(fresh);
      try {
        writeFileSync(path, JSON.stringify(jwk) + '\n', { mode: 0o600, flag: 'wx' });
      } catch (e) {
        // Another replica created it first: use theirs.
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key file cannot be written', { cause: e, detail: { path } });
      }
    }
    const read = await readEarKeyFile(path);
    const signer = new EarSigner(read.set, read.stamp, path, options);
    await selfTest(signer.state, signer.retentionSeconds, signer.clock().getTime());
    return signer;
  }
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
async function selfTest(s: SignerState, retentionSeconds: number, nowMs: number): Promise<void> {
  const now = Math.floor(nowMs / 1000);
  const probe: Ear = { eat_profile: EAR_PROFILE, iat: now, exp: now + 1, 'ear.verifier-id': { developer: 'custody', build: 'self-test' }, submods: { cpu0: { 'ear.status': 'none' } } };
  const jwks = publishJwks([s.key, ...s.retired.filter((r) => nowMs < r.retiredAt + retentionSeconds * 1000).map((r) => r.publicJwk)]);
  try {
    await verifyEar(signWith(s, probe), { jwks, now: new Date(now * 1000) });
  } catch (e) {
    throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key does not verify against its own JWKS', { cause: e });
  }
}

function checkOptions(options: EarSignerOptions, path: string | undefined): { maxEarLifetimeSeconds: number; reloadIntervalMs: number } {
  return {
    maxEarLifetimeSeconds: bounded(options.maxEarLifetimeSeconds ?? DEFAULT_EAR_TTL_SECONDS, 1, MAX_EAR_LIFETIME_SECONDS, 'maxEarLifetimeSeconds'),
    reloadIntervalMs: bounded(options.reloadIntervalMs ?? (path === undefined ? 0 : DEFAULT_EAR_KEY_RELOAD_MS), 0, MAX_EAR_KEY_RELOAD_SECONDS * 1000, 'reloadIntervalMs'),
  };
}

function bounded(v: number, min: number, max: number, what: string): number {
  if (!Number.isInteger(v) || v < min || v > max) throw new CustodyError('ERR_USAGE', `${what} must be an integer from ${min} to ${max}`);
  return v;
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
