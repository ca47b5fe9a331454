// Interop check against Tinfoil's Encrypted HTTP Body Protocol vectors (MIT,
// tinfoilsh/encrypted-http-body-protocol test-vectors/). EHBP reuses the OHTTP response key
// schedule (export "ehbp response", salt = enc || 32-byte nonce, AES-256-GCM) with a 4-byte
// big-endian length per frame and nonce i = aead_nonce XOR i. Only the primitives are
// exercised here; Custody speaks OHTTP on the wire.
import { AeadId, ByteReader, createAeadKey, CustodyError, fromHex, KdfId, toHex, xorNonce, type Bytes } from '@custody/core';
import { describe, expect, it } from 'vitest';
import { readVectorText } from '../../../../test/vectors.js';
import { deriveResponseKeys, responseNonceLength } from './ohttp.js';

interface Derive {
  exportedSecret: string;
  requestEnc: string;
  responseNonce: string;
  derivedKey: string;
  derivedNonceBase: string;
}
interface Decrypt {
  exportedSecret: string;
  requestEnc: string;
  responseNonce: string;
  plaintext: string;
  encryptedResponse: string;
}

const derive = JSON.parse(readVectorText('ehbp/derive.json')) as Derive;
const decrypt = JSON.parse(readVectorText('ehbp/response-decryption.json')) as Decrypt;

async function openEhbpBody(v: Omit<Decrypt, 'plaintext' | 'encryptedResponse'>, body: Uint8Array): Promise<Bytes[]> {
  const keys = await deriveResponseKeys(KdfId.HkdfSha256, AeadId.Aes256Gcm, fromHex(v.exportedSecret), fromHex(v.requestEnc), fromHex(v.responseNonce));
  const aead = createAeadKey(AeadId.Aes256Gcm, keys.key);
  const r = new ByteReader(body, 'EHBP body');
  const out: Bytes[] = [];
  for (let i = 0; r.remaining > 0; ) {
    const len = r.u32be();
    if (len === 0) continue; // empty writes are ignored
    out.push(await aead.open(xorNonce(keys.nonce, i++), new Uint8Array(0), r.bytesView(len)));
  }
  return out;
}

describe('EHBP interop (Tinfoil vectors)', () => {
  it('derives the response key and nonce with the OHTTP schedule', async () => {
    expect(responseNonceLength(AeadId.Aes256Gcm)).toBe(32);
    const keys = await deriveResponseKeys(KdfId.HkdfSha256, AeadId.Aes256Gcm, fromHex(derive.exportedSecret), fromHex(derive.requestEnc), fromHex(derive.responseNonce));
    expect(toHex(keys.key)).toBe(derive.derivedKey);
    expect(toHex(keys.nonce)).toBe(derive.derivedNonceBase);
  });

  it('decrypts the one-frame response and refuses a tampered one', async () => {
    const frames = await openEhbpBody(decrypt, fromHex(decrypt.encryptedResponse));
    expect(frames.map(toHex)).toEqual([decrypt.plaintext]);
    expect(new TextDecoder().decode(frames[0])).toBe('hello from test vector');
    const tampered = fromHex(decrypt.encryptedResponse);
    tampered[10]! ^= 1;
    await expect(openEhbpBody(decrypt, tampered)).rejects.toMatchObject({ code: 'ERR_HPKE_OPEN' });
    const wrongNonce = { ...decrypt, responseNonce: decrypt.responseNonce.replace(/^40/, '41') };
    await expect(openEhbpBody(wrongNonce, fromHex(decrypt.encryptedResponse))).rejects.toBeInstanceOf(CustodyError);
  });
});
