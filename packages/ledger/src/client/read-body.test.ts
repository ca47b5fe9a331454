// readBodyLimited (@custody/core) and the ledger's clients that read bounded bodies through it.
import { describe, expect, it } from 'vitest';
import { readBodyLimited } from '@custody/core';
import { httpLogSource } from './log-source.js';
import { requestCosignature } from '../witness/client.js';

const CHUNK = 1 << 16;

/** A response whose body never ends; `pulled()` says how many bytes the reader asked for. */
function endless(status = 200, headers: Record<string, string> = {}): { res: Response; pulled: () => number } {
  let pulled = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      pulled += CHUNK;
      c.enqueue(new Uint8Array(CHUNK).fill(0x41));
    },
  });
  return { res: new Response(body, { status, headers }), pulled: () => pulled };
}

describe('readBodyLimited', () => {
  it('returns bodies up to the limit, and an empty body as empty bytes', async () => {
    expect(await readBodyLimited(new Response(new Uint8Array(100).fill(7)), 100)).toEqual(new Uint8Array(100).fill(7));
    expect(await readBodyLimited(new Response(null), 10)).toEqual(new Uint8Array(0));
  });

  it('refuses a declared Content-Length over the limit before reading anything', async () => {
    const e = endless(200, { 'content-length': String(1 << 30) });
    await expect(readBodyLimited(e.res, 1024)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE', detail: { max: 1024 } });
    expect(e.pulled()).toBeLessThanOrEqual(CHUNK);
  });

  it('stops reading a stream as soon as it passes the limit (no or a false Content-Length)', async () => {
    const e = endless();
    await expect(readBodyLimited(e.res, 8192)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(e.pulled()).toBeLessThanOrEqual(3 * CHUNK);
    const lying = endless(200, { 'content-length': '10' });
    await expect(readBodyLimited(lying.res, 8192)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(lying.pulled()).toBeLessThanOrEqual(3 * CHUNK);
  });
});

describe('clients read bounded bodies', () => {
  it('a log that streams an endless tile is cut off at the tile size', async () => {
    const e = endless();
    const src = httpLogSource(() => Promise.resolve(e.res), 'http://log.example/');
    await expect(src.readTile({ level: 0, index: 0, width: 256 })).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(e.pulled()).toBeLessThanOrEqual(3 * CHUNK);
  });

  it('a log whose body breaks off is unavailable', async () => {
    const broken = new ReadableStream<Uint8Array>({
      pull(c) {
        c.error(new Error('ECONNRESET'));
      },
    });
    const src = httpLogSource(() => Promise.resolve(new Response(broken, { status: 200 })), 'http://log.example/');
    await expect(src.readCheckpoint()).rejects.toMatchObject({ code: 'ERR_TLOG_UNAVAILABLE' });
  });

  it('a witness that streams an endless answer is unavailable, and little of it was read', async () => {
    const e = endless();
    const req = { oldSize: 0, proof: [], checkpoint: 'x\n1\nAAAA\n\n\u2014 x AAAA\n' };
    await expect(requestCosignature(() => Promise.resolve(e.res), 'http://w.example', req)).rejects.toMatchObject({ code: 'ERR_WITNESS_UNAVAILABLE' });
    expect(e.pulled()).toBeLessThanOrEqual(3 * CHUNK);
  });
});
