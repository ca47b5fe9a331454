// RFC 5280 6.3.3 (f): a CRL counts only when its issuer may sign CRLs. An issuer with a keyUsage
// extension that lacks cRLSign signs nothing revocation relies on; one without keyUsage is
// unrestricted (as the AMD ASK, which carries keyCertSign only, is never a CRL issuer in KDS).
import { describe, expect, it } from 'vitest';
import { createCrl, createKeyCertificate } from '../testing/certificates.js';
import { KEY_USAGE, X509Certificate } from './certificate.js';
import { verifyCertificateChain } from './chain.js';
import { X509Crl } from './crl.js';

const NOW = new Date('2025-06-01T00:00:00Z');
const DAY = 86_400_000;

describe('CRL issuer keyUsage', () => {
  const cases: { name: string; rootUsage?: number; code?: string }[] = [
    { name: 'keyCertSign + cRLSign', rootUsage: KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign },
    { name: 'no keyUsage extension', rootUsage: undefined },
    { name: 'keyCertSign only', rootUsage: KEY_USAGE.keyCertSign, code: 'ERR_CRL_INVALID' },
  ];
  for (const c of cases) {
    it(`issuer with ${c.name}: ${c.code ?? 'the CRL is applied'}`, async () => {
      const root = await createKeyCertificate({ cn: 'CRL Issuer Root', serial: 1, ca: true, ...(c.rootUsage !== undefined ? { keyUsage: c.rootUsage } : {}) });
      const leaf = await createKeyCertificate({ cn: 'CRL Issuer Leaf', serial: 7, ca: false, issuer: root });
      const crl = new X509Crl(await createCrl(root, [99], new Date(NOW.getTime() - DAY), new Date(NOW.getTime() + DAY)));
      const rootCert = new X509Certificate(root.cert);
      const run = verifyCertificateChain({ leaf: new X509Certificate(leaf.cert), roots: [rootCert], now: NOW, crls: [crl] });
      if (c.code) {
        await expect(run).rejects.toMatchObject({ code: c.code });
        await expect(crl.verifySignedBy(rootCert)).rejects.toMatchObject({ code: c.code });
      } else {
        await expect(run).resolves.toMatchObject({ crlChecks: [{ subject: expect.stringContaining('CRL Issuer Leaf') }] });
        await expect(crl.verifySignedBy(rootCert)).resolves.toBe(true);
      }
    });
  }
});
