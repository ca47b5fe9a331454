/**
 * BrokerClient over HTTP, following docs/key-release-protocol.md: POST /v1/attest/challenge,
 * POST /v1/attest, POST /v1/keys/<name>/release, and the broker's JWKS. The gateway
 * authenticates with a workload API key. Response member names beyond the protocol document
 * (`ear`, `wrappedKey`, `ledgerIndex`) are the ones this client reads.
 */
import type { JSONWebKeySet } from 'jose';
import { CustodyError, fromBase64Url, readBodyLimited, toBase64 } from '@custody/core';
import { nodeHttpFetch, type NodeHttpFetch } from '@custody/crypto-node';
import type { BrokerAttestRequest, BrokerAttestResult, BrokerChallenge, BrokerClient, ReleasedKeyEnvelope } from './broker-client.js';

export interface HttpBrokerClientOptions {
  /** Broker base URL. */
  url: string;
  /** Workload API key (Authorization: Bearer). */
  apiKey: string;
  tenant: string;
  /** JWKS URL; default `<url>/.well-known/jwks.json`. */
  jwksUrl?: string;
  /** Transport (tests inject one). Default: node:http with keep-alive, owned by this client (`close()`); redirects are not followed (ERR_STORE_UNAVAILABLE). */
  fetch?: typeof fetch;
  /** Deadline of each call, connect to last byte (default 10 s). */
  timeoutMs?: number;
}

/** Largest broker answer read; a longer one fails the call (ERR_INPUT_TOO_LARGE) without being held whole. */
const MAX_RESPONSE = 512 * 1024;

export class HttpBrokerClient implements BrokerClient {
  private readonly f: typeof fetch;
  private readonly owned: NodeHttpFetch | undefined;
  private readonly timeoutMs: number;

  constructor(private readonly options: HttpBrokerClientOptions) {
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.owned = options.fetch ? undefined : nodeHttpFetch({ peer: 'the broker', code: 'ERR_STORE_UNAVAILABLE', maxBody: MAX_RESPONSE, timeoutMs: this.timeoutMs, maxSockets: 4 });
    this.f = options.fetch ?? this.owned!;
  }

  /** Closes the connections this client keeps open to the broker (none with an injected fetch). */
  close(): void {
    this.owned?.close();
  }

  private url(path: string): string {
    return this.options.url.replace(/\/+$/, '') + path;
  }

  private async call(path: string, init: RequestInit & { bearer?: string }): Promise<Record<string, unknown>> {
    let res: Response;
    try {
      res = await this.f(path.startsWith('http') ? path : this.url(path), {
        ...init,
        headers: { 'content-type': 'application/json', accept: 'application/json', authorization: `Bearer ${init.bearer ?? this.options.apiKey}` },
        // The default transport keeps its own deadline; an injected fetch gets it as a signal.
        ...(this.owned ? {} : { signal: AbortSignal.timeout(this.timeoutMs) }),
      });
    } catch (e) {
      if (e instanceof CustodyError && e.code === 'ERR_INPUT_TOO_LARGE') throw new CustodyError('ERR_INPUT_TOO_LARGE', 'broker answer is too large', { cause: e, detail: { max: MAX_RESPONSE } });
      throw new CustodyError('ERR_STORE_UNAVAILABLE', 'the broker could not be reached', { cause: e });
    }
    // Redirects are not followed (the call carries the workload's key): an answer that sends the
    // gateway elsewhere is the broker not being where it was configured, never a refusal.
    if (res.status >= 300 && res.status < 400) {
      await res.body?.cancel().catch(() => undefined);
      throw new CustodyError('ERR_STORE_UNAVAILABLE', `the broker answered ${res.status} (a redirect, which is not followed): configure its final URL`, { detail: { status: res.status } });
    }
    let bytes: Uint8Array;
    try {
      bytes = await readBodyLimited(res, MAX_RESPONSE, 'broker answer');
    } catch (e) {
      if (e instanceof CustodyError && e.code === 'ERR_INPUT_TOO_LARGE') throw e;
      throw new CustodyError('ERR_STORE_UNAVAILABLE', "the broker's answer broke off", { cause: e });
    }
    let body: Record<string, unknown>;
    try {
      body = JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
    } catch (e) {
      throw new CustodyError(res.ok ? 'ERR_INPUT_MALFORMED' : 'ERR_STORE_UNAVAILABLE', `broker answered ${res.status} without JSON`, { cause: e, detail: { status: res.status } });
    }
    if (!res.ok) {
      const code = typeof body.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(body.code) ? body.code : res.status >= 500 ? 'ERR_STORE_UNAVAILABLE' : 'ERR_POLICY_DENIED';
      throw new CustodyError(code, `broker refused: ${typeof body.detail === 'string' ? body.detail.slice(0, 300) : res.status}`, { detail: { status: res.status } });
    }
    return body;
  }

  async challenge(): Promise<BrokerChallenge> {
    const b = await this.call('/v1/attest/challenge', { method: 'POST', body: JSON.stringify({ tenant: this.options.tenant }) });
    if (typeof b.session !== 'string' || typeof b.nonce !== 'string' || typeof b.expiresAt !== 'string') throw new CustodyError('ERR_INPUT_MALFORMED', 'broker challenge is malformed');
    return { session: b.session, nonce: fromBase64Url(b.nonce), expiresAt: new Date(b.expiresAt) };
  }

  async attest(req: BrokerAttestRequest): Promise<BrokerAttestResult> {
    const b = await this.call('/v1/attest', {
      method: 'POST',
      body: JSON.stringify({
        session: req.session,
        evidence: toBase64(req.evidence),
        runtimeData: req.runtimeData,
        platform: req.platform,
        // GPUs: appraised with the CPU as one composite (EAR submodules gpu0, gpu1, ...).
        ...(req.devices && req.devices.length > 0 ? { devices: req.devices.map((d) => ({ platform: d.platform, evidence: toBase64(d.evidence) })) } : {}),
      }),
    });
    const ear = typeof b.ear === 'string' ? b.ear : typeof b.token === 'string' ? b.token : undefined;
    if (!ear) throw new CustodyError('ERR_EAR_MALFORMED', 'broker returned no EAR');
    // The broker's audit index is the ledger index when its audit sink is the ledger.
    const index = typeof b.auditIndex === 'number' ? b.auditIndex : b.ledgerIndex;
    return typeof index === 'number' ? { ear, ledgerIndex: index } : { ear };
  }

  async jwks(): Promise<JSONWebKeySet> {
    const b = await this.call(this.options.jwksUrl ?? this.url('/.well-known/jwks.json'), { method: 'GET' });
    if (!Array.isArray(b.keys)) throw new CustodyError('ERR_EAR_KEY', 'broker JWKS is malformed');
    return b as unknown as JSONWebKeySet;
  }

  async releaseKey(name: string, req: { session: string; ear: string }): Promise<ReleasedKeyEnvelope> {
    const b = await this.call(`/v1/keys/${encodeURIComponent(name)}/release`, { method: 'POST', body: JSON.stringify({ session: req.session }), bearer: req.ear });
    if (typeof b.wrappedKey !== 'string') throw new CustodyError('ERR_KEY_UNWRAP', 'broker returned no wrapped key');
    const ctx = typeof b.context === 'object' && b.context !== null ? (b.context as Record<string, string | number | boolean>) : {};
    return { wrappedKey: fromBase64Url(b.wrappedKey), context: ctx };
  }
}
