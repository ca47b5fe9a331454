// Release policies in CEL over the verified EAR: the variables, fail closed on errors.
import { describe, expect, it } from 'vitest';
import type { ReleasePolicyInput } from '../keys/release-policy.js';
import { CelReleasePolicyEvaluator, releasePolicyVariables } from './cel-release-policy.js';

const M = 'ab'.repeat(48);
const input = (status = 'affirming', measurement = M, debug = false): ReleasePolicyInput => ({
  ear: {
    eat_profile: 'tag:github.com,2023:veraison/ear',
    submods: {
      cpu0: {
        'ear.status': status,
        'ear.veraison.annotated-evidence': { platform: 'sev-snp', debug, measurements: { measurement }, tcb: { components: { snp: 8 } } },
        'ear.veraison.key-attestation': { akpub: 'MCowBQYDK2VuAyEA' },
      },
    },
  },
  key: { tenant: 'acme', name: 'dk', type: 'aes-256', version: 2 },
  session: { id: 'ses_1' },
});

describe('CelReleasePolicyEvaluator', () => {
  const cel = new CelReleasePolicyEvaluator();

  it('exposes ear, status, claims, platform, key and session', async () => {
    expect(releasePolicyVariables(input())).toMatchObject({ status: 'affirming', platform: 'sev-snp', claims: { measurements: { measurement: M } }, key: { name: 'dk' }, session: { id: 'ses_1' } });
    const policy = `status == 'affirming' && platform == 'sev-snp' && claims.measurements.measurement == '${M}' && !claims.debug && claims.tcb.components.snp >= 8 && key.version >= 2 && ear.submods.cpu0['ear.status'] == 'affirming'`;
    await cel.validate(policy);
    expect(await cel.evaluate(policy, input())).toEqual({ allow: true });
    expect((await cel.evaluate(policy, input('warning'))).allow).toBe(false);
    expect((await cel.evaluate(policy, input('affirming', 'cd'.repeat(48)))).allow).toBe(false);
    expect((await cel.evaluate(policy, input('affirming', M, true))).allow).toBe(false);
  });

  it('takes the worst submodule status as `status`', () => {
    const i = input();
    (i.ear.submods as Record<string, unknown>).gpu0 = { 'ear.status': 'contraindicated' };
    expect(releasePolicyVariables(i).status).toBe('contraindicated');
    expect(releasePolicyVariables({ ...i, ear: { submods: {} } }).status).toBe('none');
  });

  it('fails closed: evaluation errors and non-bool results deny without quoting claims', async () => {
    const missing = await cel.evaluate('claims.nope.deeper == 1', input());
    expect(missing).toEqual({ allow: false, reason: 'the release policy could not be evaluated (fail closed)' });
    expect(await cel.evaluate("'yes'", input())).toMatchObject({ allow: false });
    expect(await cel.evaluate('false', input())).toEqual({ allow: false, reason: 'the release policy returned false' });
  });

  it('rejects expressions that do not compile with ERR_POLICY_INVALID', async () => {
    await expect(cel.validate('status ==')).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    await expect(cel.validate('')).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
  });
});
