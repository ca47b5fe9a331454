import { describe, expect, it } from 'vitest';
import { fixedClock, fromHex } from '@custody/core';
import { simVerifier } from '@custody/attest';
import { SimAttester } from './sim.js';

describe('sim attester', () => {
  it('collects custody-sim/v1 evidence that the sim verifier accepts, labelled SIMULATED', async () => {
    const at = '2025-05-05T05:05:05.000Z';
    const a = new SimAttester({ clock: fixedClock(at), measurements: { measurement: 'cd'.repeat(48) } });
    const nonce = fromHex('aabbccdd');
    const ev = await a.collect(nonce);
    const r = await simVerifier.verify({ evidence: ev, now: new Date(at), nonce });
    expect(r.ok).toBe(true);
    expect(r.claims).toMatchObject({ simulated: true, reportData: 'aabbccdd', measurements: { measurement: 'cd'.repeat(48) } });
    expect(r.claims!.platformClaims.issuedAt).toBe(at);
    expect(r.warnings.some((w) => w.startsWith('SIMULATED'))).toBe(true);
  });

  it('rejects report data over 64 bytes', async () => {
    await expect(new SimAttester().collect(new Uint8Array(65))).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
  });
});
