// The node:crypto provider passes the same RFC 9180 conformance suite as the WebCrypto
// default (every CFRG vector with tampered twins, interoperability both ways, AEAD, HKDF),
// and the key-wrap and OHTTP layers above it give byte-identical results.
import { describe, expect, it } from 'vitest';
import { deriveHpkeKeyPair, deserializeHpkePrivateKey, fromHex, generateHpkeKeyPair, getHpkeProvider, KemId, setHpkeProvider, toHex, unwrapKey, webCryptoHpkePrimitives, wrapKey, type Bytes } from '@custody/core';
import { createChunkedRequest, decapsulateRequest, encapsulateRequest, parseKeyConfig } from '@custody/sdk';
import { describeHpkeConformance } from '../../../packages/core/src/hpke/testing/conformance.js';
import { readVectorText } from '../../../test/vectors.js';
import { installNodeHpkeProvider, nodeHpkePrimitives } from './node-hpke-provider.js';

describeHpkeConformance(nodeHpkePrimitives);

function counterRandom(seed: number): (n: number) => Bytes {
  let c = seed;
  return (n) => Uint8Array.from({ length: n }, () => c++ & 0xff);
}

describe('node:crypto provider under the key wrap', () => {
  it('wraps byte for byte like WebCrypto (same ephemeral key) and unwraps across providers', async () => {
    const tee = await deriveHpkeKeyPair(KemId.DhkemX25519HkdfSha256, new Uint8Array(32).fill(7), { provider: webCryptoHpkePrimitives });
    const secret = fromHex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
    const context = { key: 'tenant-a/model', version: 3, session: 's-1' };
    const viaNode = await wrapKey(secret, { recipientPublicKey: tee.publicKey.bytes, context, random: counterRandom(1), provider: nodeHpkePrimitives });
    const viaWeb = await wrapKey(secret, { recipientPublicKey: tee.publicKey.bytes, context, random: counterRandom(1), provider: webCryptoHpkePrimitives });
    expect(toHex(viaNode)).toBe(toHex(viaWeb));
    expect(toHex(await unwrapKey(viaNode, { recipientKeyPair: tee, context, provider: nodeHpkePrimitives }))).toBe(toHex(secret));
    await expect(unwrapKey(viaNode, { recipientKeyPair: tee, context: { ...context, session: 's-2' }, provider: nodeHpkePrimitives })).rejects.toMatchObject({ code: 'ERR_HPKE_OPEN' });
  });

  it('installs process-wide and returns the previous provider', async () => {
    const previous = installNodeHpkeProvider();
    try {
      expect(previous).toBe(webCryptoHpkePrimitives);
      expect(getHpkeProvider()).toBe(nodeHpkePrimitives);
      const k = await generateHpkeKeyPair(KemId.DhkemX25519HkdfSha256);
      expect(k.privateKey.provider).toBe('node:crypto');
    } finally {
      installNodeHpkeProvider();
    }
  });
});

describe('node:crypto provider under Oblivious HTTP', () => {
  interface OhttpVector {
    kemId: number;
    skR: string;
    skE: string;
    keyConfig: string;
    requestBhttp: string;
    encapsulatedRequest: string;
    responseBhttp: string;
    responseNonce: string;
    encapsulatedResponse: string;
  }
  const rfc = JSON.parse(readVectorText('ohttp/rfc9458-appendix-a.json')) as OhttpVector;
  const chunked = JSON.parse(readVectorText('ohttp/chunked-ohttp-appendix.json')) as OhttpVector & { requestChunks: { plaintext: string; final?: boolean; encoded: string }[] };
  const h = fromHex;

  it('reproduces RFC 9458 Appendix A and the chunked-OHTTP example byte for byte', async () => {
    const previous = installNodeHpkeProvider();
    try {
      const config = parseKeyConfig(h(rfc.keyConfig));
      const eph = await deserializeHpkePrivateKey(rfc.kemId, h(rfc.skE));
      expect(eph.privateKey.provider).toBe('node:crypto');
      const { encapsulatedRequest, context } = await encapsulateRequest(config, h(rfc.requestBhttp), { ephemeralKeyPair: eph });
      expect(toHex(encapsulatedRequest)).toBe(rfc.encapsulatedRequest);
      expect(toHex(await context.decapsulateResponse(h(rfc.encapsulatedResponse)))).toBe(rfc.responseBhttp);
      const key = { config, keyPair: await deserializeHpkePrivateKey(rfc.kemId, h(rfc.skR)) };
      const d = await decapsulateRequest([key], h(rfc.encapsulatedRequest));
      expect(toHex(d.request)).toBe(rfc.requestBhttp);
      const nonce = h(rfc.responseNonce);
      expect(toHex(await d.context.encapsulateResponse(h(rfc.responseBhttp), { random: () => nonce.slice() }))).toBe(rfc.encapsulatedResponse);

      const chunkedConfig = parseKeyConfig(h(chunked.keyConfig));
      const { sealer } = await createChunkedRequest(chunkedConfig, { ephemeralKeyPair: await deserializeHpkePrivateKey(chunked.kemId, h(chunked.skE)) });
      for (const c of chunked.requestChunks) expect(toHex(await sealer.seal(h(c.plaintext), c.final === true))).toBe(c.encoded);
    } finally {
      setHpkeProvider(previous);
    }
  });
});
