// The example in docs/gateway-policy.md is a policy the gateway loads, and behaves as documented.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { repoRoot } from '../../../../test/vectors.js';
import { applyInputPolicy } from './policy.js';
import { TenantDirectory } from './tenants.js';

const doc = readFileSync(`${repoRoot}/docs/gateway-policy.md`, 'utf8');
const example = /```yaml\n([\s\S]*?)```/.exec(doc)![1]!;
const enc = new TextEncoder();

describe('docs/gateway-policy.md', () => {
  it('its example loads and behaves as the page says', async () => {
    const dir = await TenantDirectory.create(example);
    expect(dir.policyVersion).toMatch(/^custody:gateway-policy:acme-gateway:3:sha256:[0-9a-f]{64}$/);
    const acme = dir.authenticate('Bearer sk-acme-example-key-0001');
    expect(acme.id).toBe('acme');
    expect(acme.limits).toEqual({ concurrent: 8, perMinute: 600, burst: 50 });
    expect(acme.output?.actionFor('payment_card')).toBe('redact');
    expect(acme.output?.actionFor('email')).toBe('allow');
    const run = (content: string, stream = false) => {
      const body = { model: 'custody-demo', stream, messages: [{ role: 'user', content }] };
      return applyInputPolicy('chat.completions', body, enc.encode(JSON.stringify(body)), acme, { model: 'custody-demo', stream });
    };
    expect(new TextDecoder().decode(run('mail ann@example.com about MRN 00123456').body)).toContain('mail [EMAIL_1] about [RECORD_NUMBER]');
    expect(() => run('card 4111 1111 1111 1111')).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_DENIED' }) as Error);
    expect(() => run('about MRN 00123456', true)).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_DENIED', detail: { rule: 'no-records-in-streams' } }) as Error);
  });
});
