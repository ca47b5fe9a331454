import { describe, expect, it } from 'vitest';
import { CustodyError } from './errors.js';
import { readBodyLimited, type ByteBudget } from './read-body.js';

/** A response whose body arrives in the given chunks. */
function source(chunks: number[], headers: Record<string, string> = {}) {
  let cancelled = false;
  let next = 0;
  const body = new ReadableStream<Uint8Array>({
    pull(c) {
      if (next < chunks.length) c.enqueue(new Uint8Array(chunks[next++]!).fill(7));
      else c.close();
    },
    cancel() {
      cancelled = true;
    },
  });
  return { src: { headers: new Headers(headers), body }, cancelled: () => cancelled };
}

class Budget implements ByteBudget {
  used = 0;
  constructor(readonly max: number) {}
  take(n: number): boolean {
    if (this.used + n > this.max) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used -= n;
  }
  refusal(): Error {
    return new CustodyError('ERR_GATEWAY_OVERLOADED', 'budget spent');
  }
}

describe('readBodyLimited', () => {
  it('reads a body whole, refuses one over max by its Content-Length before reading, or as it arrives', async () => {
    expect((await readBodyLimited(source([3, 4]).src, 10)).length).toBe(7);
    const declared = source([3], { 'content-length': '11' });
    await expect(readBodyLimited(declared.src, 10)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE', detail: { max: 10, declared: 11 } });
    const grown = source([6, 6]);
    await expect(readBodyLimited(grown.src, 10)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(grown.cancelled()).toBe(true);
  });

  it('with a budget: a body returned stays counted (the caller gives it back); a failed read gives back what it took', async () => {
    const budget = new Budget(20);
    const held = await readBodyLimited(source([5, 5]).src, 100, 'body', budget);
    expect(budget.used).toBe(held.length);
    // A second body crosses the budget on its third chunk: refused, its first two chunks given back.
    const second = source([4, 4, 4]);
    await expect(readBodyLimited(second.src, 100, 'body', budget)).rejects.toMatchObject({ code: 'ERR_GATEWAY_OVERLOADED' });
    expect(second.cancelled()).toBe(true);
    expect(budget.used).toBe(10);
    // Over max: refused, nothing kept counted.
    await expect(readBodyLimited(source([6, 6]).src, 10, 'body', budget)).rejects.toMatchObject({ code: 'ERR_INPUT_TOO_LARGE' });
    expect(budget.used).toBe(10);
    budget.give(held.length);
    expect(budget.used).toBe(0);
  });

  it('with a budget: a stream that breaks gives back what it took, and its error propagates', async () => {
    const budget = new Budget(100);
    let n = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (n++ < 2) c.enqueue(new Uint8Array(8));
        else c.error(new Error('connection reset'));
      },
    });
    await expect(readBodyLimited({ headers: new Headers(), body }, 100, 'body', budget)).rejects.toThrow('connection reset');
    expect(budget.used).toBe(0);
  });
});
