import { describe, expect, it } from 'vitest';
import { nvidiaVerifier } from '../verifier.js';
import { REAL_NVIDIA_REPORT, reissuedNvidiaEvidence } from './reissue.js';

const NOW = new Date('2026-11-26T00:00:00Z');

describe('test fixture: NVIDIA evidence re-signed for a chosen nonce', () => {
  it('verifies under the test root with exactly that nonce, and not under the pinned NVIDIA root', async () => {
    const nonce = new Uint8Array(32).fill(7);
    const { evidence, roots } = await reissuedNvidiaEvidence(nonce);
    const ok = await nvidiaVerifier.verify({ evidence, roots, now: NOW, nonce });
    expect(ok.ok).toBe(true);
    expect(ok.claims?.nonce).toBe('07'.repeat(32));
    const otherNonce = await nvidiaVerifier.verify({ evidence, roots, now: NOW, nonce: new Uint8Array(32).fill(8) });
    expect(otherNonce.errors[0]?.code).toBe('ERR_EVIDENCE_NONCE');
    const pinned = await nvidiaVerifier.verify({ evidence, now: NOW, nonce });
    expect(pinned.ok).toBe(false);
    expect(pinned.errors[0]?.step).toBe('chain');
  });

  it('keeps the real measurements', async () => {
    const real = await nvidiaVerifier.verify({ evidence: REAL_NVIDIA_REPORT, certs: [], now: NOW });
    const { evidence, roots } = await reissuedNvidiaEvidence(new Uint8Array(32));
    const r = await nvidiaVerifier.verify({ evidence, roots, now: NOW });
    expect(r.claims?.measurements).toEqual(real.claims?.measurements);
    expect(Object.keys(r.claims?.measurements ?? {}).length).toBeGreaterThan(10);
  });
});
