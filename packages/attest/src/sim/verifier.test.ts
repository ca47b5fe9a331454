import { describe, expect, it } from 'vitest';
import { canonicalize, fromBase64Url, fromHex, toBase64Url, toHex, utf8 } from '@custody/core';
import { createSimEvidence, parseSimEvidence, SIM_DEV_SEED } from './format.js';
import { SIMULATED_WARNING, simVerifier } from './verifier.js';

const NOW = new Date('2025-03-01T12:00:00Z');
const MEASUREMENT = 'ab'.repeat(48);
const REPORT_DATA = fromHex('11'.repeat(64));
const NONCE = fromHex('0102030405060708');

const make = (extra: Partial<Parameters<typeof createSimEvidence>[0]> = {}) =>
  createSimEvidence({ measurements: { measurement: MEASUREMENT }, reportData: REPORT_DATA, issuedAt: NOW, ...extra });

function edit(ev: Uint8Array, f: (o: Record<string, unknown>) => void): Uint8Array {
  const o = JSON.parse(new TextDecoder().decode(ev)) as Record<string, unknown>;
  f(o);
  return utf8(JSON.stringify(o));
}

describe('sim evidence (custody-sim/v1)', () => {
  it('round-trips: created evidence verifies and is labelled SIMULATED everywhere', async () => {
    const ev = await make({ nonce: NONCE });
    expect(simVerifier.detect(ev)).toBe(true);
    const r = await simVerifier.verify({ evidence: ev, now: NOW, nonce: NONCE });
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.platform).toBe('sim');
    expect(r.warnings).toContain(SIMULATED_WARNING);
    expect(r.steps.map((s) => s.name)).toEqual(['parse', 'signature', 'nonce']);
    for (const s of r.steps) expect(s.detail).toMatch(/SIMULATED/);
    expect(r.claims).toMatchObject({ platform: 'sim', simulated: true, measurements: { measurement: MEASUREMENT }, reportData: toHex(REPORT_DATA), debug: false, nonce: toHex(NONCE) });
    expect(r.claims!.signer.rootSha256).toMatch(/^[0-9a-f]{64}$/);
  });

  it('is deterministic for a given seed and time (Ed25519 is deterministic)', async () => {
    expect(toHex(await make())).toBe(toHex(await make()));
    expect(toHex(await make({ seed: new Uint8Array(32).fill(9) }))).not.toBe(toHex(await make()));
  });

  it('signs the RFC 8785 canonical JSON of every field but the signature', async () => {
    const ev = parseSimEvidence(await make());
    const { signature, ...rest } = ev;
    const pub = await crypto.subtle.importKey('raw', fromBase64Url(ev.publicKey), { name: 'Ed25519' }, false, ['verify']);
    expect(await crypto.subtle.verify({ name: 'Ed25519' }, pub, fromBase64Url(signature), utf8(canonicalize(rest)))).toBe(true);
  });

  it('warns on every result, also when parsing fails', async () => {
    const r = await simVerifier.verify({ evidence: utf8('{"format":"custody-sim/v1"}'), now: NOW });
    expect(r.ok).toBe(false);
    expect(r.warnings).toContain(SIMULATED_WARNING);
    expect(r.errors[0]!.code).toBe('ERR_INPUT_MALFORMED');
  });

  it('checks the nonce against reportData when the evidence has no separate nonce', async () => {
    const ev = await make({ reportData: NONCE });
    expect((await simVerifier.verify({ evidence: ev, now: NOW, nonce: NONCE })).ok).toBe(true);
    const r = await simVerifier.verify({ evidence: ev, now: NOW, nonce: fromHex('ff') });
    expect(r.errors.map((e) => e.code)).toEqual(['ERR_EVIDENCE_NONCE']);
  });

  it('reports debug evidence in claims and warnings without failing (policy decides)', async () => {
    const r = await simVerifier.verify({ evidence: await make({ debug: true }), now: NOW });
    expect(r.ok).toBe(true);
    expect(r.claims!.debug).toBe(true);
    expect(r.warnings.some((w) => w.includes('debug'))).toBe(true);
  });

  it('pins the key when roots are given (raw key, SPKI DER or PEM)', async () => {
    const ev = await make();
    const pub = fromBase64Url(parseSimEvidence(ev).publicKey);
    const spki = new Uint8Array([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00, ...pub]);
    const pem = utf8(`-----BEGIN PUBLIC KEY-----\n${Buffer.from(spki).toString('base64')}\n-----END PUBLIC KEY-----\n`);
    for (const root of [pub, spki, pem]) expect((await simVerifier.verify({ evidence: ev, now: NOW, roots: [root] })).ok).toBe(true);
    const other = await simVerifier.verify({ evidence: ev, now: NOW, roots: [new Uint8Array(32).fill(1)] });
    expect(other.errors.map((e) => e.code)).toEqual(['ERR_CERT_ROOT_UNTRUSTED']);
  });

  const twins: [string, (o: Record<string, unknown>) => void, string][] = [
    ['a changed measurement', (o) => ((o.measurements as Record<string, string>).measurement = 'ac'.repeat(48)), 'ERR_EVIDENCE_SIGNATURE'],
    ['a changed reportData', (o) => (o.reportData = '22'.repeat(64)), 'ERR_EVIDENCE_SIGNATURE'],
    ['a flipped debug flag', (o) => (o.debug = true), 'ERR_EVIDENCE_SIGNATURE'],
    ['a flipped signature byte', (o) => {
      const s = fromBase64Url(o.signature as string);
      s[0] = s[0]! ^ 1;
      o.signature = toBase64Url(s);
    }, 'ERR_EVIDENCE_SIGNATURE'],
    ['another key', (o) => (o.publicKey = toBase64Url(new Uint8Array(32).fill(3))), 'ERR_EVIDENCE_SIGNATURE'],
    ['an unknown field', (o) => (o.extra = 1), 'ERR_INPUT_MALFORMED'],
    ['uppercase hex', (o) => ((o.measurements as Record<string, string>).measurement = MEASUREMENT.toUpperCase()), 'ERR_INPUT_MALFORMED'],
    ['an oversized reportData', (o) => (o.reportData = '00'.repeat(65)), 'ERR_INPUT_TOO_LARGE'],
    ['another format', (o) => (o.format = 'custody-sim/v2'), 'ERR_INPUT_UNSUPPORTED'],
  ];
  for (const [name, f, code] of twins) {
    it(`rejects ${name} with ${code}`, async () => {
      const r = await simVerifier.verify({ evidence: edit(await make(), f), now: NOW });
      expect(r.ok).toBe(false);
      expect(r.errors.map((e) => e.code)).toEqual([code]);
    });
  }

  it('publishes its development seed (32 bytes) so nobody mistakes sim evidence for a secret', () => {
    expect(SIM_DEV_SEED.length).toBe(32);
  });

  it('refuses to create what it cannot read', async () => {
    await expect(make({ measurements: { 'not a name': '00' } })).rejects.toMatchObject({ code: 'ERR_INPUT_MALFORMED' });
    await expect(make({ reportData: new Uint8Array(65) })).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
  });
});
