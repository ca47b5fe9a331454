// RFC 9180 conformance: the CFRG test vectors (all of them whose suite this module supports,
// which is every one) and the X25519/HKDF-SHA256 subset, with tampered twins per vector.
import { gunzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readVector, readVectorText } from '../../../../test/vectors.js';
import { fromHex, toHex } from '../bytes.js';
import { CustodyError } from '../errors.js';
import { hpkeOpen, setupHpkeRecipient, setupHpkeSender } from './hpke.js';
import { AeadId, hpkeSuiteName, isHpkeSuiteSupported, KemId } from './identifiers.js';
import { deriveHpkeKeyPair, deserializeHpkePrivateKey, deserializeHpkePublicKey, serializeHpkePrivateKey } from './keys.js';

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

async function runVector(v: Vector): Promise<{ encryptions: number; exports: number }> {
  const suite = { kem: v.kem_id, kdf: v.kdf_id, aead: v.aead_id };
  // DeriveKeyPair reproduces every key in the vector.
  const r = await deriveHpkeKeyPair(v.kem_id, h(v.ikmR));
  expect(toHex(r.publicKey.bytes)).toBe(v.pkRm);
  expect(toHex(await serializeHpkePrivateKey(r))).toBe(v.skRm);
  const e = await deriveHpkeKeyPair(v.kem_id, h(v.ikmE));
  expect(toHex(e.publicKey.bytes)).toBe(v.pkEm);
  const s = v.ikmS ? await deriveHpkeKeyPair(v.kem_id, h(v.ikmS)) : undefined;
  if (s) expect(toHex(s.publicKey.bytes)).toBe(v.pkSm);
  // DeserializePrivateKey recomputes the public key.
  const r2 = await deserializeHpkePrivateKey(v.kem_id, h(v.skRm));
  expect(toHex(r2.publicKey.bytes)).toBe(v.pkRm);

  const psk = v.psk && v.psk_id ? { key: h(v.psk), id: h(v.psk_id) } : undefined;
  const sender = await setupHpkeSender({
    suite,
    recipientPublicKey: await deserializeHpkePublicKey(v.kem_id, h(v.pkRm)),
    info: h(v.info),
    ephemeralKeyPair: e,
    ...(psk ? { psk } : {}),
    ...(s ? { senderKeyPair: s } : {}),
  });
  expect(sender.mode).toBe(v.mode);
  expect(toHex(sender.enc)).toBe(v.enc);
  const recipient = await setupHpkeRecipient({
    suite,
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
  const base = { suite, recipientKeyPair: r2, enc: h(v.enc), info: h(v.info), ...(psk ? { psk } : {}), ...(s ? { senderPublicKey: s.publicKey } : {}) };
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

describe('RFC 9180 vectors: X25519/HKDF-SHA256 subset', () => {
  it('has the 16 vectors the README describes', () => {
    expect(subset).toHaveLength(16);
    expect(new Set(subset.map((v) => `${v.mode}/${v.aead_id}`)).size).toBe(16);
  });
  it.each(subset.map((v) => [label(v), v] as const))('%s', async (_name, v) => {
    const n = await runVector(v);
    expect(n.exports).toBeGreaterThan(0);
    if (v.aead_id !== AeadId.ExportOnly) expect(n.encryptions).toBeGreaterThan(0);
  });
});

describe('RFC 9180 vectors: full CFRG file', () => {
  const supported = full.filter((v) => isHpkeSuiteSupported({ kem: v.kem_id, kdf: v.kdf_id, aead: v.aead_id }));
  it('supports every suite in the file (128 vectors, 96 with 257 encryptions)', () => {
    expect(full).toHaveLength(128);
    expect(supported).toHaveLength(128);
    expect(full.filter((v) => v.encryptions?.length === 257)).toHaveLength(96);
  });
  it.each(supported.map((v, i) => [`#${i} ${label(v)}`, v] as const))('%s', async (_name, v) => {
    await runVector(v);
  });
  it('covers P-256, P-521, X25519 and X448 in all four modes', () => {
    const kems = new Set(supported.map((v) => v.kem_id));
    expect([...kems].sort()).toEqual([KemId.DhkemP256HkdfSha256, KemId.DhkemP521HkdfSha512, KemId.DhkemX25519HkdfSha256, KemId.DhkemX448HkdfSha512].sort());
    expect(new Set(supported.map((v) => v.mode)).size).toBe(4);
  });
});
