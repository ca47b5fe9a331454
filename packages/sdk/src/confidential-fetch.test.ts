// The fast path that skips building a Request must see exactly what a Request would hold; when a
// "stale key" answer (unauthenticated) may lead to sending a request again.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { VerifiedGateway } from './attestation/verify.js';
import { createConfidentialFetch, fastRequest, STALE_ANSWER_WINDOW_MS, staleKeyConfirmed, wantsStream } from './confidential-fetch.js';
import type { KeyConfig } from './ohttp/key-config.js';

async function viaRequest(input: string | URL, init?: RequestInit) {
  const r = new Request(input, init);
  const headers: [string, string][] = [];
  r.headers.forEach((v, k) => headers.push([k, v]));
  return { method: r.method, url: r.url, headers, body: new Uint8Array(await r.arrayBuffer()) };
}

function viaFast(input: string | URL, init?: RequestInit) {
  const f = fastRequest(input, init);
  if (!f) return undefined;
  const headers: [string, string][] = [];
  f.req.headers.forEach((v, k) => headers.push([k, v]));
  return { method: f.req.method, url: f.req.url, headers, body: f.body };
}

describe('fastRequest', () => {
  it.each<[string, string | URL, RequestInit | undefined]>([
    ['openai-style JSON POST', 'https://gw.example/v1/chat/completions', { method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer k' }, body: '{"model":"m"}' }],
    ['string body without a content type', 'https://gw.example/v1/x', { method: 'post', body: 'hello' }],
    ['bytes body', new URL('https://gw.example/v1/x?q=1'), { method: 'PUT', body: new Uint8Array([1, 2, 3]) }],
    ['ArrayBuffer body and header pairs', 'https://gw.example:8443/a/../b', { method: 'POST', headers: [['x-a', '1'], ['X-A', '2']], body: new Uint8Array([9]).buffer }],
    ['GET without init', 'https://gw.example/v1/models', undefined],
    ['custom method keeps its case', 'https://gw.example/', { method: 'Patch', body: 'x' }],
  ])('%s', async (_name, input, init) => {
    expect(viaFast(input, init)).toEqual(await viaRequest(input, init));
  });

  it('leaves other shapes to Request', () => {
    expect(fastRequest(new Request('https://gw.example/'), undefined)).toBeUndefined();
    expect(fastRequest('https://gw.example/', { method: 'POST', body: new Blob(['x']) })).toBeUndefined();
    expect(fastRequest('/relative', undefined)).toBeUndefined();
    expect(fastRequest('https://gw.example/', { method: 'GET', body: 'x' })).toBeUndefined();
    expect(fastRequest('https://u:p@gw.example/', undefined)).toBeUndefined();
  });

  it('agrees with Request on random methods, headers and bodies', async () => {
    const token = fc.stringMatching(/^[A-Za-z][A-Za-z0-9-]{0,10}$/);
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('GET', 'get', 'POST', 'post', 'Put', 'DELETE', 'options', 'PATCH', 'Merge', 'X-Custom'),
        fc.array(fc.tuple(token, fc.stringMatching(/^[ -~]{0,20}$/)), { maxLength: 5 }),
        fc.option(fc.oneof(fc.string({ maxLength: 40 }), fc.uint8Array({ maxLength: 40 })), { nil: undefined }),
        async (method, headers, body) => {
          const init: RequestInit = { method, headers, ...(body !== undefined && !/^(get|head)$/i.test(method) ? { body } : {}) };
          expect(viaFast('https://gw.example/v1/p?x=1', init)).toEqual(await viaRequest('https://gw.example/v1/p?x=1', init));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('wantsStream', () => {
  // The reference: parse the body and read its top-level "stream" member.
  const reference = (text: string): boolean => {
    try {
      const v = JSON.parse(text) as { stream?: unknown };
      return typeof v === 'object' && v !== null && v.stream === true;
    } catch {
      return false;
    }
  };
  const req = { method: 'POST', url: 'https://gw.example/v1/chat/completions', headers: new Headers() };
  const bytes = (s: string) => new TextEncoder().encode(s);

  it.each([
    ['{"model":"m","stream":true}', true],
    ['{"model":"m", "stream" :\n\ttrue }', true],
    ['{"model":"m","stream":false}', false],
    ['{"model":"m","messages":[{"role":"user","content":"say \\"stream\\": true"}]}', false],
    ['{"model":"m","metadata":{"stream":true}}', false],
    ['{"model":"m","str\\u0065am":true}', true],
    ['{"stream":true', false],
    ['', false],
  ])('%s -> %s', (text, expected) => {
    expect(wantsStream(req, bytes(text))).toBe(expected);
    expect(reference(text)).toBe(expected);
  });

  it('agrees with parsing the whole body on arbitrary JSON objects, with and without a stream member', () => {
    fc.assert(
      fc.property(
        fc.dictionary(fc.string(), fc.jsonValue()),
        fc.option(fc.oneof(fc.boolean(), fc.constant('true'), fc.constant(1))),
        fc.constantFrom('', ' ', '\n', '\t '),
        (obj, stream, ws) => {
          const o: Record<string, unknown> = { ...obj };
          if (stream !== null) o.stream = stream;
          const text = JSON.stringify(o, null, ws.length > 0 ? ws : undefined);
          expect(wantsStream(req, bytes(text))).toBe(reference(text));
        },
      ),
      { numRuns: 500 },
    );
  });

  it('a body over 1 MiB is read too: the gateway streams whatever the size, and a whole answer must not carry a streamed receipt', () => {
    const long = 'x'.repeat(1024 * 1024 + 1);
    expect(wantsStream(req, bytes(JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: long }] })))).toBe(true);
    expect(wantsStream(req, bytes(JSON.stringify({ model: 'm', stream: false, messages: [{ role: 'user', content: long }] })))).toBe(false);
  });

  it('an SSE Accept header means a stream whatever the body', () => {
    expect(wantsStream({ ...req, headers: new Headers({ accept: 'text/event-stream' }) }, bytes('{}'))).toBe(true);
  });
});

describe('staleKeyConfirmed', () => {
  const key = (keyId: number, fill: number): KeyConfig => ({ keyId, kem: 0x20, publicKey: new Uint8Array(32).fill(fill), suites: [] });
  const k1 = key(1, 1);
  const k2 = key(2, 2);
  const gw = (keyConfigs: KeyConfig[], o: { iat?: number; nonce?: boolean } = {}) =>
    ({ keyConfigs, nonceBound: o.nonce ?? false, ...(o.iat !== undefined ? { earIssuedAt: new Date(o.iat * 1000) } : {}) }) as unknown as VerifiedGateway;
  it.each<[string, VerifiedGateway, VerifiedGateway, boolean]>([
    ['a newer EAR that no longer lists the key: the gateway really dropped it', gw([k1], { iat: 100 }), gw([k2], { iat: 160 }), true],
    ['the key still listed (in its grace period): the answer was forged', gw([k1], { iat: 100 }), gw([k2, k1], { iat: 160 }), false],
    ['the same key id with the same key still listed', gw([k1], { iat: 100 }), gw([key(1, 1)], { iat: 160 }), false],
    ['the key id now names another key: a newer attestation without this key', gw([k1], { iat: 100 }), gw([key(1, 9)], { iat: 160 }), true],
    ['an older EAR (a replayed bundle from before the key existed)', gw([k2], { iat: 160 }), gw([k1], { iat: 100 }), false],
    ['an EAR of the same second: not known to be newer', gw([k1], { iat: 100 }), gw([k2], { iat: 100 }), false],
    ['evidence bound to a fresh nonce of this client, without the key', gw([k1], { nonce: true }), gw([k2], { nonce: true }), true],
    ['evidence bound to a fresh nonce, still listing the key', gw([k1], { nonce: true }), gw([k2, k1], { nonce: true }), false],
    ['no EAR and no nonce: nothing says it is newer', gw([k1]), gw([k2]), false],
    ['an EAR before, none after (and no nonce)', gw([k1], { iat: 100 }), gw([k2]), false],
  ])('%s', (_name, before, after, want) => {
    expect(staleKeyConfirmed(before.keyConfigs[0]!, before, after, 40)).toBe(want);
  });

  it('an answer that took longer than STALE_ANSWER_WINDOW_MS is not borne out, whatever the verification says (a relay may have held it until the key was dropped)', () => {
    const before = gw([k1], { iat: 100 });
    const after = gw([k2], { iat: 900 });
    expect(staleKeyConfirmed(k1, before, after, STALE_ANSWER_WINDOW_MS)).toBe(true);
    expect(staleKeyConfirmed(k1, before, after, STALE_ANSWER_WINDOW_MS + 1)).toBe(false);
    expect(staleKeyConfirmed(k1, before, after, Number.NaN)).toBe(false);
  });
});

describe('createConfidentialFetch addresses', () => {
  const jwks = { keys: [] };
  it.each<[string, Record<string, string>, string]>([
    ['credentials in the gateway URL', { gateway: 'https://operator:s3cr3t-token@gw.example' }, 'credentials'],
    ['a user name alone in the relay URL', { gateway: 'https://gw.example', relay: 'https://someone@relay.example' }, 'credentials'],
    ['a gateway that is not a URL', { gateway: 'gw.example' }, 'not a URL'],
    ['a gateway that is not http(s)', { gateway: 'ftp://gw.example' }, 'http:// or https://'],
    // Routes are appended to the path: the query was dropped without a word.
    ['a query in the gateway URL', { gateway: 'https://gw.example/?tenant=a' }, 'query'],
    ['a fragment in the relay URL', { gateway: 'https://gw.example', relay: 'https://relay.example/#x' }, 'fragment'],
  ])('refuses %s (ERR_USAGE), without repeating it', (_name, where, says) => {
    let err: unknown;
    try {
      createConfidentialFetch({ jwks, ...where } as unknown as Parameters<typeof createConfidentialFetch>[0]);
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_USAGE' });
    expect((err as Error).message).toContain(says);
    expect((err as Error).message).not.toContain('s3cr3t');
  });

  it('takes http and https URLs, as strings or URL objects', () => {
    for (const gateway of ['http://127.0.0.1:8443', 'https://gw.example/base/', new URL('https://gw.example')]) expect(() => createConfidentialFetch({ gateway, jwks })).not.toThrow();
  });
});
