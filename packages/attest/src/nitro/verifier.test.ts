import { describe, expect, it } from 'vitest';
import { CustodyError, KEY_USAGE, decodeCbor, encodeCbor, encodeCoseSign1, fromHex, parseCoseSign1, signCoseSign1, toHex, type Bytes, type CborMap, type CborValue } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { createKeyCertificate } from '../../../core/src/testing/certificates.js';
import { parseNitroDocument, looksLikeNitroDocument } from './document.js';
import { AWS_NITRO_ROOT_G1_SHA256 } from './roots.js';
import { NITRO_DEBUG_WARNING, nitroVerifier } from './verifier.js';

// Provenance: EternisAI remote-attestation-verifier (MIT), see ../shared/vectors/attestation/README.md.
const DOC = readVector('attestation/nitro/eternis_lib_test_attestation.cbor');
const INVALID = readVector('attestation/nitro/eternis_fixture_invalid_attestation.cbor');
const AWS_ROOT_PEM = readVector('attestation/nitro/aws_nitro_root_g1.pem');
const NVIDIA_ROOT_PEM = readVector('attestation/nvidia/nvidia_device_root.pem');
const AT = new Date(1726606030 * 1000); // 2024-09-17T20:47:10Z, the document's timestamp
const INVALID_AT = new Date(1721770180 * 1000); // the tampered fixture's own timestamp
const NONCE = fromHex('0000000000000000000000000000000000000001');

/** Re-encodes the document with a changed payload map (the signature then no longer covers it). */
function withPayload(edit: (m: CborMap) => void, doc: Uint8Array = DOC): Uint8Array {
  const cose = parseCoseSign1(doc);
  const m = decodeCbor(cose.payload!) as CborMap;
  edit(m);
  return encodeCoseSign1({ ...cose, payload: encodeCbor(m) });
}

function payloadOf(doc: Uint8Array): CborMap {
  return decodeCbor(parseCoseSign1(doc).payload!) as CborMap;
}

function parseCode(b: Uint8Array): string {
  try {
    parseNitroDocument(b);
    return 'no error';
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    return (e as CustodyError).code;
  }
}

describe('Nitro: the real NSM attestation document', () => {
  it('verifies at its timestamp, reports the claims and detects the debug-mode enclave', async () => {
    const r = await nitroVerifier.verify({ evidence: DOC, now: AT });
    expect(r.errors).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.platform).toBe('nitro');
    expect(r.steps.map((s) => s.name)).toEqual(['parse', 'chain', 'signature', 'debug']);
    const c = r.claims!;
    expect(c.debug).toBe(true);
    expect(r.warnings).toContain(NITRO_DEBUG_WARNING);
    expect(Object.keys(c.measurements)).toEqual(Array.from({ length: 16 }, (_, i) => `pcr${i}`));
    expect(c.measurements.pcr0).toBe('00'.repeat(48));
    expect(c.measurements.pcr3!.startsWith('671ca1e3')).toBe(true);
    expect(c.measurements.pcr4!.startsWith('d352cfa3')).toBe(true);
    expect(c.reportData).toBe(toHex(payloadOf(DOC).get('user_data') as Uint8Array));
    expect(c.reportData.startsWith('122026da09b4e909')).toBe(true);
    expect(c.nonce).toBe('0000000000000000000000000000000000000001');
    expect(c.publicKey).toBe(toHex(new TextEncoder().encode('dummy')));
    expect(c.platformClaims).toEqual({ moduleId: 'i-0bbf1bfe232b8c2ce-enc019201afdaee4f17', timestamp: '2024-09-17T20:47:10.288Z', digest: 'SHA384' });
    expect(c.signer.rootSha256).toBe(AWS_NITRO_ROOT_G1_SHA256);
    expect(c.signer.kind).toBe('AWS Nitro Root-G1');
    expect(c.signer.chain).toHaveLength(5);
    expect(c.signer.chain[0]!.subject).toContain('i-0bbf1bfe232b8c2ce');
    expect(c.signer.chain[4]!.subject).toContain('aws.nitro-enclaves');
    expect(c.simulated).toBe(false);
  });

  it('checks the nonce when one is expected', async () => {
    const r = await nitroVerifier.verify({ evidence: DOC, now: AT, nonce: NONCE });
    expect(r.ok).toBe(true);
    expect(r.steps.find((s) => s.name === 'nonce')?.ok).toBe(true);
  });

  it('accepts the AWS root given explicitly as `roots`', async () => {
    const r = await nitroVerifier.verify({ evidence: DOC, now: AT, roots: [AWS_ROOT_PEM] });
    expect(r.ok).toBe(true);
    expect(r.claims!.signer.kind).toBe('Nitro (custom root)');
  });

  it('fails as expired at 2026-11-26 and at the real current time', async () => {
    for (const now of [new Date('2026-11-26T00:00:00Z'), new Date()]) {
      const r = await nitroVerifier.verify({ evidence: DOC, now });
      expect(r.ok).toBe(false);
      expect(r.errors[0]).toMatchObject({ code: 'ERR_CERT_EXPIRED', step: 'chain' });
      expect(r.claims?.measurements.pcr3).toBeDefined(); // claims stay visible on failure
    }
  });

  it('re-checks validity periods on a cached chain: valid at the timestamp, expired four hours later', async () => {
    const first = await nitroVerifier.verify({ evidence: DOC, now: AT });
    const again = await nitroVerifier.verify({ evidence: DOC, now: AT }); // chain validation cached
    expect(again.ok).toBe(true);
    expect(again.claims!.signer).toEqual(first.claims!.signer);
    const later = await nitroVerifier.verify({ evidence: DOC, now: new Date(AT.getTime() + 4 * 3600_000) });
    expect(later.errors[0]).toMatchObject({ code: 'ERR_CERT_EXPIRED', step: 'chain' });
  });

  it('rejects the tampered fixture document (COSE signature)', async () => {
    const r = await nitroVerifier.verify({ evidence: INVALID, now: INVALID_AT });
    expect(r.ok).toBe(false);
    expect(r.errors[0]).toMatchObject({ code: 'ERR_EVIDENCE_SIGNATURE', step: 'signature' });
  });

  it('detects NSM documents and nothing else', () => {
    expect(nitroVerifier.detect(DOC)).toBe(true);
    expect(nitroVerifier.detect(INVALID)).toBe(true);
    expect(nitroVerifier.detect(encodeCbor(new Map([[1, 2]])))).toBe(false);
    expect(nitroVerifier.detect(readVector('attestation/nvidia/hopperAttestationReport.txt'))).toBe(false);
    expect(looksLikeNitroDocument(new Uint8Array(0))).toBe(false);
  });
});

describe('Nitro: tampered twins', () => {
  const pcr3 = (payloadOf(DOC).get('pcrs') as CborMap).get(3) as Uint8Array;
  const fixtureBundle = payloadOf(INVALID).get('cabundle') as Bytes[]; // CBOR byte strings decode to Bytes
  const nvidiaRootDer = (() => {
    const b64 = new TextDecoder().decode(NVIDIA_ROOT_PEM).replace(/-----[A-Z ]+-----|\s/g, '');
    return Uint8Array.from(atob(b64), (ch) => ch.charCodeAt(0));
  })();

  const twins: { name: string; evidence: () => Uint8Array; roots?: Uint8Array[]; nonce?: Uint8Array; code: string; step: string }[] = [
    {
      name: 'one flipped signature byte',
      evidence: () => {
        const b = DOC.slice();
        b[b.length - 10]! ^= 0x01;
        return b;
      },
      code: 'ERR_EVIDENCE_SIGNATURE',
      step: 'signature',
    },
    {
      name: 'one changed PCR3 byte inside the signed payload',
      evidence: () => {
        const b = DOC.slice();
        const at = Buffer.from(b).indexOf(Buffer.from(pcr3));
        expect(at).toBeGreaterThan(0);
        b[at + 5]! ^= 0x80;
        return b;
      },
      code: 'ERR_EVIDENCE_SIGNATURE',
      step: 'signature',
    },
    {
      name: 'changed user_data (re-encoded payload)',
      evidence: () => withPayload((m) => m.set('user_data', fromHex('00'))),
      code: 'ERR_EVIDENCE_SIGNATURE',
      step: 'signature',
    },
    { name: 'a wrong expected nonce', evidence: () => DOC, nonce: fromHex('0000000000000000000000000000000000000002'), code: 'ERR_EVIDENCE_NONCE', step: 'nonce' },
    {
      name: 'a missing intermediate in cabundle',
      evidence: () => withPayload((m) => m.set('cabundle', (m.get('cabundle') as CborValue[]).filter((_, i) => i !== 2))),
      code: 'ERR_CERT_CHAIN',
      step: 'chain',
    },
    {
      name: "the instance CA swapped for another enclave's",
      evidence: () => withPayload((m) => m.set('cabundle', [...(m.get('cabundle') as CborValue[]).slice(0, -1), fixtureBundle.at(-1)!])),
      code: 'ERR_CERT_CHAIN',
      step: 'chain',
    },
    {
      name: 'cabundle[0] replaced by another vendor root',
      evidence: () => withPayload((m) => m.set('cabundle', [nvidiaRootDer, ...(m.get('cabundle') as CborValue[]).slice(1)])),
      code: 'ERR_CERT_ROOT_UNTRUSTED',
      step: 'chain',
    },
    { name: 'a wrong product root given as `roots`', evidence: () => DOC, roots: [NVIDIA_ROOT_PEM], code: 'ERR_CERT_ROOT_UNTRUSTED', step: 'chain' },
    {
      name: 'the signing certificate replaced by a non-certificate',
      evidence: () => withPayload((m) => m.set('certificate', fromHex('3000'))),
      code: 'ERR_CERT_PARSE',
      step: 'chain',
    },
  ];

  for (const t of twins) {
    it(`${t.name} -> ${t.code}`, async () => {
      const r = await nitroVerifier.verify({ evidence: t.evidence(), now: AT, ...(t.roots ? { roots: t.roots } : {}), ...(t.nonce ? { nonce: t.nonce } : {}) });
      expect(r.ok).toBe(false);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatchObject({ code: t.code, step: t.step });
      expect(r.steps.at(-1)).toMatchObject({ name: t.step, ok: false, code: t.code });
    });
  }

  it('reports unknown payload fields as a warning (and they stay covered by the signature)', async () => {
    const r = await nitroVerifier.verify({ evidence: withPayload((m) => m.set('extra', 1)), now: AT });
    expect(r.warnings.some((w) => w.includes('extra'))).toBe(true);
    expect(r.claims!.platformClaims.unknownFields).toEqual(['extra']);
    expect(r.errors[0]!.code).toBe('ERR_EVIDENCE_SIGNATURE');
  });
});

describe('Nitro: the signing certificate must be allowed to sign (keyUsage digitalSignature)', () => {
  /** The real document's payload, re-issued under a test root with a leaf of the given keyUsage and re-signed by that leaf. */
  async function reissued(keyUsage: number | undefined): Promise<{ evidence: Uint8Array; roots: Uint8Array[] }> {
    const root = await createKeyCertificate({ cn: 'Test Nitro Root', serial: 1, ca: true, keyUsage: KEY_USAGE.keyCertSign | KEY_USAGE.cRLSign });
    const leaf = await createKeyCertificate({ cn: 'i-0test-enc0test', serial: 2, ca: false, issuer: root, ...(keyUsage === undefined ? {} : { keyUsage }) });
    const m = payloadOf(DOC);
    m.set('certificate', leaf.cert);
    m.set('cabundle', [root.cert]);
    const evidence = await signCoseSign1({ alg: 'ES384', key: leaf.keys.privateKey, payload: encodeCbor(m), tagged: false });
    return { evidence, roots: [root.cert] };
  }

  const cases: { name: string; keyUsage: number | undefined; code?: string }[] = [
    { name: 'digitalSignature + nonRepudiation, as AWS issues them', keyUsage: KEY_USAGE.digitalSignature | KEY_USAGE.contentCommitment },
    { name: 'no keyUsage extension', keyUsage: undefined },
    { name: 'keyCertSign only (a CA key)', keyUsage: KEY_USAGE.keyCertSign, code: 'ERR_CERT_CHAIN' },
    { name: 'nonRepudiation + keyAgreement, no digitalSignature', keyUsage: KEY_USAGE.contentCommitment | KEY_USAGE.keyAgreement, code: 'ERR_CERT_CHAIN' },
  ];
  for (const c of cases) {
    it(`a leaf with ${c.name} -> ${c.code ?? 'verifies'}`, async () => {
      const { evidence, roots } = await reissued(c.keyUsage);
      const r = await nitroVerifier.verify({ evidence, roots, now: AT });
      if (!c.code) {
        expect(r.errors).toEqual([]);
        expect(r.ok).toBe(true);
        return;
      }
      expect(r.ok).toBe(false);
      expect(r.errors).toHaveLength(1);
      expect(r.errors[0]).toMatchObject({ code: c.code, step: 'chain' });
      expect(r.steps.at(-1)).toMatchObject({ name: 'chain', ok: false, code: c.code });
    });
  }
});

describe('Nitro: strict document parsing (AWS NSM field rules)', () => {
  const cases: { name: string; edit: (m: CborMap) => void; code: string }[] = [
    { name: 'digest SHA256', edit: (m) => m.set('digest', 'SHA256'), code: 'ERR_INPUT_UNSUPPORTED' },
    { name: 'digest as bytes', edit: (m) => m.set('digest', fromHex('00')), code: 'ERR_INPUT_MALFORMED' },
    // Names Object.prototype has are no digests (the size table's own members only).
    ...['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf'].map((d) => ({ name: `digest ${d}`, edit: (m: CborMap) => m.set('digest', d), code: 'ERR_INPUT_UNSUPPORTED' })),
    { name: 'empty module_id', edit: (m) => m.set('module_id', ''), code: 'ERR_INPUT_MALFORMED' },
    { name: 'missing module_id', edit: (m) => m.delete('module_id'), code: 'ERR_INPUT_MALFORMED' },
    { name: 'timestamp 0', edit: (m) => m.set('timestamp', 0), code: 'ERR_INPUT_MALFORMED' },
    { name: 'timestamp as text', edit: (m) => m.set('timestamp', '1726606030288'), code: 'ERR_INPUT_MALFORMED' },
    { name: 'timestamp beyond any Date', edit: (m) => m.set('timestamp', 2n ** 63n), code: 'ERR_INPUT_MALFORMED' },
    { name: 'pcrs as an array', edit: (m) => m.set('pcrs', []), code: 'ERR_INPUT_MALFORMED' },
    { name: 'no PCRs', edit: (m) => m.set('pcrs', new Map()), code: 'ERR_INPUT_MALFORMED' },
    { name: 'PCR index 32', edit: (m) => (m.get('pcrs') as CborMap).set(32, new Uint8Array(48)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'PCR index as text', edit: (m) => (m.get('pcrs') as CborMap).set('5', new Uint8Array(48)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'a 47-byte PCR', edit: (m) => (m.get('pcrs') as CborMap).set(5, new Uint8Array(47)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'a 32-byte PCR in a SHA384 document', edit: (m) => (m.get('pcrs') as CborMap).set(5, new Uint8Array(32)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'PCR0 missing', edit: (m) => (m.get('pcrs') as CborMap).delete(0), code: 'ERR_INPUT_MALFORMED' },
    { name: 'missing certificate', edit: (m) => m.delete('certificate'), code: 'ERR_INPUT_MALFORMED' },
    { name: 'certificate over 1024 bytes', edit: (m) => m.set('certificate', new Uint8Array(1025)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'empty cabundle', edit: (m) => m.set('cabundle', []), code: 'ERR_INPUT_MALFORMED' },
    { name: 'cabundle entry as text', edit: (m) => m.set('cabundle', ['x']), code: 'ERR_INPUT_MALFORMED' },
    { name: 'cabundle of 17 certificates', edit: (m) => m.set('cabundle', Array.from({ length: 17 }, () => new Uint8Array(4))), code: 'ERR_INPUT_TOO_LARGE' },
    { name: 'empty public_key', edit: (m) => m.set('public_key', new Uint8Array(0)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'user_data over 512 bytes', edit: (m) => m.set('user_data', new Uint8Array(513)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'nonce over 512 bytes', edit: (m) => m.set('nonce', new Uint8Array(513)), code: 'ERR_INPUT_MALFORMED' },
    { name: 'nonce as text', edit: (m) => m.set('nonce', 'abc'), code: 'ERR_INPUT_MALFORMED' },
    { name: 'integer payload key', edit: (m) => m.set(7, 1), code: 'ERR_INPUT_MALFORMED' },
  ];
  for (const c of cases) {
    it(`${c.name} -> ${c.code}`, () => {
      expect(parseCode(withPayload(c.edit))).toBe(c.code);
    });
  }

  it('treats null optional fields as absent', () => {
    const doc = parseNitroDocument(withPayload((m) => {
      m.set('nonce', null);
      m.set('public_key', null);
      m.set('user_data', null);
    }));
    expect(doc.nonce).toBeUndefined();
    expect(doc.publicKey).toBeUndefined();
    expect(doc.userData).toBeUndefined();
  });

  it('rejects a payload that is not a map, a detached payload, truncation and oversize', () => {
    const cose = parseCoseSign1(DOC);
    expect(parseCode(encodeCoseSign1({ ...cose, payload: encodeCbor([1]) }))).toBe('ERR_INPUT_MALFORMED');
    expect(parseCode(encodeCoseSign1({ ...cose, payload: null }))).toBe('ERR_INPUT_MALFORMED');
    expect(parseCode(encodeCoseSign1({ ...cose, payload: fromHex('a1') }))).toBe('ERR_INPUT_TRUNCATED');
    expect(parseCode(DOC.subarray(0, DOC.length - 1))).toBe('ERR_INPUT_TRUNCATED');
    expect(parseCode(new Uint8Array(40 * 1024))).toBe('ERR_INPUT_TOO_LARGE');
  });
});
