import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { CborTag, CustodyError, encodeCbor, fromHex, signCoseSign1, type CborValue } from '@custody/core';
import { appraise, compilePolicy } from '../index.js';
import { corimToPolicy, readCorim } from './import.js';
import * as F from '../testing/claims.js';

// CoRIMs built here with the CDDL's code points (draft-ietf-rats-corim): corim-map {0: id, 1: tags},
// CoMID = 506(<< {1: tag-identity, 4: triples} >>), triples {0: [[env, [measurement-map]]]},
// measurement-map {0: mkey, 1: mval}, mval {1: svn, 2: digests, 4: raw-value, 14: integrity-registers}.
const SHA384 = 7;
const SHA256 = 1;
const m = (entries: [number | string, CborValue][]) => new Map<number | string, CborValue>(entries);
const env = m([[0, m([[1, 'Intel'], [2, 'TDX guest']])]]);
const digest = (alg: number, hex: string): CborValue => [alg, fromHex(hex)];
const measurement = (mkey: CborValue, mval: Map<number | string, CborValue>) => m([[0, mkey], [1, mval]]);

function corim(triples: CborValue[], extraTags: CborValue[] = []): Uint8Array {
  const comid = m([
    [1, m([[0, 'tag-1']])],
    [4, m([[0, triples]])],
  ]);
  return encodeCbor(new CborTag(501, m([[0, 'corim-tdx-1'], [1, [...extraTags, new CborTag(506, encodeCbor(comid))]]])));
}

const tdxCorim = () =>
  corim([
    [
      env,
      [
        measurement('mrtd', m([[2, [digest(SHA384, F.TDX.mrtd)]]])),
        measurement('rtmr0', m([[2, [digest(SHA384, F.TDX.rtmr0)]]])),
        measurement('rtmr1', m([[2, [digest(SHA384, F.TDX.rtmr1), digest(SHA384, 'ff'.repeat(48))]]])),
        measurement('rtmr2', m([[4, new CborTag(560, fromHex(F.TDX.rtmr2))]])),
        measurement('tdxTcbComp01Svn', m([[1, new CborTag(553, 3)]])),
        // OID-keyed and key-less measurements name nothing in the claims vocabulary: skipped.
        measurement(new CborTag(111, fromHex('2a864886')), m([[2, [digest(SHA384, '11'.repeat(48))]]])),
      ],
    ],
  ]);

describe('CoRIM import', () => {
  it('reads TDX reference values and svn from a tag-501 CoRIM', async () => {
    const r = await readCorim(tdxCorim(), { platform: 'tdx' });
    expect(r).toMatchObject({ corimId: 'corim-tdx-1', signed: false, verified: false });
    expect(r.referenceValues.map((v) => v.name)).toEqual(['mrtd', 'rtmr0', 'rtmr1', 'rtmr2', 'tdxTcbComp01Svn']);
    expect(r.referenceValues[2]!.values).toEqual([F.TDX.rtmr1, 'ff'.repeat(48)]);
    expect(r.referenceValues[4]).toMatchObject({ values: [], minSvn: 3 });
    expect(r.referenceValues[0]!.environment).toEqual({ vendor: 'Intel', model: 'TDX guest' });
  });

  it('becomes a policy that affirms the matching TDX claims and rejects others', async () => {
    const doc = corimToPolicy(await readCorim(tdxCorim(), { platform: 'tdx' }), 'tdx', { id: 'tdx-from-corim', version: 1 });
    expect(doc.platforms.tdx!.executables).toMatchObject({ mrtd: [F.TDX.mrtd], rtmr1: [F.TDX.rtmr1, 'ff'.repeat(48)] });
    expect(doc.platforms.tdx!.configuration).toEqual({ rtmr0: [F.TDX.rtmr0] });
    expect(doc.platforms.tdx!.tcb.minSvn).toEqual({ tdxTcbComp01Svn: 3 });
    expect(doc.description).toContain('corim-tdx-1');
    const p = await compilePolicy(doc);
    const now = new Date('2025-06-01T00:00:00Z');
    expect(appraise(p, F.tdxClaims(), { now }).status).toBe('affirming');
    const old = F.tdxClaims();
    old.tcb!.components.tdxTcbComp01Svn = 2;
    expect(appraise(p, old, { now }).status).toBe('contraindicated');
  });

  it('maps TPM integrity registers to PCRs by bank', async () => {
    const bytes = corim([
      [
        m([[0, m([[2, 'server']])]]),
        [
          m([
            [
              1,
              m([
                [
                  14,
                  m([
                    [0, [digest(SHA256, F.TPM_PCRS.pcr0!)]],
                    [7, [digest(SHA256, F.TPM_PCRS.pcr7!)]],
                  ]),
                ],
              ]),
            ],
          ]),
        ],
      ],
    ]);
    const r = await readCorim(bytes, { platform: 'tpm' });
    expect(r.referenceValues.map((v) => v.name)).toEqual(['pcr0', 'pcr7']);
    expect(() => corimToPolicy(r, 'tpm', { id: 't', version: 1 })).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
    const doc = corimToPolicy(r, 'tpm', { id: 't', version: 1, signerRoots: [F.TPM_AK_SHA256] });
    expect(doc.platforms.tpm).toMatchObject({ executables: { pcr0: [F.TPM_PCRS.pcr0] }, configuration: { pcr7: [F.TPM_PCRS.pcr7] } });
    expect(appraise(await compilePolicy(doc), F.tpmClaims(), { now: new Date(0) }).status).toBe('affirming');
  });

  it('maps numeric keys to GPU measurement indices', async () => {
    const bytes = corim([[m([[0, m([[1, 'NVIDIA']])]]), [measurement(10, m([[2, [digest(SHA384, F.NVIDIA.measurement10!)]]]))]]]);
    const doc = corimToPolicy(await readCorim(bytes, { platform: 'nvidia' }), 'nvidia', { id: 'gpu', version: 2 });
    expect(doc.platforms.nvidia!.executables).toEqual({ measurement10: [F.NVIDIA.measurement10] });
  });

  it('verifies a signed CoRIM (COSE_Sign1, tag 18) with the signer key', async () => {
    const keys = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']));
    const spki = new Uint8Array(await crypto.subtle.exportKey('spki', keys.publicKey));
    const signed = await signCoseSign1({ alg: 'ES256', key: keys.privateKey, payload: tdxCorim() });
    const r = await readCorim(signed, { platform: 'tdx', signerSpki: spki });
    expect(r).toMatchObject({ signed: true, verified: true });

    await expect(readCorim(signed, { platform: 'tdx' })).rejects.toMatchObject({ code: 'ERR_POLICY_CORIM' });
    expect(await readCorim(signed, { platform: 'tdx', allowUnverified: true })).toMatchObject({ signed: true, verified: false });
    const other = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, true, ['sign', 'verify']));
    const otherSpki = new Uint8Array(await crypto.subtle.exportKey('spki', other.publicKey));
    await expect(readCorim(signed, { platform: 'tdx', signerSpki: otherSpki })).rejects.toMatchObject({ code: 'ERR_COLLATERAL_INVALID' });
    const tampered = signed.slice();
    tampered[tampered.length - 70]! ^= 1;
    await expect(readCorim(tampered, { platform: 'tdx', signerSpki: spki })).rejects.toBeInstanceOf(CustodyError);
  });

  const bad: [string, () => Uint8Array, string][] = [
    ['not CBOR', () => Uint8Array.of(0xff, 0x00), 'ERR_INPUT_MALFORMED'],
    ['an untagged map', () => encodeCbor(m([[0, 'x']])), 'ERR_POLICY_CORIM'],
    ['the old tag 500', () => encodeCbor(new CborTag(500, m([[0, 'x']]))), 'ERR_POLICY_CORIM'],
    ['no tags', () => encodeCbor(new CborTag(501, m([[0, 'x']]))), 'ERR_INPUT_MALFORMED'],
    ['a CoMID that is not bytes', () => encodeCbor(new CborTag(501, m([[0, 'x'], [1, [new CborTag(506, 5)]]]))), 'ERR_INPUT_MALFORMED'],
    ['only a CoSWID', () => encodeCbor(new CborTag(501, m([[0, 'x'], [1, [new CborTag(505, encodeCbor(m([[0, 'swid']])))]]]))), 'ERR_POLICY_CORIM'],
    ['a triple that is not a pair', () => corim([[env]]), 'ERR_INPUT_MALFORMED'],
    ['a digest that is not [alg, bytes]', () => corim([[env, [measurement('mrtd', m([[2, [[SHA384, 'text']]]]))]]]), 'ERR_INPUT_MALFORMED'],
    ['a negative svn', () => corim([[env, [measurement('x', m([[1, -1]]))]]]), 'ERR_INPUT_MALFORMED'],
    ['no usable values', () => corim([[env, [measurement(new CborTag(37, new Uint8Array(16)), m([[11, 'name only']]))]]]), 'ERR_POLICY_CORIM'],
  ];
  for (const [name, make, code] of bad) {
    it(`rejects ${name} with ${code}`, async () => {
      await expect(readCorim(make(), { platform: 'tdx' })).rejects.toMatchObject({ code });
    });
  }

  // Claim names come from the CoRIM: one named like an Object.prototype member is a name like any
  // other, or a reserved policy key refused as such (ERR_POLICY_INVALID), never a TypeError.
  for (const name of ['constructor', 'toString', '__proto__', 'hasOwnProperty', 'valueOf']) {
    const sha = digest(SHA384, 'ab'.repeat(48));
    const kinds: [string, Map<number | string, CborValue>, (doc: ReturnType<typeof corimToPolicy>) => unknown][] = [
      ['a digest', m([[2, [sha]]]), (doc) => doc.platforms.tdx!.executables[name]],
      ['a min-svn', m([[1, new CborTag(553, 3)]]), (doc) => doc.platforms.tdx!.tcb.minSvn[name]],
      ['an integrity register', m([[14, m([[name, [sha]]])]]), (doc) => doc.platforms.tdx!.executables[name]],
    ];
    for (const [kind, mval, read] of kinds) {
      it(`imports ${kind} named ${name} as that name, or refuses it as reserved`, async () => {
        const mkey = kind === 'an integrity register' ? 'rtmr3' : name;
        const r = await readCorim(corim([[env, [measurement('mrtd', m([[2, [digest(SHA384, F.TDX.mrtd)]]])), measurement(mkey, mval)]]]), { platform: 'tdx' });
        if (name === 'constructor' || name === '__proto__') {
          expect(() => corimToPolicy(r, 'tdx', { id: 'x', version: 1 })).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
          return;
        }
        const doc = corimToPolicy(r, 'tdx', { id: 'x', version: 1 });
        expect(read(doc)).toEqual(kind === 'a min-svn' ? 3 : ['ab'.repeat(48)]);
      });
    }
  }

  it('rejects digests of the wrong length for the platform field', async () => {
    const bytes = corim([[env, [measurement('mrtd', m([[2, [digest(SHA256, 'ab'.repeat(32))]]]))]]]);
    const r = await readCorim(bytes, { platform: 'tdx' });
    expect(() => corimToPolicy(r, 'tdx', { id: 'x', version: 1 })).toThrowError(expect.objectContaining({ code: 'ERR_POLICY_INVALID' }));
  });
});

describe('CoRIM import fuzz', () => {
  const expectCustody = (e: unknown) => {
    if (!(e instanceof CustodyError)) throw e;
  };

  it('random bytes give a CustodyError', async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 300 }), async (b) => {
        await readCorim(b, { platform: 'tdx' }).then(() => undefined, expectCustody);
      }),
      { numRuns: 500 },
    );
  });

  it('mutated real CoRIMs give a CustodyError or reference values', async () => {
    const base = tdxCorim();
    await fc.assert(
      fc.asyncProperty(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 6 }), fc.boolean(), async (edits, truncate) => {
        let b = base.slice();
        for (const [at, v] of edits) b[at % b.length] = v;
        if (truncate) b = b.subarray(0, edits[0]![0] % b.length);
        try {
          const r = await readCorim(b, { platform: 'tdx' });
          try {
            corimToPolicy(r, 'tdx', { id: 'fuzz', version: 1 });
          } catch (e) {
            expectCustody(e);
          }
        } catch (e) {
          expectCustody(e);
        }
      }),
      { numRuns: 500 },
    );
  });
});
