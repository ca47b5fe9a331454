// The broker's HTTP server cuts requests that do not arrive in time: a body that stalls, or a
// head that never ends, holds its connection (and what it sent) for the request deadline, not
// Node's default of 300 s.
import { connect, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { issueApiKey } from './auth/api-keys.js';
import { createBrokerApp } from './http/app.js';
import { HEADERS_TIMEOUT_MS, REQUEST_TIMEOUT_MS, serveBroker, type RunningServer } from './serve.js';
import { embeddedBackend, type Harness } from './testing/harness.js';

describe('serveBroker deadlines', () => {
  const backend = embeddedBackend();
  let h: Harness;
  let server: RunningServer | undefined;

  beforeEach(async () => {
    h = await backend.open();
  });
  afterEach(async () => {
    await server?.close();
    server = undefined;
    await h.close();
  });

  it('defaults well below Node’s 300 s', () => {
    expect(REQUEST_TIMEOUT_MS).toBeLessThanOrEqual(30_000);
    expect(HEADERS_TIMEOUT_MS).toBeLessThanOrEqual(REQUEST_TIMEOUT_MS);
  });

  it('closes a connection whose body stalls, or whose head never ends, at the request deadline', async () => {
    const token = (await issueApiKey(h.metadata, { tenant: 'acme', role: 'admin', label: 'admin', createdBy: 'test', now: Date.now() })).token;
    server = await serveBroker(createBrokerApp({ service: h.service, apiKeys: h.metadata }), { requestTimeoutMs: 1000 });
    const stalledBody = await open(server.port);
    const stalledHead = await open(server.port);
    const started = Date.now();
    const closed = [whenClosed(stalledBody), whenClosed(stalledHead)];
    // An admin's body the handler is reading, and a head.
    stalledBody.write(`POST /v1/keys HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n4000\r\n${' '.repeat(0x4000)}\r\n`);
    stalledHead.write('POST /v1/keys HTTP/1.1\r\nHost: x\r\nX-Slow: a');
    // Both keep trickling, so no idle timer could be what closes them.
    const trickle = setInterval(() => {
      if (!stalledBody.destroyed) stalledBody.write('1\r\n \r\n');
      if (!stalledHead.destroyed) stalledHead.write('a');
    }, 200);
    try {
      const answers = await Promise.race([Promise.all(closed), new Promise<undefined>((r) => setTimeout(() => r(undefined), 5000))]);
      expect(answers, 'both connections closed within 5 s').toBeDefined();
      expect(Date.now() - started).toBeGreaterThanOrEqual(900);
      // Node answers a request it cut with 408 before closing.
      for (const a of answers!) expect(a === '' || a.startsWith('HTTP/1.1 408'), a.slice(0, 40)).toBe(true);
    } finally {
      clearInterval(trickle);
      stalledBody.destroy();
      stalledHead.destroy();
    }
  });
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => resolve(s));
    s.once('error', reject);
  });
}

/** What the server sent until the connection closed. */
function whenClosed(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('error', () => undefined);
    socket.once('close', () => resolve(text));
  });
}
