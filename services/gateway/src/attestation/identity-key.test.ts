// The identity key flow against the in-process development broker (LocalAppraisalBroker): its
// key-release handshake with the protocol's {nonce, tee-pubkey} runtime data, versions picked
// up at re-attestation, revocation closing the routes, and a wrapped key for another name.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { CustodyError } from '@custody/core';
import { startTestGateway, type TestGateway } from '../testing/index.js';

let gw: TestGateway | undefined;
afterEach(async () => {
  await gw?.close();
  gw = undefined;
});

async function rejection(p: Promise<unknown>): Promise<{ code?: string; detail?: Record<string, unknown> }> {
  try {
    await p;
  } catch (e) {
    return e as { code?: string; detail?: Record<string, unknown> };
  }
  throw new Error('expected a rejection');
}

describe('identity key with the development broker', () => {
  it('attests, picks up a rotated version at the next attestation, and closes when the key is revoked', async () => {
    gw = await startTestGateway({ brokerKeys: { ident: randomBytes(32) }, gateway: { identityKey: { name: 'ident' } } });
    const g = gw.gateway;
    expect(g.attestation.state).toBe('attested');
    expect(g.keys.identity).toEqual({ name: 'ident', version: 1 });
    const first = g.attestation.snapshot!;
    expect(first.keyConfigs.map((k) => k.keyId)).toEqual([1]);
    // Same version: a re-attestation keeps the keys.
    const same = await g.attestation.reattest();
    expect(same.bundle.ohttpKeys).toBe(first.bundle.ohttpKeys);
    expect(same.bundle.receiptKey).toEqual(first.bundle.receiptKey);
    expect(gw.broker!.rotateKey('ident', randomBytes(32))).toBe(2);
    const rotated = await g.attestation.reattest();
    expect(rotated.keyConfigs.map((k) => k.keyId)).toEqual([2, 1]);
    expect(rotated.bundle.receiptKey.x).not.toBe(first.bundle.receiptKey.x);
    gw.broker!.revokeKey('ident');
    const e = await rejection(g.attestation.reattest());
    expect(e.code).toBe('ERR_GATEWAY_IDENTITY_KEY');
    expect(e.detail).toMatchObject({ code: 'ERR_KEY_REVOKED' });
    expect(g.attestation.state).toBe('revoked');
    expect(g.keys.ohttp.active).toEqual([]);
  });

  it('after an operator revocation it asks the broker for nothing: the identity secret is not released again', async () => {
    gw = await startTestGateway({ brokerKeys: { ident: randomBytes(32) }, gateway: { identityKey: { name: 'ident' } } });
    const broker = gw.broker!;
    const calls: string[] = [];
    const release = broker.releaseKey.bind(broker);
    const attest = broker.attest.bind(broker);
    broker.releaseKey = (name, req) => (calls.push(`release ${name}`), release(name, req));
    broker.attest = (req) => (calls.push('attest'), attest(req));
    gw.gateway.attestation.revoke('operator');
    expect(gw.gateway.keys.ohttp.active).toEqual([]);
    expect(await rejection(gw.gateway.attestation.reattest())).toMatchObject({ code: 'ERR_GATEWAY_ATTESTATION_REVOKED' });
    expect(calls).toEqual([]);
    expect(gw.gateway.keys.identity).toBeUndefined();
    expect(gw.gateway.attestation.state).toBe('revoked');
  });

  it('refuses a rolled-back identity key version at every round, also after dropping its keys', async () => {
    const v1 = randomBytes(32);
    gw = await startTestGateway({ brokerKeys: { ident: v1 }, gateway: { identityKey: { name: 'ident' } } });
    const g = gw.gateway;
    expect(gw.broker!.rotateKey('ident', randomBytes(32))).toBe(2);
    await g.attestation.reattest();
    expect(g.keys.identity).toEqual({ name: 'ident', version: 2 });
    // The broker's key store is restored from a backup taken before the rotation.
    (gw.broker as unknown as { held: Map<string, { material: Uint8Array; version: number; revoked: boolean }> }).held.set('ident', { material: v1, version: 1, revoked: false });
    for (let round = 0; round < 2; round++) {
      expect(await rejection(g.attestation.reattest())).toMatchObject({ code: 'ERR_GATEWAY_IDENTITY_KEY', detail: { code: 'ERR_KEY_VERSION' } });
      expect(g.attestation.state).toBe('revoked');
      expect(g.keys.identity).toBeUndefined();
      expect(g.keys.ohttp.active).toEqual([]);
    }
  });

  it('does not serve when the broker holds no such key', async () => {
    gw = await startTestGateway({ brokerKeys: { other: randomBytes(32) }, gateway: { identityKey: { name: 'ident' } } });
    expect(gw.gateway.attestation.state).toBe('revoked');
    const e = await rejection(gw.gateway.attestation.reattest());
    expect(e).toMatchObject({ code: 'ERR_GATEWAY_IDENTITY_KEY', detail: { code: 'ERR_KEY_NOT_FOUND' } });
  });

  it('refuses an identity secret shorter than 32 bytes', async () => {
    gw = await startTestGateway({ brokerKeys: { ident: randomBytes(16) }, gateway: { identityKey: { name: 'ident' } } });
    expect(gw.gateway.attestation.state).toBe('revoked');
    expect(await rejection(gw.gateway.attestation.reattest())).toMatchObject({ code: 'ERR_GATEWAY_IDENTITY_KEY', detail: { code: 'ERR_KEY_MATERIAL' } });
  });

  it('a broker outage during re-attestation is not a refusal: the gateway keeps serving until its EAR lapses', async () => {
    gw = await startTestGateway({ brokerKeys: { ident: randomBytes(32) }, gateway: { identityKey: { name: 'ident' } } });
    const broker = gw.broker!;
    broker.releaseKey = () => Promise.reject(new CustodyError('ERR_STORE_UNAVAILABLE'));
    const e = await rejection(gw.gateway.attestation.reattest());
    expect(e).toMatchObject({ code: 'ERR_GATEWAY_IDENTITY_KEY', detail: { code: 'ERR_STORE_UNAVAILABLE' } });
    expect(gw.gateway.attestation.state).toBe('attested');
    expect(gw.gateway.keys.identity).toEqual({ name: 'ident', version: 1 });
  });

  it('refuses an envelope that names another key', async () => {
    gw = await startTestGateway({ brokerKeys: { ident: randomBytes(32), decoy: randomBytes(32) }, gateway: { identityKey: { name: 'ident' } } });
    const broker = gw.broker!;
    const real = broker.releaseKey.bind(broker);
    broker.releaseKey = (_name, req) => real('decoy', req);
    expect(await rejection(gw.gateway.attestation.reattest())).toMatchObject({ code: 'ERR_GATEWAY_IDENTITY_KEY', detail: { code: 'ERR_KEY_UNWRAP' } });
    expect(gw.gateway.attestation.state).toBe('revoked');
  });
});
