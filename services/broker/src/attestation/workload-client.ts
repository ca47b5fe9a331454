import { createHash, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { CustodyError, deserializeHpkePrivateKey, fromBase64Url, toBase64, toCustodyError, unwrapKey, wipe, type Bytes } from '@custody/core';
import { nodeHpkePrimitives } from '@custody/crypto-node';
import { HPKE_KEY_WRAP_SCHEME, HPKE_SUITES } from '../keystore/hpke-key-wrapper.js';
import { openPkcs11Release, PKCS11_RELEASE_SCHEME } from '../keystore/pkcs11/release-scheme.js';
import type { RecipientCurve, RecipientKey } from '../keystore/types.js';
import type { AttestResponse, ChallengeResponse, DeviceEvidenceInput, DevicePlatform, ReleaseResponse } from './handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { readBroker } from '../http/read-answer.js';

/**
 * The workload side of the key release handshake (docs/key-release-protocol.md), for code
 * running inside the TEE: `custody fetch-key`, the gateway, tests and the benchmark. The TEE
 * private key is generated here and never leaves the process.
 */

export type { AttestResponse, ChallengeResponse, ReleaseResponse } from './handshake.js';
export { buildRuntimeData, runtimeDigest, runtimeDigestAlgorithm, parseRuntimeData, teeKeyJwk } from './runtime-data.js';

export interface WorkloadClientOptions {
  /** Broker base URL, e.g. http://127.0.0.1:8787 */
  baseUrl: string;
  /** A workload API key, when the broker asks for one on challenges. */
  apiKey?: string;
  fetch?: (input: string, init: RequestInit) => Promise<Response>;
  timeoutMs?: number;
}

const MAX_RESPONSE = 1024 * 1024;

/** HTTP client of the workload routes. Problem responses become CustodyErrors with the broker's code. */
export class BrokerWorkloadClient {
  private readonly base: string;
  private readonly doFetch: (input: string, init: RequestInit) => Promise<Response>;

  constructor(private readonly options: WorkloadClientOptions) {
    this.base = options.baseUrl.replace(/\/+$/, '');
    this.doFetch = options.fetch ?? ((input, init) => fetch(input, init));
  }

  challenge(tenant: string): Promise<ChallengeResponse> {
    return this.call('/v1/attest/challenge', { tenant }, this.options.apiKey);
  }

  attest(request: { session: string; evidence: Uint8Array; runtimeData: string; platform?: string; certs?: Uint8Array[]; collateral?: Record<string, Uint8Array>; devices?: DeviceEvidenceInput[] }): Promise<AttestResponse> {
    const body: Record<string, unknown> = { session: request.session, evidence: toBase64(request.evidence), runtimeData: request.runtimeData };
    if (request.platform !== undefined) body.platform = request.platform;
    if (request.certs) body.certs = request.certs.map((c) => toBase64(c));
    if (request.collateral) body.collateral = Object.fromEntries(Object.entries(request.collateral).map(([k, v]) => [k, toBase64(v)]));
    if (request.devices) body.devices = request.devices.map((d) => ({ platform: d.platform, evidence: toBase64(d.evidence), ...(d.certs ? { certs: d.certs.map((c) => toBase64(c)) } : {}) }));
    return this.call('/v1/attest', body, this.options.apiKey);
  }

  release(name: string, request: { session: string; ear: string; tenant?: string }): Promise<ReleaseResponse> {
    return this.call(`/v1/keys/${encodeURIComponent(name)}/release`, { session: request.session, ...(request.tenant !== undefined ? { tenant: request.tenant } : {}) }, request.ear);
  }

  private async call<T>(path: string, body: unknown, bearer: string | undefined): Promise<T> {
    const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/json, application/problem+json' };
    if (bearer !== undefined) headers.authorization = `Bearer ${bearer}`;
    let res: Response;
    try {
      res = await this.doFetch(this.base + path, { method: 'POST', headers, body: JSON.stringify(body), signal: AbortSignal.timeout(this.options.timeoutMs ?? 30_000) });
    } catch (e) {
      throw new CustodyError('ERR_SERVICE_UNAVAILABLE', `the broker at ${this.base} could not be reached`, { cause: e });
    }
    const text = await readBroker(res, MAX_RESPONSE);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new CustodyError(res.status >= 500 ? 'ERR_SERVICE_UNAVAILABLE' : 'ERR_INPUT_MALFORMED', `the broker answered HTTP ${res.status} without JSON`, { detail: { status: res.status } });
    }
    if (!res.ok) {
      const p = json as { code?: unknown; detail?: unknown; facts?: Record<string, string | number | boolean> };
      const code = typeof p.code === 'string' && /^ERR_[A-Z0-9_]{1,60}$/.test(p.code) ? p.code : res.status >= 500 ? 'ERR_SERVICE_UNAVAILABLE' : 'ERR_INPUT_MALFORMED';
      throw new CustodyError(code, typeof p.detail === 'string' ? p.detail.slice(0, 500) : `the broker answered HTTP ${res.status}`, { detail: { ...(p.facts ?? {}), status: res.status } });
    }
    return json as T;
  }
}

/** An ephemeral TEE key pair: the private half stays in this process. */
export interface TeeKeyPair {
  recipient: RecipientKey;
  privateKey: KeyObject;
}

export function generateTeeKeyPair(curve: RecipientCurve = 'X25519'): TeeKeyPair {
  if (curve === 'X25519') {
    const { privateKey, publicKey } = generateKeyPairSync('x25519');
    const x = Buffer.from(publicKey.export({ format: 'jwk' }).x!, 'base64url');
    return { privateKey, recipient: { curve, publicKey: new Uint8Array(x) } };
  }
  const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const jwk = publicKey.export({ format: 'jwk' });
  const point = new Uint8Array(65);
  point[0] = 4;
  point.set(Buffer.from(jwk.x!, 'base64url'), 1);
  point.set(Buffer.from(jwk.y!, 'base64url'), 33);
  return { privateKey, recipient: { curve, publicKey: point } };
}

/**
 * Opens a released key with the TEE private key after checking that the release context names
 * what was asked for (tenant, key, session, EAR); the wrapping authenticates that context, so
 * a wrapped key cannot be passed off as another key, version or session. ERR_KEY_UNWRAP when
 * the context differs or the payload was tampered with.
 */
export async function openReleasedKey(tee: TeeKeyPair, released: ReleaseResponse, expected: { tenant: string; name: string; session: string; ear: string }): Promise<Bytes> {
  const c = released.context;
  const earDigest = createHash('sha256').update(expected.ear).digest('hex');
  if (
    c.purpose !== 'custody/key-release' ||
    c.tenant !== expected.tenant ||
    c.name !== expected.name ||
    c.session !== expected.session ||
    c.earDigest !== earDigest ||
    c.keyId !== released.key.id ||
    c.version !== released.key.version ||
    released.session !== expected.session
  ) {
    throw new CustodyError('ERR_KEY_UNWRAP', 'the release context does not describe this request');
  }
  let payload: Bytes;
  try {
    payload = fromBase64Url(released.wrappedKey);
  } catch {
    throw new CustodyError('ERR_KEY_UNWRAP', 'the wrapped key is not base64url');
  }
  if (released.scheme === PKCS11_RELEASE_SCHEME) return openPkcs11Release(tee.privateKey, payload, c);
  if (released.scheme !== HPKE_KEY_WRAP_SCHEME) throw new CustodyError('ERR_KEY_UNWRAP', 'unknown release scheme', { detail: { scheme: String(released.scheme).slice(0, 64) } });
  const d = Buffer.from(tee.privateKey.export({ format: 'jwk' }).d!, 'base64url');
  try {
    const pair = await deserializeHpkePrivateKey(HPKE_SUITES[tee.recipient.curve].kem, d, { provider: nodeHpkePrimitives });
    return await unwrapKey(payload, { recipientKeyPair: pair, context: c, provider: nodeHpkePrimitives });
  } catch (e) {
    throw new CustodyError('ERR_KEY_UNWRAP', undefined, { cause: toCustodyError(e) });
  } finally {
    wipe(d);
  }
}

export interface WorkloadAttester {
  /** The evidence platform the attester produces (tpm, sev-snp, tdx, sim). */
  readonly platform: string;
  collect(reportData: Uint8Array): Promise<Uint8Array>;
}

/** A device attached to the TEE (an NVIDIA GPU in CC mode) that reports evidence for a nonce. */
export interface WorkloadDeviceAttester {
  readonly platform: DevicePlatform;
  /** Evidence whose request nonce is `nonce` (SHA-256 of the runtime data, 32 bytes). */
  collect(nonce: Uint8Array): Promise<Uint8Array>;
}

export interface FetchKeyOptions extends Omit<WorkloadClientOptions, 'baseUrl'> {
  broker: string;
  tenant: string;
  name: string;
  attester: WorkloadAttester;
  /** Devices whose evidence rides along the TEE's, bound to the same runtime data (appraised as gpu0, gpu1, ...). */
  devices?: WorkloadDeviceAttester[];
  /** TEE key curve; default the broker's first (X25519 unless its key store needs P-256). */
  curve?: RecipientCurve;
}

export interface FetchedKey {
  /** The key material. The caller wipes it when done. */
  material: Bytes;
  key: ReleaseResponse['key'];
  session: string;
  platform: string;
  status: AttestResponse['status'];
  policyId: string;
  /** When the EAR (and the session) expire. */
  earExpiresAt: string;
  /** The release's audit event in the ledger; absent while it waits in the broker's interim table (then `auditInterimIndex`). */
  auditIndex?: number;
  auditInterimIndex?: number;
}

/** The whole handshake: challenge, a fresh TEE key, evidence over the runtime data, attest, release, unwrap. */
export async function fetchKey(options: FetchKeyOptions): Promise<FetchedKey> {
  const client = new BrokerWorkloadClient({ baseUrl: options.broker, ...(options.apiKey ? { apiKey: options.apiKey } : {}), ...(options.fetch ? { fetch: options.fetch } : {}), ...(options.timeoutMs ? { timeoutMs: options.timeoutMs } : {}) });
  const challenge = await client.challenge(options.tenant);
  const curve = options.curve ?? challenge.teeKeyCurves.find((c) => c === 'X25519' || c === 'P-256');
  if (!curve || !challenge.teeKeyCurves.includes(curve)) throw new CustodyError('ERR_KEY_RECIPIENT', 'the broker wraps to no TEE key curve this client can hold');
  const tee = generateTeeKeyPair(curve);
  const runtimeData = buildRuntimeData(fromBase64Url(challenge.nonce), tee.recipient);
  const evidence = await options.attester.collect(await runtimeDigest(options.attester.platform, runtimeData));
  const devices: DeviceEvidenceInput[] = [];
  for (const d of options.devices ?? []) devices.push({ platform: d.platform, evidence: await d.collect(await runtimeDigest(d.platform, runtimeData)) });
  const attested = await client.attest({ session: challenge.session, evidence, runtimeData, platform: options.attester.platform, ...(devices.length > 0 ? { devices } : {}) });
  const released = await client.release(options.name, { session: challenge.session, ear: attested.ear });
  const material = await openReleasedKey(tee, released, { tenant: options.tenant, name: options.name, session: challenge.session, ear: attested.ear });
  return {
    material,
    key: released.key,
    session: challenge.session,
    platform: attested.platform,
    status: attested.status,
    policyId: attested.policyId,
    earExpiresAt: attested.expiresAt,
    ...(released.auditIndex !== undefined ? { auditIndex: released.auditIndex } : {}),
    ...(released.auditInterimIndex !== undefined ? { auditInterimIndex: released.auditInterimIndex } : {}),
  };
}
