import { describe, expect, it } from 'vitest';
import { canonicalize, CustodyError, fromBase64Url, fromUtf8, setSignatureProvider, subtle, toBase64Url, utf8, webCryptoSignaturePrimitives, type Bytes, type SignaturePrimitives } from '@custody/core';
import { encodeEvent, validateEvent } from '@custody/ledger';
import { digestOf, encodeReceiptHeader, parseReceipt, prepareReceipt, receiptIdOf, receiptLedgerEvent, receiptSigningBytes, RECEIPT_FORMAT, signPreparedReceipt, signReceipt, verifyReceipt, type Receipt, type ReceiptBody } from './receipt.js';

const body: ReceiptBody = {
  format: RECEIPT_FORMAT,
  tenant: 'acme',
  route: 'chat.completions',
  gateway: { platform: 'sim', simulated: true, measurements: { measurement: 'a1'.repeat(48) }, earId: 'ear-1', attestationDigest: 'sha256:' + '11'.repeat(32) },
  model: { id: 'custody-demo', digest: 'sha256:' + '22'.repeat(32), backend: 'demo' },
  policy: { version: 'custody:gateway-policy:t:1:sha256:' + '33'.repeat(32), action: 'mask', findings: [{ category: 'email', action: 'mask', count: 1 }] },
  request: { digest: 'sha256:' + '44'.repeat(32), forwardedDigest: 'sha256:' + '55'.repeat(32) },
  response: { digest: 'sha256:' + '66'.repeat(32), status: 200, streamed: false },
  timestamps: { receivedAt: '2025-06-01T00:00:00.000Z', completedAt: '2025-06-01T00:00:00.120Z' },
};

async function keys() {
  const pair = (await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']));
  const x = toBase64Url(new Uint8Array(await subtle.exportKey('raw', pair.publicKey)));
  return { pair, jwk: { kty: 'OKP' as const, crv: 'Ed25519' as const, x } };
}

async function signed(): Promise<{ r: Receipt; jwk: { kty: 'OKP'; crv: 'Ed25519'; x: string } }> {
  const { pair, jwk } = await keys();
  const id = await receiptIdOf(body);
  const event = receiptLedgerEvent(body, id);
  const r = await signReceipt(body, id, { index: 7, entryDigest: await digestOf(encodeEvent(event)) }, pair.privateKey);
  return { r, jwk };
}

async function code(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CustodyError);
  return (e as CustodyError).code;
}

describe('receipts', () => {
  it('the id is a version 8 UUID derived from the body, and the ledger event is a valid Custody event', async () => {
    const id = await receiptIdOf(body);
    expect(id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(await receiptIdOf({ ...body, tenant: 'other' })).not.toBe(id);
    expect(() => validateEvent(receiptLedgerEvent(body, id))).not.toThrow();
  });

  it('verifies from the header form and from the object, with matching expectations', async () => {
    const { r, jwk } = await signed();
    const header = encodeReceiptHeader(r);
    expect(await verifyReceipt(header, jwk, { requestDigest: body.request.digest, responseDigest: body.response.digest, status: 200 })).toEqual(r);
    expect(parseReceipt(header)).toEqual(r);
  });

  it('every modified field fails the signature', async () => {
    const { r, jwk } = await signed();
    const twins: Receipt[] = [
      { ...r, tenant: 'evil' },
      { ...r, model: { ...r.model, id: 'other-model' } },
      { ...r, request: { ...r.request, forwardedDigest: 'sha256:' + '77'.repeat(32) } },
      { ...r, response: { ...r.response, streamed: true } },
      { ...r, policy: { ...r.policy, action: 'allow' } },
      { ...r, ledger: { ...r.ledger!, index: 8 } },
      { ...r, gateway: { ...r.gateway, simulated: false } },
      { ...r, gateway: { ...r.gateway, gpus: 1 } },
      { ...r, timestamps: { ...r.timestamps, completedAt: '2025-06-01T00:00:01.000Z' } },
    ];
    for (const t of twins) expect(await code(verifyReceipt(t, jwk))).toBe('ERR_RECEIPT_SIGNATURE');
    const sig = Buffer.from(r.signature.value, 'base64url');
    sig[0]! ^= 1;
    expect(await code(verifyReceipt({ ...r, signature: { alg: 'Ed25519', value: sig.toString('base64url') } }, jwk))).toBe('ERR_RECEIPT_SIGNATURE');
  });

  it('gateway.gpus is signed and survives the header form; a receipt without GPUs has no gpus member', async () => {
    const { pair, jwk } = await keys();
    const withGpus: ReceiptBody = { ...body, gateway: { ...body.gateway, gpus: 2 } };
    const id = await receiptIdOf(withGpus);
    expect(id).not.toBe(await receiptIdOf(body));
    const { receipt, header } = await signPreparedReceipt({ ...prepareReceipt(withGpus), receiptId: id }, null, pair.privateKey);
    expect((await verifyReceipt(header, jwk)).gateway.gpus).toBe(2);
    expect(await code(verifyReceipt({ ...receipt, gateway: { ...receipt.gateway, gpus: 1 } }, jwk))).toBe('ERR_RECEIPT_SIGNATURE');
    const { r } = await signed();
    expect('gpus' in parseReceipt(encodeReceiptHeader(r)).gateway).toBe(false);
    expect(fromUtf8(fromBase64Url(encodeReceiptHeader(r)))).not.toContain('gpus');
  });

  it('another key fails; mismatched expectations fail with ERR_RECEIPT_MISMATCH; malformed input fails typed', async () => {
    const { r } = await signed();
    const other = await keys();
    expect(await code(verifyReceipt(r, other.jwk))).toBe('ERR_RECEIPT_SIGNATURE');
    const { r: r2, jwk } = await signed();
    expect(await code(verifyReceipt(r2, jwk, { requestDigest: 'sha256:' + '00'.repeat(32) }))).toBe('ERR_RECEIPT_MISMATCH');
    expect(await code(verifyReceipt(r2, jwk, { status: 500 }))).toBe('ERR_RECEIPT_MISMATCH');
    expect(await code(verifyReceipt('not base64 json', jwk))).toBe('ERR_RECEIPT_MALFORMED');
    expect(await code(verifyReceipt({ ...r2, extra: 1 }, jwk))).toBe('ERR_RECEIPT_MALFORMED');
  });

  it('a receipt whose id is not derived from its body is malformed even when signed', async () => {
    const { pair, jwk } = await keys();
    const r = await signReceipt(body, '00000000-0000-8000-8000-000000000000', null, pair.privateKey);
    expect(await code(verifyReceipt(r, jwk))).toBe('ERR_RECEIPT_MALFORMED');
  });
});

describe('receipts canonicalised once', () => {
  it('the prepared path gives the same id, signed bytes and header as canonicalising each form', async () => {
    const { pair } = await keys();
    const p = prepareReceipt(body);
    expect(p.receiptId).toBe(await receiptIdOf(body));
    const signedMessages: string[] = [];
    const sign = async (m: Bytes) => {
      signedMessages.push(new TextDecoder().decode(m));
      return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, pair.privateKey, m));
    };
    const { receipt, header } = await signPreparedReceipt(p, { index: 3, entryDigest: 'sha256:' + '77'.repeat(32) }, sign);
    expect(header).toBe(encodeReceiptHeader(receipt));
    expect(signedMessages).toEqual([new TextDecoder().decode(receiptSigningBytes(receipt))]);
    expect(canonicalize(parseReceipt(header))).toBe(canonicalize(receipt));
  });

  it('verifies a JWK key through the installed signature provider, and a CryptoKey through WebCrypto', async () => {
    const { r, jwk } = await signed();
    const calls: number[] = [];
    const counting: SignaturePrimitives = {
      name: 'counting',
      verifyEd25519: (pk, sig, msg) => {
        calls.push(pk.length);
        return webCryptoSignaturePrimitives.verifyEd25519(pk, sig, msg);
      },
    };
    const previous = setSignatureProvider(counting);
    try {
      await verifyReceipt(encodeReceiptHeader(r), jwk);
      expect(calls).toEqual([32]);
      expect(await code(verifyReceipt({ ...r, tenant: 'other' }, jwk))).toBe('ERR_RECEIPT_SIGNATURE');
      const key = await subtle.importKey('jwk', jwk, { name: 'Ed25519' }, true, ['verify']);
      await verifyReceipt(r, key);
      expect(calls).toHaveLength(2);
    } finally {
      setSignatureProvider(previous);
    }
  });
});

describe('a received receipt is exactly what was signed', () => {
  // Re-spellings of a signed header's JSON: each drops, repeats or re-spells a member, so the
  // bytes received are not the bytes signed, and each must fail (the parse would hide the change).
  const respelled: [string, (text: string) => string][] = [
    ['a __proto__ member in measurements', (t) => t.replace('"measurements":{', '"measurements":{"__proto__":"injected",')],
    ['a __proto__ object in measurements', (t) => t.replace('"measurements":{', '"measurements":{"__proto__":{"measurement":"ff"},')],
    ['a __proto__ member at the top level', (t) => t.replace(/^\{/, '{"__proto__":{},')],
    ['a __proto__ member in gateway', (t) => t.replace('"gateway":{', '"gateway":{"__proto__":null,')],
    ['a __proto__ member in a finding', (t) => t.replace('"findings":[{', '"findings":[{"__proto__":1,')],
    ['a repeated tenant (the parse keeps the last)', (t) => t.replace(/^\{/, '{"tenant":"evil",')],
    ['a repeated measurement', (t) => t.replace('"measurements":{', '"measurements":{"measurement":"ff",')],
    ['whitespace between members', (t) => t.replace('",', '", ')],
    ['a trailing line feed', (t) => t + '\n'],
    ['a byte order mark', (t) => '\uFEFF' + t],
    ['an escaped letter', (t) => t.replace('"tenant":"acme"', '"tenant":"\\u0061cme"')],
    ['another number spelling', (t) => t.replace('"status":200', '"status":2e2')],
    ['members out of order', (t) => t.replace(/"ledger":\{("entryDigest":"[^"]+"),("index":7)\}/, '"ledger":{$2,$1}')],
  ];

  it.each(respelled)('%s: ERR_RECEIPT_MALFORMED', async (_name, respell) => {
    const { r, jwk } = await signed();
    const header = encodeReceiptHeader(r);
    const text = respell(fromUtf8(fromBase64Url(header)));
    const tampered = toBase64Url(utf8(text));
    expect(tampered).not.toBe(header);
    // The honest header verifies with the same key and expectations.
    const expect200 = { requestDigest: body.request.digest, responseDigest: body.response.digest, status: 200 };
    await expect(verifyReceipt(header, jwk, expect200)).resolves.toEqual(r);
    expect(await code(verifyReceipt(tampered, jwk, expect200))).toBe('ERR_RECEIPT_MALFORMED');
  });

  it('a __proto__ member is refused in a parsed object too, by parseReceipt and verifyReceipt', async () => {
    const { r, jwk } = await signed();
    const text = fromUtf8(fromBase64Url(encodeReceiptHeader(r)));
    for (const at of ['"measurements":{', '"policy":{', '"signature":{']) {
      const parsed: unknown = JSON.parse(text.replace(at, `${at}"__proto__":"x",`));
      expect(() => parseReceipt(parsed)).toThrow(expect.objectContaining({ code: 'ERR_RECEIPT_MALFORMED' }));
      expect(await code(verifyReceipt(parsed, jwk))).toBe('ERR_RECEIPT_MALFORMED');
    }
    expect(await verifyReceipt(JSON.parse(text), jwk)).toEqual(r);
  });

  it('a receipt that says the response streamed does not describe one sent whole, and the reverse', async () => {
    const { r, jwk } = await signed();
    expect(await verifyReceipt(r, jwk, { streamed: false })).toEqual(r);
    expect(await code(verifyReceipt(r, jwk, { streamed: true }))).toBe('ERR_RECEIPT_MISMATCH');
  });
});
