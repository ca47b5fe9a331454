import { describe, it, expect } from 'vitest';
import { createSimEvidence, simVerifier } from '@custody/attest';
import { appraise, createEar, generateEarSigningKey, loadPolicy, publishJwks, teeKeyFromEar, verifyEar } from './index.js';
import * as F from './testing/claims.js';

// End to end with a real verifier: sim evidence -> verify -> appraise -> EAR -> verify EAR.
describe('sim evidence through the whole appraisal path', () => {
  const now = new Date('2025-06-01T12:00:00Z');
  const nonce = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);

  async function run(allowSimulated: boolean, measurement = F.SIM_MEASUREMENT) {
    const evidence = await createSimEvidence({ measurements: { measurement }, reportData: new Uint8Array(64).fill(9), nonce, issuedAt: now });
    const result = await simVerifier.verify({ evidence, now, nonce });
    expect(result.ok).toBe(true);
    const policy = await loadPolicy(F.POLICY_YAML.replace('apiVersion: custody.dev/policy/v1', `apiVersion: custody.dev/policy/v1\nallowSimulated: ${allowSimulated}`));
    const appraisal = appraise(policy, result, { now });
    const key = await generateEarSigningKey();
    const tee = (await globalThis.crypto.subtle.generateKey({ name: 'X25519' }, true, ['deriveBits']));
    const teeJwk = await globalThis.crypto.subtle.exportKey('jwk', tee.publicKey);
    const { token } = await createEar(appraisal, key, { now, verifierId: { developer: 'https://custody.dev', build: 'test' }, nonce, teePublicKey: teeJwk });
    const verified = await verifyEar(token, { jwks: publishJwks([key]), now, nonce });
    return { verified, teeJwk };
  }

  it('is contraindicated under a policy that does not allow simulation', async () => {
    const { verified } = await run(false);
    expect(verified.status).toBe('contraindicated');
    expect(verified.ear.submods.cpu0!['ear.veraison.annotated-evidence']).toMatchObject({ platform: 'sim', simulated: true });
  });

  it('is affirming when allowed, and carries the TEE key', async () => {
    const { verified, teeJwk } = await run(true);
    expect(verified.status).toBe('affirming');
    expect(verified.ear.submods.cpu0!['ear.trustworthiness-vector']).toEqual({ hardware: 0, executables: 2 });
    expect(await teeKeyFromEar(verified.ear)).toEqual({ kty: 'OKP', crv: 'X25519', x: teeJwk.x });
  });

  it('is contraindicated for another measurement even when allowed', async () => {
    const { verified } = await run(true, '11'.repeat(48));
    expect(verified.status).toBe('contraindicated');
  });
});
