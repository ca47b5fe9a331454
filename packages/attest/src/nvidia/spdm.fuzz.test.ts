import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CustodyError, equalBytes, fromHex, utf8 } from '@custody/core';
import { readVector, readVectorText } from '../../../../test/vectors.js';
import { readNvidiaEvidence } from './evidence.js';
import { parseNvidiaOpaqueData } from './opaque.js';
import { parseSpdmMeasurementReport } from './spdm.js';
import { nvidiaVerifier } from './verifier.js';

const REPORT = fromHex(readVectorText('attestation/nvidia/hopperAttestationReport.txt').trim());
const CHAIN = readVector('attestation/nvidia/hopper_cert_chain_case1.txt');
const AT = new Date('2024-09-01T00:00:00Z');
const CODES = /^ERR_(INPUT_[A-Z_]+|CERT_PARSE)$/;

function typedOrValue(fn: () => unknown): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    expect(e.code).toMatch(CODES);
  }
}

const mutated = fc.oneof(
  fc.array(fc.tuple(fc.nat(REPORT.length - 1), fc.integer({ min: 1, max: 255 })), { minLength: 1, maxLength: 6 }).map((fs) => {
    const b = REPORT.slice();
    for (const [i, x] of fs) b[i]! ^= x;
    return b;
  }),
  // Header fields (request, response header, first block) get most of the attention.
  fc.array(fc.tuple(fc.nat(60), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }).map((fs) => {
    const b = REPORT.slice();
    for (const [i, x] of fs) b[i] = x;
    return b;
  }),
  fc.nat(REPORT.length - 1).map((n) => REPORT.slice(0, n)),
  fc.tuple(fc.nat(REPORT.length), fc.uint8Array({ minLength: 1, maxLength: 8 })).map(([at, ins]) => Uint8Array.from([...REPORT.subarray(0, at), ...ins, ...REPORT.subarray(at)])),
);

describe('NVIDIA SPDM report parser fuzz', () => {
  it('random bytes give a typed error (report, opaque data, evidence container)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), (b) => {
        typedOrValue(() => parseSpdmMeasurementReport(b));
        typedOrValue(() => parseNvidiaOpaqueData(b));
        typedOrValue(() => readNvidiaEvidence(b));
      }),
      { numRuns: 3000 },
    );
  });

  it('random reports behind a valid SPDM prefix give a typed error', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (tail) => typedOrValue(() => parseSpdmMeasurementReport(Uint8Array.from([...REPORT.subarray(0, 45), ...tail])))),
      { numRuns: 3000 },
    );
  });

  it('mutations of the real report parse or give a typed error', () => {
    fc.assert(fc.property(mutated, (b) => typedOrValue(() => parseNvidiaOpaqueData(parseSpdmMeasurementReport(b).response.opaqueData))), { numRuns: 3000 });
  });

  it('random JSON evidence gives a typed error', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.boolean(), (v, wrap) => {
        const doc = wrap ? { format: 'custody-nvidia-gpu/v1', report: v } : v;
        typedOrValue(() => readNvidiaEvidence(utf8(JSON.stringify(doc))));
      }),
      { numRuns: 1000 },
    );
  });

  it('no mutation of the report verifies', async () => {
    await fc.assert(
      fc.asyncProperty(mutated, async (m) => {
        fc.pre(!equalBytes(m, REPORT));
        const r = await nvidiaVerifier.verify({ evidence: m, certs: [CHAIN], now: AT });
        expect(r.ok).toBe(false);
        expect(r.errors[0]!.code).toMatch(/^ERR_[A-Z_]+$/);
        expect(r.errors[0]!.code).not.toBe('ERR_INTERNAL');
      }),
      { numRuns: 300 },
    );
  });
});
