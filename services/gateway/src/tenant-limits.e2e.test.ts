// Per-tenant limits, end to end through the SDK: a tenant at its limit of requests in progress
// (a streamed answer holds its place until its end or until its client leaves) or of requests a
// minute gets 429 ERR_GATEWAY_TENANT_LIMIT with Retry-After, inside the encrypted response and
// without a receipt; nothing is forwarded or logged to the ledger for it, and every way a
// request ends gives its place back.
import { afterEach, describe, expect, it } from 'vitest';
import { utf8 } from '@custody/core';
import { createConfidentialFetch, type ConfidentialFetch } from '@custody/sdk';
import type { ModelBackend } from './backends/types.js';
import { startTestGateway, type TestGateway } from './testing/index.js';
import type { TenantConfig } from './pipeline/tenants.js';

/** A backend whose streamed answers wait for `open()`; `fail` makes the next call throw. */
function gatedBackend() {
  let opened!: () => void;
  let gate = new Promise<void>((r) => (opened = r));
  const state = { calls: 0, fail: false };
  const backend: ModelBackend = {
    kind: 'test-gated',
    models: () => [{ id: 'gated' }],
    handle: ({ stream }) => {
      state.calls++;
      if (state.fail) return Promise.reject(new Error('backend down (test)'));
      if (!stream) return Promise.resolve({ status: 200, contentType: 'application/json', body: utf8(JSON.stringify({ choices: [{ index: 0, message: { role: 'assistant', content: 'ok' } }] })) });
      const wait = gate;
      let sent = 0;
      return Promise.resolve({
        status: 200,
        contentType: 'text/event-stream',
        body: new ReadableStream<Uint8Array>({
          async pull(c) {
            if (sent === 1) await wait;
            if (sent === 2) return c.close();
            c.enqueue(utf8(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: `t${sent++} ` } }] })}\n\n`));
          },
        }),
      });
    },
  };
  return {
    backend,
    state,
    open() {
      opened();
      gate = new Promise<void>((r) => (opened = r));
    },
  };
}

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

async function start(limits: TenantConfig['limits'], clock?: () => Date, limitsClock?: () => number) {
  const g = gatedBackend();
  gw = await startTestGateway({ backend: g.backend, tenant: { limits }, ...(clock ? { clock } : {}), ...(limitsClock ? { gateway: { limitsClock } } : {}) });
  const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true, ...(clock ? { clock } : {}) });
  await cfetch.verify();
  return { g, gw, cfetch };
}

const chat = (cfetch: ConfidentialFetch, url: string, stream: boolean, signal?: AbortSignal) =>
  cfetch(`${url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer sk-custody-test-tenant-0001', 'content-type': 'application/json' }, body: JSON.stringify({ model: 'gated', stream, messages: [{ role: 'user', content: 'hello' }] }), ...(signal ? { signal } : {}) });

describe('per-tenant limits', () => {
  it('concurrent: streams hold their places until they end; the next request gets 429 with Retry-After, no receipt and no ledger entry', async () => {
    const { g, gw, cfetch } = await start({ concurrent: 2 });
    const a = await chat(cfetch, gw.url, true);
    const b = await chat(cfetch, gw.url, true);
    const readerA = a.body!.getReader();
    await readerA.read();
    const entries = gw.ledger.entries.length;
    const calls = g.state.calls;
    const refused = await chat(cfetch, gw.url, false);
    expect(refused.status).toBe(429);
    expect(refused.headers.get('retry-after')).toBe('1');
    const problem = (await refused.json()) as { code: string; error: { code: string } };
    expect(problem.code).toBe('ERR_GATEWAY_TENANT_LIMIT');
    expect(problem.error.code).toBe('ERR_GATEWAY_TENANT_LIMIT');
    expect(cfetch.receiptOf(refused)).toBeUndefined();
    expect(gw.ledger.entries.length).toBe(entries);
    expect(g.state.calls).toBe(calls);
    expect(gw.logs.some((l) => l.includes('"tenant.limited"'))).toBe(true);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_tenant_limited_total')).toContain('custody_gateway_tenant_limited_total{tenant="acme",limit="concurrent"} 1');
    // The streams end (with receipts): their places are free again.
    g.open();
    for (;;) if ((await readerA.read()).done) break;
    await b.text();
    await expect(cfetch.receiptOf(a)).resolves.toMatchObject({ response: { streamed: true } });
    const ok = await chat(cfetch, gw.url, false);
    expect(ok.status).toBe(200);
    await expect(cfetch.receiptOf(ok)).resolves.toBeDefined();
  });

  it('concurrent: a client that leaves mid-stream, a backend failure and a policy block give their places back', async () => {
    const { g, gw, cfetch } = await start({ concurrent: 1 });
    // Leaves mid-stream.
    const ac = new AbortController();
    const a = await chat(cfetch, gw.url, true, ac.signal);
    const reader = a.body!.getReader();
    await reader.read();
    expect((await chat(cfetch, gw.url, false)).status).toBe(429);
    ac.abort();
    await reader.read().catch(() => undefined);
    await expect.poll(async () => (await chat(cfetch, gw.url, false)).status, { timeout: 5000 }).toBe(200);
    // A backend that throws (500, ERR_INTERNAL), then a request the input policy blocks (403): each frees its place.
    g.state.fail = true;
    expect((await chat(cfetch, gw.url, false)).status).toBe(500);
    g.state.fail = false;
    const blocked = await cfetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: 'Bearer sk-custody-test-tenant-0001' }, body: JSON.stringify({ model: 'gated', messages: [{ role: 'user', content: 'card 4111 1111 1111 1111' }] }) });
    expect(blocked.status).toBe(403);
    expect((await chat(cfetch, gw.url, false)).status).toBe(200);
  });

  it('rate: perMinute with a burst; the refusal says when to retry, and the next minute admits again', async () => {
    // The buckets run on the limits' monotonic clock (injected here), not the wall clock.
    let offset = 0;
    const limitsClock = () => performance.now() + offset;
    const { gw, cfetch } = await start({ perMinute: 2 }, undefined, limitsClock);
    expect((await chat(cfetch, gw.url, false)).status).toBe(200);
    expect((await chat(cfetch, gw.url, false)).status).toBe(200);
    const refused = await chat(cfetch, gw.url, false);
    expect(refused.status).toBe(429);
    const retryAfter = Number(refused.headers.get('retry-after'));
    expect(retryAfter).toBeGreaterThanOrEqual(29);
    expect(retryAfter).toBeLessThanOrEqual(30);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_tenant_limited_total')).toContain('limit="rate"');
    offset += retryAfter * 1000;
    expect((await chat(cfetch, gw.url, false)).status).toBe(200);
  });

  it('a policy-level default applies to every tenant, under what the tenant sets itself; a malformed limit is refused at load', async () => {
    const { TenantDirectory, apiKeyDigest } = await import('./pipeline/tenants.js');
    const tenant = { id: 'a', apiKeySha256: apiKeyDigest('sk-tenant-a-0001') };
    const dir = await TenantDirectory.create({ id: 'p', version: 1, limits: { concurrent: 3 }, tenants: [tenant, { ...tenant, id: 'b', apiKeySha256: apiKeyDigest('sk-tenant-b-0001'), limits: { perMinute: 10 } }] });
    expect(dir.document.limits).toEqual({ concurrent: 3 });
    expect(dir.authenticate('Bearer sk-tenant-a-0001').limits).toEqual({ concurrent: 3 });
    // b sets only a rate: it keeps the policy-wide cap on requests in progress.
    expect(dir.authenticate('Bearer sk-tenant-b-0001').limits).toEqual({ concurrent: 3, perMinute: 10 });
    for (const bad of [{ concurrent: 0 }, { burst: 5 }, { perMinute: 1.5 }, { concurrent: 1, other: 1 }]) {
      await expect(TenantDirectory.create({ id: 'p', version: 1, tenants: [{ ...tenant, limits: bad }] })).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    }
  });

  it('rate: the buckets do not follow a wall clock that steps forward and back (they run on the monotonic limits clock)', async () => {
    let wallOffset = 0;
    let mono = 0;
    const clock = () => new Date(Date.now() + wallOffset);
    const { gw, cfetch } = await start({ perMinute: 60, burst: 1 }, clock, () => mono);
    const status = async () => (await chat(cfetch, gw.url, false)).status;
    expect(await status()).toBe(200);
    // The wall clock steps 50 s ahead (within the Date window): that refills nothing ...
    wallOffset = 50_000;
    expect(await status()).toBe(429);
    mono += 1000;
    expect(await status()).toBe(200);
    // ... and stepping back empties nothing: a second of real time later the tenant is admitted.
    wallOffset = 0;
    mono += 1000;
    expect(await status()).toBe(200);
    expect(await status()).toBe(429);
  });

  it('rate: by default the buckets run on performance.now(), so a wall clock stepping back does not lock the tenant out', async () => {
    let wallOffset = 0;
    const clock = () => new Date(Date.now() + wallOffset);
    // 600 a minute: one token every 100 ms.
    const { gw, cfetch } = await start({ perMinute: 600, burst: 1 }, clock);
    const status = async () => (await chat(cfetch, gw.url, false)).status;
    const pause = () => new Promise((r) => setTimeout(r, 250));
    expect(await status()).toBe(200);
    wallOffset = 50_000;
    await pause();
    expect(await status()).toBe(200);
    // Back by 50 s: on the wall clock the bucket would stay empty for 50 s.
    wallOffset = 0;
    await pause();
    expect(await status()).toBe(200);
  });

  it('a flood of refusals writes one tenant.limited line a second, carrying how many were refused; the metric counts each', async () => {
    let mono = 0;
    const { g, gw, cfetch } = await start({ concurrent: 1 }, undefined, () => mono);
    const held = await chat(cfetch, gw.url, true);
    const reader = held.body!.getReader();
    await reader.read();
    const lines = () => gw.logs.map((l) => JSON.parse(l) as { event?: string; tenant?: string; limit?: string; refused?: number }).filter((l) => l.event === 'tenant.limited');
    for (let i = 0; i < 10; i++) expect((await chat(cfetch, gw.url, false)).status).toBe(429);
    expect(lines()).toEqual([expect.objectContaining({ tenant: 'acme', limit: 'concurrent', refused: 1 })]);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_tenant_limited_total')).toContain('custody_gateway_tenant_limited_total{tenant="acme",limit="concurrent"} 10');
    // A second later the next refusal writes a line with the nine held back and itself.
    mono += 1000;
    expect((await chat(cfetch, gw.url, false)).status).toBe(429);
    expect(lines().map((l) => l.refused)).toEqual([1, 10]);
    g.open();
    for (;;) if ((await reader.read()).done) break;
  });
});
