import { describe, expect, it } from 'vitest';
import { toBase64, utf8 } from '@custody/core';
import { formatCheckpointBody, parseCheckpointBody } from './checkpoint.js';
import { rfc6962 } from '../merkle/hasher.js';
import { MemoryTree } from '../merkle/tree.js';

describe('checkpoint body (C2SP tlog-checkpoint)', () => {
  it('accepts the empty tree only with the empty tree root', async () => {
    const empty = `log.example/c\n0\n${toBase64(rfc6962.emptyRoot())}\n`;
    expect(parseCheckpointBody(empty)).toMatchObject({ origin: 'log.example/c', size: 0 });
    expect(formatCheckpointBody(parseCheckpointBody(empty))).toBe(empty);
    const t = new MemoryTree();
    t.appendEntry(utf8('e0'));
    const root1 = await t.root(1);
    // A size-0 checkpoint with any other root is malformed, parsing and formatting alike.
    expect(() => parseCheckpointBody(`log.example/c\n0\n${toBase64(root1)}\n`)).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_CHECKPOINT' }) as Error);
    expect(() => formatCheckpointBody({ origin: 'log.example/c', size: 0, rootHash: root1, extensions: [] })).toThrowError(expect.objectContaining({ code: 'ERR_TLOG_CHECKPOINT' }) as Error);
    expect(parseCheckpointBody(`log.example/c\n1\n${toBase64(root1)}\n`).size).toBe(1);
  });
});
