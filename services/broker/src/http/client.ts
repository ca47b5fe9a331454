import { CustodyError, toBase64 } from '@custody/core';
import type { ApiKeyView, KeyView } from '../keys/key-service.js';
import { assertKeyName, type KeyType } from '../keys/types.js';

export { KEY_TYPES } from '../keys/types.js';
export type { KeyType } from '../keys/types.js';
export type { KeyView, KeyVersionView, ApiKeyView } from '../keys/key-service.js';
export type { TenantPolicyDeletion, TenantPolicyView } from '../attestation/tenant-policies.js';
import type { TenantPolicyDeletion, TenantPolicyView } from '../attestation/tenant-policies.js';
import type { Role, StoredAuditEvent } from '../metadata/types.js';
import type { Problem } from './problem.js';
import { readBroker } from './read-answer.js';

/** Largest admin answer read (key and audit listings included). */
const MAX_RESPONSE = 16 * 1024 * 1024;

/** A bearer token (RFC 6750 b64token): nothing that could end the Authorization header or start another. */
const BEARER_TOKEN_RE = /^[A-Za-z0-9\-._~+/]+=*$/;

export interface BrokerAdminClientOptions {
  /** e.g. http://127.0.0.1:8443 */
  baseUrl: string;
  /** Bearer API key (`cst_...`); one that is no bearer token (a space, CR/LF, NUL) is ERR_AUTH_INVALID, before any request. */
  apiKey: string;
  /** Injected for tests (`app.request`) or custom transports. */
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  /** Request timeout; the broker being unreachable is ERR_SERVICE_UNAVAILABLE. */
  timeoutMs?: number;
}

export interface CreateKeyRequest {
  name: string;
  type: KeyType;
  exportable?: boolean;
  releasePolicy?: string | null;
  length?: number;
}

/**
 * Client of the broker's administrative API (used by `custody keys ...`). Problem responses
 * become CustodyErrors with the broker's code; an unreachable broker is ERR_SERVICE_UNAVAILABLE.
 * A malformed API key (ERR_AUTH_INVALID) or key name in a path (ERR_KEY_NAME) is refused
 * before any request: fetch would throw on the one, and normalise `.` and `..` away in the other.
 */
export class BrokerAdminClient {
  private readonly base: string;
  private readonly doFetch: (input: string, init: RequestInit) => Promise<Response>;

  constructor(private readonly options: BrokerAdminClientOptions) {
    // The key itself is never put in the message.
    if (!BEARER_TOKEN_RE.test(options.apiKey)) throw new CustodyError('ERR_AUTH_INVALID', 'the API key is malformed: it must be one token of letters, digits and -._~+/ (no spaces, line breaks or control characters)');
    this.base = options.baseUrl.replace(/\/+$/, '');
    this.doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  async listKeys(): Promise<KeyView[]> {
    return (await this.call<{ keys: KeyView[] }>('GET', '/v1/keys')).keys;
  }

  async getKey(name: string): Promise<KeyView> {
    return this.call('GET', `/v1/keys/${keyPath(name)}`);
  }

  async createKey(req: CreateKeyRequest): Promise<KeyView> {
    return this.call('POST', '/v1/keys', req);
  }

  /** Imports material (raw bytes, or PKCS#8 DER for signing keys). The caller wipes `material`. */
  async importKey(req: Omit<CreateKeyRequest, 'length'> & { material: Uint8Array }): Promise<KeyView> {
    const { material, ...rest } = req;
    return this.call('POST', '/v1/keys', { ...rest, material: toBase64(material) });
  }

  async rotateKey(name: string, opts: { material?: Uint8Array; length?: number } = {}): Promise<KeyView> {
    const body: Record<string, unknown> = {};
    if (opts.material) body.material = toBase64(opts.material);
    if (opts.length !== undefined) body.length = opts.length;
    return this.call('POST', `/v1/keys/${keyPath(name)}/rotate`, body);
  }

  async revokeKey(name: string, reason?: string): Promise<KeyView> {
    return this.call('POST', `/v1/keys/${keyPath(name)}/revoke`, reason ? { reason } : {});
  }

  async destroyKey(name: string): Promise<KeyView> {
    return this.call('POST', `/v1/keys/${keyPath(name)}/destroy`, {});
  }

  async setReleasePolicy(name: string, policy: string | null): Promise<KeyView> {
    return this.call('PUT', `/v1/keys/${keyPath(name)}/policy`, { policy });
  }

  async createApiKey(role: Role, label: string): Promise<{ token: string; apiKey: ApiKeyView }> {
    return this.call('POST', '/v1/api-keys', { role, label });
  }

  async listApiKeys(): Promise<ApiKeyView[]> {
    return (await this.call<{ apiKeys: ApiKeyView[] }>('GET', '/v1/api-keys')).apiKeys;
  }

  async revokeApiKey(id: string): Promise<void> {
    // A URL dot segment would reach another route; no key has such an id (the broker's answer for any unknown id).
    if (id === '' || id === '.' || id === '..') throw new CustodyError('ERR_AUTH_INVALID', 'no active API key with this id in this tenant');
    await this.call('POST', `/v1/api-keys/${encodeURIComponent(id)}/revoke`, {});
  }

  async readInterimAudit(after = -1, limit = 100): Promise<Array<Omit<StoredAuditEvent, 'event'> & { event: unknown }>> {
    return (await this.call<{ events: Array<Omit<StoredAuditEvent, 'event'> & { event: unknown }> }>('GET', `/v1/audit/interim?after=${after}&limit=${limit}`)).events;
  }

  /**
   * Replaces the tenant's appraisal policy with `text` (YAML or JSON, sent as is). The broker
   * validates it (ERR_POLICY_INVALID: nothing changed) and audits the change before it applies.
   */
  async setPolicy(text: string): Promise<TenantPolicyView> {
    return this.call('PUT', '/v1/policy', undefined, { text, type: /^\s*[{[]/.test(text) ? 'application/json' : 'application/yaml' });
  }

  /**
   * Deletes the tenant's stored appraisal policy (admin key): the broker's file policy is in force
   * from the next attestation on. `tenant`, when given, must be the API key's (else
   * ERR_AUTH_TENANT). ERR_POLICY_NOT_STORED when nothing was stored.
   */
  async deletePolicy(tenant?: string): Promise<TenantPolicyDeletion> {
    return this.call('DELETE', `/v1/policy${tenant !== undefined ? `?tenant=${encodeURIComponent(tenant)}` : ''}`);
  }

  /** The tenant's appraisal policy in force: the stored one (with its text), or the broker's file policy. */
  async getPolicy(): Promise<TenantPolicyView> {
    return this.call('GET', '/v1/policy');
  }

  private async call<T>(method: string, path: string, body?: unknown, raw?: { text: string; type: string }): Promise<T> {
    const headers: Record<string, string> = { authorization: `Bearer ${this.options.apiKey}`, accept: 'application/json, application/problem+json' };
    let payload: string | undefined;
    if (raw !== undefined) {
      headers['content-type'] = `${raw.type}; charset=utf-8`;
      payload = raw.text;
    } else if (body !== undefined) {
      headers['content-type'] = 'application/json';
      payload = JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await this.doFetch(this.base + path, {
        method,
        headers,
        ...(payload !== undefined ? { body: payload } : {}),
        signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
      });
    } catch (e) {
      throw new CustodyError('ERR_SERVICE_UNAVAILABLE', `the broker at ${this.base} could not be reached`, { cause: e });
    }
    const text = await readBroker(res, MAX_RESPONSE);
    if (!res.ok) throw problemError(res.status, text);
    try {
      return JSON.parse(text) as T;
    } catch {
      throw new CustodyError('ERR_INPUT_MALFORMED', 'the broker answered with something other than JSON', { detail: { status: res.status } });
    }
  }
}

/** A key name as a path segment; checked first, since `.` and `..` would be dot segments a URL drops. */
function keyPath(name: string): string {
  assertKeyName(name);
  return encodeURIComponent(name);
}

/** A problem's `facts`, when it is an object of strings, numbers and booleans (anything else is left out). */
function scalarFacts(facts: unknown): Record<string, string | number | boolean> {
  if (typeof facts !== 'object' || facts === null || Array.isArray(facts)) return {};
  const out: Record<string, string | number | boolean> = {};
  for (const [k, v] of Object.entries(facts as Record<string, unknown>)) {
    if (k !== '__proto__' && (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean')) out[k] = typeof v === 'string' ? v.slice(0, 500) : v;
  }
  return out;
}

function problemError(status: number, text: string): CustodyError {
  try {
    const p = JSON.parse(text) as Partial<Problem>;
    // As the workload client: only a code of the documented form is taken (not `constructor`, not
    // a page of text), the message is bounded, and a fact cannot replace the status.
    if (typeof p.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(p.code)) {
      return new CustodyError(p.code, typeof p.detail === 'string' ? p.detail.slice(0, 500) : undefined, { detail: { ...scalarFacts(p.facts), status } });
    }
  } catch {
    // Not a problem document; fall through.
  }
  return new CustodyError(status >= 500 ? 'ERR_SERVICE_UNAVAILABLE' : 'ERR_INPUT_MALFORMED', `the broker answered HTTP ${status}`, { detail: { status } });
}
