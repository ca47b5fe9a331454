// The tenants file: limits merged over the policy-wide default, and custom PII category names
// that could not be told apart from mask tokens refused at load.
import { describe, expect, it } from 'vitest';
import { MaskVault } from '@custody/policy';
import { apiKeyDigest, mergeLimits, TenantDirectory, type GatewayPolicyDocument, type TenantConfig } from './tenants.js';

const tenant = (over: Partial<TenantConfig> = {}): TenantConfig => ({ id: 't', apiKeySha256: apiKeyDigest('sk-tenant-t-0001'), ...over });
const load = (doc: Partial<GatewayPolicyDocument>) => TenantDirectory.create({ id: 'p', version: 1, tenants: [tenant()], ...doc });

describe('limits: a tenant over the policy-wide default', () => {
  const table: { name: string; policy?: TenantConfig['limits']; own?: TenantConfig['limits']; want: TenantConfig['limits'] }[] = [
    { name: 'neither', want: undefined },
    { name: 'default only', policy: { concurrent: 3, perMinute: 60 }, want: { concurrent: 3, perMinute: 60 } },
    { name: 'own only', own: { perMinute: 10, burst: 2 }, want: { perMinute: 10, burst: 2 } },
    { name: 'own rate keeps the default cap', policy: { concurrent: 3 }, own: { perMinute: 6000 }, want: { concurrent: 3, perMinute: 6000 } },
    { name: 'own cap keeps the default rate and burst', policy: { perMinute: 60, burst: 5 }, own: { concurrent: 1 }, want: { concurrent: 1, perMinute: 60, burst: 5 } },
    { name: 'own cap wins', policy: { concurrent: 3 }, own: { concurrent: 50 }, want: { concurrent: 50 } },
    // The default's burst was sized for the default's rate: an own rate brings its own (default its perMinute).
    { name: 'own rate brings its own burst', policy: { concurrent: 3, perMinute: 60, burst: 5 }, own: { perMinute: 6000 }, want: { concurrent: 3, perMinute: 6000 } },
    { name: 'own rate and burst', policy: { perMinute: 60, burst: 5 }, own: { perMinute: 600, burst: 100 }, want: { perMinute: 600, burst: 100 } },
  ];
  for (const row of table) {
    it(row.name, async () => {
      expect(mergeLimits(row.policy, row.own)).toEqual(row.want);
      const dir = await load({ ...(row.policy ? { limits: row.policy } : {}), tenants: [tenant(row.own ? { limits: row.own } : {})] });
      const t = dir.authenticate('Bearer sk-tenant-t-0001');
      if (row.want === undefined) expect(t.limits).toBeUndefined();
      else expect(t.limits).toEqual(row.want);
    });
  }
});

describe('custom PII categories', () => {
  it('a name ending in _<digits> is refused, on input and on output (its [NAME_2] would read as a mask token)', async () => {
    // Why: what such a category redacts has the shape the restorer turns back into a masked value.
    const vault = new MaskVault();
    const token = vault.tokenFor('acct', 'the real value');
    expect(token).toBe('[ACCT_1]');
    expect(vault.restore('[ACCT_1]')).toBe('the real value');
    for (const category of ['acct_1', 'acct_2', 'a_0', 'record_number_12']) {
      const custom = [{ category, pattern: 'X-[0-9]{4}' }];
      await expect(load({ tenants: [tenant({ pii: { custom } })] })).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
      await expect(load({ tenants: [tenant({ output: { pii: { actions: { [category]: 'redact' }, custom } } })] })).rejects.toMatchObject({ code: 'ERR_POLICY_INVALID' });
    }
  });

  it('digits elsewhere in the name are fine', async () => {
    for (const category of ['acct2', 'acct_v2', 'ipv4_address', 'a1b2']) {
      const custom = [{ category, pattern: 'X-[0-9]{4}' }];
      const dir = await load({ tenants: [tenant({ pii: { custom }, output: { pii: { actions: { [category]: 'redact' }, custom } } })] });
      const t = dir.authenticate('Bearer sk-tenant-t-0001');
      expect(t.output?.actionFor(category)).toBe('redact');
    }
  });
});
