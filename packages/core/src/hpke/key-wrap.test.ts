import { describe, expect, it } from 'vitest';
import { concatBytes, fromHex, toHex, utf8 } from '../bytes.js';
import { CustodyError } from '../errors.js';
import { hpkeOpen } from './hpke.js';
import { AeadId, KdfId, KemId } from './identifiers.js';
import { encodeWrappedKey, KEY_WRAP_DEFAULT_SUITE, keyWrapAad, keyWrapInfo, parseWrappedKey, unwrapKey, wrapKey } from './key-wrap.js';
import { deriveHpkeKeyPair, generateHpkeKeyPair } from './keys.js';

async function failure(p: Promise<unknown>): Promise<CustodyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CustodyError);
  return e as CustodyError;
}

function counterRandom(seed: number): (n: number) => Uint8Array<ArrayBuffer> {
  let c = seed;
  return (n) => Uint8Array.from({ length: n }, () => c++ & 0xff);
}

const SECRET = fromHex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
const CONTEXT = { key: 'tenant-a/model-key', version: 3, session: 's-1f2e' };

describe('wrapped-key envelope', () => {
  it('documents info and aad exactly', () => {
    expect(toHex(keyWrapInfo(KEY_WRAP_DEFAULT_SUITE))).toBe(toHex(concatBytes(utf8('custody key wrap v1'), fromHex('00'), fromHex('01' + '0020' + '0001' + '0002'))));
    expect(new TextDecoder().decode(keyWrapAad(CONTEXT))).toBe('{"key":"tenant-a/model-key","session":"s-1f2e","version":3}');
    expect(new TextDecoder().decode(keyWrapAad())).toBe('{}');
  });

  it('wraps to a TEE key and unwraps with the same context', async () => {
    const tee = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const env = await wrapKey(SECRET, { recipientPublicKey: tee.publicKey.bytes, context: CONTEXT });
    // header || enc (32) || ciphertext (32 + 16)
    expect(env).toHaveLength(7 + 32 + 48);
    expect(toHex(env.subarray(0, 7))).toBe('01002000010002');
    const w = parseWrappedKey(env);
    expect(w.suite).toEqual(KEY_WRAP_DEFAULT_SUITE);
    expect(toHex(encodeWrappedKey(w))).toBe(toHex(env));
    expect(toHex(await unwrapKey(env, { recipientKeyPair: tee, context: CONTEXT }))).toBe(toHex(SECRET));
    // The envelope is plain HPKE base mode with the documented info and aad.
    const pt = await hpkeOpen({ suite: w.suite, recipientKeyPair: tee, enc: w.enc, info: keyWrapInfo(w.suite), aad: keyWrapAad(CONTEXT) }, w.ciphertext);
    expect(toHex(pt)).toBe(toHex(SECRET));
  });

  it('is deterministic with an injected RandomSource and works for other suites', async () => {
    const tee = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, new Uint8Array(32).fill(4));
    const a = await wrapKey(SECRET, { recipientPublicKey: tee.publicKey, context: CONTEXT, random: counterRandom(1) });
    const b = await wrapKey(SECRET, { recipientPublicKey: tee.publicKey, context: CONTEXT, random: counterRandom(1) });
    expect(toHex(a)).toBe(toHex(b));
    for (const suite of [
      { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.ChaCha20Poly1305 },
      { kem: KemId.DhkemP256HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes128Gcm },
    ]) {
      const kp = await generateHpkeKeyPair(suite.kem);
      const env = await wrapKey(SECRET, { recipientPublicKey: kp.publicKey, suite });
      expect(toHex(await unwrapKey(env, { recipientKeyPair: kp }))).toBe(toHex(SECRET));
    }
  });

  it('tampered twins fail with typed codes', async () => {
    const tee = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const other = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const env = await wrapKey(SECRET, { recipientPublicKey: tee.publicKey, context: CONTEXT });
    const opts = { recipientKeyPair: tee, context: CONTEXT };
    const flip = (i: number): Uint8Array => {
      const c = env.slice();
      c[i]! ^= 1;
      return c;
    };
    expect((await failure(unwrapKey(flip(env.length - 1), opts))).code).toBe('ERR_HPKE_OPEN'); // tag
    expect((await failure(unwrapKey(flip(7 + 32 + 3), opts))).code).toBe('ERR_HPKE_OPEN'); // ciphertext
    expect((await failure(unwrapKey(flip(7 + 4), opts))).code).toBe('ERR_HPKE_OPEN'); // enc
    expect((await failure(unwrapKey(flip(6), opts))).code).toBe('ERR_HPKE_OPEN'); // AEAD 2 -> 3: another suite and info
    expect((await failure(unwrapKey(env, { ...opts, context: { ...CONTEXT, session: 's-other' } }))).code).toBe('ERR_HPKE_OPEN');
    expect((await failure(unwrapKey(env, { ...opts, context: { ...CONTEXT, version: 4 } }))).code).toBe('ERR_HPKE_OPEN');
    expect((await failure(unwrapKey(env, { recipientKeyPair: tee }))).code).toBe('ERR_HPKE_OPEN');
    expect((await failure(unwrapKey(env, { ...opts, recipientKeyPair: other }))).code).toBe('ERR_HPKE_OPEN');
    expect((await failure(unwrapKey(flip(0), opts))).code).toBe('ERR_INPUT_UNSUPPORTED'); // version
    expect((await failure(unwrapKey(flip(1), opts))).code).toBe('ERR_HPKE_UNSUPPORTED'); // KEM 0x0120
    expect((await failure(unwrapKey(flip(2), opts))).code).toBe('ERR_HPKE_KEY'); // KEM 0x0021 (X448) is not the recipient's KEM
    expect((await failure(unwrapKey(env.subarray(0, 7 + 32 + 15), opts))).code).toBe('ERR_INPUT_TRUNCATED');
    expect((await failure(unwrapKey(env.subarray(0, 20), opts))).code).toBe('ERR_INPUT_TRUNCATED');
    const p256 = await generateHpkeKeyPair(KemId.DhkemP256HkdfSha256);
    expect((await failure(unwrapKey(env, { recipientKeyPair: p256 }))).code).toBe('ERR_HPKE_KEY');
    expect((await failure(unwrapKey(env, { ...opts, allowedSuites: [{ kem: 0x20, kdf: 1, aead: 1 }] }))).code).toBe('ERR_HPKE_UNSUPPORTED');
    const exportOnly = env.slice();
    exportOnly.set([0xff, 0xff], 5);
    expect((await failure(unwrapKey(exportOnly, opts))).code).toBe('ERR_HPKE_EXPORT_ONLY');
  });

  it('refuses oversized secrets and envelopes', async () => {
    const tee = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    expect((await failure(wrapKey(new Uint8Array(64 * 1024 + 1), { recipientPublicKey: tee.publicKey }))).code).toBe('ERR_INPUT_TOO_LARGE');
    expect(() => parseWrappedKey(new Uint8Array(200_000))).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_TOO_LARGE' }) as Error);
    expect((await failure(wrapKey(SECRET, { recipientPublicKey: new Uint8Array(31) }))).code).toBe('ERR_HPKE_KEY');
  });
});
