import { hkdfSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { readVectorText } from '../../../../test/vectors.js';
import { concatBytes, fromHex, toHex, utf8 } from '../bytes.js';
import { CustodyError } from '../errors.js';
import { hkdfExpand, hkdfExtract } from './hkdf.js';
import { HpkePreparedEncap, hpkeOpen, hpkeReceiveExport, hpkeSeal, hpkeSendExport, prepareHpkeEncap, setupHpkeRecipient, setupHpkeSender } from './hpke.js';
import { AeadId, HpkeMode, KdfId, KemId, hpkeSuiteName, isHpkeSuiteSupported } from './identifiers.js';
import { deriveHpkeKeyPair, deserializeHpkePrivateKey, deserializeHpkePublicKey, generateHpkeKeyPair, serializeHpkePrivateKey, serializeHpkePublicKey } from './keys.js';
import { getHpkeProvider, type HpkePrimitives } from './provider.js';

const X25519_AES128 = { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes128Gcm };

async function failure(p: Promise<unknown>): Promise<CustodyError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(CustodyError);
  return e as CustodyError;
}

/** A deterministic RandomSource for tests (a counter, never for real keys). */
function counterRandom(seed: number): (n: number) => Uint8Array<ArrayBuffer> {
  let c = seed;
  return (n) => Uint8Array.from({ length: n }, () => c++ & 0xff);
}

describe('HKDF (RFC 5869)', () => {
  it('matches test case 1 and the platform HKDF', async () => {
    const ikm = new Uint8Array(22).fill(0x0b);
    const salt = fromHex('000102030405060708090a0b0c');
    const info = fromHex('f0f1f2f3f4f5f6f7f8f9');
    const prk = await hkdfExtract(KdfId.HkdfSha256, salt, ikm);
    expect(toHex(prk)).toBe('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5');
    const okm = await hkdfExpand(KdfId.HkdfSha256, prk, info, 42);
    expect(toHex(okm)).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
    for (const [kdf, hash] of [[KdfId.HkdfSha384, 'sha384'], [KdfId.HkdfSha512, 'sha512']] as const) {
      const p = await hkdfExtract(kdf, new Uint8Array(0), ikm);
      expect(toHex(await hkdfExpand(kdf, p, info, 200))).toBe(toHex(new Uint8Array(hkdfSync(hash, ikm, new Uint8Array(0), info, 200))));
    }
  });

  it('takes salts longer than the hash and refuses lengths over 255 * Nh', async () => {
    const salt = new Uint8Array(48).fill(7);
    const prk = await hkdfExtract(KdfId.HkdfSha256, salt, utf8('ikm'));
    expect(toHex(await hkdfExpand(KdfId.HkdfSha256, prk, utf8('key'), 16))).toBe(toHex(new Uint8Array(hkdfSync('sha256', utf8('ikm'), salt, utf8('key'), 16))));
    expect((await failure(hkdfExpand(KdfId.HkdfSha256, prk, new Uint8Array(0), 255 * 32 + 1))).code).toBe('ERR_HPKE_PARAMS');
    expect(await hkdfExpand(KdfId.HkdfSha256, prk, new Uint8Array(0), 0)).toHaveLength(0);
  });
});

describe('HPKE API', () => {
  it('round-trips all four modes across KEMs and AEADs', async () => {
    const suites = [
      X25519_AES128,
      { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha384, aead: AeadId.ChaCha20Poly1305 },
      { kem: KemId.DhkemP256HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes256Gcm },
      { kem: KemId.DhkemP384HkdfSha384, kdf: KdfId.HkdfSha384, aead: AeadId.Aes256Gcm },
    ];
    const psk = { id: utf8('tenant-a/psk-1'), key: new Uint8Array(32).fill(9) };
    for (const suite of suites) {
      const r = await generateHpkeKeyPair(suite.kem);
      const s = await generateHpkeKeyPair(suite.kem);
      for (const mode of [HpkeMode.Base, HpkeMode.Psk, HpkeMode.Auth, HpkeMode.AuthPsk]) {
        const withPsk = mode === HpkeMode.Psk || mode === HpkeMode.AuthPsk ? { psk } : {};
        const info = utf8(`info ${mode}`);
        const sealed = await hpkeSeal({ suite, recipientPublicKey: r.publicKey, info, aad: utf8('aad'), ...withPsk, ...(mode >= HpkeMode.Auth ? { senderKeyPair: s } : {}) }, utf8('secret prompt'));
        const pt = await hpkeOpen(
          { suite, recipientKeyPair: r, enc: sealed.enc, info, aad: utf8('aad'), ...withPsk, ...(mode >= HpkeMode.Auth ? { senderPublicKey: s.publicKey } : {}) },
          sealed.ciphertext,
        );
        expect(new TextDecoder().decode(pt), `${hpkeSuiteName(suite)} mode ${mode}`).toBe('secret prompt');
      }
    }
  });

  it('the cached key schedule context never crosses info, mode or suite', async () => {
    // Setups without a PSK reuse key_schedule_context per (provider, suite, mode, info). Interleave
    // infos (one differing in its last byte), modes and suites, twice over: a matching recipient
    // opens; one with another info or mode must not, which it would if a cached context were
    // shared across inputs. (The RFC 9180 vectors check the derived values themselves.)
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const s = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const suites = [X25519_AES128, { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.ChaCha20Poly1305 }];
    const infos = [utf8('message/bhttp request'), utf8('message/bhttp requesu'), new Uint8Array(0), utf8('message/bhttp request')];
    for (let round = 0; round < 2; round++) {
      for (const suite of suites) {
        for (const info of infos) {
          for (const auth of [false, true]) {
            const sender = await setupHpkeSender({ suite, recipientPublicKey: r.publicKey, info, ...(auth ? { senderKeyPair: s } : {}) });
            const ct = await sender.seal(utf8('x'));
            for (const [otherInfo, otherAuth] of [[info, auth], [infos[(infos.indexOf(info) + 1) % 3]!, auth], [info, !auth]] as const) {
              const same = toHex(otherInfo) === toHex(info) && otherAuth === auth;
              const opened = setupHpkeRecipient({ suite, recipientKeyPair: r, enc: sender.enc, info: otherInfo, ...(otherAuth ? { senderPublicKey: s.publicKey } : {}) }).then((rc) => rc.open(ct));
              if (same) expect(new TextDecoder().decode(await opened)).toBe('x');
              else await expect(opened).rejects.toMatchObject({ code: 'ERR_HPKE_OPEN' });
            }
          }
        }
      }
    }
  });

  it('keeps messages in order within a context', async () => {
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const s = await setupHpkeSender({ suite: X25519_AES128, recipientPublicKey: r.publicKey });
    const c0 = await s.seal(utf8('zero'));
    const c1 = await s.seal(utf8('one'));
    const rc = await setupHpkeRecipient({ suite: X25519_AES128, recipientKeyPair: r, enc: s.enc });
    // Out of order fails and does not advance the sequence number.
    expect((await failure(rc.open(c1))).code).toBe('ERR_HPKE_OPEN');
    expect(new TextDecoder().decode(await rc.open(c0))).toBe('zero');
    expect(new TextDecoder().decode(await rc.open(c1))).toBe('one');
    // A replayed message is refused.
    expect((await failure(rc.open(c0))).code).toBe('ERR_HPKE_OPEN');
  });

  it('derives the ephemeral key from an injected RandomSource', async () => {
    const r = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, new Uint8Array(32).fill(1));
    const a = await hpkeSeal({ suite: X25519_AES128, recipientPublicKey: r.publicKey, random: counterRandom(5) }, utf8('x'));
    const b = await hpkeSeal({ suite: X25519_AES128, recipientPublicKey: r.publicKey, random: counterRandom(5) }, utf8('x'));
    const c = await hpkeSeal({ suite: X25519_AES128, recipientPublicKey: r.publicKey, random: counterRandom(6) }, utf8('x'));
    expect(toHex(a.enc)).toBe(toHex(b.enc));
    expect(toHex(a.ciphertext)).toBe(toHex(b.ciphertext));
    expect(toHex(a.enc)).not.toBe(toHex(c.enc));
  });

  it('single-shot export matches on both sides; L above 255 bytes uses a two-byte length', async () => {
    const v = (JSON.parse(readVectorText('hpke/rfc9180-x25519-hkdfsha256-subset.json')) as { mode: number; aead_id: number; ikmR: string; ikmE: string; info: string; exporter_secret: string }[]).find(
      (x) => x.mode === 0 && x.aead_id === 1,
    )!;
    const r = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, fromHex(v.ikmR));
    const e = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, fromHex(v.ikmE));
    const ctx = utf8('custody test');
    const sent = await hpkeSendExport({ suite: X25519_AES128, recipientPublicKey: r.publicKey, info: fromHex(v.info), ephemeralKeyPair: e }, ctx, 300);
    const got = await hpkeReceiveExport({ suite: X25519_AES128, recipientKeyPair: r, enc: sent.enc, info: fromHex(v.info) }, ctx, 300);
    expect(toHex(got)).toBe(toHex(sent.exported));
    // LabeledExpand(exporter_secret, "sec", ctx, 300) computed independently from the vector's exporter_secret.
    const suiteId = fromHex('48504b45002000010001');
    const labeledInfo = concatBytes(new Uint8Array([300 >> 8, 300 & 0xff]), utf8('HPKE-v1'), suiteId, utf8('sec'), ctx);
    expect(toHex(got)).toBe(toHex(await hkdfExpand(KdfId.HkdfSha256, fromHex(v.exporter_secret), labeledInfo, 300)));
    expect((await failure(hpkeReceiveExport({ suite: X25519_AES128, recipientKeyPair: r, enc: sent.enc }, ctx, 255 * 32 + 1))).code).toBe('ERR_HPKE_PARAMS');
  });

  it('refuses inconsistent mode inputs and keys of another KEM', async () => {
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const p = await generateHpkeKeyPair(KemId.DhkemP256HkdfSha256);
    const base = { suite: X25519_AES128, recipientPublicKey: r.publicKey };
    expect((await failure(hpkeSeal({ ...base, psk: { id: new Uint8Array(0), key: new Uint8Array(32) } }, utf8('x')))).code).toBe('ERR_HPKE_PARAMS');
    expect((await failure(hpkeSeal({ ...base, psk: { id: utf8('id'), key: new Uint8Array(0) } }, utf8('x')))).code).toBe('ERR_HPKE_PARAMS');
    expect((await failure(hpkeSeal({ ...base, psk: { id: utf8('id'), key: new Uint8Array(16) } }, utf8('x')))).code).toBe('ERR_HPKE_PARAMS');
    expect((await failure(hpkeSeal({ ...base, recipientPublicKey: p.publicKey }, utf8('x')))).code).toBe('ERR_HPKE_KEY');
    expect((await failure(hpkeSeal({ ...base, senderKeyPair: p }, utf8('x')))).code).toBe('ERR_HPKE_KEY');
    const sealed = await hpkeSeal(base, utf8('x'));
    expect((await failure(hpkeOpen({ suite: X25519_AES128, recipientKeyPair: p, enc: sealed.enc }, sealed.ciphertext))).code).toBe('ERR_HPKE_KEY');
  });

  it('names unsupported suites with ERR_HPKE_UNSUPPORTED', async () => {
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    for (const suite of [
      { kem: 0x0030, kdf: 1, aead: 1 },
      { kem: 0x0020, kdf: 4, aead: 1 },
      { kem: 0x0020, kdf: 1, aead: 7 },
    ]) {
      expect(isHpkeSuiteSupported(suite)).toBe(false);
      expect((await failure(hpkeSeal({ suite, recipientPublicKey: r.publicKey }, utf8('x')))).code).toBe('ERR_HPKE_UNSUPPORTED');
    }
    expect((await failure(generateHpkeKeyPair(0x0013))).code).toBe('ERR_HPKE_UNSUPPORTED');
  });

  it('serialises and deserialises keys, refusing malformed ones', async () => {
    for (const kem of [KemId.DhkemX25519HkdfSha256, KemId.DhkemP256HkdfSha256, KemId.DhkemP521HkdfSha512]) {
      const kp = await generateHpkeKeyPair(kem);
      const pk = await deserializeHpkePublicKey(kem, serializeHpkePublicKey(kp.publicKey));
      expect(toHex(pk.bytes)).toBe(toHex(kp.publicKey.bytes));
      const sk = await serializeHpkePrivateKey(kp);
      const back = await deserializeHpkePrivateKey(kem, sk);
      expect(toHex(back.publicKey.bytes)).toBe(toHex(kp.publicKey.bytes));
      expect((await failure(deserializeHpkePublicKey(kem, kp.publicKey.bytes.subarray(1)))).code).toBe('ERR_HPKE_KEY');
      expect((await failure(deserializeHpkePrivateKey(kem, sk.subarray(1)))).code).toBe('ERR_HPKE_KEY');
    }
    // Not a point on P-256.
    const bad = new Uint8Array(65).fill(0x11);
    bad[0] = 0x04;
    expect((await failure(deserializeHpkePublicKey(KemId.DhkemP256HkdfSha256, bad))).code).toBe('ERR_HPKE_KEY');
    // A P-256 scalar of zero is not a private key.
    expect((await failure(deserializeHpkePrivateKey(KemId.DhkemP256HkdfSha256, new Uint8Array(32)))).code).toBe('ERR_HPKE_KEY');
    expect((await failure(deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, new Uint8Array(8)))).code).toBe('ERR_HPKE_PARAMS');
  });

  it('refuses to encapsulate to an X25519 small-order point (all-zero shared secret)', async () => {
    const zero = await deserializeHpkePublicKey(KemId.DhkemX25519HkdfSha256, new Uint8Array(32));
    expect((await failure(hpkeSeal({ suite: X25519_AES128, recipientPublicKey: zero }, utf8('x')))).code).toBe('ERR_HPKE_ENCAP');
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    expect((await failure(hpkeOpen({ suite: X25519_AES128, recipientKeyPair: r, enc: new Uint8Array(32) }, new Uint8Array(32)))).code).toBe('ERR_HPKE_DECAP');
  });

  it('keeps secrets out of error messages and details', async () => {
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const psk = { id: utf8('id'), key: new Uint8Array(32).fill(0x5a) };
    const sealed = await hpkeSeal({ suite: X25519_AES128, recipientPublicKey: r.publicKey, psk }, utf8('very secret plaintext'));
    const e = await failure(hpkeOpen({ suite: X25519_AES128, recipientKeyPair: r, enc: sealed.enc, psk: { id: psk.id, key: new Uint8Array(32) } }, sealed.ciphertext));
    const text = JSON.stringify(e.toJSON()) + e.message;
    expect(text).not.toContain('very secret');
    expect(text).not.toContain(toHex(psk.key));
    expect(text).not.toContain(toHex(await serializeHpkePrivateKey(r)));
  });
});

describe('prepared encapsulation (base mode, done ahead of time)', () => {
  type V = { mode: number; aead_id: number; ikmR: string; ikmE: string; info: string; enc: string; shared_secret: string; encryptions: { aad: string; pt: string; ct: string }[] };
  const vectors = (JSON.parse(readVectorText('hpke/rfc9180-x25519-hkdfsha256-subset.json')) as V[]).filter((x) => x.mode === 0);

  it.each(vectors.map((v) => [`aead ${v.aead_id}`, v] as const))('reproduces the RFC 9180 base-mode vector, %s', async (_name, v) => {
    const suite = { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: v.aead_id };
    const r = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, fromHex(v.ikmR));
    const e = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, fromHex(v.ikmE));
    const prepared = await prepareHpkeEncap({ kem: suite.kem, recipientPublicKey: r.publicKey, ephemeralKeyPair: e });
    expect(toHex(prepared.enc)).toBe(v.enc);
    const ctx = await setupHpkeSender({ suite, recipientPublicKey: r.publicKey, info: fromHex(v.info), prepared });
    expect(prepared.used).toBe(true);
    expect(toHex(ctx.enc)).toBe(v.enc);
    const first = v.encryptions[0]!;
    if (v.aead_id !== AeadId.ExportOnly) expect(toHex(await ctx.seal(fromHex(first.pt), fromHex(first.aad)))).toBe(first.ct);
  });

  it.each(vectors.map((v) => [`aead ${v.aead_id}`, v] as const))('with its key schedule run ahead, for the info used or another, still reproduces the vector, %s', async (_name, v) => {
    const suite = { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: v.aead_id };
    const r = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, fromHex(v.ikmR));
    const e = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, fromHex(v.ikmE));
    const otherAead = v.aead_id === AeadId.Aes128Gcm ? AeadId.Aes256Gcm : AeadId.Aes128Gcm;
    // The expected info and suite; another info; another AEAD: each SetupS gives the vector's context.
    for (const expect_ of [{ suite, info: fromHex(v.info) }, { suite, info: utf8('another info') }, { suite: { ...suite, aead: otherAead }, info: fromHex(v.info) }]) {
      const prepared = await prepareHpkeEncap({ kem: suite.kem, recipientPublicKey: r.publicKey, ephemeralKeyPair: e, expect: expect_ });
      const ctx = await setupHpkeSender({ suite, recipientPublicKey: r.publicKey, info: fromHex(v.info), prepared });
      expect(prepared.used).toBe(true);
      const first = v.encryptions[0]!;
      if (v.aead_id !== AeadId.ExportOnly) expect(toHex(await ctx.seal(fromHex(first.pt), fromHex(first.aad)))).toBe(first.ct);
      // The second message too: the sequence number starts at zero whichever schedule was used.
      const second = v.encryptions[1];
      if (second && v.aead_id !== AeadId.ExportOnly) expect(toHex(await ctx.seal(fromHex(second.pt), fromHex(second.aad)))).toBe(second.ct);
    }
  });

  it('the schedule run ahead is what SetupS uses: no key derivation is left for it (and one is, for another info)', async () => {
    const base = getHpkeProvider();
    let hmacs = 0;
    const counting: HpkePrimitives = { ...base, hmac: (kdf, key, message) => (hmacs++, base.hmac(kdf, key, message)) };
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const info = utf8('the request info');
    for (const [setupInfo, derives] of [[info, false], [utf8('another'), true]] as const) {
      const p = await prepareHpkeEncap({ kem: X25519_AES128.kem, recipientPublicKey: r.publicKey, provider: counting, expect: { suite: X25519_AES128, info } });
      hmacs = 0;
      const ctx = await setupHpkeSender({ suite: X25519_AES128, recipientPublicKey: r.publicKey, info: setupInfo, prepared: p, provider: counting });
      expect(hmacs > 0).toBe(derives);
      const sealed = await ctx.seal(utf8('hello'));
      expect(new TextDecoder().decode(await hpkeOpen({ suite: X25519_AES128, recipientKeyPair: r, enc: ctx.enc, info: setupInfo }, sealed))).toBe('hello');
    }
  });

  it('a schedule run ahead for a suite of another KEM is refused when prepared', async () => {
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const err = await failure(prepareHpkeEncap({ kem: X25519_AES128.kem, recipientPublicKey: r.publicKey, expect: { suite: { ...X25519_AES128, kem: KemId.DhkemP256HkdfSha256 }, info: utf8('x') } }));
    expect(err.code).toBe('ERR_HPKE_KEY');
  });

  it('is used once, for its recipient key, in base mode only; discard wipes it', async () => {
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const other = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const base = { suite: X25519_AES128, recipientPublicKey: r.publicKey };
    const p = await prepareHpkeEncap({ kem: X25519_AES128.kem, recipientPublicKey: r.publicKey });
    const sealed = await (await setupHpkeSender({ ...base, prepared: p })).seal(utf8('hello'));
    expect((await failure(setupHpkeSender({ ...base, prepared: p }))).code).toBe('ERR_HPKE_PARAMS');
    // The recipient opens what the prepared context sealed.
    expect(new TextDecoder().decode(await hpkeOpen({ suite: X25519_AES128, recipientKeyPair: r, enc: p.enc }, sealed))).toBe('hello');
    const q = await prepareHpkeEncap({ kem: X25519_AES128.kem, recipientPublicKey: r.publicKey });
    expect((await failure(setupHpkeSender({ ...base, recipientPublicKey: other.publicKey, prepared: q }))).code).toBe('ERR_HPKE_PARAMS');
    expect((await failure(setupHpkeSender({ ...base, psk: { id: utf8('id'), key: new Uint8Array(32).fill(1) }, prepared: q }))).code).toBe('ERR_HPKE_PARAMS');
    expect((await failure(setupHpkeSender({ ...base, senderKeyPair: other, prepared: q }))).code).toBe('ERR_HPKE_PARAMS');
    expect(q.used).toBe(false);
    q.discard();
    expect(q.used).toBe(true);
    expect((await failure(setupHpkeSender({ ...base, prepared: q }))).code).toBe('ERR_HPKE_PARAMS');
    const p256 = await generateHpkeKeyPair(KemId.DhkemP256HkdfSha256);
    expect((await failure(prepareHpkeEncap({ kem: X25519_AES128.kem, recipientPublicKey: p256.publicKey }))).code).toBe('ERR_HPKE_PARAMS');
  });

  it('cannot be made twice from one shared secret, read, or re-aimed at another key', async () => {
    const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const other = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
    const p = await prepareHpkeEncap({ kem: X25519_AES128.kem, recipientPublicKey: r.publicKey });
    // Only prepareHpkeEncap constructs one: a copy of an encapsulation would reuse its ephemeral key.
    const forge = () => new (HpkePreparedEncap as unknown as new (...a: unknown[]) => HpkePreparedEncap)(Symbol('HpkePreparedEncap'), X25519_AES128.kem, r.publicKey.bytes, p.enc, new Uint8Array(32));
    expect(forge).toThrow(expect.objectContaining({ code: 'ERR_HPKE_PARAMS' }) as Error);
    // The shared secret is not a readable member.
    expect(Object.values(p)).toEqual([X25519_AES128.kem]);
    expect('take' in p).toBe(false);
    // What a caller reads is a copy: changing it aims the encapsulation at no other key.
    p.recipientPublicKey.set(other.publicKey.bytes);
    p.enc.fill(0);
    expect((await failure(setupHpkeSender({ suite: X25519_AES128, recipientPublicKey: other.publicKey, prepared: p }))).code).toBe('ERR_HPKE_PARAMS');
    const ctx = await setupHpkeSender({ suite: X25519_AES128, recipientPublicKey: r.publicKey, prepared: p });
    expect(toHex(ctx.enc)).toBe(toHex(p.enc));
    expect(new TextDecoder().decode(await hpkeOpen({ suite: X25519_AES128, recipientKeyPair: r, enc: ctx.enc }, await ctx.seal(utf8('hi'))))).toBe('hi');
  });
});
