// Per-client shares of the arriving-body budgets on the handshake's routes, over loopback with
// real peer addresses: senders holding key-release bodies open from one address fill only that
// address's share of the small budget, and a workload at another address still has its key
// released; once they hang up, their address has its whole share again.
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SimAttester } from '@custody/attester-service';
import { attestWith, releaseWith, simPolicy, startHandshakeBroker, type HandshakeBroker } from '../testing/handshake.js';

const GOOD = 'a1'.repeat(48);
/** One byte short of the 16 KiB a release body may have: held open, it never completes. */
const HELD = 16 * 1024 - 1;

describe('per-client shares of the arriving-body budgets', () => {
  let b: HandshakeBroker;
  const metrics = new Registry();
  const sockets: Socket[] = [];

  beforeAll(async () => {
    // Room for three held bodies in all, two per address.
    b = await startHandshakeBroker({ policy: simPolicy([GOOD]), start: { metrics, arrivingBodies: { maxArrivingSmallBodyBytes: 48 * 1024, maxArrivingSmallBodyBytesPerClient: 32 * 1024 } } });
    await b.admin.importKey({ name: 'dk', type: 'aes-256', material: randomBytes(32), releasePolicy: 'true' });
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    await b?.close();
  });

  const small = () => arrivingBytes(metrics, 'small');

  it('refuses an address holding its share of release bodies (503, per client) while a workload at another address gets its key', async () => {
    const a = await attestWith(b.workload, 'acme', new SimAttester({ measurements: { measurement: GOOD } }));
    const holders = [await holdRelease(b.started.port, '127.0.0.2'), await holdRelease(b.started.port, '127.0.0.2')];
    sockets.push(...holders);
    await waitFor(async () => ((await small()) === 2 * HELD ? true : undefined));

    const third = await holdRelease(b.started.port, '127.0.0.2');
    sockets.push(third);
    const refused = await answerOf(third);
    expect(refused).toMatch(/^HTTP\/1\.1 503/);
    expect(refused).toMatch(/\r\nretry-after: \d+\r\n/i);
    expect(JSON.parse(refused.slice(refused.indexOf('\r\n\r\n') + 4))).toMatchObject({ code: 'ERR_SERVICE_UNAVAILABLE', facts: { bound: 'arriving-bodies-per-client' } });

    // The workload's client connects from 127.0.0.1.
    const { released } = await releaseWith(b.workload, 'acme', a, 'dk');
    expect(released.key.name).toBe('dk');
    expect(await small()).toBe(2 * HELD);

    // Hung up: every byte given back, and the address holds a whole share again.
    for (const h of holders) h.destroy();
    await waitFor(async () => ((await small()) === 0 ? true : undefined));
    const again = [await holdRelease(b.started.port, '127.0.0.2'), await holdRelease(b.started.port, '127.0.0.2')];
    sockets.push(...again);
    await waitFor(async () => ((await small()) === 2 * HELD ? true : undefined));
    for (const h of again) h.destroy();
    await waitFor(async () => ((await small()) === 0 ? true : undefined));
  });
});

/** Bytes held now by an arriving-body budget (custody_broker_arriving_body_bytes). */
async function arrivingBytes(metrics: Registry, budget: 'large' | 'small'): Promise<number> {
  const metric = await metrics.getSingleMetric('custody_broker_arriving_body_bytes')!.get();
  return metric.values.find((v) => v.labels.budget === budget)?.value ?? 0;
}

/** A key release from `localAddress` whose body stops one byte short of its Content-Length. */
async function holdRelease(port: number, localAddress: string): Promise<Socket> {
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = connect({ port, host: '127.0.0.1', localAddress }, () => resolve(s));
    s.once('error', reject);
  });
  socket.on('error', () => undefined);
  socket.write(`POST /v1/keys/dk/release HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer held\r\nContent-Type: application/json\r\nContent-Length: ${HELD + 1}\r\n\r\n${' '.repeat(HELD)}`, () => undefined);
  return socket;
}

/** Everything the server sends on `socket` until it closes it. */
function answerOf(socket: Socket): Promise<string> {
  return new Promise((resolve) => {
    let text = '';
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.once('close', () => resolve(text));
  });
}

async function waitFor<T>(f: () => Promise<T | undefined>, ms = 10_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((r) => setTimeout(r, 20));
  }
}
