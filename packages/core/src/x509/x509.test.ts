import { describe, expect, it } from 'vitest';
import { readVector } from '../../../../test/vectors.js';
import { readCertificates } from '../pem.js';
import { X509Certificate } from './certificate.js';
import { X509Crl } from './crl.js';
import { verifyCertificateChain } from './chain.js';
import { decodeTime, encodeTlv, parseDer } from './der.js';

const certs = (rel: string) => readCertificates(readVector(rel)).map((d) => new X509Certificate(d));

describe('X509Certificate on real vendor certificates', () => {
  it('parses the AMD Milan ASK/ARK (RSA-4096, RSASSA-PSS) and validates ASK -> ARK', async () => {
    const [ask, ark] = certs('attestation/sev-snp/amd-roots/ask_ark_milan.pem');
    expect(ark!.subject.text).toContain('ARK-Milan');
    expect(ark!.signatureAlgorithm).toEqual({ kind: 'rsa-pss', hash: 'SHA-384', saltLength: 48 });
    expect(ark!.publicKey.bits).toBe(4096);
    expect((await ark!.sha256()).startsWith('69d063b4')).toBe(true);
    const r = await verifyCertificateChain({ leaf: ask!, roots: [ark!], now: new Date('2024-01-01T00:00:00Z') });
    expect(r.chain.map((c) => c.subject.attributes.find((a) => a.type === 'CN')?.value)).toEqual(['SEV-Milan', 'ARK-Milan']);
  });

  it('validates a real VCEK (ECDSA P-384 key, serial 0) to the Milan ARK', async () => {
    const vcek = new X509Certificate(readVector('attestation/sev-snp/go-sev-guest/vcek.testcer'));
    const [ask, ark] = certs('attestation/sev-snp/amd-roots/ask_ark_milan.pem');
    expect(vcek.publicKey.namedCurve).toBe('P-384');
    const r = await verifyCertificateChain({ leaf: vcek, intermediates: [ask!], roots: [ark!], now: new Date('2023-06-01T00:00:00Z') });
    expect(r.chain).toHaveLength(3);
  });

  it('rejects a VCEK whose extensions were altered (signature no longer verifies)', async () => {
    const bad = new X509Certificate(readVector('attestation/sev-snp/trustee/test-vcek-invalid-new.der'));
    const [ask, ark] = certs('attestation/sev-snp/amd-roots/ask_ark_milan.pem');
    await expect(verifyCertificateChain({ leaf: bad, intermediates: [ask!], roots: [ark!], now: new Date('2024-06-01T00:00:00Z') })).rejects.toMatchObject({ code: 'ERR_CERT_SIGNATURE' });
  });

  it('reports expiry at the current time and a wrong root as untrusted', async () => {
    const vlek = new X509Certificate(readVector('attestation/sev-snp/trustee/test-vlek.der'));
    const [asvk, ark] = certs('attestation/sev-snp/amd-roots/ask_ark_milan_vlek.pem');
    await verifyCertificateChain({ leaf: vlek, intermediates: [asvk!], roots: [ark!], now: new Date('2025-06-01T00:00:00Z') });
    await expect(verifyCertificateChain({ leaf: vlek, intermediates: [asvk!], roots: [ark!], now: new Date('2026-11-26T00:00:00Z') })).rejects.toMatchObject({ code: 'ERR_CERT_EXPIRED' });
    const [, genoaArk] = certs('attestation/sev-snp/amd-roots/ask_ark_genoa.pem');
    await expect(verifyCertificateChain({ leaf: asvk!, roots: [genoaArk!], now: new Date('2025-06-01T00:00:00Z') })).rejects.toMatchObject({ code: 'ERR_CERT_CHAIN' });
  });

  it('validates the Intel PCK chain with both CRLs and rejects a stale CRL', async () => {
    const chain = certs('attestation/tdx/go-tdx-guest/pckcrl_issuer_chain.pem');
    const root = certs('attestation/tdx/go-tdx-guest/trusted_root.pem');
    const pckCrl = new X509Crl(readVector('attestation/tdx/go-tdx-guest/pckcrl'));
    const rootCrl = new X509Crl(readVector('attestation/tdx/go-tdx-guest/rootcrl.der'));
    expect(pckCrl.nextUpdate!.toISOString().slice(0, 10)).toBe('2023-07-08');
    expect(pckCrl.issuer.text).toContain('Intel SGX PCK Platform CA');
    const at = new Date('2023-07-01T01:00:00Z');
    const r = await verifyCertificateChain({ leaf: chain[0]!, intermediates: chain, roots: root, now: at, crls: [pckCrl, rootCrl] });
    expect(r.crlChecks.length).toBeGreaterThan(0);
    await expect(verifyCertificateChain({ leaf: chain[0]!, intermediates: chain, roots: root, now: new Date('2023-08-01T00:00:00Z'), crls: [pckCrl] })).rejects.toMatchObject({ code: 'ERR_CRL_STALE' });
  });

  it('validates the NVIDIA Hopper device chain and the Nitro root', async () => {
    const hopper = certs('attestation/nvidia/hopper_cert_chain_case1.txt');
    const root = certs('attestation/nvidia/nvidia_device_root.pem');
    const r = await verifyCertificateChain({ leaf: hopper[0]!, intermediates: hopper, roots: root, now: new Date('2024-06-01T00:00:00Z') });
    expect(r.chain.length).toBe(5);
    const nitro = certs('attestation/nitro/aws_nitro_root_g1.pem')[0]!;
    expect(await nitro.sha256()).toBe('641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b');
  });

  it('gives ERR_CERT_PARSE for garbage and truncations', () => {
    const der = readVector('attestation/sev-snp/go-sev-guest/vcek.testcer');
    for (const n of [0, 1, 10, 100, der.length - 1]) expect(() => new X509Certificate(der.subarray(0, n))).toThrowError(expect.objectContaining({ code: 'ERR_CERT_PARSE' }) as Error);
  });
});

describe('DER times', () => {
  const time = (tag: number, text: string) => decodeTime(parseDer(encodeTlv(tag, new TextEncoder().encode(text))));
  it.each([
    [0x17, '500101000000Z', '1950-01-01T00:00:00.000Z'],
    [0x17, '491231235959Z', '2049-12-31T23:59:59.000Z'],
    [0x18, '20240229120000Z', '2024-02-29T12:00:00.000Z'],
    [0x18, '99991231235959Z', '9999-12-31T23:59:59.000Z'],
    // Years 0-99 are those years, not 1900-1999 (Date.UTC's reading).
    [0x18, '00500101000000Z', '0050-01-01T00:00:00.000Z'],
    [0x18, '00000229000000Z', '0000-02-29T00:00:00.000Z'],
  ])('tag %i %s is %s', (tag, text, iso) => expect(time(tag, text).toISOString()).toBe(iso));
  it.each([
    [0x18, '20230229000000Z'],
    [0x18, '20241301000000Z'],
    [0x18, '20240101240000Z'],
    [0x17, '240101000060Z'],
    [0x18, '20240101000000.5Z'],
  ])('tag %i %s is malformed', (tag, text) => expect(() => time(tag, text)).toThrow());
});
