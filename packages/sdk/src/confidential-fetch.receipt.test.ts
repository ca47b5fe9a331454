// createConfidentialFetch against an in-process attested gateway (sim evidence, pinned policy)
// whose inner answers each test scripts: what reaches the caller when a receipt does not
// describe the exchange, and what an error says when a request cannot be built.
import { describe, expect, it } from 'vitest';
import { createSimEvidence } from '@custody/attest';
import { CustodyError, fromBase64Url, subtle, toBase64Url, type Bytes } from '@custody/core';
import { loadPolicy, type CompiledPolicy } from '@custody/policy';
import { buildRuntimeData, runtimeDigest } from './attestation/runtime-data.js';
import { createConfidentialFetch, type ConfidentialFetch } from './confidential-fetch.js';
import { encodeBhttpResponse, type HttpField } from './ohttp/bhttp.js';
import { decapsulateChunkedRequest } from './ohttp/chunked.js';
import { createOhttpServerKey, encodeKeyConfigs } from './ohttp/key-config.js';
import { OhttpMediaType } from './ohttp/media-types.js';
import { decapsulateRequest } from './ohttp/ohttp.js';
import { readAll, streamOf } from './ohttp/stream-buffer.js';
import { digestOf, encodeReceiptHeader, receiptIdOf, signReceipt, RECEIPT_FORMAT, type ReceiptBody } from './receipt/receipt.js';

const NOW = new Date('2026-03-02T10:00:00.000Z');
const MEASUREMENT = '5c'.repeat(48);
const OTHER_DIGEST = 'sha256:' + '00'.repeat(32);
const API_KEY = 'sk-tenant-Q7vXsecretKEY-0001';

interface Answer {
  status: number;
  content?: Uint8Array;
  /** The receipt body as the gateway would sign it, changed by the test (a tampered twin). */
  patch?: (b: ReceiptBody) => ReceiptBody;
  /** Sign with a key other than the attested one. */
  foreignKey?: boolean;
  /** Send no receipt. */
  noReceipt?: boolean;
}

interface Gateway {
  readonly url: string;
  readonly policy: CompiledPolicy;
  readonly fetch: (input: string | URL | Request, init?: RequestInit) => Promise<Response>;
  /** Binary HTTP requests the gateway decrypted. */
  readonly received: Bytes[];
  answer: Answer;
}

async function startGateway(): Promise<Gateway> {
  const url = 'https://gw.test';
  const key = await createOhttpServerKey({ keyId: 5 });
  const receiptPair = await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const foreignPair = await subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify']);
  const receiptX = (await subtle.exportKey('jwk', receiptPair.publicKey)).x!;
  const tee = new Uint8Array(32).fill(7);
  const policy = await loadPolicy(['apiVersion: custody.dev/policy/v1', 'id: sdk-test', 'version: 1', 'allowSimulated: true', 'allowDebug: false', 'platforms:', '  sim:', `    measurement: [${MEASUREMENT}]`, ''].join('\n'));

  async function bundle(nonce?: Uint8Array): Promise<unknown> {
    const runtimeData = buildRuntimeData({ ...(nonce ? { nonce } : {}), keyConfigs: [key.config], receiptKey: fromBase64Url(receiptX), teePublicKey: tee });
    const evidence = await createSimEvidence({ measurements: { measurement: MEASUREMENT }, reportData: await runtimeDigest('sim', runtimeData), issuedAt: NOW });
    return {
      format: 'custody.dev/attestation-bundle/v1',
      platform: 'sim',
      simulated: true,
      evidence: toBase64Url(evidence),
      runtimeData,
      ohttpKeys: toBase64Url(encodeKeyConfigs([key.config])),
      receiptKey: { kty: 'OKP', crv: 'Ed25519', x: receiptX },
      issuedAt: NOW.toISOString(),
    };
  }

  // What the real gateway records: `streamed` is whether the model's answer streamed, so a whole
  // answer is `false` on either exchange; tests that need a streamed one say so in `patch`.
  async function receipt(request: Bytes, a: Answer): Promise<HttpField[]> {
    if (a.noReceipt) return [];
    let body: ReceiptBody = {
      format: RECEIPT_FORMAT,
      tenant: 'acme',
      route: '/v1/chat/completions',
      gateway: { platform: 'sim', simulated: true, measurements: { measurement: MEASUREMENT }, attestationDigest: 'sha256:' + 'ab'.repeat(32) },
      model: { id: 'm', backend: 'demo' },
      policy: { version: '1', action: 'none', findings: [] },
      request: { digest: await digestOf(request) },
      response: { digest: await digestOf(a.content ?? new Uint8Array(0)), status: a.status, streamed: false },
      timestamps: { receivedAt: NOW.toISOString(), completedAt: NOW.toISOString() },
    };
    if (a.patch) body = a.patch(body);
    const signer = a.foreignKey ? foreignPair.privateKey : receiptPair.privateKey;
    return [['custody-receipt', encodeReceiptHeader(await signReceipt(body, await receiptIdOf(body), null, signer))]];
  }

  const gw: Gateway = {
    url,
    policy,
    received: [],
    answer: { status: 200, content: new TextEncoder().encode('{"ok":true}') },
    fetch: async (input, init) => {
      const u = new URL(typeof input === 'string' || input instanceof URL ? String(input) : input.url);
      if (u.pathname === '/.well-known/custody/attestation/challenge') {
        const { nonce } = JSON.parse(init!.body as string) as { nonce: string };
        return Response.json(await bundle(fromBase64Url(nonce)));
      }
      if (u.pathname === '/.well-known/custody/attestation') return Response.json(await bundle());
      if (u.pathname !== '/ohttp') return new Response('not found', { status: 404 });
      const raw = new Uint8Array(init!.body as Uint8Array);
      const a = gw.answer;
      const content = a.content ?? new Uint8Array(0);
      if (new Headers(init!.headers).get('content-type') === OhttpMediaType.Request) {
        const { request, context } = await decapsulateRequest([key], raw);
        gw.received.push(request);
        const bhttp = encodeBhttpResponse({ status: a.status, headers: await receipt(request, a), content });
        return new Response(await context.encapsulateResponse(bhttp), { headers: { 'content-type': OhttpMediaType.Response } });
      }
      const { request: stream, context } = await decapsulateChunkedRequest([key], streamOf(raw));
      const request = await readAll(stream);
      gw.received.push(request);
      const bhttp = encodeBhttpResponse({ status: a.status, headers: [], content, trailers: await receipt(request, a) }, { framing: 'indeterminate' });
      return new Response(await context.encapsulateResponse(bhttp), { headers: { 'content-type': OhttpMediaType.ChunkedResponse } });
    },
  };
  return gw;
}

function client(gw: Gateway): ConfidentialFetch {
  return createConfidentialFetch({ gateway: gw.url, fetch: gw.fetch, policy: gw.policy, allowSimulated: true, clock: () => NOW });
}

const chat = (stream: boolean, headers: Record<string, string> = {}): RequestInit => ({
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${API_KEY}`, ...headers },
  body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: 'hello' }] }),
});

async function codeOf(p: Promise<unknown>): Promise<string> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(CustodyError);
  return (e as CustodyError).code;
}

/** Tampered twins of an honest receipt, each with the code the client must refuse it with. */
const twins: [string, Omit<Answer, 'status' | 'content'>, string][] = [
  ['another request', { patch: (b) => ({ ...b, request: { digest: OTHER_DIGEST } }) }, 'ERR_RECEIPT_MISMATCH'],
  ['another response', { patch: (b) => ({ ...b, response: { ...b.response, digest: OTHER_DIGEST } }) }, 'ERR_RECEIPT_MISMATCH'],
  ['another status', { patch: (b) => ({ ...b, response: { ...b.response, status: 200 } }) }, 'ERR_RECEIPT_MISMATCH'],
  ['another measurement', { patch: (b) => ({ ...b, gateway: { ...b.gateway, measurements: { measurement: 'aa'.repeat(48) } } }) }, 'ERR_RECEIPT_MISMATCH'],
  ['a hardware gateway mode', { patch: (b) => ({ ...b, gateway: { ...b.gateway, simulated: false } }) }, 'ERR_RECEIPT_MISMATCH'],
  ['a key other than the attested one', { foreignKey: true }, 'ERR_RECEIPT_SIGNATURE'],
  ['no receipt', { noReceipt: true }, 'ERR_RECEIPT_MISSING'],
];

describe('null-body statuses: the receipt is checked before the answer is returned, plain or streamed', () => {
  const cases = [204, 205, 304].flatMap((status) => [false, true].map((stream) => [status, stream] as const));

  it.each(cases)('%i (streamed: %s) with an honest receipt is returned, with its receipt', async (status, stream) => {
    const gw = await startGateway();
    gw.answer = { status };
    const cfetch = client(gw);
    const res = await cfetch(`${gw.url}/v1/chat/completions`, chat(stream));
    expect(res.status).toBe(status);
    expect(res.body).toBeNull();
    await expect(cfetch.receiptOf(res)).resolves.toMatchObject({ response: { status } });
  });

  it.each(cases.flatMap(([status, stream]) => twins.map(([name, twin, code]) => [status, stream, name, twin, code] as const)))(
    '%i (streamed: %s) with %s is refused',
    async (status, stream, _name, twin, code) => {
      const gw = await startGateway();
      gw.answer = { status, ...twin };
      expect(await codeOf(client(gw)(`${gw.url}/v1/chat/completions`, chat(stream)))).toBe(code);
      expect(gw.received).toHaveLength(1);
    },
  );
});

describe('the receipt says how the answer came and from which gateway mode', () => {
  const streamed = (b: ReceiptBody): ReceiptBody => ({ ...b, response: { ...b.response, streamed: true } });

  it('an answer sent whole verifies with streamed: false, and is refused when its receipt says it streamed', async () => {
    const gw = await startGateway();
    const cfetch = client(gw);
    const ok = await cfetch(`${gw.url}/v1/chat/completions`, chat(false));
    await expect(cfetch.receiptOf(ok)).resolves.toMatchObject({ response: { streamed: false }, gateway: { simulated: true } });
    gw.answer = { ...gw.answer, patch: streamed };
    expect(await codeOf(cfetch(`${gw.url}/v1/chat/completions`, chat(false)))).toBe('ERR_RECEIPT_MISMATCH');
  });

  it('a chunked exchange carries both a streamed answer and a whole one (an error, embeddings)', async () => {
    const gw = await startGateway();
    const cfetch = client(gw);
    for (const patch of [streamed, undefined]) {
      gw.answer = { status: 200, content: new TextEncoder().encode('data: {}\n\n'), ...(patch ? { patch } : {}) };
      const res = await cfetch(`${gw.url}/v1/chat/completions`, chat(true));
      expect(await res.text()).toBe('data: {}\n\n');
      await expect(cfetch.receiptOf(res)).resolves.toMatchObject({ response: { streamed: patch !== undefined } });
    }
  });

  it.each([false, true])('a receipt naming a hardware gateway when the verified one is simulated is refused (streamed: %s)', async (stream) => {
    const gw = await startGateway();
    gw.answer = { ...gw.answer, patch: (b) => ({ ...b, gateway: { ...b.gateway, simulated: false } }) };
    const cfetch = client(gw);
    const p = cfetch(`${gw.url}/v1/chat/completions`, chat(stream)).then((res) => res.text());
    expect(await codeOf(p)).toBe('ERR_RECEIPT_MISMATCH');
  });
});

describe('a request that cannot be built fails with ERR_INPUT_MALFORMED and no secret', () => {
  const SECRET = 'Q7vXsecretKEY';
  const cases: [string, string, RequestInit][] = [
    ['a NUL in the API key', '/v1/chat/completions', chat(false, { authorization: `Bearer ${API_KEY}\u0000` })],
    ['a line feed in the API key', '/v1/chat/completions', chat(false, { authorization: `Bearer ${API_KEY}\nx-injected: 1` })],
    ['a carriage return in the API key, streamed', '/v1/chat/completions', chat(true, { authorization: `Bearer ${API_KEY}\r-0002` })],
    ['a NUL in the API key, header pairs and a Blob body (the Request path)', '/v1/x', { method: 'POST', headers: [['authorization', `Bearer ${API_KEY}\u0000`]], body: new Blob(['{}']) }],
    ['credentials in the URL', `https://user:${SECRET}@gw.test/v1/chat/completions`, chat(false)],
    ['a password-only URL, Blob body', `https://:${SECRET}@gw.test/v1/x`, { method: 'POST', body: new Blob(['{}']) }],
  ];

  it.each(cases)('%s', async (_name, path, init) => {
    const gw = await startGateway();
    const e = await client(gw)(path.startsWith('/') ? gw.url + path : path, init).then(
      () => undefined,
      (x: unknown) => x,
    );
    expect(e).toBeInstanceOf(CustodyError);
    const err = e as CustodyError;
    expect(err.code).toBe('ERR_INPUT_MALFORMED');
    expect(err.cause).toBeUndefined();
    for (const text of [err.message, String(err), JSON.stringify(err), err.stack ?? '']) expect(text).not.toContain(SECRET);
    expect(gw.received).toHaveLength(0);
  });
});
