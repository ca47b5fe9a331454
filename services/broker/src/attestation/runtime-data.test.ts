// Runtime data of the key release handshake: canonical form, members, keys, digests per platform.
import { createHash, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { CustodyError} from '@custody/core';
import { toBase64Url, toHex } from '@custody/core';
import { generateTeeKeyPair } from './workload-client.js';
import { buildRuntimeData, parseRuntimeData, runtimeDigest, runtimeDigestAlgorithm, teeKeyFromSpki, teeKeyJwk, teeKeySpki } from './runtime-data.js';

const nonce = Uint8Array.from({ length: 32 }, (_, i) => i);
const code = (f: () => unknown): string => {
  try {
    f();
    return 'none';
  } catch (e) {
    return (e as CustodyError).code;
  }
};

describe('runtime data', () => {
  it('builds the documented JCS form and parses it back, for X25519 and P-256 TEE keys', () => {
    const x = generateTeeKeyPair('X25519');
    const text = buildRuntimeData(nonce, x.recipient);
    expect(text).toBe(`{"nonce":"${toBase64Url(nonce)}","tee-pubkey":{"crv":"X25519","kty":"OKP","x":"${toBase64Url(x.recipient.publicKey)}"}}`);
    const parsed = parseRuntimeData(text);
    expect(parsed).toMatchObject({ text, nonce: toBase64Url(nonce), teeKey: { curve: 'X25519' } });
    expect(parsed.teeKey.publicKey).toEqual(x.recipient.publicKey);
    const p = generateTeeKeyPair('P-256');
    const pText = buildRuntimeData(nonce, p.recipient);
    expect(JSON.parse(pText)['tee-pubkey']).toEqual(teeKeyJwk(p.recipient));
    expect(parseRuntimeData(pText).teeKey).toEqual(p.recipient);
  });

  it('accepts extra members (the gateway binds its OHTTP and receipt keys alongside)', () => {
    const x = generateTeeKeyPair('X25519');
    const text = buildRuntimeData(nonce, x.recipient, { 'ohttp-keys': 'AAEC', 'receipt-key': { crv: 'Ed25519', kty: 'OKP', x: 'abc' } });
    expect(Object.keys(JSON.parse(text))).toEqual(['nonce', 'ohttp-keys', 'receipt-key', 'tee-pubkey']);
    expect(parseRuntimeData(text).nonce).toBe(toBase64Url(nonce));
  });

  it('refuses anything but its exact canonical form, a 32-byte nonce and a public X25519/P-256 JWK', () => {
    const x = generateTeeKeyPair('X25519');
    const good = JSON.parse(buildRuntimeData(nonce, x.recipient)) as Record<string, unknown>;
    const jwk = good['tee-pubkey'] as Record<string, string>;
    const cases: Array<[string, unknown]> = [
      ['pretty-printed', JSON.stringify(good, null, 1)],
      ['members out of order', JSON.stringify({ 'tee-pubkey': jwk, nonce: good.nonce })],
      ['not JSON', '{"nonce":'],
      ['an array', '[]'],
      ['not a string', 42],
      ['short nonce', JSON.stringify({ nonce: toBase64Url(nonce.subarray(1)), 'tee-pubkey': jwk })],
      ['no nonce', JSON.stringify({ 'tee-pubkey': jwk })],
      ['no key', JSON.stringify({ nonce: good.nonce })],
      ['a private member', JSON.stringify({ nonce: good.nonce, 'tee-pubkey': { ...jwk, d: jwk.x } })],
      ['Ed25519 key', JSON.stringify({ nonce: good.nonce, 'tee-pubkey': { ...jwk, crv: 'Ed25519' } })],
      ['short key', JSON.stringify({ nonce: good.nonce, 'tee-pubkey': { ...jwk, x: jwk.x!.slice(2) } })],
      ['P-256 point off the curve', JSON.stringify({ nonce: good.nonce, 'tee-pubkey': { crv: 'P-256', kty: 'EC', x: toBase64Url(new Uint8Array(32).fill(1)), y: toBase64Url(new Uint8Array(32).fill(2)) } })],
      ['an upper-case member', JSON.stringify({ Extra: 1, nonce: good.nonce, 'tee-pubkey': jwk })],
      ['a non-canonical base64url key (fuzzer find: unused low bits set)', JSON.stringify({ nonce: good.nonce, 'tee-pubkey': { ...jwk, x: flipLowBit(jwk.x!) } })],
      ['duplicate members', `{"nonce":"${String(good.nonce)}","nonce":"${String(good.nonce)}","tee-pubkey":${JSON.stringify(jwk)}}`],
    ];
    for (const [what, input] of cases) expect(code(() => parseRuntimeData(input)), what).toBe('ERR_RUNTIME_DATA');
    expect(code(() => parseRuntimeData(' '.repeat(70_000)))).toBe('ERR_INPUT_TOO_LARGE');
  });

  it('digests per platform: SHA-256 for TPM quotes, SHA-512 elsewhere', async () => {
    const text = buildRuntimeData(nonce, generateTeeKeyPair().recipient);
    for (const p of ['tpm', 'azure-vtpm']) {
      expect(runtimeDigestAlgorithm(p)).toBe('SHA-256');
      expect(toHex(await runtimeDigest(p, text))).toBe(createHash('sha256').update(text).digest('hex'));
    }
    for (const p of ['sev-snp', 'tdx', 'nitro', 'sim']) {
      expect(runtimeDigestAlgorithm(p)).toBe('SHA-512');
      expect(toHex(await runtimeDigest(p, text))).toBe(createHash('sha512').update(text).digest('hex'));
    }
  });

  it('carries TEE keys as SubjectPublicKeyInfo and reads back only X25519 and P-256', () => {
    for (const curve of ['X25519', 'P-256'] as const) {
      const k = generateTeeKeyPair(curve);
      const spki = teeKeySpki(k.recipient);
      expect(Buffer.from(spki).equals(createPublicKey(k.privateKey).export({ format: 'der', type: 'spki' }))).toBe(true);
      expect(teeKeyFromSpki(spki)).toEqual(k.recipient);
      const bad = spki.slice();
      bad[3]! ^= 1;
      expect(code(() => teeKeyFromSpki(bad))).toBe('ERR_EAR_CLAIMS');
      expect(code(() => teeKeyFromSpki(spki.subarray(0, spki.length - 1)))).toBe('ERR_EAR_CLAIMS');
    }
  });
});

/** The same 32 bytes in base64url with the last character's unused low bit set. */
function flipLowBit(b64: string): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
  return b64.slice(0, -1) + alphabet[alphabet.indexOf(b64.at(-1)!) ^ 1]!;
}
