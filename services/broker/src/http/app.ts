import { Hono, type Context, type MiddlewareHandler } from 'hono';
import { routePath } from 'hono/route';
import { pino, type Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import { CustodyError, fromBase64, wipe, type Clock } from '@custody/core';
import { authenticateApiKey } from '../auth/api-keys.js';
import type { Principal } from '../auth/roles.js';
import type { KeyService } from '../keys/key-service.js';
import { KEY_TYPES, MAX_POLICY_CHARS, MAX_SECRET_BYTES } from '../keys/types.js';
import type { ApiKeyRepository } from '../metadata/types.js';
import { ROLES } from '../metadata/types.js';
import type { AttestationService } from '../attestation/handshake.js';
import type { TenantPolicies } from '../attestation/tenant-policies.js';
import { MAX_POLICY_BYTES } from '@custody/policy';
import { isWorkloadRoute, MAX_ATTEST_BODY, MAX_SMALL_BODY, mountAttestationRoutes } from '../attestation/routes.js';
import { ChallengeLimiter, clientAddressKey } from '../attestation/challenge-limits.js';
import { DEFAULT_CHALLENGE_RATE_LIMIT } from '../config.js';
import { clipAudited } from '../audit/bound-event.js';
import { parseJsonBody } from './json-body.js';
import { problemResponse } from './problem.js';
import { ArrivingBodyBudget, BODY_BUDGET_BYTES, CLIENT_KEY, CLIENT_SHARE_DIVISOR, closeAfterEarlyAnswer, peerAddress, readRequestText, SMALL_BODY_BUDGET_BYTES, type ArrivingBodyBound, type ArrivingBodyLimits } from './request-body.js';

/** `clientKey`: the request's client address (clientAddressKey), absent in process. */
export type BrokerEnv = { Variables: { principal: Principal; [CLIENT_KEY]: string } };

export interface BrokerAppOptions extends ArrivingBodyLimits {
  service: KeyService;
  /** Where API keys are looked up (the metadata store). */
  apiKeys: ApiKeyRepository;
  logger?: Logger;
  /** When given, request counters and latencies are registered here and served on /metrics. */
  metrics?: Registry;
  /** The key release handshake; when given, its workload routes and the JWKS are mounted. */
  attestation?: AttestationService;
  /** Appraisal policies with API-set overrides; when given, GET, PUT and DELETE /v1/policy are mounted. */
  policies?: TenantPolicies;
  /**
   * Admission control of `POST /v1/attest/challenge` (with `attestation`). Default: a
   * ChallengeLimiter with DEFAULT_CHALLENGE_RATE_LIMIT on `clock`; false: no limits.
   */
  challengeLimiter?: ChallengeLimiter | false;
  /** For the default challenge limiter. */
  clock?: Clock;
  /**
   * Where a request's client address comes from, for the per-client shares of the arriving-body
   * budgets (see ChallengeRateLimitConfig.trustProxy). Default: the challenge limiter's setting,
   * else false (the TCP peer).
   */
  trustProxy?: boolean | number;
}

/** Largest request body: a 64 KiB secret in base64 plus JSON framing. */
const MAX_BODY = 128 * 1024;
/** Characters of a request path kept in the request log and in an audited refusal (`attempted`). */
const MAX_RECORDED_PATH = 256;

const CreateKeyBody = z
  .object({
    name: z.string().max(128),
    type: z.enum(KEY_TYPES as unknown as [string, ...string[]]),
    exportable: z.boolean().optional(),
    releasePolicy: z.string().max(MAX_POLICY_CHARS).nullable().optional(),
    length: z.number().int().min(1).max(MAX_SECRET_BYTES).optional(),
    /** Base64 material: presence makes this an import. */
    material: z.string().max(Math.ceil((MAX_SECRET_BYTES * 4) / 3) + 8).optional(),
  })
  .strict();
const RotateBody = z.object({ material: z.string().max(Math.ceil((MAX_SECRET_BYTES * 4) / 3) + 8).optional(), length: z.number().int().min(1).max(MAX_SECRET_BYTES).optional() }).strict();
const RevokeBody = z.object({ reason: z.string().max(200).optional() }).strict();
const PolicyBody = z.object({ policy: z.string().max(MAX_POLICY_CHARS).nullable() }).strict();
const ApiKeyBody = z.object({ role: z.enum(ROLES as unknown as [string, ...string[]]), label: z.string().max(200) }).strict();

/**
 * The broker's administrative HTTP API (hono), tested in process with `app.request()`.
 * Every /v1 route needs `Authorization: Bearer <API key>`; the tenant is the API key's, and a
 * `?tenant=` naming another is refused (ERR_AUTH_TENANT). Workload keys are refused on every
 * route here before any handler runs; the KeyService checks roles again. Errors leave through
 * one handler as application/problem+json (problem.ts).
 *
 * The workload plane (challenge, attest, release: attestation/routes.ts) is mounted when an
 * AttestationService is given; those three routes skip the admin middleware and authenticate
 * by attestation (the EAR) instead.
 */
export function createBrokerApp(options: BrokerAppOptions): Hono<BrokerEnv> {
  const { service } = options;
  const log = options.logger ?? pino({ level: 'silent' });
  const app = new Hono<BrokerEnv>();
  const observe = options.metrics ? httpMetrics(options.metrics) : undefined;
  const limiter = options.attestation ? options.challengeLimiter ?? new ChallengeLimiter(DEFAULT_CHALLENGE_RATE_LIMIT, { ...(options.clock ? { clock: options.clock } : {}), ...(options.metrics ? { metrics: options.metrics } : {}) }) : false;
  const trustProxy = options.trustProxy ?? (limiter ? limiter.config.trustProxy : false);
  const { budget, smallBudget } = arrivingBodyBudgets(options, options.metrics);

  app.onError((e) => problemResponse(e));
  app.notFound(() => problemResponse(new CustodyError('ERR_INPUT_UNSUPPORTED', 'no such route'), 404));

  app.use('*', async (c, next) => {
    // One notion of "client" with the challenge limiter: an IPv4 address or an IPv6 /64, the
    // forwarded one behind trusted proxies.
    const client = clientAddressKey(peerAddress(c), c.req.header('x-forwarded-for'), trustProxy);
    if (client !== 'unknown') c.set(CLIENT_KEY, client);
    await next();
  });
  app.use('*', closeAfterEarlyAnswer());
  app.use('*', async (c, next) => {
    const started = performance.now();
    await next();
    const ms = performance.now() - started;
    const principal = c.get('principal') as Principal | undefined;
    const code = c.res.status >= 400 ? c.res.headers.get('x-custody-code') ?? undefined : undefined;
    log.info({ method: c.req.method, path: clipAudited(c.req.path, MAX_RECORDED_PATH), status: c.res.status, ms: Math.round(ms * 10) / 10, tenant: principal?.tenant, subject: principal?.subject, code }, 'request');
    observe?.(c.req.method, routePath(c as Context, -1), c.res.status, ms);
  });
  const adminOnly = (mw: MiddlewareHandler<BrokerEnv>): MiddlewareHandler<BrokerEnv> => (c, next) => (isWorkloadRoute(c.req.method, c.req.path) ? next() : mw(c, next));
  // Bodies are read by the handlers, after authentication: at most MAX_BODY (an appraisal policy
  // up to MAX_POLICY_BYTES), counted against `budget` while they arrive.
  const parseBody = <T>(c: Context<BrokerEnv>, schema: z.ZodType<T>) => parseJsonRequest(c, schema, budget);
  app.use('/v1/*', adminOnly(apiKeyAuth(options.apiKeys)));
  app.use('/v1/*', adminOnly(adminPlaneOnly(service)));
  if (options.attestation) {
    mountAttestationRoutes(app, options.attestation, options.apiKeys, limiter === false ? undefined : limiter, budget, smallBudget);
  }

  app.get('/healthz', (c) => c.json({ ok: true }));
  app.get('/readyz', async (c) => {
    await service.ping();
    return c.json({ ok: true });
  });
  if (options.metrics) {
    const registry = options.metrics;
    app.get('/metrics', async (c) => c.text(await registry.metrics(), 200, { 'content-type': registry.contentType }));
  }

  app.get('/v1/keys', async (c) => c.json({ keys: await service.list(who(c), tenantOf(c)) }));

  app.post('/v1/keys', async (c) => {
    const body = await parseBody(c, CreateKeyBody);
    const common = {
      tenant: tenantOf(c),
      name: body.name,
      type: body.type as (typeof KEY_TYPES)[number],
      ...(body.exportable !== undefined ? { exportable: body.exportable } : {}),
      ...(body.releasePolicy !== undefined ? { releasePolicy: body.releasePolicy } : {}),
    };
    if (body.material === undefined) {
      return c.json(await service.create(who(c), { ...common, ...(body.length !== undefined ? { length: body.length } : {}) }), 201);
    }
    if (body.length !== undefined) throw new CustodyError('ERR_INPUT_MALFORMED', 'length applies to generated secrets only');
    const material = decodeMaterial(body.material);
    try {
      return c.json(await service.import(who(c), { ...common, material }), 201);
    } finally {
      wipe(material);
    }
  });

  app.get('/v1/keys/:name', async (c) => c.json(await service.get(who(c), tenantOf(c), c.req.param('name'))));

  app.post('/v1/keys/:name/rotate', async (c) => {
    const body = await parseBody(c, RotateBody);
    const material = body.material === undefined ? undefined : decodeMaterial(body.material);
    try {
      return c.json(
        await service.rotate(who(c), {
          tenant: tenantOf(c),
          name: c.req.param('name'),
          ...(material ? { material } : {}),
          ...(body.length !== undefined ? { length: body.length } : {}),
        }),
      );
    } finally {
      if (material) wipe(material);
    }
  });

  app.post('/v1/keys/:name/revoke', async (c) => {
    const body = await parseBody(c, RevokeBody);
    return c.json(await service.revoke(who(c), { tenant: tenantOf(c), name: c.req.param('name'), ...(body.reason ? { reason: body.reason } : {}) }));
  });

  app.post('/v1/keys/:name/destroy', async (c) => c.json(await service.destroy(who(c), { tenant: tenantOf(c), name: c.req.param('name') })));

  app.put('/v1/keys/:name/policy', async (c) => {
    const body = await parseBody(c, PolicyBody);
    return c.json(await service.setReleasePolicy(who(c), { tenant: tenantOf(c), name: c.req.param('name'), policy: body.policy }));
  });

  if (options.policies) {
    const policies = options.policies;
    /** The tenant's appraisal policy in force (stored, or the broker's file policy); admins and auditors. */
    app.get('/v1/policy', async (c) => c.json(await policies.get(who(c), tenantOf(c))));
    /** Replaces the tenant's appraisal policy: the body is the policy text itself (YAML or JSON); admins only. */
    app.put('/v1/policy', async (c) => {
      const type = c.req.header('content-type') ?? '';
      if (!/^(application\/(json|yaml|x-yaml)|text\/(plain|yaml|x-yaml))\s*(;|$)/i.test(type)) {
        throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'the policy body must be application/yaml, application/json or text/plain');
      }
      // An appraisal policy may be as large as packages/policy accepts (MAX_POLICY_BYTES).
      return c.json(await policies.set(who(c), tenantOf(c), await readRequestText(c, MAX_POLICY_BYTES, budget)));
    });
    /**
     * Deletes the tenant's stored appraisal policy: the broker's file policy is in force from the
     * next attestation on; admins only. 404 ERR_POLICY_NOT_STORED when nothing is stored.
     */
    app.delete('/v1/policy', async (c) => c.json(await policies.delete(who(c), tenantOf(c))));
  }

  app.get('/v1/api-keys', async (c) => c.json({ apiKeys: await service.listApiKeys(who(c), tenantOf(c)) }));

  app.post('/v1/api-keys', async (c) => {
    const body = await parseBody(c, ApiKeyBody);
    const created = await service.createApiKey(who(c), { tenant: tenantOf(c), role: body.role as (typeof ROLES)[number], label: body.label });
    return c.json(created, 201, { 'cache-control': 'no-store' });
  });

  app.post('/v1/api-keys/:id/revoke', async (c) => {
    await service.revokeApiKey(who(c), { tenant: tenantOf(c), id: c.req.param('id') });
    return c.json({ ok: true });
  });

  app.get('/v1/audit/interim', async (c) => {
    const after = intQuery(c.req.query('after'), -1);
    const limit = intQuery(c.req.query('limit'), 100);
    const events = await service.readInterimAudit(who(c), tenantOf(c), after, limit);
    return c.json({ events: events.map((e) => ({ ...e, event: JSON.parse(e.event) as unknown })) });
  });

  return app;
}

/** Resolves `Authorization: Bearer <API key>` to the principal, or answers 401. */
export function apiKeyAuth(repo: ApiKeyRepository): MiddlewareHandler<BrokerEnv> {
  return async (c, next) => {
    const header = c.req.header('authorization');
    if (!header) throw new CustodyError('ERR_AUTH_REQUIRED');
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    if (!m) throw new CustodyError('ERR_AUTH_INVALID', 'Authorization must be "Bearer <API key>"');
    c.set('principal', await authenticateApiKey(repo, m[1]!));
    await next();
  };
}

/** Administrative routes never serve workload keys, whatever the handler would decide. */
function adminPlaneOnly(service: KeyService): MiddlewareHandler<BrokerEnv> {
  return async (c, next) => {
    const p = c.get('principal');
    if (p.role === 'workload') {
      // The path is the caller's: kept short, as everything audited is.
      await service.recordDenial(p, p.tenant, clipAudited(`${c.req.method} ${c.req.path}`, MAX_RECORDED_PATH), 'ERR_AUTH_ROLE');
      throw new CustodyError('ERR_AUTH_ROLE', 'workload API keys cannot call administrative routes', { detail: { role: p.role } });
    }
    await next();
  };
}

function who(c: Context<BrokerEnv>): Principal {
  return c.get('principal');
}

/** The caller's tenant; an explicit `?tenant=` must name it (checked by the service). */
function tenantOf(c: Context<BrokerEnv>): string {
  return c.req.query('tenant') ?? c.get('principal').tenant;
}

async function parseJsonRequest<T>(c: Context<BrokerEnv>, schema: z.ZodType<T>, budget: ArrivingBodyBudget): Promise<T> {
  const type = c.req.header('content-type') ?? '';
  const text = await readRequestText(c, MAX_BODY, budget);
  if (text === '' && schema.safeParse({}).success) return schema.parse({});
  if (!/^application\/json\b/i.test(type)) throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'request body must be application/json');
  const json = parseJsonBody(text);
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    // Report where, never the offending value (it could be key material).
    const issue = parsed.error.issues[0];
    throw new CustodyError('ERR_INPUT_MALFORMED', `invalid request body at ${issue?.path.join('.') || '(root)'}: ${issue?.code ?? 'invalid'}`);
  }
  return parsed.data;
}

function decodeMaterial(b64: string): Uint8Array<ArrayBuffer> {
  try {
    return fromBase64(b64);
  } catch {
    throw new CustodyError('ERR_KEY_MATERIAL', 'material must be base64');
  }
}

function intQuery(v: string | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!/^-?[0-9]{1,15}$/.test(v)) throw new CustodyError('ERR_INPUT_MALFORMED', 'query parameter must be an integer');
  return Number(v);
}

/**
 * The two arriving-body budgets: attestations and admin bodies; challenges and key releases
 * (at most 16 KiB each) apart, so that senders holding attestation bodies open do not stop key
 * releases. Each client address may hold a share of each (default 1/CLIENT_SHARE_DIVISOR, never
 * less than one body of the largest size the budget serves).
 */
function arrivingBodyBudgets(limits: ArrivingBodyLimits, metrics: Registry | undefined): { budget: ArrivingBodyBudget; smallBudget: ArrivingBodyBudget } {
  const refused = metrics
    ? new Counter({ name: 'custody_broker_arriving_bodies_refused_total', help: 'Request bodies refused (503) because the bodies still arriving would cross a budget, by budget (large, small) and bound (arriving-bodies: all clients; arriving-bodies-per-client: one address)', labelNames: ['budget', 'bound'], registers: [metrics] })
    : undefined;
  const share = (total: number, largestBody: number) => Math.min(total, Math.max(Math.floor(total / CLIENT_SHARE_DIVISOR), largestBody));
  const large = limits.maxArrivingBodyBytes ?? BODY_BUDGET_BYTES;
  const small = limits.maxArrivingSmallBodyBytes ?? SMALL_BODY_BUDGET_BYTES;
  const onRefused = (name: string) => (bound: ArrivingBodyBound) => refused?.inc({ budget: name, bound });
  const budget = new ArrivingBodyBudget(large, limits.maxArrivingBodyBytesPerClient ?? share(large, MAX_ATTEST_BODY), onRefused('large'));
  const smallBudget = new ArrivingBodyBudget(small, limits.maxArrivingSmallBodyBytesPerClient ?? share(small, MAX_SMALL_BODY), onRefused('small'));
  if (metrics) {
    new Gauge({
      name: 'custody_broker_arriving_body_bytes',
      help: 'Bytes of request bodies held while they arrive, by budget (large: attestations and admin bodies; small: challenges and key releases)',
      labelNames: ['budget'],
      registers: [metrics],
      collect() {
        this.set({ budget: 'large' }, budget.inUse);
        this.set({ budget: 'small' }, smallBudget.inUse);
      },
    });
  }
  return { budget, smallBudget };
}

function httpMetrics(registry: Registry): (method: string, route: string, status: number, ms: number) => void {
  const requests = new Counter({ name: 'custody_broker_http_requests_total', help: 'Broker HTTP requests by route pattern and status', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const latency = new Histogram({
    name: 'custody_broker_http_request_duration_seconds',
    help: 'Broker HTTP request latency',
    labelNames: ['method', 'route'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [registry],
  });
  // Route patterns (/v1/keys/:name), never concrete paths: key names stay out of metrics.
  return (method, route, status, ms) => {
    requests.inc({ method, route, status: String(status) });
    latency.observe({ method, route }, ms / 1000);
  };
}
