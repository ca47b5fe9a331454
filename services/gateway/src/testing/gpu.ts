/**
 * Test helpers for gateways with GPUs: the measurements of the FixtureGpuAttester's evidence (the
 * real Hopper report's) and an appraisal policy accepting SIMULATED CPU evidence with those GPU
 * measurements. Development and tests only.
 */
import { sha256, toHex } from '@custody/core';
import { nvidiaVerifier } from '@custody/attest';
import { FixtureGpuAttester } from '@custody/attester-service/testing';

/** The named measurements (`measurement<index>`, 96 hex) of the fixture GPU evidence, verified under the test root. */
export async function fixtureGpuMeasurements(): Promise<Record<string, string>> {
  const nonce = new Uint8Array(32);
  const evidence = await new FixtureGpuAttester().collect(nonce);
  const r = await nvidiaVerifier.verify({ evidence, roots: [await FixtureGpuAttester.testRoot()], now: new Date(), nonce });
  if (!r.ok || !r.claims) throw new Error(`the fixture GPU evidence does not verify: ${r.errors[0]?.code ?? '?'}`);
  return r.claims.measurements;
}

/** SHA-256 (hex) of the fixture GPU test root, for a policy's `signerRoots`. */
export async function fixtureGpuRootSha256(): Promise<string> {
  return toHex(await sha256(await FixtureGpuAttester.testRoot()));
}

/**
 * A policy accepting SIMULATED CPU evidence with one of `simMeasurements`, and NVIDIA GPUs whose
 * SPDM measurement blocks equal `gpu` (`measurement<i>` -> `indices: {i: value}`), signed under
 * a root with SHA-256 `gpuRootSha256` when given.
 */
export function compositePolicyYaml(simMeasurements: readonly string[], gpu: Record<string, string>, options: { version?: number; gpuRootSha256?: string } = {}): string {
  const indices = Object.entries(gpu).map(([name, value]) => `      ${Number(name.replace(/^measurement/, ''))}: ${value}`);
  return [
    'apiVersion: custody.dev/policy/v1',
    'id: gateway-gpu-test',
    `version: ${options.version ?? 1}`,
    'allowSimulated: true',
    'platforms:',
    '  sim:',
    `    measurement: [${simMeasurements.join(', ')}]`,
    '  nvidia:',
    '    indices:',
    ...indices,
    ...(options.gpuRootSha256 ? [`    signerRoots: [${options.gpuRootSha256}]`] : []),
    '',
  ].join('\n');
}
