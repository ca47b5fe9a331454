// Scans every log line, audit event, error and HTTP error body of a full scenario for the bytes
// of every key the scenario generated, imported, released or wrapped (hex, base64, base64url,
// whole and 12-byte prefixes), on both key store backends.
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, toBase64, toBase64Url, toHex, fromBase64Url, type Bytes } from '@custody/core';
import { issueApiKey } from './auth/api-keys.js';
import { createBrokerApp } from './http/app.js';
import type { ReleasedKey } from './keys/key-service.js';
import { openRelease, teeKeyPair } from './testing/doubles.js';
import { admin, attest, bufferLogger, embeddedBackend, pkcs11Backend, workload, type BackendFactory, type Harness } from './testing/harness.js';

function encodings(secret: Uint8Array): string[] {
  const out: string[] = [];
  for (const part of [secret, secret.subarray(0, 12)]) {
    if (part.length < 8) continue;
    const hex = toHex(part);
    out.push(hex, hex.toUpperCase(), toBase64(part).replace(/=+$/, ''), toBase64Url(part));
  }
  return out;
}

function errorText(e: unknown): string {
  const parts: string[] = [];
  let cur: unknown = e;
  for (let depth = 0; cur && depth < 8; depth++) {
    if (cur instanceof Error) {
      parts.push(cur.name, cur.message, cur.stack ?? '');
      if (cur instanceof CustodyError) parts.push(JSON.stringify(cur.toJSON()));
      cur = (cur as { cause?: unknown }).cause;
    } else {
      parts.push(typeof cur === 'string' ? cur : JSON.stringify(cur));
      break;
    }
  }
  return parts.join('\n');
}

describe.each([embeddedBackend(), pkcs11Backend()] as BackendFactory[])('no key bytes in logs, events or errors: $name', (backend) => {
  beforeAll(() => backend.setup());
  afterAll(() => backend.teardown());

  it('runs a full scenario and finds none of the secrets anywhere', async () => {
    const h = await backend.open();
    try {
      await scenario(h);
    } finally {
      await h.close();
    }
  });
});

async function scenario(h: Harness): Promise<void> {
  const { logger, lines: httpLogLines } = bufferLogger();
  const app = createBrokerApp({ service: h.service, apiKeys: h.metadata, logger });
  const secrets: Bytes[] = [];
  const texts: string[] = [];
  const tee = teeKeyPair('P-256');
  const open = (r: ReleasedKey) => openRelease(tee, r);
  const attempt = async (p: Promise<unknown>) => {
    try {
      return await p;
    } catch (e) {
      texts.push(errorText(e));
      return undefined;
    }
  };
  const attestation = () => attest(h.metadata, tee.recipient, { measurement: 'aa' });

  const adminToken = (await issueApiKey(h.metadata, { tenant: 'acme', role: 'admin', label: 'a', createdBy: 't', now: Date.now() })).token;
  const workloadToken = (await issueApiKey(h.metadata, { tenant: 'acme', role: 'workload', label: 'w', createdBy: 't', now: Date.now() })).token;
  secrets.push(fromBase64Url(adminToken.slice(21)), fromBase64Url(workloadToken.slice(21)));
  if (h.masterKey) secrets.push(h.masterKey);
  const http = async (token: string, method: string, path: string, body?: unknown) => {
    const res = await app.request(path, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
    const text = await res.text();
    if (res.status >= 400) texts.push(text);
    return text;
  };

  // Imported material of every type, over HTTP and through the service.
  const aes = randomBytes(32);
  const secret = randomBytes(1000);
  const p256 = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' });
  const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' });
  secrets.push(aes, secret, p256, ed, p256.subarray(p256.length - 32), ed.subarray(ed.length - 32));
  await http(adminToken, 'POST', '/v1/keys', { name: 'aes', type: 'aes-256', material: toBase64(aes), releasePolicy: 'ear.measurement == "aa"' });
  await http(adminToken, 'POST', '/v1/keys', { name: 'sec', type: 'secret', material: toBase64(secret), releasePolicy: 'true' });
  await attempt(h.service.import(admin(), { tenant: 'acme', name: 'p256', type: 'ecdsa-p256', material: p256, exportable: true, releasePolicy: 'true' }));
  await attempt(h.service.import(admin(), { tenant: 'acme', name: 'ed', type: 'ed25519', material: ed }));
  // Malformed imports carrying material: errors must not quote it.
  const bad = randomBytes(31);
  const badPkcs8 = Buffer.concat([Buffer.from([0x30, 0x2e]), randomBytes(46)]);
  secrets.push(bad, badPkcs8);
  await http(adminToken, 'POST', '/v1/keys', { name: 'bad', type: 'aes-256', material: toBase64(bad) });
  await http(adminToken, 'POST', '/v1/keys', { name: 'bad2', type: 'ed25519', material: toBase64(badPkcs8) });
  await attempt(h.service.import(admin(), { tenant: 'acme', name: 'bad3', type: 'ecdsa-p256', material: badPkcs8 }));
  await http(adminToken, 'POST', '/v1/keys', { name: 'bad4', type: 'no-type', material: toBase64(aes) });

  // Generated keys: learn their bytes by releasing them to our TEE key.
  await http(adminToken, 'POST', '/v1/keys', { name: 'gen', type: 'aes-256', releasePolicy: 'true' });
  await http(adminToken, 'POST', '/v1/keys', { name: 'gensec', type: 'secret', length: 64, releasePolicy: 'true' });
  await http(adminToken, 'POST', '/v1/keys', { name: 'gensig', type: 'ecdsa-p256', exportable: true, releasePolicy: 'true' });
  for (const name of ['aes', 'sec', 'p256', 'gen', 'gensec', 'gensig']) {
    const r = await h.service.release({ principal: workload(), tenant: 'acme', name, attestation: await attestation(), recipient: tee.recipient });
    secrets.push(await open(r));
  }
  await http(adminToken, 'POST', '/v1/keys/gen/rotate', {});
  secrets.push(await open(await h.service.release({ principal: workload(), tenant: 'acme', name: 'gen', attestation: await attestation(), recipient: tee.recipient })));

  // Envelope helpers and signing.
  const dk = await h.service.generateDataKey(admin(), { tenant: 'acme', kek: 'gen', context: { file: 'a' } });
  secrets.push(dk.plaintext);
  await attempt(h.service.unwrapDataKey(admin(), { tenant: 'acme', wrapped: dk.wrapped, context: { file: 'b' } }));
  await attempt(h.service.sign(admin(), { tenant: 'acme', name: 'p256', data: new Uint8Array(10) }));

  // Denials and failures of many kinds.
  await attempt(h.service.release({ principal: workload(), tenant: 'acme', name: 'aes', attestation: await attest(h.metadata, tee.recipient, { measurement: 'zz' }), recipient: tee.recipient }));
  await attempt(h.service.release({ principal: workload(), tenant: 'acme', name: 'aes', attestation: await attest(h.metadata, { curve: 'P-256', publicKey: new Uint8Array(65) }), recipient: { curve: 'P-256', publicKey: new Uint8Array(65) } }));
  await attempt(h.service.release({ principal: admin(), tenant: 'acme', name: 'aes', attestation: await attestation(), recipient: tee.recipient }));
  await http(workloadToken, 'GET', '/v1/keys');
  await http(adminToken, 'POST', '/v1/keys/sec/revoke', {});
  await attempt(h.service.release({ principal: workload(), tenant: 'acme', name: 'sec', attestation: await attestation(), recipient: tee.recipient }));
  await http(adminToken, 'POST', '/v1/keys/sec/destroy', {});
  await http(adminToken, 'POST', '/v1/keys/aes/destroy', {});
  await attempt(h.service.release({ principal: workload(), tenant: 'acme', name: 'aes', attestation: await attestation(), recipient: tee.recipient }));
  await h.keystore.close();
  await attempt(h.service.release({ principal: workload(), tenant: 'acme', name: 'gen', attestation: await attestation(), recipient: tee.recipient }));
  await http(adminToken, 'POST', '/v1/keys/gen/rotate', {});

  secrets.push(...h.wrapper.seen);
  const haystacks = [...h.logLines, ...httpLogLines, ...h.audit.lines, ...texts];
  // The scenario really produced material, logs, events and errors to scan.
  expect(secrets.length).toBeGreaterThan(15);
  expect(h.logLines.length).toBeGreaterThan(10);
  expect(httpLogLines.length).toBeGreaterThan(10);
  expect(h.audit.lines.length).toBeGreaterThan(15);
  expect(texts.length).toBeGreaterThan(10);
  const leaks: string[] = [];
  for (const s of secrets) {
    for (const enc of encodings(s)) {
      for (const hay of haystacks) if (hay.includes(enc)) leaks.push(`${enc.slice(0, 12)}... in ${hay.slice(0, 120)}`);
    }
  }
  expect(leaks).toEqual([]);
}
