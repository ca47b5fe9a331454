import type { Context, Hono } from 'hono';
import { z } from 'zod';
import { CustodyError, fromBase64 } from '@custody/core';
import { PLATFORMS } from '@custody/attest';
import { authenticateApiKey } from '../auth/api-keys.js';
import type { Principal } from '../auth/roles.js';
import type { BrokerEnv } from '../http/app.js';
import { parseJsonBody } from '../http/json-body.js';
import { peerAddress, readRequestText, type ArrivingBodyBudget } from '../http/request-body.js';
import type { ApiKeyRepository } from '../metadata/types.js';
import { MAX_RUNTIME_DATA } from './runtime-data.js';
import type { ChallengeLimiter } from './challenge-limits.js';
import { DEVICE_PLATFORMS, MAX_COLLATERAL_ENTRIES, MAX_DEVICES, type AttestationService, type AttestRequest } from './handshake.js';

/** Evidence plus certificates and collateral, base64, with JSON framing. */
export const MAX_ATTEST_BODY = 4 * 1024 * 1024;
/** A challenge or key-release body. */
export const MAX_SMALL_BODY = 16 * 1024;
const B64_MAX = 3 * 1024 * 1024;
/**
 * One device's evidence, base64: the largest NVIDIA GPU evidence the verifier reads (192 KiB:
 * an SPDM report as hex text plus its certificate chain) is 256 KiB as base64. With its
 * certificates, eight devices stay within 3 MiB; the body limit bounds the whole request.
 */
const DEVICE_B64_MAX = 256 * 1024;
const DEVICE_CERT_B64_MAX = 16 * 1024;
const MAX_DEVICE_CERTS = 8;

const ChallengeBody = z.object({ tenant: z.string().max(63) }).strict();
const AttestBody = z
  .object({
    session: z.string().max(64),
    evidence: z.string().min(1).max(B64_MAX),
    runtimeData: z.string().min(1).max(MAX_RUNTIME_DATA),
    platform: z.enum(PLATFORMS as unknown as [string, ...string[]]).optional(),
    certs: z.array(z.string().max(64 * 1024)).max(16).optional(),
    collateral: z
      .record(z.string().regex(/^[A-Za-z][A-Za-z0-9_.-]{0,63}$/), z.string().max(B64_MAX))
      .superRefine((entries, ctx) => {
        const n = Object.keys(entries).length;
        if (n > MAX_COLLATERAL_ENTRIES) ctx.addIssue({ code: 'too_big', origin: 'object', maximum: MAX_COLLATERAL_ENTRIES, inclusive: true, input: n, message: `at most ${MAX_COLLATERAL_ENTRIES} collateral entries` });
      })
      .optional(),
    devices: z
      .array(
        z
          .object({
            platform: z.enum(DEVICE_PLATFORMS),
            evidence: z.string().min(1).max(DEVICE_B64_MAX),
            certs: z.array(z.string().min(1).max(DEVICE_CERT_B64_MAX)).min(1).max(MAX_DEVICE_CERTS).optional(),
          })
          .strict(),
      )
      .min(1)
      .max(MAX_DEVICES)
      .optional(),
  })
  .strict();
const ReleaseBody = z.object({ session: z.string().max(64), tenant: z.string().max(63).optional() }).strict();

/** The routes of the workload plane; the admin middleware lets exactly these through. */
export function isWorkloadRoute(method: string, path: string): boolean {
  return method === 'POST' && (path === '/v1/attest/challenge' || path === '/v1/attest' || /^\/v1\/keys\/[^/]+\/release$/.test(path));
}

/**
 * Mounts the handshake (docs/key-release-protocol.md) on the broker app:
 *
 *   POST /v1/attest/challenge    {tenant}                            -> {session, nonce, expiresAt, ...}
 *   POST /v1/attest              {session, evidence, runtimeData, platform?, certs?, collateral?, devices?}  -> {ear, ...}
 *   POST /v1/keys/:name/release  Authorization: Bearer <EAR>, {session}  -> {wrappedKey, context, ...}
 *   GET  /.well-known/jwks.json  the EAR verification keys
 *
 * The attestation is the workload's credential; a workload API key may accompany the challenge
 * and the attestation (and must then be of the session's tenant). Responses are no-store.
 * With a `limiter`, challenges are rate-limited per client address and per workload API key, and
 * capped by the sessions still open (429 ERR_RATE_LIMITED with Retry-After; ChallengeLimiter).
 * Bodies are read only by their handler, counted against `budget` while they arrive (the small
 * bodies of challenges and releases against `smallBudget`, so that senders who hold attestation
 * bodies open cannot keep key releases from being read; each client address against its share of
 * either, so that a few cannot hold all of one), and their JSON is bounded in values and nesting before it is parsed (json-body.ts): an attestation
 * naming no session costs a linear scan and a parse of its bounded structure, nothing more.
 */
export function mountAttestationRoutes(app: Hono<BrokerEnv>, service: AttestationService, apiKeys: ApiKeyRepository, limiter?: ChallengeLimiter, budget?: ArrivingBodyBudget, smallBudget: ArrivingBodyBudget | undefined = budget): void {
  const noStore = { 'cache-control': 'no-store' };

  // The key file is looked at first (at most once a second), so a dropped key leaves the served
  // set at once; verifiers may cache it 300 s. An empty set (the key file unusable) is not cached.
  // Public keys, readable from any origin: a browser client (the SDK's jwksUrl) fetches them
  // from its page's origin, which is never the broker's.
  app.get('/.well-known/jwks.json', async (c) => {
    const { jwks, usable } = await service.publishedJwks();
    return c.json(jwks, 200, { 'cache-control': usable ? 'public, max-age=300' : 'no-store', 'access-control-allow-origin': '*' });
  });

  app.post('/v1/attest/challenge', async (c) => {
    // Address first: a flood is refused before its body is parsed or its API key looked up.
    limiter?.admitAddress(limiter.addressKeyFor(peerAddress(c), c.req.header('x-forwarded-for')));
    const body = await parseJson(c, ChallengeBody, MAX_SMALL_BODY, smallBudget);
    const caller = await optionalApiKey(c, apiKeys);
    if (caller) limiter?.admitApiKey(caller.subject);
    const slot = limiter?.reserveSession();
    try {
      const challenge = await service.challenge(body.tenant, caller);
      slot?.commit(Date.parse(challenge.sessionExpiresAt));
      return c.json(challenge, 201, noStore);
    } catch (e) {
      slot?.cancel();
      throw e;
    }
  });

  app.post('/v1/attest', async (c) => {
    const body = await parseJson(c, AttestBody, MAX_ATTEST_BODY, budget);
    const caller = await optionalApiKey(c, apiKeys);
    // The base64 is decoded only once the session is found: its cost is linear in the bytes,
    // but it is the largest part of an attestation's that precedes the session lookup.
    const decode = (): Omit<AttestRequest, 'session'> => ({
      evidence: b64(body.evidence, 'evidence'),
      runtimeData: body.runtimeData,
      ...(body.platform !== undefined ? { platform: body.platform } : {}),
      ...(body.certs ? { certs: body.certs.map((x) => b64(x, 'certs')) } : {}),
      ...(body.collateral ? { collateral: Object.fromEntries(Object.entries(body.collateral).map(([k, v]) => [k, b64(v, 'collateral')])) } : {}),
      ...(body.devices
        ? {
            devices: body.devices.map((d, i) => ({
              platform: d.platform,
              evidence: b64(d.evidence, `devices.${i}.evidence`),
              ...(d.certs ? { certs: d.certs.map((x) => b64(x, `devices.${i}.certs`)) } : {}),
            })),
          }
        : {}),
    });
    const result = await service.attest({ session: body.session, decode }, caller);
    return c.json(result, 200, noStore);
  });

  app.post('/v1/keys/:name/release', async (c) => {
    const ear = bearer(c);
    if (ear.startsWith('cst_')) throw new CustodyError('ERR_AUTH_INVALID', 'a release takes the EAR as its bearer token, not an API key');
    const body = await parseJson(c, ReleaseBody, MAX_SMALL_BODY, smallBudget);
    const released = await service.release({ name: c.req.param('name'), session: body.session, ear, ...(body.tenant !== undefined ? { tenant: body.tenant } : {}) });
    return c.json(released, 200, noStore);
  });
}

function bearer(c: Context<BrokerEnv>): string {
  const header = c.req.header('authorization');
  if (!header) throw new CustodyError('ERR_AUTH_REQUIRED', 'a release needs Authorization: Bearer <EAR>');
  const m = /^Bearer\s+(\S+)$/i.exec(header);
  if (!m) throw new CustodyError('ERR_AUTH_INVALID', 'Authorization must be "Bearer <token>"');
  return m[1]!;
}

/** A workload API key, when the caller sent one: it must be valid (and the service checks its tenant and role). */
async function optionalApiKey(c: Context<BrokerEnv>, repo: ApiKeyRepository): Promise<Principal | undefined> {
  if (!c.req.header('authorization')) return undefined;
  const principal = await authenticateApiKey(repo, bearer(c));
  c.set('principal', principal);
  return principal;
}

async function parseJson<T>(c: Context<BrokerEnv>, schema: z.ZodType<T>, maxBytes: number, budget: ArrivingBodyBudget | undefined): Promise<T> {
  if (!/^application\/json\b/i.test(c.req.header('content-type') ?? '')) throw new CustodyError('ERR_INPUT_UNSUPPORTED', 'request body must be application/json');
  const json = parseJsonBody(await readRequestText(c, maxBytes, budget));
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new CustodyError('ERR_INPUT_MALFORMED', `invalid request body at ${issue?.path.join('.') || '(root)'}: ${issue?.code ?? 'invalid'}`);
  }
  return parsed.data;
}

function b64(s: string, what: string): Uint8Array {
  try {
    return fromBase64(s);
  } catch {
    throw new CustodyError('ERR_INPUT_MALFORMED', `${what} must be base64`);
  }
}
