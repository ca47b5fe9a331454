import { describe, expect, it } from 'vitest';
import { readAll } from './stream-buffer.js';

describe('readAll with an abort signal', () => {
  it('reads a whole stream when nothing aborts', async () => {
    const s = new ReadableStream<Uint8Array>({ start: (c) => (c.enqueue(Uint8Array.of(1, 2)), c.enqueue(Uint8Array.of(3)), c.close()) });
    expect(await readAll(s, 10, new AbortController().signal)).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('an abort mid-read cancels the stream and fails the read (never a short result)', async () => {
    let cancelled: unknown;
    const s = new ReadableStream<Uint8Array>({ start: (c) => c.enqueue(Uint8Array.of(1)), cancel: (r) => void (cancelled = r) });
    const ac = new AbortController();
    const reading = readAll(s, 10, ac.signal);
    await new Promise((r) => setTimeout(r, 10));
    ac.abort(new Error('gone'));
    await expect(reading).rejects.toThrow('gone');
    expect(cancelled).toBeInstanceOf(Error);
  });

  it('an already-aborted signal reads nothing and cancels the stream', async () => {
    let cancelled = false;
    const s = new ReadableStream<Uint8Array>({ cancel: () => void (cancelled = true) });
    const ac = new AbortController();
    ac.abort(new Error('gone'));
    await expect(readAll(s, 10, ac.signal)).rejects.toThrow('gone');
    expect(cancelled).toBe(true);
  });
});
