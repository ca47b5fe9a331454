import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { fastReceiptForTests, parseReceiptWithSchema, RECEIPT_FORMAT } from './receipt.js';

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 20261126;
const hex = (n: number) => fc.string({ unit: fc.constantFrom(...'0123456789abcdef'), minLength: n, maxLength: n });
const digest = hex(64).map((h) => 'sha256:' + h);
const idArb = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,20}$/);
const time = fc.constantFrom('2026-11-26T10:00:00Z', '2026-11-26T10:00:00.123Z', '2026-11-26T10:00:00.123456789Z');
const receiptId = fc.tuple(hex(8), hex(4), hex(3), fc.constantFrom('8', '9', 'a', 'b'), hex(3), hex(12)).map(([a, b, c, d, e, f]) => `${a}-${b}-8${c}-${d}${e}-${f}`);

const valid = fc.record(
  {
    format: fc.constant(RECEIPT_FORMAT),
    receiptId,
    tenant: idArb,
    route: fc.string({ maxLength: 30 }),
    gateway: fc.record(
      {
        platform: fc.string({ maxLength: 32 }),
        simulated: fc.boolean(),
        measurements: fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 20 }), { maxKeys: 4 }),
        earId: fc.string({ maxLength: 20 }),
        attestationDigest: digest,
        gpus: fc.integer({ min: 1, max: 8 }),
      },
      { requiredKeys: ['platform', 'simulated', 'measurements', 'attestationDigest'] },
    ),
    model: fc.record({ id: idArb, digest, backend: fc.string({ maxLength: 20 }) }, { requiredKeys: ['id', 'backend'] }),
    policy: fc.record(
      {
        version: fc.string({ maxLength: 10 }),
        action: fc.constantFrom('none', 'allow', 'redact', 'mask', 'block', 'deny'),
        findings: fc.array(fc.record({ category: fc.string({ maxLength: 10 }), action: fc.string({ maxLength: 16 }), count: fc.nat() }), { maxLength: 3 }),
        rules: fc.array(fc.string({ maxLength: 10 }), { maxLength: 3 }),
        output: fc.record({ findings: fc.array(fc.record({ category: fc.string({ maxLength: 10 }), action: fc.string({ maxLength: 16 }), count: fc.nat() }), { maxLength: 3 }) }),
      },
      { requiredKeys: ['version', 'action', 'findings'] },
    ),
    request: fc.record({ digest, forwardedDigest: digest }, { requiredKeys: ['digest'] }),
    response: fc.record({ digest, status: fc.integer({ min: 100, max: 599 }), streamed: fc.boolean() }),
    timestamps: fc.record({ receivedAt: time, completedAt: time }),
    ledger: fc.option(fc.record({ index: fc.nat(), entryDigest: digest }), { nil: null }),
    signature: fc.record({ alg: fc.constant('Ed25519'), value: fc.string({ maxLength: 100 }) }),
  },
  { noNullPrototype: true },
);

/** Replaces, adds or deletes one member somewhere in the tree. */
function mutate(v: unknown, path: number[], op: number, junk: unknown): unknown {
  const copy = JSON.parse(JSON.stringify(v)) as unknown;
  let cur = copy as Record<string, unknown>;
  for (const step of path) {
    const keys = Object.keys(cur);
    if (keys.length === 0) break;
    const k = keys[step % keys.length]!;
    const next = cur[k];
    if (typeof next !== 'object' || next === null || op % 4 === 0) {
      if (op % 3 === 0) delete cur[k];
      else if (op % 3 === 1) cur[k] = junk;
      else cur[`${k}x`] = junk;
      return copy;
    }
    cur = next as Record<string, unknown>;
  }
  cur['__proto__'] = junk;
  return JSON.parse(JSON.stringify(copy).replace(/^\{/, '{"__proto__":1,')) as unknown;
}

const viaJson = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;

describe('receipt hand check against the zod schema', () => {
  it('accepts every valid receipt and builds exactly what the schema builds (member order included)', () => {
    fc.assert(
      fc.property(valid, (r) => {
        const v = viaJson(r);
        const fast = fastReceiptForTests(v);
        const schema = parseReceiptWithSchema(viaJson(r));
        expect(schema).toBeDefined();
        expect(fast).toBeDefined();
        expect(JSON.stringify(fast)).toBe(JSON.stringify(schema));
      }),
      { seed, numRuns: 500 },
    );
  });

  it('never accepts what the schema refuses, and agrees on what both accept', () => {
    fc.assert(
      fc.property(valid, fc.array(fc.nat(), { minLength: 1, maxLength: 4 }), fc.nat(), fc.jsonValue({ maxDepth: 2 }), (r, path, op, junk) => {
        const v = mutate(r, path, op, junk);
        const fast = fastReceiptForTests(viaJson(v));
        const schema = parseReceiptWithSchema(viaJson(v));
        if (fast !== undefined) {
          expect(schema).toBeDefined();
          expect(JSON.stringify(fast)).toBe(JSON.stringify(schema));
        }
      }),
      { seed, numRuns: 3000 },
    );
  });

  it('refuses over-long fields, non-integers, a __proto__ measurement and extra members', () => {
    const base = viaJson(fc.sample(valid, { seed, numRuns: 1 })[0]) as Record<string, Record<string, unknown>>;
    const cases: ((r: Record<string, Record<string, unknown>>) => void)[] = [
      (r) => (r.gateway!.platform = 'p'.repeat(33)),
      (r) => (r.response!.status = 200.5),
      (r) => (r.response!.status = 600),
      (r) => (r.signature!.value = 'v'.repeat(101)),
      (r) => (r.model!.extra = 1),
      (r) => (r.gateway!.measurements = JSON.parse('{"__proto__":"x"}') as unknown),
      (r) => (r.timestamps!.receivedAt = '2026-11-26 10:00:00Z'),
    ];
    for (const c of cases) {
      const r = viaJson(base) as Record<string, Record<string, unknown>>;
      c(r);
      expect(fastReceiptForTests(r)).toBeUndefined();
    }
  });

  it('gateway.gpus: an integer 1..8 or absent, the same for both checks', () => {
    const base = viaJson(fc.sample(valid, { seed, numRuns: 1 })[0]) as Record<string, Record<string, unknown>>;
    const withGpus = (gpus: unknown) => {
      const r = viaJson(base) as Record<string, Record<string, unknown>>;
      if (gpus === undefined) delete r.gateway!.gpus;
      else r.gateway!.gpus = gpus;
      return r;
    };
    for (const gpus of [0, 9, 1.5, '1', -1, null, true, [1], 1e21]) {
      expect(fastReceiptForTests(withGpus(gpus)), `gpus ${JSON.stringify(gpus)}`).toBeUndefined();
      expect(parseReceiptWithSchema(withGpus(gpus)), `gpus ${JSON.stringify(gpus)}`).toBeUndefined();
    }
    for (const gpus of [undefined, 1, 8]) {
      const fast = fastReceiptForTests(withGpus(gpus));
      const schema = parseReceiptWithSchema(withGpus(gpus));
      expect(fast).toBeDefined();
      expect(JSON.stringify(fast)).toBe(JSON.stringify(schema));
      expect(fast!.gateway.gpus).toBe(gpus);
      expect('gpus' in fast!.gateway).toBe(gpus !== undefined);
    }
  });
});
