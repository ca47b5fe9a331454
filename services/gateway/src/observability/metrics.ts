import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Gateway metrics. Labels are fixed vocabularies (route names, status codes, error codes, PII
 * categories and actions, tenant ids of the gateway policy): never a prompt, a value found in one, a tenant key or a path a
 * client chose.
 */
export class GatewayMetrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'status' | 'streamed'>;
  readonly duration: Histogram<'route' | 'streamed'>;
  readonly overhead: Histogram<'route' | 'streamed'>;
  readonly refusals: Counter<'code'>;
  readonly piiFindings: Counter<'category' | 'action'>;
  readonly outputPiiFindings: Counter<'category' | 'action'>;
  readonly attestationState: Gauge<'state'>;
  readonly receipts: Counter<'outcome'>;
  readonly streamsFailed: Counter<'route' | 'code'>;
  readonly tenantLimited: Counter<'tenant' | 'limit'>;
  readonly arrivingBodyBytes: Gauge;
  readonly arrivingBodyLimit: Gauge;
  /** Reads the arriving-body budget at each scrape (set by the OHTTP handler that owns it). */
  private arriving: { inUse: number; maxBytes: number } | undefined;

  constructor(registry = new Registry()) {
    this.registry = registry;
    const registers = [registry];
    this.requests = new Counter({ name: 'custody_gateway_requests_total', help: 'Confidential requests answered, by route and inner status', labelNames: ['route', 'status', 'streamed'], registers });
    this.duration = new Histogram({
      name: 'custody_gateway_request_duration_seconds',
      help: 'Time from receiving an encapsulated request to its response head (streams: to the end)',
      labelNames: ['route', 'streamed'],
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
    this.overhead = new Histogram({
      name: 'custody_gateway_overhead_seconds',
      help: "Time the gateway adds to a request: its duration less the backend's (from the call to the whole answer; streams: to their end)",
      labelNames: ['route', 'streamed'],
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.refusals = new Counter({ name: 'custody_gateway_refusals_total', help: 'Requests refused before the pipeline (OHTTP, replay, attestation), by code', labelNames: ['code'], registers });
    this.piiFindings = new Counter({ name: 'custody_gateway_pii_findings_total', help: 'PII findings by category and action (counts only)', labelNames: ['category', 'action'], registers });
    this.outputPiiFindings = new Counter({ name: 'custody_gateway_output_pii_findings_total', help: 'PII the output policy found in model answers, by category and action (counts only)', labelNames: ['category', 'action'], registers });
    this.attestationState = new Gauge({ name: 'custody_gateway_attestation_state', help: '1 for the current attestation state', labelNames: ['state'], registers });
    this.receipts = new Counter({ name: 'custody_gateway_receipts_total', help: 'Receipts issued or withheld', labelNames: ['outcome'], registers });
    this.streamsFailed = new Counter({ name: 'custody_gateway_streams_failed_total', help: 'Streamed answers that failed after their head was sent (the client sees a truncated answer, and no receipt), by route and code', labelNames: ['route', 'code'], registers });
    // Tenant ids come from the gateway policy (at most 1024), never from a request.
    this.tenantLimited = new Counter({ name: 'custody_gateway_tenant_limited_total', help: 'Requests refused because their tenant was at a limit (concurrent or rate)', labelNames: ['tenant', 'limit'], registers });
    this.arrivingBodyBytes = new Gauge({
      name: 'custody_gateway_arriving_body_bytes',
      help: 'Bytes of sealed request bodies held now while they arrive, before anything authenticates them (all clients together)',
      registers,
      collect: () => this.arrivingBodyBytes.set(this.arriving?.inUse ?? 0),
    });
    this.arrivingBodyLimit = new Gauge({
      name: 'custody_gateway_arriving_body_limit_bytes',
      help: 'The bound on custody_gateway_arriving_body_bytes; a body that would cross it is refused with 503 ERR_GATEWAY_OVERLOADED',
      registers,
      collect: () => {
        if (this.arriving) this.arrivingBodyLimit.set(this.arriving.maxBytes);
      },
    });
  }

  /** The budget of bodies still arriving, read at each scrape (the gauges above). */
  watchArrivingBodies(budget: { readonly inUse: number; readonly maxBytes: number }): void {
    this.arriving = budget;
  }

  setState(state: string): void {
    for (const s of ['starting', 'attested', 'lapsed', 'revoked']) this.attestationState.set({ state: s }, s === state ? 1 : 0);
  }
}
