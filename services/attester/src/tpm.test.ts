import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64, fromHex, secureRandom, toHex, utf8 } from '@custody/core';
import { tpmVerifier } from '@custody/attest';
import { TpmAttester } from './tpm.js';
import { startSwtpm, type SwtpmInstance } from './testing/swtpm.js';

const NOW = new Date('2025-06-01T00:00:00Z');
type QuoteJson = { format: string; ak_public: string; quote: string; signature: string; pcrs: { bank: string; values: Record<string, string> } };
const parse = (b: Uint8Array): QuoteJson => JSON.parse(new TextDecoder().decode(b)) as QuoteJson;

describe('TPM attester end to end with swtpm', () => {
  let tpm: SwtpmInstance;
  const attesters: TpmAttester[] = [];
  const attester = (o: ConstructorParameters<typeof TpmAttester>[0] = {}): TpmAttester => {
    const a = new TpmAttester({ tcti: tpm.tcti, ...o });
    attesters.push(a);
    return a;
  };

  beforeAll(async () => {
    tpm = await startSwtpm();
  });
  afterAll(async () => {
    for (const a of attesters) await a.close();
    await tpm?.stop();
  });

  for (const keyAlgorithm of ['rsa', 'ecc'] as const) {
    it(`${keyAlgorithm} AK: collects a quote with a nonce that verifies`, async () => {
      const a = attester({ keyAlgorithm });
      const nonce = secureRandom(32);
      const ev = await a.collect(nonce);
      expect(parse(ev).format).toBe('custody-tpm-quote/v1');
      const r = await tpmVerifier.verify({ evidence: ev, now: NOW, nonce });
      expect(r.errors).toEqual([]);
      expect(r.ok).toBe(true);
      expect(r.claims!.reportData).toBe(toHex(nonce));
      expect(Object.keys(r.claims!.measurements)).toHaveLength(24);
      expect(r.claims!.platformClaims.akKey).toBe(keyAlgorithm === 'rsa' ? 'rsa-2048' : 'ecc-p256');
      expect(r.claims!.platformClaims.akSource).toBe('tpm2b-public');
      expect(r.steps.find((s) => s.name === 'signature')!.detail).toMatch(/restricted signing key/);
    });

    it(`${keyAlgorithm} AK: a replayed quote fails for a new nonce`, async () => {
      const a = attester({ keyAlgorithm });
      const old = secureRandom(16);
      const ev = await a.collect(old);
      const fresh = secureRandom(16);
      const r = await tpmVerifier.verify({ evidence: ev, now: NOW, nonce: fresh });
      expect(r.ok).toBe(false);
      expect(r.errors.map((e) => e.code)).toEqual(['ERR_EVIDENCE_NONCE']);
    });
  }

  it('a PCR changed after the quote: old quote + current PCR values fails, the new quote shows the change', async () => {
    const a = attester();
    const nonce = secureRandom(32);
    const before = await a.collect(nonce);
    await tpm.tool('tpm2_pcrextend', [`16:sha256=${'5a'.repeat(32)}`]);
    const after = await a.collect(nonce);
    // Presenting the earlier quote with the PCR values as they are now: the digest gives it away.
    const spliced = { ...parse(before), pcrs: parse(after).pcrs };
    const r = await tpmVerifier.verify({ evidence: utf8(JSON.stringify(spliced)), now: NOW, nonce });
    expect(r.ok).toBe(false);
    expect(r.errors.map((e) => e.code)).toEqual(['ERR_TPM_PCR_DIGEST']);
    // The fresh quote verifies, and its PCR 16 is not the one a reference taken before would expect.
    const rBefore = await tpmVerifier.verify({ evidence: before, now: NOW, nonce });
    const rAfter = await tpmVerifier.verify({ evidence: after, now: NOW, nonce });
    expect(rBefore.ok && rAfter.ok).toBe(true);
    expect(rAfter.claims!.measurements.pcr16).not.toBe(rBefore.claims!.measurements.pcr16);
    expect(rAfter.claims!.measurements.pcr0).toBe(rBefore.claims!.measurements.pcr0);
  });

  it('reuses one AK across collects and serialises concurrent ones', async () => {
    const a = attester({ keyAlgorithm: 'ecc', pcrs: [0, 7, 16] });
    const nonces = [secureRandom(8), secureRandom(8), secureRandom(8)];
    const evs = await Promise.all(nonces.map((n) => a.collect(n)));
    const results = await Promise.all(evs.map((ev, i) => tpmVerifier.verify({ evidence: ev, now: NOW, nonce: nonces[i]! })));
    for (const r of results) expect(r.ok).toBe(true);
    expect(new Set(results.map((r) => r.claims!.signer.rootSha256)).size).toBe(1);
    expect(Object.keys(results[0]!.claims!.measurements)).toEqual(['pcr0', 'pcr7', 'pcr16']);
  });

  it('quotes with a persistent AK handle (as on Azure vTPMs) and with empty report data', async () => {
    // Make a persistent AK the way a provisioning step would.
    const dir = await mkdtemp(join(tmpdir(), 'custody-ak-'));
    try {
      await tpm.tool('tpm2_createek', ['-c', `${dir}/ek.ctx`, '-G', 'rsa', '-u', `${dir}/ek.pub`]);
      await tpm.tool('tpm2_flushcontext', ['-t']);
      await tpm.tool('tpm2_createak', ['-C', `${dir}/ek.ctx`, '-c', `${dir}/ak.ctx`, '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', `${dir}/ak.pub`]);
      await tpm.tool('tpm2_flushcontext', ['-t']);
      await tpm.tool('tpm2_evictcontrol', ['-C', 'o', '-c', `${dir}/ak.ctx`, '0x81010002']);
      await tpm.tool('tpm2_flushcontext', ['-t']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
    const a = attester({ akHandle: '0x81010002' });
    const ev = await a.collect(new Uint8Array());
    const r = await tpmVerifier.verify({ evidence: ev, now: NOW, nonce: new Uint8Array() });
    expect(r.ok).toBe(true);
    expect(r.claims!.reportData).toBe('');
    expect(fromBase64(parse(ev).ak_public).length).toBeGreaterThan(256);
  });

  it('a TPM that stops answering mid-quote is ERR_ATTESTER_UNAVAILABLE at one deadline, naming tpm2_quote (no flush or key re-creation after it); it quotes again once it answers', async () => {
    const a = attester({ timeoutMs: 1500 });
    const first = await a.collect(secureRandom(32));
    process.kill(tpm.pid, 'SIGSTOP');
    try {
      await expect(a.collect(secureRandom(32))).rejects.toMatchObject({ code: 'ERR_ATTESTER_UNAVAILABLE', message: expect.stringContaining('tpm2_quote'), detail: { tool: 'tpm2_quote', timedOut: true } });
    } finally {
      process.kill(tpm.pid, 'SIGCONT');
    }
    const again = parse(await a.collect(secureRandom(32)));
    expect(again.ak_public).toBe(parse(first).ak_public);
  });

  it('rejects report data over 64 bytes before touching the TPM', async () => {
    await expect(attester().collect(new Uint8Array(65))).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
  });

  it('reports an unreachable TPM as unavailable', async () => {
    const a = new TpmAttester({ tcti: 'swtpm:host=127.0.0.1,port=1' });
    await expect(a.collect(fromHex('00'))).rejects.toMatchObject({ code: 'ERR_ATTESTER_UNAVAILABLE' });
    await a.close();
  });

  it('rejects bad options', () => {
    expect(() => new TpmAttester({ pcrs: [24] })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
    expect(() => new TpmAttester({ akHandle: '0x01000000' })).toThrowError(expect.objectContaining({ code: 'ERR_USAGE' }) as Error);
  });
});
