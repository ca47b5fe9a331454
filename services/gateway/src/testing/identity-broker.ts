/**
 * Test fixture: the real key broker service (services/broker: SQLite, embedded key store, CEL
 * release policies, versioned keys) on loopback, holding gateway identity keys, and the
 * HttpBrokerClient gateways use to attest to it and have an identity key released.
 */
import type { JSONWebKeySet } from 'jose';
import { simPolicy, startHandshakeBroker, type HandshakeBroker } from '../../../broker/src/testing/handshake.js';
import type { BrokerClient } from '../attestation/broker-client.js';
import { HttpBrokerClient } from '../attestation/http-broker-client.js';

export const IDENTITY_TENANT = 'acme';

/** A CEL release policy that releases to affirming sim evidence with one of these measurements. */
export function releasePolicyFor(measurements: readonly string[]): string {
  return `status == 'affirming' && platform == 'sim' && claims.measurements.measurement in [${measurements.map((m) => `'${m}'`).join(', ')}]`;
}

export interface IdentityBroker {
  readonly broker: HandshakeBroker;
  readonly url: string;
  /** The broker's EAR verification keys (what clients pin). */
  readonly jwks: JSONWebKeySet;
  /** The HTTP client of one gateway process (a workload API key of the tenant). */
  client(): BrokerClient;
  /** Imports a `secret` key (an identity key) with a release policy for these measurements. */
  importIdentityKey(name: string, material: Uint8Array, releaseTo: readonly string[]): Promise<void>;
  close(): Promise<void>;
}

/** A broker whose appraisal policy accepts `appraised` sim measurements. */
export async function startIdentityBroker(appraised: readonly string[]): Promise<IdentityBroker> {
  const broker = await startHandshakeBroker({ policy: simPolicy([...appraised]) });
  const { token } = await broker.admin.createApiKey('workload', 'gateway replicas');
  const jwks = (await (await fetch(`${broker.url}/.well-known/jwks.json`)).json()) as JSONWebKeySet;
  return {
    broker,
    url: broker.url,
    jwks,
    client: () => new HttpBrokerClient({ url: broker.url, apiKey: token, tenant: IDENTITY_TENANT }),
    async importIdentityKey(name, material, releaseTo) {
      await broker.admin.importKey({ name, type: 'secret', material, releasePolicy: releasePolicyFor(releaseTo) });
    },
    close: () => broker.close(),
  };
}
