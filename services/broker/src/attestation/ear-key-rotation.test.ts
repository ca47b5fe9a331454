// EAR signing-key rotation with overlap: the key set file (ear-key-set.ts), the signer that reads
// it (retired keys published until their EARs can no longer be valid, at an injected clock),
// reloads of a running signer, refusals of malformed key files, and failing closed (no key
// trusted, nothing signed) while a changed key file cannot be used.
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { EAR_PROFILE, verifyEar, type Ear } from '@custody/policy';
import { EAR_KEY_RECHECK_MS, EarSigner } from './ear-signer.js';
import { EAR_KEY_RETENTION_SECONDS, EAR_KEY_SET_FORMAT, ecThumbprint, MAX_EAR_KEY_RELOAD_SECONDS, MAX_EAR_LIFETIME_SECONDS, MAX_RETIRED_EAR_KEYS, readEarKeyFile, rotateEarKeyFile } from './ear-key-set.js';

const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const S = 1000;

function ear(atMs: number, ttlSeconds = 300): Ear {
  const iat = Math.floor(atMs / 1000);
  return { eat_profile: EAR_PROFILE, iat, exp: iat + ttlSeconds, 'ear.verifier-id': { developer: 'd', build: 'b' }, submods: { cpu0: { 'ear.status': 'affirming' } } };
}

function kidOf(token: string): string {
  return (JSON.parse(Buffer.from(token.split('.')[0]!, 'base64url').toString('utf8')) as { kid: string }).kid;
}

const kids = (jwks: { keys: Array<{ kid?: string }> }) => jwks.keys.map((k) => k.kid);

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'resolved';
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
}

describe('EAR signing-key rotation', () => {
  let dir: string;
  let path: string;
  let now: number;
  const clock = () => new Date(now);
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'custody-ear-rot-'));
    path = join(dir, 'ear-signing-key.jwk');
    now = T0;
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const verifyAt = (token: string, signer: EarSigner, at: number) => verifyEar(token, { jwks: signer.jwksAt(at), now: new Date(at) });

  it('keeps EARs of the retired key verifying until their window ends, signs new EARs with the new kid, and publishes the right keys at each time', async () => {
    const signer = await EarSigner.open(path, { clock, maxEarLifetimeSeconds: 300, reloadIntervalMs: 10 * S });
    // A replica sharing the file that has not re-read it yet.
    const lagging = await EarSigner.open(path, { clock, maxEarLifetimeSeconds: 300, reloadIntervalMs: 10 * S });
    const R = EAR_KEY_RETENTION_SECONDS;
    expect(R).toBe(86_400 + 3_600 + 60);
    expect(signer.retentionSeconds).toBe(R);
    const oldKid = signer.kid;
    const before = signer.sign(ear(T0));
    expect(kidOf(before)).toBe(oldKid);

    const retiredAt = T0 + 100 * S;
    const r = await rotateEarKeyFile(path, { now: new Date(retiredAt) });
    expect(r).toMatchObject({ previousKid: oldKid, overlap: true, retired: [oldKid], dropped: [], retiredAt: new Date(retiredAt).toISOString() });
    expect(r.kid).not.toBe(oldKid);
    now = retiredAt + 1 * S;
    expect(await signer.reload()).toBe(true);
    expect(await signer.reload()).toBe(false); // unchanged file: a stat only
    expect(signer.kid).toBe(r.kid);
    expect(signer.retired).toEqual([{ kid: oldKid, retiredAt: new Date(retiredAt) }]);

    const after = signer.sign(ear(now));
    expect(kidOf(after)).toBe(r.kid);
    // The lagging replica still signs with the retired key until its next reload.
    const late = lagging.sign(ear(retiredAt + 9 * S));
    expect(kidOf(late)).toBe(oldKid);

    // JWKS over time: current first, then the retired key until retiredAt + R.
    expect(kids(signer.jwksAt(retiredAt))).toEqual([r.kid, oldKid]);
    expect(kids(signer.jwksAt(retiredAt + R * S - 1))).toEqual([r.kid, oldKid]);
    expect(kids(signer.jwksAt(retiredAt + R * S))).toEqual([r.kid]);
    expect(JSON.stringify(signer.jwksAt(retiredAt))).not.toMatch(/"d"/);

    // Old-key EARs verify to the end of their lifetime, including the lagging replica's last one.
    expect((await verifyAt(before, signer, T0 + 299 * S)).status).toBe('affirming');
    expect(await codeOf(verifyAt(before, signer, T0 + 300 * S))).toBe('ERR_EAR_EXPIRED');
    expect((await verifyAt(late, signer, retiredAt + 9 * S + 299 * S)).kid).toBe(oldKid);
    // Once the window has passed the retired key is gone: its tokens fail as unknown-key tokens.
    expect(await codeOf(verifyEar(late, { jwks: signer.jwksAt(retiredAt + R * S), now: new Date(retiredAt + 9 * S + 299 * S) }))).toBe('ERR_EAR_KEY_UNKNOWN');
    expect(signer.publishes(oldKid, retiredAt + R * S - 1)).toBe(true);
    expect(signer.publishes(oldKid, retiredAt + R * S)).toBe(false);
    // New-key EARs verify against the JWKS of the lagging replica once it has re-read the file.
    expect(await codeOf(verifyAt(after, lagging, now))).toBe('ERR_EAR_KEY_UNKNOWN');
    expect(await lagging.reload()).toBe(true);
    expect((await verifyAt(after, lagging, now)).kid).toBe(r.kid);
    expect(lagging.jwksAt(now)).toEqual(signer.jwksAt(now));
  });

  it('keeps several retired keys, and a later rotation prunes those no broker can still publish', async () => {
    const signer = await EarSigner.open(path, { clock });
    const k0 = signer.kid;
    const r1 = await rotateEarKeyFile(path, { now: new Date(T0) });
    const r2 = await rotateEarKeyFile(path, { now: new Date(T0 + 60 * S) });
    expect(r2).toMatchObject({ previousKid: r1.kid, retired: [r1.kid, k0], dropped: [] });
    now = T0 + 61 * S;
    await signer.reload();
    expect(kids(signer.jwks)).toEqual([r2.kid, r1.kid, k0]);
    // Retention: a day of EAR lifetime + an hour of reload interval + 60 s skew, whatever the signer's settings.
    now = T0 + EAR_KEY_RETENTION_SECONDS * S;
    expect(kids(signer.jwks)).toEqual([r2.kid, r1.kid]);
    const r3 = await rotateEarKeyFile(path, { now: new Date(T0 + EAR_KEY_RETENTION_SECONDS * S) });
    expect(r3).toMatchObject({ previousKid: r2.kid, retired: [r2.kid, r1.kid], dropped: [k0] });
  });

  it('rotates without overlap: the previous and every retired key are dropped at once', async () => {
    const signer = await EarSigner.open(path, { clock });
    const old = signer.sign(ear(T0));
    const r1 = await rotateEarKeyFile(path, { now: new Date(T0) });
    const r2 = await rotateEarKeyFile(path, { now: new Date(T0 + S), overlap: false });
    expect(r2).toMatchObject({ previousKid: r1.kid, overlap: false, retired: [], dropped: [r1.kid, signer.kid] });
    await signer.reload();
    expect(kids(signer.jwks)).toEqual([r2.kid]);
    expect(await codeOf(verifyAt(old, signer, T0 + 2 * S))).toBe('ERR_EAR_KEY_UNKNOWN');
  });

  it('writes the key set atomically, owner-only, with only public halves of retired keys', async () => {
    await EarSigner.open(path, { clock });
    const legacy = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
    expect(legacy).toMatchObject({ kty: 'EC', crv: 'P-256', d: expect.any(String) });
    const ino = statSync(path).ino;
    const r = await rotateEarKeyFile(path, { now: new Date(T0) });
    const st = statSync(path);
    expect(st.mode & 0o777).toBe(0o600);
    expect(st.ino).not.toBe(ino); // renamed into place, not rewritten
    expect(readdirSync(dir)).toEqual(['ear-signing-key.jwk']); // no temp file left behind
    const set = JSON.parse(readFileSync(path, 'utf8')) as { format: string; current: Record<string, unknown>; retired: Array<{ retiredAt: string; jwk: Record<string, unknown> }> };
    expect(set.format).toBe(EAR_KEY_SET_FORMAT);
    expect(set.current).toMatchObject({ kid: r.kid, d: expect.any(String) });
    expect(set.retired).toEqual([{ retiredAt: new Date(T0).toISOString(), jwk: { kty: 'EC', crv: 'P-256', x: legacy.x, y: legacy.y, kid: legacy.kid, alg: 'ES256', use: 'sig' } }]);
    expect(ecThumbprint(legacy.x as string, legacy.y as string)).toBe(legacy.kid);
    // The set reads back with the same kids.
    const back = await readEarKeyFile(path);
    expect(back.set.form).toBe('set');
    expect(back.set.current.kid).toBe(r.kid);
  });

  it('refuses a missing file, and malformed or exposed key files with ERR_EAR_KEY', async () => {
    expect(await codeOf(rotateEarKeyFile(join(dir, 'missing.jwk')))).toBe('ERR_FILE_NOT_FOUND');
    await EarSigner.open(path, { clock });
    await rotateEarKeyFile(path, { now: new Date(T0) });
    const good = JSON.parse(readFileSync(path, 'utf8')) as { format: string; current: Record<string, unknown>; retired: Array<{ retiredAt: string; jwk: Record<string, unknown> }> };
    const retired = good.retired[0]!;
    const cases: Array<[string, unknown]> = [
      ['not json', '{'],
      ['an array', []],
      ['an unknown format', { ...good, format: 'custody-ear-key-set/v2' }],
      ['no format', { current: good.current, retired: good.retired }],
      ['an extra member', { ...good, next: good.current }],
      ['retired not an array', { ...good, retired: {} }],
      ['a public current key', { ...good, current: retired.jwk }],
      ['a P-384 current key', { ...good, current: { ...good.current, crv: 'P-384' } }],
      ['a current kid that is not its thumbprint', { ...good, current: { ...good.current, kid: 'x' } }],
      ['a retired key with its private half', { ...good, retired: [{ ...retired, jwk: { ...retired.jwk, d: good.current.d } }] }],
      ['a retired key with a wrong kid', { ...good, retired: [{ ...retired, jwk: { ...retired.jwk, kid: 'x' } }] }],
      ['a retired key off the curve', { ...good, retired: [{ ...retired, jwk: { ...retired.jwk, y: retired.jwk.x } }] }],
      ['a retired key without retiredAt', { ...good, retired: [{ jwk: retired.jwk }] }],
      ['a retired key with a bad retiredAt', { ...good, retired: [{ ...retired, retiredAt: 'yesterday' }] }],
      ['the current key retired too', { ...good, retired: [{ retiredAt: retired.retiredAt, jwk: { kty: 'EC', crv: 'P-256', x: good.current.x, y: good.current.y } }] }],
      ['a retired key twice', { ...good, retired: [retired, retired] }],
      ['too many retired keys', { ...good, retired: Array.from({ length: MAX_RETIRED_EAR_KEYS + 1 }, () => retired) }],
      ['too large', 'x'.repeat(70_000)],
    ];
    for (const [name, content] of cases) {
      const p = join(dir, 'bad.jwk');
      writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content), { mode: 0o600 });
      expect([name, await codeOf(EarSigner.open(p))]).toEqual([name, 'ERR_EAR_KEY']);
      expect([name, await codeOf(rotateEarKeyFile(p))]).toEqual([name, 'ERR_EAR_KEY']);
      rmSync(p);
    }
    chmodSync(path, 0o640);
    expect(await codeOf(EarSigner.open(path))).toBe('ERR_EAR_KEY');
    expect(await codeOf(rotateEarKeyFile(path))).toBe('ERR_EAR_KEY');
  });

  it('fails closed when a reload meets a bad file (no key published, nothing signed) until a good one loads, and watch() picks up a rotation by itself', async () => {
    const signer = await EarSigner.open(path, { clock, reloadIntervalMs: 20 });
    const kid = signer.kid;
    const text = readFileSync(path, 'utf8');
    writeFileSync(path, '{"format":"nope"}');
    expect(await codeOf(signer.reload())).toBe('ERR_EAR_KEY');
    expect(signer.unusable()?.code).toBe('ERR_EAR_KEY');
    expect(kids(signer.jwks)).toEqual([]);
    expect(signer.publishes(kid, now)).toBe(false);
    expect(() => signer.sign(ear(now))).toThrow(expect.objectContaining({ code: 'ERR_EAR_KEY' }));
    writeFileSync(path, text);
    expect(await signer.reload()).toBe(true);
    expect(signer.kid).toBe(kid);
    expect(signer.unusable()).toBeUndefined();
    expect(kids(signer.jwks)).toEqual([kid]);

    const reloads: string[] = [];
    const errors: string[] = [];
    const stop = signer.watch({ onReload: (r) => reloads.push(r.kid), onError: (e) => errors.push(e.code) });
    try {
      const r = await rotateEarKeyFile(path, { now: new Date(T0) });
      // Every 20 ms a stat; a loaded machine can hold a look back for a while, so wait up to 15 s.
      await expect.poll(() => reloads.length, { timeout: 15_000 }).toBeGreaterThan(0);
      expect(reloads).toEqual([r.kid]);
      expect(signer.kid).toBe(r.kid);
      expect(errors).toEqual([]);
    } finally {
      stop();
    }
  });

  // The signing replica's settings decide how long its EARs of a retired key live, and the
  // verifying replica may have others: every replica publishes a retired key for the same fixed
  // time, long enough for the longest EAR any replica may sign after the longest reload delay.
  const replicaSettings = [
    { name: 'defaults (300 s EARs, 10 s reloads)', maxEarLifetimeSeconds: 300, reloadIntervalMs: 10 * S },
    { name: '3600 s EARs', maxEarLifetimeSeconds: 3600, reloadIntervalMs: 10 * S },
    { name: 'a day of EAR lifetime, hourly reloads', maxEarLifetimeSeconds: MAX_EAR_LIFETIME_SECONDS, reloadIntervalMs: MAX_EAR_KEY_RELOAD_SECONDS * S },
    { name: '60 s EARs, 1 s reloads', maxEarLifetimeSeconds: 60, reloadIntervalMs: S },
  ];
  for (const signing of replicaSettings) {
    it(`every replica keeps verifying the retired key's EARs of a lagging replica with ${signing.name}, until they expire`, async () => {
      const lagging = await EarSigner.open(path, { clock, ...signing });
      const verifiers = await Promise.all(replicaSettings.map((v) => EarSigner.open(path, { clock, maxEarLifetimeSeconds: v.maxEarLifetimeSeconds, reloadIntervalMs: v.reloadIntervalMs })));
      const oldKid = lagging.kid;
      await rotateEarKeyFile(path, { now: new Date(T0) });
      for (const v of verifiers) expect(await v.reload()).toBe(true);
      // The lagging replica re-reads the file only at the end of its reload interval (+ skew):
      // its last EAR of the retired key, of its longest lifetime, is signed then.
      const signedAt = T0 + signing.reloadIntervalMs + 60 * S;
      const token = lagging.sign(ear(signedAt, signing.maxEarLifetimeSeconds));
      expect(kidOf(token)).toBe(oldKid);
      const lastValid = signedAt + signing.maxEarLifetimeSeconds * S - 1;
      const outcomes = await Promise.all(verifiers.map(async (v, i) => [replicaSettings[i]!.name, await codeOf(verifyEar(token, { jwks: v.jwksAt(lastValid), now: new Date(lastValid), maxTtlSeconds: MAX_EAR_LIFETIME_SECONDS }))]));
      expect(outcomes).toEqual(replicaSettings.map((v) => [v.name, 'resolved']));
      // Then it expires as any EAR does (with the longest settings, exactly when its key leaves the JWKS).
      expect(await codeOf(verifyEar(token, { jwks: verifiers[0]!.jwksAt(lastValid), now: new Date(lastValid + 1), maxTtlSeconds: MAX_EAR_LIFETIME_SECONDS }))).toBe('ERR_EAR_EXPIRED');
      expect(verifiers[0]!.publishes(oldKid, T0 + EAR_KEY_RETENTION_SECONDS * S)).toBe(false);
      expect(verifiers.map((v) => v.retentionSeconds)).toEqual(verifiers.map(() => EAR_KEY_RETENTION_SECONDS));
    });
  }

  it('refuses a reload interval of 0 (or above an hour) for a file-backed key: a replica must notice a rotation by itself', async () => {
    for (const reloadIntervalMs of [0, -1, 1.5, MAX_EAR_KEY_RELOAD_SECONDS * S + 1]) {
      expect([reloadIntervalMs, await codeOf(EarSigner.open(path, { reloadIntervalMs }))]).toEqual([reloadIntervalMs, 'ERR_USAGE']);
    }
    expect((await EarSigner.open(path, { reloadIntervalMs: 1 })).reloadIntervalMs).toBe(1);
    expect((await EarSigner.open(path)).reloadIntervalMs).toBe(10 * S);
    // In memory there is no file to re-read.
    expect((await EarSigner.inMemory({ reloadIntervalMs: 0 })).reloadIntervalMs).toBe(0);
  });

  it('after --no-overlap, a rotated file the broker cannot use (chmod 640) does not leave the dropped key trusted', async () => {
    let mono = 0;
    const signer = await EarSigner.open(path, { clock, monotonicMs: () => mono });
    const stolen = join(dir, 'stolen.jwk');
    writeFileSync(stolen, readFileSync(path), { mode: 0o600 });
    const attacker = await EarSigner.open(stolen, { clock });
    const r = await rotateEarKeyFile(path, { now: new Date(T0), overlap: false });
    chmodSync(path, 0o640);
    mono += EAR_KEY_RECHECK_MS;
    expect((await signer.refresh('request')).error?.code).toBe('ERR_EAR_KEY');
    // Neither the dropped key nor any other is trusted, at any time, while the file is unusable.
    for (const at of [now, now + 24 * 3600 * S]) {
      expect(await codeOf(verifyAt(attacker.sign(ear(at)), signer, at))).toBe('ERR_EAR_KEY_UNKNOWN');
      expect(signer.publishes(r.previousKid, at)).toBe(false);
    }
    expect(kids(signer.jwks)).toEqual([]);
    // Looked at again (a stat a second), still unusable: still closed, and not reported again.
    mono += EAR_KEY_RECHECK_MS;
    expect(await signer.refresh('request')).toEqual({ changed: false });
    expect(signer.unusable()?.code).toBe('ERR_EAR_KEY');
    // Fixed: the new key is used, the dropped one stays untrusted.
    chmodSync(path, 0o600);
    mono += EAR_KEY_RECHECK_MS;
    expect(await signer.refresh('request')).toEqual({ changed: true });
    expect(signer.kid).toBe(r.kid);
    expect(kids(signer.jwks)).toEqual([r.kid]);
    expect(await codeOf(verifyAt(attacker.sign(ear(now)), signer, now))).toBe('ERR_EAR_KEY_UNKNOWN');
    expect(kidOf(signer.sign(ear(now)))).toBe(r.kid);
  });

  it('refresh looks at the file at most once a second per trigger, and reports each bad version of it once', async () => {
    let mono = 0;
    const signer = await EarSigner.open(path, { clock, monotonicMs: () => mono });
    const k0 = signer.kid;
    expect(await signer.refresh('request')).toEqual({ changed: false });
    const r1 = await rotateEarKeyFile(path, { now: new Date(T0) });
    // Within the second: not looked at, by this trigger; the other trigger has its own budget.
    mono += EAR_KEY_RECHECK_MS - 1;
    expect(await signer.refresh('request')).toEqual({ changed: false });
    expect(signer.kid).toBe(k0);
    expect(await signer.refresh('unknown-kid')).toEqual({ changed: true });
    expect(signer.kid).toBe(r1.kid);
    const r2 = await rotateEarKeyFile(path, { now: new Date(T0 + S) });
    expect(await signer.refresh('unknown-kid')).toEqual({ changed: false });
    mono += 1;
    expect(await signer.refresh('request')).toEqual({ changed: true });
    expect(signer.kid).toBe(r2.kid);

    // A bad file: reported the first time only, however often it is looked at; the keys in use stay.
    const good = readFileSync(path, 'utf8');
    writeFileSync(path, '{"kty":"EC","d":"partial', { mode: 0o600 });
    mono += EAR_KEY_RECHECK_MS;
    const first = await signer.refresh('request');
    expect(first.changed).toBe(false);
    expect(first.error?.code).toBe('ERR_EAR_KEY');
    expect(JSON.stringify({ m: first.error?.message, d: first.error?.detail })).not.toContain('partial');
    for (let i = 0; i < 5; i++) {
      mono += EAR_KEY_RECHECK_MS;
      expect(await signer.refresh('request')).toEqual({ changed: false });
      expect(await signer.refresh('unknown-kid')).toEqual({ changed: false });
    }
    // An explicit reload still says why.
    expect(await codeOf(signer.reload())).toBe('ERR_EAR_KEY');
    expect(signer.kid).toBe(r2.kid);
    // Another bad version is reported once more; a good one is used.
    chmodSync(path, 0o644);
    mono += EAR_KEY_RECHECK_MS;
    expect((await signer.refresh('request')).error?.code).toBe('ERR_EAR_KEY');
    mono += EAR_KEY_RECHECK_MS;
    expect(await signer.refresh('request')).toEqual({ changed: false });
    rmSync(path);
    writeFileSync(path, good, { mode: 0o600 });
    mono += EAR_KEY_RECHECK_MS;
    expect(await signer.refresh('request')).toEqual({ changed: true });
    expect(signer.kid).toBe(r2.kid);
  });

  it('refuses to sign an EAR that would outlive the publication of its key', async () => {
    const signer = await EarSigner.inMemory({ clock, maxEarLifetimeSeconds: 120 });
    expect(kidOf(signer.sign(ear(T0, 120)))).toBe(signer.kid);
    expect(() => signer.sign(ear(T0, 121))).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    await expect(EarSigner.inMemory({ maxEarLifetimeSeconds: 0 })).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });
});
