import { beforeAll, describe, expect, it } from 'vitest';
import { createKeyCertificate, derExtKeyUsage, derOid, derSequence, type CertOptions, type SyntheticKey } from '../testing/certificates.js';
import { verifyChainCached } from './cache.js';
import { KEY_USAGE, X509Certificate } from './certificate.js';
import { verifyCertificateChain, type LeafUsage } from './chain.js';
import { OID } from './oids.js';

const NOW = new Date('2025-06-01T00:00:00Z');
const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const CODE_SIGNING = '1.3.6.1.5.5.7.3.3';
const SIGNING: LeafUsage = { keyUsage: KEY_USAGE.digitalSignature };

let root: SyntheticKey;
let ca: SyntheticKey;
let serial = 100;

beforeAll(async () => {
  root = await createKeyCertificate({ cn: 'Usage Test Root', serial: 1, ca: true, keyUsage: KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign });
  ca = await createKeyCertificate({ cn: 'Usage Test CA', serial: 2, ca: true, issuer: root, keyUsage: KEY_USAGE.keyCertSign });
});

async function leafWith(o: Partial<CertOptions>): Promise<X509Certificate> {
  const k = await createKeyCertificate({ cn: 'Usage Test Leaf', serial: serial++, ca: false, issuer: ca, ...o });
  return new X509Certificate(k.cert);
}

function verify(leaf: X509Certificate, leafUsage?: LeafUsage) {
  return verifyCertificateChain({ leaf, intermediates: [new X509Certificate(ca.cert)], roots: [new X509Certificate(root.cert)], now: NOW, ...(leafUsage ? { leafUsage } : {}) });
}

describe('verifyCertificateChain leafUsage (RFC 5280 4.2.1.3, 4.2.1.12)', () => {
  const cases: { name: string; leaf: Partial<CertOptions>; usage: LeafUsage; code?: string }[] = [
    { name: 'keyUsage keyCertSign only, digitalSignature required', leaf: { keyUsage: KEY_USAGE.keyCertSign }, usage: SIGNING, code: 'ERR_CERT_CHAIN' },
    { name: 'keyUsage digitalSignature', leaf: { keyUsage: KEY_USAGE.digitalSignature }, usage: SIGNING },
    { name: 'keyUsage digitalSignature + contentCommitment (Intel PCK, AWS Nitro leaves)', leaf: { keyUsage: KEY_USAGE.digitalSignature | KEY_USAGE.contentCommitment }, usage: SIGNING },
    { name: 'no keyUsage extension (AMD VCEK/VLEK): unrestricted', leaf: {}, usage: SIGNING },
    { name: 'keyUsage with no bits set', leaf: { keyUsage: 0 }, usage: SIGNING, code: 'ERR_CERT_CHAIN' },
    { name: 'keyUsage holding one of two required bits', leaf: { keyUsage: KEY_USAGE.digitalSignature }, usage: { keyUsage: KEY_USAGE.digitalSignature | KEY_USAGE.keyAgreement }, code: 'ERR_CERT_CHAIN' },
    { name: 'extKeyUsage without the required purpose', leaf: { keyUsage: KEY_USAGE.digitalSignature, extKeyUsage: [SERVER_AUTH] }, usage: { ...SIGNING, extKeyUsage: CODE_SIGNING }, code: 'ERR_CERT_CHAIN' },
    { name: 'extKeyUsage listing the required purpose', leaf: { extKeyUsage: [SERVER_AUTH, CODE_SIGNING] }, usage: { ...SIGNING, extKeyUsage: CODE_SIGNING } },
    { name: 'extKeyUsage with anyExtendedKeyUsage', leaf: { keyUsage: KEY_USAGE.digitalSignature, extKeyUsage: [OID.anyExtendedKeyUsage] }, usage: { ...SIGNING, extKeyUsage: CODE_SIGNING } },
    { name: 'no extKeyUsage extension: unrestricted', leaf: { keyUsage: KEY_USAGE.digitalSignature }, usage: { ...SIGNING, extKeyUsage: CODE_SIGNING } },
    { name: 'extKeyUsage required, keyUsage not asked for', leaf: { keyUsage: KEY_USAGE.keyCertSign, extKeyUsage: [CODE_SIGNING] }, usage: { extKeyUsage: CODE_SIGNING } },
  ];

  for (const c of cases) {
    it(`${c.name} -> ${c.code ?? 'passes'}`, async () => {
      const leaf = await leafWith(c.leaf);
      if (c.code) {
        await expect(verify(leaf, c.usage)).rejects.toMatchObject({ code: c.code, detail: { subject: leaf.subject.text } });
      } else {
        const r = await verify(leaf, c.usage);
        expect(r.chain).toHaveLength(3);
      }
    });
  }

  it('names the missing keyUsage bits in the error detail', async () => {
    const leaf = await leafWith({ keyUsage: KEY_USAGE.keyCertSign });
    await expect(verify(leaf, { keyUsage: KEY_USAGE.digitalSignature | KEY_USAGE.keyCertSign })).rejects.toMatchObject({ code: 'ERR_CERT_CHAIN', detail: { missingKeyUsage: 'digitalSignature' } });
  });

  it('checks nothing about the leaf when no leafUsage is given', async () => {
    const leaf = await leafWith({ keyUsage: KEY_USAGE.keyCertSign, extKeyUsage: [SERVER_AUTH] });
    expect((await verify(leaf)).chain).toHaveLength(3);
  });

  it('checks the leaf usage on a cached chain as well', async () => {
    const leaf = await leafWith({ keyUsage: KEY_USAGE.keyCertSign });
    const intermediates = [new X509Certificate(ca.cert)];
    const roots = [new X509Certificate(root.cert)];
    expect((await verifyChainCached(leaf, intermediates, roots, NOW)).cached).toBe(false);
    expect((await verifyChainCached(leaf, intermediates, roots, NOW)).cached).toBe(true);
    await expect(verifyChainCached(leaf, intermediates, roots, NOW, { leafUsage: SIGNING })).rejects.toMatchObject({ code: 'ERR_CERT_CHAIN' });
    const good = await leafWith({ keyUsage: KEY_USAGE.digitalSignature });
    expect((await verifyChainCached(good, intermediates, roots, NOW, { leafUsage: SIGNING })).chain).toHaveLength(3);
  });

  it('a malformed extKeyUsage on the leaf is ERR_CERT_PARSE, not a pass', async () => {
    const leaf = await leafWith({ extensions: [[OID.extKeyUsage, derSequence()]] });
    await expect(verify(leaf, { extKeyUsage: CODE_SIGNING })).rejects.toMatchObject({ code: 'ERR_CERT_PARSE' });
  });
});

describe('X509Certificate.extKeyUsage', () => {
  it('is undefined without the extension and lists the purposes in order with it', async () => {
    expect((await leafWith({})).extKeyUsage).toBeUndefined();
    expect((await leafWith({ extKeyUsage: [CODE_SIGNING, SERVER_AUTH, OID.anyExtendedKeyUsage] })).extKeyUsage).toEqual([CODE_SIGNING, SERVER_AUTH, '2.5.29.37.0']);
  });

  const malformed: [string, Uint8Array][] = [
    ['an empty SEQUENCE (SIZE (1..MAX))', derSequence()],
    ['an OCTET STRING instead of a SEQUENCE', Uint8Array.of(0x04, 0x00)],
    ['an INTEGER element', derSequence(Uint8Array.of(0x02, 0x01, 0x00))],
    ['a truncated OID element', derSequence(Uint8Array.of(0x06, 0x03, 0x2b, 0x06))],
    ['an OID with a truncated arc', derSequence(Uint8Array.of(0x06, 0x02, 0x2b, 0x86))],
    ['trailing bytes after the SEQUENCE', Uint8Array.of(...derExtKeyUsage([SERVER_AUTH]), 0x00)],
    ['nothing', new Uint8Array(0)],
    ['a SET of OIDs', Uint8Array.of(0x31, ...derExtKeyUsage([SERVER_AUTH]).subarray(1))],
    ['a nested SEQUENCE', derSequence(derSequence(derOid(SERVER_AUTH)))],
  ];
  for (const [name, value] of malformed) {
    it(`${name} -> ERR_CERT_PARSE`, async () => {
      const leaf = await leafWith({ extensions: [[OID.extKeyUsage, value]] });
      expect(() => leaf.extKeyUsage).toThrowError(expect.objectContaining({ code: 'ERR_CERT_PARSE' }) as Error);
    });
  }
});
