// The broker's EAR signing key: persisted 0600 in the data dir, reloaded with the same kid,
// refused when others can read it, and its tokens verify with verifyEar against its JWKS.
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { jwtVerify, createLocalJWKSet } from 'jose';
import { EAR_PROFILE, verifyEar, type Ear } from '@custody/policy';
import { EarSigner } from './ear-signer.js';

const now = Math.floor(Date.now() / 1000);
const ear: Ear = { eat_profile: EAR_PROFILE, iat: now, exp: now + 300, 'ear.verifier-id': { developer: 'd', build: 'b' }, eat_nonce: 'AAAAAAAAAAA', submods: { cpu0: { 'ear.status': 'affirming' } } };

describe('EarSigner', () => {
  let dir: string;
  beforeEach(() => (dir = mkdtempSync(join(tmpdir(), 'custody-ear-'))));
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('creates the key file 0600 on first start and reloads the same key', async () => {
    const path = join(dir, 'ear.jwk');
    const a = await EarSigner.open(path);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    const b = await EarSigner.open(path);
    expect(b.kid).toBe(a.kid);
    expect(b.jwks).toEqual(a.jwks);
    expect(JSON.stringify(a.jwks)).not.toMatch(/"d"/);
    // A token from one verifies with the other's JWKS.
    expect((await verifyEar(a.sign(ear), { jwks: b.jwks, now: new Date(now * 1000) })).status).toBe('affirming');
  });

  it('signs compact JWS that jose and verifyEar accept, and no other key verifies', async () => {
    const s = await EarSigner.inMemory();
    const token = s.sign(ear);
    const { protectedHeader, payload } = await jwtVerify(token, createLocalJWKSet(s.jwks), { currentDate: new Date(now * 1000) });
    expect(protectedHeader).toEqual({ alg: 'ES256', kid: s.kid, typ: 'JWT' });
    expect(payload).toEqual(ear);
    const other = await EarSigner.inMemory();
    await expect(verifyEar(token, { jwks: other.jwks, now: new Date(now * 1000) })).rejects.toMatchObject({ code: 'ERR_EAR_KEY_UNKNOWN' });
  });

  it('refuses a key file others can read, one that is not a P-256 JWK, and garbage', async () => {
    const path = join(dir, 'ear.jwk');
    await EarSigner.open(path);
    chmodSync(path, 0o644);
    await expect(EarSigner.open(path)).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
    const ed = join(dir, 'ed.jwk');
    writeFileSync(ed, JSON.stringify({ ...JSON.parse(readFileSync(path, 'utf8')), crv: 'P-384' }), { mode: 0o600 });
    await expect(EarSigner.open(ed)).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
    const junk = join(dir, 'junk.jwk');
    writeFileSync(junk, 'not json', { mode: 0o600 });
    await expect(EarSigner.open(junk)).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
  });
});
