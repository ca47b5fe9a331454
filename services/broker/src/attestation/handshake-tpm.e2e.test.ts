// The handshake with a real TPM 2.0 (swtpm on loopback, tpm2-tools): a persistent attestation
// key pinned by the policy, PCRs as reference values, the quote's qualifying data carrying
// SHA-256 of the runtime data. Release to the right PCRs; a replayed quote, a changed PCR and an
// unpinned attestation key are refused.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64Url } from '@custody/core';
import { defaultRegistry } from '@custody/attest';
import { TpmAttester } from '@custody/attester-service';
import { startSwtpm, type SwtpmInstance } from '@custody/attester-service/testing';
import { attestWith, codeOf, releaseWith, startHandshakeBroker, type HandshakeBroker } from '../testing/handshake.js';
import { buildRuntimeData } from './runtime-data.js';
import { fetchKey } from './workload-client.js';

const AK = '0x81010002';
const PCRS = [0, 7, 16];

describe('key release handshake over HTTP with TPM evidence (swtpm)', () => {
  let tpm: SwtpmInstance;
  let attester: TpmAttester;
  let b: HandshakeBroker;
  const material = randomBytes(32);

  beforeAll(async () => {
    tpm = await startSwtpm();
    const dir = mkdtempSync(join(tmpdir(), 'custody-ak-'));
    try {
      await tpm.tool('tpm2_createek', ['-c', `${dir}/ek.ctx`, '-G', 'rsa', '-u', `${dir}/ek.pub`]);
      await tpm.tool('tpm2_flushcontext', ['-t']);
      await tpm.tool('tpm2_createak', ['-C', `${dir}/ek.ctx`, '-c', `${dir}/ak.ctx`, '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', `${dir}/ak.pub`]);
      await tpm.tool('tpm2_flushcontext', ['-t']);
      await tpm.tool('tpm2_evictcontrol', ['-C', 'o', '-c', `${dir}/ak.ctx`, AK]);
      await tpm.tool('tpm2_flushcontext', ['-t']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    attester = new TpmAttester({ tcti: tpm.tcti, akHandle: AK, pcrs: PCRS });
    // The reference values: what this TPM measures now, and its attestation key.
    const probe = await defaultRegistry.verify({ evidence: await attester.collect(new Uint8Array(32)), now: new Date(), platform: 'tpm' });
    expect(probe.ok).toBe(true);
    const m = probe.claims!.measurements;
    b = await startHandshakeBroker({
      policy: `apiVersion: custody.dev/policy/v1
id: tpm-workload
version: 1
platforms:
  tpm:
    pcrs:
      sha256: { 0: ${m.pcr0}, 7: ${m.pcr7}, 16: ${m.pcr16} }
    signerRoots: [${probe.claims!.signer.rootSha256}]
`,
    });
    await b.admin.importKey({ name: 'model-key', type: 'aes-256', material, releasePolicy: `status == 'affirming' && platform == 'tpm' && claims.measurements.pcr16 == '${m.pcr16}'` });
  }, 120_000);

  afterAll(async () => {
    await b?.close();
    await attester?.close();
    await tpm?.stop();
  });

  it('releases the key to the measured TPM workload', async () => {
    const got = await fetchKey({ broker: b.url, tenant: 'acme', name: 'model-key', attester });
    expect(Buffer.from(got.material).equals(material)).toBe(true);
    expect(got).toMatchObject({ platform: 'tpm', status: 'affirming', key: { version: 1 } });
    const appraisal = b.ledger.events.find((e) => e.action === 'attest.appraise' && e.verdict === 'allow');
    expect(appraisal?.detail).toMatchObject({ platform: 'tpm', policy: 'tpm-workload:1' });
    expect(String(appraisal?.detail?.measurement)).toMatch(/^sha256:[0-9a-f]{64}$/);
  });

  it('refuses a quote replayed into another session', async () => {
    const a = await attestWith(b.workload, 'acme', attester);
    const fresh = await b.workload.challenge('acme');
    // Same TEE key, new nonce: the quote still carries the old runtime data digest.
    const runtimeData = buildRuntimeData(fromBase64Url(fresh.nonce), a.tee.recipient);
    expect(await codeOf(b.workload.attest({ session: fresh.session, evidence: a.evidence, runtimeData, platform: 'tpm' }))).toBe('ERR_EVIDENCE_NONCE');
  });

  it('refuses an attestation key the policy does not pin', async () => {
    const other = new TpmAttester({ tcti: tpm.tcti, keyAlgorithm: 'ecc', pcrs: PCRS });
    try {
      expect(await codeOf(attestWith(b.workload, 'acme', other))).toBe('ERR_POLICY_SIGNER');
    } finally {
      await other.close();
    }
  });

  it('refuses the workload once a measured PCR changes (runs last: it extends PCR 16)', async () => {
    const before = await attestWith(b.workload, 'acme', attester);
    await tpm.tool('tpm2_pcrextend', [`16:sha256=${'5a'.repeat(32)}`]);
    expect(await codeOf(attestWith(b.workload, 'acme', attester))).toBe('ERR_EVIDENCE_MEASUREMENT');
    // A session attested before the change still holds its EAR until it expires (the EAR is a
    // ticket for that measurement); a fresh quote is needed for any new session.
    expect(Buffer.from((await releaseWith(b.workload, 'acme', before, 'model-key')).material).equals(material)).toBe(true);
  });
});
