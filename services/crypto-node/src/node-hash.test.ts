import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { setHpkeProvider, sha256, toHex, webCryptoHpkePrimitives } from '@custody/core';
import { digestOf, receiptIdOf, RECEIPT_FORMAT, type ReceiptBody } from '@custody/sdk';
import { nodeHpkePrimitives } from './node-hpke-provider.js';

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20261126;

const body = (tenant: string, text: string): ReceiptBody => ({
  format: RECEIPT_FORMAT,
  tenant,
  route: 'chat.completions',
  gateway: { platform: 'sim', simulated: true, measurements: { measurement: '00'.repeat(48) }, attestationDigest: 'sha256:' + 'ab'.repeat(32) },
  model: { id: text, backend: 'upstream' },
  policy: { version: '1', action: 'none', findings: [] },
  request: { digest: 'sha256:' + '01'.repeat(32) },
  response: { digest: 'sha256:' + '02'.repeat(32), status: 200, streamed: false },
  timestamps: { receivedAt: '2026-11-26T10:00:00.000Z', completedAt: '2026-11-26T10:00:00.001Z' },
});

describe('node:crypto synchronous SHA-256 (HPKE provider sha256)', () => {
  it('equals WebCrypto SHA-256 and returns a fresh 32-byte Uint8Array', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 70_000 }), async (data) => {
        const d = nodeHpkePrimitives.sha256!(data);
        expect(d).toBeInstanceOf(Uint8Array);
        expect(d.length).toBe(32);
        expect(toHex(d)).toBe(toHex(await sha256(data)));
      }),
      { seed, numRuns: 200 },
    );
  });

  it('gives the SDK the same digests and receipt ids as the JavaScript and WebCrypto hashes', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 70_000 }), fc.string({ maxLength: 40 }), fc.string({ minLength: 1, maxLength: 200 }), async (data, tenant, text) => {
        const previous = setHpkeProvider(webCryptoHpkePrimitives);
        let plain: [string, string];
        try {
          plain = [await digestOf(data), await receiptIdOf(body(tenant, text))];
        } finally {
          setHpkeProvider(previous);
        }
        const before = setHpkeProvider(nodeHpkePrimitives);
        try {
          expect([await digestOf(data), await receiptIdOf(body(tenant, text))]).toEqual(plain);
        } finally {
          setHpkeProvider(before);
        }
      }),
      { seed, numRuns: 150 },
    );
  });
});
