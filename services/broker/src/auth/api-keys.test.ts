// API key issue: labels are printable text (they are printed in listings), and a refused label stores nothing.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { embeddedBackend, type Harness } from '../testing/harness.js';
import { issueApiKey } from './api-keys.js';

describe('issueApiKey labels', () => {
  const backend = embeddedBackend();
  let h: Harness;
  beforeEach(async () => {
    h = await backend.open();
  });
  afterEach(async () => h.close());

  const issue = (label: string) => issueApiKey(h.metadata, { tenant: 'acme', role: 'workload', label, createdBy: 'test', now: 0 });

  it.each([
    ['ESC', 'x\u001b[2Jforged'],
    ['BEL', 'x\u0007'],
    ['newline', 'x\nd828cc4d9cdc91f6  admin     revoked  forged'],
    ['CR', 'x\rforged'],
    ['NUL', 'x\u0000'],
    ['DEL', 'x\u007f'],
    ['C1 CSI', 'x\u009b2J'],
    ['NEL', 'x\u0085'],
    ['right-to-left override', 'x\u202eyek'],
    ['isolate', 'x\u2067'],
    ['line separator', 'x\u2028forged'],
  ])('refuses a label with %s (ERR_INPUT_MALFORMED), and stores nothing', async (_, label) => {
    await expect(issue(label)).rejects.toMatchObject({ code: 'ERR_INPUT_MALFORMED' });
    expect(await h.metadata.listApiKeys('acme')).toEqual([]);
  });

  it('takes printable labels, any script', async () => {
    for (const label of ['gateway replica 1', 'é, 日本, ключ', 'a'.repeat(200), '']) await issue(label);
    expect((await h.metadata.listApiKeys('acme')).map((k) => k.label)).toHaveLength(4);
  });
});
