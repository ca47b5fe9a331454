// The time the gateway adds to a request, as a metric an operator can watch in production
// (custody_gateway_overhead_seconds): the request's duration less the backend's time on it.
// A backend that takes 120 ms (a short answer) or 8 tokens 15 ms apart (a stream) must not
// show in it; the duration histogram, beside it, does include the backend.
import { afterEach, describe, expect, it } from 'vitest';
import { createConfidentialFetch } from '@custody/sdk';
import { startTestGateway, type TestGateway } from './testing/index.js';

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

/** `sum` and `count` of a histogram series with these labels, from the Prometheus text. */
async function histogram(name: string, labels: string): Promise<{ sum: number; count: number }> {
  const text = await gw!.gateway.metrics.registry.getSingleMetricAsString(name);
  const value = (suffix: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${name}_${suffix}{${labels}}`));
    return line === undefined ? Number.NaN : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  return { sum: value('sum'), count: value('count') };
}

async function ask(stream: boolean): Promise<string> {
  const cfetch = createConfidentialFetch({ gateway: gw!.url, jwks: gw!.jwks!, allowSimulated: true });
  const res = await cfetch(`${gw!.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${gw!.apiKey}` },
    body: JSON.stringify({ model: 'fake-model', stream, messages: [{ role: 'user', content: 'Summarise the quarterly report.' }] }),
  });
  expect(res.status).toBe(200);
  return res.text();
}

describe('custody_gateway_overhead_seconds', () => {
  it('leaves out the time a short answer spends in the backend', async () => {
    gw = await startTestGateway({ backend: 'upstream', upstream: { serviceMs: 120 } });
    for (let i = 0; i < 3; i++) await ask(false);
    const labels = 'route="chat.completions",streamed="false"';
    const overhead = await histogram('custody_gateway_overhead_seconds', labels);
    const duration = await histogram('custody_gateway_request_duration_seconds', labels);
    expect(overhead.count).toBe(3);
    expect(duration.count).toBe(3);
    // Each request took at least the backend's 120 ms; what the gateway added is a small part of that.
    expect(duration.sum).toBeGreaterThanOrEqual(3 * 0.12);
    expect(overhead.sum).toBeGreaterThan(0);
    expect(overhead.sum).toBeLessThan(duration.sum - 3 * 0.1);
  });

  it('leaves out the time a stream spends in the backend, up to its end', async () => {
    gw = await startTestGateway({ backend: 'upstream', upstream: { words: 8, tokenMs: 15 } });
    const text = await ask(true);
    expect(text).toContain('data: [DONE]');
    const labels = 'route="chat.completions",streamed="true"';
    const overhead = await histogram('custody_gateway_overhead_seconds', labels);
    const duration = await histogram('custody_gateway_request_duration_seconds', labels);
    expect(overhead.count).toBe(1);
    expect(duration.sum).toBeGreaterThanOrEqual(8 * 0.015);
    expect(overhead.sum).toBeGreaterThan(0);
    expect(overhead.sum).toBeLessThan(duration.sum - 0.1);
  });

  it('is not observed for a request that never reached the backend', async () => {
    gw = await startTestGateway({ backend: 'upstream' });
    const cfetch = createConfidentialFetch({ gateway: gw.url, jwks: gw.jwks!, allowSimulated: true });
    const res = await cfetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: 'Bearer sk-not-a-tenant-key-000000' },
      body: JSON.stringify({ model: 'fake-model', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(401);
    const text = await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_overhead_seconds');
    expect(text).not.toMatch(/custody_gateway_overhead_seconds_count\{[^}]*\} [1-9]/);
    expect(await gw.gateway.metrics.registry.getSingleMetricAsString('custody_gateway_requests_total')).toContain('status="401"');
  });
});
