import { describe, expect, it } from 'vitest';
import { concatBytes, utf8 } from '@custody/core';
import { rfc6962 } from '../merkle/hasher.js';
import { openCheckpoint, signCheckpoint } from '../checkpoint/checkpoint.js';
import { parseTlogPolicy, verifyCheckpointWithPolicy } from '../policy/policy.js';
import { formatTlogProof, parseTlogProof } from '../proof/tlog-proof.js';
import { requestCosignature } from '../witness/client.js';
import { formatAddCheckpoint, parseAddCheckpoint } from '../witness/protocol.js';
import { testLogKey } from '../testing/keys.js';
import { openNote, parseNote, signNote } from './note.js';
import { decodeUtf8Exact } from './utf8.js';

const BOM = new Uint8Array([0xef, 0xbb, 0xbf]);
const withBom = (b: Uint8Array) => concatBytes(BOM, b);

describe('decodeUtf8Exact', () => {
  it('keeps a byte-order mark and round-trips every valid input byte for byte', () => {
    for (const s of ['', 'a\n', '\uFEFF', '\uFEFFa\n', 'a\uFEFF\n', '\uFEFF\uFEFF', '\u2014 x\n', '\u{1F600}']) {
      expect(decodeUtf8Exact(utf8(s)), JSON.stringify(s)).toBe(s);
    }
    expect(decodeUtf8Exact(BOM)).toBe('\uFEFF');
  });

  it('rejects invalid UTF-8 with ERR_INPUT_MALFORMED', () => {
    for (const b of [[0xff], [0xef, 0xbb], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0x61, 0xf8]]) {
      expect(() => decodeUtf8Exact(new Uint8Array(b)), JSON.stringify(b)).toThrowError(expect.objectContaining({ code: 'ERR_INPUT_MALFORMED' }) as Error);
    }
  });
});

// Go's note.Open verifies over the raw bytes: a note with a BOM prepended keeps it in its text, so
// the log's signature (made over the text without it) does not verify. Every byte-input path that
// carries a note must see the same bytes as the string form, and fail the same way.
describe('a byte-order mark before a signed note is part of the note (as in Go), for strings and bytes alike', async () => {
  const k = await testLogKey('log.example/bom');
  const note = await signCheckpoint({ origin: 'log.example/bom', size: 1, rootHash: rfc6962.leaf(utf8('x')), extensions: [] }, [k.signer]);
  const policy = parseTlogPolicy(`log ${k.vkey}\nquorum none\n`);
  const now = new Date('2025-06-01T00:00:00Z');

  const cases: { name: string; open: (input: string | Uint8Array) => Promise<unknown>; code: string }[] = [
    { name: 'openNote', open: (i) => openNote(i, [k.verifier]), code: 'ERR_NOTE_SIGNATURE' },
    // The BOM ends up in the checkpoint's origin line, which then names no trusted log.
    { name: 'openCheckpoint', open: (i) => openCheckpoint(i, [k.verifier]), code: 'ERR_TLOG_ORIGIN' },
    { name: 'verifyCheckpointWithPolicy', open: (i) => verifyCheckpointWithPolicy(i, policy, { now }), code: 'ERR_TLOG_ORIGIN' },
  ];
  for (const c of cases) {
    it(`${c.name}: the note verifies as string and bytes; with a BOM it fails with ${c.code} as both`, async () => {
      await expect(c.open(note)).resolves.toBeTruthy();
      await expect(c.open(utf8(note))).resolves.toBeTruthy();
      await expect(c.open('\uFEFF' + note)).rejects.toMatchObject({ code: c.code });
      await expect(c.open(withBom(utf8(note)))).rejects.toMatchObject({ code: c.code });
    });
  }

  it('parseNote keeps the BOM in the text of a byte input, exactly as for the string', () => {
    const fromBytes = parseNote(withBom(utf8(note)));
    const fromString = parseNote('\uFEFF' + note);
    expect(fromBytes.text.startsWith('\uFEFF')).toBe(true);
    expect(fromBytes.textBytes).toEqual(fromString.textBytes);
    expect(fromBytes.textBytes.subarray(0, 3)).toEqual(BOM);
  });

  it('a note whose signed text really starts with a BOM verifies, as string and as bytes', async () => {
    const signed = await signNote('\uFEFFhello\n', [k.signer]);
    await expect(openNote(signed, [k.verifier])).resolves.toMatchObject({ note: { text: '\uFEFFhello\n' } });
    await expect(openNote(utf8(signed), [k.verifier])).resolves.toMatchObject({ note: { text: '\uFEFFhello\n' } });
    // Its twin without the BOM is other text: the signature does not verify.
    await expect(openNote(signed.slice(1), [k.verifier])).rejects.toMatchObject({ code: 'ERR_NOTE_SIGNATURE' });
  });

  it('tlog-proof and add-checkpoint bytes keep a leading BOM too (then their header is wrong)', () => {
    const proof = formatTlogProof({ index: 0, proof: [], checkpoint: note });
    expect(parseTlogProof(utf8(proof)).checkpoint).toBe(note);
    expect(() => parseTlogProof(withBom(utf8(proof)))).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_PROOF' }) as Error);
    expect(() => parseTlogProof('\uFEFF' + proof)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_PROOF' }) as Error);
    const add = formatAddCheckpoint({ oldSize: 0, proof: [], checkpoint: note });
    expect(parseAddCheckpoint(utf8(add)).checkpoint).toBe(note);
    expect(() => parseAddCheckpoint(withBom(utf8(add)))).toThrowError(expect.objectContaining({ code: 'ERR_WITNESS_BAD_REQUEST' }) as Error);
    expect(() => parseAddCheckpoint('\uFEFF' + add)).toThrowError(expect.objectContaining({ code: 'ERR_WITNESS_BAD_REQUEST' }) as Error);
  });

  it('a tlog-proof whose checkpoint carries a BOM keeps it, and the checkpoint then fails to verify', async () => {
    const proof = utf8(formatTlogProof({ index: 0, proof: [], checkpoint: '\uFEFF' + note }));
    const p = parseTlogProof(proof);
    expect(p.checkpoint).toBe('\uFEFF' + note);
    await expect(verifyCheckpointWithPolicy(p.checkpoint, policy, { now })).rejects.toMatchObject({ code: 'ERR_TLOG_ORIGIN' });
    await expect(openNote(p.checkpoint, [k.verifier])).rejects.toMatchObject({ code: 'ERR_NOTE_SIGNATURE' });
  });

  it("a witness's cosignature response with a BOM is malformed; the same lines without one are accepted", async () => {
    const lines = utf8('\u2014 witness.example/w ' + 'A'.repeat(100) + '\n');
    const req = { oldSize: 0, proof: [], checkpoint: note };
    const answer = (body: Uint8Array) => () => Promise.resolve(new Response(new Uint8Array(body), { status: 200 }));
    await expect(requestCosignature(answer(lines), 'http://w.example', req)).resolves.toBe(decodeUtf8Exact(lines));
    await expect(requestCosignature(answer(withBom(lines)), 'http://w.example', req)).rejects.toMatchObject({ code: 'ERR_WITNESS_UNAVAILABLE' });
  });
});
