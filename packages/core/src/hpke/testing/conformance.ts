// The HPKE conformance suite a primitive provider must pass (hpke-js style): every RFC 9180
// CFRG vector with tampered twins, driven through the provider per call, plus process-wide
// installation, interoperability with the WebCrypto reference provider, AEAD and HKDF checks.
// Run by hpke.vectors.test.ts for WebCrypto and by services/crypto-node for node:crypto.
import { hkdfSync } from 'node:crypto';
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readVector, readVectorText } from '../../../../../test/vectors.js';
import { fromHex, toHex, utf8 } from '../../bytes.js';
import { CustodyError } from '../../errors.js';
import { hkdfExpand, hkdfExtract } from '../hkdf.js';
import { hpkeOpen, hpkeSeal, setupHpkeRecipient, setupHpkeSender } from '../hpke.js';
import { AeadId, hpkeSuiteName, isHpkeSuiteSupported, KdfId, KemId } from '../identifiers.js';
import { deriveHpkeKeyPair, deserializeHpkePrivateKey, deserializeHpkePublicKey, generateHpkeKeyPair, serializeHpkePrivateKey } from '../keys.js';
import { createAeadKey, getHpkeProvider, setHpkeProvider, webCryptoHpkePrimitives, type HpkePrimitives } from '../provider.js';

interface Encryption {
  aad: string;
  ct: string;
  nonce: string;
  pt: string;
}
interface Export {
  exporter_context: string;
  L: number;
  exported_value: string;
}
interface Vector {
  mode: number;
  kem_id: number;
  kdf_id: number;
  aead_id: number;
  info: string;
  ikmR: string;
  ikmS?: string;
  ikmE: string;
  skRm: string;
  skSm?: string;
  skEm: string;
  psk?: string;
  psk_id?: string;
  pkRm: string;
  pkSm?: string;
  pkEm: string;
  enc: string;
  encryptions?: Encryption[];
  exports: Export[];
}

const subset = JSON.parse(readVectorText('hpke/rfc9180-x25519-hkdfsha256-subset.json')) as Vector[];
const full = JSON.parse(new TextDecoder().decode(gunzipSync(readVector('hpke/test-vectors.json.gz')))) as Vector[];

const h = fromHex;

async function expectCode(p: Promise<unknown>, codes: string | string[]): Promise<void> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected a typed failure').toBeInstanceOf(CustodyError);
  expect([codes].flat()).toContain((err as CustodyError).code);
}

function flip(b: Uint8Array, i = 0): Uint8Array {
  const c = b.slice();
  c[i % c.length]! ^= 0x01;
  return c;
}

async function runVector(v: Vector, provider: HpkePrimitives): Promise<{ encryptions: number; exports: number }> {
  const p = { provider };
  const suite = { kem: v.kem_id, kdf: v.kdf_id, aead: v.aead_id };
  // DeriveKeyPair reproduces every key in the vector.
  const r = await deriveHpkeKeyPair(v.kem_id, h(v.ikmR), p);
  expect(toHex(r.publicKey.bytes)).toBe(v.pkRm);
  expect(toHex(await serializeHpkePrivateKey(r))).toBe(v.skRm);
  const e = await deriveHpkeKeyPair(v.kem_id, h(v.ikmE), p);
  expect(toHex(e.publicKey.bytes)).toBe(v.pkEm);
  const s = v.ikmS ? await deriveHpkeKeyPair(v.kem_id, h(v.ikmS), p) : undefined;
  if (s) expect(toHex(s.publicKey.bytes)).toBe(v.pkSm);
  // DeserializePrivateKey recomputes the public key.
  const r2 = await deserializeHpkePrivateKey(v.kem_id, h(v.skRm), p);
  expect(toHex(r2.publicKey.bytes)).toBe(v.pkRm);

  const psk = v.psk && v.psk_id ? { key: h(v.psk), id: h(v.psk_id) } : undefined;
  const sender = await setupHpkeSender({
    suite,
    recipientPublicKey: await deserializeHpkePublicKey(v.kem_id, h(v.pkRm), p),
    provider,
    info: h(v.info),
    ephemeralKeyPair: e,
    ...(psk ? { psk } : {}),
    ...(s ? { senderKeyPair: s } : {}),
  });
  expect(sender.mode).toBe(v.mode);
  expect(toHex(sender.enc)).toBe(v.enc);
  const recipient = await setupHpkeRecipient({
    suite,
    provider,
    recipientKeyPair: r2,
    enc: h(v.enc),
    info: h(v.info),
    ...(psk ? { psk } : {}),
    ...(s ? { senderPublicKey: s.publicKey } : {}),
  });
  expect(recipient.mode).toBe(v.mode);

  const encryptions = v.encryptions ?? [];
  for (const enc of encryptions) {
    expect(toHex(await sender.seal(h(enc.pt), h(enc.aad)))).toBe(enc.ct);
    expect(toHex(await recipient.open(h(enc.ct), h(enc.aad)))).toBe(enc.pt);
  }
  for (const x of v.exports) {
    expect(toHex(await sender.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
    expect(toHex(await recipient.export(h(x.exporter_context), x.L))).toBe(x.exported_value);
  }

  // Tampered twins, each against a fresh recipient at sequence number 0.
  const base = { suite, provider, recipientKeyPair: r2, enc: h(v.enc), info: h(v.info), ...(psk ? { psk } : {}), ...(s ? { senderPublicKey: s.publicKey } : {}) };
  const first = encryptions[0];
  if (v.aead_id === AeadId.ExportOnly) {
    await expectCode(sender.seal(new Uint8Array(1)), 'ERR_HPKE_EXPORT_ONLY');
    await expectCode(recipient.open(new Uint8Array(32)), 'ERR_HPKE_EXPORT_ONLY');
    // Export-only has nothing to authenticate: a wrong info or psk yields different secrets.
    const x = v.exports[0]!;
    const wrongInfo = await setupHpkeRecipient({ ...base, info: flip(h(v.info)) });
    expect(toHex(await wrongInfo.export(h(x.exporter_context), x.L))).not.toBe(x.exported_value);
    if (psk) {
      const wrongPsk = await setupHpkeRecipient({ ...base, psk: { id: psk.id, key: flip(psk.key) } });
      expect(toHex(await wrongPsk.export(h(x.exporter_context), x.L))).not.toBe(x.exported_value);
    }
  } else if (first) {
    const ct = h(first.ct);
    const aad = h(first.aad);
    expect(toHex(await hpkeOpen({ ...base, aad }, ct))).toBe(first.pt);
    await expectCode(hpkeOpen({ ...base, aad }, flip(ct, 3)), 'ERR_HPKE_OPEN');
    await expectCode(hpkeOpen({ ...base, aad }, flip(ct, ct.length - 1)), 'ERR_HPKE_OPEN');
    await expectCode(hpkeOpen({ ...base, aad: flip(aad) }, ct), 'ERR_HPKE_OPEN');
    await expectCode(hpkeOpen({ ...base, aad: new Uint8Array(0) }, ct), 'ERR_HPKE_OPEN');
    await expectCode(hpkeOpen({ ...base, aad, info: flip(h(v.info)) }, ct), 'ERR_HPKE_OPEN');
    await expectCode(hpkeOpen({ ...base, aad }, ct.subarray(0, 15)), 'ERR_HPKE_OPEN');
    // A flipped enc is another point (X25519/X448) or no point at all (NIST curves).
    await expectCode(hpkeOpen({ ...base, aad, enc: flip(h(v.enc), 5) }, ct), ['ERR_HPKE_OPEN', 'ERR_HPKE_DECAP']);
    await expectCode(hpkeOpen({ ...base, aad, enc: h(v.enc).subarray(1) }, ct), 'ERR_HPKE_DECAP');
    if (psk) {
      await expectCode(hpkeOpen({ ...base, aad, psk: { id: psk.id, key: flip(psk.key) } }, ct), 'ERR_HPKE_OPEN');
      await expectCode(hpkeOpen({ ...base, aad, psk: { id: flip(psk.id), key: psk.key } }, ct), 'ERR_HPKE_OPEN');
      const { psk: _drop, ...noPsk } = base;
      await expectCode(hpkeOpen({ ...noPsk, aad }, ct), 'ERR_HPKE_OPEN');
    }
    if (s) {
      await expectCode(hpkeOpen({ ...base, aad, senderPublicKey: e.publicKey }, ct), 'ERR_HPKE_OPEN');
    }
    // The wrong recipient key never opens it.
    await expectCode(hpkeOpen({ ...base, aad, recipientKeyPair: e }, ct), 'ERR_HPKE_OPEN');
  }
  return { encryptions: encryptions.length, exports: v.exports.length };
}

function label(v: Vector): string {
  return `mode ${v.mode}, ${hpkeSuiteName({ kem: v.kem_id, kdf: v.kdf_id, aead: v.aead_id })}`;
}



export interface ConformanceOptions {
  /** KEMs the platform lacks (X448 in Chromium); their vectors are skipped and reported. */
  readonly skipKems?: readonly number[];
}

/** Registers the whole suite for one provider. */
export function describeHpkeConformance(provider: HpkePrimitives, options: ConformanceOptions = {}): void {
  const skip = new Set(options.skipKems ?? []);
  const runnable = (v: Vector): boolean => !skip.has(v.kem_id);

  describe(`HPKE conformance (${provider.name}): RFC 9180 X25519/HKDF-SHA256 subset`, () => {
    it('has the 16 vectors the README describes', () => {
      expect(subset).toHaveLength(16);
      expect(new Set(subset.map((v) => `${v.mode}/${v.aead_id}`)).size).toBe(16);
    });
    it.each(subset.map((v) => [label(v), v] as const))('%s', async (_name, v) => {
      const n = await runVector(v, provider);
      expect(n.exports).toBeGreaterThan(0);
      if (v.aead_id !== AeadId.ExportOnly) expect(n.encryptions).toBeGreaterThan(0);
    });
  });

  describe(`HPKE conformance (${provider.name}): RFC 9180 full CFRG file`, () => {
    const supported = full.filter((v) => isHpkeSuiteSupported({ kem: v.kem_id, kdf: v.kdf_id, aead: v.aead_id }));
    it('supports every suite in the file (128 vectors, 96 with 257 encryptions)', () => {
      expect(full).toHaveLength(128);
      expect(supported).toHaveLength(128);
      expect(full.filter((v) => v.encryptions?.length === 257)).toHaveLength(96);
    });
    it.each(supported.filter(runnable).map((v, i) => [`#${i} ${label(v)}`, v] as const))('%s', async (_name, v) => {
      await runVector(v, provider);
    });
    it('covers P-256, P-521, X25519 and X448 in all four modes', () => {
      const kems = new Set(supported.map((v) => v.kem_id));
      expect([...kems].sort()).toEqual([KemId.DhkemP256HkdfSha256, KemId.DhkemP521HkdfSha512, KemId.DhkemX25519HkdfSha256, KemId.DhkemX448HkdfSha512].sort());
      expect(new Set(supported.map((v) => v.mode)).size).toBe(4);
    });
  });

  describe(`HPKE conformance (${provider.name}): provider behaviour`, () => {
    const suites = [
      { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes128Gcm },
      { kem: KemId.DhkemX25519HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.ChaCha20Poly1305 },
      { kem: KemId.DhkemP256HkdfSha256, kdf: KdfId.HkdfSha256, aead: AeadId.Aes256Gcm },
      { kem: KemId.DhkemP384HkdfSha384, kdf: KdfId.HkdfSha384, aead: AeadId.Aes128Gcm },
      { kem: KemId.DhkemP521HkdfSha512, kdf: KdfId.HkdfSha512, aead: AeadId.Aes256Gcm },
    ].filter((s) => !skip.has(s.kem));
    const reference = webCryptoHpkePrimitives;

    it('serves calls process-wide once installed, and the previous provider comes back', async () => {
      const previous = setHpkeProvider(provider);
      try {
        expect(getHpkeProvider()).toBe(provider);
        const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
        expect(r.privateKey.provider).toBe(provider.name);
        const suite = suites[0]!;
        const sealed = await hpkeSeal({ suite, recipientPublicKey: r.publicKey, info: utf8('process-wide'), aad: utf8('a') }, utf8('prompt'));
        expect(new TextDecoder().decode(await hpkeOpen({ suite, recipientKeyPair: r, enc: sealed.enc, info: utf8('process-wide'), aad: utf8('a') }, sealed.ciphertext))).toBe('prompt');
      } finally {
        setHpkeProvider(previous);
      }
      expect(getHpkeProvider()).toBe(previous);
    });

    it.each(suites.map((s) => [hpkeSuiteName(s), s] as const))('interoperates with the WebCrypto reference in all four modes: %s', async (_name, suite) => {
      const psk = { id: utf8('tenant-a/psk-1'), key: new Uint8Array(32).fill(9) };
      // Keys made by one provider are used by the other (imported there once, on first use).
      const r = await generateHpkeKeyPair(suite.kem, { provider });
      const s = await generateHpkeKeyPair(suite.kem, { provider: reference });
      for (const [from, to] of [
        [provider, reference],
        [reference, provider],
      ] as const) {
        for (const mode of [0, 1, 2, 3]) {
          const withPsk = mode === 1 || mode === 3 ? { psk } : {};
          const info = utf8(`info ${mode}`);
          const sealed = await hpkeSeal({ suite, provider: from, recipientPublicKey: r.publicKey, info, aad: utf8('aad'), ...withPsk, ...(mode >= 2 ? { senderKeyPair: s } : {}) }, utf8('secret prompt'));
          const open = { suite, provider: to, recipientKeyPair: r, enc: sealed.enc, info, aad: utf8('aad'), ...withPsk, ...(mode >= 2 ? { senderPublicKey: s.publicKey } : {}) };
          expect(new TextDecoder().decode(await hpkeOpen(open, sealed.ciphertext)), `${from.name} -> ${to.name} mode ${mode}`).toBe('secret prompt');
          await expectCode(hpkeOpen(open, flip(sealed.ciphertext, 2)), 'ERR_HPKE_OPEN');
        }
      }
      // Both providers serialise the same private key bytes.
      const fromProvider = await serializeHpkePrivateKey(r);
      const back = await deserializeHpkePrivateKey(suite.kem, fromProvider, { provider: reference });
      expect(toHex(back.publicKey.bytes)).toBe(toHex(r.publicKey.bytes));
      expect(toHex(await serializeHpkePrivateKey(back))).toBe(toHex(fromProvider));
    });

    it('keeps private key material out of the key objects', async () => {
      const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256, { provider });
      const text = JSON.stringify(r);
      expect(text).not.toContain(toHex(await serializeHpkePrivateKey(r)));
      expect(Object.keys(r.privateKey).sort()).toEqual(['kem', 'provider']);
    });

    it('refuses malformed keys and small-order points with the same codes as the reference', async () => {
      for (const kem of [KemId.DhkemX25519HkdfSha256, KemId.DhkemP256HkdfSha256, KemId.DhkemP521HkdfSha512].filter((k) => !skip.has(k))) {
        const kp = await generateHpkeKeyPair(kem, { provider });
        await expectCode(deserializeHpkePublicKey(kem, kp.publicKey.bytes.subarray(1), { provider }), 'ERR_HPKE_KEY');
        await expectCode(deserializeHpkePrivateKey(kem, (await serializeHpkePrivateKey(kp)).subarray(1), { provider }), 'ERR_HPKE_KEY');
      }
      const bad = new Uint8Array(65).fill(0x11);
      bad[0] = 0x04;
      await expectCode(deserializeHpkePublicKey(KemId.DhkemP256HkdfSha256, bad, { provider }), 'ERR_HPKE_KEY');
      await expectCode(deserializeHpkePrivateKey(KemId.DhkemP256HkdfSha256, new Uint8Array(32), { provider }), 'ERR_HPKE_KEY');
      // The group order itself is not a private key; n - 1 is.
      const n = fromHex('ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
      await expectCode(deserializeHpkePrivateKey(KemId.DhkemP256HkdfSha256, n, { provider }), 'ERR_HPKE_KEY');
      const nMinus1 = n.slice();
      nMinus1[31] = 0x50;
      await deserializeHpkePrivateKey(KemId.DhkemP256HkdfSha256, nMinus1, { provider });
      const suite = suites[0]!;
      const zero = await deserializeHpkePublicKey(KemId.DhkemX25519HkdfSha256, new Uint8Array(32), { provider });
      await expectCode(hpkeSeal({ suite, provider, recipientPublicKey: zero }, utf8('x')), 'ERR_HPKE_ENCAP');
      const r = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256, { provider });
      await expectCode(hpkeOpen({ suite, provider, recipientKeyPair: r, enc: new Uint8Array(32) }, new Uint8Array(32)), 'ERR_HPKE_DECAP');
    });

    it.each([AeadId.Aes128Gcm, AeadId.Aes256Gcm, AeadId.ChaCha20Poly1305])('AEAD %i matches the reference and fails closed', async (aead) => {
      const nK = aead === AeadId.Aes128Gcm ? 16 : 32;
      const key = new Uint8Array(nK).map((_, i) => i);
      const nonce = new Uint8Array(12).fill(3);
      const pt = new Uint8Array(4096).map((_, i) => i * 7);
      const mine = createAeadKey(aead, key, provider);
      const ref = createAeadKey(aead, key, reference);
      const ct = await mine.seal(nonce, utf8('aad'), pt);
      expect(toHex(ct)).toBe(toHex(await ref.seal(nonce, utf8('aad'), pt)));
      expect(toHex(await mine.open(nonce, utf8('aad'), ct))).toBe(toHex(pt));
      await expectCode(mine.open(nonce, utf8('aad'), flip(ct, 100)), 'ERR_HPKE_OPEN');
      await expectCode(mine.open(nonce, utf8('aaD'), ct), 'ERR_HPKE_OPEN');
      await expectCode(mine.open(nonce, utf8('aad'), ct.subarray(0, 15)), 'ERR_HPKE_OPEN');
      await expectCode(mine.seal(nonce.subarray(1), utf8('aad'), pt), 'ERR_HPKE_PARAMS');
      expect(() => createAeadKey(aead, key.subarray(1), provider)).toThrow(CustodyError);
    });

    it('computes HKDF (RFC 5869 test case 1, and SHA-384/512 against the platform)', async () => {
      const ikm = new Uint8Array(22).fill(0x0b);
      const salt = fromHex('000102030405060708090a0b0c');
      const info = fromHex('f0f1f2f3f4f5f6f7f8f9');
      const prk = await hkdfExtract(KdfId.HkdfSha256, salt, ikm, provider);
      expect(toHex(prk)).toBe('077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5');
      expect(toHex(await hkdfExpand(KdfId.HkdfSha256, prk, info, 42, provider))).toBe('3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865');
      for (const [kdf, hash] of [[KdfId.HkdfSha384, 'sha384'], [KdfId.HkdfSha512, 'sha512']] as const) {
        const p = await hkdfExtract(kdf, new Uint8Array(0), ikm, provider);
        expect(toHex(await hkdfExpand(kdf, p, info, 200, provider))).toBe(toHex(new Uint8Array(hkdfSync(hash, ikm, new Uint8Array(0), info, 200))));
      }
    });
  });
}
