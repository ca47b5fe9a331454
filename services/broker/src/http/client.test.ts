// BrokerAdminClient refuses, before any request, what fetch would mangle or throw on: a malformed
// API key (not "the broker could not be reached") and a key name that is a URL dot segment.
import { describe, expect, it } from 'vitest';
import { BrokerAdminClient } from './client.js';

const TOKEN = `cst_${'0'.repeat(16)}_${'A'.repeat(43)}`;

/** A transport that records what it was asked, and answers an empty key list. */
function recording(): { requests: string[]; fetch: (input: string, init: RequestInit) => Promise<Response> } {
  const requests: string[] = [];
  return { requests, fetch: (input) => (requests.push(input), Promise.resolve(Response.json({ keys: [] }))) };
}

describe('BrokerAdminClient', () => {
  it.each([
    ['CR/LF (a header injected)', 'a\r\nX: 1'],
    ['LF', `${TOKEN}\nX-Injected: 1`],
    ['NUL', `${TOKEN}\u0000`],
    ['a space', `${TOKEN} ${TOKEN}`],
    ['a non-ASCII letter', `${TOKEN}é`],
    ['nothing', ''],
  ])('refuses an API key with %s: ERR_AUTH_INVALID, the key not echoed, nothing sent', (_, apiKey) => {
    const t = recording();
    let err: unknown;
    try {
      new BrokerAdminClient({ baseUrl: 'http://broker.test', apiKey, fetch: t.fetch });
    } catch (e) {
      err = e;
    }
    expect(err).toMatchObject({ code: 'ERR_AUTH_INVALID' });
    expect(JSON.stringify(err) + String((err as Error).message)).not.toContain(TOKEN.slice(-20));
    expect((err as Error).message).not.toContain('X: 1');
    expect(t.requests).toEqual([]);
  });

  it('takes a well-formed key', async () => {
    const t = recording();
    await new BrokerAdminClient({ baseUrl: 'http://broker.test', apiKey: TOKEN, fetch: t.fetch }).listKeys();
    expect(t.requests).toEqual(['http://broker.test/v1/keys']);
  });

  it.each(['.', '..'])('refuses the key name %j (ERR_KEY_NAME) before any request', async (name) => {
    const t = recording();
    const c = new BrokerAdminClient({ baseUrl: 'http://broker.test', apiKey: TOKEN, fetch: t.fetch });
    for (const call of [() => c.getKey(name), () => c.rotateKey(name), () => c.revokeKey(name, 'r'), () => c.destroyKey(name), () => c.setReleasePolicy(name, null)]) {
      await expect(call()).rejects.toMatchObject({ code: 'ERR_KEY_NAME' });
    }
    expect(t.requests).toEqual([]);
  });

  it.each(['', '.', '..'])('answers an API key id %j as the broker answers an unknown id (ERR_AUTH_INVALID), before any request', async (id) => {
    const t = recording();
    const c = new BrokerAdminClient({ baseUrl: 'http://broker.test', apiKey: TOKEN, fetch: t.fetch });
    await expect(c.revokeApiKey(id)).rejects.toMatchObject({ code: 'ERR_AUTH_INVALID' });
    expect(t.requests).toEqual([]);
  });
});
