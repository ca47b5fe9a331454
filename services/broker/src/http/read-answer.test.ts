// The broker's HTTP clients read bounded answers: past the bound the call is ERR_INPUT_TOO_LARGE
// having read little more than the bound, and an answer that breaks off is the broker unavailable.
import { describe, expect, it } from 'vitest';
import { BrokerWorkloadClient } from '../attestation/workload-client.js';
import { BrokerAdminClient } from './client.js';

const CHUNK = 64 * 1024;

/** An answer whose body never ends (or breaks off after `breakAfter` chunks); `pulled()` counts the bytes asked for. */
function answer(opts: { breakAfter?: number; status?: number } = {}): { fetch: () => Promise<Response>; pulled: () => number } {
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (opts.breakAfter !== undefined && pulled >= opts.breakAfter * CHUNK) return c.error(new Error('ECONNRESET'));
      pulled += CHUNK;
      c.enqueue(new Uint8Array(CHUNK).fill(0x20));
    },
  });
  return { fetch: () => Promise.resolve(new Response(body, { status: opts.status ?? 200 })), pulled: () => pulled };
}

const clients = [
  ['workload client (1 MiB)', 1024 * 1024, (f: () => Promise<Response>) => new BrokerWorkloadClient({ baseUrl: 'http://broker.invalid', fetch: f }).challenge('acme')],
  ['admin client (16 MiB)', 16 * 1024 * 1024, (f: () => Promise<Response>) => new BrokerAdminClient({ baseUrl: 'http://broker.invalid', apiKey: 'cst_x', fetch: f }).listKeys()],
] as const;

describe.each(clients)('broker %s', (_, max, call) => {
  it('refuses an endless answer once past its bound, without reading on', async () => {
    const a = answer();
    await expect(call(a.fetch)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(a.pulled()).toBeLessThanOrEqual(max + 3 * CHUNK);
  });

  it('an answer that breaks off is ERR_SERVICE_UNAVAILABLE', async () => {
    await expect(call(answer({ breakAfter: 2 }).fetch)).rejects.toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE' });
  });

  it("a refusal keeps the broker's code", async () => {
    const refuse = () => Promise.resolve(new Response(JSON.stringify({ code: 'ERR_AUTH_INVALID', detail: 'no' }), { status: 401, headers: { 'content-type': 'application/problem+json' } }));
    await expect(call(refuse)).rejects.toMatchObject({ code: 'ERR_AUTH_INVALID' });
  });

  it.each(['constructor', '__proto__', 'toString', 'not a code', 'ERR_lower'])("a refusal whose code is %j is the broker's status, typed, and a fact cannot replace the status", async (code) => {
    const refuse = () => Promise.resolve(new Response(JSON.stringify({ code, detail: 'x'.repeat(5000), facts: { status: 200 } }), { status: 503, headers: { 'content-type': 'application/problem+json' } }));
    const err = await call(refuse).then(
      () => undefined,
      (e: unknown) => e as { code: string; message: string; detail: Record<string, unknown> },
    );
    expect(err).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', detail: { status: 503 } });
    expect(err!.message.length).toBeLessThan(600);
  });
});
