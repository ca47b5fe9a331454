import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, ErrorCodes, equalBytes, readCertificates, utf8 } from '@custody/core';
import { readVector } from '../../../../test/vectors.js';
import { encodeSnpCertTable, parseSnpCertTable, SNP_CERT_GUIDS } from './cert-table.js';
import { createConfigfsTsmEvidence, detectSevSnpEvidence, readSevSnpEvidence } from './evidence.js';
import { parseSevSnpReport } from './report.js';
import { verifySevSnp } from './verifier.js';

const SNP = 'attestation/sev-snp';
const reports = [
  readVector(`${SNP}/go-sev-guest/attestation.bin`),
  readVector(`${SNP}/trustee/test-report.bin`),
  readVector(`${SNP}/trustee/test-vlek-report.bin`),
];
const vcek = readVector(`${SNP}/go-sev-guest/vcek.testcer`);
const [ask, ark] = readCertificates(readVector(`${SNP}/amd-roots/ask_ark_milan.pem`));
const table = encodeSnpCertTable([
  { guid: SNP_CERT_GUIDS.vcek, data: vcek },
  { guid: SNP_CERT_GUIDS.ask, data: ask! },
  { guid: SNP_CERT_GUIDS.ark, data: ark! },
]);
const configfs = createConfigfsTsmEvidence(reports[0]!, table);

const PARSE_CODES = /^ERR_INPUT_(TRUNCATED|TOO_LARGE|MALFORMED|UNSUPPORTED)$/;

/** Parsing must either succeed or throw a CustodyError with an expected code: never another exception. */
function parsesOrTypedError(parse: () => unknown, codes = PARSE_CODES): void {
  try {
    parse();
  } catch (e) {
    expect(e).toBeInstanceOf(CustodyError);
    expect((e as CustodyError).code).toMatch(codes);
  }
}

function mutate(seeds: Uint8Array[]) {
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), fc.option(fc.nat(), { freq: 4 }))
    .map(([seed, flips, cut]) => {
      const b = seed.slice();
      for (const [pos, val] of flips) b[pos % b.length] = val;
      return cut === null ? b : b.slice(0, cut % (b.length + 1));
    });
}

describe('SEV-SNP parsers under fuzzing', () => {
  it('parseSevSnpReport: random bytes and random 1184-byte reports', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 2048 }), fc.uint8Array({ minLength: 1184, maxLength: 1184 })), (b) => {
        parsesOrTypedError(() => parseSevSnpReport(b));
      }),
      { numRuns: 3000, seed: 11 },
    );
  });

  it('parseSevSnpReport: mutated real reports parse or fail typed', () => {
    fc.assert(
      fc.property(mutate(reports), (b) => {
        parsesOrTypedError(() => parseSevSnpReport(b));
      }),
      { numRuns: 3000, seed: 12 },
    );
  });

  it('parseSnpCertTable: random and mutated tables', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 512 }), mutate([table])), (b) => {
        parsesOrTypedError(() => parseSnpCertTable(b));
      }),
      { numRuns: 3000, seed: 13 },
    );
  });

  it('readSevSnpEvidence: mutated configfs-tsm JSON and random JSON objects', () => {
    const jsonish = fc.record(
      { provider: fc.oneof(fc.constant('sev_guest'), fc.string()), outblob: fc.oneof(fc.base64String(), fc.string(), fc.integer()), auxblob: fc.oneof(fc.base64String(), fc.constant(null), fc.array(fc.nat())) },
      { requiredKeys: [] },
    );
    fc.assert(
      fc.property(fc.oneof(mutate([configfs]), jsonish.map((o) => utf8(JSON.stringify(o)))), (b) => {
        detectSevSnpEvidence(b);
        parsesOrTypedError(() => readSevSnpEvidence(b));
      }),
      { numRuns: 2000, seed: 14 },
    );
  });
});

describe('verifySevSnp under fuzzing', () => {
  const known = new Set(Object.keys(ErrorCodes));
  known.delete('ERR_INTERNAL');
  const original = reports[0]!;
  const genuine = (report: Uint8Array) => equalBytes(report.subarray(0, 0x330), original.subarray(0, 0x330));

  it('mutated reports, tables and certificates never throw, fail with stable codes, and never pass altered', async () => {
    const input = fc.oneof(
      mutate([original]).map((evidence) => ({ evidence, certs: [vcek], form: 'raw' as const })),
      mutate([configfs]).map((evidence) => ({ evidence, certs: [] as Uint8Array[], form: 'configfs' as const })),
      mutate([vcek]).map((cert) => ({ evidence: original, certs: [cert], form: 'cert' as const })),
    );
    await fc.assert(
      fc.asyncProperty(input, async ({ evidence, certs, form }) => {
        const r = await verifySevSnp({ evidence, certs, now: new Date('2023-06-01T00:00:00Z') });
        for (const e of r.errors) expect(known.has(e.code), e.code).toBe(true);
        if (!r.ok) return;
        if (form === 'raw') expect(genuine(evidence)).toBe(true);
        if (form === 'configfs') expect(genuine(readSevSnpEvidence(evidence).report)).toBe(true);
        if (form === 'cert') expect(certs[0]).toEqual(vcek);
      }),
      { numRuns: 300, seed: 15 },
    );
  });
});
