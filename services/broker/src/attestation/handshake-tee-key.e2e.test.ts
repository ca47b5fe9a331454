// Small-order X25519 TEE keys (RFC 7748 section 6.1, RFC 9180 section 7.1.4) refused at the
// attestation step over HTTP: ERR_KEY_RECIPIENT (400), an audited denial, and no session bound
// to the key, for canonical and non-canonical encodings of the small-order points.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fromBase64Url, type Bytes } from '@custody/core';
import { SimAttester } from '@custody/attester-service';
import { codeOf, simPolicy, startHandshakeBroker, statusOf, type HandshakeBroker } from '../testing/handshake.js';
import { buildRuntimeData, runtimeDigest } from './runtime-data.js';
import { generateTeeKeyPair } from './workload-client.js';

const GOOD = 'a1'.repeat(48);
const P = (1n << 255n) - 19n;

/** A u-coordinate as X25519 encodes it: 32 bytes, little-endian. */
function u(n: bigint): Bytes {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++, n >>= 8n) out[i] = Number(n & 0xffn);
  return out;
}

const SMALL_ORDER: Array<[string, Bytes]> = [
  ['u = 0', u(0n)],
  ['u = 1 (order 4)', u(1n)],
  ['an order-8 point', u(325606250916557431795983626356110631294008115727848805560023387167927233504n)],
  ['the other order-8 point', u(39382357235489614581723060781553021112529911719440698176882885853963445705823n)],
  ['u = p - 1 (order 2)', u(P - 1n)],
  ['u = p (0, not reduced)', u(P)],
  ['u = p + 1 (1, not reduced)', u(P + 1n)],
  ['u = 0 with the top bit set', u(1n << 255n)],
];

describe('small-order X25519 TEE keys', () => {
  let b: HandshakeBroker;
  beforeAll(async () => {
    b = await startHandshakeBroker({ policy: simPolicy([GOOD]) });
  });
  afterAll(async () => b?.close());

  async function present(publicKey: Bytes) {
    const c = await b.workload.challenge('acme');
    const runtimeData = buildRuntimeData(fromBase64Url(c.nonce), { curve: 'X25519', publicKey });
    const evidence = await new SimAttester({ measurements: { measurement: GOOD } }).collect(await runtimeDigest('sim', runtimeData));
    return { c, attest: () => b.workload.attest({ session: c.session, evidence, runtimeData, platform: 'sim' }) };
  }

  it.each(SMALL_ORDER)('refuses %s up front with ERR_KEY_RECIPIENT, audited, with nothing bound', async (_name, key) => {
    const p = await present(key);
    expect(await codeOf(p.attest())).toBe('ERR_KEY_RECIPIENT');
    const session = await b.started.broker.metadata.getSession(p.c.session);
    expect(session).toMatchObject({ binding: null });
    expect(session!.state).not.toBe('attested');
    const denial = b.ledger.events.find((e) => e.action === 'attest.appraise' && e.detail?.session === p.c.session);
    expect(denial).toMatchObject({ verdict: 'deny', reason: 'ERR_KEY_RECIPIENT' });
    // Refused before the evidence was looked at.
    expect(denial!.detail).not.toHaveProperty('evidenceDigest');
  });

  it('answers 400, and still attests an ordinary X25519 key', async () => {
    expect(await statusOf((await present(u(0n))).attest())).toBe(400);
    const ok = await present(generateTeeKeyPair('X25519').recipient.publicKey);
    expect(await ok.attest()).toMatchObject({ status: 'affirming', platform: 'sim' });
  });
});
