// Fuzzes every parser of untrusted input in the broker: wrapped data keys, imported material,
// API key tokens, in-HSM release payloads (TEE side) and admin request bodies. Each must answer
// with a CustodyError and a stable code (or a valid value), never another exception.
import { generateKeyPairSync } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CustodyError, toBase64 } from '@custody/core';
import { authenticateApiKey } from './auth/api-keys.js';
import { createBrokerApp } from './http/app.js';
import { decodeWrappedDataKey, encodeWrappedDataKey } from './keys/envelope.js';
import { normalizeImportedMaterial } from './keys/material.js';
import { openPkcs11Release } from './keystore/pkcs11/release-scheme.js';
import { teeKeyPair } from './testing/doubles.js';
import { embeddedBackend, type Harness } from './testing/harness.js';

function codeOrOk(fn: () => unknown): string {
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    return e.code;
  }
}

const RUNS = { numRuns: 300 };

describe('broker parsers under fuzzing', () => {
  it('decodeWrappedDataKey: random and mutated text gives a stable code or a valid value', () => {
    const valid = encodeWrappedDataKey({ keyId: 'key_' + 'a'.repeat(32), version: 3, sealed: { iv: new Uint8Array(12), ciphertext: new Uint8Array(48) } });
    expect(decodeWrappedDataKey(valid).version).toBe(3);
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'binary', maxLength: 300 })), (s) => {
        expect(['ok', 'ERR_INPUT_MALFORMED', 'ERR_INPUT_TOO_LARGE']).toContain(codeOrOk(() => decodeWrappedDataKey(s)));
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.nat(valid.length - 1), fc.string({ minLength: 1, maxLength: 3 }), (at, insert) => {
        const mutated = valid.slice(0, at) + insert + valid.slice(at + 1);
        expect(['ok', 'ERR_INPUT_MALFORMED']).toContain(codeOrOk(() => decodeWrappedDataKey(mutated)));
      }),
      RUNS,
    );
    expect(codeOrOk(() => decodeWrappedDataKey('cdk1.' + 'x'.repeat(5000)))).toBe('ERR_INPUT_TOO_LARGE');
  });

  it('imported material: random bytes and mutated PKCS#8 give ERR_KEY_MATERIAL or a valid key', () => {
    const real = new Uint8Array(generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'der', type: 'pkcs8' }));
    const realEd = new Uint8Array(generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' }));
    fc.assert(
      fc.property(fc.constantFrom('aes-256', 'secret', 'ed25519', 'ecdsa-p256' as const), fc.uint8Array({ maxLength: 200 }), (type, bytes) => {
        expect(['ok', 'ERR_KEY_MATERIAL']).toContain(codeOrOk(() => normalizeImportedMaterial(type, bytes)));
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.constantFrom([real, 'ecdsa-p256' as const], [realEd, 'ed25519' as const]), fc.nat(), fc.integer({ min: 1, max: 255 }), ([der, type], at, xor) => {
        const m = der.slice();
        m[at % m.length]! ^= xor;
        expect(['ok', 'ERR_KEY_MATERIAL']).toContain(codeOrOk(() => normalizeImportedMaterial(type, m)));
      }),
      RUNS,
    );
  });

  it('in-HSM release payloads: random and truncated payloads fail with ERR_KEY_UNWRAP on the TEE side', () => {
    const tee = teeKeyPair('P-256');
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string({ maxLength: 16 }), fc.integer())), (payload, context) => {
        expect(codeOrOk(() => openPkcs11Release(tee.privateKey, payload, context))).toBe('ERR_KEY_UNWRAP');
      }),
      RUNS,
    );
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 100, maxLength: 200 }), (tail) => {
        // A valid-looking header (uncompressed point prefix) with garbage: still only ERR_KEY_UNWRAP.
        const payload = new Uint8Array([4, ...tail]);
        expect(codeOrOk(() => openPkcs11Release(tee.privateKey, payload, {}))).toBe('ERR_KEY_UNWRAP');
      }),
      RUNS,
    );
  });

  describe('with a store', () => {
    const backend = embeddedBackend();
    let h: Harness;
    beforeAll(async () => {
      h = await backend.open();
    });
    afterAll(async () => h.close());

    it('API key tokens: any string is ERR_AUTH_INVALID', async () => {
      await fc.assert(
        fc.asyncProperty(fc.oneof(fc.string({ maxLength: 100 }), fc.stringMatching(/^cst_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/)), async (token) => {
          const code = await authenticateApiKey(h.metadata, token).then(
            () => 'ok',
            (e: unknown) => (e instanceof CustodyError ? e.code : 'not a CustodyError'),
          );
          expect(code).toBe('ERR_AUTH_INVALID');
        }),
        { numRuns: 200 },
      );
    });

    it('admin request bodies: random JSON never produces a 5xx or a non-problem error', async () => {
      const { token } = await h.service.bootstrapAdminKey('acme');
      const app = createBrokerApp({ service: h.service, apiKeys: h.metadata });
      const body = fc.oneof(
        fc.json({ maxDepth: 3 }),
        fc.record({ name: fc.string({ maxLength: 140 }), type: fc.constantFrom('aes-256', 'secret', 'ed25519', 'ecdsa-p256', 'x'), material: fc.uint8Array({ maxLength: 80 }).map((b) => toBase64(b)), releasePolicy: fc.option(fc.string({ maxLength: 40 })), length: fc.integer({ min: -5, max: 70_000 }) }, { requiredKeys: ['name', 'type'] }).map((o) => JSON.stringify(o)),
      );
      await fc.assert(
        fc.asyncProperty(fc.constantFrom('/v1/keys', '/v1/keys/k/rotate', '/v1/keys/k/revoke', '/v1/api-keys'), body, async (path, text) => {
          const res = await app.request(path, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: text });
          expect(res.status).toBeLessThan(500);
          if (res.status >= 400) expect(res.headers.get('content-type')).toBe('application/problem+json');
        }),
        { numRuns: 150 },
      );
    });
  });
});
