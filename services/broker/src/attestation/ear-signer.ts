import { KeyObject, sign as nodeSign } from 'node:crypto';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import type { JSONWebKeySet, JWK } from 'jose';
import { CustodyError } from '@custody/core';
import { EAR_PROFILE, exportEarSigningKey, generateEarSigningKey, importEarSigningKey, publishJwks, verifyEar, type Ear, type EarSigningKey } from '@custody/policy';

/**
 * The broker's EAR signing key (ES256) and the JWKS it publishes at /.well-known/jwks.json.
 * With a path the private JWK is kept in that file (mode 0600, created on first start, refused
 * when group or others can read it), so EARs stay verifiable across restarts and replicas that
 * share the file verify each other's EARs. Without a path the key lives in memory only.
 */
export class EarSigner {
  readonly jwks: JSONWebKeySet;
  private readonly header: string;
  private readonly signingKey: KeyObject;

  private constructor(
    readonly key: EarSigningKey,
    /** Where the key is kept, or undefined for an in-memory key. */
    readonly path: string | undefined,
  ) {
    this.jwks = publishJwks([key]);
    this.header = b64url(JSON.stringify({ alg: 'ES256', kid: key.kid, typ: 'JWT' }));
    this.signingKey = KeyObject.from(key.privateKey);
  }

  /**
   * Signs EAR claims as a compact JWS (RFC 7515) with ES256: the same token `signEar` (jose)
   * writes, made synchronously with node:crypto on the attestation path. Verified with
   * `verifyEar` against `jwks` like any other.
   */
  sign(ear: Ear): string {
    const input = `${this.header}.${b64url(JSON.stringify(ear))}`;
    const signature = nodeSign('sha256', Buffer.from(input, 'ascii'), { key: this.signingKey, dsaEncoding: 'ieee-p1363' });
    return `${input}.${signature.toString('base64url')}`;
  }

  get kid(): string {
    return this.key.kid;
  }

  static async inMemory(): Promise<EarSigner> {
    return new EarSigner(await generateEarSigningKey({ alg: 'ES256' }), undefined).selfTest();
  }

  /** Signs a probe EAR and verifies it with `verifyEar` against `jwks`: the signer and the JWKS agree, or the broker does not start. */
  private async selfTest(): Promise<this> {
    const now = Math.floor(Date.now() / 1000);
    const probe: Ear = { eat_profile: EAR_PROFILE, iat: now, exp: now + 60, 'ear.verifier-id': { developer: 'custody', build: 'self-test' }, submods: { cpu0: { 'ear.status': 'none' } } };
    try {
      await verifyEar(this.sign(probe), { jwks: this.jwks, now: new Date(now * 1000) });
    } catch (e) {
      throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key does not verify against its own JWKS', { cause: e });
    }
    return this;
  }

  /** Loads the key at `path`, creating it (0600, exclusive create) when the file does not exist. */
  static async open(path: string): Promise<EarSigner> {
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
    return new EarSigner(await readKeyFile(path), path).selfTest();
  }
}

function exists(path: string): boolean {
  try {
    statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function readKeyFile(path: string): Promise<EarSigningKey> {
  let mode: number;
  let size: number;
  try {
    ({ mode, size } = statSync(path));
  } catch (e) {
    throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key file cannot be read', { cause: e, detail: { path } });
  }
  if ((mode & 0o077) !== 0) throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key file must not be accessible by group or others (chmod 600)', { detail: { path, mode: (mode & 0o777).toString(8) } });
  if (size > 4096) throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key file is too large', { detail: { path, size } });
  let jwk: JWK;
  try {
    jwk = JSON.parse(readFileSync(path, 'utf8')) as JWK;
  } catch (e) {
    throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key file is not a JWK', { cause: e, detail: { path } });
  }
  if (jwk.kty !== 'EC' || jwk.crv !== 'P-256') throw new CustodyError('ERR_EAR_KEY', 'the EAR signing key must be an EC P-256 key (ES256)', { detail: { path } });
  return importEarSigningKey(jwk);
}

function b64url(text: string): string {
  return Buffer.from(text, 'utf8').toString('base64url');
}
