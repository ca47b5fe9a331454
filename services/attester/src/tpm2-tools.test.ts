// How runTpm2Tool classes a command's failure, with a shell standing in for the tool (no TPM
// needed): killed at its deadline, killed for output past its buffer, missing.
import { describe, expect, it } from 'vitest';
import { runTpm2Tool } from './tpm2-tools.js';

describe('runTpm2Tool failures', () => {
  it('a command killed at its deadline is ERR_ATTESTER_UNAVAILABLE with detail.timedOut, naming it', async () => {
    // (The appended `--tcti=...` becomes the shell's $0.)
    await expect(runTpm2Tool('sh', ['-c', 'sleep 30'], { tcti: 'x', timeoutMs: 300 })).rejects.toMatchObject({
      code: 'ERR_ATTESTER_UNAVAILABLE',
      message: expect.stringContaining('sh got no answer from the TPM within 300 ms'),
      detail: { tool: 'sh', timedOut: true },
    });
  });

  it('a command killed for output past its buffer is ERR_ATTESTER_FAILED, not a timeout', async () => {
    // `yes` prints for ever: past the 4 MiB buffer well within the deadline.
    const e = await runTpm2Tool('sh', ['-c', 'yes'], { tcti: 'x', timeoutMs: 60_000 }).then(
      () => undefined,
      (err: unknown) => err as { code: string; detail?: Record<string, unknown> },
    );
    expect(e?.code).toBe('ERR_ATTESTER_FAILED');
    expect(e?.detail?.timedOut).toBeUndefined();
  });

  it('a missing tool is ERR_ATTESTER_UNAVAILABLE', async () => {
    await expect(runTpm2Tool('tpm2_no_such_tool', [], { tcti: 'x' })).rejects.toMatchObject({ code: 'ERR_ATTESTER_UNAVAILABLE', detail: { tool: 'tpm2_no_such_tool' } });
  });
});
