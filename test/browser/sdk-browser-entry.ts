// The SDK tests that run inside Chromium (bundled by esbuild for the browser, served from a
// localhost page so WebCrypto is available): the RFC 9458 and chunked-OHTTP vectors byte for
// byte, receipt signing and verification, and verify + encapsulate against a gateway on
// loopback (its URL, JWKS and tenant key come in the page's query).
import { concatBytes, CustodyError, deserializeHpkePrivateKey, fromHex, subtle, toBase64Url, toHex } from '@custody/core';
import {
  createChunkedRequest,
  createConfidentialFetch,
  decapsulateChunkedRequest,
  decapsulateRequest,
  digestOf,
  encapsulateRequest,
  parseKeyConfig,
  readAll,
  receiptIdOf,
  renderVerificationText,
  RECEIPT_FORMAT,
  signReceipt,
  streamOf,
  verifyReceipt,
  type Receipt,
  type ReceiptBody,
} from '@custody/sdk';

interface Result {
  name: string;
  ok: boolean;
  error?: string;
}

const results: Result[] = [];
const h = fromHex;

function assert(cond: unknown, what: string): asserts cond {
  if (!cond) throw new Error(`assertion failed: ${what}`);
}

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
  } catch (e) {
    return e instanceof CustodyError ? e.code : `not a CustodyError: ${String(e)}`;
  }
  return 'no error';
}

async function test(name: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
    results.push({ name, ok: true });
  } catch (e) {
    results.push({ name, ok: false, error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) });
  }
}

interface Vector {
  kemId: number;
  keyId: number;
  skR: string;
  skE: string;
  keyConfig: string;
  requestBhttp: string;
  responseBhttp: string;
  encapsulatedRequest: string;
  encapsulatedResponse: string;
  responseNonce: string;
  requestChunks?: { plaintext: string; final?: boolean; encoded: string }[];
  responseChunks?: { plaintext: string; final?: boolean; encoded: string }[];
}

async function run(): Promise<void> {
  const q = new URLSearchParams(location.search);
  const rfc = (await (await fetch('/vectors/ohttp/rfc9458-appendix-a.json')).json()) as Vector;
  const chunked = (await (await fetch('/vectors/ohttp/chunked-ohttp-appendix.json')).json()) as Vector;

  await test('WebCrypto has X25519 and Ed25519 (secure context)', async () => {
    assert(globalThis.isSecureContext, 'secure context');
    await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
    await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
  });

  await test('RFC 9458 A: client encapsulates byte-exactly and opens the example response', async () => {
    const config = parseKeyConfig(h(rfc.keyConfig));
    const eph = await deserializeHpkePrivateKey(rfc.kemId, h(rfc.skE));
    const { encapsulatedRequest, context } = await encapsulateRequest(config, h(rfc.requestBhttp), { ephemeralKeyPair: eph });
    assert(toHex(encapsulatedRequest) === rfc.encapsulatedRequest, 'encapsulated request bytes');
    assert(toHex(await context.decapsulateResponse(h(rfc.encapsulatedResponse))) === rfc.responseBhttp, 'response bytes');
    const bad = h(rfc.encapsulatedResponse);
    bad[bad.length - 1]! ^= 1;
    assert((await code(context.decapsulateResponse(bad))) === 'ERR_OHTTP_RESPONSE_DECRYPT', 'tampered response refused');
  });

  await test('RFC 9458 A: gateway decapsulates and seals the response byte-exactly', async () => {
    const key = { config: parseKeyConfig(h(rfc.keyConfig)), keyPair: await deserializeHpkePrivateKey(rfc.kemId, h(rfc.skR)) };
    const { request, context } = await decapsulateRequest([key], h(rfc.encapsulatedRequest));
    assert(toHex(request) === rfc.requestBhttp, 'request bytes');
    const res = await context.encapsulateResponse(h(rfc.responseBhttp), { random: () => h(rfc.responseNonce) });
    assert(toHex(res) === rfc.encapsulatedResponse, 'encapsulated response bytes');
    const bad = h(rfc.encapsulatedRequest);
    bad[0]! ^= 1;
    assert((await code(decapsulateRequest([key], bad))) === 'ERR_OHTTP_KEY_ID', 'unknown key id');
  });

  await test('chunked OHTTP example: request chunks and response byte-exactly', async () => {
    const config = parseKeyConfig(h(chunked.keyConfig));
    const eph = await deserializeHpkePrivateKey(chunked.kemId, h(chunked.skE));
    const { sealer, context } = await createChunkedRequest(config, { ephemeralKeyPair: eph });
    const parts = [sealer.prefix];
    for (const c of chunked.requestChunks!) parts.push(await sealer.seal(h(c.plaintext), c.final === true));
    assert(toHex(concatBytes(...parts)) === chunked.encapsulatedRequest, 'chunked request bytes');
    const plain = await readAll(context.decapsulateResponse(streamOf(h(chunked.encapsulatedResponse))));
    assert(toHex(plain) === chunked.responseBhttp, 'chunked response plaintext');
    const key = { config, keyPair: await deserializeHpkePrivateKey(chunked.kemId, h(chunked.skR)) };
    const d = await decapsulateChunkedRequest(key, streamOf(h(chunked.encapsulatedRequest)));
    assert(toHex(await readAll(d.request)) === chunked.requestBhttp, 'gateway opens the chunked request');
    const cut = h(chunked.encapsulatedRequest).subarray(0, h(chunked.encapsulatedRequest).length - 17);
    const d2 = await decapsulateChunkedRequest(key, streamOf(cut));
    assert((await code(readAll(d2.request))) === 'ERR_OHTTP_TRUNCATED', 'truncated chunked request');
  });

  await test('receipts: sign, verify, and refuse a modified receipt', async () => {
    const pair = (await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']));
    const jwk = { kty: 'OKP' as const, crv: 'Ed25519' as const, x: toBase64Url(new Uint8Array(await subtle.exportKey('raw', pair.publicKey))) };
    const body: ReceiptBody = {
      format: RECEIPT_FORMAT,
      tenant: 'browser',
      route: 'chat.completions',
      gateway: { platform: 'sim', simulated: true, measurements: {}, attestationDigest: await digestOf(new Uint8Array(1)) },
      model: { id: 'm', backend: 'demo' },
      policy: { version: 'v', action: 'none', findings: [] },
      request: { digest: await digestOf(new Uint8Array(2)) },
      response: { digest: await digestOf(new Uint8Array(3)), status: 200, streamed: false },
      timestamps: { receivedAt: '2025-06-01T00:00:00.000Z', completedAt: '2025-06-01T00:00:01.000Z' },
    };
    const r = await signReceipt(body, await receiptIdOf(body), null, pair.privateKey);
    await verifyReceipt(r, jwk);
    assert((await code(verifyReceipt({ ...r, tenant: 'x' }, jwk))) === 'ERR_RECEIPT_SIGNATURE', 'modified receipt refused');
  });

  const gateway = q.get('gateway');
  if (gateway) {
    const jwks = JSON.parse(q.get('jwks')!) as { keys: JsonWebKey[] };
    const apiKey = q.get('apiKey')!;
    const measurement = q.get('measurement')!;
    const body = (content: string, stream = false) => JSON.stringify({ model: 'custody-demo', stream, messages: [{ role: 'user', content }] });

    await test('live gateway: verify, encapsulate, decapsulate, verify the receipt (non-streamed)', async () => {
      const receipts: Receipt[] = [];
      const cfetch = createConfidentialFetch({ gateway, jwks, allowSimulated: true, expectedMeasurements: { measurement }, onReceipt: (r) => receipts.push(r) });
      const res = await cfetch(`${gateway}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' }, body: body('hello from chromium') });
      assert(res.status === 200, `status ${res.status}`);
      const j = (await res.json()) as { choices: { message: { content: string } }[] };
      assert(j.choices[0]!.message.content.includes('hello from chromium'), 'echoed answer');
      assert(res.headers.get('custody-receipt') !== null, 'receipt header');
      assert(receipts.length === 1 && receipts[0]!.gateway.measurements.measurement === measurement, 'receipt callback');
      assert(renderVerificationText(cfetch.lastVerification!).includes('VERIFIED'), 'verification document');
    });

    await test('live gateway: a streamed answer through chunked OHTTP, receipt over the whole stream', async () => {
      const cfetch = createConfidentialFetch({ gateway, jwks, allowSimulated: true, freshNonce: true });
      const res = await cfetch(`${gateway}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}` }, body: body('stream to chromium', true) });
      const reader = res.body!.getReader();
      let events = 0;
      let text = '';
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        events++;
        text += new TextDecoder().decode(r.value);
      }
      assert(events > 3, `several chunks arrived (${events})`);
      assert(text.includes('stream') && text.includes('[DONE]'), 'stream content');
      const receipt = await cfetch.receiptOf(res)!;
      assert(receipt.response.streamed, 'streamed receipt');
      assert(cfetch.lastVerification!.steps.some((s) => s.name === 'nonce' && s.ran && s.ok), 'fresh nonce verified');
    });

    await test('live gateway: a wrong pinned measurement is refused before anything is sent', async () => {
      const cfetch = createConfidentialFetch({ gateway, jwks, allowSimulated: true, expectedMeasurements: { measurement: 'ff'.repeat(48) } });
      const c = await code(cfetch(`${gateway}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}` }, body: body('MUST-NOT-LEAVE-THE-BROWSER') }));
      assert(c === 'ERR_EVIDENCE_MEASUREMENT', c);
    });
  }

  // A gateway that signs its receipts with another key than the one it attested: however the
  // page reads a streamed answer, it learns the receipt's typed error, not "Failed to fetch".
  const forging = q.get('forging');
  if (forging) {
    const jwks = JSON.parse(q.get('forgingJwks')!) as { keys: JsonWebKey[] };
    const apiKey = q.get('apiKey')!;
    await test('forging gateway: a streamed answer fails ERR_RECEIPT_SIGNATURE through text(), json(), arrayBuffer(), blob() and the reader', async () => {
      const cfetch = createConfidentialFetch({ gateway: forging, jwks, allowSimulated: true });
      const reads: Record<string, (r: Response) => Promise<unknown>> = {
        text: (r) => r.text(),
        json: (r) => r.json(),
        arrayBuffer: (r) => r.arrayBuffer(),
        blob: (r) => r.blob(),
        reader: async (r) => {
          const reader = r.body!.getReader();
          while (!(await reader.read()).done);
        },
      };
      for (const [how, read] of Object.entries(reads)) {
        const res = await cfetch(`${forging}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${apiKey}` }, body: JSON.stringify({ model: 'custody-demo', stream: true, messages: [{ role: 'user', content: 'forged receipt' }] }) });
        assert(res.status === 200, `status ${res.status}`);
        const receipt = code(cfetch.receiptOf(res)!);
        const c = await code(read(res));
        assert(c === 'ERR_RECEIPT_SIGNATURE', `${how}: ${c}`);
        assert((await receipt) === 'ERR_RECEIPT_SIGNATURE', `${how}: receiptOf`);
      }
    });
  }
}

const w = globalThis as unknown as { __results?: Result[]; __done?: boolean };
run()
  .catch((e: unknown) => results.push({ name: 'runner', ok: false, error: String(e) }))
  .finally(() => {
    w.__results = results;
    w.__done = true;
  });
