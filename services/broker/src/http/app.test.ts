// The administrative HTTP API in process (app.request): authentication, roles, tenant isolation,
// problem+json mapping, fail closed.
import { randomBytes } from 'node:crypto';
import { Registry } from 'prom-client';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { toBase64 } from '@custody/core';
import { issueApiKey } from '../auth/api-keys.js';
import { embeddedBackend, type Harness } from '../testing/harness.js';
import { createBrokerApp } from './app.js';
import { BrokerAdminClient } from './client.js';
import { statusFor } from './problem.js';

type App = ReturnType<typeof createBrokerApp>;

describe('broker admin HTTP API', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let app: App;
  let metrics: Registry;
  const tokens: Record<string, string> = {};

  beforeEach(async () => {
    h = await backend.open();
    metrics = new Registry();
    app = createBrokerApp({ service: h.service, apiKeys: h.metadata, logger: undefined, metrics });
    const now = Date.now();
    for (const [name, tenant, role] of [
      ['admin', 'acme', 'admin'],
      ['auditor', 'acme', 'auditor'],
      ['workload', 'acme', 'workload'],
      ['globex', 'globex', 'admin'],
    ] as const) {
      tokens[name] = (await issueApiKey(h.metadata, { tenant, role, label: name, createdBy: 'test', now })).token;
    }
  });
  afterEach(async () => h.close());

  async function call(who: string | null, method: string, path: string, body?: unknown, headers: Record<string, string> = {}) {
    const init: RequestInit = { method, headers: { ...(who ? { authorization: `Bearer ${tokens[who] ?? who}` } : {}), ...headers } };
    if (body !== undefined) {
      (init.headers as Record<string, string>)['content-type'] ??= 'application/json';
      init.body = typeof body === 'string' ? body : JSON.stringify(body);
    }
    const res = await app.request(path, init);
    const text = await res.text();
    const json = text ? (JSON.parse(text) as Record<string, unknown>) : {};
    return { status: res.status, json, type: res.headers.get('content-type') ?? '', headers: res.headers };
  }

  function expectProblem(r: Awaited<ReturnType<typeof call>>, status: number, code: string): void {
    expect({ status: r.status, code: r.json.code }).toEqual({ status, code });
    expect(r.type).toBe('application/problem+json');
    expect(r.json).toMatchObject({ type: `urn:custody:error:${code}`, status });
    expect(typeof r.json.title).toBe('string');
  }

  it('requires a valid API key on every /v1 route', async () => {
    expectProblem(await call(null, 'GET', '/v1/keys'), 401, 'ERR_AUTH_REQUIRED');
    const r = await call('cst_garbage', 'GET', '/v1/keys');
    expectProblem(r, 401, 'ERR_AUTH_INVALID');
    expect(r.headers.get('www-authenticate')).toMatch(/^Bearer/);
    expectProblem(await call(null, 'GET', '/v1/keys', undefined, { authorization: 'Basic abc' }), 401, 'ERR_AUTH_INVALID');
    const wrongSecret = tokens.admin!.slice(0, 21) + 'A'.repeat(43);
    expectProblem(await call(wrongSecret, 'GET', '/v1/keys'), 401, 'ERR_AUTH_INVALID');
    expect((await call(null, 'GET', '/healthz')).status).toBe(200);
  });

  it('admin manages the key lifecycle with the documented statuses', async () => {
    const created = await call('admin', 'POST', '/v1/keys', { name: 'dk', type: 'aes-256', releasePolicy: 'true' });
    expect(created.status).toBe(201);
    expect(created.json).toMatchObject({ name: 'dk', tenant: 'acme', state: 'active', currentVersion: 1 });
    expectProblem(await call('admin', 'POST', '/v1/keys', { name: 'dk', type: 'aes-256' }), 409, 'ERR_KEY_EXISTS');
    const imported = await call('admin', 'POST', '/v1/keys', { name: 'sec', type: 'secret', material: toBase64(randomBytes(48)) });
    expect(imported.status).toBe(201);
    expect((imported.json.versions as Array<{ origin: string }>)[0]!.origin).toBe('imported');
    expect((await call('admin', 'POST', '/v1/keys/dk/rotate', {})).json.currentVersion).toBe(2);
    expect((await call('admin', 'POST', '/v1/keys/sec/rotate', { material: toBase64(randomBytes(10)) })).json.currentVersion).toBe(2);
    expect((await call('admin', 'PUT', '/v1/keys/dk/policy', { policy: 'ear.measurement == "aa"' })).json.releasePolicy).toBe('ear.measurement == "aa"');
    expectProblem(await call('admin', 'PUT', '/v1/keys/dk/policy', { policy: 'not cel ((' }), 400, 'ERR_POLICY_INVALID');
    const list = await call('auditor', 'GET', '/v1/keys');
    expect((list.json.keys as Array<{ name: string }>).map((k) => k.name)).toEqual(['dk', 'sec']);
    expect((await call('admin', 'POST', '/v1/keys/dk/revoke', { reason: 'test' })).json.state).toBe('revoked');
    expectProblem(await call('admin', 'POST', '/v1/keys/dk/rotate', {}), 403, 'ERR_KEY_REVOKED');
    expect((await call('admin', 'POST', '/v1/keys/dk/destroy')).json.state).toBe('destroyed');
    expectProblem(await call('admin', 'POST', '/v1/keys/dk/destroy'), 410, 'ERR_KEY_DESTROYED');
    expectProblem(await call('admin', 'GET', '/v1/keys/nope'), 404, 'ERR_KEY_NOT_FOUND');
    expectProblem(await call('admin', 'POST', '/v1/keys', { name: 'x', type: 'aes-256', material: toBase64(randomBytes(8)) }), 400, 'ERR_KEY_MATERIAL');
    // No response ever carries material.
    expect(JSON.stringify(list.json)).not.toMatch(/material"/);
  });

  it('a workload key can never call an administrative route, whatever the route', async () => {
    await call('admin', 'POST', '/v1/keys', { name: 'dk', type: 'aes-256' });
    const routes: Array<[string, string, unknown?]> = [
      ['GET', '/v1/keys'],
      ['POST', '/v1/keys', { name: 'w', type: 'aes-256' }],
      ['GET', '/v1/keys/dk'],
      ['POST', '/v1/keys/dk/rotate', {}],
      ['POST', '/v1/keys/dk/revoke', {}],
      ['POST', '/v1/keys/dk/destroy', {}],
      ['PUT', '/v1/keys/dk/policy', { policy: 'true' }],
      ['GET', '/v1/api-keys'],
      ['POST', '/v1/api-keys', { role: 'admin', label: 'x' }],
      ['POST', '/v1/api-keys/0000000000000000/revoke', {}],
      ['GET', '/v1/audit/interim'],
      ['GET', '/v1/no-such-route'],
    ];
    for (const [method, path, body] of routes) expectProblem(await call('workload', method, path, body), 403, 'ERR_AUTH_ROLE');
    expect((await h.metadata.getKey('acme', 'dk'))!.state).toBe('active');
    expect(await h.metadata.getKey('acme', 'w')).toBeNull();
    const denied = h.audit.events.filter((e) => e.action === 'auth.denied');
    expect(denied).toHaveLength(routes.length);
    expect(denied.every((e) => e.actor.role === 'workload' && e.reason === 'ERR_AUTH_ROLE')).toBe(true);
  });

  it('audits refusals with what the caller chose (a path, a ?tenant=) clipped: each event stays small', async () => {
    const before = h.audit.lines.length;
    const longPath = `/v1/keys/${'z'.repeat(50_000)}`;
    expectProblem(await call('workload', 'GET', longPath), 403, 'ERR_AUTH_ROLE');
    expectProblem(await call('admin', 'POST', `/v1/keys/dk/revoke?tenant=${'t'.repeat(50_000)}`, {}), 403, 'ERR_AUTH_TENANT');
    const added = h.audit.events.slice(before);
    expect(added.map((e) => e.reason)).toEqual(['ERR_AUTH_ROLE', 'ERR_AUTH_TENANT']);
    expect(added[0]!.detail!.attempted).toBe(`GET ${longPath.slice(0, 251)}…`);
    expect(added[1]!.tenant).toBe(`${'t'.repeat(127)}…`);
    for (const line of h.audit.lines.slice(before)) expect(line.length).toBeLessThan(1024);
  });

  it('an auditor reads but cannot change anything', async () => {
    await call('admin', 'POST', '/v1/keys', { name: 'dk', type: 'aes-256' });
    expect((await call('auditor', 'GET', '/v1/keys/dk')).status).toBe(200);
    expect((await call('auditor', 'GET', '/v1/api-keys')).status).toBe(200);
    expect((await call('auditor', 'GET', '/v1/audit/interim')).status).toBe(200);
    for (const [method, path, body] of [
      ['POST', '/v1/keys', { name: 'a', type: 'aes-256' }],
      ['POST', '/v1/keys/dk/rotate', {}],
      ['POST', '/v1/keys/dk/revoke', {}],
      ['POST', '/v1/keys/dk/destroy', {}],
      ['PUT', '/v1/keys/dk/policy', { policy: 'true' }],
      ['POST', '/v1/api-keys', { role: 'admin', label: 'escalate' }],
    ] as const) {
      expectProblem(await call('auditor', method, path, body), 403, 'ERR_AUTH_ROLE');
    }
    const denied = h.audit.events.filter((e) => e.action === 'auth.denied');
    expect(denied.length).toBe(6);
    expect(denied.every((e) => e.actor.role === 'auditor' && e.verdict === 'deny' && e.reason === 'ERR_AUTH_ROLE')).toBe(true);
  });

  it('tenants cannot reach across namespaces', async () => {
    await call('admin', 'POST', '/v1/keys', { name: 'dk', type: 'aes-256' });
    // globex sees nothing of acme's, and a name lookup is indistinguishable from "no such key".
    expect((await call('globex', 'GET', '/v1/keys')).json.keys).toEqual([]);
    expectProblem(await call('globex', 'GET', '/v1/keys/dk'), 404, 'ERR_KEY_NOT_FOUND');
    expectProblem(await call('globex', 'POST', '/v1/keys/dk/revoke', {}), 404, 'ERR_KEY_NOT_FOUND');
    // Naming the other tenant explicitly is refused.
    expectProblem(await call('globex', 'GET', '/v1/keys?tenant=acme'), 403, 'ERR_AUTH_TENANT');
    expectProblem(await call('globex', 'POST', '/v1/keys/dk/destroy?tenant=acme', {}), 403, 'ERR_AUTH_TENANT');
    expectProblem(await call('globex', 'GET', '/v1/api-keys?tenant=acme'), 403, 'ERR_AUTH_TENANT');
    expectProblem(await call('globex', 'GET', '/v1/audit/interim?tenant=acme'), 403, 'ERR_AUTH_TENANT');
    expect((await call('admin', 'GET', '/v1/keys?tenant=acme')).status).toBe(200);
    // The same name in another tenant is another key.
    const theirs = await call('globex', 'POST', '/v1/keys', { name: 'dk', type: 'secret' });
    expect(theirs.status).toBe(201);
    const ours = await call('admin', 'GET', '/v1/keys/dk');
    expect(ours.json.id).not.toBe(theirs.json.id);
    expect(ours.json.type).toBe('aes-256');
    // API key lists and audit reads are per tenant too.
    const keys = (await call('globex', 'GET', '/v1/api-keys')).json.apiKeys as Array<{ tenant: string }>;
    expect(keys.every((k) => k.tenant === 'globex')).toBe(true);
    const events = (await call('globex', 'GET', '/v1/audit/interim')).json.events as Array<{ tenant: string }>;
    expect(events.every((e) => e.tenant === 'globex')).toBe(true);
    expect(h.audit.events.filter((e) => e.reason === 'ERR_AUTH_TENANT').every((e) => e.actor.tenant === 'globex' && e.tenant === 'acme')).toBe(true);
  });

  it('API keys: an admin issues a scoped key once, it works, and revoked it stops working', async () => {
    const r = await call('admin', 'POST', '/v1/api-keys', { role: 'auditor', label: 'dashboard' });
    expect(r.status).toBe(201);
    expect(r.headers.get('cache-control')).toBe('no-store');
    const token = r.json.token as string;
    const id = (r.json.apiKey as { id: string }).id;
    expect(JSON.stringify((await call('admin', 'GET', '/v1/api-keys')).json)).not.toContain(token.slice(21));
    expect((await call(token, 'GET', '/v1/keys')).status).toBe(200);
    expectProblem(await call(token, 'POST', '/v1/keys', { name: 'a', type: 'aes-256' }), 403, 'ERR_AUTH_ROLE');
    expect((await call('admin', 'POST', `/v1/api-keys/${id}/revoke`, {})).status).toBe(200);
    expectProblem(await call(token, 'GET', '/v1/keys'), 401, 'ERR_AUTH_INVALID');
    expectProblem(await call('globex', 'POST', `/v1/api-keys/${id}/revoke`, {}), 401, 'ERR_AUTH_INVALID');
  });

  it('rejects malformed and oversized bodies with problem documents that never echo the input', async () => {
    expectProblem(await call('admin', 'POST', '/v1/keys', '{not json'), 400, 'ERR_INPUT_MALFORMED');
    expectProblem(await call('admin', 'POST', '/v1/keys', { name: 'a', type: 'aes-256', extra: 1 }), 400, 'ERR_INPUT_MALFORMED');
    expectProblem(await call('admin', 'POST', '/v1/keys', { name: 'a', type: 'aes-256' }, { 'content-type': 'text/plain' }), 415, 'ERR_INPUT_UNSUPPORTED');
    const secretish = toBase64(randomBytes(40));
    const r = await call('admin', 'POST', '/v1/keys', { name: 'a', type: 'nope', material: secretish });
    expectProblem(r, 400, 'ERR_INPUT_MALFORMED');
    expect(JSON.stringify(r.json)).not.toContain(secretish);
    expectProblem(await call('admin', 'POST', '/v1/keys', { name: 'big', type: 'secret', material: 'A'.repeat(200_000) }), 413, 'ERR_INPUT_TOO_LARGE');
    expectProblem(await call('admin', 'GET', '/v1/audit/interim?after=abc'), 400, 'ERR_INPUT_MALFORMED');
  });

  it('is not ready while its metadata store answers reads but takes no writes (read-only database), and ready again after', async () => {
    await call('admin', 'POST', '/v1/keys', { name: 'rk', type: 'aes-256' });
    expect((await call(null, 'GET', '/readyz')).status).toBe(200);
    // SQLite's query_only: every write fails with SQLITE_READONLY, as on a read-only file.
    const db = (h.metadata as unknown as { db: { pragma(p: string): unknown } }).db;
    db.pragma('query_only = ON');
    const ready = await call(null, 'GET', '/readyz');
    expectProblem(ready, 503, 'ERR_STORE_UNAVAILABLE');
    expect((await call('admin', 'GET', '/v1/keys')).status).toBe(200);
    expectProblem(await call('admin', 'POST', '/v1/keys/rk/rotate', {}), 503, 'ERR_STORE_UNAVAILABLE');
    db.pragma('query_only = OFF');
    expect((await call(null, 'GET', '/readyz')).status).toBe(200);
  });

  it('fails closed with 503 and Retry-After when the stores are unavailable', async () => {
    await call('admin', 'POST', '/v1/keys', { name: 'dk', type: 'aes-256' });
    await h.keystore.close();
    const ready = await call(null, 'GET', '/readyz');
    expectProblem(ready, 503, 'ERR_STORE_UNAVAILABLE');
    expect(ready.headers.get('retry-after')).toBe('5');
    expectProblem(await call('admin', 'POST', '/v1/keys/dk/rotate', {}), 503, 'ERR_STORE_UNAVAILABLE');
    await h.metadata.close();
    // Even authentication cannot be checked: 503, not 401 and not a pass.
    expectProblem(await call('admin', 'GET', '/v1/keys'), 503, 'ERR_STORE_UNAVAILABLE');
  });

  it('maps codes to statuses in one table, with families and a 500 default', () => {
    expect(statusFor('ERR_AUTH_REQUIRED')).toBe(401);
    expect(statusFor('ERR_AUTH_TENANT')).toBe(403);
    expect(statusFor('ERR_KEY_DESTROYED')).toBe(410);
    expect(statusFor('ERR_SESSION_NONCE_USED')).toBe(403);
    expect(statusFor('ERR_STORE_UNAVAILABLE')).toBe(503);
    expect(statusFor('ERR_EAR_EXPIRED')).toBe(401);
    expect(statusFor('ERR_EVIDENCE_MEASUREMENT')).toBe(403);
    expect(statusFor('ERR_INPUT_TRUNCATED')).toBe(400);
    expect(statusFor('ERR_SOMETHING_NEW')).toBe(500);
  });

  it('the admin client speaks the API and turns problems into CustodyErrors', async () => {
    const client = new BrokerAdminClient({ baseUrl: 'http://broker.test', apiKey: tokens.admin!, fetch: (url, init) => Promise.resolve(app.request(url, init)) });
    await client.createKey({ name: 'dk', type: 'aes-256' });
    expect((await client.rotateKey('dk')).currentVersion).toBe(2);
    expect((await client.listKeys()).map((k) => k.name)).toEqual(['dk']);
    await expect(client.getKey('nope')).rejects.toMatchObject({ code: 'ERR_KEY_NOT_FOUND' });
    const offline = new BrokerAdminClient({ baseUrl: 'http://127.0.0.1:9', apiKey: tokens.admin!, timeoutMs: 2000 });
    await expect(offline.listKeys()).rejects.toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE' });
  });

  it('exports request metrics by route pattern, never by key name', async () => {
    await call('admin', 'POST', '/v1/keys', { name: 'very-secret-project-name', type: 'aes-256' });
    await call('admin', 'GET', '/v1/keys/very-secret-project-name');
    const text = (await app.request('/metrics')).status === 200 ? await (await app.request('/metrics')).text() : '';
    expect(text).toContain('custody_broker_http_requests_total');
    expect(text).toContain('route="/v1/keys/:name"');
    expect(text).not.toContain('very-secret-project-name');
  });
});
