/**
 * The request pipeline inside the TEE, after decapsulation: parse the Binary HTTP request,
 * check its Date, authenticate the tenant, route (OpenAI-compatible), input policy (PII and CEL
 * rules; the decision goes to the ledger before anything is forwarded), backend, output policy
 * (mask restoration, streams included), and the receipt, which is finished once the whole
 * response is known (for streams, at its end).
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import { MaskVault } from '@custody/policy';
import { CustodyError, toCustodyError, type Clock } from '@custody/core';
import { encodeEvent, type CustodyEvent } from '@custody/ledger';
import {
  decodeBhttpRequest,
  prepareReceipt,
  readAll,
  receiptLedgerEvent,
  RECEIPT_FORMAT,
  signPreparedReceipt,
  type HttpField,
  type PolicyAction,
  type ReceiptBody,
  type ReceiptSignFn,
} from '@custody/sdk';
import type { AttestationSnapshot } from '../attestation/attestation-manager.js';
import type { ModelBackend, ModelInfo } from '../backends/types.js';
import { PROBLEM_CONTENT_TYPE, problemBody, toProblem } from '../http/problem.js';
import type { LedgerSink } from '../ledger/ledger-sink.js';
import type { GatewayMetrics } from '../observability/metrics.js';
import { applyInputPolicy, restoreJson, restoreSseStream, type FindingSummary, type InferenceRoute, type OutputScan } from './policy.js';
import { RefusalLogThrottle, TenantLimiter, type MonotonicClock } from './tenant-limits.js';
import type { Tenant, TenantDirectory } from './tenants.js';

const ROUTES: Record<string, InferenceRoute> = {
  '/v1/chat/completions': 'chat.completions',
  '/v1/completions': 'completions',
  '/v1/embeddings': 'embeddings',
};

export const MAX_INNER_BODY = 8 * 1024 * 1024;
const enc = new TextEncoder();
/** Stateless between calls (every decode is of a whole body), so one serves every request. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function sha256Digest(data: Uint8Array): string {
  return 'sha256:' + createHash('sha256').update(data).digest('hex');
}

/**
 * The GPUs attested in the snapshot a request is answered under, for its receipt: replicas that
 * share an identity key share the receipt key, so the receipt itself must say whether the replica
 * that answered had the GPUs a client required. Absent without GPUs (receipts unchanged).
 */
function gpusOf(s: AttestationSnapshot): { gpus?: number } {
  const n = s.devices?.length ?? 0;
  return n > 0 ? { gpus: n } : {};
}

/**
 * When the backend worked on an answer, in `performance.now()` milliseconds: from the call to
 * the whole answer (for a stream, its end, which whoever reads the stream marks). The time the
 * gateway adds to a request is its duration less this.
 */
export interface BackendTiming {
  readonly started: number;
  ended?: number;
}

/** What the pipeline answers; the caller seals it and finishes the receipt when the body is done. */
export interface InnerResponse {
  readonly status: number;
  readonly headers: HttpField[];
  readonly body: Uint8Array | ReadableStream<Uint8Array>;
  readonly streamed: boolean;
  /** Set when the request reached the backend. */
  readonly backend?: BackendTiming;
  /** Route label for metrics and logs (a fixed vocabulary). */
  readonly routeLabel: string;
  /** Signs the receipt for the response content's digest; undefined when no tenant was authenticated. */
  finish(responseDigest: string): Promise<string | undefined>;
  /** The answer will not be finished (the client went away mid-stream): no receipt, state released. */
  abandon(): void;
}

export interface InferencePipelineOptions {
  backend: ModelBackend;
  tenants: TenantDirectory;
  ledger: LedgerSink;
  /** Signs receipts with the attested receipt key (when `handle` is given no signer). */
  signReceipt: ReceiptSignFn;
  clock: Clock;
  logger: Logger;
  metrics: GatewayMetrics;
  /** Accepted distance between the request's Date and the gateway clock. Default 60 s. */
  dateWindowMs?: number;
  /**
   * Monotonic milliseconds for the per-tenant limits (token buckets, refusal log lines); default
   * `performance.now()`. Never the wall clock `clock`, which may step. Tests inject one.
   */
  limitsClock?: MonotonicClock;
}

interface Ctx {
  receivedAt: Date;
  /** The receipt signer chosen at decapsulation. */
  sign?: ReceiptSignFn;
  /** Aborted when the client went away: the backend stops working for it. */
  signal?: AbortSignal;
  requestDigest: string;
  routeLabel: string;
  route?: string;
  tenant?: Tenant;
  model?: ModelInfo;
  action: PolicyAction;
  findings: FindingSummary[];
  rules?: string[];
  forwardedDigest?: string;
  /** Gives back the tenant's place (tenant-limits.ts); set once the tenant is admitted. */
  release?: () => void;
  /** What the tenant's output policy found in the answer, by category and action (set when it applies). */
  output?: Map<string, FindingSummary>;
  /** When the backend was called, and (for an answer read whole) when it had answered. */
  backend?: BackendTiming;
  /** The ledger refused the policy decision: the problem answered for it carries no receipt (5xx never does). */
  ledgerRefused?: boolean;
}

function header(fields: readonly HttpField[], name: string): string | undefined {
  for (const [n, v] of fields) if (n === name) return v;
  return undefined;
}

export class InferencePipeline {
  private readonly limiter: TenantLimiter;
  private readonly refusals: RefusalLogThrottle;
  /** Ledger failures, logged like tenant refusals: one line a second at most, with the count. */
  private readonly ledgerFailures: RefusalLogThrottle;

  constructor(private readonly o: InferencePipelineOptions) {
    this.limiter = new TenantLimiter(o.limitsClock);
    this.refusals = new RefusalLogThrottle(o.limitsClock);
    this.ledgerFailures = new RefusalLogThrottle(o.limitsClock);
  }

  private checkDate(fields: readonly HttpField[], now: Date): void {
    const d = header(fields, 'date');
    const t = d === undefined ? NaN : Date.parse(d);
    if (Number.isNaN(t) || Math.abs(t - now.getTime()) > (this.o.dateWindowMs ?? 60_000)) {
      // The gateway's time goes back inside the encrypted answer: a client whose clock is off learns it, and may send once more.
      throw new CustodyError('ERR_GATEWAY_REQUEST_DATE', undefined, { detail: { present: d !== undefined, gatewayTime: now.toISOString() } });
    }
  }

  /** Logs that the ledger did not take an entry (the request is refused): its code, never the entry. */
  private ledgerFailed(entry: 'decision' | 'receipt', e: unknown): void {
    const failed = this.ledgerFailures.note(entry);
    if (failed !== undefined) this.o.logger.error({ event: 'ledger.failed', entry, code: toCustodyError(e).code, failed }, 'the ledger did not take an entry: requests are refused until it does');
  }

  private async decide(ctx: Ctx, decision: 'allow' | 'deny' | 'redact', reason?: string): Promise<void> {
    const event: CustodyEvent = {
      v: 1,
      type: 'gate.decision',
      time: this.o.clock().toISOString(),
      actor: 'custody-gateway',
      gate: 'gateway.input-policy',
      decision,
      subject: ctx.tenant!.id,
      inputDigest: ctx.requestDigest,
      ...(ctx.findings.length > 0 ? { ruleIds: [...new Set(ctx.findings.map((f) => f.category))].slice(0, 64) } : {}),
      ...(reason ? { reason } : {}),
    };
    try {
      await this.o.ledger.append(event);
    } catch (e) {
      ctx.ledgerRefused = true;
      this.ledgerFailed('decision', e);
      throw new CustodyError('ERR_GATEWAY_LEDGER', 'the ledger did not accept the policy decision; nothing was forwarded', { cause: e });
    }
  }

  /**
   * `sign`: the receipt signer chosen when the request was decapsulated (the receipt key bound
   * beside its OHTTP key, under `snapshot`); default the pipeline's `signReceipt`. `signal`:
   * aborted when the client has gone away, passed to the backend.
   */
  async handle(bhttp: Uint8Array, snapshot: AttestationSnapshot, receivedAt: Date, sign?: ReceiptSignFn, signal?: AbortSignal): Promise<InnerResponse> {
    const ctx: Ctx = { receivedAt, requestDigest: sha256Digest(bhttp), routeLabel: 'unknown', action: 'none', findings: [], ...(sign ? { sign } : {}), ...(signal ? { signal } : {}) };
    try {
      return await this.route(bhttp, snapshot, ctx);
    } catch (e) {
      const p = toProblem(e);
      const headers: HttpField[] = [['content-type', PROBLEM_CONTENT_TYPE]];
      if (p.code === 'ERR_GATEWAY_TENANT_LIMIT') headers.push(['retry-after', String(p.facts?.retryAfterSeconds ?? 1)]);
      return this.respond(ctx, snapshot, p.status, headers, problemBody(p), false);
    }
  }

  private async route(bhttp: Uint8Array, snapshot: AttestationSnapshot, ctx: Ctx): Promise<InnerResponse> {
    const req = decodeBhttpRequest(bhttp);
    this.checkDate(req.headers, this.o.clock());
    const tenant = this.o.tenants.authenticate(header(req.headers, 'authorization'));
    // Over its limits the tenant is refused before anything else: no decision, no receipt, no
    // ledger entry (ctx.tenant stays unset), so a flood of refusals costs the ledger nothing.
    try {
      ctx.release = this.limiter.acquire(tenant.id, tenant.limits);
    } catch (e) {
      const limit = toCustodyError(e).detail?.limit;
      this.o.metrics.tenantLimited.inc({ tenant: tenant.id, limit: limit === 'rate' ? 'rate' : 'concurrent' });
      // One line per tenant a second at most, with the refusals since the previous line.
      const refused = this.refusals.note(tenant.id);
      if (refused !== undefined) this.o.logger.info({ event: 'tenant.limited', tenant: tenant.id, limit, refused }, 'requests refused: the tenant is at its limit');
      throw e;
    }
    ctx.tenant = tenant;
    const path = req.path.split('?')[0]!;
    if (req.method === 'GET' && path === '/v1/models') {
      ctx.routeLabel = ctx.route = 'models';
      const data = this.o.backend
        .models()
        .filter((m) => !ctx.tenant!.models || ctx.tenant!.models.has(m.id))
        .map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: m.ownedBy ?? 'custody', ...(m.label ? { label: m.label } : {}), ...(m.digest ? { digest: m.digest } : {}) }));
      return this.respond(ctx, snapshot, 200, [['content-type', 'application/json']], enc.encode(JSON.stringify({ object: 'list', data })), false);
    }
    // The path is the client's: own members only, so `constructor` or `__proto__` is no route.
    const route = Object.hasOwn(ROUTES, path) ? ROUTES[path] : undefined;
    if (!route || req.method !== 'POST') throw new CustodyError('ERR_GATEWAY_ROUTE', undefined, { detail: { method: req.method.slice(0, 10) } });
    ctx.routeLabel = ctx.route = route;
    let json: Record<string, unknown>;
    let text: string;
    try {
      text = strictUtf8.decode(req.content);
      const v = JSON.parse(text) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
      json = v as Record<string, unknown>;
    } catch (e) {
      throw new CustodyError('ERR_INPUT_MALFORMED', 'the request body is not a JSON object', { cause: e });
    }
    if (typeof json.model !== 'string') throw new CustodyError('ERR_INPUT_MALFORMED', 'the request names no model');
    const modelId = json.model;
    const model = this.o.backend.models().find((m) => m.id === modelId);
    if (!model || (ctx.tenant.models && !ctx.tenant.models.has(model.id))) throw new CustodyError('ERR_GATEWAY_MODEL', undefined, {});
    ctx.model = model;
    const stream = route !== 'embeddings' && json.stream === true;
    let ip;
    try {
      ip = applyInputPolicy(route, json, req.content, ctx.tenant, { model: model.id, stream }, text);
    } catch (e) {
      const err = toCustodyError(e);
      if (err.code === 'ERR_POLICY_DENIED') {
        ctx.action = err.detail?.rule !== undefined ? 'deny' : 'block';
        if (typeof err.detail?.categories === 'string') ctx.findings = err.detail.categories.split(',').map((c) => ({ category: c, action: 'block', count: 1 }));
        if (err.detail?.rule !== undefined) ctx.rules = [String(err.detail.rule)];
        await this.decide(ctx, 'deny', 'ERR_POLICY_DENIED');
      }
      throw err;
    }
    ctx.action = ip.action;
    ctx.findings = ip.findings;
    ctx.rules = ip.rules;
    const vault = ip.vault;
    // The masked values live until the answer is restored and sent, or until it fails: every
    // way out of here wipes them, except a stream handed to `respond`, whose end or cancel does.
    let handedOff = false;
    try {
      for (const f of ip.findings) this.o.metrics.piiFindings.inc({ category: f.category.slice(0, 32), action: f.action }, f.count);
      await this.decide(ctx, ip.action === 'mask' || ip.action === 'redact' ? 'redact' : 'allow');
      ctx.forwardedDigest = sha256Digest(ip.body);
      const output = this.outputScan(ctx, route);
      const backend: BackendTiming = { started: performance.now() };
      ctx.backend = backend;
      const res = await this.o.backend.handle({ route, body: ip.body, json, model, stream, ...(ctx.signal ? { signal: ctx.signal } : {}) });
      // A final status Binary HTTP cannot carry (node:http accepts 100-999 from an upstream) is
      // the backend's failure, answered as one, not an answer to seal (or to sign a receipt for).
      if (!Number.isInteger(res.status) || res.status < 200 || res.status > 599) {
        if (res.body instanceof ReadableStream) await res.body.cancel().catch(() => undefined);
        throw new CustodyError('ERR_GATEWAY_BACKEND', 'the backend answered with a status outside 200-599', { detail: { status: Number.isFinite(res.status) ? res.status : String(res.status) } });
      }
      const contentType = res.contentType;
      const eventStream = contentType.includes('text/event-stream');
      // A stream the request did not ask for: its receipt would say streamed while the client
      // reads one whole answer (and refuses the mismatch as the gateway's fault). The backend's.
      if (!stream && eventStream) {
        if (res.body instanceof ReadableStream) await res.body.cancel().catch(() => undefined);
        throw new CustodyError('ERR_GATEWAY_BACKEND', 'the backend streamed its answer to a request that did not ask for a stream', { detail: { contentType: 'text/event-stream' } });
      }
      if (res.body instanceof ReadableStream && eventStream) {
        const body = vault.size > 0 || output ? res.body.pipeThrough(restoreSseStream(route, vault, output)) : res.body;
        handedOff = true;
        return this.respond(ctx, snapshot, res.status, [['content-type', contentType], ['cache-control', 'no-store']], body, true, () => vault.clear());
      }
      let bytes: Uint8Array;
      try {
        bytes = res.body instanceof ReadableStream ? await readAll(res.body, MAX_INNER_BODY) : res.body;
      } catch (e) {
        throw new CustodyError('ERR_GATEWAY_BACKEND', 'the backend response could not be read', { cause: e });
      }
      backend.ended = performance.now();
      // An error body is not the model's answer (no masks to restore), but under an output
      // policy it is scanned too: nothing the backend sends passes unscanned.
      const out = res.status >= 200 && res.status < 300 ? restoreJson(route, bytes, vault, output) : output ? restoreJson(route, bytes, new MaskVault(), output) : bytes;
      return this.respond(ctx, snapshot, res.status, [['content-type', contentType]], out, false);
    } finally {
      if (!handedOff) vault.clear();
    }
  }

  /** The tenant's output policy for this answer, counting what it finds into `ctx.output` (and metrics). */
  private outputScan(ctx: Ctx, route: InferenceRoute): OutputScan | undefined {
    const engine = ctx.tenant?.output;
    if (!engine || route === 'embeddings') return undefined;
    const counts = (ctx.output = new Map<string, FindingSummary>());
    const metric = this.o.metrics.outputPiiFindings;
    return {
      engine,
      onFinding: (f) => {
        const k = `${f.category}\u0000${f.action}`;
        const c = counts.get(k);
        if (c) c.count++;
        else if (counts.size < 64) counts.set(k, { category: f.category, action: f.action, count: 1 });
        metric.inc({ category: f.category.slice(0, 32), action: f.action });
      },
    };
  }

  private respond(ctx: Ctx, snapshot: AttestationSnapshot, status: number, headers: HttpField[], body: Uint8Array | ReadableStream<Uint8Array>, streamed: boolean, onEnd?: () => void): InnerResponse {
    // Whichever of finish and abandon comes (the callers call one), the tenant's place is given back.
    const onDone = (): void => {
      onEnd?.();
      ctx.release?.();
    };
    return {
      status,
      headers,
      body,
      streamed,
      routeLabel: ctx.routeLabel,
      ...(ctx.backend ? { backend: ctx.backend } : {}),
      finish: async (responseDigest) => {
        onDone();
        if (!ctx.tenant) return undefined;
        // The ledger just refused this request's decision: no receipt is appended for the problem
        // answered instead, so the client learns which step failed (not a second refusal's).
        if (ctx.ledgerRefused) {
          this.o.metrics.receipts.inc({ outcome: 'withheld' });
          return undefined;
        }
        return this.receipt(ctx, snapshot, responseDigest, status, streamed);
      },
      abandon: onDone,
    };
  }

  private async receipt(ctx: Ctx, s: AttestationSnapshot, responseDigest: string, status: number, streamed: boolean): Promise<string> {
    const body: ReceiptBody = {
      format: RECEIPT_FORMAT,
      tenant: ctx.tenant!.id,
      route: ctx.route ?? 'unknown',
      gateway: { platform: s.platform, simulated: s.simulated, measurements: s.measurements, ...(s.earId !== undefined ? { earId: s.earId } : {}), attestationDigest: s.attestationDigest, ...gpusOf(s) },
      model: { id: ctx.model?.id ?? 'none', ...(ctx.model?.digest ? { digest: ctx.model.digest } : {}), backend: this.o.backend.kind },
      policy: {
        version: this.o.tenants.policyVersion,
        action: ctx.action,
        findings: ctx.findings,
        ...(ctx.rules && ctx.rules.length > 0 ? { rules: ctx.rules } : {}),
        ...(ctx.output ? { output: { findings: [...ctx.output.values()] } } : {}),
      },
      request: { digest: ctx.requestDigest, ...(ctx.forwardedDigest ? { forwardedDigest: ctx.forwardedDigest } : {}) },
      response: { digest: responseDigest, status, streamed },
      timestamps: { receivedAt: ctx.receivedAt.toISOString(), completedAt: this.o.clock().toISOString() },
    };
    const prepared = prepareReceipt(body);
    const event = receiptLedgerEvent(body, prepared.receiptId);
    let index: number;
    let stored: unknown;
    try {
      const appended: { index: number; entry?: unknown } = await this.o.ledger.append(event);
      index = appended.index;
      stored = appended.entry;
    } catch (e) {
      this.o.metrics.receipts.inc({ outcome: 'withheld' });
      this.ledgerFailed('receipt', e);
      throw new CustodyError('ERR_GATEWAY_LEDGER', undefined, { cause: e });
    }
    const { header } = await signPreparedReceipt(prepared, { index, entryDigest: sha256Digest(stored instanceof Uint8Array ? stored : encodeEvent(event)) }, ctx.sign ?? this.o.signReceipt);
    this.o.metrics.receipts.inc({ outcome: 'issued' });
    this.o.logger.info({ event: 'receipt', receiptId: prepared.receiptId, route: ctx.routeLabel, tenant: ctx.tenant!.id, status, streamed, ledgerIndex: index, action: ctx.action }, 'receipt issued');
    return header;
  }
}
