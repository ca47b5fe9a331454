// A release policy changed while a release is in flight is in force for that release, as a
// revocation is: the release restarts under the new policy (here: none, so nothing is released).
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import { attestWith, codeOf, releaseWith, simPolicy, startHandshakeBroker, type HandshakeBroker } from '../testing/handshake.js';

const GOOD = 'a1'.repeat(48);
const RELEASE_POLICY = `status == 'affirming' && platform == 'sim' && claims.measurements.measurement == '${GOOD}'`;

describe('release policy change during an in-flight release', () => {
  let b: HandshakeBroker;
  const dk = randomBytes(32);
  beforeAll(async () => {
    b = await startHandshakeBroker({ policy: simPolicy([GOOD]) });
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material: dk, releasePolicy: RELEASE_POLICY });
  });
  afterAll(async () => b?.close());

  it('a policy removed before the release answers stops it (ERR_KEY_NO_RELEASE_POLICY)', async () => {
    const a = await attestWith(b.workload, 'acme', new SimAttester({ measurements: { measurement: GOOD } }));
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let reached!: () => void;
    const atAudit = new Promise<void>((r) => (reached = r));
    b.ledger.beforeAppend = async (e) => {
      if (e.action === 'key.release' && e.verdict === 'allow') {
        reached();
        await gate;
      }
    };
    const release = releaseWith(b.workload, 'acme', a, 'dk');
    await atAudit;
    // The admin removes the policy ("never release") and gets a 200 back before the release answers.
    const changed = await b.admin.setReleasePolicy('dk', null);
    expect(changed.releasePolicy).toBeNull();
    b.ledger.beforeAppend = undefined;
    open();
    expect(await codeOf(release)).toBe('ERR_KEY_NO_RELEASE_POLICY');
  });
});
