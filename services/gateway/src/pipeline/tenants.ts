/**
 * Tenants and their input policies. A tenant authenticates with an API key sent inside the
 * encrypted request (`Authorization: Bearer <key>`); the gateway stores only SHA-256 digests
 * and compares them in constant time. Each tenant has a PII policy (an action per category:
 * redact, mask, block, allow; custom patterns) and CEL rules that must hold for a request to
 * be forwarded.
 *
 * ```yaml
 * id: acme-gateway
 * version: 3
 * tenants:
 *   - id: acme
 *     apiKeySha256: <64 hex>
 *     models: [custody-demo]             # optional allow-list
 *     pii:
 *       defaultAction: redact
 *       actions: { email: mask, person_name: mask, payment_card: block }
 *       custom: [{ category: record_number, pattern: 'MRN-\d{6}' }]
 *     rules:
 *       - id: no-huge-prompts
 *         expr: request.chars < 100000
 *         reason: prompts are limited to 100k characters
 *     output:                            # optional: PII in the model's answers
 *       pii: { actions: { payment_card: redact, national_id: redact } }   # default allow
 *     limits: { perMinute: 600 }         # optional; see tenant-limits.ts
 * limits: { concurrent: 32 }               # optional policy-wide default (acme: 32 at once, 600 a minute)
 * ```
 *
 * A tenant's `limits` override the policy-wide ones limit by limit: `concurrent` from the tenant
 * when it sets one, else the default; the rate (`perMinute` with its `burst`) likewise, as one
 * (a tenant that sets `perMinute` gets its own `burst`, default its `perMinute`, never the
 * default's burst, which was sized for another rate).
 *
 * A custom PII category may not end in `_<digits>`: a value it redacts would read `[ACCT_2]`,
 * which is the shape of a mask token (category `acct`, value 2), and restoring the answer would
 * turn it into that value.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { CustodyError, canonicalBytes, sha256, toHex } from '@custody/core';
import { PiiEngine, compileCondition, type CelCondition, type PiiPolicy } from '@custody/policy';
import type { TenantLimits } from './tenant-limits.js';

const PII_ACTIONS = ['redact', 'mask', 'block', 'allow'] as const;

/** What an output policy may do with a value found in an answer (an answer partly sent cannot be blocked or masked). */
const OUTPUT_ACTIONS = ['redact', 'allow'] as const;
const customCategory = z
  .string()
  .regex(/^[a-z][a-z0-9_]{0,31}$/)
  .refine((c) => !/_[0-9]+$/.test(c), { message: 'a custom category may not end in _<digits> (it would read as a mask token)' });
const customSchema = z.array(z.strictObject({ category: customCategory, pattern: z.string().max(512), flags: z.string().max(8).optional() })).max(64);

const limitsSchema = z
  .strictObject({
    concurrent: z.number().int().min(1).max(100_000).optional(),
    perMinute: z.number().int().min(1).max(6_000_000).optional(),
    burst: z.number().int().min(1).max(6_000_000).optional(),
  })
  .refine((l) => l.burst === undefined || l.perMinute !== undefined, { message: 'burst needs perMinute' });

const tenantSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
  apiKeySha256: z.string().regex(/^[0-9a-f]{64}$/),
  models: z.array(z.string().max(256)).max(256).optional(),
  pii: z
    .strictObject({
      defaultAction: z.enum(PII_ACTIONS).optional(),
      actions: z.record(z.string().max(64), z.enum(PII_ACTIONS)).optional(),
      custom: customSchema.optional(),
    })
    .optional(),
  rules: z.array(z.strictObject({ id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/), expr: z.string().min(1).max(8192), reason: z.string().max(512).optional() })).max(64).optional(),
  limits: limitsSchema.optional(),
  output: z
    .strictObject({
      pii: z.strictObject({
        defaultAction: z.enum(OUTPUT_ACTIONS).optional(),
        actions: z.record(z.string().max(64), z.enum(OUTPUT_ACTIONS)).optional(),
        custom: customSchema.optional(),
      }),
    })
    .optional(),
});

const policySchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/),
  version: z.number().int().min(0),
  tenants: z.array(tenantSchema).min(1).max(1024),
  /** Default limits for every tenant; a tenant's own override them limit by limit (mergeLimits). */
  limits: limitsSchema.optional(),
});

export type TenantConfig = z.infer<typeof tenantSchema>;
export type GatewayPolicyDocument = z.infer<typeof policySchema>;

export interface Tenant {
  readonly id: string;
  readonly pii: PiiEngine;
  readonly rules: readonly { id: string; condition: CelCondition; reason: string }[];
  readonly models?: ReadonlySet<string>;
  readonly limits?: TenantLimits;
  /** The output policy: what is redacted from the model's answers (default allow). */
  readonly output?: PiiEngine;
}

/**
 * A tenant's limits over the policy-wide default, limit by limit: `concurrent`, and the rate
 * (`perMinute` with its `burst`, which belong together), each from the tenant when it sets it.
 */
export function mergeLimits(policy: TenantLimits | undefined, tenant: TenantLimits | undefined): TenantLimits | undefined {
  const concurrent = tenant?.concurrent ?? policy?.concurrent;
  const rate = tenant?.perMinute !== undefined ? tenant : policy;
  const merged: TenantLimits = {
    ...(concurrent !== undefined ? { concurrent } : {}),
    ...(rate?.perMinute !== undefined ? { perMinute: rate.perMinute } : {}),
    ...(rate?.perMinute !== undefined && rate.burst !== undefined ? { burst: rate.burst } : {}),
  };
  return Object.keys(merged).length > 0 ? merged : undefined;
}

/** SHA-256 hex of an API key, as a policy file stores it. */
export function apiKeyDigest(apiKey: string): string {
  return createHash('sha256').update(apiKey, 'utf8').digest('hex');
}

export function parseGatewayPolicy(input: unknown): GatewayPolicyDocument {
  let value = input;
  if (typeof input === 'string') {
    if (input.length > 1024 * 1024) throw new CustodyError('ERR_POLICY_INVALID', 'gateway policy file is too large');
    try {
      value = parseYaml(input, { maxAliasCount: 16 });
    } catch (e) {
      throw new CustodyError('ERR_POLICY_INVALID', 'gateway policy is not YAML or JSON', { cause: e });
    }
  }
  const r = policySchema.safeParse(value);
  if (!r.success) throw new CustodyError('ERR_POLICY_INVALID', `gateway policy is invalid at ${r.error.issues[0]?.path.map(String).join('.') ?? ''}: ${r.error.issues[0]?.message ?? ''}`);
  const ids = new Set<string>();
  for (const t of r.data.tenants) {
    if (ids.has(t.id)) throw new CustodyError('ERR_POLICY_INVALID', `tenant ${t.id} is listed twice`);
    ids.add(t.id);
  }
  return r.data;
}

interface Entry {
  digest: Buffer;
  tenant: Tenant;
}

export class TenantDirectory {
  private readonly entries: Entry[];

  private constructor(
    readonly document: GatewayPolicyDocument,
    /** `custody:gateway-policy:<id>:<version>:sha256:<digest of the canonical document>`. */
    readonly policyVersion: string,
    entries: Entry[],
  ) {
    this.entries = entries;
  }

  static async create(input: GatewayPolicyDocument | string): Promise<TenantDirectory> {
    const doc = typeof input === 'string' ? parseGatewayPolicy(input) : parseGatewayPolicy(input);
    const digest = toHex(await sha256(canonicalBytes(doc)));
    const entries: Entry[] = doc.tenants.map((t) => {
      const pii: PiiPolicy = {
        ...(t.pii?.defaultAction ? { defaultAction: t.pii.defaultAction } : {}),
        ...(t.pii?.actions ? { actions: t.pii.actions } : {}),
        ...(t.pii?.custom ? { custom: t.pii.custom.map((c) => ({ category: c.category, pattern: c.pattern, ...(c.flags ? { flags: c.flags } : {}) })) } : {}),
      };
      const rules = (t.rules ?? []).map((r) => ({ id: r.id, condition: compileCondition(r.expr, `tenants.${t.id}.rules.${r.id}`), reason: r.reason ?? `rule ${r.id} does not hold` }));
      const limits = mergeLimits(doc.limits, t.limits);
      const out = t.output?.pii;
      const output = out
        ? new PiiEngine({ defaultAction: out.defaultAction ?? 'allow', ...(out.actions ? { actions: out.actions } : {}), ...(out.custom ? { custom: out.custom.map((c) => ({ category: c.category, pattern: c.pattern, ...(c.flags ? { flags: c.flags } : {}) })) } : {}) })
        : undefined;
      const tenant: Tenant = { id: t.id, pii: new PiiEngine(pii), rules, ...(t.models ? { models: new Set(t.models) } : {}), ...(limits ? { limits } : {}), ...(output ? { output } : {}) };
      return { digest: Buffer.from(t.apiKeySha256, 'hex'), tenant };
    });
    return new TenantDirectory(doc, `custody:gateway-policy:${doc.id}:${doc.version}:sha256:${digest}`, entries);
  }

  /** The tenant of an Authorization header. ERR_AUTH_REQUIRED or ERR_AUTH_INVALID. */
  authenticate(authorization: string | undefined): Tenant {
    const m = /^Bearer ([\x21-\x7e]{8,512})$/.exec(authorization ?? '');
    if (!authorization) throw new CustodyError('ERR_AUTH_REQUIRED', 'the encrypted request carries no tenant API key (Authorization: Bearer <key>)');
    if (!m) throw new CustodyError('ERR_AUTH_INVALID');
    const d = createHash('sha256').update(m[1]!, 'utf8').digest();
    let found: Tenant | undefined;
    // Every entry is compared, so the time does not say which tenant matched or how far.
    for (const e of this.entries) if (timingSafeEqual(e.digest, d)) found = e.tenant;
    if (!found) throw new CustodyError('ERR_AUTH_INVALID');
    return found;
  }
}
