// endWhole's lingering close: a request answered before its body arrived gets its answer and a
// FIN, and what it still sends is read and discarded within the bounds, so the client reads the
// answer instead of a connection reset.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { endWhole } from './node-server.js';

const MAX_BYTES = 4 << 20;
let server: Server;
let port: number;
/** Bytes the server read from each request after answering it. */
const drained: number[] = [];

beforeAll(async () => {
  server = createServer((req: IncomingMessage, res) => {
    const i = drained.push(0) - 1;
    endWhole(req, res, 413, { 'content-type': 'text/plain' }, 'too large', { ms: 3_000, maxBytes: MAX_BYTES });
    req.on('data', (c: Buffer) => (drained[i]! += c.length));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as { port: number }).port;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

/** A client that declares a huge body and keeps sending 256 KiB every 2 ms; it reads whatever comes. */
async function keepSending(allowHalfOpen: boolean): Promise<{ answer: string; closedAfterMs: number }> {
  const sock = connect({ port, host: '127.0.0.1', allowHalfOpen });
  await new Promise<void>((r) => sock.once('connect', () => r()));
  sock.on('error', () => undefined);
  let answer = '';
  sock.on('data', (d: Buffer) => (answer += d.toString('latin1')));
  const started = performance.now();
  const closed = new Promise<number>((r) => sock.once('close', () => r(performance.now() - started)));
  sock.write('POST /x HTTP/1.1\r\nhost: x\r\ncontent-length: 9999999999\r\n\r\n');
  const chunk = Buffer.alloc(256 * 1024);
  const pump = setInterval(() => {
    if (!sock.destroyed && sock.writable) sock.write(chunk);
  }, 2);
  const closedAfterMs = await Promise.race([closed, new Promise<number>((r) => setTimeout(() => r(-1), 10_000))]);
  clearInterval(pump);
  sock.destroy();
  return { answer, closedAfterMs };
}

describe('endWhole: an answer given before the body arrived', () => {
  it('reaches a client that keeps sending; the server reads on (up to its byte bound) instead of resetting the connection', async () => {
    for (let round = 0; round < 5; round++) {
      const before = drained.length;
      const { answer, closedAfterMs } = await keepSending(true);
      expect(answer).toMatch(/^HTTP\/1\.1 413 /);
      expect(answer.toLowerCase()).toContain('connection: close');
      expect(answer.endsWith('too large')).toBe(true);
      // Cut off at the byte bound, well before the time bound.
      expect(closedAfterMs).toBeGreaterThan(0);
      expect(closedAfterMs).toBeLessThan(3_000);
      // node:http alone would have closed the socket right after the answer, with nothing read.
      expect(drained[before]!).toBeGreaterThan(0);
      expect(drained[before]!).toBeLessThanOrEqual(MAX_BYTES + (1 << 20));
    }
  });

  it('a client that stops at the answer (closing its side) ends the connection at once', async () => {
    const { answer, closedAfterMs } = await keepSending(false);
    expect(answer).toMatch(/^HTTP\/1\.1 413 /);
    expect(closedAfterMs).toBeGreaterThan(0);
    expect(closedAfterMs).toBeLessThan(2_000);
  });
});
