/* eslint-disable @typescript-eslint/no-explicit-any -- tests edit policy documents as free-form JSON */
import { describe, it, expect, beforeAll } from 'vitest';
import fc from 'fast-check';
import { CustodyError, utf8 } from '@custody/core';
import type { NormalizedClaims } from '@custody/attest';
import { appraise, createEar, generateEarSigningKey, loadPolicy, parsePolicyDocument, publishJwks, readPolicyText, validatePolicyObject, verifyEar, type CompiledPolicy, type EarSigningKey } from './index.js';
import * as F from './testing/claims.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const NOW = new Date('2025-06-01T12:00:00Z');

/** Loading must either succeed or fail with ERR_POLICY_INVALID: never another exception. */
async function loadsOrInvalid(input: string | Uint8Array, format?: 'yaml' | 'json' | 'auto'): Promise<void> {
  try {
    await loadPolicy(input, format);
  } catch (e) {
    if (!(e instanceof CustodyError)) throw e;
    expect(e.code).toBe('ERR_POLICY_INVALID');
  }
}

function mutate(text: string, edits: { at: number; op: number; ch: string }[]): string {
  let s = text;
  for (const { at, op, ch } of edits) {
    const i = s.length === 0 ? 0 : at % s.length;
    if (op === 0) s = s.slice(0, i) + s.slice(i + 1);
    else if (op === 1) s = s.slice(0, i) + ch + s.slice(i);
    else s = s.slice(0, i) + ch + s.slice(i + 1);
  }
  return s;
}

const editArb = fc.array(fc.record({ at: fc.nat(), op: fc.integer({ min: 0, max: 2 }), ch: fc.constantFrom(':', '-', ' ', '\n', '[', ']', '{', '}', '"', "'", '&', '*', '!', '#', '0', 'a', 'x', '|', '>', '\t', '%', '@', '?') }), { minLength: 1, maxLength: 8 });

describe('policy loader fuzz', () => {
  it('random text gives ERR_POLICY_INVALID or a policy', async () => {
    await fc.assert(fc.asyncProperty(fc.string({ maxLength: 400 }), (s) => loadsOrInvalid(s)), { numRuns: RUNS });
  });

  it('random bytes give ERR_POLICY_INVALID', async () => {
    await fc.assert(fc.asyncProperty(fc.uint8Array({ maxLength: 400 }), (b) => loadsOrInvalid(b)), { numRuns: RUNS });
  });

  it('random JSON values give ERR_POLICY_INVALID', async () => {
    await fc.assert(fc.asyncProperty(fc.jsonValue({ maxDepth: 6 }), (v) => loadsOrInvalid(JSON.stringify(v) ?? 'null', 'json')), { numRuns: RUNS });
  });

  it('mutated real YAML policies load or give ERR_POLICY_INVALID', async () => {
    await fc.assert(fc.asyncProperty(editArb, (edits) => loadsOrInvalid(mutate(F.POLICY_YAML, edits), 'yaml')), { numRuns: RUNS });
  });

  it('mutated real JSON policies load or give ERR_POLICY_INVALID', async () => {
    const json = JSON.stringify(readPolicyText(F.POLICY_YAML), null, 1);
    await fc.assert(fc.asyncProperty(editArb, (edits) => loadsOrInvalid(mutate(json, edits), 'json')), { numRuns: RUNS });
  });

  it('policies with random values in every field give ERR_POLICY_INVALID or a policy', () => {
    const base = readPolicyText(F.POLICY_YAML) as Record<string, any>;
    const paths: string[][] = [
      ['apiVersion'],
      ['id'],
      ['version'],
      ['allowSimulated'],
      ['platforms'],
      ['platforms', 'tdx'],
      ['platforms', 'tdx', 'mrtd'],
      ['platforms', 'tdx', 'tcb'],
      ['platforms', 'tdx', 'tcb', 'allowedStatuses'],
      ['platforms', 'sev-snp', 'tcb', 'minSvn'],
      ['platforms', 'tpm', 'pcrs'],
      ['platforms', 'nitro', 'pcrs'],
      ['platforms', 'nvidia', 'values'],
      ['rules'],
    ];
    fc.assert(
      fc.property(fc.constantFrom(...paths), fc.anything({ maxDepth: 3, withNullPrototype: true, withObjectString: true }), (path, value) => {
        const doc = structuredClone(base);
        let o: Record<string, any> = doc;
        for (const k of path.slice(0, -1)) o = o[k] as Record<string, any>;
        o[path.at(-1)!] = value;
        try {
          validatePolicyObject(doc);
        } catch (e) {
          if (!(e instanceof CustodyError)) throw e;
          expect(e.code).toBe('ERR_POLICY_INVALID');
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('custom rules with random CEL give ERR_POLICY_INVALID or a policy whose appraisals never throw', async () => {
    const base = readPolicyText(F.POLICY_YAML) as Record<string, any>;
    const cel = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.constantFrom('claims.measurements', 'claims.tcb.components.snp >= 1', 'ref.values.x', '1 / 0 == 1', "claims.platformClaims.vmpl == 'a'", 'size(claims) > 2', '[1,2].all(x, x > 0)', 'has(claims.nonce)', 'now > 0'),
    );
    await fc.assert(
      fc.asyncProperty(cel, async (expr) => {
        const doc = structuredClone(base);
        doc.rules = [{ id: 'fuzz', expr, claim: 'configuration', reason: 'fuzz' }];
        let p: CompiledPolicy;
        try {
          p = await loadPolicy(utf8(JSON.stringify(doc)), 'json');
        } catch (e) {
          if (!(e instanceof CustodyError)) throw e;
          expect(e.code).toBe('ERR_POLICY_INVALID');
          return;
        }
        const a = appraise(p, [F.snpClaims(), F.nvidiaClaims()], { now: NOW });
        const rule = a.submods.cpu0!.findings.find((f) => f.rule === 'fuzz');
        // A custom rule either passed silently or failed closed.
        if (rule) expect(rule.passed).toBe(false);
      }),
      { numRuns: RUNS },
    );
  });
});

describe('appraisal fuzz', () => {
  let policy: CompiledPolicy;
  beforeAll(async () => {
    policy = await loadPolicy(F.POLICY_YAML);
  });

  const fixtures: (() => NormalizedClaims)[] = [F.snpClaims, F.tdxClaims, F.nitroClaims, F.tpmClaims, F.azureSnpClaims, F.nvidiaClaims, F.simClaims];
  const fields = ['measurements', 'tcb', 'signer', 'debug', 'simulated', 'platformClaims', 'devices', 'reportData', 'nonce'] as const;

  it('claims with random values in any field never throw and never affirm a changed measurement', () => {
    fc.assert(
      fc.property(fc.constantFrom(...fixtures), fc.constantFrom(...fields), fc.anything({ maxDepth: 3 }), (make, field, value) => {
        const claims = make() as unknown as Record<string, unknown>;
        claims[field] = value;
        const a = appraise(policy, claims as unknown as NormalizedClaims, { now: NOW });
        if (field === 'measurements') expect(a.status).not.toBe('affirming');
        if (field === 'debug' && value !== false) expect(a.status).not.toBe('affirming');
      }),
      { numRuns: RUNS },
    );
  });

  it('regression: a composite device entry that is not claims is contraindicated, not a crash', () => {
    for (const devices of [{ x: undefined }, { x: 'str' }, { x: null }, { x: [] }, []]) {
      const claims = F.azureSnpClaims() as unknown as Record<string, unknown>;
      claims.devices = devices;
      expect(appraise(policy, claims as unknown as NormalizedClaims, { now: NOW }).status).toBe('contraindicated');
    }
  });

  it('random measurement values are contraindicated', () => {
    fc.assert(
      fc.property(fc.constantFrom(...fixtures.slice(0, 6)), fc.string({ maxLength: 100 }), (make, value) => {
        const claims = make();
        for (const k of Object.keys(claims.measurements)) claims.measurements[k] = value;
        expect(appraise(policy, claims, { now: NOW }).status).toBe('contraindicated');
      }),
      { numRuns: RUNS },
    );
  });
});

describe('EAR verification fuzz', () => {
  let key: EarSigningKey;
  let token: string;
  let jwks: ReturnType<typeof publishJwks>;
  let payload: string;
  beforeAll(async () => {
    key = await generateEarSigningKey();
    jwks = publishJwks([key]);
    const policy = await loadPolicy(F.POLICY_YAML);
    ({ token } = await createEar(appraise(policy, F.tdxClaims(), { now: NOW }), key, { now: NOW, verifierId: { developer: 'x', build: 'y' } }));
    payload = JSON.stringify((await verifyEar(token, { jwks, now: NOW })).ear);
  });

  const expectEarError = (e: unknown) => {
    if (!(e instanceof CustodyError)) throw e;
    expect(e.code).toMatch(/^ERR_EAR_/);
  };

  it('random strings are rejected with ERR_EAR_*', async () => {
    await fc.assert(
      fc.asyncProperty(fc.oneof(fc.string({ maxLength: 300 }), fc.tuple(fc.base64String(), fc.base64String(), fc.base64String()).map((p) => p.join('.'))), async (t) => {
        await verifyEar(t, { jwks, now: NOW }).then(
          () => expect.unreachable('a random token verified'),
          expectEarError,
        );
      }),
      { numRuns: RUNS },
    );
  });

  it('a mutated real EAR is rejected, unless the mutation did not change the decoded bytes', async () => {
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/';
    await fc.assert(
      fc.asyncProperty(fc.nat(), fc.constantFrom(...alphabet.split('')), async (at, ch) => {
        const i = at % token.length;
        const t = token.slice(0, i) + ch + token.slice(i + 1);
        if (t === token) return;
        try {
          const v = await verifyEar(t, { jwks, now: NOW });
          expect(JSON.stringify(v.ear)).toBe(payload);
        } catch (e) {
          expectEarError(e);
        }
      }),
      { numRuns: RUNS },
    );
  });
});

it('parsePolicyDocument never throws a non-Custody error on a known crasher shape', () => {
  // Regression seeds: inputs that once reached the schema with non-JSON values.
  for (const s of ['!!binary aGVsbG8=', '? [a, b]\n: c', 'a: !!set {x, y}', 'a: 2001-12-14t21:59:43.10-05:00', '- &x a\n- *y']) {
    try {
      parsePolicyDocument(s);
    } catch (e) {
      expect(e).toBeInstanceOf(CustodyError);
      expect((e as CustodyError).code).toBe('ERR_POLICY_INVALID');
    }
  }
});
