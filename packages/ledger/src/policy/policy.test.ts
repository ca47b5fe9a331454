import { describe, expect, it } from 'vitest';
import { fixedClock, utf8 } from '@custody/core';
import { formatTlogPolicy, parseTlogPolicy, quorumSatisfied, verifyCheckpointWithPolicy } from './policy.js';
import { formatTlogProof, parseTlogProof, verifyTlogProof } from '../proof/tlog-proof.js';
import { signCheckpoint } from '../checkpoint/checkpoint.js';
import { MemoryTree } from '../merkle/tree.js';
import { proveInclusion } from '../merkle/proof.js';
import { signatureLine, formatNote, parseNote } from '../note/note.js';
import { testLogKey, testWitnessKey } from '../testing/keys.js';

const now = new Date('2025-06-01T00:00:10Z');

describe('tlog-policy', async () => {
  const log = await testLogKey('log.example/a', 11);
  const ws = await Promise.all([1, 2, 3, 4, 5, 6].map((i) => testWitnessKey(`w${i}.example`, 100 + i)));
  const text = `# two organisations
log ${log.vkey} https://log.example/a
witness X1 ${ws[0]!.vkey}
witness X2 ${ws[1]!.vkey}
witness X3 ${ws[2]!.vkey}
group X-witnesses 2 X1 X2 X3

  witness Y1 ${ws[3]!.vkey}
witness\tY2 ${ws[4]!.vkey}
witness Y3 ${ws[5]!.vkey} https://w6.example/
group Y-witnesses any Y1 Y2 Y3
group X-and-Y all X-witnesses Y-witnesses
quorum X-and-Y
`;

  it('parses the spec example shape and evaluates nested quorums', () => {
    const p = parseTlogPolicy(text);
    expect(p.logs[0]!.url).toBe('https://log.example/a');
    expect(p.witnesses.get('Y3')!.url).toBe('https://w6.example/');
    expect(quorumSatisfied(p, new Set(['X1', 'X2', 'Y3']))).toBe(true);
    expect(quorumSatisfied(p, new Set(['X1', 'Y1', 'Y2', 'Y3']))).toBe(false);
    expect(quorumSatisfied(p, new Set(['X1', 'X3']))).toBe(false);
    expect(parseTlogPolicy(formatTlogPolicy(p))).toEqual(p);
    expect(quorumSatisfied(parseTlogPolicy(`log ${log.vkey}\nquorum none\n`), new Set())).toBe(true);
  });

  it('rejects malformed policies with ERR_TLOG_POLICY', () => {
    const bad = [
      `log ${log.vkey}\n`,
      `quorum none\nquorum none\n`,
      `witness none ${ws[0]!.vkey}\nquorum none\n`,
      `witness A ${ws[0]!.vkey}\nwitness B ${ws[0]!.vkey}\nquorum A\n`,
      `witness A ${log.vkey}\nquorum A\n`,
      `log ${ws[0]!.vkey}\nquorum none\n`,
      `group G any A\nwitness A ${ws[0]!.vkey}\nquorum G\n`,
      `witness A ${ws[0]!.vkey}\ngroup G 2 A\nquorum G\n`,
      `witness A ${ws[0]!.vkey}\ngroup G any A A\nquorum G\n`,
      `quorum Z\n`,
      `frobnicate\nquorum none\n`,
      `log not-a-key\nquorum none\n`,
      `quorum none\r\n`,
    ];
    for (const b of bad) expect(() => parseTlogPolicy(b), b).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_POLICY' }) as Error);
  });

  it('accepts a checkpoint only with a quorum of valid cosignatures', async () => {
    const p = parseTlogPolicy(text);
    const tree = new MemoryTree();
    for (let i = 0; i < 10; i++) tree.appendEntry(utf8(`e${i}`));
    const cp = { origin: 'log.example/a', size: 10, rootHash: await tree.root(), extensions: [] };
    const signed = await signCheckpoint(cp, [log.signer]);
    const note = parseNote(signed);
    const cosign = async (idx: number[]) => {
      const lines = [...note.signatures];
      for (const i of idx) lines.push(signatureLine(ws[i]!.signer.name, ws[i]!.signer.keyId, await ws[i]!.signer.sign(note.textBytes)));
      return formatNote(note.text, lines);
    };
    const ok = await verifyCheckpointWithPolicy(await cosign([0, 2, 4]), p, { now });
    expect(ok.witnesses.sort()).toEqual(['X1', 'X3', 'Y2']);
    await expect(verifyCheckpointWithPolicy(await cosign([0, 4]), p, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    await expect(verifyCheckpointWithPolicy(signed, p, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });

    // tlog-proof: a self-contained proof for entry 7, verified offline against the policy.
    const proofText = formatTlogProof({ index: 7, proof: await proveInclusion(tree, 7, 10), checkpoint: await cosign([0, 1, 3]), extra: utf8('ctx') });
    expect(proofText.startsWith('c2sp.org/tlog-proof@v1\nextra Y3R4\nindex 7\n')).toBe(true);
    const parsed = parseTlogProof(proofText);
    expect(formatTlogProof(parsed)).toBe(proofText);
    const verified = await verifyTlogProof(proofText, { entry: utf8('e7') }, p, { now });
    expect(verified.index).toBe(7);
    await expect(verifyTlogProof(proofText, { entry: utf8('e8') }, p, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_INCLUSION' });
    await expect(verifyTlogProof(proofText.replace('index 7', 'index 6'), { entry: utf8('e7') }, p, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_INCLUSION' });
    const weak = formatTlogProof({ index: 7, proof: await proveInclusion(tree, 7, 10), checkpoint: await cosign([0]) });
    await expect(verifyTlogProof(weak, { entry: utf8('e7') }, p, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
  });

  it('counts only fresh cosignatures: future-dated ones never, old ones not beyond maxAgeSeconds', async () => {
    const late = await testWitnessKey('late.example', 200, fixedClock('2099-01-01T00:00:00Z'));
    const single = parseTlogPolicy(`log ${log.vkey}\nwitness W ${late.vkey}\nquorum W\n`);
    const tree = new MemoryTree();
    for (let i = 0; i < 3; i++) tree.appendEntry(utf8(`e${i}`));
    const note = parseNote(await signCheckpoint({ origin: 'log.example/a', size: 3, rootHash: await tree.root(), extensions: [] }, [log.signer]));
    const cosigned = formatNote(note.text, [...note.signatures, signatureLine(late.signer.name, late.signer.keyId, await late.signer.sign(note.textBytes))]);
    // The witness's clock says 2099: at the real verification time that cosignature does not count.
    await expect(verifyCheckpointWithPolicy(cosigned, single, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    const proof = formatTlogProof({ index: 1, proof: await proveInclusion(tree, 1, 3), checkpoint: cosigned });
    await expect(verifyTlogProof(proof, { entry: utf8('e1') }, single, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    const in2099 = new Date('2099-01-01T00:00:30Z');
    expect((await verifyTlogProof(proof, { entry: utf8('e1') }, single, { now: in2099 })).witnesses).toEqual(['W']);
    await expect(verifyCheckpointWithPolicy(cosigned, single, { now: new Date('2099-01-01T02:00:00Z'), maxAgeSeconds: 3600 })).rejects.toMatchObject({ code: 'ERR_TLOG_QUORUM' });
    // `now` is required; a caller that passes none (plain JavaScript) gets a typed error, not a skipped check.
    await expect(verifyCheckpointWithPolicy(cosigned, single, {} as { now: Date })).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect((verifyCheckpointWithPolicy as (i: string, p: unknown) => Promise<unknown>)(cosigned, single)).rejects.toMatchObject({ code: 'ERR_USAGE' });
    await expect(verifyCheckpointWithPolicy(cosigned, single, { now: new Date(NaN) })).rejects.toMatchObject({ code: 'ERR_USAGE' });
  });

  it('rejects malformed proof files with ERR_TLOG_PROOF', () => {
    const bad = ['', 'c2sp.org/tlog-proof@v1\n', 'c2sp.org/tlog-proof@v2\nindex 1\n\nx', 'c2sp.org/tlog-proof@v1\nindex 01\n\nx', 'c2sp.org/tlog-proof@v1\nindex 1\nAAAA\n\nx', 'c2sp.org/tlog-proof@v1\nextra !!\nindex 1\n\nx', 'c2sp.org/tlog-proof@v1\nindex 1\n\n'];
    for (const b of bad) expect(() => parseTlogProof(b), b).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_PROOF' }) as Error);
  });
});
