// Shared gateway identity keys: the HKDF derivation (deterministic per secret, name and version,
// one label per key), the Ed25519 receipt key from a seed (RFC 8032 test vector 1), key ids
// cycling with the version, and the key ring's install with grace.
import { verify as verifySignature, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fromHex, toHex } from '@custody/core';
import { deriveGatewayIdentity, GatewayKeys, identityKeyId, OhttpKeyRing, ReceiptSigner } from './gateway-keys.js';

const SECRET = fromHex('0f'.repeat(16) + 'a5'.repeat(16));

function code(f: () => unknown): string | undefined {
  try {
    f();
  } catch (e) {
    return (e as { code?: string }).code;
  }
  return undefined;
}

async function asyncCode(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: unknown) => (e as { code?: string }).code,
  );
}

describe('ReceiptSigner.fromSeed', () => {
  it('is the RFC 8032 Ed25519 key of the seed (test vector 1) and signs like it', () => {
    const s = ReceiptSigner.fromSeed(fromHex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60'));
    expect(toHex(s.publicKey)).toBe('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
    expect(toHex(s.sign(new Uint8Array(0)))).toBe(
      'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
    );
    const pub = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(s.publicKey).toString('base64url') }, format: 'jwk' });
    expect(verifySignature(null, Buffer.from('receipt'), pub, s.sign(new TextEncoder().encode('receipt')))).toBe(true);
  });

  it('refuses a seed that is not 32 bytes', () => {
    expect(code(() => ReceiptSigner.fromSeed(new Uint8Array(31)))).toBe('ERR_KEY_MATERIAL');
  });
});

describe('identityKeyId', () => {
  it('follows the version in 1..255, so consecutive versions never share an id', () => {
    expect([1, 2, 254, 255, 256, 257, 511].map(identityKeyId)).toEqual([1, 2, 254, 255, 1, 2, 1]);
    for (let v = 1; v < 600; v++) expect(identityKeyId(v + 1)).not.toBe(identityKeyId(v));
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(code(() => identityKeyId(bad))).toBe('ERR_KEY_VERSION');
  });
});

describe('deriveGatewayIdentity', () => {
  it('derives the same keys from the same secret, name and version (what makes replicas agree)', async () => {
    const a = await deriveGatewayIdentity(SECRET, { name: 'gw', version: 3 });
    const b = await deriveGatewayIdentity(SECRET.slice(), { name: 'gw', version: 3 });
    expect(a.ohttp.config).toEqual(b.ohttp.config);
    expect(a.ohttp.config.keyId).toBe(3);
    expect(toHex(a.receipt.publicKey)).toBe(toHex(b.receipt.publicKey));
    // The OHTTP and receipt keys come from distinct labels.
    expect(toHex(a.ohttp.config.publicKey)).not.toBe(toHex(a.receipt.publicKey));
  });

  it('gives other keys for another version, name or secret', async () => {
    const base = await deriveGatewayIdentity(SECRET, { name: 'gw', version: 1 });
    const others = [
      await deriveGatewayIdentity(SECRET, { name: 'gw', version: 2 }),
      await deriveGatewayIdentity(SECRET, { name: 'gw2', version: 1 }),
      await deriveGatewayIdentity(Uint8Array.from(SECRET, (x, i) => (i === 0 ? x ^ 1 : x)), { name: 'gw', version: 1 }),
    ];
    for (const o of others) {
      expect(toHex(o.ohttp.config.publicKey)).not.toBe(toHex(base.ohttp.config.publicKey));
      expect(toHex(o.receipt.publicKey)).not.toBe(toHex(base.receipt.publicKey));
    }
    expect(others[0]!.ohttp.config.keyId).toBe(2);
  });

  it('refuses a secret shorter than 32 bytes and a bad version', async () => {
    expect(await asyncCode(deriveGatewayIdentity(new Uint8Array(31).fill(7), { name: 'gw', version: 1 }))).toBe('ERR_KEY_MATERIAL');
    expect(await asyncCode(deriveGatewayIdentity(SECRET, { name: 'gw', version: 0 }))).toBe('ERR_KEY_VERSION');
  });
});

describe('shared GatewayKeys and OhttpKeyRing.install', () => {
  it('has no OHTTP or receipt key until an identity is installed; a new version retires the old key into grace', async () => {
    let now = 1_700_000_000_000;
    const keys = await GatewayKeys.create(() => new Date(now), { shared: true, graceMs: 1000 });
    expect(keys.ohttp.configs).toEqual([]);
    expect(code(() => keys.receipt)).toBe('ERR_GATEWAY_NOT_ATTESTED');
    const v1 = await deriveGatewayIdentity(SECRET, { name: 'gw', version: 1 });
    keys.installIdentity(v1);
    expect(keys.identity).toEqual({ name: 'gw', version: 1 });
    expect(keys.receipt.publicKey).toEqual(v1.receipt.publicKey);
    const v2 = await deriveGatewayIdentity(SECRET, { name: 'gw', version: 2 });
    keys.installIdentity(v2);
    expect(keys.ohttp.configs.map((c) => c.keyId)).toEqual([2, 1]);
    expect(keys.receipt.publicKey).toEqual(v2.receipt.publicKey);
    now += 1001;
    expect(keys.ohttp.configs.map((c) => c.keyId)).toEqual([2]);
    keys.dropIdentity();
    expect(keys.ohttp.active).toEqual([]);
    expect(keys.identity).toBeUndefined();
    expect(code(() => keys.receipt)).toBe('ERR_GATEWAY_NOT_ATTESTED');
  });

  it('install replaces a key with the same id (one id names one key)', async () => {
    const ring = new OhttpKeyRing(() => new Date(0), 60_000);
    const v1 = await deriveGatewayIdentity(SECRET, { name: 'gw', version: 1 });
    const v256 = await deriveGatewayIdentity(SECRET, { name: 'gw', version: 256 });
    ring.install(v1.ohttp);
    ring.install(v256.ohttp);
    expect(ring.active).toHaveLength(1);
    expect(ring.current).toBe(v256.ohttp);
  });

  it('per-process keys stay the default', async () => {
    const a = await GatewayKeys.create(() => new Date(0));
    const b = await GatewayKeys.create(() => new Date(0));
    expect(a.identity).toBeUndefined();
    expect(a.ohttp.configs).toHaveLength(1);
    expect(toHex(a.receipt.publicKey)).not.toBe(toHex(b.receipt.publicKey));
  });
});
