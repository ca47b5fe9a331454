import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CustodyError, utf8 } from '@custody/core';
import { readVectorText } from '../../../test/vectors.js';
import {
  Witness,
  MemoryWitnessStore,
  createCosignatureVerifier,
  createEd25519Verifier,
  decodeEvent,
  openCheckpoint,
  parseAddCheckpoint,
  parseCheckpointBody,
  parseEntryBundle,
  parseNote,
  parseTilePath,
  parseTlogPolicy,
  parseTlogProof,
  parseVerifierKey,
} from './index.js';

const v = JSON.parse(readVectorText('tlog/vectors.json')) as { vkey: string; wvkey: string; checkpoint: string; oldCheckpoint: string };

/** Runs f; the only acceptable failure is a CustodyError with a stable ERR_ code. */
function typedOrOk(f: () => unknown): void {
  try {
    f();
  } catch (e) {
    if (!(e instanceof CustodyError) || !/^ERR_[A-Z0-9_]+$/.test(e.code)) throw e;
  }
}
async function typedOrOkAsync(f: () => Promise<unknown>): Promise<boolean> {
  try {
    await f();
    return true;
  } catch (e) {
    if (!(e instanceof CustodyError) || !/^ERR_[A-Z0-9_]+$/.test(e.code)) throw e;
    return false;
  }
}

/** A real input with a few bytes changed, inserted or removed. */
const mutated = (seed: string) =>
  fc
    .array(fc.tuple(fc.nat(seed.length), fc.integer({ min: 0, max: 255 }), fc.constantFrom('set', 'insert', 'delete')), { minLength: 1, maxLength: 4 })
    .map((ops) => {
      const b = [...utf8(seed)];
      for (const [at, val, op] of ops) {
        const i = Math.min(at, b.length);
        if (op === 'set' && i < b.length) b[i] = val;
        else if (op === 'insert') b.splice(i, 0, val);
        else b.splice(i, 1);
      }
      return new Uint8Array(b);
    });

const parsers: [string, (b: Uint8Array) => unknown][] = [
  ['note', (b) => parseNote(b)],
  ['checkpoint body', (b) => parseCheckpointBody(new TextDecoder().decode(b))],
  ['tlog-proof', (b) => parseTlogProof(b)],
  ['tlog-policy', (b) => parseTlogPolicy(b)],
  ['entry bundle', (b) => parseEntryBundle(b)],
  ['tile path', (b) => parseTilePath(new TextDecoder().decode(b))],
  ['add-checkpoint', (b) => parseAddCheckpoint(b)],
  ['vkey', (b) => parseVerifierKey(new TextDecoder().decode(b))],
  ['event', (b) => decodeEvent(b)],
];

describe('parsers never throw untyped errors', () => {
  for (const [name, parse] of parsers) {
    it(`${name}: random bytes`, () => {
      fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => typedOrOk(() => parse(b))), { numRuns: 400 });
    });
  }

  const seeds: Record<string, string> = {
    note: v.checkpoint,
    'checkpoint body': v.checkpoint.slice(0, v.checkpoint.indexOf('\n\n') + 1),
    'tlog-proof': `c2sp.org/tlog-proof@v1\nextra AAAA\nindex 777\n${v.checkpoint.split('\n')[2]}\n\n${v.checkpoint}`,
    'tlog-policy': `log ${v.vkey}\nwitness w1 ${v.wvkey}\ngroup g any w1\nquorum g\n`,
    'entry bundle': '\u0000\u0003abc\u0000\u0001d',
    'tile path': 'tile/entries/x001/x234/067.p/17',
    'add-checkpoint': `old 500\n${v.checkpoint.split('\n')[2]}\n\n${v.checkpoint}`,
    vkey: v.wvkey,
    event: '{"action":"drill","subject":"recovery","time":"2025-05-01T12:00:00Z","type":"operator.event","v":1}',
  };
  for (const [name, parse] of parsers) {
    it(`${name}: mutated real input`, () => {
      fc.assert(fc.property(mutated(seeds[name]!), (b) => typedOrOk(() => parse(b))), { numRuns: 400 });
    });
  }
});

describe('mutated checkpoints never verify with changed content', async () => {
  const log = await createEd25519Verifier(v.vkey);
  const wit = await createCosignatureVerifier(v.wvkey);
  const signedPart = v.checkpoint.slice(0, v.checkpoint.indexOf('\n\u2014 witness'));

  it('opens only if the text and the log signature are untouched', async () => {
    await fc.assert(
      fc.asyncProperty(mutated(v.checkpoint), async (b) => {
        let opened;
        const ok = await typedOrOkAsync(async () => {
          opened = await openCheckpoint(b, [log], [wit]);
        });
        if (ok) {
          expect(new TextDecoder().decode(b).startsWith(signedPart)).toBe(true);
          expect(opened).toBeTruthy();
        }
      }),
      { numRuns: 150 },
    );
  });

  it('a witness answers every mutated request with a status, never an exception', async () => {
    const w = new Witness({ cosigners: [(await import('./testing/keys.js').then((m) => m.testWitnessKey('w.example/f', 9))).signer], logs: new Map([['example.com/audit-log', [log]]]), store: new MemoryWitnessStore() });
    await fc.assert(
      fc.asyncProperty(mutated(`old 0\n\n${v.oldCheckpoint}`), async (b) => {
        const r = await w.addCheckpoint(b);
        expect([200, 400, 403, 404, 409, 422]).toContain(r.status);
      }),
      { numRuns: 150 },
    );
  });
});
