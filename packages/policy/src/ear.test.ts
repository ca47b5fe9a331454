/* eslint-disable @typescript-eslint/no-explicit-any -- tests edit policy documents as free-form JSON */
import { describe, it, expect, beforeAll } from 'vitest';
import { SignJWT, UnsecuredJWT, decodeJwt, generateKeyPair, exportJWK, type JWTPayload } from 'jose';
import { fromBase64Url, toBase64Url } from '@custody/core';
import {
  EAR_PROFILE,
  appraise,
  buildEar,
  createEar,
  decodeEarUnverified,
  earNonce,
  exportEarSigningKey,
  generateEarSigningKey,
  importEarSigningKey,
  loadPolicy,
  publishJwks,
  signEar,
  teeKeyFromEar,
  verifyEar,
  type Appraisal,
  type CompiledPolicy,
  type EarSigningKey,
} from './index.js';
import * as F from './testing/claims.js';

const NOW = new Date('2025-06-01T12:00:00Z');
const VERIFIER = { developer: 'https://custody.dev', build: 'custody 0.1.0' };
const NONCE = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
const fixedRandom = (n: number) => new Uint8Array(n).fill(7);

let policy: CompiledPolicy;
let es256: EarSigningKey;
let ed25519: EarSigningKey;
let other: EarSigningKey;
let teeJwk: JsonWebKey;
let composite: Appraisal;

beforeAll(async () => {
  policy = await loadPolicy(F.POLICY_YAML);
  es256 = await generateEarSigningKey();
  ed25519 = await generateEarSigningKey({ alg: 'EdDSA' });
  other = await generateEarSigningKey();
  const tee = await globalThis.crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']);
  teeJwk = await globalThis.crypto.subtle.exportKey('jwk', tee.publicKey);
  composite = appraise(policy, [F.tdxClaims(), F.nvidiaClaims()], { now: NOW });
});

const sign = (a: Appraisal, key = es256, extra: Partial<Parameters<typeof createEar>[2]> = {}) =>
  createEar(a, key, { now: NOW, verifierId: VERIFIER, nonce: NONCE, teePublicKey: teeJwk, random: fixedRandom, ...extra });

describe('EAR claims', () => {
  it('carry the profile, verifier, nonce, lifetime and one submodule per device', async () => {
    const ear = await buildEar(composite, { now: NOW, verifierId: VERIFIER, nonce: NONCE, teePublicKey: teeJwk, random: fixedRandom, issuer: 'https://broker.example' });
    expect(ear.eat_profile).toBe('tag:github.com,2023:veraison/ear');
    expect(ear.iat).toBe(NOW.getTime() / 1000);
    expect(ear.exp).toBe(ear.iat + 300);
    expect(ear.jti).toBe(toBase64Url(new Uint8Array(16).fill(7)));
    expect(ear.iss).toBe('https://broker.example');
    expect(ear['ear.verifier-id']).toEqual(VERIFIER);
    expect(ear.eat_nonce).toBe(toBase64Url(NONCE));
    expect(earNonce(ear)).toEqual(NONCE);
    expect(Object.keys(ear.submods)).toEqual(['cpu0', 'gpu0']);
    const cpu = ear.submods.cpu0!;
    expect(cpu['ear.status']).toBe('affirming');
    expect(cpu['ear.trustworthiness-vector']).toEqual({ hardware: 2, 'instance-identity': 2, 'runtime-opaque': 2, executables: 2, configuration: 2 });
    expect(cpu['ear.appraisal-policy-id']).toBe(policy.policyId);
    expect(cpu['ear.veraison.annotated-evidence']).toMatchObject({ platform: 'tdx', simulated: false, debug: false, measurements: { mrtd: F.TDX.mrtd }, tcb: { status: 'UpToDate' } });
    expect(cpu['ear.veraison.annotated-evidence']).not.toHaveProperty('signer.chain');
    expect(cpu['ear.veraison.key-attestation']!.akpub).toMatch(/^[A-Za-z0-9_-]+$/);
    expect(ear.submods.gpu0!['ear.veraison.key-attestation']).toBeUndefined();
    expect(ear.submods.gpu0!['ear.veraison.annotated-evidence']).toMatchObject({ platform: 'nvidia' });
  });

  it('carry the reasons of a contraindicated appraisal', async () => {
    const bad = F.snpClaims();
    bad.debug = true;
    const ear = await buildEar(appraise(policy, bad, { now: NOW }), { now: NOW, verifierId: VERIFIER });
    expect(ear.submods.cpu0!['ear.status']).toBe('contraindicated');
    expect(ear.submods.cpu0!['ear.veraison.policy-claims']).toEqual({
      reasons: expect.arrayContaining([expect.objectContaining({ rule: 'debug', code: 'ERR_EVIDENCE_DEBUG', value: 96 })]),
    });
    expect(ear.eat_nonce).toBeUndefined();
  });

  it('bind the TEE key: the JWK comes back out of the EAR', async () => {
    const { ear } = await sign(composite);
    expect(await teeKeyFromEar(ear)).toEqual({ kty: 'EC', crv: 'P-256', x: teeJwk.x, y: teeJwk.y });
  });

  it('bind X25519 (HPKE) TEE keys and SPKI bytes', async () => {
    const x = (await globalThis.crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']));
    const jwk = await globalThis.crypto.subtle.exportKey('jwk', x.publicKey);
    const { ear } = await sign(composite, es256, { teePublicKey: jwk });
    expect(await teeKeyFromEar(ear, 'cpu0')).toEqual({ kty: 'OKP', crv: 'X25519', x: jwk.x });
    const spki = new Uint8Array(await globalThis.crypto.subtle.exportKey('spki', x.publicKey));
    const { ear: ear2 } = await sign(composite, es256, { teePublicKey: spki, teeKeySubmod: 'gpu0' });
    expect(fromBase64Url(ear2.submods.gpu0!['ear.veraison.key-attestation']!.akpub)).toEqual(spki);
  });

  it('refuse a private key as the TEE key, and malformed key claims', async () => {
    const pair = (await globalThis.crypto.subtle.generateKey({ name: 'ECDH', namedCurve: 'P-256' }, true, ['deriveBits']));
    const priv = await globalThis.crypto.subtle.exportKey('jwk', pair.privateKey);
    await expect(buildEar(composite, { now: NOW, verifierId: VERIFIER, teePublicKey: priv })).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
    const { ear } = await sign(composite);
    ear.submods.cpu0!['ear.veraison.key-attestation'] = { akpub: 'AAAA' };
    await expect(teeKeyFromEar(ear)).rejects.toMatchObject({ code: 'ERR_EAR_MALFORMED' });
    delete ear.submods.cpu0!['ear.veraison.key-attestation'];
    await expect(teeKeyFromEar(ear)).rejects.toMatchObject({ code: 'ERR_EAR_CLAIMS' });
  });

  it('refuse bad nonces and lifetimes', async () => {
    await expect(buildEar(composite, { now: NOW, verifierId: VERIFIER, nonce: new Uint8Array(4) })).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(buildEar(composite, { now: NOW, verifierId: VERIFIER, ttlSeconds: 0 })).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });
});

describe('EAR sign and verify', () => {
  it('round-trips with ES256', async () => {
    const { token, ear } = await sign(composite);
    expect(decodeEarUnverified(token).header).toEqual({ alg: 'ES256', kid: es256.kid, typ: 'JWT' });
    const v = await verifyEar(token, { jwks: publishJwks([es256]), now: NOW, nonce: NONCE });
    expect(v.ear).toEqual(ear);
    expect(v.kid).toBe(es256.kid);
    expect(v.alg).toBe('ES256');
    expect(v.status).toBe('affirming');
  });

  it('round-trips with Ed25519', async () => {
    const { token } = await sign(composite, ed25519);
    const v = await verifyEar(token, { jwks: publishJwks([es256, ed25519]), now: NOW, nonce: NONCE });
    expect(v.alg).toBe('EdDSA');
    expect(v.kid).toBe(ed25519.kid);
  });

  it('reports the worst submodule status', async () => {
    const gpu = F.nvidiaClaims();
    gpu.measurements.measurement2 = '00'.repeat(48);
    const { token } = await sign(appraise(policy, [F.tdxClaims(), gpu], { now: NOW }));
    const v = await verifyEar(token, { jwks: publishJwks([es256]), now: NOW });
    expect(v.status).toBe('contraindicated');
    expect(v.ear.submods.cpu0!['ear.status']).toBe('affirming');
  });

  it('is valid until exp and expired after it', async () => {
    const { token } = await sign(composite);
    const jwks = publishJwks([es256]);
    await expect(verifyEar(token, { jwks, now: new Date(NOW.getTime() + 299_000) })).resolves.toBeDefined();
    await expect(verifyEar(token, { jwks, now: new Date(NOW.getTime() + 301_000) })).rejects.toMatchObject({ code: 'ERR_EAR_EXPIRED' });
    await expect(verifyEar(token, { jwks, now: new Date(NOW.getTime() + 301_000), clockToleranceSeconds: 5 })).resolves.toBeDefined();
  });

  it('is not valid before it was issued', async () => {
    const { token } = await sign(composite);
    await expect(verifyEar(token, { jwks: publishJwks([es256]), now: new Date(NOW.getTime() - 60_000) })).rejects.toMatchObject({ code: 'ERR_EAR_NOT_YET_VALID' });
  });

  it('fails with a key not in the JWKS', async () => {
    const { token } = await sign(composite, other);
    await expect(verifyEar(token, { jwks: publishJwks([es256, ed25519]), now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_KEY_UNKNOWN' });
  });

  it('fails when the kid names a different key', async () => {
    const { token } = await sign(composite, other);
    const impostor = { ...publishJwks([es256]).keys[0]!, kid: other.kid };
    await expect(verifyEar(token, { jwks: { keys: [impostor] }, now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_SIGNATURE' });
  });

  it('fails when the payload is tampered with', async () => {
    const bad = F.snpClaims();
    bad.debug = true;
    const { token } = await sign(appraise(policy, bad, { now: NOW }));
    const [h, p, s] = token.split('.');
    const payload = JSON.parse(new TextDecoder().decode(fromBase64Url(p!))) as Record<string, any>;
    payload.submods.cpu0['ear.status'] = 'affirming';
    const forged = `${h}.${toBase64Url(new TextEncoder().encode(JSON.stringify(payload)))}.${s}`;
    await expect(verifyEar(forged, { jwks: publishJwks([es256]), now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_SIGNATURE' });
  });

  it('fails when a signature byte is flipped', async () => {
    const { token } = await sign(composite);
    const [h, p, s] = token.split('.');
    const sig = fromBase64Url(s!);
    sig[5]! ^= 1;
    await expect(verifyEar(`${h}.${p}.${toBase64Url(sig)}`, { jwks: publishJwks([es256]), now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_SIGNATURE' });
  });

  it('fails on a wrong or missing nonce', async () => {
    const jwks = publishJwks([es256]);
    const { token } = await sign(composite);
    const wrong = NONCE.slice();
    wrong[0]! ^= 0xff;
    await expect(verifyEar(token, { jwks, now: NOW, nonce: wrong })).rejects.toMatchObject({ code: 'ERR_EAR_NONCE' });
    const { token: noNonce } = await createEar(composite, es256, { now: NOW, verifierId: VERIFIER });
    await expect(verifyEar(noNonce, { jwks, now: NOW, nonce: NONCE })).rejects.toMatchObject({ code: 'ERR_EAR_NONCE' });
  });

  it('checks issuer and audience when asked', async () => {
    const jwks = publishJwks([es256]);
    const { token } = await sign(composite, es256, { issuer: 'https://broker.example', audience: 'kbs' });
    await expect(verifyEar(token, { jwks, now: NOW, issuer: 'https://broker.example', audience: 'kbs' })).resolves.toBeDefined();
    await expect(verifyEar(token, { jwks, now: NOW, issuer: 'https://evil.example' })).rejects.toMatchObject({ code: 'ERR_EAR_CLAIMS' });
    await expect(verifyEar(token, { jwks, now: NOW, audience: 'other' })).rejects.toMatchObject({ code: 'ERR_EAR_CLAIMS' });
  });

  it('rejects unsigned and HMAC tokens', async () => {
    const ear = await buildEar(composite, { now: NOW, verifierId: VERIFIER });
    const unsecured = new UnsecuredJWT(ear as unknown as JWTPayload).encode();
    await expect(verifyEar(unsecured, { jwks: publishJwks([es256]), now: NOW })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_EAR_/) });
    const hs = await new SignJWT(ear as unknown as JWTPayload).setProtectedHeader({ alg: 'HS256', kid: es256.kid }).sign(new Uint8Array(32));
    await expect(verifyEar(hs, { jwks: publishJwks([es256]), now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_SIGNATURE' });
  });

  it('rejects a signed token with another profile, an overlong life or a malformed body', async () => {
    const jwks = publishJwks([es256]);
    const ear = await buildEar(composite, { now: NOW, verifierId: VERIFIER });
    const resign = (payload: Record<string, unknown>) => new SignJWT(payload).setProtectedHeader({ alg: 'ES256', kid: es256.kid }).sign(es256.privateKey);
    await expect(verifyEar(await resign({ ...ear, eat_profile: 'tag:example.com,2024:other' }), { jwks, now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_CLAIMS' });
    await expect(verifyEar(await resign({ ...ear, exp: ear.iat + 7200 }), { jwks, now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_CLAIMS' });
    await expect(verifyEar(await resign({ ...ear, submods: {} }), { jwks, now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_MALFORMED' });
    await expect(verifyEar(await resign({ ...ear, submods: { cpu0: { 'ear.status': 'great' } } }), { jwks, now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_MALFORMED' });
    await expect(verifyEar(await resign({ ...ear, submods: { cpu0: { 'ear.status': 'affirming', 'ear.trustworthiness-vector': { hardware: 500 } } } }), { jwks, now: NOW })).rejects.toMatchObject({
      code: 'ERR_EAR_MALFORMED',
    });
    const { exp: _exp, ...noExp } = ear;
    await expect(verifyEar(await resign(noExp), { jwks, now: NOW })).rejects.toMatchObject({ code: expect.stringMatching(/^ERR_EAR_(CLAIMS|MALFORMED)$/) });
  });

  it('rejects garbage with ERR_EAR_MALFORMED', async () => {
    for (const t of ['', 'a.b.c', 'not a jwt', 'x'.repeat(300_000)]) {
      await expect(verifyEar(t, { jwks: publishJwks([es256]), now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_MALFORMED' });
    }
  });
});

describe('EAR signing keys', () => {
  it('publish public keys only, with kid, alg and use', async () => {
    const extractable = await generateEarSigningKey({ extractable: true });
    const jwks = publishJwks([es256, ed25519, await exportEarSigningKey(extractable)]);
    expect(jwks.keys).toHaveLength(3);
    for (const k of jwks.keys) {
      expect(k).not.toHaveProperty('d');
      expect(k.use).toBe('sig');
      expect(k.kid).toMatch(/^[A-Za-z0-9_-]{43}$/);
    }
    expect(jwks.keys[0]).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', kid: es256.kid });
    expect(jwks.keys[1]).toMatchObject({ kty: 'OKP', crv: 'Ed25519', alg: 'EdDSA', kid: ed25519.kid });
    expect(jwks.keys[2]!.kid).toBe(extractable.kid);
  });

  it('export and import for a key store, keeping the kid', async () => {
    for (const alg of ['ES256', 'ES384', 'EdDSA'] as const) {
      const k = await generateEarSigningKey({ alg, extractable: true });
      const jwk = await exportEarSigningKey(k);
      expect(jwk.d).toBeTypeOf('string');
      const back = await importEarSigningKey(jwk);
      expect(back.kid).toBe(k.kid);
      expect(back.alg).toBe(alg);
      expect(back.privateKey.extractable).toBe(false);
      const { token } = await createEar(composite, back, { now: NOW, verifierId: VERIFIER });
      await expect(verifyEar(token, { jwks: publishJwks([k]), now: NOW })).resolves.toMatchObject({ kid: k.kid, alg });
    }
  });

  it('refuse to export a non-extractable key or import a public one', async () => {
    await expect(exportEarSigningKey(es256)).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
    await expect(importEarSigningKey(es256.publicJwk)).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
    const rsa = await generateKeyPair('RS256', { extractable: true });
    await expect(importEarSigningKey(await exportJWK(rsa.privateKey))).rejects.toMatchObject({ code: 'ERR_EAR_KEY' });
  });

  it('signEar uses the key algorithm and kid', async () => {
    const ear = await buildEar(composite, { now: NOW, verifierId: VERIFIER });
    const token = await signEar(ear, ed25519);
    expect(decodeJwt(token).eat_profile).toBe(EAR_PROFILE);
    expect(decodeEarUnverified(token).header).toMatchObject({ alg: 'EdDSA', kid: ed25519.kid });
  });
});

describe('conditions over EAR claims (release policies)', () => {
  it('evaluate CEL over a verified EAR and fail closed', async () => {
    const { compileCondition } = await import('./index.js');
    const { token } = await sign(composite);
    const { ear } = await verifyEar(token, { jwks: publishJwks([es256]), now: NOW });
    const release = compileCondition("ear.submods.all(s, ear.submods[s]['ear.status'] == 'affirming') && ear.submods.cpu0['ear.veraison.annotated-evidence'].platform == 'tdx'");
    expect(release.evaluate({ ear })).toEqual({ ok: true });
    const gpuOnly = compileCondition("ear.submods.gpu0['ear.veraison.annotated-evidence'].measurements.measurement10 == 'ff'");
    expect(gpuOnly.evaluate({ ear })).toEqual({ ok: false });
    expect(compileCondition('ear.nope.field').evaluate({ ear }).ok).toBe(false);
    expect(compileCondition('ear.iat').evaluate({ ear })).toMatchObject({ ok: false, error: expect.any(String) });
    expect(() => compileCondition('ear ==')).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
  });

  it('a JWKS edited in place (rotation) is honoured at once', async () => {
    const jwks = publishJwks([es256]);
    const { token } = await sign(composite, other);
    await expect(verifyEar(token, { jwks, now: NOW })).rejects.toMatchObject({ code: 'ERR_EAR_KEY_UNKNOWN' });
    jwks.keys.push(other.publicJwk);
    await expect(verifyEar(token, { jwks, now: NOW })).resolves.toMatchObject({ kid: other.kid });
  });
});
